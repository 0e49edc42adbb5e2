#pragma once

/// The shape of an aggregate: three pure functions over plain structs.
///
///   struct account {
///     static constexpr const char* category = "account";
///     struct state { bool open = false; std::int64_t balance = 0; ... serialize };
///     using command = std::variant<open_account, deposit, withdraw>;
///     using event = std::variant<account_opened, money_deposited, money_withdrawn>;
///     static state initial() { return {}; }
///     static cairn::decision<event> decide(const state& s, const command& c);
///     static state evolve(state s, const event& e);   // total, never fails
///   };
///
/// Or, as a decider, one `decide` overload per command and one `evolve` per
/// event instead of the two variant functions (match.hpp).
///
/// Every event struct names itself for the store: `static constexpr const
/// char* type_name = "money_deposited";`, and states, commands and events are
/// cereal-serializable (CEREAL_CLASS_VERSION gives an event's or a state's
/// schema version). `decide` and `evolve` do no I/O and read no clock or
/// randomness: time and ids come in the command.
///
/// cairn/model/match.hpp writes `decide` and `evolve` as one overload per
/// command and per event (`decide(const state&, const deposit&)`), or as one
/// lambda per alternative, instead of a std::visit.

#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include <tl/expected.hpp>

namespace cairn {

/// The domain said no, and why ("insufficient_funds").
struct rejection {
  std::string reason;
};

/// What `decide` returns: the events to append (none, one or several,
/// appended atomically) or a rejection.
template <class Event> using decision = tl::expected<std::vector<Event>, rejection>;

/// `return cairn::reject("insufficient_funds");`
[[nodiscard]] inline tl::unexpected<rejection> reject(std::string reason) {
  return tl::unexpected<rejection>(rejection{std::move(reason)});
}

/// `return cairn::emit<event>(money_deposited{100}, fee_charged{1});`
template <class Event, class... Ts> [[nodiscard]] std::vector<Event> emit(Ts&&... events) {
  std::vector<Event> out;
  out.reserve(sizeof...(Ts));
  (out.emplace_back(std::forward<Ts>(events)), ...);
  return out;
}

} // namespace cairn
