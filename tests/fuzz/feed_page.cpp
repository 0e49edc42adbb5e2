// A log feed's page (cairn/actors/log_feed.hpp) as CAF's deserializer reads it
// from a peer's BASP payload, then the subscriber's check (check_feed_page)
// before any event reaches a handler. The first 8 bytes are the position the
// subscriber stands at; the rest is the page. Reading is bounded by the input;
// a page the check accepts holds ascending positions inside its range and
// events whose ids are 16 bytes.

#include <cstddef>
#include <cstdint>
#include <cstring>

#include <caf/binary_deserializer.hpp>

#include "cairn/actors/log_feed.hpp"
#include "fuzz_check.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 8)
    return 0;
  std::uint64_t position = 0;
  std::memcpy(&position, data, 8);
  cairn::actors::feed_page page;
  caf::binary_deserializer source{nullptr, reinterpret_cast<const char*>(data) + 8, size - 8};
  if (source(page))
    return 0; // refused: an error, not a crash or an allocation of what was claimed
  auto events = cairn::actors::check_feed_page(page, position);
  if (!events)
    return 0;
  CAIRN_FUZZ_CHECK(events->size() == page.events.size(), "an accepted page keeps every event");
  std::uint64_t last = position;
  for (const auto& e : *events) {
    CAIRN_FUZZ_CHECK(e.position > last && e.position < page.next_position,
                     "accepted positions ascend inside the page");
    last = e.position;
  }
  return 0;
}
