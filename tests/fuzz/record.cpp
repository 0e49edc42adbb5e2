// format::decode_record, the log record decoder every read goes through.
// Input: the record's position (8 bytes LE), then the record. The target
// writes the right checksum into the record first, so the fuzzer explores the
// layout checks behind it (a random checksum would stop every input there).
// A record that decodes must re-encode to the same bytes, except the flags
// and reserved bytes that decoding ignores.

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "fuzz_check.hpp"
#include "cairn/persistence/format.hpp"

using namespace cairn::persistence;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 8)
    return 0;
  const auto position = format::get_le<std::uint64_t>(data);
  std::vector<unsigned char> rec(data + 8, data + size);
  if (rec.size() >= 8)
    format::put_le<std::uint64_t>(rec.data(),
                                  format::record_checksum(rec.data(), rec.size(), position));
  auto v = format::decode_record(rec.data(), rec.size(), position);
  if (!v)
    return 0;
  recorded_event ev;
  format::to_event(*v, position, ev);
  CAIRN_FUZZ_CHECK(ev.payload.size() == v->payload.size(), "to_event copies the payload");

  event_data data_back{ev.type, ev.schema_version, ev.payload, ev.id, ev.timestamp_ns};
  format::record_fields f{ev.version, v->prev_position, ev.timestamp_ns, ev.id};
  CAIRN_FUZZ_CHECK(format::record_size(ev.stream, data_back, ev.meta) == rec.size(),
                   "record_size of a decoded record is its size");
  std::vector<unsigned char> again(rec.size());
  format::encode_record(again.data(), position, ev.stream, data_back, ev.meta, f);
  auto same = [&](std::size_t from, std::size_t to) {
    return std::memcmp(rec.data() + from, again.data() + from, to - from) == 0;
  };
  CAIRN_FUZZ_CHECK(same(8, 9) && same(10, 63) && same(64, rec.size()),
                   "a decoded record re-encodes to its bytes");
  return 0;
}
