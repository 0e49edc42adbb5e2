#pragma once

/// What the hangar aggregates share: id validation, time units, and the
/// event builder that keeps `decide` and `evolve` in agreement.
///
///   if (!hangar::is_valid_id(cmd.id))
///     return cairn::reject("invalid_provider_id");

#include <cstddef>
#include <cstdint>
#include <string_view>
#include <utility>
#include <vector>

namespace hangar {

/// Provider and group ids are 1-64 chars of [A-Za-z0-9_-], so `provider-<id>`
/// and `provider_group-<id>` are always valid stream names.
inline constexpr std::size_t max_id_length = 64;

/// Correlation and request ids end up in event metadata, which the store
/// limits to 255 bytes.
inline constexpr std::size_t max_token_length = 255;

inline constexpr std::int64_t ns_per_ms = 1'000'000;
inline constexpr std::int64_t ns_per_s = 1'000'000'000;

/// True for 1-64 chars of [A-Za-z0-9_-].
[[nodiscard]] constexpr bool is_valid_id(std::string_view id) noexcept {
  if (id.empty() || id.size() > max_id_length)
    return false;
  for (char c : id) {
    const bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')
                    || c == '_' || c == '-';
    if (!ok)
      return false;
  }
  return true;
}

/// True for 1-255 printable ASCII bytes without spaces (correlation and
/// request ids: UUIDs, "req-17", ...).
[[nodiscard]] constexpr bool is_valid_token(std::string_view token) noexcept {
  if (token.empty() || token.size() > max_token_length)
    return false;
  for (char c : token)
    if (c <= ' ' || c >= 127)
      return false;
  return true;
}

namespace detail {

/// Collects the events of one decision and applies each one to a copy of the
/// state as it is pushed. Later checks in `decide` read that copy, so they
/// see exactly what `evolve` (and therefore a replay) will compute.
template <class A> class event_builder {
public:
  using state_type = typename A::state;
  using event_type = typename A::event;

  explicit event_builder(const state_type& s) : state_(s) {}

  template <class E> void push(E e) {
    events_.emplace_back(std::move(e));
    state_ = A::evolve(std::move(state_), events_.back());
  }

  /// The state after every event pushed so far.
  [[nodiscard]] const state_type& state() const noexcept { return state_; }

  [[nodiscard]] std::vector<event_type> take() { return std::move(events_); }

private:
  state_type state_;
  std::vector<event_type> events_;
};

} // namespace detail

} // namespace hangar
