// A failed meta page write makes LMDB stop the environment (MDB_PANIC):
// every later transaction fails. The store must then refuse writes and
// report reads as `unavailable`, never serve or write garbage.
//
// The fault: this binary defines pwrite, which the LMDB library (and only
// this binary's code) calls through the dynamic linker, so the definition
// here comes first; it fails writes to the two meta pages while armed.

#include <dlfcn.h>
#include <sys/types.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <string>

#include <catch2/catch.hpp>

#include "cairn/persistence/event_store.hpp"
#include "support/temp_dir.hpp"

#include "helpers.hpp"

namespace {

/// While true, pwrite fails with EIO below offset 8192 (LMDB's meta pages
/// with 4 KiB pages; the store's only writes there).
std::atomic<bool> meta_writes_fail{false};
std::atomic<int> meta_writes_failed{0};

} // namespace

extern "C" ssize_t pwrite(int fd, const void* buf, size_t count, off_t offset) {
  using pwrite_fn = ssize_t (*)(int, const void*, size_t, off_t);
  static auto real = reinterpret_cast<pwrite_fn>(::dlsym(RTLD_NEXT, "pwrite"));
  if (meta_writes_fail.load() && offset < 8192) {
    meta_writes_failed.fetch_add(1);
    errno = EIO;
    return -1;
  }
  return real(fd, buf, count, offset);
}

using namespace cairn::persistence;
using cairn::errc;
using cairn::test::append_ok;
using cairn::test::fast_options;
using cairn::test::numbered;
using cairn::test::open_ok;
using cairn::test::request;
using cairn::test::temp_dir;
using cairn::test::value_of;

TEST_CASE("a failed meta page write makes the store refuse writes and report reads unavailable",
          "[unit][store][durability]") {
  temp_dir dir;
  auto durability = GENERATE(durability::sync, durability::no_sync);
  INFO("durability " << static_cast<int>(durability));
  auto o = fast_options();
  o.durability = durability;
  {
    auto store = open_ok(dir.sub("s"), o);
    append_ok(*store, "acct-1", numbered(2));
    REQUIRE_FALSE(store->refuses_writes());

    meta_writes_fail = true;
    auto failed = store->append(request("acct-1", expected_version::any(), numbered(1, "x")));
    meta_writes_fail = false;
    REQUIRE(meta_writes_failed.exchange(0) > 0);
    REQUIRE_FALSE(failed);
    INFO(failed.error().to_string());
    CHECK(failed.error().code == errc::unavailable);
    CHECK(store->refuses_writes());

    auto again = store->append(request("acct-1", expected_version::any(), numbered(1, "y")));
    REQUIRE_FALSE(again);
    CHECK(again.error().code == errc::unavailable);
    CHECK_THAT(again.error().message, Catch::Contains("MDB_PANIC"));
    auto read = store->read_stream("acct-1", 1, no_limit);
    REQUIRE_FALSE(read);
    CHECK(read.error().code == errc::unavailable);
    auto version = store->stream_version("acct-1");
    REQUIRE_FALSE(version);
    CHECK(version.error().code == errc::unavailable);
    CHECK_FALSE(store->sync());
  }
  // Reopened, the store has what was acknowledged and takes writes again.
  auto store = open_ok(dir.sub("s"), o);
  CHECK_FALSE(store->refuses_writes());
  CHECK(value_of(store->stream_version("acct-1")) == 2);
  append_ok(*store, "acct-1", numbered(1, "z"));
  CHECK(value_of(store->stream_version("acct-1")) == 3);
}
