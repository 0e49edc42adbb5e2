// The decoders of personal data (cairn::personal<T>, personal.hpp): the
// envelope parser and the whole load path of a personal<std::string> field,
// decrypting under a fixed key of subject "s". Input: the bytes of a cereal
// payload holding one personal<std::string>. Whatever the bytes, decoding
// ends in a value, an absent value or `corrupted`, never a crash; a value
// that decodes re-encodes (with a fresh nonce) to bytes that decode to it.

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "fuzz_check.hpp"
#include "cairn/persistence/personal.hpp"

#include <cereal/types/string.hpp>

namespace {

using namespace cairn::persistence;

/// One key for every subject, made once: so an input can carry the key id.
class fixed_ring final : public key_ring {
public:
  fixed_ring() {
    for (std::size_t i = 0; i < k_.key.size(); ++i)
      k_.key[i] = static_cast<unsigned char>(i);
    for (std::size_t i = 0; i < k_.id.size(); ++i)
      k_.id[i] = static_cast<unsigned char>(0xa0 + i);
  }
  cairn::result<data_key> key_for_write(std::string_view) const override { return k_; }
  cairn::result<std::optional<data_key>> key_for_read(std::string_view) const override {
    return std::optional<data_key>{k_};
  }

private:
  data_key k_;
};

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const fixed_ring ring;
  std::string_view bytes{reinterpret_cast<const char*>(data), size};
  auto env = format::decode_personal_envelope(bytes);
  if (env && env->type == format::personal_envelope::kind::encrypted)
    CAIRN_FUZZ_CHECK(env->ciphertext.size() >= format::personal_tag_size,
                     "an encrypted envelope holds at least its tag");
  personal_scope scope{&ring, "s"};
  auto value = decode_payload<cairn::personal<std::string>>(bytes);
  if (!value) {
    CAIRN_FUZZ_CHECK(value.error().code == cairn::errc::corrupted, "bad input is corrupted");
    return 0;
  }
  std::string again;
  encode_payload(*value, again);
  auto back = decode_payload<cairn::personal<std::string>>(again);
  CAIRN_FUZZ_CHECK(back.has_value() && *back == *value,
                   "a decoded personal value survives a re-encryption");
  return 0;
}
