// `hangar serve`'s line parser (samples/hangar/hangar/serve_line.hpp): every
// line of the input is parsed as the server would read it.

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "fuzz_check.hpp"
#include "hangar/serve_line.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view text{reinterpret_cast<const char*>(data), size};
  while (!text.empty()) {
    auto nl = text.find('\n');
    std::string line{text.substr(0, nl)};
    text = nl == std::string_view::npos ? std::string_view{} : text.substr(nl + 1);
    auto req = hangar::parse_serve_line(line);
    if (!req) {
      CAIRN_FUZZ_CHECK(req.error().code == cairn::errc::invalid_argument,
                       "a bad line is invalid_argument");
      continue;
    }
    if (!*req)
      continue;
    const auto& r = **req;
    using kind = hangar::serve_request::kind;
    CAIRN_FUZZ_CHECK(r.what == kind::quit || r.what == kind::status || !r.id.empty(),
                     "every request but status and quit names a provider");
    CAIRN_FUZZ_CHECK(r.id.find_first_of(" \t\n\v\f\r") == std::string::npos, "an id is one word");
  }
  return 0;
}
