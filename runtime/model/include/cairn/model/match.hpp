#pragma once

/// Visiting commands and events without `std::visit` and `if constexpr` chains.
///
/// Two forms, both checked at compile time: a command or event alternative
/// without a handler does not compile.
///
/// 1. One overload per alternative, the decider form (samples/bank/account.hpp):
///
///     struct account {
///       ...
///       static cairn::decision<event> decide(const state& s, const deposit& c) {
///         if (!s.open) return cairn::reject("not_open");
///         return cairn::emit<event>(money_deposited{c.amount});
///       }
///       static state evolve(state s, const money_deposited& e) {
///         s.balance += e.amount;
///         return s;
///       }
///       ... one decide per command, one evolve per event ...
///     };
///
///    The runtime and the test kit call them through decide_with/evolve_with
///    (below), which use A's whole-variant `decide`/`evolve` when A has them
///    and the overloads otherwise; code of your own calls the same pair.
///
///    The overloads must have exactly these signatures (`evolve` may take the
///    state as `const state&` instead). The dispatch calls the overload of the
///    exact signature, never the variant one, so a missing overload is a
///    compile error (a static_assert naming the alternative), not a
///    recursion through the variant's converting constructor.
///
/// 2. Lambdas, one per alternative (an `overloaded` visitor):
///
///     return cairn::match<cairn::decision<event>>(c,
///       [&](const open_account& cmd) -> cairn::decision<event> { ... },
///       [&](const deposit& cmd) -> cairn::decision<event> { ... },
///       [&](const withdraw& cmd) -> cairn::decision<event> { ... });
///
///    `match<R>` converts each handler's result to R; plain `match(v, ...)`
///    returns what the handlers return (they must agree, as for std::visit).
///    A generic `[&](const auto&)` handler catches the alternatives the others
///    do not take. A lambda whose returns differ in type (`reject` and `emit`)
///    needs the `-> cairn::decision<event>`.
///
/// Both are plain std::visit underneath: no allocation, no virtual call.

#include <cstddef>
#include <type_traits>
#include <utility>
#include <variant>

#include "cairn/model/aggregate.hpp"

namespace cairn {

/// The handlers `fs...` as one visitor: `std::visit(overloaded{f, g}, v)`.
template <class... Fs> struct overloaded : Fs... { using Fs::operator()...; };
template <class... Fs> overloaded(Fs...) -> overloaded<Fs...>;

namespace detail {

/// The default result of match: what the handlers return.
struct match_deduced {};

/// `T` with the value category and constness of `V&&` (a variant's alternative as visited).
template <class V, class T>
using alternative_as = std::conditional_t<
  std::is_lvalue_reference_v<V>,
  std::conditional_t<std::is_const_v<std::remove_reference_t<V>>, const T&, T&>,
  std::conditional_t<std::is_const_v<std::remove_reference_t<V>>, const T&&, T&&>>;

/// Fails with the alternative named in the compiler's "in instantiation of"
/// note, which then reads `[with ... T = bank::withdraw]`.
template <class Visitor, class V, class T> constexpr bool require_handler() {
  constexpr bool ok = std::is_invocable_v<Visitor&, alternative_as<V, T>>;
  static_assert(ok, "cairn::match: an alternative of the variant has no handler; the "
                    "instantiation note of require_handler names it as T");
  return ok;
}

template <class Visitor, class V, class Variant> struct all_handled;
template <class Visitor, class V, class... Ts> struct all_handled<Visitor, V, std::variant<Ts...>> {
  static constexpr bool value = (require_handler<Visitor, V, Ts>() && ...);
};

// The overload of exactly this signature, or no type (SFINAE).
template <class A, class C>
using decide_overload =
  decltype(static_cast<decision<typename A::event> (*)(const typename A::state&, const C&)>(
    &A::decide));
template <class A, class E>
using evolve_by_value =
  decltype(static_cast<typename A::state (*)(typename A::state, const E&)>(&A::evolve));
template <class A, class E>
using evolve_by_ref =
  decltype(static_cast<typename A::state (*)(const typename A::state&, const E&)>(&A::evolve));

template <class Void, template <class...> class Op, class... Args>
struct detects : std::false_type {};
template <template <class...> class Op, class... Args>
struct detects<std::void_t<Op<Args...>>, Op, Args...> : std::true_type {};

template <class A, class C> constexpr bool has_decide = detects<void, decide_overload, A, C>::value;
template <class A, class E>
constexpr bool has_evolve_by_value = detects<void, evolve_by_value, A, E>::value;
template <class A, class E>
constexpr bool has_evolve = has_evolve_by_value<A, E> || detects<void, evolve_by_ref, A, E>::value;

/// Fails naming the command (`C`) that has no decide overload.
template <class A, class C> constexpr bool require_decide() {
  static_assert(has_decide<A, C>,
                "cairn::dispatch_decide: A has no `static cairn::decision<event> "
                "decide(const state&, const C&)` for the command alternative C named in "
                "the instantiation note of require_decide");
  return has_decide<A, C>;
}

/// Fails naming the event (`E`) that has no evolve overload.
template <class A, class E> constexpr bool require_evolve() {
  static_assert(has_evolve<A, E>,
                "cairn::dispatch_evolve: A has no `static state evolve(state, const E&)` (or "
                "`evolve(const state&, const E&)`) for the event alternative E named in the "
                "instantiation note of require_evolve; evolve must be total");
  return has_evolve<A, E>;
}

template <class A, class Variant> struct dispatch_table;
template <class A, class... Ts> struct dispatch_table<A, std::variant<Ts...>> {
  static constexpr bool commands_handled() { return (require_decide<A, Ts>() && ...); }
  static constexpr bool events_handled() { return (require_evolve<A, Ts>() && ...); }
};

} // namespace detail

/// Visits `v` with one handler per alternative (see the header comment).
/// `R` is the result type every handler's result converts to; left out, the
/// handlers' common result. An alternative no handler takes is a compile error.
template <class R = detail::match_deduced, class Variant, class... Fs>
decltype(auto) match(Variant&& v, Fs&&... fs) {
  using visitor = overloaded<std::decay_t<Fs>...>;
  using variant = std::remove_cv_t<std::remove_reference_t<Variant>>;
  constexpr bool handled = detail::all_handled<visitor, Variant&&, variant>::value;
  if constexpr (!handled) {
    return; // the static_assert has fired; this keeps further errors out of the way
  } else {
    visitor vis{std::forward<Fs>(fs)...};
    if constexpr (std::is_same_v<R, detail::match_deduced>)
      return std::visit(vis, std::forward<Variant>(v));
    else
      return std::visit([&vis](auto&& x) -> R { return vis(std::forward<decltype(x)>(x)); },
                        std::forward<Variant>(v));
  }
}

/// `A::decide(s, c)` for the command alternative `c` holds: calls A's
/// overload `static decision<event> decide(const state&, const X&)`. Every
/// alternative of `A::command` must have one (a static_assert fires for
/// each that has none).
template <class A>
[[nodiscard]] decision<typename A::event> dispatch_decide(const typename A::state& s,
                                                          const typename A::command& c) {
  if constexpr (!detail::dispatch_table<A, typename A::command>::commands_handled()) {
    return reject("unreachable"); // the static_assert has fired
  } else {
    return std::visit(
      [&s](const auto& x) -> decision<typename A::event> {
        using C = std::decay_t<decltype(x)>;
        auto f = static_cast<decision<typename A::event> (*)(const typename A::state&, const C&)>(
          &A::decide);
        return f(s, x);
      },
      c);
  }
}

/// `A::evolve(s, e)` for the event alternative `e` holds: calls A's overload
/// `static state evolve(state, const X&)` (or `evolve(const state&, const
/// X&)`). Every alternative of `A::event` must have one, which makes evolve
/// total by construction.
template <class A>
[[nodiscard]] typename A::state dispatch_evolve(typename A::state s, const typename A::event& e) {
  using S = typename A::state;
  if constexpr (!detail::dispatch_table<A, typename A::event>::events_handled()) {
    return s; // the static_assert has fired
  } else {
    return std::visit(
      [&s](const auto& x) -> S {
        using E = std::decay_t<decltype(x)>;
        if constexpr (detail::has_evolve_by_value<A, E>) {
          auto f = static_cast<S (*)(S, const E&)>(&A::evolve);
          return f(std::move(s), x);
        } else {
          auto f = static_cast<S (*)(const S&, const E&)>(&A::evolve);
          return f(s, x);
        }
      },
      e);
  }
}

/// What the runtime and the test kit call to decide: A's `decide(const
/// state&, const command&)` when A has one, else the overload per
/// alternative (dispatch_decide). So a decider needs no forwarding function.
template <class A>
[[nodiscard]] decision<typename A::event> decide_with(const typename A::state& s,
                                                      const typename A::command& c) {
  if constexpr (detail::has_decide<A, typename A::command>)
    return A::decide(s, c);
  else
    return dispatch_decide<A>(s, c);
}

/// What the runtime and the test kit call to evolve: A's `evolve(state,
/// const event&)` when A has one, else the overload per alternative.
template <class A>
[[nodiscard]] typename A::state evolve_with(typename A::state s, const typename A::event& e) {
  if constexpr (detail::has_evolve_by_value<A, typename A::event>)
    return A::evolve(std::move(s), e);
  else if constexpr (detail::has_evolve<A, typename A::event>) // by const&
    return A::evolve(s, e);
  else
    return dispatch_evolve<A>(std::move(s), e);
}

} // namespace cairn
