#include "cairn/persistence/types.hpp"

#include "cairn/model/hex.hpp"

namespace cairn::persistence {

std::string event_id::to_string() const {
  static constexpr char digits[] = "0123456789abcdef";
  std::string out(32, '0');
  for (std::size_t i = 0; i < bytes.size(); ++i) {
    out[2 * i] = digits[bytes[i] >> 4];
    out[2 * i + 1] = digits[bytes[i] & 0xf];
  }
  return out;
}

std::optional<event_id> event_id::parse(const std::string& hex) {
  if (hex.size() != 32)
    return std::nullopt;
  event_id id;
  for (std::size_t i = 0; i < id.bytes.size(); ++i) {
    int hi = hex_digit_value(hex[2 * i]);
    int lo = hex_digit_value(hex[2 * i + 1]);
    if (hi < 0 || lo < 0)
      return std::nullopt;
    id.bytes[i] = static_cast<std::uint8_t>(hi << 4 | lo);
  }
  return id;
}

std::string expected_version::to_string() const {
  switch (kind_) {
    case kind::any: return "any";
    case kind::no_stream: return "no_stream";
    case kind::stream_exists: return "stream_exists";
    case kind::exact: return std::to_string(value_);
  }
  return "?";
}

} // namespace cairn::persistence
