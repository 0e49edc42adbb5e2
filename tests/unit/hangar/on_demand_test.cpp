// Issue 23 at the aggregates: a call to a cold, dead or degraded-past-its-
// backoff provider starts it on demand; the group learns its members'
// lifecycle and never counts a stopped member as failing; the backoff is
// capped after its jitter; `random` is weighted.

#include <algorithm>

#include <catch2/catch.hpp>

#include "cairn/runtime/testkit.hpp"
#include "fixtures.hpp"

using namespace hangar;
using namespace hangar_test;
using pkit = cairn::testkit::given_when_then<provider>;
using gkit = cairn::testkit::given_when_then<provider_group>;
using ps = provider_state;

namespace {

invoke_tool call(const std::string& correlation_id, std::int64_t now_ns, std::int32_t jitter = 0) {
  return invoke_tool{"add", "{\"a\":1}", correlation_id, 30000, now_ns, jitter};
}

record_start_result start_ok(std::int64_t now_ns) {
  return record_start_result{true, 5, 250, {"math"}, "", now_ns};
}

record_start_result start_failed(std::int64_t now_ns) {
  return record_start_result{false, 0, 30, {}, "exec failed", now_ns};
}

/// The correlation ids of the tool_invocation_requested events, in order.
std::vector<std::string> requested(const std::vector<provider::event>& events) {
  std::vector<std::string> out;
  for (const auto& e : events)
    if (auto* r = std::get_if<tool_invocation_requested>(&e))
      out.push_back(r->correlation_id);
  return out;
}

/// Degraded at 100 s after 3 consecutive failures: backoff min(60, 2^3) = 8 s.
pkit degraded_at_100s() {
  return pkit{
    with(ready_history(),
         {health_check_failed{1, "x", sec(80)}, health_check_failed{2, "x", sec(90)},
          health_check_failed{3, "x", sec(100)}, provider_degraded{3, 3, "health_check_failed"},
          moved(ps::ready, ps::degraded, sec(100))})};
}

record_member_result failure(const std::string& member, std::int64_t now_ns) {
  return record_member_result{member, false, member_result_kind::request, now_ns};
}

record_member_lifecycle lifecycle(const std::string& member, member_lifecycle l,
                                  std::int64_t now_ns) {
  return record_member_lifecycle{member, l, "test", now_ns};
}

/// Group "tools" with members a, b (the issue's: unhealthy threshold 1,
/// circuit threshold 2).
gkit strict_group(std::uint32_t circuit_failure_threshold = 2) {
  group_options o;
  o.unhealthy_threshold = 1;
  o.circuit_failure_threshold = circuit_failure_threshold;
  return gkit{{group_created{"tools", o}, group_member_added{"a", 1, 1},
               group_state_changed{group_state::inactive, group_state::healthy, 1, 1},
               group_member_added{"b", 1, 1}}};
}

} // namespace

// -- provider: start on demand ------------------------------------------------------------

TEST_CASE("a call to a cold provider starts it, and concurrent callers wait for that start in "
          "order",
          "[unit][hangar][provider][on_demand]") {
  pkit t{{math_registered()}};
  auto first = t.when(call("c1", sec(1)));
  REQUIRE(first);
  require_state_changes(*first, {{ps::cold, ps::initializing}});
  CHECK(only<tool_invocation_queued>(*first).correlation_id == "c1");
  CHECK_FALSE(has<tool_invocation_requested>(*first));
  // Callers that arrive while it initializes wait too, without a second start.
  for (const char* id : {"c2", "c3"}) {
    auto d = t.when(call(id, sec(1)));
    REQUIRE(d);
    require_state_changes(*d, {});
    CHECK(only<tool_invocation_queued>(*d).correlation_id == id);
  }
  CHECK(t.state().waiting.size() == 3);
  CHECK(t.state().pending.empty());
  CHECK(t.when(call("c2", sec(1))).error().reason == "duplicate_correlation_id");
  auto started = t.when(start_ok(sec(2)));
  REQUIRE(started);
  require_state_changes(*started, {{ps::initializing, ps::ready}});
  CHECK(requested(*started) == std::vector<std::string>{"c1", "c2", "c3"});
  CHECK(t.state().waiting.empty());
  CHECK(t.state().pending.size() == 3);
  CHECK(t.state().total_invocations == 3); // counted once each, when accepted
  CHECK(t.state().total_failures == 0);
}

TEST_CASE("a failed start on demand abandons the waiting calls and counts as one failure",
          "[unit][hangar][provider][on_demand]") {
  pkit t{{math_registered()}};
  REQUIRE(t.when(call("c1", sec(1))));
  REQUIRE(t.when(call("c2", sec(1))));
  auto d = t.when(start_failed(sec(2)));
  REQUIRE(d);
  require_state_changes(*d, {{ps::initializing, ps::dead}});
  std::vector<std::string> abandoned;
  for (const auto& e : *d)
    if (auto* a = std::get_if<tool_invocation_abandoned>(&e)) {
      abandoned.push_back(a->correlation_id);
      CHECK(a->reason == "start_failed: exec failed");
    }
  CHECK(abandoned == std::vector<std::string>{"c1", "c2"});
  CHECK(requested(*d).empty());
  CHECK(t.state().waiting.empty());
  CHECK(t.state().consecutive_failures == 1);
  CHECK(t.state().total_failures == 1);
  // Dead: the next call starts it again (a retry), and this time it serves.
  auto again = t.when(call("c3", sec(3)));
  REQUIRE(again);
  require_state_changes(*again, {{ps::dead, ps::initializing}});
  auto served = t.when(start_ok(sec(4)));
  REQUIRE(served);
  CHECK(requested(*served) == std::vector<std::string>{"c3"});
}

TEST_CASE("a call inside a degraded provider's backoff is refused; after it, it starts the "
          "provider",
          "[unit][hangar][provider][on_demand]") {
  pkit t = degraded_at_100s();
  CHECK(t.when(call("c1", sec(107))).error().reason == "backoff_not_elapsed");
  // The jitter of the command stretches the backoff to 8.8 s.
  CHECK(t.when(call("c1", sec(108), 100)).error().reason == "backoff_not_elapsed");
  CHECK(t.when(call("c1", sec(108), 101)).error().reason == "jitter_out_of_range");
  CHECK(t.state().status == ps::degraded);
  CHECK(t.state().waiting.empty());
  auto d = t.when(call("c1", sec(108), 0));
  REQUIRE(d);
  require_state_changes(*d, {{ps::degraded, ps::initializing}});
  CHECK(has<tool_invocation_queued>(*d));
}

TEST_CASE("a provider stopped as idle serves its next call after a fresh start",
          "[unit][hangar][provider][on_demand]") {
  provider_options o;
  o.idle_ttl_s = 1;
  pkit t{{provider_registered{"math", "test", provider_mode::subprocess, math_config(), o},
          moved(ps::cold, ps::initializing, sec(1)),
          provider_started{provider_mode::subprocess, 3, 100, {}},
          moved(ps::initializing, ps::ready, sec(2))}};
  REQUIRE(t.when(detect_idle{sec(10)}));
  REQUIRE(t.state().status == ps::cold);
  auto d = t.when(call("c1", sec(11)));
  REQUIRE(d);
  require_state_changes(*d, {{ps::cold, ps::initializing}});
  REQUIRE(t.when(start_ok(sec(12))));
  CHECK(t.state().status == ps::ready);
  CHECK(t.state().pending.count("c1") == 1);
  CHECK(t.when(record_invocation_result{"c1", true, 5, 9, "", error_type::application, sec(12)}));
  CHECK(t.state().consecutive_failures == 0);
  CHECK(t.state().total_failures == 0);
}

TEST_CASE("a stop is refused while calls wait for the start",
          "[unit][hangar][provider][on_demand]") {
  pkit t{{math_registered()}};
  REQUIRE(t.when(call("c1", sec(1))));
  CHECK(t.when(stop_provider{"manual", sec(1)}).error().reason == "still_initializing");
  CHECK(t.when(detect_idle{sec(1000)}));
  CHECK(t.state().waiting.size() == 1);
}

// -- backoff --------------------------------------------------------------------------------

TEST_CASE("the retry backoff never exceeds 60 s, for every n and jitter",
          "[unit][hangar][provider][on_demand]") {
  for (std::uint32_t n = 0; n <= 64; ++n)
    for (std::int32_t j = -100; j <= 100; ++j) {
      const auto b = retry_backoff_ns(n, j);
      if (b > sec(60) || b <= 0) {
        CAPTURE(n, j, b);
        FAIL("backoff out of (0, 60 s]");
      }
    }
  CHECK(retry_backoff_ns(6, 100) == sec(60));                 // 64 s + 10 % capped: was 66 s
  CHECK(retry_backoff_ns(5, 100) == sec(32) + sec(32) / 10);  // below the cap: jitter kept
  CHECK(retry_backoff_ns(6, -100) == sec(64) - sec(64) / 10); // 57.6 s: the jitter still spreads
  CHECK(retry_backoff_ns(1000, 100) == sec(60));
}

// -- group: lifecycle -----------------------------------------------------------------------

TEST_CASE("a member whose provider was stopped stays in rotation and its refusals count "
          "neither against rotation nor the breaker",
          "[unit][hangar][group][on_demand]") {
  gkit t = strict_group();
  auto d = t.when(lifecycle("a", member_lifecycle::stopped, sec(1)));
  REQUIRE(d);
  CHECK(only<group_member_lifecycle_changed>(*d).lifecycle == member_lifecycle::stopped);
  CHECK(t.state().members.at("a").lifecycle == member_lifecycle::stopped);
  for (int i = 0; i < 5; ++i) {
    auto s = t.when(select_member{"r" + std::to_string(i), sec(2), 0});
    REQUIRE(s);
    REQUIRE(t.when(failure("a", sec(2))));
  }
  CHECK(t.state().members.at("a").in_rotation);
  CHECK(t.state().members.at("a").consecutive_failures == 0);
  CHECK(t.state().members.at("a").active == 0);
  CHECK(t.state().circuit.state == circuit_state::closed);
  CHECK(t.state().circuit.failure_count == 0);
  CHECK(t.state().status == group_state::healthy);
  CHECK(t.state().healthy() == 2);
}

TEST_CASE("once a stopped member's provider starts again, its failures count",
          "[unit][hangar][group][on_demand]") {
  gkit t = strict_group();
  REQUIRE(t.when(lifecycle("a", member_lifecycle::stopped, sec(1))));
  REQUIRE(t.when(lifecycle("a", member_lifecycle::starting, sec(2))));
  REQUIRE(t.when(lifecycle("a", member_lifecycle::failing, sec(3))));
  auto d = t.when(failure("a", sec(3))); // its start on demand failed
  REQUIRE(d);
  CHECK_FALSE(t.state().members.at("a").in_rotation);
  CHECK(t.state().circuit.failure_count == 1);
}

TEST_CASE("a member out of rotation comes back when its provider is stopped",
          "[unit][hangar][group][on_demand]") {
  gkit t = strict_group(10);
  REQUIRE(t.when(failure("a", sec(1))));
  REQUIRE(t.when(failure("b", sec(1))));
  REQUIRE(t.state().status == group_state::inactive);
  auto d = t.when(lifecycle("a", member_lifecycle::stopped, sec(2)));
  REQUIRE(d);
  const auto& back = only<group_member_health_changed>(*d);
  CHECK(back.member == "a");
  CHECK(back.in_rotation);
  CHECK(back.reason == "provider_stopped");
  CHECK(only<group_state_changed>(*d).new_state == group_state::healthy);
  CHECK(t.state().members.at("a").consecutive_failures == 0);
  auto s = t.when(select_member{"r1", sec(3), 0});
  REQUIRE(s);
  CHECK(only<member_selected>(*s).member == "a"); // selecting it starts it on demand
}

TEST_CASE("lifecycle reports: nothing when unchanged; unknown members and numbers refused",
          "[unit][hangar][group][on_demand]") {
  gkit t = strict_group();
  CHECK(t.state().members.at("a").lifecycle == member_lifecycle::unknown);
  REQUIRE(t.when(lifecycle("a", member_lifecycle::ready, sec(1))));
  auto same = t.when(lifecycle("a", member_lifecycle::ready, sec(2)));
  REQUIRE(same);
  CHECK(same->empty());
  CHECK(t.when(lifecycle("zz", member_lifecycle::ready, sec(2))).error().reason
        == "unknown_member");
  CHECK(t.when(lifecycle("a", static_cast<member_lifecycle>(9), sec(2))).error().reason
        == "invalid_lifecycle");
}

TEST_CASE("a half-open probe refused by a stopped member gives the probe back",
          "[unit][hangar][group][on_demand]") {
  gkit t = strict_group();
  REQUIRE(t.when(failure("a", sec(98))));
  REQUIRE(t.when(failure("b", sec(99))));
  REQUIRE(t.when(lifecycle("a", member_lifecycle::stopped, sec(100))));
  REQUIRE(t.state().circuit.state == circuit_state::open);
  REQUIRE(t.when(tick{sec(200)}));
  REQUIRE(t.state().circuit.state == circuit_state::half_open);
  auto s = t.when(select_member{"probe-1", sec(200), 0});
  REQUIRE(s);
  REQUIRE(only<member_selected>(*s).member == "a");
  REQUIRE(t.when(failure("a", sec(201))));
  CHECK(t.state().circuit.state == circuit_state::half_open); // not reopened
  CHECK(t.state().circuit.probes_sent == 0);
  CHECK(t.when(select_member{"probe-2", sec(202), 0}));
}

// -- group: weighted random -----------------------------------------------------------------

TEST_CASE("random is weighted: 9:1 weights give 5-15 : 1 over 1000 picks",
          "[unit][hangar][group][on_demand]") {
  group_options o;
  o.strategy = selection_strategy::random;
  gkit t{{group_created{"tools", o}, group_member_added{"heavy", 9, 1},
          group_state_changed{group_state::inactive, group_state::healthy, 1, 1},
          group_member_added{"light", 1, 1}}};
  std::size_t heavy = 0, light = 0;
  for (std::uint64_t i = 0; i < 1000; ++i) {
    auto d = t.when(select_member{"r" + std::to_string(i), sec(1), 42 + i});
    REQUIRE(d);
    (only<member_selected>(*d).member == "heavy" ? heavy : light) += 1;
  }
  CAPTURE(heavy, light);
  REQUIRE(light > 0);
  const double ratio = static_cast<double>(heavy) / static_cast<double>(light);
  WARN("weighted random, 9:1 weights, 1000 picks from seed 42: " << heavy << " : " << light << " = "
                                                                 << ratio);
  CHECK(ratio >= 5.0);
  CHECK(ratio <= 15.0);
}
