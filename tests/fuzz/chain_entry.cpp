// format::decode_chain_entry, the digest-chain decoder the writer runs at
// open and verify and digest_at run on every entry they read. Input: the
// entry's position (8 bytes LE), then the body, which the target seals with
// the right checksum (bit 0 of the position's first byte set: kept unsealed).

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "fuzz_check.hpp"
#include "cairn/persistence/format.hpp"

using namespace cairn::persistence;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 8)
    return 0;
  const auto position = format::get_le<std::uint64_t>(data);
  const auto key = format::be64_key(position);
  std::string_view body{reinterpret_cast<const char*>(data) + 8, size - 8};
  const bool raw = (data[0] & 1) != 0;
  const std::string value = raw ? std::string{body} : format::seal(key, body);
  auto e = format::decode_chain_entry(key, value);
  if (!e)
    return 0;
  CAIRN_FUZZ_CHECK(e->position == position, "an entry is at its key's position");
  CAIRN_FUZZ_CHECK(format::seal_size + format::chain_entry_header_size + e->prefixes.size()
                     == value.size(),
                   "every byte of an entry is its header or a prefix");
  CAIRN_FUZZ_CHECK(e->count <= e->position, "an entry covers positions from 1");
  if (e->count > 0) {
    CAIRN_FUZZ_CHECK(e->covers(e->position) && !e->covers(e->position - e->count),
                     "an entry covers exactly its count of positions");
    CAIRN_FUZZ_CHECK(e->prefix_of(e->position - e->count + 1).size() == format::digest_prefix_size,
                     "the first covered position has a whole prefix");
  }
  // Re-encoding what decoded gives the same bytes.
  std::string again(value.size(), '\0');
  format::encode_chain_entry(reinterpret_cast<unsigned char*>(again.data()), key, e->head,
                             e->prefixes);
  CAIRN_FUZZ_CHECK(again == value, "a decoded entry re-encodes to its bytes");
  return 0;
}
