#pragma once

/// Hex digits: one digit's value, for the parsers of event ids and of `cairn
/// import`'s hex, and the lower-case hex of bytes, for every writer of hex
/// (export lines, digests).
///
///   cairn::hex_digit_value('b');   // 11
///   cairn::hex_digit_value('x');   // -1
///   cairn::to_hex("\x01\xff");     // "01ff"

#include <string>
#include <string_view>

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

/// Lower-case hex of every byte, two digits each.
[[nodiscard]] inline std::string to_hex(std::string_view bytes) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (char c : bytes) {
    auto b = static_cast<unsigned char>(c);
    out += digits[b >> 4];
    out += digits[b & 0xf];
  }
  return out;
}

} // namespace cairn
