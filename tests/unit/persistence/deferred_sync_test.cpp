// append_batch_deferred: one flush per commit, the meta page carried by the
// next commit or by sync(). Flushes are counted at fdatasync itself.

#include <catch2/catch.hpp>

#include "cairn/persistence/event_store.hpp"
#include "support/sync_counter.hpp"
#include "support/temp_dir.hpp"

#include "helpers.hpp"

using namespace cairn::persistence;
using cairn::errc;
using cairn::test::fdatasync_count;
using cairn::test::numbered;
using cairn::test::open_ok;
using cairn::test::request;
using cairn::test::temp_dir;
using cairn::test::value_of;

namespace {

store_options durable_options(durability d = durability::sync) {
  store_options o;
  o.durability = d;
  o.initial_map_size = std::size_t{16} << 20;
  return o;
}

write_batch one_append(const std::string& stream, expected_version expected, std::size_t n = 1) {
  write_batch b;
  b.appends.push_back(request(stream, expected, numbered(n)));
  return b;
}

} // namespace

TEST_CASE("a deferred commit flushes once; the next commit or sync makes it durable",
          "[unit][store][durability]") {
  temp_dir dir;
  auto store = open_ok(dir.path(), durable_options());
  auto start = store->commits();
  CHECK(start.durable == start.last); // opening flushed its own commit

  auto flushes = fdatasync_count();
  auto out = value_of(store->append_batch_deferred(one_append("note-a", expected_version::any())));
  REQUIRE(out.size() == 1);
  REQUIRE(out[0]);
  CHECK(fdatasync_count() - flushes == 1);
  auto first = store->commits();
  CHECK(first.last > start.last);
  CHECK(first.durable == start.last);
  // Visible to readers before it is durable.
  CHECK(value_of(store->read_stream("note-a", 1, 10)).size() == 1);

  flushes = fdatasync_count();
  out = value_of(store->append_batch_deferred(one_append("note-b", expected_version::any())));
  REQUIRE(out[0]);
  CHECK(fdatasync_count() - flushes == 1);
  auto second = store->commits();
  CHECK(second.last > first.last);
  CHECK(second.durable == first.last); // its data flush carried the first meta page

  // A commit that changes nothing takes no number and carries nothing.
  flushes = fdatasync_count();
  out = value_of(store->append_batch_deferred(one_append("note-a", expected_version::exact(7))));
  REQUIRE_FALSE(out[0]);
  CHECK(out[0].error().code == errc::conflict);
  CHECK(fdatasync_count() == flushes);
  CHECK(store->commits().last == second.last);
  CHECK(store->commits().durable == first.last);

  REQUIRE(store->sync());
  CHECK(fdatasync_count() - flushes == 1);
  CHECK(store->commits().durable == second.last);
  REQUIRE(store->sync()); // nothing left to flush
  CHECK(fdatasync_count() - flushes == 1);

  // The plain form flushes data and meta page before it returns.
  flushes = fdatasync_count();
  out = value_of(store->append_batch(one_append("note-c", expected_version::any())));
  REQUIRE(out[0]);
  CHECK(fdatasync_count() - flushes == 2);
  CHECK(store->commits().durable == store->commits().last);
  CHECK(store->commits().last > second.last);
}

TEST_CASE("closing a store flushes a deferred commit; reopening finds it",
          "[unit][store][durability]") {
  temp_dir dir;
  auto store = open_ok(dir.path(), durable_options());
  REQUIRE(value_of(
    store->append_batch_deferred(one_append("note-a", expected_version::any(), 3)))[0]);
  auto flushes = fdatasync_count();
  store.reset();
  CHECK(fdatasync_count() - flushes == 1);
  store = open_ok(dir.path(), durable_options());
  CHECK(value_of(store->read_stream("note-a", 1, 10)).size() == 3);
  CHECK(store->commits().durable == store->commits().last);
}

TEST_CASE("without durability::sync a deferred commit is as durable as the mode makes any",
          "[unit][store][durability]") {
  for (auto mode : {durability::no_meta_sync, durability::no_sync}) {
    temp_dir dir;
    auto store = open_ok(dir.path(), durable_options(mode));
    REQUIRE(
      value_of(store->append_batch_deferred(one_append("note-a", expected_version::any())))[0]);
    CHECK(store->commits().durable == store->commits().last);
    auto flushes = fdatasync_count();
    REQUIRE(store->sync());
    CHECK(fdatasync_count() == flushes);
  }
}

TEST_CASE("a read-only store has nothing to sync", "[unit][store][durability]") {
  temp_dir dir;
  {
    auto store = open_ok(dir.path(), durable_options());
    REQUIRE(value_of(store->append_batch(one_append("note-a", expected_version::any())))[0]);
  }
  auto opts = durable_options();
  opts.read_only = true;
  auto store = open_ok(dir.path(), opts);
  CHECK(store->sync());
  CHECK(store->commits().durable == store->commits().last);
  auto out = store->append_batch_deferred(one_append("note-a", expected_version::any()));
  REQUIRE_FALSE(out);
  CHECK(out.error().code == errc::invalid_argument);
}
