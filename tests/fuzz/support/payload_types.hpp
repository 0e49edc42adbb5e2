#pragma once

// Every payload type of the samples, in a fixed order: the payload target
// picks one with its first input byte, and make_corpus writes seeds for each.

#include <cstdint>
#include <string_view>
#include <variant>

#include "account.hpp"
#include "cairn/persistence/codec.hpp"
#include "cairn/tools/cli.hpp"
#include "hangar/provider.hpp"
#include "hangar/provider_group.hpp"

namespace cairn::fuzz {

template <class T> struct tag { using type = T; };

enum class payload_kind { command, state, event };

/// One payload type. `Variant` is what it decodes as: the command variant for
/// commands (as the CAF-native path decodes them), the event variant for
/// events (through the registry, as activation does), the state itself.
template <class T, class Variant> struct payload_type {
  using type = T;
  using as = Variant;
  payload_kind kind;
  std::string_view name; ///< The event's type name; empty for commands and states.
  std::uint32_t version; ///< The event's schema version.
};

namespace detail {

template <class A, class F, class... Es> void each_event(F& f, std::variant<Es...>*) {
  (f(payload_type<Es, typename A::event>{payload_kind::event, Es::type_name,
                                         persistence::schema_version_of<Es>()}),
   ...);
}

template <class A, class F> void each_of_aggregate(F& f) {
  f(payload_type<typename A::command, typename A::command>{payload_kind::command, {}, 0});
  f(payload_type<typename A::state, typename A::state>{payload_kind::state, {}, 0});
  each_event<A>(f, static_cast<typename A::event*>(nullptr));
}

} // namespace detail

/// Calls `f(payload_type<T, Variant>{...})` for every payload type of the
/// samples, always in the same order. Never reorder: seeds name types by index.
template <class F> void for_each_payload_type(F&& f) {
  detail::each_of_aggregate<bank::account>(f);
  detail::each_of_aggregate<hangar::provider>(f);
  detail::each_of_aggregate<hangar::provider_group>(f);
  // Stored payloads of an older schema version, lifted by an upcaster.
  f(payload_type<hangar::provider_started_v1, hangar::provider::event>{
    payload_kind::event, hangar::provider_started::type_name, 1});
}

/// The registry the `cairn` CLI and a runtime with the samples build.
inline const persistence::event_registry& sample_registry() {
  static const persistence::event_registry reg = [] {
    persistence::event_registry r;
    auto ok = persistence::register_event_types<bank::account::event>(r);
    if (ok)
      ok = persistence::register_event_types<hangar::provider::event>(r);
    if (ok)
      ok = persistence::register_event_types<hangar::provider_group::event>(r);
    if (ok)
      ok = hangar::provider::upcasters(r);
    if (!ok)
      __builtin_trap();
    return r;
  }();
  return reg;
}

} // namespace cairn::fuzz
