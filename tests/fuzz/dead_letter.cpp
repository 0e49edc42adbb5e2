// format::decode_dead_letter, the decoder behind `cairn dlq`, export and a
// subscriber's replay. Input: a key length byte, the key (subscriber, a 0
// byte, position u64 BE), then the body, which the target seals with the
// right checksum (bit 7 of the length byte set: kept unsealed). A dead letter
// that decodes must re-encode to a body that decodes to the same fields.

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "fuzz_check.hpp"
#include "cairn/persistence/format.hpp"

using namespace cairn::persistence;

namespace {

bool same(const dead_letter& a, const dead_letter& b) {
  return a.subscriber == b.subscriber && a.position == b.position && a.stream == b.stream
         && a.version == b.version && a.type == b.type && a.error == b.error
         && a.attempts == b.attempts && a.first_failure_ns == b.first_failure_ns
         && a.last_failure_ns == b.last_failure_ns && a.replay_requested == b.replay_requested;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1)
    return 0;
  const bool raw = (data[0] & 0x80) != 0;
  std::string_view rest{reinterpret_cast<const char*>(data) + 1, size - 1};
  const auto key = rest.substr(0, data[0] & 0x7f);
  const auto body = rest.substr(key.size());
  const std::string value = raw ? std::string{body} : format::seal(key, body);
  auto dl = format::decode_dead_letter(key, value);
  if (!dl)
    return 0;
  CAIRN_FUZZ_CHECK(dl->subscriber.size() <= key.size(), "the subscriber is inside the key");
  auto again = format::decode_dead_letter(key, format::seal(key, format::encode_dead_letter(*dl)));
  CAIRN_FUZZ_CHECK(again && same(*dl, *again), "a decoded dead letter re-encodes to itself");
  return 0;
}
