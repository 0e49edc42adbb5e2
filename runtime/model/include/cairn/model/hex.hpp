#pragma once

/// One hex digit's value, for the parsers of event ids and of `cairn import`'s hex.
///
///   cairn::hex_digit_value('b');   // 11
///   cairn::hex_digit_value('x');   // -1

namespace cairn {

/// 0-15 for [0-9a-fA-F], -1 for anything else.
[[nodiscard]] constexpr int hex_digit_value(char c) noexcept {
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  return -1;
}

} // namespace cairn
