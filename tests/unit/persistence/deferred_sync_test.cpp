// append_batch_deferred: one flush per commit, the meta page carried by the
// next commit or by sync(). Flushes are counted at fdatasync itself.

#include <cerrno>

#include <catch2/catch.hpp>

#include "cairn/persistence/event_store.hpp"
#include "support/sync_counter.hpp"
#include "support/temp_dir.hpp"

#include "helpers.hpp"

using namespace cairn::persistence;
using cairn::errc;
using cairn::test::contains;
using cairn::test::fail_fdatasync;
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
  o.preallocate = 0; // its thread's flushes would be counted too
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
  REQUIRE(
    value_of(store->append_batch_deferred(one_append("note-a", expected_version::any(), 3)))[0]);
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

// -- failing flushes -------------------------------------------------------------------------

TEST_CASE("a failed flush of a deferred commit makes the store refuse writes until reopened",
          "[unit][store][durability]") {
  temp_dir dir;
  auto store = open_ok(dir.path(), durable_options());
  REQUIRE(value_of(store->append_batch_deferred(one_append("note-a", expected_version::any())))[0]);
  CHECK_FALSE(store->refuses_writes());
  fail_fdatasync(0, EIO);
  auto synced = store->sync();
  REQUIRE_FALSE(synced);
  CHECK(synced.error().code == errc::unavailable);
  CHECK(contains(synced.error().message, "flush to disk"));
  CHECK(contains(synced.error().message, "reopen"));
  CHECK(store->commits().durable < store->commits().last);
  CHECK(store->refuses_writes());
  for (bool deferred : {false, true}) {
    auto b = one_append("note-b", expected_version::any());
    auto out = deferred ? store->append_batch_deferred(b) : store->append_batch(b);
    REQUIRE_FALSE(out);
    CHECK(out.error().code == errc::unavailable);
  }
  CHECK_FALSE(store->sync());
  // Reads go on, and the commit is visible: its outcome is unknown, not undone.
  CHECK(value_of(store->read_stream("note-a", 1, 10)).size() == 1);
  CHECK(value_of(store->read_stream("note-b", 1, 10)).empty());
  store.reset();
  store = open_ok(dir.path(), durable_options());
  CHECK_FALSE(store->refuses_writes());
  CHECK(value_of(store->read_stream("note-a", 1, 10)).size() == 1);
  CHECK(value_of(store->append_batch(one_append("note-b", expected_version::any())))[0]);
}

TEST_CASE("a commit whose flush fails while an earlier one waits for its own breaks the store",
          "[unit][store][durability]") {
  temp_dir dir;
  auto store = open_ok(dir.path(), durable_options());
  REQUIRE(value_of(store->append_batch_deferred(one_append("note-a", expected_version::any())))[0]);
  // The next commit's data flush would carry note-a's meta page; it fails,
  // and a later flush could succeed without that page on the disk.
  fail_fdatasync(0, EIO);
  auto out = store->append_batch_deferred(one_append("note-b", expected_version::any()));
  REQUIRE_FALSE(out);
  CHECK(out.error().code == errc::unavailable);
  CHECK(contains(out.error().message, "earlier commits waited for their flush"));
  CHECK(store->refuses_writes());
  CHECK_FALSE(store->sync());
  CHECK(value_of(store->read_stream("note-b", 1, 10)).empty()); // LMDB undid that commit
  store.reset();
  store = open_ok(dir.path(), durable_options());
  CHECK(value_of(store->read_stream("note-a", 1, 10)).size() == 1);
  CHECK(value_of(store->read_stream("note-b", 1, 10)).empty());
}

TEST_CASE("a commit whose data flush fails with nothing waiting fails alone",
          "[unit][store][durability]") {
  temp_dir dir;
  auto store = open_ok(dir.path(), durable_options());
  fail_fdatasync(0, EIO);
  auto out = store->append_batch_deferred(one_append("note-a", expected_version::any()));
  REQUIRE_FALSE(out);
  CHECK(contains(out.error().message, "commit"));
  CHECK(value_of(store->read_stream("note-a", 1, 10)).empty());
  // Every earlier commit was flushed already: the store goes on.
  CHECK_FALSE(store->refuses_writes());
  REQUIRE(value_of(store->append_batch_deferred(one_append("note-a", expected_version::any())))[0]);
  REQUIRE(store->sync());
  CHECK(value_of(store->read_stream("note-a", 1, 10)).size() == 1);
}

TEST_CASE("a plain commit whose meta-page flush fails reports it and breaks the store",
          "[unit][store][durability]") {
  temp_dir dir;
  auto store = open_ok(dir.path(), durable_options());
  fail_fdatasync(1, EIO); // the data flush succeeds, the meta page's fails
  auto out = store->append_batch(one_append("note-a", expected_version::any()));
  REQUIRE_FALSE(out);
  CHECK(out.error().code == errc::unavailable);
  CHECK(contains(out.error().message, "flush to disk"));
  CHECK(store->refuses_writes());
  auto again = store->append(request("note-b", expected_version::any(), numbered(1)));
  REQUIRE_FALSE(again);
  CHECK(again.error().code == errc::unavailable);
}
