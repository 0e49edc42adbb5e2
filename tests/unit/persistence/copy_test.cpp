// event_store::copy_to: the hot backup behind `cairn backup`.

#include <filesystem>
#include <fstream>
#include <string>

#include <catch2/catch.hpp>

#include "cairn/persistence/event_store.hpp"
#include "support/temp_dir.hpp"

#include "helpers.hpp"

using namespace cairn::persistence;
using cairn::errc;
using cairn::test::append_ok;
using cairn::test::numbered;
using cairn::test::open_ok;
using cairn::test::temp_dir;
using cairn::test::value_of;

TEST_CASE("a copy is a store that opens with the same events, checkpoints and snapshots",
          "[unit][store][copy]") {
  temp_dir dir;
  auto store = open_ok(dir.sub("src"));
  append_ok(*store, "acct-1", numbered(200, "a"));
  append_ok(*store, "acct-2", numbered(3, "b"));
  REQUIRE(store->save_checkpoint(checkpoint{"proj", 150}));
  REQUIRE(store->save_snapshot(snapshot{"acct-1", 100, "state", 1, "S100"}));

  // From the writer itself, into a directory that does not exist yet.
  REQUIRE(store->copy_to(dir.sub("backup/one")));
  CHECK(std::filesystem::exists(dir.sub("backup/one/data.mdb")));
  auto copy = open_ok(dir.sub("backup/one"));
  auto all = copy->read_all(1, no_limit);
  REQUIRE(all);
  auto original = store->read_all(1, no_limit);
  REQUIRE(original);
  REQUIRE(all->events.size() == 203);
  for (std::size_t i = 0; i < all->events.size(); ++i) {
    CHECK(all->events[i].id == original->events[i].id);
    CHECK(all->events[i].payload == original->events[i].payload);
  }
  CHECK(value_of(copy->stream_version("acct-1")) == 200);
  CHECK(value_of(copy->load_checkpoint("proj")) == std::optional<std::uint64_t>{150});
  auto snap = copy->load_snapshot("acct-1");
  REQUIRE(snap);
  REQUIRE(snap->has_value());
  CHECK((*snap)->data == "S100");
  // The copy takes appends where the original stood.
  auto next = append_ok(*copy, "acct-2", numbered(1, "b", 4));
  CHECK(next.first_position == 204);
  CHECK(next.first_version == 4);

  // From a read-only open, into an existing empty directory.
  copy.reset();
  store.reset(); // one handle per store and process
  std::filesystem::create_directories(dir.sub("backup/two"));
  store_options ro;
  ro.read_only = true;
  auto reader = open_ok(dir.sub("src"), ro);
  REQUIRE(reader->copy_to(dir.sub("backup/two")));
  CHECK(value_of(open_ok(dir.sub("backup/two"), ro)->last_position()) == 203);
}

TEST_CASE("a copy into a directory that is not empty, or onto a file, is refused untouched",
          "[unit][store][copy]") {
  temp_dir dir;
  auto store = open_ok(dir.sub("src"));
  append_ok(*store, "acct-1", numbered(2));
  std::filesystem::create_directories(dir.sub("full"));
  { std::ofstream{dir.sub("full/keep.txt")} << "keep"; }
  { std::ofstream{dir.sub("file")} << "file"; }

  auto full = store->copy_to(dir.sub("full"));
  REQUIRE_FALSE(full);
  CHECK(full.error().code == errc::invalid_argument);
  CHECK_FALSE(std::filesystem::exists(dir.sub("full/data.mdb")));
  auto file = store->copy_to(dir.sub("file"));
  REQUIRE_FALSE(file);
  CHECK(file.error().code == errc::invalid_argument);
  CHECK(cairn::test::read_file(dir.sub("file")) == "file");
}
