#pragma once

/// Nanoseconds since the Unix epoch as ISO-8601 UTC text, and the civil-date
/// conversions under it (proleptic Gregorian calendar, H. Hinnant's
/// algorithms): exact for every int64 nanosecond time, no time zone state.
/// Written once for every writer of an event's time (the CLI, export lines,
/// the tail truncate_after saves).
///
///   cairn::iso_time(0);                    // "1970-01-01T00:00:00.000000000Z"
///   cairn::days_from_civil(2026, 11, 24);  // 20781

#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <string>

namespace cairn {

/// Days since 1970-01-01 of the civil date y-m-d (m 1-12, d 1-31).
[[nodiscard]] constexpr std::int64_t days_from_civil(std::int64_t y, unsigned m,
                                                     unsigned d) noexcept {
  y -= m <= 2;
  const std::int64_t era = (y >= 0 ? y : y - 399) / 400;
  const auto yoe = static_cast<unsigned>(y - era * 400);
  const unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + static_cast<std::int64_t>(doe) - 719468;
}

/// The civil date of day `z` since 1970-01-01.
constexpr void civil_from_days(std::int64_t z, std::int64_t& y, unsigned& m, unsigned& d) noexcept {
  z += 719468;
  const std::int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  const auto doe = static_cast<unsigned>(z - era * 146097);
  const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const unsigned mp = (5 * doy + 2) / 153;
  d = doy - (153 * mp + 2) / 5 + 1;
  m = mp < 10 ? mp + 3 : mp - 9;
  y = static_cast<std::int64_t>(yoe) + era * 400 + (m <= 2);
}

/// "2026-11-24T10:00:00.123456789Z": UTC, always nine fraction digits.
[[nodiscard]] inline std::string iso_time(std::int64_t ns) {
  constexpr std::int64_t ns_per_s = 1'000'000'000;
  std::int64_t secs = ns / ns_per_s, frac = ns % ns_per_s;
  if (frac < 0) {
    frac += ns_per_s;
    --secs;
  }
  std::int64_t days = secs / 86400, rem = secs % 86400;
  if (rem < 0) {
    rem += 86400;
    --days;
  }
  std::int64_t y = 0;
  unsigned m = 0, d = 0;
  civil_from_days(days, y, m, d);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%04" PRId64 "-%02u-%02uT%02d:%02d:%02d.%09" PRId64 "Z", y, m, d,
                static_cast<int>(rem / 3600), static_cast<int>(rem / 60 % 60),
                static_cast<int>(rem % 60), frac);
  return buf;
}

} // namespace cairn
