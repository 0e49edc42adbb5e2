#pragma once

/// Exponential backoff, written once for every retry in cairn:
///
///   constexpr cairn::backoff restart{std::chrono::milliseconds{20},
///                                    std::chrono::milliseconds{5000}};
///   self->delayed_send(self, restart.after(failures), retry_atom::value);
///
/// `after(n)` is the wait after the n-th failure in a row: `base` after the
/// first, multiplied by `multiplier` per further failure, never above `cap`.
/// No jitter: none of its users needs one (each retry is one actor's own).

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>

namespace cairn {

/// A backoff schedule: base, cap and growth factor.
struct backoff {
  /// The wait after the first failure. Default: 100 ms.
  std::chrono::milliseconds base{100};
  /// The longest wait. Default: 10 s.
  std::chrono::milliseconds cap{10000};
  /// Growth per failure in a row; 1 gives a constant wait. Default: 2 (doubling).
  double multiplier = 2.0;

  /// The wait after failure number `failures` in a row (0 counts as 1):
  /// `min(cap, base * multiplier^(failures - 1))`, truncated to milliseconds.
  [[nodiscard]] std::chrono::milliseconds after(std::uint64_t failures) const noexcept {
    auto steps = static_cast<double>(failures > 0 ? failures - 1 : 0);
    double ms = static_cast<double>(base.count()) * std::pow(multiplier, steps);
    ms = std::min(ms, static_cast<double>(cap.count()));
    return std::chrono::milliseconds{static_cast<std::int64_t>(ms)};
  }
};

} // namespace cairn
