#pragma once

// What `hangar demo --cluster N` (cluster_demo.cpp) and its standby variant
// (standby_demo.cpp) share: node child processes, ports, the cluster's setup
// (cluster_support.cpp), the driver's tallies and a look into a store.
// Private to the sample.

#include <chrono>
#include <cstdint>
#include <iosfwd>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <memory>
#include <ostream>

#include "cairn/persistence/event_store.hpp"
#include "cairn/runtime/cluster.hpp"
#include "cairn/runtime/runtime.hpp"
#include "hangar/child_process.hpp"
#include "hangar/demo.hpp"
#include "hangar/node_lines.hpp"
#include "hangar/ports.hpp"
#include "hangar/service.hpp"

namespace hangar::detail {

using namespace std::chrono_literals;
using clock_type = std::chrono::steady_clock;

/// What A's runtime says of peer `id` ("up", "down", ...).
inline std::string peer_state(cairn::runtime& rt, const std::string& id) {
  auto s = rt.cluster();
  if (!s)
    return "?";
  for (const auto& p : s->peers)
    if (p.id == id)
      return p.state;
  return "?";
}

inline bool wait_up(cairn::runtime& rt, const std::vector<std::string>& ids,
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
inline cairn::result<std::set<std::string>> stored_correlations(const std::string& dir,
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

/// This node's replication status as `hangar node` answers `replication`.
inline std::string replication_line(cairn::runtime& rt) {
  auto s = rt.cluster();
  return hangar::replication_line(s && !s->replication.empty() ? &s->replication.front() : nullptr);
}

/// Empties the demo's data directory `dir` and creates it again.
[[nodiscard]] cairn::result<void> fresh_data_dir(const std::string& dir);

/// Node `id` on 127.0.0.1 with a free gateway port, appended to `to`, and a
/// free metrics port, its address stored as `metrics[id]`.
[[nodiscard]] cairn::result<void> add_local_node(std::vector<cairn::cluster_node>& to,
                                                 std::map<std::string, std::string>& metrics,
                                                 const std::string& id);

/// Validates `cluster` and writes it as `data_dir`/cluster.conf; the file's path.
[[nodiscard]] cairn::result<std::string> write_cluster_config(const cairn::cluster_options& cluster,
                                                              const std::string& data_dir);

/// A demo's nodes: every node but A as a child process (`hangar node`, its
/// log in the data directory), A as the service in this process. Destroying
/// it kills the children still running.
class demo_nodes {
public:
  /// `config` is the cluster config file, `metrics` each node's metrics address.
  demo_nodes(const cluster_demo_options& opts, std::string config,
             std::map<std::string, std::string> metrics);

  /// Node `id`'s data directory.
  [[nodiscard]] std::string dir(const std::string& id) const;

  /// Starts node `id` as a child process (again, after a kill) and waits at
  /// most 20 s for its "ready".
  [[nodiscard]] cairn::result<void> spawn(const std::string& id);

  /// Spawns every node of `cluster` but A, then starts A's service here and
  /// waits at most 20 s for every peer to be up; A's service.
  [[nodiscard]] cairn::result<std::unique_ptr<service>>
  start(const cairn::cluster_options& cluster);

  /// Seconds since A's service started (the demo's t=0).
  [[nodiscard]] double elapsed() const {
    return std::chrono::duration<double>(clock_type::now() - started_at_).count();
  }

  /// Child node `id`; nullptr if it was never spawned.
  [[nodiscard]] child_process* child(const std::string& id);

  /// Stops child node `id` if it runs (at most 20 s), printing its exit code if not 0.
  void stop(const std::string& id, std::ostream& out);
  /// Stops every child node that still runs, as stop() does.
  void stop_all(std::ostream& out);

private:
  const cluster_demo_options& opts_;
  std::string config_;
  std::map<std::string, std::string> metrics_;
  std::map<std::string, std::unique_ptr<child_process>> children_;
  clock_type::time_point started_at_;
};

/// Invokes provider `id`'s tool once (call number `round`) and counts the
/// outcome in `ta`: an acknowledged one with its correlation id, a failure as
/// unavailable or other; the failure's error.
[[nodiscard]] cairn::result<void> invoke_counted(service& svc, const std::string& id,
                                                 std::uint64_t round, tally& ta);

/// Three providers per owner of `cluster` (of which there are `owners`),
/// picked by the shard map so every owner has some (the names are the
/// single-node demo's families), registered and started on `svc`; their
/// tallies, owner and shard filled in.
[[nodiscard]] cairn::result<std::map<std::string, tally>>
start_providers(service& svc, const cairn::cluster_options& cluster, int owners);

/// `hangar demo --cluster N --standby` (standby_demo.cpp).
[[nodiscard]] cairn::result<cluster_demo_report> run_standby_demo(const cluster_demo_options& opts,
                                                                  std::ostream& out);

} // namespace hangar::detail
