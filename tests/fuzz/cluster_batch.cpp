// The gateways' batches (cairn/actors/gateway.hpp) as CAF's deserializer reads
// them from a peer's BASP payload: the first byte picks forward_batch or
// reply_batch, the rest is the bytes. Reading is bounded by the input: a
// sequence or string that claims more than is left fails instead of being
// allocated. A batch that reads is written back to bytes that read to the same
// batch, and those bytes are written the same way again.

#include <cstddef>
#include <cstdint>
#include <vector>

#include <caf/binary_deserializer.hpp>
#include <caf/binary_serializer.hpp>
#include <caf/deep_to_string.hpp>

#include "cairn/actors/gateway.hpp"
#include "fuzz_check.hpp"

namespace {

template <class T> void check(const char* data, std::size_t size) {
  T value;
  caf::binary_deserializer source{nullptr, data, size};
  if (source(value))
    return; // refused: an error, not a crash or an allocation of what was claimed
  std::vector<char> once;
  caf::binary_serializer sink{nullptr, once};
  CAIRN_FUZZ_CHECK(!sink(value), "a batch that was read can be written");
  T again;
  caf::binary_deserializer back{nullptr, once};
  CAIRN_FUZZ_CHECK(!back(again), "a written batch reads");
  CAIRN_FUZZ_CHECK(caf::deep_to_string(value) == caf::deep_to_string(again),
                   "a written batch reads as the same batch");
  std::vector<char> twice;
  caf::binary_serializer sink_again{nullptr, twice};
  CAIRN_FUZZ_CHECK(!sink_again(again), "a batch read back can be written");
  CAIRN_FUZZ_CHECK(once == twice, "writing a batch that was read back is stable");
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0)
    return 0;
  const auto* bytes = reinterpret_cast<const char*>(data) + 1;
  if (data[0] % 2 == 0)
    check<cairn::actors::forward_batch>(bytes, size - 1);
  else
    check<cairn::actors::reply_batch>(bytes, size - 1);
  return 0;
}
