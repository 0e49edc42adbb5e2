#pragma once

/// The provider group aggregate: members, rotation, a selection strategy
/// and one circuit breaker per group.
///
///   rt.register_aggregate<hangar::provider_group>();   // streams "provider_group-<id>"
///   rt.send<hangar::provider_group>("tools", hangar::create_group{"tools", {}});
///   rt.send<hangar::provider_group>("tools", hangar::add_member{"math", 10, 1});
///   auto o = rt.send<hangar::provider_group>("tools", hangar::select_member{"req-1", now, seed}).get();
///   // o->events holds member_selected{"req-1", "math", now}; after the call:
///   rt.send<hangar::provider_group>("tools", hangar::record_member_result{"math", true, ...});
///
/// Group state is derived (circuit open -> degraded; no member in rotation
/// -> inactive; fewer than min_healthy -> partial; else healthy) and every
/// change of it is a `group_state_changed` event. The breaker counts
/// consecutive request failures; open -> half_open happens on `tick(now)` or
/// on the first `select_member` after the reset timeout, as an event either
/// way. Choices are deterministic from the state and the command: a cursor
/// in the state, and the seed of `select_member` for `random`.
///
/// The group learns its members' lifecycle from their providers' events
/// (`record_member_lifecycle`, sent by the bridge). A member whose provider
/// was stopped (idle or on request) is not failing: it stays in (or comes
/// back into) rotation, selecting it starts it on demand, and a failure
/// reported while it is stopped counts neither against rotation nor the
/// breaker.

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include <cereal/types/common.hpp>
#include <cereal/types/map.hpp>
#include <cereal/types/string.hpp>
#include <cereal/types/variant.hpp>

#include "cairn/model/aggregate.hpp"
#include "hangar/common.hpp"

namespace hangar {

// -- vocabulary ---------------------------------------------------------------
// Enumerations are stored as their numbers: append new values at the end.

enum class selection_strategy : std::uint8_t {
  round_robin,          ///< Members in rotation in id order, one after the other.
  weighted_round_robin, ///< Like round_robin, each member `weight` times per cycle.
  least_connections,    ///< Fewest selected-but-unanswered requests; ties in turn.
  random,               ///< Weighted by the members' weights, from the seed in select_member.
  priority,             ///< Lowest `priority` value first; ties in turn.
};

enum class group_state : std::uint8_t { inactive, partial, healthy, degraded };

enum class circuit_state : std::uint8_t { closed, open, half_open };

/// What the group knows of a member's provider, from the provider's state
/// changes: initializing -> starting, ready -> ready, cold -> stopped, dead
/// or degraded -> failing; `unknown` until the first one arrives.
enum class member_lifecycle : std::uint8_t { unknown, starting, ready, stopped, failing };

/// What a member result reports. Only `request` results feed the breaker and
/// answer a selection; `health_check` results (the provider's own probes,
/// forwarded by the bridge) only move the member in and out of rotation,
/// which is how a member out of rotation, never selected, comes back.
enum class member_result_kind : std::uint8_t { request, health_check };

[[nodiscard]] constexpr const char* to_string(selection_strategy s) noexcept {
  switch (s) {
    case selection_strategy::round_robin: return "round_robin";
    case selection_strategy::weighted_round_robin: return "weighted_round_robin";
    case selection_strategy::least_connections: return "least_connections";
    case selection_strategy::random: return "random";
    case selection_strategy::priority: return "priority";
  }
  return "unknown";
}

[[nodiscard]] constexpr const char* to_string(group_state s) noexcept {
  switch (s) {
    case group_state::inactive: return "inactive";
    case group_state::partial: return "partial";
    case group_state::healthy: return "healthy";
    case group_state::degraded: return "degraded";
  }
  return "unknown";
}

[[nodiscard]] constexpr const char* to_string(circuit_state s) noexcept {
  switch (s) {
    case circuit_state::closed: return "closed";
    case circuit_state::open: return "open";
    case circuit_state::half_open: return "half_open";
  }
  return "unknown";
}

[[nodiscard]] constexpr const char* to_string(member_lifecycle l) noexcept {
  switch (l) {
    case member_lifecycle::unknown: return "unknown";
    case member_lifecycle::starting: return "starting";
    case member_lifecycle::ready: return "ready";
    case member_lifecycle::stopped: return "stopped";
    case member_lifecycle::failing: return "failing";
  }
  return "unknown";
}

[[nodiscard]] constexpr const char* to_string(member_result_kind k) noexcept {
  switch (k) {
    case member_result_kind::request: return "request";
    case member_result_kind::health_check: return "health_check";
  }
  return "unknown";
}

/// "round_robin" -> selection_strategy::round_robin; nullopt for anything else.
[[nodiscard]] inline std::optional<selection_strategy>
parse_selection_strategy(std::string_view s) {
  for (auto v : {selection_strategy::round_robin, selection_strategy::weighted_round_robin,
                 selection_strategy::least_connections, selection_strategy::random,
                 selection_strategy::priority})
    if (s == to_string(v))
      return v;
  return std::nullopt;
}

/// Group configuration. Ranges are checked by create/update.
struct group_options {
  selection_strategy strategy = selection_strategy::round_robin;
  std::uint32_t min_healthy = 1;                ///< 1..100. Default 1.
  std::uint32_t unhealthy_threshold = 2;        ///< 1..100. Default 2 consecutive failures -> out.
  std::uint32_t healthy_threshold = 1;          ///< 1..100. Default 1 success -> back in.
  std::uint32_t circuit_failure_threshold = 10; ///< 1..1000. Default 10 consecutive failures.
  std::uint32_t circuit_reset_timeout_s = 60;   ///< 1..86400. Default 60: open -> half_open.
  std::uint32_t probe_count = 1;                ///< 1..100. Default 1 success to close.

  template <class Ar> void serialize(Ar& ar) {
    ar(strategy, min_healthy, unhealthy_threshold, healthy_threshold, circuit_failure_threshold,
       circuit_reset_timeout_s, probe_count);
  }
  friend bool operator==(const group_options& a, const group_options& b) {
    return a.strategy == b.strategy && a.min_healthy == b.min_healthy
           && a.unhealthy_threshold == b.unhealthy_threshold
           && a.healthy_threshold == b.healthy_threshold
           && a.circuit_failure_threshold == b.circuit_failure_threshold
           && a.circuit_reset_timeout_s == b.circuit_reset_timeout_s
           && a.probe_count == b.probe_count;
  }
};

/// The rejection reason for options out of range, or nullptr when valid.
[[nodiscard]] inline const char* validate(const group_options& o) noexcept {
  auto in = [](std::uint32_t v, std::uint32_t lo, std::uint32_t hi) { return v >= lo && v <= hi; };
  if (o.strategy > selection_strategy::priority)
    return "invalid_strategy";
  if (!in(o.min_healthy, 1, 100))
    return "min_healthy_out_of_range";
  if (!in(o.unhealthy_threshold, 1, 100))
    return "unhealthy_threshold_out_of_range";
  if (!in(o.healthy_threshold, 1, 100))
    return "healthy_threshold_out_of_range";
  if (!in(o.circuit_failure_threshold, 1, 1000))
    return "circuit_failure_threshold_out_of_range";
  if (!in(o.circuit_reset_timeout_s, 1, 86400))
    return "circuit_reset_timeout_out_of_range";
  if (!in(o.probe_count, 1, 100))
    return "probe_count_out_of_range";
  return nullptr;
}

// -- commands -------------------------------------------------------------------
// Times are wall-clock nanoseconds since the epoch, read by the sender.

/// Creates the group; `group_id` must equal the aggregate id.
struct create_group {
  std::string group_id;
  group_options options;
  template <class Ar> void serialize(Ar& ar) { ar(group_id, options); }
};

/// Replaces the options; no event when nothing changes.
struct update_group {
  group_options options;
  template <class Ar> void serialize(Ar& ar) { ar(options); }
};

/// Deletes the group and its members; it may be created again.
struct delete_group {
  template <class Ar> void serialize(Ar&) {}
};

/// Adds a provider; new members start in rotation.
struct add_member {
  std::string provider_id;
  std::uint32_t weight = 1;   ///< 1..100.
  std::uint32_t priority = 1; ///< 1..100; 1 is tried first by `priority`.
  template <class Ar> void serialize(Ar& ar) { ar(provider_id, weight, priority); }
};

struct remove_member {
  std::string provider_id;
  template <class Ar> void serialize(Ar& ar) { ar(provider_id); }
};

/// Picks the member for one request, or is rejected: circuit_open,
/// probe_limit_reached, no_healthy_members.
struct select_member {
  std::string request_id; ///< 1-255 printable bytes.
  std::int64_t now_ns = 0;
  std::uint64_t seed = 0; ///< Used by `random` only; drawn by the sender.
  template <class Ar> void serialize(Ar& ar) { ar(request_id, now_ns, seed); }
};

/// The outcome of a request sent to `member`, or of its health probe.
struct record_member_result {
  std::string member;
  bool ok = false;
  member_result_kind kind = member_result_kind::request;
  std::int64_t now_ns = 0;
  template <class Ar> void serialize(Ar& ar) { ar(member, ok, kind, now_ns); }
};

/// What `member`'s provider became (the bridge maps its state changes); no
/// event when the group knows it already. `stopped` brings a member that was
/// out of rotation back in (reason "provider_stopped"): a stopped provider is
/// not failing, and selecting it starts it on demand.
struct record_member_lifecycle {
  std::string member;
  member_lifecycle lifecycle = member_lifecycle::unknown;
  std::string reason; ///< What the provider said: "idle", "manual", "start_failed", ...
  std::int64_t now_ns = 0;
  template <class Ar> void serialize(Ar& ar) { ar(member, lifecycle, reason, now_ns); }
};

/// Closes the breaker by hand (from open or half_open, or clears a closed
/// breaker's failure count); no event when closed with no failures.
struct reset_circuit {
  std::int64_t now_ns = 0;
  template <class Ar> void serialize(Ar& ar) { ar(now_ns); }
};

/// The breaker timer: open -> half_open once circuit_reset_timeout_s has
/// passed since it opened; no events otherwise.
struct tick {
  std::int64_t now_ns = 0;
  template <class Ar> void serialize(Ar& ar) { ar(now_ns); }
};

// -- events ---------------------------------------------------------------------

struct group_created {
  static constexpr const char* type_name = "group_created";
  std::string group_id;
  group_options options;
  template <class Ar> void serialize(Ar& ar) { ar(group_id, options); }
};

struct group_updated {
  static constexpr const char* type_name = "group_updated";
  group_options options;
  template <class Ar> void serialize(Ar& ar) { ar(options); }
};

struct group_deleted {
  static constexpr const char* type_name = "group_deleted";
  template <class Ar> void serialize(Ar&) {}
};

struct group_member_added {
  static constexpr const char* type_name = "group_member_added";
  std::string provider_id;
  std::uint32_t weight = 1;
  std::uint32_t priority = 1;
  template <class Ar> void serialize(Ar& ar) { ar(provider_id, weight, priority); }
};

struct group_member_removed {
  static constexpr const char* type_name = "group_member_removed";
  std::string provider_id;
  template <class Ar> void serialize(Ar& ar) { ar(provider_id); }
};

struct group_member_health_changed {
  static constexpr const char* type_name = "group_member_health_changed";
  std::string member;
  bool in_rotation = true;
  std::string reason; ///< "unhealthy_threshold" or "healthy_threshold".
  template <class Ar> void serialize(Ar& ar) { ar(member, in_rotation, reason); }
};

struct group_state_changed {
  static constexpr const char* type_name = "group_state_changed";
  group_state old_state = group_state::inactive;
  group_state new_state = group_state::inactive;
  std::uint32_t healthy = 0; ///< Members in rotation, after the change.
  std::uint32_t total = 0;   ///< Members, after the change.
  template <class Ar> void serialize(Ar& ar) { ar(old_state, new_state, healthy, total); }
};

struct group_circuit_opened {
  static constexpr const char* type_name = "group_circuit_opened";
  std::uint32_t failure_count = 0; ///< Consecutive failures that opened it.
  std::int64_t opened_at_ns = 0;
  template <class Ar> void serialize(Ar& ar) { ar(failure_count, opened_at_ns); }
};

struct group_circuit_half_opened {
  static constexpr const char* type_name = "group_circuit_half_opened";
  std::int64_t at_ns = 0;
  template <class Ar> void serialize(Ar& ar) { ar(at_ns); }
};

struct group_circuit_closed {
  static constexpr const char* type_name = "group_circuit_closed";
  std::string reason; ///< "probes_succeeded" or "manual_reset".
  std::int64_t at_ns = 0;
  template <class Ar> void serialize(Ar& ar) { ar(reason, at_ns); }
};

struct member_selected {
  static constexpr const char* type_name = "member_selected";
  std::string request_id;
  std::string member;
  std::int64_t at_ns = 0;
  template <class Ar> void serialize(Ar& ar) { ar(request_id, member, at_ns); }
};

/// Not in the original list: what the group learned of a member's provider
/// (record_member_lifecycle).
struct group_member_lifecycle_changed {
  static constexpr const char* type_name = "group_member_lifecycle_changed";
  std::string member;
  member_lifecycle lifecycle = member_lifecycle::unknown;
  std::string reason;
  std::int64_t at_ns = 0;
  template <class Ar> void serialize(Ar& ar) { ar(member, lifecycle, reason, at_ns); }
};

/// Not in the original list: member health and breaker counts are state, so
/// each result is an event.
struct member_result_recorded {
  static constexpr const char* type_name = "member_result_recorded";
  std::string member;
  bool ok = false;
  member_result_kind kind = member_result_kind::request;
  std::int64_t at_ns = 0;
  template <class Ar> void serialize(Ar& ar) { ar(member, ok, kind, at_ns); }
};

// -- the aggregate ----------------------------------------------------------------

struct group_member {
  std::uint32_t weight = 1;
  std::uint32_t priority = 1;
  bool in_rotation = true;
  std::uint32_t consecutive_failures = 0;
  std::uint32_t consecutive_successes = 0;
  std::uint32_t active = 0; ///< Selected requests without a result yet.
  member_lifecycle lifecycle = member_lifecycle::unknown; ///< State schema 2.
  template <class Ar> void serialize(Ar& ar) {
    ar(weight, priority, in_rotation, consecutive_failures, consecutive_successes, active,
       lifecycle);
  }
};

struct circuit_breaker {
  circuit_state state = circuit_state::closed;
  std::uint32_t failure_count =
    0; ///< Consecutive request failures (closed), or those that opened it.
  std::int64_t opened_at_ns = 0;
  std::uint32_t probes_sent = 0;     ///< Selections while half_open.
  std::uint32_t probe_successes = 0; ///< Successes while half_open.
  template <class Ar> void serialize(Ar& ar) {
    ar(state, failure_count, opened_at_ns, probes_sent, probe_successes);
  }
};

struct provider_group {
  static constexpr const char* category = "provider_group"; // streams "provider_group-<id>"

  /// Snapshot schema 2 (CEREAL_CLASS_VERSION below) adds each member's
  /// `lifecycle`. Schema 1 was stored without a version number, so its
  /// snapshots cannot be read into this state: the runtime ignores a snapshot
  /// whose schema is not current and replays the events instead.
  struct state {
    bool created = false;
    std::string id;
    group_options options;
    std::map<std::string, group_member> members; ///< By provider id.
    circuit_breaker circuit;
    group_state status = group_state::inactive; ///< Set only by group_state_changed.
    std::uint64_t cursor = 0;                   ///< Selections so far: drives the turn order.

    /// Members in rotation.
    [[nodiscard]] std::uint32_t healthy() const {
      std::uint32_t n = 0;
      for (const auto& kv : members)
        n += kv.second.in_rotation ? 1 : 0;
      return n;
    }

    template <class Ar> void serialize(Ar& ar, std::uint32_t /*version*/) {
      ar(created, id, options, members, circuit, status, cursor);
    }
  };

  using command =
    std::variant<create_group, update_group, delete_group, add_member, remove_member, select_member,
                 record_member_result, reset_circuit, tick, record_member_lifecycle>;
  using event =
    std::variant<group_created, group_updated, group_deleted, group_member_added,
                 group_member_removed, group_member_health_changed, group_state_changed,
                 group_circuit_opened, group_circuit_half_opened, group_circuit_closed,
                 member_selected, member_result_recorded, group_member_lifecycle_changed>;

  [[nodiscard]] static state initial() { return {}; }

  [[nodiscard]] static cairn::decision<event> decide(const state& s, const command& c) {
    if (!s.created && !std::holds_alternative<create_group>(c))
      return cairn::reject("group_not_found");
    return std::visit([&](const auto& cmd) { return on(s, cmd); }, c);
  }

  [[nodiscard]] static state evolve(state s, const event& e) {
    std::visit([&](const auto& ev) { apply(s, ev); }, e);
    return s;
  }

  /// What `status` must be for `s`: circuit open -> degraded; no member in
  /// rotation -> inactive; fewer than min_healthy -> partial; else healthy.
  [[nodiscard]] static group_state derive_status(const state& s) {
    if (!s.created)
      return group_state::inactive;
    if (s.circuit.state == circuit_state::open)
      return group_state::degraded;
    const std::uint32_t n = s.healthy();
    if (n == 0)
      return group_state::inactive;
    return n < s.options.min_healthy ? group_state::partial : group_state::healthy;
  }

  /// True in the states that accept requests (healthy and partial).
  [[nodiscard]] static bool accepts_requests(group_state g) {
    return g == group_state::healthy || g == group_state::partial;
  }

private:
  using builder = detail::event_builder<provider_group>;
  using decision = cairn::decision<event>;

  /// Pushes `e`, then a group_state_changed when `e` changed the derived state.
  template <class E> static void push(builder& b, E e) {
    b.push(std::move(e));
    const state& s = b.state();
    const group_state now = derive_status(s);
    if (now != s.status)
      b.push(group_state_changed{s.status, now, s.healthy(),
                                 static_cast<std::uint32_t>(s.members.size())});
  }

  static bool reset_elapsed(const state& s, std::int64_t now_ns) {
    return now_ns - s.circuit.opened_at_ns
           >= std::int64_t{s.options.circuit_reset_timeout_s} * ns_per_s;
  }

  /// SplitMix64: spreads consecutive seeds over the whole range.
  static std::uint64_t mix(std::uint64_t x) {
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
  }

  /// The member for the next request; `s` has at least one member in rotation.
  static const std::string& pick(const state& s, std::uint64_t seed) {
    std::vector<const std::string*> in;
    for (const auto& kv : s.members)
      if (kv.second.in_rotation)
        in.push_back(&kv.first);
    // Among the members that tie on the strategy's key, the cursor takes turns.
    auto in_turn = [&](auto better, auto same) -> const std::string& {
      const group_member* best = nullptr;
      for (const auto* id : in)
        if (!best || better(s.members.at(*id), *best))
          best = &s.members.at(*id);
      std::vector<const std::string*> tied;
      for (const auto* id : in)
        if (same(s.members.at(*id), *best))
          tied.push_back(id);
      return *tied[s.cursor % tied.size()];
    };
    switch (s.options.strategy) {
      case selection_strategy::weighted_round_robin: {
        std::uint64_t total = 0;
        for (const auto* id : in)
          total += s.members.at(*id).weight;
        std::uint64_t slot = s.cursor % total;
        for (const auto* id : in) {
          const std::uint64_t w = s.members.at(*id).weight;
          if (slot < w)
            return *id;
          slot -= w;
        }
        return *in.back(); // unreachable: slot < total
      }
      case selection_strategy::least_connections:
        return in_turn([](const group_member& a,
                          const group_member& b) { return a.active < b.active; },
                       [](const group_member& a, const group_member& b) {
                         return a.active == b.active;
                       });
      case selection_strategy::random: {
        // Weighted: member i is drawn with probability weight_i / total.
        std::uint64_t total = 0;
        for (const auto* id : in)
          total += s.members.at(*id).weight;
        std::uint64_t slot = mix(seed) % total;
        for (const auto* id : in) {
          const std::uint64_t w = s.members.at(*id).weight;
          if (slot < w)
            return *id;
          slot -= w;
        }
        return *in.back(); // unreachable: slot < total
      }
      case selection_strategy::priority:
        return in_turn([](const group_member& a,
                          const group_member& b) { return a.priority < b.priority; },
                       [](const group_member& a, const group_member& b) {
                         return a.priority == b.priority;
                       });
      case selection_strategy::round_robin: break;
    }
    return *in[s.cursor % in.size()];
  }

  static decision on(const state& s, const create_group& c) {
    if (s.created)
      return cairn::reject("group_already_exists");
    if (!is_valid_id(c.group_id))
      return cairn::reject("invalid_group_id");
    if (!s.id.empty() && s.id != c.group_id)
      return cairn::reject("group_id_mismatch");
    if (auto why = validate(c.options))
      return cairn::reject(why);
    builder b{s};
    push(b, group_created{c.group_id, c.options});
    return b.take();
  }

  static decision on(const state& s, const update_group& c) {
    if (auto why = validate(c.options))
      return cairn::reject(why);
    if (c.options == s.options)
      return cairn::emit<event>();
    builder b{s};
    push(b, group_updated{c.options});
    return b.take();
  }

  static decision on(const state& s, const delete_group&) {
    builder b{s};
    push(b, group_deleted{});
    return b.take();
  }

  static decision on(const state& s, const add_member& c) {
    if (!is_valid_id(c.provider_id))
      return cairn::reject("invalid_provider_id");
    if (s.members.count(c.provider_id) != 0)
      return cairn::reject("member_already_exists");
    if (c.weight < 1 || c.weight > 100)
      return cairn::reject("weight_out_of_range");
    if (c.priority < 1 || c.priority > 100)
      return cairn::reject("priority_out_of_range");
    builder b{s};
    push(b, group_member_added{c.provider_id, c.weight, c.priority});
    return b.take();
  }

  static decision on(const state& s, const remove_member& c) {
    if (s.members.count(c.provider_id) == 0)
      return cairn::reject("unknown_member");
    builder b{s};
    push(b, group_member_removed{c.provider_id});
    return b.take();
  }

  static decision on(const state& s, const select_member& c) {
    if (!is_valid_token(c.request_id))
      return cairn::reject("invalid_request_id");
    builder b{s};
    if (s.circuit.state == circuit_state::open) {
      if (!reset_elapsed(s, c.now_ns))
        return cairn::reject("circuit_open");
      push(b, group_circuit_half_opened{c.now_ns}); // this request is the probe
    }
    const state& now = b.state();
    if (now.circuit.state == circuit_state::half_open
        && now.circuit.probes_sent >= now.options.probe_count)
      return cairn::reject("probe_limit_reached");
    if (!accepts_requests(now.status))
      return cairn::reject("no_healthy_members");
    push(b, member_selected{c.request_id, pick(now, c.seed), c.now_ns});
    return b.take();
  }

  static decision on(const state& s, const record_member_result& c) {
    auto it = s.members.find(c.member);
    if (it == s.members.end())
      return cairn::reject("unknown_member");
    if (c.kind > member_result_kind::health_check)
      return cairn::reject("invalid_result_kind");
    builder b{s};
    push(b, member_result_recorded{c.member, c.ok, c.kind, c.now_ns});
    if (!c.ok && it->second.lifecycle == member_lifecycle::stopped)
      return b.take(); // not a failure: see apply(member_result_recorded)
    const state& after = b.state();
    const group_member& m = after.members.at(c.member);
    if (m.in_rotation && m.consecutive_failures >= after.options.unhealthy_threshold)
      push(b, group_member_health_changed{c.member, false, "unhealthy_threshold"});
    else if (!m.in_rotation && m.consecutive_successes >= after.options.healthy_threshold)
      push(b, group_member_health_changed{c.member, true, "healthy_threshold"});
    if (c.kind != member_result_kind::request)
      return b.take();
    const circuit_breaker& cb = b.state().circuit;
    if (cb.state == circuit_state::closed
        && cb.failure_count >= after.options.circuit_failure_threshold)
      push(b, group_circuit_opened{cb.failure_count, c.now_ns});
    else if (cb.state == circuit_state::half_open && !c.ok)
      push(b, group_circuit_opened{cb.failure_count, c.now_ns});
    else if (cb.state == circuit_state::half_open
             && cb.probe_successes >= after.options.probe_count)
      push(b, group_circuit_closed{"probes_succeeded", c.now_ns});
    return b.take();
  }

  static decision on(const state& s, const record_member_lifecycle& c) {
    auto it = s.members.find(c.member);
    if (it == s.members.end())
      return cairn::reject("unknown_member");
    if (c.lifecycle > member_lifecycle::failing)
      return cairn::reject("invalid_lifecycle");
    if (it->second.lifecycle == c.lifecycle)
      return cairn::emit<event>();
    builder b{s};
    push(b, group_member_lifecycle_changed{c.member, c.lifecycle, c.reason, c.now_ns});
    if (c.lifecycle == member_lifecycle::stopped && !b.state().members.at(c.member).in_rotation)
      push(b, group_member_health_changed{c.member, true, "provider_stopped"});
    return b.take();
  }

  static decision on(const state& s, const reset_circuit& c) {
    if (s.circuit.state == circuit_state::closed && s.circuit.failure_count == 0)
      return cairn::emit<event>();
    builder b{s};
    push(b, group_circuit_closed{"manual_reset", c.now_ns});
    return b.take();
  }

  static decision on(const state& s, const tick& c) {
    if (s.circuit.state != circuit_state::open || !reset_elapsed(s, c.now_ns))
      return cairn::emit<event>();
    builder b{s};
    push(b, group_circuit_half_opened{c.now_ns});
    return b.take();
  }

  // evolve: one overload per event; total, never fails.

  static void apply(state& s, const group_created& e) {
    const group_state status = s.status; // changes only through group_state_changed
    s = initial();
    s.created = true;
    s.id = e.group_id;
    s.options = e.options;
    s.status = status;
  }
  static void apply(state& s, const group_updated& e) { s.options = e.options; }
  static void apply(state& s, const group_deleted&) {
    s.created = false;
    s.members.clear();
    s.circuit = circuit_breaker{};
    s.cursor = 0;
  }
  static void apply(state& s, const group_member_added& e) {
    group_member m;
    m.weight = e.weight;
    m.priority = e.priority;
    s.members[e.provider_id] = m;
  }
  static void apply(state& s, const group_member_removed& e) { s.members.erase(e.provider_id); }
  static void apply(state& s, const group_member_health_changed& e) {
    auto it = s.members.find(e.member);
    if (it != s.members.end())
      it->second.in_rotation = e.in_rotation;
  }
  static void apply(state& s, const group_state_changed& e) { s.status = e.new_state; }
  static void apply(state& s, const group_circuit_opened& e) {
    s.circuit.state = circuit_state::open;
    s.circuit.failure_count = e.failure_count;
    s.circuit.opened_at_ns = e.opened_at_ns;
    s.circuit.probes_sent = 0;
    s.circuit.probe_successes = 0;
  }
  static void apply(state& s, const group_circuit_half_opened&) {
    s.circuit.state = circuit_state::half_open;
    s.circuit.probes_sent = 0;
    s.circuit.probe_successes = 0;
  }
  static void apply(state& s, const group_circuit_closed&) { s.circuit = circuit_breaker{}; }
  static void apply(state& s, const member_selected& e) {
    ++s.cursor;
    auto it = s.members.find(e.member);
    if (it != s.members.end())
      ++it->second.active;
    if (s.circuit.state == circuit_state::half_open)
      ++s.circuit.probes_sent;
  }
  static void apply(state& s, const group_member_lifecycle_changed& e) {
    auto it = s.members.find(e.member);
    if (it == s.members.end())
      return;
    it->second.lifecycle = e.lifecycle;
    if (e.lifecycle == member_lifecycle::stopped)
      it->second.consecutive_failures = 0; // a stop ends a failure streak: it is not one
  }
  static void apply(state& s, const member_result_recorded& e) {
    auto it = s.members.find(e.member);
    if (it == s.members.end())
      return;
    group_member& m = it->second;
    if (!e.ok && m.lifecycle == member_lifecycle::stopped) {
      // A stopped member refusing (or a call the stop cut short) is not
      // failing: it counts neither against rotation nor the breaker.
      if (e.kind != member_result_kind::request)
        return;
      if (m.active > 0)
        --m.active;
      if (s.circuit.state == circuit_state::half_open && s.circuit.probes_sent > 0)
        --s.circuit.probes_sent; // the probe did not reach a running member: send another
      return;
    }
    if (e.ok) {
      m.consecutive_failures = 0;
      ++m.consecutive_successes;
    } else {
      ++m.consecutive_failures;
      m.consecutive_successes = 0;
    }
    if (e.kind != member_result_kind::request)
      return;
    if (m.active > 0)
      --m.active;
    circuit_breaker& cb = s.circuit;
    switch (cb.state) {
      case circuit_state::closed: cb.failure_count = e.ok ? 0 : cb.failure_count + 1; break;
      case circuit_state::open: break; // ignored while open
      case circuit_state::half_open:
        if (e.ok)
          ++cb.probe_successes; // a failure reopens: group_circuit_opened follows
        break;
    }
  }
};

} // namespace hangar

CEREAL_CLASS_VERSION(hangar::provider_group::state, 2)
