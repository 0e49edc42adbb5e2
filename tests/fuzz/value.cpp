// The decoders of the store's sealed values (every table but the log):
// format::unseal, decode_u64 (stream names, checkpoints, index entries,
// heads_at), decode_outcome (command records), decode_snapshot,
// decode_format_version, decode_heads_bucket, and decode_type_key (of the key).
// Input: a selector byte (low 3 bits: which decoder; bit 7: keep the bytes
// as given instead of sealing them), a key length byte, the key, the body.
// The target seals the body with the right checksum unless told not to, so
// the fuzzer reaches the layout checks behind the seal.

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "fuzz_check.hpp"
#include "cairn/persistence/format.hpp"

using namespace cairn::persistence;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 2)
    return 0;
  const unsigned selector = data[0];
  std::string_view rest{reinterpret_cast<const char*>(data) + 2, size - 2};
  const auto key = rest.substr(0, data[1]);
  const auto body = rest.substr(key.size());
  const std::string value = (selector & 0x80) != 0 ? std::string{body} : format::seal(key, body);
  switch (selector & 7) {
    case 0: {
      auto b = format::unseal(key, value, "value");
      CAIRN_FUZZ_CHECK((selector & 0x80) != 0 || (b && *b == body),
                       "a sealed body unseals to itself");
      break;
    }
    case 1: {
      auto v = format::decode_u64(key, value, "value");
      if (v)
        CAIRN_FUZZ_CHECK(format::seal(key, format::u64_body(*v)) == value,
                         "a decoded u64 re-encodes to its bytes");
      break;
    }
    case 2: {
      auto r = format::decode_outcome(key, value, "stream");
      if (r)
        CAIRN_FUZZ_CHECK(format::seal(key, format::encode_outcome(*r)) == value,
                         "a decoded command record re-encodes to its bytes");
      break;
    }
    case 3: {
      auto s = format::decode_snapshot(key, value, "stream");
      if (s) {
        CAIRN_FUZZ_CHECK(s->state_type.size() + s->data.size() + 6 + format::seal_size
                           == value.size(),
                         "a decoded snapshot accounts for every byte");
        CAIRN_FUZZ_CHECK(format::seal(key, format::encode_snapshot(*s)) == value,
                         "a decoded snapshot re-encodes to its bytes");
      }
      break;
    }
    case 4: { // the key is ignored: the format version has a fixed one
      auto fv = format::decode_format_version(value, "store");
      if (fv)
        CAIRN_FUZZ_CHECK(format::seal(format::format_version_key,
                                      format::encode_format_version(*fv))
                           == value,
                         "a decoded format version re-encodes to its bytes");
      break;
    }
    case 5: {
      auto b = format::decode_heads_bucket(key, value, "heads bucket", "bucket");
      if (b)
        CAIRN_FUZZ_CHECK(key.size() == 8 && b->size() == format::head_bucket_size
                           && format::head_in_bucket(*b, format::heads_per_bucket - 1)
                                == format::get_le<std::uint64_t>(
                                  reinterpret_cast<const unsigned char*>(b->data())
                                  + format::head_bucket_size - format::head_slot_size),
                         "a decoded heads bucket has every slot");
      break;
    }
    default: {
      auto t = format::decode_type_key(key);
      if (t)
        CAIRN_FUZZ_CHECK(format::type_key(t->first, t->second) == key,
                         "a decoded type key re-encodes to its bytes");
      break;
    }
  }
  return 0;
}
