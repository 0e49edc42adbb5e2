// The CLI's time parser (parse_time: `cairn events --as-of`), and its printer
// iso_time. Input: the text to parse; with 8 bytes exactly, also a time in ns
// (i64 LE) that must print and parse back to itself. A parsed time must print
// and parse back to the same ns.

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string_view>

#include "fuzz_check.hpp"
#include "cairn/tools/text.hpp"

using cairn::tools::iso_time;
using cairn::tools::parse_time;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 8) {
    std::int64_t ns = 0;
    std::memcpy(&ns, data, 8);
    auto back = parse_time(iso_time(ns));
    CAIRN_FUZZ_CHECK(back && *back == ns, "every i64 time prints and parses back to itself");
  }
  auto ns = parse_time(std::string_view{reinterpret_cast<const char*>(data), size});
  if (!ns)
    return 0;
  auto back = parse_time(iso_time(*ns));
  CAIRN_FUZZ_CHECK(back && *back == *ns, "a parsed time prints and parses back to itself");
  return 0;
}
