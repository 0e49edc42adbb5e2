// The CLI's hex parser (from_hex: `cairn import` payloads, read-model keys and
// values). What parses must print back as the same digits, lower-cased.

#include <cctype>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "fuzz_check.hpp"
#include "cairn/tools/text.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view text{reinterpret_cast<const char*>(data), size};
  auto bytes = cairn::tools::from_hex(text);
  if (!bytes)
    return 0;
  CAIRN_FUZZ_CHECK(bytes->size() * 2 == text.size(), "two digits per byte");
  std::string lower{text};
  for (auto& c : lower)
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  CAIRN_FUZZ_CHECK(cairn::tools::to_hex(*bytes) == lower,
                   "parsed hex prints back as the same digits");
  return 0;
}
