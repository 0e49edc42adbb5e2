// The text files of cairn digest/verify/keygen (cairn/tools/digest_file.hpp):
// a signed digest, a published POSITION:HEX digest and the two key files.
// Input: one selector byte (which parser), then the text.

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "fuzz_check.hpp"
#include "cairn/tools/digest_file.hpp"

using namespace cairn::tools;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1)
    return 0;
  std::string_view text{reinterpret_cast<const char*>(data) + 1, size - 1};
  switch (data[0] % 4) {
    case 0: {
      auto s = parse_signed_digest(text);
      if (!s)
        return 0;
      CAIRN_FUZZ_CHECK(text.size() <= max_digest_file_size, "a signed digest is bounded");
      auto again = parse_signed_digest(format_signed_digest(*s));
      CAIRN_FUZZ_CHECK(again && again->position == s->position && again->digest == s->digest
                         && again->signature == s->signature,
                       "a signed digest round-trips");
      break;
    }
    case 1: {
      auto d = parse_published_digest(text);
      if (!d)
        return 0;
      auto again = parse_published_digest(format_published_digest(*d));
      CAIRN_FUZZ_CHECK(again && again->position == d->position && again->digest == d->digest,
                       "a published digest round-trips");
      break;
    }
    case 2: {
      auto k = parse_public_key(text);
      if (k) {
        auto again = parse_public_key(format_public_key(*k));
        CAIRN_FUZZ_CHECK(again && *again == *k, "a public key file round-trips");
      }
      break;
    }
    default: {
      auto k = parse_secret_key(text);
      if (k) {
        auto again = parse_secret_key(format_secret_key(*k));
        CAIRN_FUZZ_CHECK(again && *again == *k, "a secret key file round-trips");
      }
      break;
    }
  }
  return 0;
}
