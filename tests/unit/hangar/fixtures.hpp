#pragma once

// Histories and helpers shared by the hangar tests.

#include <cstdint>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "hangar/provider.hpp"
#include "hangar/provider_group.hpp"

namespace hangar_test {

/// n seconds as nanoseconds, for readable timestamps.
constexpr std::int64_t sec(std::int64_t n) { return n * hangar::ns_per_s; }

inline hangar::provider_config math_config() {
  hangar::provider_config c;
  c.command.push_back("mcp-math");
  return c;
}

inline hangar::provider_registered math_registered(std::uint32_t max_failures = 3) {
  hangar::provider_options o;
  o.max_consecutive_failures = max_failures;
  return hangar::provider_registered{"math", "test", hangar::provider_mode::subprocess,
                                     math_config(), o};
}

inline hangar::provider_state_changed moved(hangar::provider_state from, hangar::provider_state to,
                                            std::int64_t at_ns) {
  return hangar::provider_state_changed{from, to, at_ns};
}

/// Registered and ready since t = 2 s.
inline std::vector<hangar::provider::event> ready_history(std::uint32_t max_failures = 3) {
  using hangar::provider_state;
  return {math_registered(max_failures),
          moved(provider_state::cold, provider_state::initializing, sec(1)),
          hangar::provider_started{hangar::provider_mode::subprocess, 3, 100, {}},
          moved(provider_state::initializing, provider_state::ready, sec(2))};
}

/// The history plus `more`, in order.
inline std::vector<hangar::provider::event> with(std::vector<hangar::provider::event> history,
                                                 std::vector<hangar::provider::event> more) {
  for (auto& e : more)
    history.push_back(std::move(e));
  return history;
}

/// Checks that the provider_state_changed events among `events` are exactly
/// `moves`, in order.
template <class Events>
void require_state_changes(
  const Events& events,
  std::vector<std::pair<hangar::provider_state, hangar::provider_state>> moves) {
  std::vector<std::pair<hangar::provider_state, hangar::provider_state>> seen;
  for (const auto& e : events)
    if (auto* c = std::get_if<hangar::provider_state_changed>(&e))
      seen.emplace_back(c->old_state, c->new_state);
  REQUIRE(seen == moves);
}

template <class T, class Events> const T& only(const Events& events) {
  const T* found = nullptr;
  for (const auto& e : events)
    if (auto* p = std::get_if<T>(&e)) {
      REQUIRE(found == nullptr);
      found = p;
    }
  REQUIRE(found != nullptr);
  return *found;
}

template <class T, class Events> bool has(const Events& events) {
  for (const auto& e : events)
    if (std::holds_alternative<T>(e))
      return true;
  return false;
}

inline hangar::group_options small_group_options() {
  hangar::group_options o;
  o.circuit_failure_threshold = 3;
  o.circuit_reset_timeout_s = 60;
  o.probe_count = 2;
  return o;
}

/// A group "tools" with members a, b, c (weights 1, 2, 3; priorities 3, 1, 1).
inline std::vector<hangar::provider_group::event>
group_history(hangar::group_options o = small_group_options()) {
  using namespace hangar;
  return {group_created{"tools", o}, group_member_added{"a", 1, 3},
          group_state_changed{group_state::inactive, group_state::healthy, 1, 1},
          group_member_added{"b", 2, 1}, group_member_added{"c", 3, 1}};
}

} // namespace hangar_test
