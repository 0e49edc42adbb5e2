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

#include <unistd.h>

#include <cstdio>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "cairn/model/stream_name.hpp"
#include "cluster_support.hpp"

namespace cairn::bench {

namespace {

using bank::account;

std::string case_json(std::size_t nodes, const char* route, std::size_t inflight,
                      const std::string& durability, unsigned workers, double seconds,
                      const figures& f) {
  char line[256];
  std::snprintf(line, sizeof line,
                "{\"bench\":\"cluster\",\"nodes\":%zu,\"route\":\"%s\",\"inflight\":%zu,"
                "\"durability\":\"%s\",\"middleman_workers\":%u,\"seconds\":%.1f,",
                nodes, route, inflight, durability.c_str(), workers, seconds);
  return line + figures_json(f) + "}";
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
  std::vector<std::unique_ptr<hangar::child_process>> children;
  std::vector<pid_t> pids{::getpid()};
  std::vector<std::string> ratios;
  {
    for (std::size_t i = 1; i < count; ++i) {
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
      auto c = start_node_process(cargs);
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
    c->stop(std::chrono::seconds{15});
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
