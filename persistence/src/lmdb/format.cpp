// The checksums of the on-disk format, here so that the public format.hpp
// does not expose <xxhash.h>.

#include "cairn/persistence/format.hpp"

#include <xxhash.h>

namespace cairn::persistence::format {

std::uint64_t record_checksum(const unsigned char* rec, std::size_t size, std::uint64_t position) {
  return XXH3_64bits_withSeed(rec + 8, size - 8, position);
}

std::uint64_t seal_checksum(std::string_view key, std::string_view body) {
  return XXH3_64bits_withSeed(body.data(), body.size(), XXH3_64bits(key.data(), key.size()));
}

} // namespace cairn::persistence::format
