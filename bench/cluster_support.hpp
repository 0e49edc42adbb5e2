#pragma once

// What the cluster benches share (cluster_bench.cpp, replication_bench.cpp):
// node processes of this binary, free ports on loopback, the options a bench
// node runs with, and a driver that keeps commands in flight.

#include <chrono>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "account.hpp"
#include "bench.hpp"
#include "cairn/runtime/cluster.hpp"
#include "cairn/runtime/runtime.hpp"
#include "hangar/child_process.hpp"

namespace cairn::bench {

/// A TCP port on 127.0.0.1 that was free a moment ago.
std::uint16_t free_port();

/// This binary started again with `args` (`cluster-node ...`) as a child
/// process, once it printed "ready"; throws with what it printed instead.
std::unique_ptr<hangar::child_process> start_node_process(const std::vector<std::string>& args);

/// "A=127.0.0.1:7101,B=127.0.0.1:7102"
std::string nodes_text(const std::vector<cluster_node>& nodes);
std::vector<cluster_node> parse_nodes(const std::string& text);
/// "1,64,1024"
std::vector<std::size_t> parse_list(const std::string& text);

/// The options every node of a bench cluster runs with: --durability,
/// --threads and --middleman-workers from `a`; with --standby OWNER=STANDBY,
/// STANDBY owns no shards and follows OWNER, under --replication async|sync.
runtime_options node_options(const args& a, const std::string& dir,
                             const std::vector<cluster_node>& nodes, const std::string& me);

/// CPU time (user + system, every thread) process `pid` has used so far, in
/// µs; 0 when /proc does not say.
double cpu_us(pid_t pid);
double cpu_us(const std::vector<pid_t>& pids);

/// Whether every peer of `rt`'s cluster is up (false without peers).
bool peers_up(runtime& rt);

struct figures {
  std::size_t commands = 0;
  double commands_per_s = 0;
  double p50_us = 0, p95_us = 0, p99_us = 0;
  double cpu_us_per_command = 0; ///< Of every node process.
  std::uint64_t errors = 0;
  std::string first_error;
};

/// `f` as the JSON members every cluster case ends with, from "commands" to
/// "errors", without braces.
std::string figures_json(const figures& f);

/// Sends `cmd` to random ids of `ids` for `seconds`, keeping `window`
/// outstanding (each answer sends the next), then waits for the rest; each
/// command's latency, and the CPU time the processes `pids` used per command.
figures drive(runtime& rt, const std::vector<std::string>& ids, std::size_t window, double seconds,
              const bank::account::command& cmd, std::uint64_t seed,
              const std::vector<pid_t>& pids = {});

} // namespace cairn::bench
