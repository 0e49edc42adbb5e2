#pragma once

/// The two clocks cairn reads, as nanosecond counts.
///
///   wall_now_ns()    event timestamps and dead-letter times (system_clock)
///   steady_now_ns()  command deadlines and bounds (steady_clock)

#include <chrono>
#include <cstdint>

namespace cairn {

/// Nanoseconds since the Unix epoch.
[[nodiscard]] inline std::int64_t wall_now_ns() noexcept {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
           std::chrono::system_clock::now().time_since_epoch())
    .count();
}

/// Nanoseconds of the monotonic clock; only differences mean anything.
[[nodiscard]] inline std::int64_t steady_now_ns() noexcept {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
           std::chrono::steady_clock::now().time_since_epoch())
    .count();
}

} // namespace cairn
