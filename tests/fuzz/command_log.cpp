// The decoder of the command log's entries (format::decode_command, what-if
// replay). Input: a selector byte (bit 0: keep the value as given instead of
// sealing it), the 8-byte key (the sequence), then the body. The target seals
// the body under the key unless told not to, so the fuzzer reaches the
// layout checks behind the seal.

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "fuzz_check.hpp"
#include "cairn/persistence/format.hpp"

using namespace cairn::persistence;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 9)
    return 0;
  const bool raw = (data[0] & 1) != 0;
  std::string_view key{reinterpret_cast<const char*>(data) + 1, 8};
  std::string_view body{reinterpret_cast<const char*>(data) + 9, size - 9};
  const std::string value = raw ? std::string{body} : format::seal(key, body);
  auto c = format::decode_command(key, value);
  if (!c)
    return 0;
  CAIRN_FUZZ_CHECK(format::command_value_size(*c) == value.size(),
                   "a decoded command log entry accounts for every byte");
  CAIRN_FUZZ_CHECK(format::seal_command(key, *c) == value,
                   "a decoded command log entry re-encodes to its bytes");
  CAIRN_FUZZ_CHECK(!c->stream.empty() && (c->event_count == 0) == (c->first_position == 0),
                   "a decoded command log entry has a stream and a consistent event range");
  recorded_command owned;
  format::to_command(*c, format::get_be64(reinterpret_cast<const unsigned char*>(key.data())),
                     owned);
  CAIRN_FUZZ_CHECK(owned.payload == c->payload && owned.stream == c->stream,
                   "a copied command log entry keeps its bytes");
  return 0;
}
