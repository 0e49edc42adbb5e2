// store_options::preallocate: zeroed space written ahead of the data by a
// thread of the store's own, while commits keep writing pages below it.

#include <algorithm>
#include <filesystem>
#include <string>

#include <catch2/catch.hpp>

#include "cairn/persistence/event_store.hpp"
#include "support/child_process.hpp"
#include "support/eventually.hpp"
#include "support/temp_dir.hpp"

#include "helpers.hpp"

using namespace cairn::persistence;
using cairn::test::event;
using cairn::test::eventually;
using cairn::test::open_ok;
using cairn::test::request;
using cairn::test::temp_dir;
using cairn::test::value_of;

namespace {

std::uint64_t file_size(const temp_dir& dir) {
  return std::filesystem::file_size(dir.sub("data.mdb"));
}

std::uint64_t data_end(const event_store& store) { return value_of(store.stats()).map_used; }

/// Threads of this process named as the store names its preallocating thread.
long preallocating_threads() {
  auto names = cairn::test::thread_names();
  return std::count(names.begin(), names.end(), "cairn.prealloc");
}

std::string payload(std::size_t commit, std::size_t i) {
  auto head = std::to_string(commit) + "/" + std::to_string(i) + ":";
  return head + std::string(700, static_cast<char>('a' + (commit + i) % 26));
}

} // namespace

TEST_CASE("commits land intact in space the store zero-fills beside them",
          "[unit][store][preallocation]") {
  temp_dir dir;
  store_options o;
  o.durability = durability::no_meta_sync; // flushes data like sync, at half the cost
  o.initial_map_size = std::size_t{64} << 20;
  o.preallocate = 64 << 10; // a small reserve: refills race with nearly every commit
  constexpr std::size_t commits = 600, per_commit = 4;
  {
    auto store = open_ok(dir.path(), o);
    CHECK(preallocating_threads() == 1);
    for (std::size_t c = 0; c < commits; ++c) {
      write_batch b;
      for (std::size_t i = 0; i < per_commit; ++i)
        b.appends.push_back(request("note-" + std::to_string((c * per_commit + i) % 7),
                                    expected_version::any(), {event("noted", payload(c, i))}));
      auto out = value_of(store->append_batch(b));
      for (const auto& r : out)
        REQUIRE(r);
    }
    auto end = data_end(*store);
    CHECK(end > commits * per_commit * 700);
    // The reserve is refilled once half of it is used: the file then reaches
    // past the data by at least the other half.
    CHECK(eventually([&] { return file_size(dir) >= end + (32 << 10); }));
    CHECK(file_size(dir) <= end + (64 << 10));
  }
  // Joined when the store closed (the kernel lists a joined thread a moment longer).
  CHECK(eventually([] { return preallocating_threads() == 0; }));
  auto store = open_ok(dir.path()); // again, over a file longer than its data
  auto all = value_of(store->read_all(1, commits * per_commit + 1)).events;
  REQUIRE(all.size() == commits * per_commit);
  for (std::size_t k = 0; k < all.size(); ++k) {
    INFO("position " << k + 1);
    CHECK(all[k].payload == payload(k / per_commit, k % per_commit));
  }
}

TEST_CASE("the reserve grows with the data and stops at max_map_size",
          "[unit][store][preallocation]") {
  temp_dir dir;
  store_options o;
  o.initial_map_size = std::size_t{2} << 20;
  o.max_map_size = std::size_t{2} << 20;
  auto store = open_ok(dir.path(), o); // preallocate: 64 MiB by default
  value_of(store->append(request("note-1", expected_version::any(), {event("noted", "x")})));
  // A fresh store's reserve is 1 MiB, but never past max_map_size.
  CHECK(eventually([&] { return file_size(dir) >= data_end(*store) + (512 << 10); }));
  // Past 1 MiB of data the reserve would reach beyond the limit; the file
  // stops there, and is filled up to it once the data is near.
  for (int i = 0; i < 100 && data_end(*store) < (std::size_t{1600} << 10); ++i) {
    value_of(store->append(
      request("note-1", expected_version::any(), {event("noted", std::string(20000, 'y'))})));
    CHECK(file_size(dir) <= o.max_map_size);
  }
  REQUIRE(data_end(*store) >= (std::size_t{1600} << 10));
  CHECK(eventually([&] { return file_size(dir) == o.max_map_size; }));
}

TEST_CASE("nothing is preallocated when it is off, under no_sync, or read-only",
          "[unit][store][preallocation]") {
  auto check_none = [](store_options o) {
    temp_dir dir;
    o.initial_map_size = std::size_t{16} << 20;
    {
      auto store = open_ok(dir.path(), o);
      for (int i = 0; i < 5; ++i)
        value_of(store->append(
          request("note-1", expected_version::any(), {event("noted", std::string(3000, 'z'))})));
      CHECK(eventually([] { return preallocating_threads() == 0; }));
      CHECK(file_size(dir) <= data_end(*store));
    }
    auto size = file_size(dir);
    store_options ro = o;
    ro.read_only = true;
    ro.preallocate = std::size_t{64} << 20;
    auto reader = open_ok(dir.path(), ro);
    CHECK(eventually([] { return preallocating_threads() == 0; }));
    CHECK(file_size(dir) == size);
  };
  SECTION("preallocate = 0") {
    store_options o;
    o.preallocate = 0;
    check_none(o);
  }
  SECTION("no_sync") {
    store_options o;
    o.durability = durability::no_sync;
    check_none(o);
  }
}
