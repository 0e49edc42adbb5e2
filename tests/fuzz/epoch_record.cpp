// format::decode_epoch_payload and format::decode_epoch_header, the decoders
// of what replication copies from another node (an epoch record's payload)
// and of the store header's epoch. Input: a selector byte (bit 0 clear: an
// epoch payload; set: the header's body, which the target seals with the
// right checksum), then the bytes.

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "fuzz_check.hpp"
#include "cairn/persistence/format.hpp"

using namespace cairn::persistence;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1)
    return 0;
  std::string_view bytes{reinterpret_cast<const char*>(data) + 1, size - 1};
  if ((data[0] & 1) == 0) {
    auto e = format::decode_epoch_payload(bytes);
    if (!e)
      return 0;
    CAIRN_FUZZ_CHECK(e->epoch > 0, "an epoch is at least 1");
    CAIRN_FUZZ_CHECK(!e->node.empty() && e->node.size() <= format::max_epoch_node,
                     "a node name is 1-255 bytes");
    CAIRN_FUZZ_CHECK(format::epoch_payload_header_size + e->node.size() == bytes.size(),
                     "every byte is the header or the node name");
    CAIRN_FUZZ_CHECK(format::encode_epoch_payload(*e) == bytes,
                     "a decoded payload re-encodes to its bytes");
    return 0;
  }
  auto value = format::seal(format::epoch_key, bytes);
  auto h = format::decode_epoch_header(value);
  if (!h)
    return 0;
  CAIRN_FUZZ_CHECK(format::encode_epoch_header(h->first, h->second) == bytes,
                   "a decoded header re-encodes to its bytes");
  return 0;
}
