#include "cairn/persistence/personal.hpp"

#include <sodium.h>

#include <cstring>

#include "cairn/persistence/format.hpp"

namespace cairn::persistence {

namespace {

personal_context& context() {
  static thread_local personal_context ctx;
  return ctx;
}

void ensure_sodium() {
  // sodium_init is thread-safe and idempotent; < 0 means no usable RNG.
  static const int rc = sodium_init();
  if (rc < 0)
    throw std::runtime_error("libsodium failed to initialise");
}

const unsigned char* bytes_of(std::string_view s) {
  return reinterpret_cast<const unsigned char*>(s.data());
}

} // namespace

data_key random_data_key() {
  ensure_sodium();
  data_key k;
  crypto_aead_xchacha20poly1305_ietf_keygen(k.key.data());
  randombytes_buf(k.id.data(), k.id.size());
  return k;
}

memory_key_ring::memory_key_ring(const memory_key_ring& other) {
  std::lock_guard lock{other.mu_};
  keys_ = other.keys_;
}

memory_key_ring& memory_key_ring::operator=(const memory_key_ring& other) {
  if (this != &other) {
    std::scoped_lock lock{mu_, other.mu_};
    keys_ = other.keys_;
  }
  return *this;
}

result<data_key> memory_key_ring::key_for_write(std::string_view subject) const {
  std::lock_guard lock{mu_};
  auto it = keys_.find(subject);
  if (it == keys_.end())
    it = keys_.emplace(std::string{subject}, random_data_key()).first;
  return it->second;
}

result<std::optional<data_key>> memory_key_ring::key_for_read(std::string_view subject) const {
  std::lock_guard lock{mu_};
  auto it = keys_.find(subject);
  if (it == keys_.end())
    return std::optional<data_key>{};
  return std::optional<data_key>{it->second};
}

void memory_key_ring::forget(std::string_view subject) {
  std::lock_guard lock{mu_};
  if (auto it = keys_.find(subject); it != keys_.end()) {
    sodium_memzero(it->second.key.data(), it->second.key.size());
    keys_.erase(it);
  }
}

personal_scope::personal_scope(const key_ring* keys, std::string_view subject) : saved_(context()) {
  context() = personal_context{personal_context::kind::event, keys, subject};
}

personal_scope::personal_scope(personal_context::kind mode) : saved_(context()) {
  context() = personal_context{mode, nullptr, {}};
}

personal_scope::~personal_scope() { context() = saved_; }

const personal_context& personal_scope::current() noexcept { return context(); }

namespace format {

result<wrapped_key> decode_wrapped_key(std::string_view subject, std::string_view value) {
  auto body = unseal(subject, value, "data key of a subject");
  if (!body)
    return tl::unexpected(body.error());
  if (body->size() != wrapped_key_size || static_cast<unsigned char>((*body)[0]) != 1)
    return fail(errc::corrupted, "data key of a subject has a bad layout",
                std::to_string(body->size()) + " bytes");
  wrapped_key w;
  w.key_id = body->substr(1, 8);
  w.nonce = body->substr(9, personal_nonce_size);
  w.ciphertext = body->substr(9 + personal_nonce_size);
  return w;
}

std::string subject_stream_key(std::string_view subject, std::string_view stream) {
  std::string k;
  k.reserve(subject.size() + 1 + stream.size());
  k.append(subject);
  k.push_back('\0');
  k.append(stream);
  return k;
}

} // namespace format

namespace detail {

std::string seal_personal(const std::optional<std::string>& plain) {
  if (!plain)
    return {};
  const auto& ctx = context();
  switch (ctx.mode) {
    case personal_context::kind::state: {
      std::string out;
      out.reserve(1 + plain->size());
      out.push_back(static_cast<char>(format::personal_plain));
      out += *plain;
      return out;
    }
    case personal_context::kind::none:
      throw personal_error("personal data is encoded only in an event about a subject "
                           "(or in a state); encode events through the runtime or a "
                           "personal_scope");
    case personal_context::kind::event: break;
  }
  if (ctx.keys == nullptr)
    throw personal_error("an event with personal data needs a master key: set "
                         "store_options::master_key_file or master_key_env");
  if (ctx.subject.empty())
    throw personal_error("an event with personal data needs a data subject "
                         "(command_options::subject)");
  auto key = ctx.keys->key_for_write(ctx.subject);
  if (!key)
    throw personal_error("no data key for subject '" + std::string{ctx.subject}
                         + "': " + key.error().to_string());
  ensure_sodium();
  std::string out(format::personal_header_size + plain->size() + format::personal_tag_size, '\0');
  auto* p = reinterpret_cast<unsigned char*>(out.data());
  p[0] = format::personal_encrypted;
  std::memcpy(p + 1, key->id.data(), 8);
  randombytes_buf(p + 9, format::personal_nonce_size);
  unsigned long long written = 0;
  crypto_aead_xchacha20poly1305_ietf_encrypt(p + format::personal_header_size, &written,
                                             bytes_of(*plain), plain->size(), bytes_of(ctx.subject),
                                             ctx.subject.size(), nullptr, p + 9, key->key.data());
  sodium_memzero(key->key.data(), key->key.size());
  return out;
}

result<std::optional<std::string>> open_personal(std::string_view envelope) {
  using absent_t = std::optional<std::string>;
  auto env = format::decode_personal_envelope(envelope);
  if (!env)
    return tl::unexpected(env.error());
  switch (env->type) {
    case format::personal_envelope::kind::absent: return absent_t{};
    case format::personal_envelope::kind::plain: return absent_t{std::string{env->plain}};
    case format::personal_envelope::kind::encrypted: break;
  }
  const auto& ctx = context();
  if (ctx.mode != personal_context::kind::event || ctx.keys == nullptr || ctx.subject.empty())
    return absent_t{}; // no key can be had here: the value is not readable
  auto key = ctx.keys->key_for_read(ctx.subject);
  if (!key)
    return tl::unexpected(key.error());
  if (!*key || std::memcmp((*key)->id.data(), env->key_id.data(), 8) != 0)
    return absent_t{}; // forgotten (and perhaps given a new key since)
  ensure_sodium();
  auto plain_size = env->ciphertext.size() - format::personal_tag_size;
  std::string plain(plain_size, '\0');
  unsigned long long read = 0;
  int rc =
    crypto_aead_xchacha20poly1305_ietf_decrypt(reinterpret_cast<unsigned char*>(plain.data()),
                                               &read, nullptr, bytes_of(env->ciphertext),
                                               env->ciphertext.size(), bytes_of(ctx.subject),
                                               ctx.subject.size(), bytes_of(env->nonce),
                                               (*key)->key.data());
  sodium_memzero((*key)->key.data(), (*key)->key.size());
  if (rc != 0)
    return fail(errc::corrupted, "personal data fails its authentication (tampered ciphertext)",
                std::string{ctx.subject});
  return absent_t{std::move(plain)};
}

} // namespace detail

} // namespace cairn::persistence
