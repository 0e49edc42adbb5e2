#pragma once

// Shared plumbing of the subcommands: opening a store for reading, JSON and
// text rendering, time parsing, progress lines, errors and exit codes.

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "cairn/model/error.hpp"
#include "cairn/persistence/codec.hpp"
#include "cairn/persistence/event_store.hpp"

namespace cairn::tools::detail {

/// What every subcommand gets.
struct context {
  const persistence::event_registry& types;
  bool json = false;
};

/// Prints `cairn: <error>` and returns its exit code (usage for invalid_argument).
int report(const error& e);

/// Opens `dir` read-only; `invalid_argument` when it is missing or not a cairn store.
[[nodiscard]] result<std::unique_ptr<persistence::event_store>> open_read(const std::string& dir);

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

/// Lower-case hex of every byte.
[[nodiscard]] std::string to_hex(std::string_view bytes);
/// The bytes of an even-length hex string; `invalid_argument` otherwise.
[[nodiscard]] result<std::string> from_hex(std::string_view hex);

/// "2026-11-24T10:00:00.123456789Z"
[[nodiscard]] std::string iso_time(std::int64_t ns);
/// Nanoseconds since the epoch from an integer or an ISO-8601 time with a
/// date, hours, minutes, seconds, an optional fraction and `Z` or `±HH:MM`.
[[nodiscard]] result<std::int64_t> parse_time(std::string_view text);

/// "1 event", "2 events"
[[nodiscard]] std::string count_of(std::uint64_t n, std::string_view noun);

/// "1.5 MiB"
[[nodiscard]] std::string human_bytes(std::uint64_t bytes);

/// The event as a JSON object: metadata, then "data" (the payload as JSON)
/// when its type is registered and it decodes, else "payload_hex" (and
/// "decode_error" when a registered type fails). `with_hex` always adds
/// "payload_hex", for a lossless export.
[[nodiscard]] std::string event_json(const persistence::recorded_event& ev,
                                     const persistence::event_registry& types, bool with_hex);

/// The payload for humans: its JSON, or its size and (the start of) its hex.
[[nodiscard]] std::string payload_text(const persistence::recorded_event& ev,
                                       const persistence::event_registry& types);

/// The non-empty metadata fields as ` name=value` pairs.
[[nodiscard]] std::string metadata_text(const persistence::metadata& m);

/// One updating line on stderr while it is a terminal; silent otherwise.
class progress {
public:
  progress(std::string label, std::uint64_t total);
  ~progress();
  progress(const progress&) = delete;
  progress& operator=(const progress&) = delete;
  /// Redraws at most every 100 ms.
  void update(std::uint64_t done);

private:
  std::string label_;
  std::uint64_t total_;
  bool enabled_;
  bool drawn_ = false;
  std::chrono::steady_clock::time_point last_{};
};

// The subcommands; each returns its exit code.
int streams(const context& ctx, const std::string& dir, const std::string& prefix);
int events(const context& ctx, const std::string& dir, const std::string& stream,
           std::uint64_t from, std::uint64_t to, const std::string& as_of);
struct tail_options {
  bool follow = false;
  std::vector<std::string> categories;
  std::vector<std::string> types;
  std::uint64_t from = 1;
};
int tail(const context& ctx, const std::string& dir, const tail_options& opts);
int stats(const context& ctx, const std::string& dir);
int checkpoints(const context& ctx, const std::string& dir);
int backup(const context& ctx, const std::string& dir, const std::string& dest);
int verify(const context& ctx, const std::string& dir);
int export_log(const context& ctx, const std::string& dir, const std::string& file);
struct import_options {
  /// Import events whose type (or schema version) the registry cannot decode,
  /// without checking their payloads. Default: false (refused, naming the line).
  bool allow_unknown_types = false;
};
int import_log(const context& ctx, const std::string& dir, const std::string& file,
               const import_options& opts);
struct dlq_options {
  std::string action; ///< list, replay or discard
  std::string subscriber;
  std::uint64_t position = 0; ///< 0: all
};
int dlq(const context& ctx, const std::string& dir, const dlq_options& opts);

} // namespace cairn::tools::detail
