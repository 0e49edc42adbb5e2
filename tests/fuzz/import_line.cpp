// `cairn import`'s line parser (cairn/tools/import_line.hpp): the first line of
// the input as the export header, every later line as an event, checkpoint,
// read-model or dead-letter line. An event, checkpoint or dead letter that
// parses must survive export again: written as `cairn export` writes it and
// parsed back, it is the same (export/import is lossless).

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <variant>

#include "fuzz_check.hpp"
#include "cairn/tools/import_line.hpp"
#include "cairn/tools/text.hpp"

using namespace cairn;
using namespace cairn::tools;

namespace {

bool same(const persistence::dead_letter& a, const persistence::dead_letter& b) {
  return a.subscriber == b.subscriber && a.position == b.position && a.stream == b.stream
         && a.version == b.version && a.type == b.type && a.error == b.error
         && a.attempts == b.attempts && a.first_failure_ns == b.first_failure_ns
         && a.last_failure_ns == b.last_failure_ns && a.replay_requested == b.replay_requested;
}

/// The event as `cairn export` writes it.
std::string exported(const imported_event& e) {
  static const persistence::event_registry no_types;
  persistence::recorded_event r;
  r.stream = e.stream;
  r.version = e.version;
  r.position = e.position;
  r.id = e.data.id.value_or(persistence::event_id{});
  r.timestamp_ns = e.data.timestamp_ns.value_or(0);
  r.type = e.data.type;
  r.schema_version = e.data.schema_version;
  r.meta = e.meta;
  r.payload = e.data.payload;
  return event_json(r, no_types, true);
}

void check_round_trip(const import_record& rec) {
  if (const auto* e = std::get_if<imported_event>(&rec)) {
    auto back = parse_import_line(exported(*e));
    CAIRN_FUZZ_CHECK(back.has_value(), "an imported event exports to a line that imports");
    const auto* b = std::get_if<imported_event>(&*back);
    CAIRN_FUZZ_CHECK(b != nullptr && b->position == e->position && b->stream == e->stream
                       && b->version == e->version && b->meta == e->meta
                       && b->data.type == e->data.type
                       && b->data.schema_version == e->data.schema_version
                       && b->data.payload == e->data.payload && b->data.id == e->data.id
                       && b->data.timestamp_ns == e->data.timestamp_ns,
                     "an imported event survives export and import unchanged");
  } else if (const auto* dl = std::get_if<persistence::dead_letter>(&rec)) {
    auto back = parse_import_line(dead_letter_json(*dl, "dead_letter"));
    CAIRN_FUZZ_CHECK(back.has_value(), "an imported dead letter exports to a line that imports");
    const auto* b = std::get_if<persistence::dead_letter>(&*back);
    CAIRN_FUZZ_CHECK(b != nullptr && same(*b, *dl),
                     "an imported dead letter survives export and import unchanged");
  } else if (const auto* cp = std::get_if<persistence::checkpoint>(&rec)) {
    auto back = parse_import_line(
      json_object{}.add("checkpoint", cp->name).add("position", cp->position).str());
    const auto* b = back ? std::get_if<persistence::checkpoint>(&*back) : nullptr;
    CAIRN_FUZZ_CHECK(b != nullptr && b->name == cp->name && b->position == cp->position,
                     "an imported checkpoint survives export and import unchanged");
  }
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view text{reinterpret_cast<const char*>(data), size};
  bool first = true;
  while (!text.empty()) {
    auto nl = text.find('\n');
    auto line = text.substr(0, nl);
    text = nl == std::string_view::npos ? std::string_view{} : text.substr(nl + 1);
    if (first) {
      first = false;
      (void)parse_import_header(line);
      continue;
    }
    auto rec = parse_import_line(line);
    if (!rec) {
      CAIRN_FUZZ_CHECK(rec.error().code == errc::invalid_argument,
                       "a bad line is invalid_argument");
      continue;
    }
    check_round_trip(*rec);
  }
  return 0;
}
