#pragma once

/// One event as one JSON object: the line `cairn export` writes per event
/// (and `cairn events --json`, `cairn tail --json`), and the lines
/// event_store::truncate_after saves a removed tail in, so `cairn import`
/// reads both (docs/operations.md#export-and-import). Written once, here.
///
///   auto line = cairn::persistence::event_json(ev, &registry, true);
///   // {"position":7,"stream":"account-1","version":2,"id":"...","timestamp":"2026-...Z",
///   //  "timestamp_ns":...,"type":"deposited","schema_version":1,...,"size":9,
///   //  "data":{...},"payload_hex":"..."}

#include <string>

// codec.hpp comes first: cereal's JSON archive configures rapidjson.
#include "cairn/persistence/codec.hpp"
#include "cairn/persistence/types.hpp"

namespace cairn::persistence {

/// The event as a JSON object, members in this order: position, stream,
/// version, id, timestamp (ISO-8601), timestamp_ns, type, schema_version, the
/// metadata (correlation_id, causation_id, command_id, tenant, user, and
/// subject only when set, so lines of stores without subjects stay as they
/// were), size, then "data" (the payload as JSON) when `types` registers the
/// type and it decodes, "decode_error" when a registered type fails, and
/// "payload_hex" when the type is not registered (`types` null: none is),
/// when it fails, or always with `with_hex` (a lossless line, what import
/// reads). Personal data shows as the caller's personal_scope decrypts it.
[[nodiscard]] std::string event_json(const recorded_event& ev, const event_registry* types,
                                     bool with_hex);

} // namespace cairn::persistence
