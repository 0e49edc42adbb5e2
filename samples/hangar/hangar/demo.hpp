#pragma once

// The hangar demo (what `scripts/demo` runs) and the line-command server.

#include <cstdint>
#include <iosfwd>
#include <string>

#include "cairn/model/error.hpp"

namespace hangar {

struct demo_options {
  std::uint64_t seed = 42;
  std::string data_dir = "./cairn-data/hangar"; ///< Wiped at the start: the demo starts fresh.
  double seconds = 20;                          ///< Wall-clock length of the traffic phase.
  double speed = 10;                            ///< Service clock speed-up.
  std::string metrics_address = "127.0.0.1:0";
};

/// The key moments the demo observed, for its end-to-end test.
struct demo_report {
  bool circuit_opened = false;
  bool circuit_half_opened = false;
  bool circuit_closed_again = false;
  bool idle_stopped = false;
  /// The late burst to `math` after its providers went idle: all served,
  /// the cold providers started again on demand.
  bool restarted_on_demand = false;
  bool subprocess_death_detected = false;
  bool restart_restored_everything = false;
  /// What-if with a circuit threshold of 3: groups decided otherwise, and
  /// those whose circuit it opens at that command.
  std::size_t what_if_differing = 0;
  std::size_t what_if_opened_earlier = 0;
  std::uint64_t invocations = 0;
};

/// Runs the scenario of docs/hangar.md, printing to `out`.
[[nodiscard]] cairn::result<demo_report> run_demo(const demo_options& opts, std::ostream& out);

/// `hangar demo --cluster N` (docs/hangar.md#running-as-a-cluster): N nodes on
/// 127.0.0.1, node A in this process and the others child processes of
/// `self_path` (`hangar node ...`); one of them is killed and restarted.
struct cluster_demo_options {
  std::uint64_t seed = 42;
  std::string data_dir = "./cairn-data/hangar-cluster"; ///< Wiped at the start.
  double seconds = 20;                                  ///< Length of the traffic phase.
  double speed = 10;                                    ///< Service clock speed-up.
  int nodes = 3;                                        ///< 2 to 9.
  std::string self_path;                                ///< The hangar binary.
  /// `--standby`: every node gets a standby (B's is B2); the killed owner's
  /// standby is promoted and the owner rejoins as its standby
  /// (docs/hangar.md#a-standby-for-every-node). Default: none.
  bool standby = false;
  /// With `standby`: `--replication async` (default sync).
  bool async_replication = false;
};

/// What the cluster demo observed.
struct cluster_demo_report {
  bool node_killed = false;
  bool unavailable_seen = false;  ///< A command for the dead node's providers failed.
  bool restarted = false;         ///< The node came back and served again.
  std::uint64_t acknowledged = 0; ///< Tool invocations acknowledged, all providers.
  std::uint64_t missing = 0;      ///< Of those, not in their owner's store.
  // With a standby (`--standby`):
  bool promoted = false;                ///< The killed owner's standby was promoted.
  std::uint64_t served_by_promoted = 0; ///< Acknowledged invocations it wrote itself.
  bool rejoined = false;                ///< The old owner came back as its standby.
  std::uint64_t truncated = 0;          ///< Records the old owner cut from its tail.
  /// Of `missing`, those found in the old owner's file of cut events: what an
  /// async failover may lose (none may be missing under sync).
  std::uint64_t missing_in_cut = 0;
  bool digests_equal = false; ///< Every owner/standby pair, at the standby's end.
};

/// Runs the cluster scenario; an error when a step fails (a node that does
/// not start or come back). Any loss is in the report (`missing`).
[[nodiscard]] cairn::result<cluster_demo_report> run_cluster_demo(const cluster_demo_options& opts,
                                                                  std::ostream& out);

/// `hangar node --node ID --config FILE --data DIR [--metrics HOST:PORT]`: one
/// node of the cluster demo (or of a cluster an operator runs by hand:
/// docs/cluster.md#losing-an-owner-promote-its-standby). Prints "ready" once serving,
/// then answers `hangar serve`'s line commands and `replication` (this
/// node's replication status as one line) until `quit` or the end of its input;
/// returns the exit code. Its metrics address takes the operator steps
/// (`cairn cluster promote|replication`, runtime_options::cluster_admin):
/// bind it to loopback or a private network.
int run_node(const std::string& node_id, const std::string& config, const std::string& data_dir,
             const std::string& metrics_address, std::istream& in, std::ostream& out);

class service;
struct serve_request;

/// What `hangar serve` answers to `r` (one line, "ok ..." or "error ...");
/// `hangar node` answers the same lines.
[[nodiscard]] std::string serve_answer(service& svc, const serve_request& r);

/// Serves line commands from `in`, one answer line each on `out`, until EOF
/// or "quit"; returns the exit code.
int serve(const std::string& data_dir, std::istream& in, std::ostream& out);

} // namespace hangar
