// `hangar demo --cluster N` and `hangar node`: the hangar service on a cluster
// of N nodes on 127.0.0.1 (docs/hangar.md#running-as-a-cluster).
//
// Node A runs in this process and drives the load: every tool invocation goes
// through A's runtime, which serves A's providers itself and forwards the
// others to their owner's gateway. Nodes B, C, ... are child processes of the
// hangar binary (`hangar node ...`). Membership is static (the config file),
// so the driver is a member, not a client outside the cluster.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <istream>
#include <map>
#include <ostream>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "cairn/persistence/event_store.hpp"
#include "cairn/runtime/cluster.hpp"
#include "hangar/demo.hpp"
#include "hangar/service.hpp"

extern char** environ;

namespace hangar {

namespace {

using namespace std::chrono_literals;
using clock_type = std::chrono::steady_clock;

/// A TCP port on 127.0.0.1 that was free a moment ago.
cairn::result<std::uint16_t> free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0)
    return cairn::fail(cairn::errc::unavailable, "socket failed");
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  socklen_t len = sizeof a;
  bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0
            && ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0;
  ::close(fd);
  if (!ok)
    return cairn::fail(cairn::errc::unavailable, "no free port on 127.0.0.1");
  return ntohs(a.sin_port);
}

/// A node as a child process: its standard input held open (closing it stops
/// the node), its standard output read for "ready", its log in a file.
class child_node {
public:
  child_node() = default;
  child_node(const child_node&) = delete;
  child_node& operator=(const child_node&) = delete;
  ~child_node() { kill_now(); }

  cairn::result<void> start(const std::string& path, const std::vector<std::string>& args,
                            const std::string& log) {
    int in[2], out[2];
    if (::pipe(in) != 0)
      return cairn::fail(cairn::errc::unavailable, "pipe failed");
    if (::pipe(out) != 0) {
      ::close(in[0]);
      ::close(in[1]);
      return cairn::fail(cairn::errc::unavailable, "pipe failed");
    }
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, in[0], 0);
    posix_spawn_file_actions_adddup2(&fa, out[1], 1);
    posix_spawn_file_actions_addopen(&fa, 2, log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    posix_spawn_file_actions_addclose(&fa, in[1]);
    posix_spawn_file_actions_addclose(&fa, out[0]);
    std::vector<char*> argv;
    argv.push_back(const_cast<char*>(path.c_str()));
    for (const auto& a : args)
      argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    int rc = posix_spawn(&pid_, path.c_str(), &fa, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&fa);
    ::close(in[0]);
    ::close(out[1]);
    if (rc != 0) {
      ::close(in[1]);
      ::close(out[0]);
      pid_ = -1;
      return cairn::fail(cairn::errc::unavailable, "cannot start " + path);
    }
    ::fcntl(in[1], F_SETFD, FD_CLOEXEC);
    ::fcntl(out[0], F_SETFD, FD_CLOEXEC);
    stdin_ = in[1];
    stdout_ = out[0];
    return {};
  }

  /// Waits at most `limit` for a line starting with `prefix`; "" if none came.
  std::string wait_line(const std::string& prefix, std::chrono::milliseconds limit) {
    auto deadline = clock_type::now() + limit;
    for (;;) {
      for (auto nl = buffer_.find('\n'); nl != std::string::npos; nl = buffer_.find('\n')) {
        auto line = buffer_.substr(0, nl);
        buffer_.erase(0, nl + 1);
        if (line.compare(0, prefix.size(), prefix) == 0)
          return line;
      }
      auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - clock_type::now());
      if (left.count() <= 0 || stdout_ < 0)
        return {};
      pollfd p{stdout_, POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(left.count())) <= 0)
        continue;
      char buf[1024];
      auto n = ::read(stdout_, buf, sizeof buf);
      if (n <= 0) {
        ::close(stdout_);
        stdout_ = -1;
        continue;
      }
      buffer_.append(buf, static_cast<std::size_t>(n));
    }
  }

  /// Closes its standard input and waits at most `limit`; its exit code, or
  /// -1 (then it is killed).
  int stop(std::chrono::milliseconds limit) {
    if (pid_ <= 0)
      return -1;
    close_fd(stdin_);
    auto deadline = clock_type::now() + limit;
    while (clock_type::now() < deadline) {
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        close_fd(stdout_);
        return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
      }
      std::this_thread::sleep_for(5ms);
    }
    kill_now();
    return -1;
  }

  /// SIGKILL, and reaps it.
  void kill_now() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      int status = 0;
      ::waitpid(pid_, &status, 0);
      pid_ = -1;
    }
    close_fd(stdin_);
    close_fd(stdout_);
    buffer_.clear();
  }

  [[nodiscard]] pid_t pid() const { return pid_; }

private:
  static void close_fd(int& fd) {
    if (fd >= 0)
      ::close(fd);
    fd = -1;
  }
  pid_t pid_ = -1;
  int stdin_ = -1;
  int stdout_ = -1;
  std::string buffer_;
};

/// What A's runtime says of peer `id` ("up", "down", ...).
std::string peer_state(cairn::runtime& rt, const std::string& id) {
  auto s = rt.cluster();
  if (!s)
    return "?";
  for (const auto& p : s->peers)
    if (p.id == id)
      return p.state;
  return "?";
}

bool wait_up(cairn::runtime& rt, const std::vector<std::string>& ids,
             std::chrono::milliseconds limit) {
  auto deadline = clock_type::now() + limit;
  for (;;) {
    bool all = true;
    for (const auto& id : ids)
      all = all && peer_state(rt, id) == "up";
    if (all)
      return true;
    if (clock_type::now() >= deadline)
      return false;
    std::this_thread::sleep_for(20ms);
  }
}

/// One provider's tally, as the driver saw it.
struct tally {
  std::string owner;
  std::uint32_t shard = 0;
  std::uint64_t acknowledged = 0;
  std::uint64_t unavailable = 0;
  std::uint64_t other_errors = 0;
  std::vector<std::string> correlations; ///< Of the acknowledged invocations.
  bool error_printed = false;            ///< During the current outage.
};

/// The correlation ids of provider `id`'s events in the store at `dir`.
cairn::result<std::set<std::string>> stored_correlations(const std::string& dir,
                                                         const std::string& id) {
  cairn::persistence::store_options so;
  so.read_only = true;
  auto store = cairn::persistence::open_store(dir, so);
  if (!store)
    return tl::unexpected(store.error());
  std::set<std::string> out;
  std::uint64_t from = 1;
  for (;;) {
    auto events = (*store)->read_stream("provider-" + id, from, 4096);
    if (!events)
      return tl::unexpected(events.error());
    if (events->empty())
      return out;
    for (const auto& e : *events)
      out.insert(e.meta.correlation_id);
    from = events->back().version + 1;
  }
}

} // namespace

int run_node(const std::string& node_id, const std::string& config, const std::string& data_dir,
             const std::string& metrics_address, std::istream& in, std::ostream& out) {
  auto cluster = cairn::load_cluster_config(config, node_id);
  if (!cluster) {
    out << "error " << cluster.error().to_string() << std::endl;
    return 1;
  }
  service_options so;
  so.data_dir = data_dir;
  so.speed = 10;
  so.metrics_address = metrics_address;
  so.cluster = *cluster;
  auto svc = service::start(so);
  if (!svc) {
    out << "error " << svc.error().to_string() << std::endl;
    return 1;
  }
  out << "ready " << (*svc)->runtime().metrics_endpoint() << std::endl;
  std::string line;
  while (std::getline(in, line)) {
  }
  (void)(*svc)->settle(10s);
  (*svc)->shutdown();
  return 0;
}

cairn::result<cluster_demo_report> run_cluster_demo(const cluster_demo_options& opts,
                                                    std::ostream& out) {
  namespace fs = std::filesystem;
  if (opts.nodes < 2 || opts.nodes > 9)
    return cairn::fail(cairn::errc::invalid_argument, "--cluster takes 2 to 9 nodes");
  std::error_code ec;
  fs::remove_all(opts.data_dir, ec);
  fs::create_directories(opts.data_dir, ec);
  if (ec)
    return cairn::fail(cairn::errc::unavailable, "cannot create " + opts.data_dir);

  // The nodes: ids A, B, ..., a gateway port and a metrics port each.
  std::vector<cairn::cluster_node> nodes;
  std::map<std::string, std::string> metrics;
  for (int i = 0; i < opts.nodes; ++i) {
    auto port = free_port();
    auto mport = free_port();
    if (!port || !mport)
      return tl::unexpected(!port ? port.error() : mport.error());
    std::string id(1, static_cast<char>('A' + i));
    nodes.push_back({id, "127.0.0.1", *port});
    metrics[id] = "127.0.0.1:" + std::to_string(*mport);
  }
  auto cluster = cairn::make_cluster(nodes, "A");
  if (auto ok = cairn::validate(cluster); !ok)
    return tl::unexpected(ok.error());
  const std::string config = opts.data_dir + "/cluster.conf";
  {
    std::ofstream f{config};
    f << cairn::to_config_text(cluster);
    if (!f)
      return cairn::fail(cairn::errc::unavailable, "cannot write " + config);
  }
  auto node_dir = [&](const std::string& id) { return opts.data_dir + "/node-" + id; };
  out << "hangar demo --cluster " << opts.nodes << ": seed " << opts.seed << ", data in "
      << opts.data_dir << "\ncluster config: " << config << "  (try: cairn cluster map " << config
      << ")\n";
  for (const auto& n : nodes)
    out << "  node " << n.id << "  gateway " << n.host << ':' << n.port << "  metrics "
        << metrics[n.id] << "  data " << node_dir(n.id)
        << (n.id == "A" ? "  (this process: drives the load)" : "") << '\n';

  // Nodes B, C, ...: child processes; A: here.
  std::map<std::string, std::unique_ptr<child_node>> children;
  auto spawn = [&](const std::string& id) -> cairn::result<void> {
    auto& c = children[id];
    c = std::make_unique<child_node>();
    if (auto ok = c->start(opts.self_path,
                           {"node", "--node", id, "--config", config, "--data", node_dir(id),
                            "--metrics", metrics[id]},
                           opts.data_dir + "/node-" + id + ".log");
        !ok)
      return ok;
    if (c->wait_line("ready", 20s).empty())
      return cairn::fail(cairn::errc::unavailable, "node " + id + " did not start; see "
                                                     + opts.data_dir + "/node-" + id + ".log");
    return {};
  };
  std::vector<std::string> others;
  for (const auto& n : nodes)
    if (n.id != "A") {
      others.push_back(n.id);
      if (auto ok = spawn(n.id); !ok)
        return tl::unexpected(ok.error());
    }
  service_options so;
  so.data_dir = node_dir("A");
  so.seed = opts.seed;
  so.speed = opts.speed;
  so.metrics_address = metrics["A"];
  so.cluster = cluster;
  auto started = service::start(so);
  if (!started)
    return tl::unexpected(started.error());
  auto& svc = **started;
  auto t0 = clock_type::now();
  auto elapsed = [&] { return std::chrono::duration<double>(clock_type::now() - t0).count(); };
  if (!wait_up(svc.runtime(), others, 20s))
    return cairn::fail(cairn::errc::unavailable, "the nodes did not connect within 20 s");
  out << "all " << opts.nodes << " nodes up after " << std::fixed << std::setprecision(2)
      << elapsed() << " s (cairn cluster status " << metrics["A"] << ")\n";

  // The providers: three per node, picked by the shard map so every node
  // owns some (the names are the single-node demo's families).
  std::map<std::string, tally> tallies;
  std::map<std::string, int> per_node;
  const char* families[] = {"search-", "math-", "docs-", "files-"};
  for (int i = 1; i <= 64 && tallies.size() < static_cast<std::size_t>(3 * opts.nodes); ++i)
    for (const char* f : families) {
      std::string id = f + std::to_string(i);
      const auto& owner = cluster.map.owner_of("provider-" + id);
      if (per_node[owner] >= 3)
        continue;
      ++per_node[owner];
      auto& t = tallies[id];
      t.owner = owner;
      t.shard = cluster.map.shard_of("provider-" + id);
    }
  provider_options po;
  po.health_check_interval_s = 10;
  for (const auto& [id, t] : tallies) {
    if (auto ok = svc.register_provider(id, provider_mode::remote,
                                        {{}, "https://" + id + ".example/mcp", {}}, po);
        !ok)
      return cairn::fail(ok.error().code, "register " + id + ": " + ok.error().to_string());
    if (auto ok = svc.start_provider(id); !ok)
      return cairn::fail(ok.error().code, "start " + id + ": " + ok.error().to_string());
  }
  out << "\nproviders by owner (stream provider-<id>, shard of " << cluster.map.owners.size()
      << "):\n";
  for (const auto& n : nodes) {
    out << "  node " << n.id << ":";
    for (const auto& [id, t] : tallies)
      if (t.owner == n.id)
        out << "  " << id << " (shard " << t.shard << ")";
    out << '\n';
  }
  out << "no provider groups in cluster mode: the group bridge reads the node-local status "
         "projection (docs/hangar.md#running-as-a-cluster)\n\n";

  cluster_demo_report report;
  const std::string victim = nodes[1].id;
  bool restart_done = false;
  double next_line = 1;
  auto summary = [&](double t) {
    out << "t=" << std::setw(4) << std::setprecision(1) << t << " s  acknowledged";
    for (const auto& n : nodes) {
      std::uint64_t acked = 0, unavailable = 0;
      for (const auto& [id, ta] : tallies)
        if (ta.owner == n.id) {
          acked += ta.acknowledged;
          unavailable += ta.unavailable;
        }
      out << "  " << n.id << ' ' << std::setw(5) << acked;
      if (unavailable > 0)
        out << " (" << unavailable << " unavailable)";
    }
    out << '\n';
  };
  std::uint64_t round = 0, summarized = 0;
  while (elapsed() < opts.seconds) {
    auto t = elapsed();
    if (!report.node_killed && t >= opts.seconds * 0.3) {
      out << ">>> SIGKILL node " << victim << " (pid " << children[victim]->pid() << ")\n";
      children[victim]->kill_now();
      report.node_killed = true;
      for (auto& [id, ta] : tallies)
        ta.error_printed = false;
    }
    if (report.node_killed && !restart_done && t >= opts.seconds * 0.55) {
      out << ">>> restarting node " << victim << " on the same port " << nodes[1].port << '\n';
      auto r0 = clock_type::now();
      if (auto ok = spawn(victim); !ok)
        return tl::unexpected(ok.error());
      if (!wait_up(svc.runtime(), {victim}, 20s))
        return cairn::fail(cairn::errc::unavailable,
                           "node " + victim + " did not reconnect within 20 s of its restart");
      out << ">>> node " << victim << " is up again after "
          << std::chrono::duration<double>(clock_type::now() - r0).count() << " s\n";
      restart_done = true;
    }
    ++round;
    for (auto& [id, ta] : tallies) {
      auto r = svc.invoke(id, "call", "{\"n\":" + std::to_string(round) + "}");
      if (r) {
        ++ta.acknowledged;
        ta.correlations.push_back(*r);
        if (restart_done && ta.owner == victim)
          report.restarted = true;
        continue;
      }
      bool unavailable = r.error().code == cairn::errc::unavailable;
      ++(unavailable ? ta.unavailable : ta.other_errors);
      report.unavailable_seen |= unavailable && ta.owner == victim;
      if (!ta.error_printed) {
        out << "    " << id << " (node " << ta.owner << "): " << r.error().to_string() << '\n';
        ta.error_printed = true;
      }
    }
    if (elapsed() >= next_line) {
      summary(elapsed());
      summarized = round;
      next_line += 1;
    }
    std::this_thread::sleep_for(40ms);
  }
  if (summarized != round)
    summary(elapsed());
  if (auto status = svc.runtime().cluster())
    out << "\nnode A's view of the cluster (cairn cluster status " << metrics["A"] << "):\n"
        << cairn::to_text(*status);

  out << "\n>>> stopping the nodes\n";
  for (auto& [id, c] : children)
    if (auto rc = c->stop(20s); rc != 0)
      out << "    node " << id << " exited with " << rc << '\n';
  (void)svc.settle(10s);
  started->reset();

  out << "\nacknowledged invocations against the owner's store (opened read-only):\n"
      << "  provider   owner  acknowledged  unavailable  in the store  missing\n";
  for (const auto& [id, ta] : tallies) {
    auto stored = stored_correlations(node_dir(ta.owner), id);
    if (!stored)
      return cairn::fail(stored.error().code,
                         "open " + node_dir(ta.owner) + ": " + stored.error().to_string());
    std::uint64_t found = 0;
    for (const auto& c : ta.correlations)
      found += stored->count(c);
    std::uint64_t missing = ta.acknowledged - found;
    report.acknowledged += ta.acknowledged;
    report.missing += missing;
    out << "  " << std::left << std::setw(10) << id << ' ' << std::setw(6) << ta.owner << std::right
        << std::setw(13) << ta.acknowledged << std::setw(13) << ta.unavailable << std::setw(14)
        << found << std::setw(9) << missing << (missing > 0 ? "  LOST" : "") << '\n';
  }
  out << "\nkey moments: node " << victim << " killed " << (report.node_killed ? "yes" : "no")
      << ", its providers answered unavailable " << (report.unavailable_seen ? "yes" : "no")
      << ", restarted and served again " << (report.restarted ? "yes" : "no") << '\n';
  if (report.missing == 0)
    out << "every acknowledged event is there: " << report.acknowledged
        << " acknowledged invocations, each in its owner's store\n";
  else
    out << "LOSS: " << report.missing << " of " << report.acknowledged
        << " acknowledged invocations are missing from their owner's store\n";
  return report;
}

} // namespace hangar
