// format::decode_head_log, the head-log decoder a store runs at open and
// a reader on every head lookup past heads_at. Input: the entry's position
// (8 bytes LE), then the body, which the target seals with the right
// checksum (bit 0 of the position's first byte set: kept unsealed).

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "fuzz_check.hpp"
#include "cairn/persistence/format.hpp"

using namespace cairn::persistence;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 8)
    return 0;
  const auto key = format::get_le<std::uint64_t>(data);
  std::string_view body{reinterpret_cast<const char*>(data) + 8, size - 8};
  const bool raw = (data[0] & 1) != 0;
  const std::string value = raw ? std::string{body} : format::seal(format::be64_key(key), body);
  auto pairs = format::decode_head_log(key, value);
  if (!pairs)
    return 0;
  CAIRN_FUZZ_CHECK(!pairs->empty(), "a head-log entry that decodes has pairs");
  CAIRN_FUZZ_CHECK(pairs->size() * format::head_log_pair_size + format::seal_size == value.size(),
                   "every byte of a head-log entry is in a pair");
  return 0;
}
