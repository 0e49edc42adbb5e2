// The checksums and the chained digest of the on-disk format, here so that
// the public format.hpp does not expose <xxhash.h> or <sodium.h>.

#include "cairn/persistence/format.hpp"

#include <sodium.h>
#include <xxhash.h>

namespace cairn::persistence::format {

std::uint64_t record_checksum(const unsigned char* rec, std::size_t size, std::uint64_t position) {
  return XXH3_64bits_withSeed(rec + 8, size - 8, position);
}

std::uint64_t seal_checksum(std::string_view key, std::string_view body) {
  return XXH3_64bits_withSeed(body.data(), body.size(), XXH3_64bits(key.data(), key.size()));
}

digest chain_next(const digest& prev, const unsigned char* rec, std::size_t size) {
  // sodium_init picks the fastest BLAKE2b for this CPU; it is idempotent and
  // thread-safe, and the static runs it once.
  static const bool ready = sodium_init() >= 0;
  (void)ready; // BLAKE2b works (portably) even if it failed
  crypto_generichash_blake2b_state st;
  crypto_generichash_blake2b_init(&st, nullptr, 0, digest_size);
  crypto_generichash_blake2b_update(&st, prev.data(), prev.size());
  crypto_generichash_blake2b_update(&st, rec, size);
  digest out;
  crypto_generichash_blake2b_final(&st, out.data(), out.size());
  return out;
}

} // namespace cairn::persistence::format
