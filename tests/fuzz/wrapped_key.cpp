// format::decode_wrapped_key, the decoder of the keys table (each subject's
// data key wrapped by the master key). Input: a subject length (1 byte),
// the subject, then the body, which the target seals with the right checksum
// (bit 7 of the length byte set: kept unsealed).

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "fuzz_check.hpp"
#include "cairn/persistence/format.hpp"
#include "cairn/persistence/personal.hpp"

using namespace cairn::persistence;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1)
    return 0;
  const bool raw = (data[0] & 0x80) != 0;
  const std::size_t subject_size = data[0] & 0x7f;
  if (size < 1 + subject_size)
    return 0;
  std::string_view subject{reinterpret_cast<const char*>(data) + 1, subject_size};
  std::string_view body{reinterpret_cast<const char*>(data) + 1 + subject_size,
                        size - 1 - subject_size};
  const std::string value = raw ? std::string{body} : format::seal(subject, body);
  auto w = format::decode_wrapped_key(subject, value);
  if (!w)
    return 0;
  CAIRN_FUZZ_CHECK(value.size() == format::seal_size + format::wrapped_key_size,
                   "a wrapped key that decodes has the one layout");
  CAIRN_FUZZ_CHECK(w->key_id.size() == 8 && w->nonce.size() == 24 && w->ciphertext.size() == 48,
                   "its parts have their sizes");
  return 0;
}
