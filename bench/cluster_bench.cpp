// cairn-bench cluster: commands through a cluster of 2 or 3 nodes on
// loopback. This process is node A and drives; the other nodes are child
// processes of this binary (`cairn-bench cluster-node`, hidden) that serve
// until their standard input closes. The bank sample's account is registered
// on every node. Per in-flight level: deposits to accounts A owns (local) and
// to accounts another node owns (forwarded: A's gateway sends them to the
// owner's gateway), one after the other in the same run, through the public
// callback API; then the ratio of the two and, at 1 in flight, the latency
// one forwarding hop adds. Each case also reports the CPU time all node
// processes used per command, which the machine's other load moves much
// less than it moves commands/s.

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <unistd.h>

#include <condition_variable>
#include <cstdio>
#include <fstream>
#include <mutex>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "account.hpp"
#include "bench.hpp"
#include "cairn/model/stream_name.hpp"
#include "cairn/runtime/cluster.hpp"
#include "cairn/runtime/runtime.hpp"

extern char** environ;

namespace cairn::bench {

namespace {

using bank::account;

/// A TCP port on 127.0.0.1 that was free a moment ago.
std::uint16_t free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0)
    throw std::runtime_error("socket failed");
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0
      || ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    ::close(fd);
    throw std::runtime_error("no free port on 127.0.0.1");
  }
  ::close(fd);
  return ntohs(a.sin_port);
}

/// A node process: this binary re-executed as `cluster-node`. Its standard
/// input is held open (closing it stops the node); its output is read for
/// "ready".
class child_node {
public:
  child_node() = default;
  child_node(const child_node&) = delete;
  child_node& operator=(const child_node&) = delete;
  ~child_node() { stop(); }

  void start(const std::vector<std::string>& args) {
    int in[2], out[2];
    if (::pipe(in) != 0)
      throw std::runtime_error("pipe failed");
    if (::pipe(out) != 0) {
      ::close(in[0]);
      ::close(in[1]);
      throw std::runtime_error("pipe failed");
    }
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, in[0], 0);
    posix_spawn_file_actions_adddup2(&fa, out[1], 1);
    posix_spawn_file_actions_addclose(&fa, in[1]);
    posix_spawn_file_actions_addclose(&fa, out[0]);
    std::string self = "/proc/self/exe";
    std::vector<char*> argv{self.data()};
    std::vector<std::string> copy = args;
    for (auto& a : copy)
      argv.push_back(a.data());
    argv.push_back(nullptr);
    int rc = posix_spawn(&pid_, self.c_str(), &fa, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&fa);
    ::close(in[0]);
    ::close(out[1]);
    stdin_ = in[1];
    stdout_ = out[0];
    ::fcntl(stdin_, F_SETFD, FD_CLOEXEC);
    ::fcntl(stdout_, F_SETFD, FD_CLOEXEC);
    if (rc != 0) {
      pid_ = -1;
      throw std::runtime_error("posix_spawn failed");
    }
  }

  /// Waits for its "ready" line; throws with what it printed instead.
  void wait_ready(std::chrono::seconds limit) {
    std::string text;
    auto deadline = clock::now() + limit;
    while (clock::now() < deadline) {
      pollfd p{stdout_, POLLIN, 0};
      if (::poll(&p, 1, 100) <= 0)
        continue;
      char buf[1024];
      auto n = ::read(stdout_, buf, sizeof buf);
      if (n <= 0)
        break;
      text.append(buf, static_cast<std::size_t>(n));
      if (text.find("ready\n") != std::string::npos)
        return;
    }
    throw std::runtime_error("node process not ready: " + text);
  }

  /// Closes its standard input and waits up to 15 s for it to exit, then kills it.
  void stop() {
    if (stdin_ >= 0)
      ::close(stdin_);
    stdin_ = -1;
    if (pid_ > 0) {
      int status = 0;
      auto deadline = clock::now() + std::chrono::seconds{15};
      while (::waitpid(pid_, &status, WNOHANG) == 0) {
        if (clock::now() > deadline) {
          ::kill(pid_, SIGKILL);
          ::waitpid(pid_, &status, 0);
          break;
        }
        ::usleep(5000);
      }
      pid_ = -1;
    }
    if (stdout_ >= 0)
      ::close(stdout_);
    stdout_ = -1;
  }

  [[nodiscard]] pid_t pid() const { return pid_; }

private:
  pid_t pid_ = -1;
  int stdin_ = -1, stdout_ = -1;
};

/// "A=127.0.0.1:7101,B=127.0.0.1:7102"
std::string nodes_text(const std::vector<cluster_node>& nodes) {
  std::string s;
  for (const auto& n : nodes)
    s += (s.empty() ? "" : ",") + n.id + "=" + n.host + ":" + std::to_string(n.port);
  return s;
}

std::vector<cluster_node> parse_nodes(const std::string& text) {
  std::vector<cluster_node> out;
  std::stringstream in{text};
  std::string item;
  while (std::getline(in, item, ',')) {
    auto eq = item.find('=');
    auto colon = item.rfind(':');
    if (eq == std::string::npos || colon == std::string::npos || colon < eq)
      throw std::invalid_argument("--nodes: bad item '" + item + "'");
    out.push_back({item.substr(0, eq), item.substr(eq + 1, colon - eq - 1),
                   static_cast<std::uint16_t>(std::stoi(item.substr(colon + 1)))});
  }
  return out;
}

std::vector<std::size_t> parse_list(const std::string& text) {
  std::vector<std::size_t> out;
  std::stringstream in{text};
  std::string item;
  while (std::getline(in, item, ','))
    if (!item.empty())
      out.push_back(static_cast<std::size_t>(std::stoul(item)));
  return out;
}

/// The options every node of a bench cluster runs with.
runtime_options node_options(const args& a, const std::string& dir,
                             const std::vector<cluster_node>& nodes, const std::string& me) {
  runtime_options opts;
  opts.data_dir = dir;
  opts.durability = parse_durability(a.get("--durability", "sync"));
  opts.worker_threads = static_cast<unsigned>(a.number("--threads", 0));
  auto c = make_cluster(nodes, me);
  c.middleman_workers = static_cast<unsigned>(a.number("--middleman-workers", 0));
  opts.cluster = c;
  return opts;
}

/// CPU time (user + system, every thread) process `pid` has used so far, in
/// µs; 0 when /proc does not say.
double cpu_us(pid_t pid) {
  std::ifstream f{"/proc/" + std::to_string(pid) + "/stat"};
  std::string text;
  std::getline(f, text);
  auto name_end = text.rfind(')'); // the command name may hold spaces
  if (name_end == std::string::npos)
    return 0;
  std::istringstream in{text.substr(name_end + 1)};
  std::string field;
  for (int i = 3; i < 14; ++i) // fields 3 (state) to 13; utime and stime are 14 and 15
    in >> field;
  unsigned long long user = 0, sys = 0;
  if (!(in >> user >> sys))
    return 0;
  return static_cast<double>(user + sys) * 1e6 / static_cast<double>(::sysconf(_SC_CLK_TCK));
}

double cpu_us(const std::vector<pid_t>& pids) {
  double total = 0;
  for (auto pid : pids)
    total += cpu_us(pid);
  return total;
}

bool peers_up(runtime& rt) {
  auto s = rt.cluster();
  if (!s || s->peers.empty())
    return false;
  for (const auto& p : s->peers)
    if (p.state != "up")
      return false;
  return true;
}

struct figures {
  std::size_t commands = 0;
  double commands_per_s = 0;
  double p50_us = 0, p95_us = 0, p99_us = 0;
  double cpu_us_per_command = 0; ///< Of every node process.
  std::uint64_t errors = 0;
  std::string first_error;
};

/// Sends `cmd` to random ids of `ids` for `seconds`, keeping `window`
/// outstanding, then waits for the rest; each command's latency, and the
/// CPU time the processes `pids` used per command.
figures drive(runtime& rt, const std::vector<std::string>& ids, std::size_t window, double seconds,
              const account::command& cmd, std::uint64_t seed,
              const std::vector<pid_t>& pids = {}) {
  std::mutex m;
  std::condition_variable cv;
  std::size_t outstanding = 0;
  figures f;
  std::vector<double> latencies;
  latencies.reserve(1 << 16);
  std::mt19937_64 rng{seed};
  auto cpu0 = cpu_us(pids);
  auto t0 = clock::now();
  auto end = t0
             + std::chrono::duration_cast<clock::duration>(std::chrono::duration<double>(seconds));
  while (clock::now() < end) {
    {
      std::unique_lock lock{m};
      cv.wait(lock, [&] { return outstanding < window; });
      ++outstanding;
    }
    auto start = clock::now();
    rt.send<account>(ids[rng() % ids.size()], cmd, {}, [&, start](result<outcome<account>> r) {
      auto us = std::chrono::duration<double, std::micro>(clock::now() - start).count();
      std::lock_guard g{m};
      latencies.push_back(us);
      if (!r && f.errors++ == 0)
        f.first_error = r.error().to_string();
      --outstanding;
      cv.notify_all();
    });
  }
  std::unique_lock lock{m};
  cv.wait(lock, [&] { return outstanding == 0; });
  f.commands = latencies.size();
  f.commands_per_s = static_cast<double>(f.commands) / seconds_since(t0);
  if (f.commands > 0)
    f.cpu_us_per_command = (cpu_us(pids) - cpu0) / static_cast<double>(f.commands);
  f.p50_us = quantile(latencies, 0.50);
  f.p95_us = quantile(latencies, 0.95);
  f.p99_us = quantile(latencies, 0.99);
  return f;
}

/// Opens every account of `ids`, 256 at a time; throws on a failure.
void open_accounts(runtime& rt, const std::vector<std::string>& ids) {
  std::mutex m;
  std::condition_variable cv;
  std::size_t outstanding = 0;
  std::string failure;
  for (const auto& id : ids) {
    {
      std::unique_lock lock{m};
      cv.wait(lock, [&] { return outstanding < 256; });
      ++outstanding;
    }
    rt.send<account>(id, bank::open_account{"owner-" + id}, {}, [&](result<outcome<account>> r) {
      std::lock_guard g{m};
      if (!r && r.error().message != "already_open")
        failure = r.error().to_string();
      --outstanding;
      cv.notify_all();
    });
  }
  std::unique_lock lock{m};
  cv.wait(lock, [&] { return outstanding == 0; });
  if (!failure.empty())
    throw std::runtime_error("opening accounts: " + failure);
}

std::string case_json(std::size_t nodes, const char* route, std::size_t inflight,
                      const std::string& durability, unsigned workers, double seconds,
                      const figures& f) {
  char line[512];
  std::snprintf(line, sizeof line,
                "{\"bench\":\"cluster\",\"nodes\":%zu,\"route\":\"%s\",\"inflight\":%zu,"
                "\"durability\":\"%s\",\"middleman_workers\":%u,\"seconds\":%.1f,"
                "\"commands\":%zu,\"commands_per_s\":%.0f,\"p50_us\":%.0f,\"p95_us\":%.0f,"
                "\"p99_us\":%.0f,\"cpu_us_per_command\":%.1f,\"errors\":%llu}",
                nodes, route, inflight, durability.c_str(), workers, seconds, f.commands,
                f.commands_per_s, f.p50_us, f.p95_us, f.p99_us, f.cpu_us_per_command,
                static_cast<unsigned long long>(f.errors));
  return line;
}

void print_row(std::size_t nodes, const char* route, std::size_t inflight, unsigned workers,
               const figures& f) {
  std::printf("%5zu %-10s %8zu %7u %9zu %12.0f %9.0f %9.0f %9.0f %7.1f %6llu\n", nodes, route,
              inflight, workers, f.commands, f.commands_per_s, f.p50_us, f.p95_us, f.p99_us,
              f.cpu_us_per_command, static_cast<unsigned long long>(f.errors));
  if (!f.first_error.empty())
    std::printf("      first error: %s\n", f.first_error.c_str());
  std::fflush(stdout);
}

/// One cluster of `count` nodes: starts the others, drives every in-flight
/// level local then forwarded, prints rows; the JSON lines go to `json`.
void run_cluster(const args& a, std::size_t count, std::vector<std::string>& json) {
  auto durability = a.get("--durability", "sync");
  auto seconds = a.number("--seconds", 3);
  auto workers = static_cast<unsigned>(a.number("--middleman-workers", 0));
  auto accounts = static_cast<std::size_t>(a.number("--accounts", 1000));
  auto levels = parse_list(a.get("--in-flight", "1,64,1024"));
  auto route = a.get("--route", "both");
  if (route != "both" && route != "local" && route != "forwarded")
    throw std::invalid_argument("--route takes both, local or forwarded");
  const char* names[] = {"A", "B", "C"};
  std::vector<cluster_node> nodes;
  for (std::size_t i = 0; i < count; ++i)
    nodes.push_back({names[i], "127.0.0.1", free_port()});
  auto dir = scratch_dir(a, "cluster");
  std::vector<std::unique_ptr<child_node>> children;
  std::vector<pid_t> pids{::getpid()};
  std::vector<std::string> ratios;
  {
    for (std::size_t i = 1; i < count; ++i) {
      auto c = std::make_unique<child_node>();
      std::vector<std::string> cargs{"cluster-node",
                                     "--node",
                                     names[i],
                                     "--nodes",
                                     nodes_text(nodes),
                                     "--data",
                                     dir + "/" + names[i],
                                     "--durability",
                                     durability,
                                     "--middleman-workers",
                                     std::to_string(workers),
                                     "--threads",
                                     a.get("--threads", "0")};
      c->start(cargs);
      c->wait_ready(std::chrono::seconds{30});
      std::fprintf(stderr, "node %s: pid %d\n", names[i], static_cast<int>(c->pid()));
      pids.push_back(c->pid());
      children.push_back(std::move(c));
    }
    auto opts = node_options(a, dir + "/A", nodes, "A");
    auto map = opts.cluster->map;
    auto rt = start_bank_runtime(opts);
    auto deadline = clock::now() + std::chrono::seconds{30};
    while (!peers_up(*rt)) {
      if (clock::now() > deadline)
        throw std::runtime_error("peers not up within 30 s");
      std::this_thread::sleep_for(std::chrono::milliseconds{20});
    }
    // `accounts` ids A owns and `accounts` ids the other nodes own.
    std::vector<std::string> local, remote;
    for (std::size_t i = 0; local.size() < accounts || remote.size() < accounts; ++i) {
      auto id = std::to_string(i);
      auto& to = map.owner_of(stream_name_of(account::category, id)) == "A" ? local : remote;
      if (to.size() < accounts)
        to.push_back(id);
    }
    open_accounts(*rt, local);
    open_accounts(*rt, remote);
    bank::deposit cmd{1};
    // An untimed warm-up of each route: connections, allocator, live actors.
    drive(*rt, local, 64, 0.5, cmd, 1);
    drive(*rt, remote, 64, 0.5, cmd, 2);
    for (auto window : levels) {
      figures l, r;
      if (route != "forwarded") {
        l = drive(*rt, local, window, seconds, cmd, 3 + window, pids);
        print_row(count, "local", window, workers, l);
        json.push_back(case_json(count, "local", window, durability, workers, seconds, l));
      }
      if (route != "local") {
        r = drive(*rt, remote, window, seconds, cmd, 4 + window, pids);
        print_row(count, "forwarded", window, workers, r);
        json.push_back(case_json(count, "forwarded", window, durability, workers, seconds, r));
      }
      if (route != "both")
        continue;
      auto ratio = l.commands_per_s > 0 ? r.commands_per_s / l.commands_per_s : 0;
      auto cpu_ratio = l.cpu_us_per_command > 0 ? r.cpu_us_per_command / l.cpu_us_per_command : 0;
      char line[512];
      std::snprintf(line, sizeof line,
                    "{\"bench\":\"cluster\",\"nodes\":%zu,\"route\":\"ratio\",\"inflight\":%zu,"
                    "\"durability\":\"%s\",\"middleman_workers\":%u,\"throughput_ratio\":%.2f,"
                    "\"added_p50_us\":%.0f,\"added_p99_us\":%.0f,\"cpu_ratio\":%.2f}",
                    count, window, durability.c_str(), workers, ratio, r.p50_us - l.p50_us,
                    r.p99_us - l.p99_us, cpu_ratio);
      json.push_back(line);
      char text[256];
      std::snprintf(
        text, sizeof text,
        "%5zu %8zu  forwarded/local throughput %.2f  hop adds p50 %+.0f us, p99 %+.0f us  "
        "cpu/command %.2fx",
        count, window, ratio, r.p50_us - l.p50_us, r.p99_us - l.p99_us, cpu_ratio);
      ratios.emplace_back(text);
    }
    rt->shutdown();
  }
  for (auto& c : children)
    c->stop();
  remove_dir(dir);
  for (const auto& r : ratios)
    std::printf("%s\n", r.c_str());
  std::fflush(stdout);
}

} // namespace

int cluster_main(const args& a) {
  std::printf("%5s %-10s %8s %7s %9s %12s %9s %9s %9s %7s %6s\n", "nodes", "route", "inflight",
              "mm.wrk", "commands", "commands/s", "p50 us", "p95 us", "p99 us", "cpu us", "errors");
  std::vector<std::string> json;
  for (auto count : parse_list(a.get("--nodes", "2,3"))) {
    if (count < 2 || count > 3)
      throw std::invalid_argument("--nodes takes 2 or 3");
    run_cluster(a, count, json);
  }
  for (const auto& line : json)
    print_json(line);
  return 0;
}

int cluster_node_main(const args& a) {
  auto me = a.get("--node", "");
  auto nodes = parse_nodes(a.get("--nodes", ""));
  auto data = a.get("--data", "");
  if (me.empty() || data.empty())
    throw std::invalid_argument("cluster-node needs --node, --nodes and --data");
  auto rt = start_bank_runtime(node_options(a, data, nodes, me));
  std::printf("ready\n");
  std::fflush(stdout);
  char buf[256];
  while (::read(0, buf, sizeof buf) > 0) {
  }
  rt->shutdown();
  return 0;
}

} // namespace cairn::bench
