#pragma once

/// The provider aggregate: one MCP tool server, its lifecycle and its health.
///
///   rt.register_aggregate<hangar::provider>();          // streams "provider-<id>"
///   rt.send<hangar::provider>("math", hangar::register_provider{...});
///   rt.send<hangar::provider>("math", hangar::start_provider{now_ns, jitter});
///   // a handler sees provider_state_changed{cold, initializing}, starts the
///   // transport and reports: record_start_result{true, 3, 120, {}, "", now}
///
/// Lifecycle (docs/hangar.md has the table): cold -> initializing -> ready,
/// which alone runs tool calls (a call to a cold, dead or degraded-past-its-
/// backoff provider starts it on demand and waits); start failures go to dead (below
/// max_consecutive_failures) or degraded (at or above it); degraded retries
/// after a backoff. Every state change is a `provider_state_changed` event
/// next to the event that says why. Time, ids and jitter come in commands;
/// `decide` and `evolve` are pure. Side effects (starting processes, probing,
/// running tools) belong to event handlers, which report back with the
/// `record_*` commands.

#include <algorithm>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <variant>
#include <vector>

#include <cereal/types/common.hpp>
#include <cereal/types/map.hpp>
#include <cereal/types/string.hpp>
#include <cereal/types/variant.hpp>
#include <cereal/types/vector.hpp>

#include "cairn/model/aggregate.hpp"
#include "cairn/persistence/codec.hpp"
#include "hangar/common.hpp"

namespace hangar {

// -- vocabulary ---------------------------------------------------------------

/// How a provider runs. Stored as its number: append new modes at the end.
enum class provider_mode : std::uint8_t { subprocess, docker, remote, group };

/// Lifecycle states. Stored as their number: append new states at the end.
enum class provider_state : std::uint8_t { cold, initializing, ready, degraded, dead };

/// Why a tool invocation failed. `application` (the tool returned an error)
/// counts in total_failures only; `transport` and `timeout` also count as
/// consecutive failures.
enum class error_type : std::uint8_t { application, transport, timeout };

[[nodiscard]] constexpr const char* to_string(provider_mode m) noexcept {
  switch (m) {
    case provider_mode::subprocess: return "subprocess";
    case provider_mode::docker: return "docker";
    case provider_mode::remote: return "remote";
    case provider_mode::group: return "group";
  }
  return "unknown";
}

[[nodiscard]] constexpr const char* to_string(provider_state s) noexcept {
  switch (s) {
    case provider_state::cold: return "cold";
    case provider_state::initializing: return "initializing";
    case provider_state::ready: return "ready";
    case provider_state::degraded: return "degraded";
    case provider_state::dead: return "dead";
  }
  return "unknown";
}

[[nodiscard]] constexpr const char* to_string(error_type t) noexcept {
  switch (t) {
    case error_type::application: return "application";
    case error_type::transport: return "transport";
    case error_type::timeout: return "timeout";
  }
  return "unknown";
}

/// "subprocess" -> provider_mode::subprocess; nullopt for anything else.
[[nodiscard]] inline std::optional<provider_mode> parse_provider_mode(std::string_view s) {
  for (auto m : {provider_mode::subprocess, provider_mode::docker, provider_mode::remote,
                 provider_mode::group})
    if (s == to_string(m))
      return m;
  return std::nullopt;
}

/// "transport" -> error_type::transport; nullopt for anything else.
[[nodiscard]] inline std::optional<error_type> parse_error_type(std::string_view s) {
  for (auto t : {error_type::application, error_type::transport, error_type::timeout})
    if (s == to_string(t))
      return t;
  return std::nullopt;
}

/// True for the failures that count as consecutive (the transport is in doubt).
[[nodiscard]] constexpr bool is_consecutive_failure(error_type t) noexcept {
  return t == error_type::transport || t == error_type::timeout;
}

/// The longest retry backoff: 60 s, whatever the jitter.
inline constexpr std::int64_t max_retry_backoff_ns = 60 * ns_per_s;

/// Retry backoff after `consecutive_failures` failures: min(60 s, 2^n s x
/// (1000 + jitter_permille) / 1000), capped after the jitter so it never
/// exceeds 60 s. The caller draws the jitter in -100..100 (+-10 %) outside
/// `decide` and sends it in `start_provider` or `invoke_tool`.
[[nodiscard]] constexpr std::int64_t retry_backoff_ns(std::uint32_t consecutive_failures,
                                                      std::int32_t jitter_permille) noexcept {
  // 2^7 s at -10 % is 115 s, above the cap already; this also bounds the shift.
  if (consecutive_failures >= 7)
    return max_retry_backoff_ns;
  const std::int64_t raw = (std::int64_t{1} << consecutive_failures) * ns_per_s / 1000
                           * (1000 + jitter_permille);
  return std::min(max_retry_backoff_ns, raw);
}

/// Lifecycle and health options. Ranges are checked by register/update.
struct provider_options {
  std::uint32_t idle_ttl_s = 300;             ///< 1..86400. Default 300.
  std::uint32_t health_check_interval_s = 60; ///< 5..3600. Default 60. For the health prober.
  std::uint32_t max_consecutive_failures = 3; ///< >= 1. Default 3.

  template <class Ar> void serialize(Ar& ar) {
    ar(idle_ttl_s, health_check_interval_s, max_consecutive_failures);
  }
  friend bool operator==(const provider_options& a, const provider_options& b) {
    return a.idle_ttl_s == b.idle_ttl_s && a.health_check_interval_s == b.health_check_interval_s
           && a.max_consecutive_failures == b.max_consecutive_failures;
  }
};

/// The rejection reason for options out of range, or nullptr when valid.
[[nodiscard]] inline const char* validate(const provider_options& o) noexcept {
  if (o.idle_ttl_s < 1 || o.idle_ttl_s > 86400)
    return "idle_ttl_out_of_range";
  if (o.health_check_interval_s < 5 || o.health_check_interval_s > 3600)
    return "health_check_interval_out_of_range";
  if (o.max_consecutive_failures < 1)
    return "max_consecutive_failures_out_of_range";
  return nullptr;
}

/// How to reach the provider; opaque to the aggregate beyond the checks in
/// `validate(mode, config)`.
struct provider_config {
  /// argv of the process (`subprocess`) or image and arguments (`docker`).
  std::vector<std::string> command;
  /// URL (`remote`) or the provider group it fronts (`group`).
  std::string endpoint;
  /// Transport settings the aggregate does not read (simulated latency, env, ...).
  std::map<std::string, std::string> params;

  template <class Ar> void serialize(Ar& ar) { ar(command, endpoint, params); }
  friend bool operator==(const provider_config& a, const provider_config& b) {
    return a.command == b.command && a.endpoint == b.endpoint && a.params == b.params;
  }
};

/// The rejection reason for a config that `mode` cannot run, or nullptr.
[[nodiscard]] inline const char* validate(provider_mode mode, const provider_config& c) noexcept {
  switch (mode) {
    case provider_mode::subprocess:
    case provider_mode::docker:
      return c.command.empty() || c.command.front().empty() ? "missing_command" : nullptr;
    case provider_mode::remote: return c.endpoint.empty() ? "missing_endpoint" : nullptr;
    case provider_mode::group: return is_valid_id(c.endpoint) ? nullptr : "invalid_group_id";
  }
  return "invalid_mode"; // a number no enumerator has, e.g. from a newer client
}

// -- commands -------------------------------------------------------------------
// Times are wall-clock nanoseconds since the epoch, read by the sender.

/// Registers the provider; `id` must equal the aggregate id.
struct register_provider {
  std::string id;
  std::string source; ///< Who registered it: "config", "api", "demo", ...
  provider_mode mode = provider_mode::subprocess;
  provider_config config;
  provider_options options;
  template <class Ar> void serialize(Ar& ar) { ar(id, source, mode, config, options); }
};

/// Replaces config and options; takes effect at the next start. No event when nothing changes.
struct update_provider {
  provider_config config;
  provider_options options;
  template <class Ar> void serialize(Ar& ar) { ar(config, options); }
};

/// Removes the registration; only while cold or dead (nothing is running).
struct deregister_provider {
  template <class Ar> void serialize(Ar&) {}
};

/// cold -> initializing (start), dead -> initializing (retry), degraded ->
/// initializing (retry once retry_backoff_ns has passed since it degraded).
struct start_provider {
  std::int64_t now_ns = 0;
  std::int32_t jitter_permille = 0; ///< -100..100, drawn by the sender.
  template <class Ar> void serialize(Ar& ar) { ar(now_ns, jitter_permille); }
};

/// ready or degraded -> cold. Abandons in-flight invocations.
struct stop_provider {
  std::string reason; ///< Required: "manual", "max_retries_exceeded", ...
  std::int64_t now_ns = 0;
  template <class Ar> void serialize(Ar& ar) { ar(reason, now_ns); }
};

/// Asks the provider to run `tool`; a handler runs it on
/// tool_invocation_requested and answers with record_invocation_result.
/// Start on demand (the original's `ensure_ready`): a provider that is cold,
/// dead, or degraded with its backoff elapsed starts first, and the call
/// waits (tool_invocation_queued) like every call that arrives while it
/// initializes; they are requested in order once the start succeeded, and
/// abandoned if it failed. Degraded inside its backoff: `backoff_not_elapsed`.
struct invoke_tool {
  std::string tool;
  std::string arguments;            ///< JSON text, passed through.
  std::string correlation_id;       ///< 1-255 printable bytes, unique among in-flight calls.
  std::uint32_t timeout_ms = 30000; ///< 1..600000. Default 30 s.
  std::int64_t now_ns = 0;
  std::int32_t jitter_permille =
    0; ///< -100..100, drawn by the sender: a degraded provider's backoff.
  template <class Ar> void serialize(Ar& ar) {
    ar(tool, arguments, correlation_id, timeout_ms, now_ns, jitter_permille);
  }
};

/// The transport's answer to a start, while initializing.
struct record_start_result {
  bool ok = false;
  std::uint32_t tools_count = 0; ///< When ok.
  std::int64_t duration_ms = 0;  ///< Startup time.
  std::vector<std::string> tags; ///< When ok: labels the server reported.
  std::string error;             ///< When not ok.
  std::int64_t now_ns = 0;
  template <class Ar> void serialize(Ar& ar) {
    ar(ok, tools_count, duration_ms, tags, error, now_ns);
  }
};

/// A health probe's outcome, while ready.
struct record_health_probe {
  bool ok = false;
  std::int64_t duration_ms = 0;
  std::string error; ///< When not ok.
  std::int64_t now_ns = 0;
  template <class Ar> void serialize(Ar& ar) { ar(ok, duration_ms, error, now_ns); }
};

/// The outcome of an in-flight invocation, in any state (results may arrive
/// after the provider left ready).
struct record_invocation_result {
  std::string correlation_id;
  bool ok = false;
  std::int64_t duration_ms = 0;
  std::uint64_t result_bytes = 0;            ///< When ok.
  std::string error;                         ///< When not ok.
  error_type type = error_type::application; ///< When not ok.
  std::int64_t now_ns = 0;
  template <class Ar> void serialize(Ar& ar) {
    ar(correlation_id, ok, duration_ms, result_bytes, error, type, now_ns);
  }
};

/// The transport of a ready provider died (process exited, connection lost):
/// ready -> dead, and on to degraded when that makes max_consecutive_failures.
struct record_transport_died {
  std::string error;
  std::int64_t now_ns = 0;
  template <class Ar> void serialize(Ar& ar) { ar(error, now_ns); }
};

/// Stops a ready provider with no call in flight that was last used
/// idle_ttl_s or more before `now_ns`; no events otherwise. Not a failure.
struct detect_idle {
  std::int64_t now_ns = 0;
  template <class Ar> void serialize(Ar& ar) { ar(now_ns); }
};

// -- events ---------------------------------------------------------------------

struct provider_registered {
  static constexpr const char* type_name = "provider_registered";
  std::string id;
  std::string source;
  provider_mode mode = provider_mode::subprocess;
  provider_config config;
  provider_options options;
  template <class Ar> void serialize(Ar& ar) { ar(id, source, mode, config, options); }
};

struct provider_updated {
  static constexpr const char* type_name = "provider_updated";
  provider_config config;
  provider_options options;
  template <class Ar> void serialize(Ar& ar) { ar(config, options); }
};

struct provider_deregistered {
  static constexpr const char* type_name = "provider_deregistered";
  template <class Ar> void serialize(Ar&) {}
};

/// Every lifecycle move, next to the event that says why. Handlers start the
/// transport on new_state == initializing and stop it on cold.
struct provider_state_changed {
  static constexpr const char* type_name = "provider_state_changed";
  provider_state old_state = provider_state::cold;
  provider_state new_state = provider_state::cold;
  std::int64_t at_ns = 0;
  template <class Ar> void serialize(Ar& ar) { ar(old_state, new_state, at_ns); }
};

/// How version 1 of "provider_started" was stored. Frozen: never edit it.
struct provider_started_v1 {
  provider_mode mode = provider_mode::subprocess;
  std::uint32_t tools_count = 0;
  std::int64_t startup_ms = 0;
  template <class Ar> void serialize(Ar& ar) { ar(mode, tools_count, startup_ms); }
};

/// Version 2 (current) adds `tags`; v1 payloads are upcast with empty tags.
struct provider_started {
  static constexpr const char* type_name = "provider_started";
  provider_mode mode = provider_mode::subprocess;
  std::uint32_t tools_count = 0;
  std::int64_t startup_ms = 0;
  std::vector<std::string> tags;
  template <class Ar> void serialize(Ar& ar) { ar(mode, tools_count, startup_ms, tags); }
};

struct provider_start_failed {
  static constexpr const char* type_name = "provider_start_failed";
  std::uint32_t consecutive_failures = 0; ///< After this failure.
  std::string error;
  std::int64_t at_ns = 0;
  template <class Ar> void serialize(Ar& ar) { ar(consecutive_failures, error, at_ns); }
};

/// ready or degraded -> cold by request or idleness; not a failure.
struct provider_stopped {
  static constexpr const char* type_name = "provider_stopped";
  std::string reason; ///< "idle" for an idle stop.
  std::int64_t at_ns = 0;
  template <class Ar> void serialize(Ar& ar) { ar(reason, at_ns); }
};

struct provider_degraded {
  static constexpr const char* type_name = "provider_degraded";
  std::uint32_t consecutive_failures = 0;
  std::uint64_t total_failures = 0;
  /// start_failed, health_check_failed, invocation_failed or transport_died.
  std::string reason;
  template <class Ar> void serialize(Ar& ar) { ar(consecutive_failures, total_failures, reason); }
};

struct provider_idle_detected {
  static constexpr const char* type_name = "provider_idle_detected";
  std::int64_t idle_s = 0;
  std::int64_t last_used_at_ns = 0;
  template <class Ar> void serialize(Ar& ar) { ar(idle_s, last_used_at_ns); }
};

/// Not in the original list: the "transport died" cell (ready -> dead) needs
/// an event that says why.
struct provider_transport_died {
  static constexpr const char* type_name = "provider_transport_died";
  std::uint32_t consecutive_failures = 0; ///< After this failure.
  std::string error;
  std::int64_t at_ns = 0;
  template <class Ar> void serialize(Ar& ar) { ar(consecutive_failures, error, at_ns); }
};

/// The handler runs the tool and answers with record_invocation_result.
struct tool_invocation_requested {
  static constexpr const char* type_name = "tool_invocation_requested";
  std::string tool;
  std::string arguments;
  std::string correlation_id;
  std::uint32_t timeout_ms = 0;
  std::int64_t at_ns = 0;
  template <class Ar> void serialize(Ar& ar) {
    ar(tool, arguments, correlation_id, timeout_ms, at_ns);
  }
};

struct tool_invocation_completed {
  static constexpr const char* type_name = "tool_invocation_completed";
  std::string correlation_id;
  std::int64_t duration_ms = 0;
  std::uint64_t result_bytes = 0;
  std::int64_t at_ns = 0;
  template <class Ar> void serialize(Ar& ar) {
    ar(correlation_id, duration_ms, result_bytes, at_ns);
  }
};

struct tool_invocation_failed {
  static constexpr const char* type_name = "tool_invocation_failed";
  std::string correlation_id;
  std::int64_t duration_ms = 0;
  std::string error;
  error_type type = error_type::application;
  std::int64_t at_ns = 0;
  template <class Ar> void serialize(Ar& ar) {
    ar(correlation_id, duration_ms, error, type, at_ns);
  }
};

struct health_check_passed {
  static constexpr const char* type_name = "health_check_passed";
  std::int64_t duration_ms = 0;
  std::int64_t at_ns = 0;
  template <class Ar> void serialize(Ar& ar) { ar(duration_ms, at_ns); }
};

struct health_check_failed {
  static constexpr const char* type_name = "health_check_failed";
  std::uint32_t consecutive_failures = 0; ///< After this failure.
  std::string error;
  std::int64_t at_ns = 0;
  template <class Ar> void serialize(Ar& ar) { ar(consecutive_failures, error, at_ns); }
};

/// A call that arrived while the provider was not ready: it waits for the
/// start on demand, and is requested once that start succeeded. Added after
/// the original's event list: the wait must be an event for a replay to know
/// the calls that still wait.
struct tool_invocation_queued {
  static constexpr const char* type_name = "tool_invocation_queued";
  std::string tool;
  std::string arguments;
  std::string correlation_id;
  std::uint32_t timeout_ms = 0;
  std::int64_t at_ns = 0;
  template <class Ar> void serialize(Ar& ar) {
    ar(tool, arguments, correlation_id, timeout_ms, at_ns);
  }
};

/// A waiting call given up because the start it waited for failed. Not a
/// failure of its own: the start failure counts once, in provider_start_failed.
struct tool_invocation_abandoned {
  static constexpr const char* type_name = "tool_invocation_abandoned";
  std::string correlation_id;
  std::string reason; ///< "start_failed: <error>".
  std::int64_t at_ns = 0;
  template <class Ar> void serialize(Ar& ar) { ar(correlation_id, reason, at_ns); }
};

/// A call waiting for the start on demand (state v3).
struct waiting_invocation {
  std::string tool;
  std::string arguments;
  std::string correlation_id;
  std::uint32_t timeout_ms = 0;
  std::int64_t queued_at_ns = 0;
  template <class Ar> void serialize(Ar& ar) {
    ar(tool, arguments, correlation_id, timeout_ms, queued_at_ns);
  }
  friend bool operator==(const waiting_invocation& a, const waiting_invocation& b) {
    return a.tool == b.tool && a.arguments == b.arguments && a.correlation_id == b.correlation_id
           && a.timeout_ms == b.timeout_ms && a.queued_at_ns == b.queued_at_ns;
  }
};

/// A call the provider accepted and has not answered yet.
struct pending_invocation {
  std::string tool;
  std::uint32_t timeout_ms = 0;
  std::int64_t requested_at_ns = 0;
  template <class Ar> void serialize(Ar& ar) { ar(tool, timeout_ms, requested_at_ns); }
};

// -- the aggregate ----------------------------------------------------------------

struct provider {
  static constexpr const char* category = "provider"; // streams "provider-<id>"

  /// Snapshot schema 3 (CEREAL_CLASS_VERSION below); 2 added `tags` and
  /// `last_state_change_ns`, 3 added `waiting`; `serialize` still reads
  /// version-1 and version-2 bytes.
  struct state {
    bool registered = false;
    std::string id;
    std::string source;
    provider_mode mode = provider_mode::subprocess;
    provider_config config;
    provider_options options;
    provider_state status = provider_state::cold;
    std::uint32_t tools_count = 0;          ///< From the last successful start.
    std::uint32_t consecutive_failures = 0; ///< Reset by any success.
    std::uint64_t total_failures = 0;       ///< Every failure, application errors included.
    std::uint64_t total_invocations = 0; ///< Accepted invoke_tool commands (queued or requested).
    std::int64_t last_success_ns = 0;
    std::int64_t last_failure_ns = 0;
    std::int64_t last_used_ns = 0; ///< Entering ready or a call; drives detect_idle.
    std::string last_error;
    std::map<std::string, pending_invocation> pending; ///< By correlation id.
    std::vector<std::string> tags;                     ///< v2: from the last provider_started.
    std::int64_t last_state_change_ns = 0;             ///< v2: when `status` last changed.
    /// v3: calls waiting for the start on demand, in arrival order; only
    /// while initializing.
    std::vector<waiting_invocation> waiting;

    /// True if `correlation_id` is in flight or waiting.
    [[nodiscard]] bool knows_call(const std::string& correlation_id) const {
      if (pending.count(correlation_id) != 0)
        return true;
      return std::any_of(waiting.begin(), waiting.end(), [&](const waiting_invocation& w) {
        return w.correlation_id == correlation_id;
      });
    }

    template <class Ar> void serialize(Ar& ar, std::uint32_t version) {
      ar(registered, id, source, mode, config, options, status, tools_count, consecutive_failures,
         total_failures, total_invocations, last_success_ns, last_failure_ns, last_used_ns,
         last_error, pending);
      if (version >= 2)
        ar(tags, last_state_change_ns);
      if (version >= 3)
        ar(waiting);
    }
  };

  using command =
    std::variant<register_provider, update_provider, deregister_provider, start_provider,
                 stop_provider, invoke_tool, record_start_result, record_health_probe,
                 record_invocation_result, record_transport_died, detect_idle>;
  using event =
    std::variant<provider_registered, provider_updated, provider_deregistered,
                 provider_state_changed, provider_started, provider_start_failed, provider_stopped,
                 provider_degraded, provider_idle_detected, provider_transport_died,
                 tool_invocation_requested, tool_invocation_completed, tool_invocation_failed,
                 health_check_passed, health_check_failed, tool_invocation_queued,
                 tool_invocation_abandoned>;

  [[nodiscard]] static state initial() { return {}; }

  [[nodiscard]] static cairn::decision<event> decide(const state& s, const command& c) {
    if (!s.registered && !std::holds_alternative<register_provider>(c))
      return cairn::reject("not_registered");
    return std::visit([&](const auto& cmd) { return on(s, cmd); }, c);
  }

  [[nodiscard]] static state evolve(state s, const event& e) {
    std::visit([&](const auto& ev) { apply(s, ev); }, e);
    return s;
  }

  /// When a degraded provider may be retried with this jitter.
  [[nodiscard]] static std::int64_t retry_at_ns(const state& s, std::int32_t jitter_permille) {
    return s.last_state_change_ns + retry_backoff_ns(s.consecutive_failures, jitter_permille);
  }

  /// provider_started v1 -> v2 (adds empty tags).
  [[nodiscard]] static cairn::result<void> upcasters(cairn::persistence::event_registry& reg) {
    return reg.add_upcaster<provider_started_v1, provider_started>(
      provider_started::type_name, 1, [](const provider_started_v1& old) {
        return provider_started{old.mode, old.tools_count, old.startup_ms, {}};
      });
  }

private:
  using builder = detail::event_builder<provider>;
  using decision = cairn::decision<event>;

  static void change(builder& b, provider_state to, std::int64_t now_ns) {
    b.push(provider_state_changed{b.state().status, to, now_ns});
  }

  /// After a consecutive failure: ready or dead at the threshold -> degraded.
  static void degrade_if_exhausted(builder& b, const char* reason, std::int64_t now_ns) {
    const state& s = b.state();
    if (s.consecutive_failures < s.options.max_consecutive_failures)
      return;
    if (s.status != provider_state::ready && s.status != provider_state::dead)
      return;
    b.push(provider_degraded{s.consecutive_failures, s.total_failures, reason});
    change(b, provider_state::degraded, now_ns);
  }

  static decision on(const state& s, const register_provider& c) {
    if (s.registered)
      return cairn::reject("already_registered");
    if (!is_valid_id(c.id))
      return cairn::reject("invalid_provider_id");
    if (!s.id.empty() && s.id != c.id)
      return cairn::reject("provider_id_mismatch");
    if (auto why = validate(c.mode, c.config))
      return cairn::reject(why);
    if (auto why = validate(c.options))
      return cairn::reject(why);
    return cairn::emit<event>(provider_registered{c.id, c.source, c.mode, c.config, c.options});
  }

  static decision on(const state& s, const update_provider& c) {
    if (auto why = validate(s.mode, c.config))
      return cairn::reject(why);
    if (auto why = validate(c.options))
      return cairn::reject(why);
    if (c.config == s.config && c.options == s.options)
      return cairn::emit<event>();
    return cairn::emit<event>(provider_updated{c.config, c.options});
  }

  static decision on(const state& s, const deregister_provider&) {
    if (s.status != provider_state::cold && s.status != provider_state::dead)
      return cairn::reject("provider_running");
    return cairn::emit<event>(provider_deregistered{});
  }

  static decision on(const state& s, const start_provider& c) {
    if (c.jitter_permille < -100 || c.jitter_permille > 100)
      return cairn::reject("jitter_out_of_range");
    switch (s.status) {
      case provider_state::initializing:
      case provider_state::ready: return cairn::reject("already_running");
      case provider_state::degraded:
        if (c.now_ns < retry_at_ns(s, c.jitter_permille))
          return cairn::reject("backoff_not_elapsed");
        break;
      case provider_state::cold:
      case provider_state::dead: break;
    }
    return cairn::emit<event>(
      provider_state_changed{s.status, provider_state::initializing, c.now_ns});
  }

  static decision on(const state& s, const stop_provider& c) {
    if (c.reason.empty())
      return cairn::reject("missing_reason");
    if (s.status == provider_state::initializing)
      return cairn::reject("still_initializing");
    if (s.status != provider_state::ready && s.status != provider_state::degraded)
      return cairn::reject("not_running");
    builder b{s};
    b.push(provider_stopped{c.reason, c.now_ns});
    change(b, provider_state::cold, c.now_ns);
    return b.take();
  }

  static decision on(const state& s, const invoke_tool& c) {
    if (c.tool.empty())
      return cairn::reject("missing_tool");
    if (!is_valid_token(c.correlation_id))
      return cairn::reject("invalid_correlation_id");
    if (s.knows_call(c.correlation_id))
      return cairn::reject("duplicate_correlation_id");
    if (c.timeout_ms < 1 || c.timeout_ms > 600000)
      return cairn::reject("timeout_out_of_range");
    if (c.jitter_permille < -100 || c.jitter_permille > 100)
      return cairn::reject("jitter_out_of_range");
    if (s.status == provider_state::ready)
      return cairn::emit<event>(
        tool_invocation_requested{c.tool, c.arguments, c.correlation_id, c.timeout_ms, c.now_ns});
    builder b{s};
    switch (s.status) {
      case provider_state::ready:               // handled above
      case provider_state::initializing: break; // wait for the start under way
      case provider_state::degraded:
        if (c.now_ns < retry_at_ns(s, c.jitter_permille))
          return cairn::reject("backoff_not_elapsed");
        change(b, provider_state::initializing, c.now_ns);
        break;
      case provider_state::cold:
      case provider_state::dead: change(b, provider_state::initializing, c.now_ns); break;
    }
    b.push(tool_invocation_queued{c.tool, c.arguments, c.correlation_id, c.timeout_ms, c.now_ns});
    return b.take();
  }

  static decision on(const state& s, const record_start_result& c) {
    if (s.status != provider_state::initializing)
      return cairn::reject("not_initializing");
    builder b{s};
    if (c.ok) {
      b.push(provider_started{s.mode, c.tools_count, c.duration_ms, c.tags});
      change(b, provider_state::ready, c.now_ns);
      for (const auto& w : s.waiting) // the calls that waited for this start, in order
        b.push(
          tool_invocation_requested{w.tool, w.arguments, w.correlation_id, w.timeout_ms, c.now_ns});
      return b.take();
    }
    b.push(provider_start_failed{s.consecutive_failures + 1, c.error, c.now_ns});
    const state& after = b.state();
    if (after.consecutive_failures >= after.options.max_consecutive_failures) {
      b.push(provider_degraded{after.consecutive_failures, after.total_failures, "start_failed"});
      change(b, provider_state::degraded, c.now_ns);
    } else {
      change(b, provider_state::dead, c.now_ns);
    }
    for (const auto& w : s.waiting)
      b.push(tool_invocation_abandoned{w.correlation_id, "start_failed: " + c.error, c.now_ns});
    return b.take();
  }

  static decision on(const state& s, const record_health_probe& c) {
    if (s.status != provider_state::ready)
      return cairn::reject("not_ready");
    if (c.ok)
      return cairn::emit<event>(health_check_passed{c.duration_ms, c.now_ns});
    builder b{s};
    b.push(health_check_failed{s.consecutive_failures + 1, c.error, c.now_ns});
    degrade_if_exhausted(b, "health_check_failed", c.now_ns);
    return b.take();
  }

  static decision on(const state& s, const record_invocation_result& c) {
    if (s.pending.count(c.correlation_id) == 0)
      return cairn::reject("unknown_correlation_id");
    if (c.ok)
      return cairn::emit<event>(
        tool_invocation_completed{c.correlation_id, c.duration_ms, c.result_bytes, c.now_ns});
    if (c.type > error_type::timeout)
      return cairn::reject("invalid_error_type");
    builder b{s};
    b.push(tool_invocation_failed{c.correlation_id, c.duration_ms, c.error, c.type, c.now_ns});
    if (is_consecutive_failure(c.type))
      degrade_if_exhausted(b, "invocation_failed", c.now_ns);
    return b.take();
  }

  static decision on(const state& s, const record_transport_died& c) {
    if (s.status != provider_state::ready)
      return cairn::reject("not_ready");
    builder b{s};
    b.push(provider_transport_died{s.consecutive_failures + 1, c.error, c.now_ns});
    change(b, provider_state::dead, c.now_ns);
    degrade_if_exhausted(b, "transport_died", c.now_ns);
    return b.take();
  }

  static decision on(const state& s, const detect_idle& c) {
    if (s.status != provider_state::ready || !s.pending.empty())
      return cairn::emit<event>();
    const std::int64_t idle_ns = c.now_ns - s.last_used_ns;
    if (idle_ns < std::int64_t{s.options.idle_ttl_s} * ns_per_s)
      return cairn::emit<event>();
    builder b{s};
    b.push(provider_idle_detected{idle_ns / ns_per_s, s.last_used_ns});
    b.push(provider_stopped{"idle", c.now_ns});
    change(b, provider_state::cold, c.now_ns);
    return b.take();
  }

  // evolve: one overload per event; total, never fails.

  static void failed(state& s, const std::string& error, std::int64_t at_ns, bool consecutive) {
    ++s.total_failures;
    if (consecutive)
      ++s.consecutive_failures;
    s.last_failure_ns = at_ns;
    s.last_error = error;
  }

  static void apply(state& s, const provider_registered& e) {
    s.registered = true;
    s.id = e.id;
    s.source = e.source;
    s.mode = e.mode;
    s.config = e.config;
    s.options = e.options;
  }
  static void apply(state& s, const provider_updated& e) {
    s.config = e.config;
    s.options = e.options;
  }
  static void apply(state& s, const provider_deregistered&) {
    s.registered = false;
    s.pending.clear();
  }
  static void apply(state& s, const provider_state_changed& e) {
    s.status = e.new_state;
    s.last_state_change_ns = e.at_ns;
    if (e.new_state == provider_state::ready)
      s.last_used_ns = e.at_ns; // the idle clock starts when the provider becomes ready
  }
  static void apply(state& s, const provider_started& e) {
    s.tools_count = e.tools_count;
    s.tags = e.tags;
    s.consecutive_failures = 0;
  }
  static void apply(state& s, const provider_start_failed& e) { failed(s, e.error, e.at_ns, true); }
  static void apply(state& s, const provider_stopped&) {
    s.pending.clear(); // the transport is gone; late results are unknown
  }
  static void apply(state&, const provider_degraded&) {}      // the state change carries it
  static void apply(state&, const provider_idle_detected&) {} // the stop carries it
  static void apply(state& s, const provider_transport_died& e) {
    failed(s, e.error, e.at_ns, true);
  }
  /// Removes `correlation_id` from the waiting calls; true if it was there.
  static bool unqueue(state& s, const std::string& correlation_id) {
    auto it = std::find_if(s.waiting.begin(), s.waiting.end(), [&](const waiting_invocation& w) {
      return w.correlation_id == correlation_id;
    });
    if (it == s.waiting.end())
      return false;
    s.waiting.erase(it);
    return true;
  }

  static void apply(state& s, const tool_invocation_queued& e) {
    s.waiting.push_back(
      waiting_invocation{e.tool, e.arguments, e.correlation_id, e.timeout_ms, e.at_ns});
    ++s.total_invocations;
    s.last_used_ns = e.at_ns;
  }
  static void apply(state& s, const tool_invocation_abandoned& e) {
    (void)unqueue(s, e.correlation_id);
  }
  static void apply(state& s, const tool_invocation_requested& e) {
    s.pending[e.correlation_id] = pending_invocation{e.tool, e.timeout_ms, e.at_ns};
    if (!unqueue(s, e.correlation_id)) // a queued call was counted when it was accepted
      ++s.total_invocations;
    s.last_used_ns = e.at_ns;
  }
  static void apply(state& s, const tool_invocation_completed& e) {
    s.pending.erase(e.correlation_id);
    s.consecutive_failures = 0;
    s.last_success_ns = e.at_ns;
    s.last_used_ns = e.at_ns;
  }
  static void apply(state& s, const tool_invocation_failed& e) {
    s.pending.erase(e.correlation_id);
    failed(s, e.error, e.at_ns, is_consecutive_failure(e.type));
    s.last_used_ns = e.at_ns;
  }
  static void apply(state& s, const health_check_passed& e) {
    s.consecutive_failures = 0;
    s.last_success_ns = e.at_ns;
  }
  static void apply(state& s, const health_check_failed& e) { failed(s, e.error, e.at_ns, true); }
};

} // namespace hangar

CEREAL_CLASS_VERSION(hangar::provider_started, 2)
CEREAL_CLASS_VERSION(hangar::provider::state, 3)
