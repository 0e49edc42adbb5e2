#pragma once

// The text forms `cairn` reads and writes: JSON strings and objects, hex,
// ISO-8601 times, and the JSON of an event or a dead letter (docs/operations.md).
// No I/O: tests and fuzz targets call them with any input.
//
//   auto bytes = from_hex("6400");            // invalid_argument on bad hex
//   auto ns = parse_time("2026-11-24T10:00:00Z");
//   std::string line = json_object{}.add("stream", "account-1").str();

#include <cstdint>
#include <string>
#include <string_view>

#include "cairn/model/error.hpp"
#include "cairn/model/hex.hpp"
#include "cairn/model/iso_time.hpp"
// codec.hpp comes first: cereal's JSON archive configures rapidjson.
#include "cairn/persistence/codec.hpp"
#include "cairn/persistence/event_json.hpp"
#include "cairn/persistence/types.hpp"

namespace cairn::tools {

/// `s` as a quoted, escaped JSON string.
[[nodiscard]] std::string json_string(std::string_view s);

/// Builds one JSON object, member by member, in insertion order.
class json_object {
public:
  json_object& add(std::string_view key, std::string_view value);
  json_object& add(std::string_view key, const char* value) {
    return add(key, std::string_view{value});
  }
  json_object& add(std::string_view key, std::uint64_t value);
  json_object& add(std::string_view key, std::int64_t value);
  json_object& add(std::string_view key, std::uint32_t value) {
    return add(key, std::uint64_t{value});
  }
  json_object& add(std::string_view key, bool value);
  /// `json` must already be valid JSON (an object, an array, a number).
  json_object& add_raw(std::string_view key, std::string_view json);
  [[nodiscard]] std::string str() const { return out_ + '}'; }

private:
  void key(std::string_view k);
  std::string out_ = "{";
};

/// A dead letter as one JSON object, its subscriber under `subscriber_key`
/// (`cairn dlq list` says "subscriber", an export line "dead_letter").
[[nodiscard]] std::string dead_letter_json(const persistence::dead_letter& dl,
                                           std::string_view subscriber_key);

/// Lower-case hex of every byte (cairn/model/hex.hpp).
using cairn::to_hex;
/// The bytes of an even-length hex string; `invalid_argument` otherwise.
[[nodiscard]] result<std::string> from_hex(std::string_view hex);

/// "2026-11-24T10:00:00.123456789Z" (cairn/model/iso_time.hpp).
using cairn::iso_time;
/// Nanoseconds since the epoch from an integer or an ISO-8601 time with a
/// date, hours, minutes, seconds, an optional fraction and `Z` or `±HH:MM`.
[[nodiscard]] result<std::int64_t> parse_time(std::string_view text);

/// The event as a JSON object: metadata, then "data" (the payload as JSON)
/// when its type is registered and it decodes, else "payload_hex" (and
/// "decode_error" when a registered type fails). `with_hex` always adds
/// "payload_hex", for a lossless export. The one writer of an export line is
/// persistence::event_json (truncate_after saves a tail with it too).
[[nodiscard]] inline std::string event_json(const persistence::recorded_event& ev,
                                            const persistence::event_registry& types,
                                            bool with_hex) {
  return persistence::event_json(ev, &types, with_hex);
}

} // namespace cairn::tools
