// What the cluster benches share (cluster_support.hpp).

#include "cluster_support.hpp"

#include <condition_variable>
#include <fstream>
#include <functional>
#include <mutex>
#include <random>
#include <sstream>

#include "hangar/ports.hpp"

namespace cairn::bench {

using bank::account;

std::string figures_json(const figures& f) {
  char text[256];
  std::snprintf(text, sizeof text,
                "\"commands\":%zu,\"commands_per_s\":%.0f,\"p50_us\":%.0f,\"p95_us\":%.0f,"
                "\"p99_us\":%.0f,\"cpu_us_per_command\":%.1f,\"errors\":%llu",
                f.commands, f.commands_per_s, f.p50_us, f.p95_us, f.p99_us, f.cpu_us_per_command,
                static_cast<unsigned long long>(f.errors));
  return text;
}

std::unique_ptr<hangar::child_process> start_node_process(const std::vector<std::string>& args) {
  auto c = std::make_unique<hangar::child_process>();
  if (auto ok = c->start("/proc/self/exe", args); !ok)
    throw std::runtime_error(ok.error().to_string());
  if (c->wait_line("ready", std::chrono::seconds{30}).empty())
    throw std::runtime_error("node process not ready: " + c->output());
  return c;
}

std::uint16_t free_port() {
  auto port = hangar::free_port();
  if (!port)
    throw std::runtime_error(port.error().to_string());
  return *port;
}

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

runtime_options node_options(const args& a, const std::string& dir,
                             const std::vector<cluster_node>& nodes, const std::string& me) {
  runtime_options opts;
  opts.data_dir = dir;
  opts.durability = parse_durability(a.get("--durability", "sync"));
  opts.worker_threads = static_cast<unsigned>(a.number("--threads", 0));
  auto spec = a.get("--standby", "");
  std::string owner, standby;
  if (!spec.empty()) {
    auto eq = spec.find('=');
    if (eq == std::string::npos)
      throw std::invalid_argument("--standby takes OWNER=STANDBY");
    owner = spec.substr(0, eq);
    standby = spec.substr(eq + 1);
  }
  // A standby owns no shards: the map spreads them over the others.
  std::vector<cluster_node> owners;
  for (const auto& n : nodes)
    if (n.id != standby)
      owners.push_back(n);
  auto c = make_cluster(owners, me);
  for (const auto& n : nodes)
    if (n.id == standby)
      c.nodes.push_back(n);
  for (auto& n : c.nodes)
    if (n.id == owner)
      n.standby = standby;
  auto mode = a.get("--replication", "async");
  if (mode != "async" && mode != "sync")
    throw std::invalid_argument("--replication takes async or sync");
  c.replication = mode == "sync" ? replication_mode::sync : replication_mode::async;
  c.middleman_workers = static_cast<unsigned>(a.number("--middleman-workers", 0));
  if (auto ok = validate(c); !ok)
    throw std::invalid_argument(ok.error().to_string());
  opts.cluster = c;
  return opts;
}

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

figures drive(runtime& rt, const std::vector<std::string>& ids, std::size_t window, double seconds,
              const account::command& cmd, std::uint64_t seed, const std::vector<pid_t>& pids) {
  // Each answer sends the next command from the actor thread it runs on, so
  // the driver's own thread does not wake once per command: on two cores that
  // wake-up took CPU the nodes were short of, and more of it on the route
  // that uses more CPU. The driving thread only waits for the last answer.
  struct lanes {
    std::mutex m;
    std::condition_variable cv;
    std::size_t outstanding = 0;
    std::vector<double> latencies;
    std::mt19937_64 rng;
    figures f;
  } s;
  s.latencies.reserve(1 << 16);
  s.rng.seed(seed);
  auto cpu0 = cpu_us(pids);
  auto t0 = clock::now();
  auto end = t0
             + std::chrono::duration_cast<clock::duration>(std::chrono::duration<double>(seconds));
  std::function<void(const std::string&)> issue = [&](const std::string& id) {
    auto start = clock::now();
    rt.send<account>(id, cmd, {}, [&, start](result<outcome<account>> r) {
      auto now = clock::now();
      const std::string* next = nullptr;
      {
        std::lock_guard g{s.m};
        s.latencies.push_back(std::chrono::duration<double, std::micro>(now - start).count());
        if (!r && s.f.errors++ == 0)
          s.f.first_error = r.error().to_string();
        // An error ends its lane: a stopped runtime answers at once, and
        // sending again from here would recurse.
        if (r && now < end)
          next = &ids[s.rng() % ids.size()];
        else if (--s.outstanding == 0)
          s.cv.notify_all();
      }
      if (next)
        issue(*next);
    });
  };
  // Drawn before the first send: from then on, answers draw under the lock.
  std::vector<const std::string*> first;
  for (std::size_t i = 0; i < window; ++i)
    first.push_back(&ids[s.rng() % ids.size()]);
  s.outstanding = window;
  for (auto* id : first)
    issue(*id);
  std::unique_lock lock{s.m};
  s.cv.wait(lock, [&] { return s.outstanding == 0; });
  auto& f = s.f;
  f.commands = s.latencies.size();
  f.commands_per_s = static_cast<double>(f.commands) / seconds_since(t0);
  if (f.commands > 0)
    f.cpu_us_per_command = (cpu_us(pids) - cpu0) / static_cast<double>(f.commands);
  f.p50_us = quantile(s.latencies, 0.50);
  f.p95_us = quantile(s.latencies, 0.95);
  f.p99_us = quantile(s.latencies, 0.99);
  return f;
}

} // namespace cairn::bench
