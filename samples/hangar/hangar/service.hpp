#pragma once

// The hangar service: the provider and provider_group aggregates on a cairn
// runtime, with the handlers that run their side effects and feed the
// outcomes back as commands (docs/hangar.md):
//
//   hangar.transport  provider initializing -> start its transport; a tool
//                     invocation requested -> run it; stopped -> stop it
//   hangar.recovery   provider degraded -> start again after 5 s x 2^(n-1)
//                     (at most 60 s), 3 times, then stop (max_retries_exceeded)
//   hangar.selection  member selected -> invoke the member (a stopped one
//                     starts on demand); a refusal -> a failed request
//   hangar.groups     the member's call results and health probes ->
//                     record_member_result; its state changes ->
//                     record_member_lifecycle on each of its groups
//   provider_status   a local projection: the status views read it
//
// plus a timer thread that probes health, detects idle providers and moves
// open circuits to half-open once their reset timeout passed. Time runs
// `speed` times faster than the wall clock, so the demo shows minutes of
// provider life in seconds; every command carries that clock's time.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <cereal/types/map.hpp>
#include <cereal/types/string.hpp>

#include "cairn/runtime/cluster.hpp"
#include "cairn/runtime/runtime.hpp"
#include "hangar/provider.hpp"
#include "hangar/provider_group.hpp"
#include "hangar/transport.hpp"

namespace hangar {

/// One provider as the provider_status projection sees it.
struct provider_status {
  std::string mode;
  std::string state = "cold";
  std::uint32_t consecutive_failures = 0;
  std::uint64_t total_failures = 0;
  std::uint64_t invocations = 0;
  std::uint64_t completed = 0;
  std::string last_error;
  template <class Ar> void serialize(Ar& ar) {
    ar(mode, state, consecutive_failures, total_failures, invocations, completed, last_error);
  }
  friend bool operator==(const provider_status& a, const provider_status& b) {
    return a.mode == b.mode && a.state == b.state
           && a.consecutive_failures == b.consecutive_failures
           && a.total_failures == b.total_failures && a.invocations == b.invocations
           && a.completed == b.completed && a.last_error == b.last_error;
  }
};

/// One group as the provider_status projection sees it.
struct group_status {
  std::string state = "inactive";
  std::string circuit = "closed";
  std::map<std::string, bool> in_rotation; ///< By member.
  std::uint32_t circuit_openings = 0;
  /// By member: what the group knows of its provider (to_string(member_lifecycle)).
  /// Kept under the projection's own keys "member/<group>/<member>", not in
  /// the serialized value, so group values stored before it still decode.
  std::map<std::string, std::string> lifecycle;
  [[nodiscard]] std::size_t healthy() const {
    std::size_t n = 0;
    for (const auto& [member, in] : in_rotation)
      n += in ? 1 : 0;
    return n;
  }
  /// Members whose provider is stopped (in rotation all the same: not failing).
  [[nodiscard]] std::size_t stopped() const {
    std::size_t n = 0;
    for (const auto& [member, l] : lifecycle)
      n += l == "stopped" ? 1 : 0;
    return n;
  }
  template <class Ar> void serialize(Ar& ar) { ar(state, circuit, in_rotation, circuit_openings); }
  friend bool operator==(const group_status& a, const group_status& b) {
    return a.state == b.state && a.circuit == b.circuit && a.in_rotation == b.in_rotation
           && a.circuit_openings == b.circuit_openings && a.lifecycle == b.lifecycle;
  }
};

struct service_options {
  std::string data_dir = "./hangar-data";
  std::uint64_t seed = 1;
  /// The service's clock runs this many times faster than the wall clock.
  double speed = 1;
  /// Simulated transports: call latency and random failure rates.
  std::chrono::milliseconds latency{0};
  double failure_rate = 0;
  double error_rate = 0;
  /// Serve metrics here ("" = off); see docs/operations.md.
  std::string metrics_address;
  /// Run as one node of a cluster (docs/cluster.md, docs/hangar.md#running-as-a-cluster).
  std::optional<cairn::cluster_options> cluster;
  /// The metrics endpoint takes operator steps (promote, replication mode):
  /// runtime_options::cluster_admin. Default: off.
  bool cluster_admin = false;
  cairn::persistence::durability durability = cairn::persistence::durability::sync;
  /// Record the groups' commands for what-if replay (hangar/what_if.hpp).
  bool record_commands = false;
  /// Timer thread period (wall clock).
  std::chrono::milliseconds timer_period{100};
  /// Called (on a handler thread) when a request of invoke_group got its
  /// member's result recorded on the group; for benchmarks and tests.
  std::function<void(const std::string& request_id, bool ok)> on_request_done;
};

class service {
public:
  static cairn::result<std::unique_ptr<service>> start(service_options opts);
  ~service();
  service(const service&) = delete;
  service& operator=(const service&) = delete;

  /// The service clock, ns since the epoch (runs `speed` times faster).
  [[nodiscard]] std::int64_t now_ns() const;

  cairn::result<void> register_provider(const std::string& id, provider_mode mode,
                                        provider_config config, provider_options options = {});
  cairn::result<void> start_provider(const std::string& id);
  cairn::result<void> stop_provider(const std::string& id, const std::string& reason);
  /// Asks provider `id` to run `tool`; returns the correlation id. The
  /// result arrives as an event (tool_invocation_completed or _failed).
  cairn::result<std::string> invoke(const std::string& id, const std::string& tool,
                                    const std::string& args);
  cairn::result<void> create_group(const std::string& id, group_options options);
  cairn::result<void> add_member(const std::string& group, const std::string& provider,
                                 std::uint32_t weight = 1, std::uint32_t priority = 1);
  /// Selects a member of `group` and invokes it; returns the request id.
  cairn::result<std::string> invoke_group(const std::string& group, const std::string& tool,
                                          const std::string& args);

  /// Scripted outage of a simulated provider: its next `calls` calls fail.
  cairn::result<void> inject_outage(const std::string& id, std::uint64_t calls);
  /// The child process of a subprocess provider; -1 when none runs.
  [[nodiscard]] pid_t child_of(const std::string& id);

  /// The status views, from the provider_status projection (committed state).
  [[nodiscard]] std::map<std::string, provider_status> providers();
  [[nodiscard]] std::map<std::string, group_status> groups();
  /// Waits until every handler has caught up with the log (at most `limit`
  /// each). A held one (this node is a standby) handles nothing: skipped.
  cairn::result<void> settle(std::chrono::milliseconds limit);

  [[nodiscard]] cairn::runtime& runtime() { return *rt_; }

  /// Stops the timer, the handlers (final checkpoints), the runtime and the transports.
  void shutdown();

private:
  explicit service(service_options opts);
  cairn::result<void> wire();
  transport* transport_for(const std::string& id, bool start_if_missing);
  cairn::result<void> start_provider(const std::string& id, const std::string& correlation);
  /// A retry jitter in -100..100 permille, from the service's seeded generator.
  std::int32_t draw_jitter();
  void timer_loop();
  /// Sends and waits. `correlation` ties the command to what caused it (a
  /// tool call, a request, a recovery); handlers pass the causing event on.
  template <class A>
  cairn::result<cairn::outcome<A>>
  send(const std::string& id, const typename A::command& cmd, const std::string& correlation,
       const std::string& command_id = {}, const std::string& causation = {});

  // Handlers (each runs on its own subscriber thread).
  cairn::result<void> on_transport(const cairn::envelope<provider::event>& e);
  cairn::result<void> on_recovery(const cairn::envelope<provider::event>& e);
  cairn::result<void> on_group_bridge(const cairn::envelope<provider::event>& e);
  cairn::result<void> on_selection(const cairn::envelope<provider_group::event>& e);

  service_options opts_;
  std::chrono::steady_clock::time_point started_steady_;
  std::int64_t started_wall_ns_ = 0;
  std::string id_prefix_; ///< Of request ids: unique to this start (and node).
  std::unique_ptr<cairn::runtime> rt_;

  std::mutex mutex_; // guards everything below: handler threads, the timer and callers
  std::map<std::string, std::unique_ptr<transport>> transports_;
  std::map<std::string, std::uint32_t> retries_;      ///< Recovery attempts per provider.
  std::map<std::string, std::int64_t> retry_due_ns_;  ///< Scheduled recovery starts.
  std::map<std::string, std::string> group_requests_; ///< request id -> group.
  std::map<std::string, std::pair<std::string, std::string>> request_calls_; ///< tool, args
  std::uint64_t next_request_ = 0;
  std::mt19937_64 rng_;

  std::atomic<bool> stopping_{false};
  std::condition_variable timer_wake_;
  std::thread timer_;
};

} // namespace hangar
