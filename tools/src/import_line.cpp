#include "cairn/tools/import_line.hpp"

#include <exception>
#include <limits>

#include "cairn/model/stream_name.hpp"
#include "cairn/tools/text.hpp" // includes codec.hpp first: cereal's JSON archive configures rapidjson

#include <rapidjson/document.h>

namespace cairn::tools {

namespace {

/// Reads the fields of one JSON line, naming the line in its errors.
class line_reader {
public:
  line_reader(const std::string& where, const rapidjson::Value& v) : where_(where), v_(v) {}

  [[nodiscard]] result<std::string> str(const char* key, bool required = true) const {
    auto it = v_.FindMember(key);
    if (it == v_.MemberEnd()) {
      if (required)
        return missing(key);
      return std::string{};
    }
    if (!it->value.IsString())
      return wrong(key, "a string");
    return std::string{it->value.GetString(), it->value.GetStringLength()};
  }

  [[nodiscard]] result<std::uint64_t> u64(const char* key) const {
    auto it = v_.FindMember(key);
    if (it == v_.MemberEnd())
      return missing(key);
    if (!it->value.IsUint64())
      return wrong(key, "a non-negative integer");
    return it->value.GetUint64();
  }

  [[nodiscard]] result<std::int64_t> i64(const char* key) const {
    auto it = v_.FindMember(key);
    if (it == v_.MemberEnd())
      return missing(key);
    if (!it->value.IsInt64())
      return wrong(key, "an integer");
    return it->value.GetInt64();
  }

  /// False when absent or not a boolean.
  [[nodiscard]] bool flag(const char* key) const {
    auto it = v_.FindMember(key);
    return it != v_.MemberEnd() && it->value.IsBool() && it->value.GetBool();
  }

  /// The bytes of the hex string `key`.
  [[nodiscard]] result<std::string> hex(const char* key) const {
    auto text = str(key);
    if (!text)
      return text;
    auto bytes = from_hex(*text);
    if (!bytes)
      return tl::unexpected(bad(std::string{"\""} + key + "\": " + bytes.error().message));
    return bytes;
  }

  [[nodiscard]] bool has(const char* key) const { return v_.HasMember(key); }

  [[nodiscard]] error bad(std::string why) const {
    return error{errc::invalid_argument, std::move(why), where_};
  }

private:
  tl::unexpected<error> missing(const char* key) const {
    return tl::unexpected(bad(std::string{"no \""} + key + "\" field"));
  }
  tl::unexpected<error> wrong(const char* key, const char* what) const {
    return tl::unexpected(bad(std::string{"\""} + key + "\" is not " + what));
  }

  const std::string& where_;
  const rapidjson::Value& v_;
};

/// The first error among `results`, if any.
template <class... Rs> const error* first_error(const Rs&... results) {
  const error* out = nullptr;
  ((out = out != nullptr || results ? out : &results.error()), ...);
  return out;
}

result<imported_event> parse_event(const line_reader& r) {
  auto position = r.u64("position");
  auto stream = r.str("stream");
  auto version = r.u64("version");
  auto id = r.str("id");
  auto ts = r.i64("timestamp_ns");
  auto type = r.str("type");
  auto schema = r.u64("schema_version");
  if (const auto* err = first_error(position, stream, version, id, ts, type, schema))
    return tl::unexpected(*err);
  if (auto ok = validate_stream_name(*stream); !ok)
    return tl::unexpected(r.bad(ok.error().to_string()));
  if (*version == 0)
    return tl::unexpected(r.bad("\"version\" is 0; versions start at 1"));
  if (!persistence::is_valid_type_name(*type))
    return tl::unexpected(r.bad("\"type\" is not 1-255 printable bytes without spaces"));
  auto parsed_id = persistence::event_id::parse(*id);
  if (!parsed_id)
    return tl::unexpected(r.bad("\"id\" is not 32 hex digits"));
  if (*schema == 0 || *schema > std::numeric_limits<std::uint32_t>::max())
    return tl::unexpected(r.bad("\"schema_version\" is out of range"));
  auto payload = r.hex("payload_hex");
  if (!payload)
    return tl::unexpected(payload.error());
  imported_event e;
  e.position = *position;
  e.stream = std::move(*stream);
  e.version = *version;
  e.data.type = std::move(*type);
  e.data.schema_version = static_cast<std::uint32_t>(*schema);
  e.data.payload = std::move(*payload);
  e.data.id = *parsed_id;
  e.data.timestamp_ns = *ts;
  std::string* fields[] = {&e.meta.correlation_id, &e.meta.causation_id, &e.meta.command_id,
                           &e.meta.tenant,         &e.meta.user,         &e.meta.subject};
  const char* names[] = {"correlation_id", "causation_id", "command_id",
                         "tenant",         "user",         "subject"};
  for (int i = 0; i < 6; ++i) {
    auto v = r.str(names[i], false);
    if (!v)
      return tl::unexpected(v.error());
    *fields[i] = std::move(*v);
  }
  return e;
}

result<import_record> parse_checkpoint(const line_reader& r) {
  auto name = r.str("checkpoint");
  auto pos = r.u64("position");
  if (const auto* err = first_error(name, pos))
    return tl::unexpected(*err);
  return import_record{persistence::checkpoint{std::move(*name), *pos}};
}

result<import_record> parse_kv(const line_reader& r) {
  auto space = r.str("kv");
  auto key = r.hex("key_hex");
  auto value = r.hex("value_hex");
  if (const auto* err = first_error(space, key, value))
    return tl::unexpected(*err);
  return import_record{persistence::kv_op{persistence::kv_op::kind::put, std::move(*space),
                                          std::move(*key), std::move(*value)}};
}

result<import_record> parse_dead_letter(const line_reader& r) {
  auto who = r.str("dead_letter");
  auto pos = r.u64("position");
  auto stream = r.str("stream");
  auto version = r.u64("version");
  auto type = r.str("type");
  auto why = r.str("error");
  auto attempts = r.u64("attempts");
  auto first = r.i64("first_failure_ns");
  auto last = r.i64("last_failure_ns");
  if (const auto* err = first_error(who, pos, stream, version, type, why, attempts, first, last))
    return tl::unexpected(*err);
  if (*attempts > std::numeric_limits<std::uint32_t>::max())
    return tl::unexpected(r.bad("\"attempts\" is out of range"));
  persistence::dead_letter dl;
  dl.subscriber = std::move(*who);
  dl.position = *pos;
  dl.stream = std::move(*stream);
  dl.version = *version;
  dl.type = std::move(*type);
  dl.error = std::move(*why);
  dl.attempts = static_cast<std::uint32_t>(*attempts);
  dl.first_failure_ns = *first;
  dl.last_failure_ns = *last;
  dl.replay_requested = r.flag("replay_requested");
  return import_record{std::move(dl)};
}

/// Parses `line` into `doc`: iteratively (rapidjson's recursive parser
/// overflows the stack on deep nesting), refusing overlong lines.
result<void> parse_object(rapidjson::Document& doc, std::string_view line,
                          const std::string& where) {
  if (line.size() > max_import_line)
    return fail(errc::invalid_argument,
                "the line is longer than " + std::to_string(max_import_line >> 20) + " MiB", where);
  doc.Parse<rapidjson::kParseIterativeFlag>(line.data(), line.size());
  if (doc.HasParseError())
    return fail(errc::invalid_argument,
                "not JSON (error at byte " + std::to_string(doc.GetErrorOffset()) + ")", where);
  if (!doc.IsObject())
    return fail(errc::invalid_argument, "not a JSON object", where);
  return {};
}

} // namespace

result<export_header> parse_import_header(std::string_view line, const std::string& where) {
  try {
    rapidjson::Document doc;
    if (auto ok = parse_object(doc, line, where); !ok || !doc.HasMember("cairn_export"))
      return fail(errc::invalid_argument,
                  "not a cairn export (the first line is no cairn_export header)", where);
    line_reader r{where, doc};
    auto format = r.u64("cairn_export");
    auto events = r.u64("events");
    if (const auto* err = first_error(format, events))
      return tl::unexpected(*err);
    export_header h{*format, *events};
    if (r.has("first_position")) {
      auto first = r.u64("first_position");
      if (!first)
        return tl::unexpected(first.error());
      h.first_position = *first;
    }
    return h;
  } catch (const std::exception& e) {
    return fail(errc::invalid_argument, std::string{"unreadable header: "} + e.what(), where);
  }
}

result<import_record> parse_import_line(std::string_view line, const std::string& where) {
  try {
    rapidjson::Document doc;
    if (auto ok = parse_object(doc, line, where); !ok)
      return tl::unexpected(ok.error());
    line_reader r{where, doc};
    if (r.has("checkpoint"))
      return parse_checkpoint(r);
    if (r.has("kv"))
      return parse_kv(r);
    if (r.has("dead_letter"))
      return parse_dead_letter(r);
    auto ev = parse_event(r);
    if (!ev)
      return tl::unexpected(ev.error());
    return import_record{std::move(*ev)};
  } catch (const std::exception& e) {
    // rapidjson's assertions throw (cereal configures them), and memory may run out.
    return fail(errc::invalid_argument, std::string{"unreadable line: "} + e.what(), where);
  }
}

} // namespace cairn::tools
