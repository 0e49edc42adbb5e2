#include "cairn/persistence/event_json.hpp"

#include "cairn/model/hex.hpp"
#include "cairn/model/iso_time.hpp"
#include "cairn/model/json_text.hpp"

namespace cairn::persistence {

std::string event_json(const recorded_event& ev, const event_registry* types, bool with_hex) {
  std::string o = "{";
  auto key = [&](std::string_view k) {
    if (o.size() > 1)
      o += ',';
    append_json_string(o, k);
    o += ':';
  };
  auto str = [&](std::string_view k, std::string_view v) {
    key(k);
    append_json_string(o, v);
  };
  auto num = [&](std::string_view k, auto v) {
    key(k);
    o += std::to_string(v);
  };
  num("position", ev.position);
  str("stream", ev.stream);
  num("version", ev.version);
  str("id", ev.id.to_string());
  str("timestamp", iso_time(ev.timestamp_ns));
  num("timestamp_ns", ev.timestamp_ns);
  str("type", ev.type);
  num("schema_version", ev.schema_version);
  str("correlation_id", ev.meta.correlation_id);
  str("causation_id", ev.meta.causation_id);
  str("command_id", ev.meta.command_id);
  str("tenant", ev.meta.tenant);
  str("user", ev.meta.user);
  if (!ev.meta.subject.empty())
    str("subject", ev.meta.subject);
  num("size", std::uint64_t{ev.payload.size()});
  bool hex = with_hex;
  if (types != nullptr && types->current_version(ev.type)) {
    auto data = types->to_json(ev.type, ev.schema_version, ev.payload);
    if (data) {
      key("data");
      o += *data;
    } else {
      str("decode_error", data.error().to_string());
      hex = true;
    }
  } else {
    hex = true;
  }
  if (hex)
    str("payload_hex", to_hex(ev.payload));
  o += '}';
  return o;
}

} // namespace cairn::persistence
