// format::decode_forget_payload, the decoder of a forget record's payload
// (what replication copies from another node, and `cairn verify` checks),
// and format::is_known_system_record over it. Input: the payload's bytes.

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "fuzz_check.hpp"
#include "cairn/persistence/format.hpp"

using namespace cairn::persistence;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view bytes{reinterpret_cast<const char*>(data), size};
  auto subject = format::decode_forget_payload(bytes);
  CAIRN_FUZZ_CHECK(subject.has_value()
                     == format::is_known_system_record(format::forget_stream, format::forget_type,
                                                       bytes),
                   "a forget record is known exactly when its payload decodes");
  CAIRN_FUZZ_CHECK(!format::is_known_system_record(format::forget_stream, format::epoch_type,
                                                   bytes),
                   "a forget record of another type is not known");
  if (!subject)
    return 0;
  CAIRN_FUZZ_CHECK(!subject->empty() && subject->size() <= format::max_forget_subject,
                   "a subject is 1-255 bytes");
  CAIRN_FUZZ_CHECK(format::forget_payload_header_size + subject->size() == bytes.size(),
                   "every byte is the header or the subject");
  CAIRN_FUZZ_CHECK(format::encode_forget_payload(*subject) == bytes,
                   "a decoded payload re-encodes to its bytes");
  return 0;
}
