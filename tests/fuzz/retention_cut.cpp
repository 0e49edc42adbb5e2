// format::decode_stream_cut, the decoder of a stream's retention cut (the
// `retention` table). Input: a selector byte (bit 7: keep the bytes as given
// instead of sealing them), the key (8 bytes), the body. What decodes must
// re-encode to the same bytes.

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
  const unsigned selector = data[0];
  std::string_view rest{reinterpret_cast<const char*>(data) + 1, size - 1};
  const auto key = rest.substr(0, 8);
  const auto body = rest.substr(key.size());
  const std::string value = (selector & 0x80) != 0 ? std::string{body} : format::seal(key, body);
  auto cut = format::decode_stream_cut(key, value);
  if (!cut) {
    CAIRN_FUZZ_CHECK(!cut.error().message.empty(), "a refusal says why");
    return 0;
  }
  CAIRN_FUZZ_CHECK(cut->first >= 1, "a cut names a version from 1 on");
  CAIRN_FUZZ_CHECK(format::seal(key, format::encode_stream_cut(cut->first, cut->second)) == value,
                   "a decoded cut re-encodes to its bytes");
  return 0;
}
