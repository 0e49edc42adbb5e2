// The provider group aggregate through given/when/then: group state rules,
// rotation, one test per cell of the circuit breaker table, strategies and
// rejections.

#include <algorithm>

#include <catch2/catch.hpp>

#include "cairn/runtime/testkit.hpp"
#include "fixtures.hpp"

using namespace hangar;
using namespace hangar_test;
using kit = cairn::testkit::given_when_then<provider_group>;
using cs = circuit_state;

namespace {

record_member_result failure(const std::string& member, std::int64_t now_ns) {
  return record_member_result{member, false, member_result_kind::request, now_ns};
}
record_member_result success(const std::string& member, std::int64_t now_ns) {
  return record_member_result{member, true, member_result_kind::request, now_ns};
}

/// The state changes among `events`, as (old, new) pairs.
std::vector<std::pair<group_state, group_state>>
state_changes(const std::vector<provider_group::event>& events) {
  std::vector<std::pair<group_state, group_state>> out;
  for (const auto& e : events)
    if (auto* c = std::get_if<group_state_changed>(&e))
      out.emplace_back(c->old_state, c->new_state);
  return out;
}

/// A group whose breaker (threshold 3) opened at 100 s.
kit opened_at_100s() {
  kit t{group_history()};
  for (int i = 0; i < 3; ++i)
    REQUIRE(t.when(failure("b", sec(98 + i))));
  REQUIRE(t.state().circuit.state == cs::open);
  REQUIRE(t.state().circuit.opened_at_ns == sec(100));
  return t;
}

/// The same, half-open since 160 s (probe_count 2, no probe sent yet).
kit half_open_at_160s() {
  kit t = opened_at_100s();
  REQUIRE(t.when(tick{sec(160)}));
  REQUIRE(t.state().circuit.state == cs::half_open);
  return t;
}

} // namespace

// -- group state ------------------------------------------------------------------------------

TEST_CASE("group state: no member in rotation -> inactive", "[unit][hangar][group]") {
  kit t;
  auto d = t.when(create_group{"tools", {}});
  REQUIRE(d);
  CHECK(state_changes(*d).empty()); // a new group is inactive already
  CHECK(t.state().status == group_state::inactive);
  REQUIRE(t.when(add_member{"a", 1, 1}));
  CHECK(t.state().status == group_state::healthy);
  auto gone = t.when(remove_member{"a"});
  REQUIRE(gone);
  CHECK(state_changes(*gone)
        == std::vector<std::pair<group_state, group_state>>{
          {group_state::healthy, group_state::inactive}});
  const auto& changed = only<group_state_changed>(*gone);
  CHECK(changed.healthy == 0);
  CHECK(changed.total == 0);
}

TEST_CASE("group state: fewer than min_healthy in rotation -> partial, else healthy",
          "[unit][hangar][group]") {
  group_options o;
  o.min_healthy = 2;
  kit t{{group_created{"tools", o}}};
  REQUIRE(t.when(add_member{"a", 1, 1}));
  CHECK(t.state().status == group_state::partial);
  auto d = t.when(add_member{"b", 1, 1});
  REQUIRE(d);
  const auto& changed = only<group_state_changed>(*d);
  CHECK(changed.old_state == group_state::partial);
  CHECK(changed.new_state == group_state::healthy);
  CHECK(changed.healthy == 2);
  CHECK(changed.total == 2);
  // Two failures take b out of rotation: partial again, and requests still pass.
  REQUIRE(t.when(failure("b", sec(1))));
  REQUIRE(t.when(failure("b", sec(2))));
  CHECK(t.state().status == group_state::partial);
  auto sel = t.when(select_member{"r1", sec(3), 0});
  REQUIRE(sel);
  CHECK(only<member_selected>(*sel).member == "a");
}

TEST_CASE("group state: circuit open -> degraded, and requests are refused",
          "[unit][hangar][group]") {
  kit t{group_history()};
  REQUIRE(t.when(failure("a", sec(1))));
  REQUIRE(t.when(failure("b", sec(2))));
  auto d = t.when(failure("c", sec(3)));
  REQUIRE(d);
  CHECK(state_changes(*d)
        == std::vector<std::pair<group_state, group_state>>{
          {group_state::healthy, group_state::degraded}});
  CHECK(t.state().status == group_state::degraded);
  CHECK_FALSE(provider_group::accepts_requests(t.state().status));
  CHECK(t.when(select_member{"r1", sec(4), 0}).error().reason == "circuit_open");
}

TEST_CASE("deleting a group makes it inactive; it may be created again", "[unit][hangar][group]") {
  kit t{group_history()};
  auto d = t.when(delete_group{});
  REQUIRE(d);
  CHECK(state_changes(*d)
        == std::vector<std::pair<group_state, group_state>>{
          {group_state::healthy, group_state::inactive}});
  CHECK(t.when(add_member{"a", 1, 1}).error().reason == "group_not_found");
  CHECK(t.when(create_group{"other", {}}).error().reason == "group_id_mismatch");
  REQUIRE(t.when(create_group{"tools", {}}));
  CHECK(t.state().members.empty());
}

// -- rotation ---------------------------------------------------------------------------------

TEST_CASE("unhealthy_threshold consecutive failures take a member out of rotation",
          "[unit][hangar][group]") {
  kit t{group_history()}; // unhealthy_threshold 2
  REQUIRE(t.when(failure("a", sec(1))));
  REQUIRE(t.when(success("a", sec(2)))); // not consecutive any more
  REQUIRE(t.when(failure("a", sec(3))));
  CHECK(t.state().members.at("a").in_rotation);
  auto d = t.when(failure("a", sec(4)));
  REQUIRE(d);
  const auto& h = only<group_member_health_changed>(*d);
  CHECK(h.member == "a");
  CHECK_FALSE(h.in_rotation);
  CHECK(h.reason == "unhealthy_threshold");
  CHECK(t.state().healthy() == 2);
}

TEST_CASE("healthy_threshold successes bring a member back into rotation",
          "[unit][hangar][group]") {
  group_options o = small_group_options();
  o.healthy_threshold = 2;
  auto history = group_history(o);
  history.push_back(group_member_health_changed{"a", false, "unhealthy_threshold"});
  kit t{history};
  REQUIRE_FALSE(t.state().members.at("a").in_rotation);
  // Out of rotation it is never selected, so its provider's health probes bring it back.
  REQUIRE(t.when(record_member_result{"a", true, member_result_kind::health_check, sec(1)}));
  CHECK_FALSE(t.state().members.at("a").in_rotation);
  auto d = t.when(record_member_result{"a", true, member_result_kind::health_check, sec(2)});
  REQUIRE(d);
  const auto& h = only<group_member_health_changed>(*d);
  CHECK(h.in_rotation);
  CHECK(h.reason == "healthy_threshold");
  CHECK(t.state().healthy() == 3);
}

TEST_CASE("health-check results move rotation but never the breaker", "[unit][hangar][group]") {
  kit t{group_history()};
  for (int i = 0; i < 5; ++i)
    REQUIRE(t.when(record_member_result{"b", false, member_result_kind::health_check, sec(i)}));
  CHECK(t.state().circuit.state == cs::closed);
  CHECK(t.state().circuit.failure_count == 0);
  CHECK_FALSE(t.state().members.at("b").in_rotation);
}

TEST_CASE("when every member leaves rotation the group is inactive and refuses requests",
          "[unit][hangar][group]") {
  group_options o = small_group_options();
  o.unhealthy_threshold = 1;
  o.circuit_failure_threshold = 100;
  kit t{group_history(o)};
  REQUIRE(t.when(failure("a", sec(1))));
  REQUIRE(t.when(failure("b", sec(2))));
  auto d = t.when(failure("c", sec(3)));
  REQUIRE(d);
  CHECK(state_changes(*d)
        == std::vector<std::pair<group_state, group_state>>{
          {group_state::healthy, group_state::inactive}});
  CHECK(t.when(select_member{"r1", sec(4), 0}).error().reason == "no_healthy_members");
}

// -- the circuit breaker table, cell by cell ---------------------------------------------------

TEST_CASE("breaker closed, a request: allowed", "[unit][hangar][group][breaker]") {
  kit t{group_history()};
  auto d = t.when(select_member{"r1", sec(1), 0});
  REQUIRE(d);
  const auto& sel = only<member_selected>(*d);
  CHECK(sel.request_id == "r1");
  CHECK(sel.at_ns == sec(1));
  CHECK(t.state().members.at(sel.member).active == 1);
}

TEST_CASE("breaker closed, a failure: count+1; at threshold -> open (opened_at = now)",
          "[unit][hangar][group][breaker]") {
  kit t{group_history()}; // threshold 3
  auto one = t.when(failure("a", sec(1)));
  REQUIRE(one);
  CHECK_FALSE(has<group_circuit_opened>(*one));
  CHECK(t.state().circuit.failure_count == 1);
  REQUIRE(t.when(failure("b", sec(2))));
  CHECK(t.state().circuit.failure_count == 2);
  auto d = t.when(failure("c", sec(3)));
  REQUIRE(d);
  const auto& opened = only<group_circuit_opened>(*d);
  CHECK(opened.failure_count == 3);
  CHECK(opened.opened_at_ns == sec(3));
  CHECK(t.state().circuit.state == cs::open);
  CHECK(t.state().circuit.opened_at_ns == sec(3));
}

TEST_CASE("breaker closed, a success: count = 0", "[unit][hangar][group][breaker]") {
  kit t{group_history()};
  REQUIRE(t.when(failure("a", sec(1))));
  REQUIRE(t.when(failure("b", sec(2))));
  REQUIRE(t.when(success("c", sec(3))));
  CHECK(t.state().circuit.failure_count == 0);
  REQUIRE(t.when(failure("a", sec(4))));
  REQUIRE(t.when(failure("b", sec(5))));
  CHECK(t.state().circuit.state == cs::closed); // consecutive, not lifetime: 4 failures in all
}

TEST_CASE("breaker open, a request: rejected until the reset timeout",
          "[unit][hangar][group][breaker]") {
  kit t = opened_at_100s(); // reset timeout 60 s
  CHECK(t.when(select_member{"r1", sec(159), 0}).error().reason == "circuit_open");
  CHECK(t.state().circuit.state == cs::open);
}

TEST_CASE("breaker open, a request after the reset timeout: -> half_open, it is the probe",
          "[unit][hangar][group][breaker]") {
  kit t = opened_at_100s();
  auto d = t.when(select_member{"r1", sec(160), 0});
  REQUIRE(d);
  REQUIRE(d->size() == 3);
  CHECK(std::holds_alternative<group_circuit_half_opened>((*d)[0]));
  const auto& changed = std::get<group_state_changed>((*d)[1]);
  CHECK(changed.old_state == group_state::degraded);
  CHECK(changed.new_state == group_state::healthy);
  CHECK(std::holds_alternative<member_selected>((*d)[2]));
  CHECK(t.state().circuit.state == cs::half_open);
  CHECK(t.state().circuit.probes_sent == 1);
}

TEST_CASE("breaker open, the timer after the reset timeout: -> half_open",
          "[unit][hangar][group][breaker]") {
  kit t = opened_at_100s();
  auto early = t.when(tick{sec(159)});
  REQUIRE(early);
  CHECK(early->empty());
  auto d = t.when(tick{sec(160)});
  REQUIRE(d);
  CHECK(only<group_circuit_half_opened>(*d).at_ns == sec(160));
  CHECK(t.state().circuit.state == cs::half_open);
  CHECK(t.state().status == group_state::healthy);
  auto again = t.when(tick{sec(500)}); // only an open breaker moves on a tick
  REQUIRE(again);
  CHECK(again->empty());
}

TEST_CASE("breaker open, a failure: ignored", "[unit][hangar][group][breaker]") {
  kit t = opened_at_100s();
  auto d = t.when(failure("a", sec(120)));
  REQUIRE(d);
  CHECK_FALSE(has<group_circuit_opened>(*d));
  CHECK(t.state().circuit.opened_at_ns == sec(100)); // the timeout does not restart
  CHECK(t.state().circuit.failure_count == 3);
}

TEST_CASE("breaker open, a success: ignored", "[unit][hangar][group][breaker]") {
  kit t = opened_at_100s();
  auto d = t.when(success("a", sec(120)));
  REQUIRE(d);
  CHECK_FALSE(has<group_circuit_closed>(*d));
  CHECK(t.state().circuit.state == cs::open);
}

TEST_CASE("breaker half_open, a request: allowed while probes < probe_count",
          "[unit][hangar][group][breaker]") {
  kit t = half_open_at_160s(); // probe_count 2
  REQUIRE(t.when(select_member{"p1", sec(161), 0}));
  REQUIRE(t.when(select_member{"p2", sec(161), 0}));
  CHECK(t.state().circuit.probes_sent == 2);
  auto d = t.when(select_member{"p3", sec(162), 0});
  REQUIRE_FALSE(d);
  CHECK(d.error().reason == "probe_limit_reached");
}

TEST_CASE("breaker half_open, a failure: -> open with a new opened_at",
          "[unit][hangar][group][breaker]") {
  kit t = half_open_at_160s();
  REQUIRE(t.when(select_member{"p1", sec(161), 0}));
  auto d = t.when(failure("b", sec(170)));
  REQUIRE(d);
  CHECK(only<group_circuit_opened>(*d).opened_at_ns == sec(170));
  CHECK(t.state().circuit.state == cs::open);
  CHECK(t.state().circuit.opened_at_ns == sec(170));
  CHECK(t.state().status == group_state::degraded);
  CHECK(t.when(select_member{"r", sec(229), 0}).error().reason == "circuit_open");
  REQUIRE(t.when(select_member{"r", sec(230), 0}));
}

TEST_CASE("breaker half_open, a success: at probe_count successes -> closed",
          "[unit][hangar][group][breaker]") {
  kit t = half_open_at_160s(); // probe_count 2
  REQUIRE(t.when(select_member{"p1", sec(161), 0}));
  REQUIRE(t.when(select_member{"p2", sec(161), 0}));
  auto one = t.when(success("b", sec(162)));
  REQUIRE(one);
  CHECK_FALSE(has<group_circuit_closed>(*one));
  CHECK(t.state().circuit.probe_successes == 1);
  auto d = t.when(success("c", sec(163)));
  REQUIRE(d);
  const auto& closed = only<group_circuit_closed>(*d);
  CHECK(closed.reason == "probes_succeeded");
  CHECK(closed.at_ns == sec(163));
  CHECK(t.state().circuit.state == cs::closed);
  CHECK(t.state().circuit.failure_count == 0);
  CHECK(t.state().circuit.probes_sent == 0);
}

TEST_CASE("reset_circuit closes an open or half-open breaker by hand",
          "[unit][hangar][group][breaker]") {
  kit t = opened_at_100s();
  auto d = t.when(reset_circuit{sec(101)});
  REQUIRE(d);
  CHECK(only<group_circuit_closed>(*d).reason == "manual_reset");
  CHECK(state_changes(*d)
        == std::vector<std::pair<group_state, group_state>>{
          {group_state::degraded, group_state::healthy}});
  auto clean = t.when(reset_circuit{sec(102)});
  REQUIRE(clean);
  CHECK(clean->empty());
  REQUIRE(t.when(failure("a", sec(103))));
  REQUIRE(t.when(reset_circuit{sec(104)})); // clears a closed breaker's count
  CHECK(t.state().circuit.failure_count == 0);
  kit h = half_open_at_160s();
  REQUIRE(h.when(reset_circuit{sec(161)}));
  CHECK(h.state().circuit.state == cs::closed);
}

// -- strategies -----------------------------------------------------------------------------

namespace {

std::vector<std::string> picks(kit& t, int n, std::uint64_t seed = 0) {
  std::vector<std::string> out;
  for (int i = 0; i < n; ++i) {
    auto d =
      t.when(select_member{"r" + std::to_string(i), sec(1), seed + static_cast<std::uint64_t>(i)});
    REQUIRE(d);
    out.push_back(only<member_selected>(*d).member);
  }
  return out;
}

kit with_strategy(selection_strategy s) {
  group_options o = small_group_options();
  o.strategy = s;
  return kit{group_history(o)};
}

} // namespace

TEST_CASE("round_robin takes members in rotation in id order", "[unit][hangar][group]") {
  kit t = with_strategy(selection_strategy::round_robin);
  CHECK(picks(t, 4) == std::vector<std::string>{"a", "b", "c", "a"});
}

TEST_CASE("weighted_round_robin gives each member weight turns per cycle",
          "[unit][hangar][group]") {
  kit t = with_strategy(selection_strategy::weighted_round_robin); // a 1, b 2, c 3
  CHECK(picks(t, 6) == std::vector<std::string>{"a", "b", "b", "c", "c", "c"});
}

TEST_CASE("least_connections picks the member with fewest open requests", "[unit][hangar][group]") {
  kit t = with_strategy(selection_strategy::least_connections);
  // All tie at first; among ties the selection cursor (0, 1, 2) takes turns.
  CHECK(picks(t, 3) == std::vector<std::string>{"a", "c", "b"});
  REQUIRE(t.when(success("b", sec(2)))); // b has none open now
  CHECK(picks(t, 1) == std::vector<std::string>{"b"});
}

TEST_CASE("random is a function of the seed in the command", "[unit][hangar][group]") {
  kit t1 = with_strategy(selection_strategy::random);
  kit t2 = with_strategy(selection_strategy::random);
  auto a = picks(t1, 30, 7);
  CHECK(a == picks(t2, 30, 7));
  CHECK(std::count(a.begin(), a.end(), "a") > 0);
  CHECK(std::count(a.begin(), a.end(), "b") > 0);
  CHECK(std::count(a.begin(), a.end(), "c") > 0);
}

TEST_CASE("priority picks the lowest value, taking turns among ties", "[unit][hangar][group]") {
  kit t = with_strategy(selection_strategy::priority); // a 3, b 1, c 1
  CHECK(picks(t, 4) == std::vector<std::string>{"b", "c", "b", "c"});
}

TEST_CASE("members out of rotation are never selected", "[unit][hangar][group]") {
  kit t = with_strategy(selection_strategy::round_robin);
  REQUIRE(t.when(failure("b", sec(1))));
  REQUIRE(t.when(failure("b", sec(1))));
  CHECK(picks(t, 4) == std::vector<std::string>{"a", "c", "a", "c"});
}

// -- rejections -------------------------------------------------------------------------------

TEST_CASE("invalid group and member ids are rejected", "[unit][hangar][group]") {
  kit t;
  CHECK(t.when(create_group{"", {}}).error().reason == "invalid_group_id");
  CHECK(t.when(create_group{std::string(65, 'g'), {}}).error().reason == "invalid_group_id");
  CHECK(t.when(create_group{"a.b", {}}).error().reason == "invalid_group_id");
  REQUIRE(t.when(create_group{"tools", {}}));
  CHECK(t.when(add_member{"a b", 1, 1}).error().reason == "invalid_provider_id");
  CHECK(t.when(select_member{"", sec(1), 0}).error().reason == "invalid_request_id");
}

TEST_CASE("weights and priorities outside 1..100 are rejected", "[unit][hangar][group]") {
  kit t{{group_created{"tools", {}}}};
  CHECK(t.when(add_member{"a", 0, 1}).error().reason == "weight_out_of_range");
  CHECK(t.when(add_member{"a", 101, 1}).error().reason == "weight_out_of_range");
  CHECK(t.when(add_member{"a", 1, 0}).error().reason == "priority_out_of_range");
  CHECK(t.when(add_member{"a", 1, 101}).error().reason == "priority_out_of_range");
  CHECK(t.when(add_member{"a", 100, 100}));
}

TEST_CASE("out-of-range group options are rejected", "[unit][hangar][group]") {
  auto bad = [](auto edit) {
    group_options o;
    edit(o);
    kit t;
    auto d = t.when(create_group{"tools", o});
    REQUIRE_FALSE(d);
    return d.error().reason;
  };
  CHECK(bad([](group_options& o) { o.min_healthy = 0; }) == "min_healthy_out_of_range");
  CHECK(bad([](group_options& o) { o.unhealthy_threshold = 0; })
        == "unhealthy_threshold_out_of_range");
  CHECK(bad([](group_options& o) { o.healthy_threshold = 101; })
        == "healthy_threshold_out_of_range");
  CHECK(bad([](group_options& o) { o.circuit_failure_threshold = 0; })
        == "circuit_failure_threshold_out_of_range");
  CHECK(bad([](group_options& o) { o.circuit_reset_timeout_s = 0; })
        == "circuit_reset_timeout_out_of_range");
  CHECK(bad([](group_options& o) { o.probe_count = 0; }) == "probe_count_out_of_range");
  CHECK(bad([](group_options& o) { o.strategy = static_cast<selection_strategy>(9); })
        == "invalid_strategy");
  kit t{group_history()};
  group_options o;
  o.probe_count = 101;
  CHECK(t.when(update_group{o}).error().reason == "probe_count_out_of_range");
}

TEST_CASE("defaults: min_healthy 1, thresholds 2 and 1, breaker 10 / 60 s / 1 probe",
          "[unit][hangar][group]") {
  group_options o;
  CHECK(o.strategy == selection_strategy::round_robin);
  CHECK(o.min_healthy == 1);
  CHECK(o.unhealthy_threshold == 2);
  CHECK(o.healthy_threshold == 1);
  CHECK(o.circuit_failure_threshold == 10);
  CHECK(o.circuit_reset_timeout_s == 60);
  CHECK(o.probe_count == 1);
}

TEST_CASE("duplicate groups and members are rejected", "[unit][hangar][group]") {
  kit t{group_history()};
  CHECK(t.when(create_group{"tools", {}}).error().reason == "group_already_exists");
  CHECK(t.when(add_member{"a", 5, 5}).error().reason == "member_already_exists");
}

TEST_CASE("unknown members are rejected", "[unit][hangar][group]") {
  kit t{group_history()};
  CHECK(t.when(remove_member{"zz"}).error().reason == "unknown_member");
  CHECK(t.when(failure("zz", sec(1))).error().reason == "unknown_member");
  CHECK(t.when(record_member_result{"a", true, static_cast<member_result_kind>(5), sec(1)})
          .error()
          .reason
        == "invalid_result_kind");
}

TEST_CASE("commands to a group that does not exist are rejected", "[unit][hangar][group]") {
  kit t;
  CHECK(t.when(select_member{"r1", sec(1), 0}).error().reason == "group_not_found");
  CHECK(t.when(tick{sec(1)}).error().reason == "group_not_found");
  CHECK(t.when(delete_group{}).error().reason == "group_not_found");
}

TEST_CASE("an update replaces the options and re-derives the group state",
          "[unit][hangar][group]") {
  kit t{group_history()};
  auto same = t.when(update_group{small_group_options()});
  REQUIRE(same);
  CHECK(same->empty());
  group_options o = small_group_options();
  o.min_healthy = 5;
  auto d = t.when(update_group{o});
  REQUIRE(d);
  CHECK(state_changes(*d)
        == std::vector<std::pair<group_state, group_state>>{
          {group_state::healthy, group_state::partial}});
}

TEST_CASE("strategy names parse back", "[unit][hangar][group]") {
  CHECK(parse_selection_strategy("least_connections") == selection_strategy::least_connections);
  CHECK_FALSE(parse_selection_strategy("fastest"));
  CHECK(std::string{to_string(circuit_state::half_open)} == "half_open");
}
