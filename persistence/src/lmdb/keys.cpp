#include "lmdb/keys.hpp"

#include <sodium.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "cairn/model/hex.hpp"
#include "cairn/persistence/format.hpp"
#include "cairn/persistence/options.hpp"

namespace cairn::persistence::detail {

namespace {

const unsigned char* bytes_of(std::string_view s) {
  return reinterpret_cast<const unsigned char*>(s.data());
}

/// 64 hex digits, surrounding white space ignored; nullopt otherwise.
std::optional<master_key> parse_master_key(std::string text) {
  auto first = text.find_first_not_of(" \t\r\n");
  auto last = text.find_last_not_of(" \t\r\n");
  if (first == std::string::npos)
    return std::nullopt;
  std::string_view hex{text.data() + first, last - first + 1};
  if (hex.size() != 64)
    return std::nullopt;
  master_key k{};
  for (std::size_t i = 0; i < 32; ++i) {
    int hi = hex_digit_value(hex[2 * i]), lo = hex_digit_value(hex[2 * i + 1]);
    if (hi < 0 || lo < 0)
      return std::nullopt;
    k[i] = static_cast<unsigned char>(hi << 4 | lo);
  }
  sodium_memzero(text.data(), text.size());
  return k;
}

std::string associated_data(std::string_view subject, const unsigned char* id) {
  std::string ad{subject};
  ad.append(reinterpret_cast<const char*>(id), 8);
  return ad;
}

} // namespace

result<std::optional<master_key>> load_master_key(const store_options& o,
                                                  const std::string& store_dir) {
  namespace fs = std::filesystem;
  if (!o.master_key_file.empty() && !o.master_key_env.empty())
    return fail(errc::invalid_argument, "set master_key_file or master_key_env, not both");
  const char* format_hint = "a master key is 64 hex digits (32 bytes), e.g. from "
                            "`head -c 32 /dev/urandom | xxd -p -c 64`";
  if (!o.master_key_env.empty()) {
    const char* value = std::getenv(o.master_key_env.c_str());
    if (value == nullptr)
      return fail(errc::invalid_argument, "the master key's environment variable is not set",
                  o.master_key_env);
    auto k = parse_master_key(value);
    if (!k)
      return fail(errc::invalid_argument, format_hint, o.master_key_env);
    return std::optional<master_key>{*k};
  }
  if (o.master_key_file.empty())
    return std::optional<master_key>{};
  std::error_code ec;
  auto file = fs::weakly_canonical(o.master_key_file, ec);
  auto dir = fs::weakly_canonical(store_dir, ec);
  if (!ec) {
    auto rel = file.lexically_relative(dir);
    if (!rel.empty() && *rel.begin() != "..")
      return fail(errc::invalid_argument,
                  "the master key file must not be inside the store's directory: a copy of the "
                  "directory would carry the key that opens it",
                  o.master_key_file);
  }
  std::ifstream in(o.master_key_file, std::ios::binary);
  if (!in)
    return fail(errc::invalid_argument, "cannot read the master key file", o.master_key_file);
  std::string text{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  if (text.size() > 4096)
    return fail(errc::invalid_argument, format_hint, o.master_key_file);
  auto k = parse_master_key(std::move(text));
  if (!k)
    return fail(errc::invalid_argument, format_hint, o.master_key_file);
  return std::optional<master_key>{*k};
}

lmdb_key_ring::lmdb_key_ring(const master_key& master, loader load)
    : master_(master), load_(std::move(load)) {
  if (sodium_init() < 0)
    throw std::runtime_error("libsodium failed to initialise");
}

lmdb_key_ring::~lmdb_key_ring() {
  sodium_memzero(master_.data(), master_.size());
  for (auto& [subject, e] : cache_)
    sodium_memzero(e.key.key.data(), e.key.key.size());
}

std::string lmdb_key_ring::wrap(std::string_view subject, const data_key& k) const {
  std::string body(format::wrapped_key_size, '\0');
  auto* p = reinterpret_cast<unsigned char*>(body.data());
  p[0] = 1;
  std::memcpy(p + 1, k.id.data(), 8);
  randombytes_buf(p + 9, format::personal_nonce_size);
  auto ad = associated_data(subject, k.id.data());
  unsigned long long written = 0;
  crypto_aead_xchacha20poly1305_ietf_encrypt(p + 9 + format::personal_nonce_size, &written,
                                             k.key.data(), k.key.size(), bytes_of(ad), ad.size(),
                                             nullptr, p + 9, master_.data());
  return format::seal(subject, body);
}

result<data_key> lmdb_key_ring::unwrap(std::string_view subject, std::string_view value) const {
  auto w = format::decode_wrapped_key(subject, value);
  if (!w)
    return tl::unexpected(w.error());
  data_key k;
  std::memcpy(k.id.data(), w->key_id.data(), 8);
  auto ad = associated_data(subject, k.id.data());
  unsigned long long read = 0;
  if (crypto_aead_xchacha20poly1305_ietf_decrypt(k.key.data(), &read, nullptr,
                                                 bytes_of(w->ciphertext), w->ciphertext.size(),
                                                 bytes_of(ad), ad.size(), bytes_of(w->nonce),
                                                 master_.data())
        != 0
      || read != k.key.size())
    return fail(errc::invalid_argument,
                "the master key does not open the data key of this subject (another master "
                "key?)",
                std::string{subject});
  return k;
}

bool lmdb_key_ring::opens(std::string_view subject, std::string_view value) const {
  auto k = unwrap(subject, value);
  if (!k)
    return false;
  sodium_memzero(k->key.data(), k->key.size());
  return true;
}

result<std::optional<data_key>> lmdb_key_ring::load(std::string_view subject) const {
  auto value = load_(subject);
  if (!value)
    return tl::unexpected(value.error());
  if (!*value)
    return std::optional<data_key>{};
  auto k = unwrap(subject, **value);
  if (!k)
    return tl::unexpected(k.error());
  return std::optional<data_key>{*k};
}

result<data_key> lmdb_key_ring::key_for_write(std::string_view subject) const {
  std::uint64_t gen = 0;
  {
    std::lock_guard lock{mu_};
    if (auto it = cache_.find(subject); it != cache_.end()) {
      if (it->second.st != state::forgetting)
        return it->second.key;
      it->second = entry{random_data_key(), state::pending};
      return it->second.key;
    }
    gen = generation_;
  }
  // Outside the lock: a read transaction may wait for the writer to grow the map.
  auto stored = load(subject);
  if (!stored)
    return tl::unexpected(stored.error());
  std::lock_guard lock{mu_};
  if (auto it = cache_.find(subject); it != cache_.end() && it->second.st != state::forgetting)
    return it->second.key; // another thread got here first
  if (*stored && gen == generation_) {
    cache_[std::string{subject}] = entry{**stored, state::durable};
    return **stored;
  }
  auto& e = cache_[std::string{subject}];
  e = entry{random_data_key(), state::pending};
  return e.key;
}

result<std::optional<data_key>> lmdb_key_ring::key_for_read(std::string_view subject) const {
  std::uint64_t gen = 0;
  {
    std::lock_guard lock{mu_};
    if (auto it = cache_.find(subject); it != cache_.end()) {
      if (it->second.st == state::forgetting)
        return std::optional<data_key>{};
      return std::optional<data_key>{it->second.key};
    }
    gen = generation_;
  }
  auto stored = load(subject);
  if (!stored || !*stored)
    return stored;
  std::lock_guard lock{mu_};
  if (gen != generation_)
    return std::optional<data_key>{}; // a forget began meanwhile
  cache_.try_emplace(std::string{subject}, entry{**stored, state::durable});
  return stored;
}

std::optional<std::pair<std::string, std::array<unsigned char, 8>>>
lmdb_key_ring::pending(std::string_view subject) const {
  data_key k;
  {
    std::lock_guard lock{mu_};
    auto it = cache_.find(subject);
    if (it == cache_.end() || it->second.st != state::pending)
      return std::nullopt;
    k = it->second.key;
  }
  auto value = wrap(subject, k);
  sodium_memzero(k.key.data(), k.key.size());
  return std::pair{std::move(value), k.id};
}

void lmdb_key_ring::stored(std::string_view subject, const std::array<unsigned char, 8>& id) {
  std::lock_guard lock{mu_};
  if (auto it = cache_.find(subject);
      it != cache_.end() && it->second.st == state::pending && it->second.key.id == id)
    it->second.st = state::durable;
}

void lmdb_key_ring::forgetting(std::string_view subject) {
  std::lock_guard lock{mu_};
  ++generation_;
  auto& e = cache_[std::string{subject}];
  sodium_memzero(e.key.key.data(), e.key.key.size());
  e.st = state::forgetting;
}

void lmdb_key_ring::forgotten(std::string_view subject) {
  std::lock_guard lock{mu_};
  if (auto it = cache_.find(subject); it != cache_.end() && it->second.st == state::forgetting)
    cache_.erase(it);
}

} // namespace cairn::persistence::detail
