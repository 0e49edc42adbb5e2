// A write transaction that dirties more pages than LMDB's dirty list holds
// (MDB_IDL_UM_MAX, 131072 pages: 512 MiB of 4 KiB pages) makes LMDB spill
// pages to the file before the commit, past the last commit's end: where
// the preallocator writes its zeros. The writer holds the preallocator off
// for the whole transaction, so every record reads back intact.

#include <chrono>
#include <cstdint>
#include <string>

#include <catch2/catch.hpp>

#include "cairn/persistence/event_store.hpp"
#include "support/temp_dir.hpp"
#include "unit/persistence/helpers.hpp"

using namespace cairn::persistence;
using cairn::test::open_ok;
using cairn::test::temp_dir;
using cairn::test::value_of;

namespace {

/// Payload of event `i`: 3000 bytes, no zero byte, different for every `i`.
std::string payload_of(std::uint64_t i) {
  std::string p(3000, '\0');
  std::uint64_t x = i * 0x9e3779b97f4a7c15ull + 1;
  for (auto& c : p) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    c = static_cast<char>(1 + x % 255);
  }
  return p;
}

/// One batch of `n` events numbered from `first` (so they land at those
/// positions), in runs of n / 64 over 64 streams.
write_batch batch_of(std::uint64_t first, std::uint64_t n) {
  write_batch b;
  b.appends.resize(64);
  auto per = n / b.appends.size();
  for (std::size_t s = 0; s < b.appends.size(); ++s) {
    b.appends[s].stream = "spill-" + std::to_string(s);
    b.appends[s].expected = expected_version::any();
    for (std::uint64_t i = 0; i < per; ++i)
      b.appends[s].events.push_back(cairn::test::event("noted", payload_of(first + s * per + i)));
  }
  return b;
}

} // namespace

TEST_CASE("a transaction larger than LMDB's dirty list spills pages the preallocator never "
          "overwrites",
          "[slow][store][preallocation]") {
  temp_dir dir;
  store_options o;
  // The preallocator runs, and no flush after each commit gives it a head start.
  o.durability = durability::no_meta_sync;
  o.initial_map_size = std::size_t{2} << 30;
  // The reserve is as large as the data (up to this): after the first large
  // transaction the thread refills hundreds of MiB, so it is still writing
  // zeros ahead of the data while the second one spills there.
  o.preallocate = std::size_t{1} << 30;
  auto started = std::chrono::steady_clock::now();
  constexpr std::uint64_t small = 64 * 313;  // ~80 MiB
  constexpr std::uint64_t large = 64 * 2657; // one overflow page each: > 131072 dirty pages
  {
    auto store = open_ok(dir.path(), o);
    for (const auto& r : value_of(store->append_batch(batch_of(1, small))))
      REQUIRE(r);
    // Built first, so the second starts as soon as the first commits.
    auto first = batch_of(1 + small, large);
    auto second = batch_of(1 + small + large, large);
    for (const auto& r : value_of(store->append_batch(first)))
      REQUIRE(r);
    for (const auto& r : value_of(store->append_batch(second)))
      REQUIRE(r);
    for (const auto& r : value_of(store->append_batch(batch_of(1 + small + 2 * large, small))))
      REQUIRE(r);
  }
  auto store = open_ok(dir.path(), o);
  std::uint64_t expected = 1, total = small + 2 * large + small;
  while (expected <= total) {
    auto page = value_of(store->read_all(expected, 4096));
    REQUIRE_FALSE(page.events.empty());
    for (const auto& ev : page.events) {
      REQUIRE(ev.position == expected);
      if (ev.payload != payload_of(expected))
        FAIL("position " << expected << " reads back different bytes");
      ++expected;
    }
  }
  CHECK(value_of(store->last_position()) == total);
  WARN("spill test took " << std::chrono::duration_cast<std::chrono::seconds>(
                               std::chrono::steady_clock::now() - started)
                               .count()
                          << " s");
}
