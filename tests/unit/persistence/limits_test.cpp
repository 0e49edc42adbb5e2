#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "cairn/persistence/event_store.hpp"
#include "support/temp_dir.hpp"

#include "helpers.hpp"

using namespace cairn::persistence;
using cairn::errc;
using cairn::test::event;
using cairn::test::fast_options;
using cairn::test::open_ok;
using cairn::test::request;
using cairn::test::temp_dir;
using cairn::test::value_of;

namespace {

constexpr std::size_t mib = std::size_t{1} << 20;

store_options small_map(std::size_t max) {
  auto o = fast_options();
  o.initial_map_size = mib;
  o.map_growth_step = mib;
  o.max_map_size = max;
  return o;
}

/// Ten events of about 1 KiB, distinguishable by stream version.
std::vector<event_data> ten_events(std::uint64_t first_version) {
  std::vector<event_data> out;
  for (std::uint64_t i = 0; i < 10; ++i)
    out.push_back(event("filled", std::to_string(first_version + i) + std::string(1000, 'f')));
  return out;
}

void check_intact(const event_store& s, std::uint64_t events) {
  auto all = s.read_all(1, no_limit);
  REQUIRE(all);
  REQUIRE(all->events.size() == events);
  for (std::size_t i = 0; i < all->events.size(); ++i) {
    const auto& e = all->events[i];
    REQUIRE(e.position == i + 1);
    REQUIRE(e.payload == std::to_string(e.version) + std::string(1000, 'f'));
  }
  auto stream = s.read_stream("fill-1", 1, no_limit);
  REQUIRE(stream);
  REQUIRE(stream->size() == events);
  CHECK(stream->back().version == events);
}

} // namespace

TEST_CASE("the map grows by itself, and a full map at max_map_size is unavailable while "
          "reads go on",
          "[unit][store][limits]") {
  temp_dir dir;
  std::uint64_t written = 0;
  std::size_t first_map_size = 0;
  std::size_t grown_to = 0;
  {
    auto store = open_ok(dir.sub("s"), small_map(4 * mib));
    first_map_size = value_of(store->stats()).map_size;
    CHECK(first_map_size == mib);
    cairn::result<append_result> r;
    for (int i = 0; i < 2000; ++i) { // 4 MiB hold far fewer than 20 000 events of 1 KiB
      r =
        store->append(request("fill-1", expected_version::exact(written), ten_events(written + 1)));
      if (!r)
        break;
      written = r->last_version;
      grown_to = std::max(grown_to, value_of(store->stats()).map_size);
    }
    REQUIRE_FALSE(r);
    CHECK(r.error().code == errc::unavailable);
    CHECK_THAT(r.error().message, Catch::Contains("map full"));
    CHECK_THAT(r.error().message, Catch::Contains("max_map_size"));
    INFO("written " << written << " events, map grew to " << grown_to);
    CHECK(written > 1000); // the map grew past its first MiB before it filled up
    CHECK(grown_to > first_map_size);
    CHECK(grown_to <= 4 * mib);

    // Nothing of the failed append was written; every earlier event reads back.
    CHECK(value_of(store->last_position()) == written);
    CHECK(value_of(store->stream_version("fill-1")) == written);
    check_intact(*store, written);

    // A full map fails again rather than half-writing, and small writes fail too.
    auto again = store->append(request("fill-2", expected_version::any(), ten_events(1)));
    REQUIRE_FALSE(again);
    CHECK(again.error().code == errc::unavailable);
    CHECK(value_of(store->last_position()) == written);
  }

  auto store = open_ok(dir.sub("s"), small_map(64 * mib));
  check_intact(*store, written);
  for (int i = 0; i < 100; ++i) { // ~1 MiB more: past the old maximum
    auto r =
      store->append(request("fill-1", expected_version::exact(written), ten_events(written + 1)));
    REQUIRE(r);
    written = r->last_version;
  }
  CHECK(value_of(store->stats()).map_size > 4 * mib);
  check_intact(*store, written);
}

TEST_CASE("a store refuses options that cannot work", "[unit][store][limits][open]") {
  temp_dir dir;
  auto refused = [&](const store_options& o) {
    auto r = open_store(dir.sub("s"), o);
    REQUIRE_FALSE(r);
    CHECK(r.error().code == errc::invalid_argument);
  };
  auto o = fast_options();
  SECTION("an initial map larger than the maximum") {
    o.initial_map_size = 8 * mib;
    o.max_map_size = 4 * mib;
    refused(o);
  }
  SECTION("a zero initial map") {
    o.initial_map_size = 0;
    refused(o);
  }
  SECTION("a zero growth step") {
    o.map_growth_step = 0;
    refused(o);
  }
  SECTION("a zero max event size") {
    o.max_event_size = 0;
    refused(o);
  }
  SECTION("an empty directory name") {
    auto r = open_store("", o);
    REQUIRE_FALSE(r);
    CHECK(r.error().code == errc::invalid_argument);
  }
}
