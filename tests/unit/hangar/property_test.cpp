// Random command sequences against both hangar aggregates. After every step:
// the live state (decide's events applied with evolve as they were built)
// equals the replayed state (every event encoded, decoded and folded from
// initial()), a snapshot round trip decides the same, and the invariants hold.

#include <cstdint>
#include <initializer_list>
#include <iterator>
#include <random>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "cairn/persistence/codec.hpp"
#include "cairn/runtime/runtime.hpp"
#include "fixtures.hpp"

using namespace hangar;
using hangar_test::sec;

namespace {

template <class T> std::string bytes_of(const T& value) {
  std::string out;
  cairn::persistence::encode_payload(value, out);
  return out;
}

/// Runs `steps` commands from `next(rng, state)` and checks the properties;
/// `check(before, cmd, decision, after)` adds the aggregate's invariants.
template <class A, class Next, class Check>
void run(std::uint64_t seed, int steps, Next next, Check check) {
  cairn::persistence::event_registry reg;
  REQUIRE(cairn::persistence::register_event_types<typename A::event>(reg));
  std::mt19937_64 rng{seed};
  typename A::state live = A::initial();
  typename A::state replayed = A::initial();
  std::vector<cairn::persistence::event_data> stored;
  int accepted = 0;
  for (int i = 0; i < steps; ++i) {
    const typename A::command cmd = next(rng, live);
    auto d = A::decide(live, cmd);
    // A snapshot of the state must decide exactly as the state itself.
    auto snap = cairn::persistence::decode_payload<typename A::state>(bytes_of(live));
    REQUIRE(snap);
    auto d_snap = A::decide(*snap, cmd);
    REQUIRE(bool(d) == bool(d_snap));
    if (!d) {
      CHECK(d.error().reason == d_snap.error().reason);
      continue;
    }
    ++accepted;
    REQUIRE(bytes_of(*d) == bytes_of(*d_snap));
    const typename A::state before = live;
    for (const auto& e : *d) {
      live = A::evolve(std::move(live), e);
      auto enc = reg.encode(e);
      REQUIRE(enc);
      auto dec = reg.decode<typename A::event>(enc->type, enc->schema_version, enc->payload);
      REQUIRE(dec);
      replayed = A::evolve(std::move(replayed), *dec);
      stored.push_back(std::move(*enc));
    }
    REQUIRE(bytes_of(live) == bytes_of(replayed));
    check(before, cmd, *d, live);
  }
  // And a replay from scratch, as on activation without a snapshot.
  typename A::state folded = A::initial();
  for (const auto& ev : stored) {
    auto dec = reg.decode<typename A::event>(ev.type, ev.schema_version, ev.payload);
    REQUIRE(dec);
    folded = A::evolve(std::move(folded), *dec);
  }
  CHECK(bytes_of(folded) == bytes_of(live));
  CHECK(accepted > steps / 10); // the generator reaches past the rejections
}

template <class T> T pick(std::mt19937_64& rng, std::initializer_list<T> options) {
  std::uniform_int_distribution<std::size_t> d{0, options.size() - 1};
  return *(options.begin() + d(rng));
}

int roll(std::mt19937_64& rng, int n) { return std::uniform_int_distribution<int>{0, n - 1}(rng); }

// -- provider -------------------------------------------------------------------------------

class provider_gen {
public:
  /// One max_consecutive_failures per run, so a re-registration cannot
  /// lower it under a dead provider's count.
  explicit provider_gen(std::uint32_t max_failures) : max_failures_(max_failures) {}

  provider::command operator()(std::mt19937_64& rng, const provider::state& s) {
    now_ += roll(rng, 3) == 0 ? sec(roll(rng, 400)) : sec(roll(rng, 5));
    auto some_call = [&]() -> std::string {
      if (!s.pending.empty() && roll(rng, 4) != 0) {
        auto it = s.pending.begin();
        std::advance(it, roll(rng, static_cast<int>(s.pending.size())));
        return it->first;
      }
      return "c" + std::to_string(roll(rng, next_call_ + 1));
    };
    const auto type = pick(rng,
                           {error_type::application, error_type::transport, error_type::timeout});
    switch (roll(rng, 13)) {
      case 0: {
        provider_options o;
        o.max_consecutive_failures = max_failures_;
        o.idle_ttl_s = static_cast<std::uint32_t>(roll(rng, 2) == 0 ? 300 : 0); // 0: rejected
        return register_provider{"p", "prop", provider_mode::subprocess, hangar_test::math_config(),
                                 o};
      }
      case 1: {
        provider_options o = s.options;
        o.idle_ttl_s = static_cast<std::uint32_t>(1 + roll(rng, 600));
        return update_provider{s.config, o};
      }
      case 2: return deregister_provider{};
      case 3:
      case 4: return start_provider{now_, static_cast<std::int32_t>(roll(rng, 201) - 100)};
      case 5: return stop_provider{roll(rng, 8) == 0 ? "" : "manual", now_};
      case 6:
      case 7:
        return invoke_tool{"add", "{}", "c" + std::to_string(next_call_++),
                           30000, now_, static_cast<std::int32_t>(roll(rng, 201) - 100)};
      case 8:
      case 9:
        return record_invocation_result{some_call(), roll(rng, 2) == 0, 5, 10, "err", type, now_};
      case 10: return record_start_result{roll(rng, 2) == 0, 2, 50, {}, "exec failed", now_};
      case 11:
        if (roll(rng, 2) == 0)
          return record_transport_died{"exited", now_};
        return record_health_probe{roll(rng, 2) == 0, 3, "no pong", now_};
      default: return detect_idle{now_};
    }
  }

private:
  std::uint32_t max_failures_;
  std::int64_t now_ = sec(1);
  int next_call_ = 0;
};

void check_provider(const provider::state& before, const provider::command& cmd,
                    const std::vector<provider::event>& events, const provider::state& after) {
  CHECK(after.consecutive_failures <= after.total_failures);
  if (std::holds_alternative<invoke_tool>(cmd)) {
    // Only ready runs a call at once; elsewhere it waits for a start on demand.
    if (before.status == provider_state::ready)
      CHECK(std::holds_alternative<tool_invocation_requested>(events.back()));
    else
      CHECK(std::holds_alternative<tool_invocation_queued>(events.back()));
  }
  if (after.status != provider_state::initializing)
    CHECK(after.waiting.empty()); // calls wait only for a start under way
  if (after.status == provider_state::cold)
    CHECK(after.pending.empty());
  if (after.status == provider_state::dead)
    CHECK(after.consecutive_failures < after.options.max_consecutive_failures);
  // Every state change is an event, and the changes chain from the old state.
  provider_state at = before.status;
  for (const auto& e : events)
    if (auto* c = std::get_if<provider_state_changed>(&e)) {
      CHECK(c->old_state == at);
      CHECK(c->old_state != c->new_state);
      at = c->new_state;
    }
  CHECK(at == after.status);
}

// -- provider_group ---------------------------------------------------------------------------

struct group_gen {
  std::int64_t now = sec(1);
  int next_request = 0;

  provider_group::command operator()(std::mt19937_64& rng, const provider_group::state&) {
    now += roll(rng, 4) == 0 ? sec(roll(rng, 90)) : sec(roll(rng, 3));
    const std::string member = pick<std::string>(rng, {"a", "b", "c", "d"});
    switch (roll(rng, 13)) {
      case 0: {
        group_options o = hangar_test::small_group_options();
        o.strategy = pick(rng, {selection_strategy::round_robin,
                                selection_strategy::weighted_round_robin,
                                selection_strategy::least_connections, selection_strategy::random,
                                selection_strategy::priority});
        o.min_healthy = static_cast<std::uint32_t>(1 + roll(rng, 3));
        return create_group{"g", o};
      }
      case 1:
        return roll(rng, 4) == 0 ? provider_group::command{delete_group{}}
                                 : provider_group::command{reset_circuit{now}};
      case 2:
        return add_member{member, static_cast<std::uint32_t>(1 + roll(rng, 100)),
                          static_cast<std::uint32_t>(1 + roll(rng, 100))};
      case 3:
        if (roll(rng, 3) == 0)
          return remove_member{member};
        return tick{now};
      case 4:
      case 5:
      case 6: return select_member{"r" + std::to_string(next_request++), now, rng()};
      case 7:
        return record_member_lifecycle{member,
                                       pick(rng,
                                            {member_lifecycle::starting, member_lifecycle::ready,
                                             member_lifecycle::stopped, member_lifecycle::failing}),
                                       "prop", now};
      default:
        return record_member_result{member, roll(rng, 3) == 0,
                                    roll(rng, 5) == 0 ? member_result_kind::health_check
                                                      : member_result_kind::request,
                                    now};
    }
  }
};

void check_group(const provider_group::state& before, const provider_group::command& cmd,
                 const std::vector<provider_group::event>& events,
                 const provider_group::state& after) {
  CHECK(after.status == provider_group::derive_status(after));
  const circuit_breaker& cb = after.circuit;
  if (cb.state == circuit_state::closed)
    CHECK(cb.failure_count < after.options.circuit_failure_threshold);
  if (cb.state == circuit_state::half_open) {
    CHECK(cb.probes_sent <= after.options.probe_count);
    CHECK(cb.probe_successes < after.options.probe_count);
  } else {
    CHECK(cb.probes_sent == 0);
    CHECK(cb.probe_successes == 0);
  }
  std::uint64_t active = 0;
  for (const auto& kv : after.members) {
    active += kv.second.active;
    if (kv.second.in_rotation)
      CHECK(kv.second.consecutive_failures < after.options.unhealthy_threshold);
  }
  CHECK(active <= after.cursor);
  if (std::holds_alternative<select_member>(cmd)) {
    CHECK(provider_group::accepts_requests(after.status));
    const auto& sel = std::get<member_selected>(events.back());
    CHECK(before.members.at(sel.member).in_rotation);
  }
  group_state at = before.status;
  for (const auto& e : events)
    if (auto* c = std::get_if<group_state_changed>(&e)) {
      CHECK(c->old_state == at);
      CHECK(c->old_state != c->new_state);
      at = c->new_state;
    }
  CHECK(at == after.status);
}

} // namespace

TEST_CASE("provider: live state equals replay of the stored events, invariants hold",
          "[unit][hangar][provider][property]") {
  for (std::uint64_t seed : {1u, 2u, 3u, 42u, 2024u}) {
    CAPTURE(seed);
    run<provider>(seed, 3000, provider_gen{static_cast<std::uint32_t>(1 + seed % 3)},
                  check_provider);
  }
}

TEST_CASE("provider_group: live state equals replay of the stored events, invariants hold",
          "[unit][hangar][group][property]") {
  for (std::uint64_t seed : {1u, 2u, 3u, 42u, 2024u}) {
    CAPTURE(seed);
    run<provider_group>(seed, 3000, group_gen{}, check_group);
  }
}
