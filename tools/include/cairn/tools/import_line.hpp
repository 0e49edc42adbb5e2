#pragma once

// Parsing of `cairn import`'s input, one line at a time: the header, then
// events, checkpoints, read-model keys and dead letters (docs/operations.md).
// No I/O and no store: a fuzz target can call it with any bytes.
//
//   auto header = parse_import_header(first_line, "data.jsonl line 1");
//   auto rec = parse_import_line(line, "data.jsonl line 2");
//   if (auto* ev = std::get_if<imported_event>(&*rec)) ...

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <variant>

#include "cairn/model/error.hpp"
#include "cairn/persistence/types.hpp"

namespace cairn::tools {

/// The longest line `import` reads: 64 MiB, room for a 1 MiB payload as hex
/// plus its JSON `data`, and for read-model values of the same size.
inline constexpr std::size_t max_import_line = std::size_t{64} << 20;

/// The format `export` writes in its header.
inline constexpr std::uint64_t export_format = 1;

/// Line 1 of an export.
struct export_header {
  std::uint64_t format = 0;
  std::uint64_t events = 0; ///< How many event lines follow.
  /// Where the exported log was complete from: 1 (absent from the header)
  /// unless retention had cut it, and then its log has holes below this
  /// position and streams that begin past version 1 (docs/audit.md#retention).
  std::uint64_t first_position = 1;
};

/// One exported event, ready to append.
struct imported_event {
  std::uint64_t position = 0;
  std::string stream;
  std::uint64_t version = 0;
  persistence::metadata meta;
  persistence::event_data data;
};

/// What one line after the header holds (a read-model line is a `put`).
using import_record = std::variant<imported_event, persistence::checkpoint, persistence::kv_op,
                                   persistence::dead_letter>;

/// Parses line 1. `invalid_argument` naming `where` when it is not a cairn
/// export header; the format number is returned, not checked.
[[nodiscard]] result<export_header> parse_import_header(std::string_view line,
                                                        const std::string& where = "line 1");

/// Parses one line after the header: its JSON (parsed iteratively, so any
/// nesting depth is safe; lines longer than `max_import_line` are refused),
/// required fields and their types, stream name, id, schema version and hex.
/// `invalid_argument` naming `where` otherwise. Does not decode payloads nor
/// check positions against other lines: `import_log` does. Never throws.
[[nodiscard]] result<import_record> parse_import_line(std::string_view line,
                                                      const std::string& where = "line");

} // namespace cairn::tools
