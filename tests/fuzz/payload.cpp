// decode_payload of every command, state and event type of the samples (bank,
// hangar provider and provider_group): the first byte picks the type
// (support/payload_types.hpp), the rest is the payload. A payload that decodes
// must re-encode to bytes that decode to the same bytes again, and an event
// must also convert to JSON (what `cairn events` does).

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz_check.hpp"
#include "payload_types.hpp"

namespace {

using namespace cairn;
using persistence::decode_payload;
using persistence::encode_payload;

template <class T> void check_round_trip(const T& value) {
  std::string once;
  encode_payload(value, once);
  auto again = decode_payload<T>(once);
  CAIRN_FUZZ_CHECK(again.has_value(), "a decoded payload re-encodes to bytes that decode");
  std::string twice;
  encode_payload(*again, twice);
  CAIRN_FUZZ_CHECK(once == twice, "re-encoding a decoded payload is stable");
}

std::vector<std::function<void(std::string_view)>> make_decoders() {
  std::vector<std::function<void(std::string_view)>> out;
  fuzz::for_each_payload_type([&](auto t) {
    using pt = decltype(t);
    using T = typename pt::type;
    using V = typename pt::as;
    if (t.kind != fuzz::payload_kind::event) {
      out.emplace_back([](std::string_view bytes) {
        if (auto v = decode_payload<T>(bytes))
          check_round_trip(*v);
      });
      return;
    }
    std::string name{t.name};
    auto version = t.version;
    out.emplace_back([name, version](std::string_view bytes) {
      const auto& reg = fuzz::sample_registry();
      auto ev = reg.decode<V>(name, version, bytes);
      auto json = reg.to_json(name, version, bytes);
      CAIRN_FUZZ_CHECK(ev.has_value() == json.has_value(),
                       "an event converts to JSON exactly when it decodes");
      if (ev)
        check_round_trip(*ev);
    });
  });
  return out;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const auto decoders = make_decoders();
  if (size == 0)
    return 0;
  const auto& decode = decoders[data[0] % decoders.size()];
  decode(std::string_view{reinterpret_cast<const char*>(data) + 1, size - 1});
  return 0;
}
