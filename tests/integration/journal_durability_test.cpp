// Under durability::sync the journal commits with one flush and answers a
// batch once a later flush has carried its meta page to disk: the next
// commit's, when one follows, or one of its own. Flushes are counted at
// fdatasync itself.

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "account.hpp"
#include "cairn/runtime/runtime.hpp"
#include "runtime_support.hpp"
#include "support/sync_counter.hpp"
#include "support/temp_dir.hpp"

using bank::account;
using cairn::test::await;
using cairn::test::describe;
using cairn::test::fail_fdatasync;
using cairn::test::fdatasync_count;
using cairn::test::quick_options;
using cairn::test::register_ok;
using cairn::test::scaled;

namespace {

cairn::runtime_options durable_options(const std::string& dir) {
  auto opts = quick_options(dir);
  opts.durability = cairn::persistence::durability::sync;
  opts.store.preallocate = 0; // its thread's flushes would be counted too
  return opts;
}

} // namespace

TEST_CASE("a lone command is answered after its commit and the flush of its meta page",
          "[integration][journal][durability]") {
  cairn::test::temp_dir dir;
  auto rt = cairn::test::start_runtime(durable_options(dir.path()));
  register_ok<account>(*rt);
  REQUIRE(await(rt->send<account>("lone", bank::open_account{"Lou"})));
  for (int i = 0; i < 20; ++i) {
    auto before = fdatasync_count();
    auto r = await(rt->send<account>("lone", bank::deposit{i + 1}));
    INFO(describe(r));
    REQUIRE(r);
    // The commit's data flush, then one for its meta page: nothing followed
    // to carry it. One flush would mean the reply came before durability.
    CHECK(fdatasync_count() - before == 2);
  }
  auto m = rt->metrics();
  CHECK(m.journal_syncs >= 20);
}

TEST_CASE("under load each journal commit flushes once, and a following commit carries the "
          "previous meta page",
          "[integration][journal][durability]") {
  cairn::test::temp_dir dir;
  auto rt = cairn::test::start_runtime(durable_options(dir.path()));
  register_ok<account>(*rt);
  const int accounts = 100;
  for (int a = 0; a < accounts; ++a)
    REQUIRE(await(rt->send<account>("load" + std::to_string(a), bank::open_account{"L"})));
  auto start = rt->metrics();
  auto flushes_before = fdatasync_count();

  // 64 commands in flight: each answer sends the next.
  const int total = scaled(4000, 800);
  const int inflight = 64;
  std::atomic<int> sent{0}, answered{0}, failed{0};
  std::function<void()> send_next = [&] {
    int i = sent.fetch_add(1);
    if (i >= total)
      return;
    rt->send<account>("load" + std::to_string(i % accounts), bank::deposit{1}, {},
                      [&](cairn::result<cairn::outcome<account>> r) {
                        if (!r)
                          failed.fetch_add(1);
                        send_next();
                        answered.fetch_add(1); // last: the test may end after it
                      });
  };
  for (int i = 0; i < inflight; ++i)
    send_next();
  REQUIRE(cairn::test::eventually([&] { return answered.load() == total; }));
  CHECK(failed.load() == 0);

  // Every commit made one flush; the journal's own flushes make up the rest.
  cairn::actors::metrics_snapshot m;
  std::uint64_t commits = 0, own = 0, flushes = 0;
  CHECK(cairn::test::eventually([&] {
    m = rt->metrics();
    commits = m.commit_us.count - start.commit_us.count;
    own = m.journal_syncs - start.journal_syncs;
    flushes = fdatasync_count() - flushes_before;
    return flushes == commits + own;
  }));
  INFO(commits << " commits, " << own << " flushes of the journal's own, " << flushes
               << " flushes in all");
  CHECK(commits >= 2);
  // With 64 in flight, commits follow each other: most meta pages ride along.
  CHECK(own < commits);
  CHECK(m.commit_failures == 0);
}

TEST_CASE("a command whose flush fails is answered unavailable; after a restart a retry with "
          "its command id finds the outcome",
          "[integration][journal][durability]") {
  cairn::test::temp_dir dir;
  cairn::command_options deposit_id;
  deposit_id.command_id = "deposit-1";
  {
    auto rt = cairn::test::start_runtime(durable_options(dir.path()));
    register_ok<account>(*rt);
    REQUIRE(await(rt->send<account>("flaky", bank::open_account{"Flo"})));
    fail_fdatasync(1, EIO); // the commit's data flush passes, the flush of its meta page fails
    auto r = await(rt->send<account>("flaky", bank::deposit{5}, deposit_id));
    REQUIRE_FALSE(r);
    CHECK(r.error().code == cairn::errc::unavailable);
    // The store takes no more writes: what reached the disk is unknown.
    auto next = await(rt->send<account>("flaky", bank::deposit{7}));
    REQUIRE_FALSE(next);
    CHECK(next.error().code == cairn::errc::unavailable);
    CHECK(rt->metrics().store_refusing_writes == 1);
    CHECK(cairn::to_prometheus(rt->metrics()).find("cairn_store_refusing_writes 1")
          != std::string::npos);
  }
  auto rt = cairn::test::start_runtime(durable_options(dir.path()));
  register_ok<account>(*rt);
  auto retried = await(rt->send<account>("flaky", bank::deposit{5}, deposit_id));
  INFO(describe(retried));
  REQUIRE(retried);
  CHECK(retried->duplicate); // the commit had reached the page cache, and the close flushed it
  CHECK(rt->metrics().store_refusing_writes == 0);
  auto state = rt->state<account>("flaky");
  REQUIRE(state);
  CHECK(state->balance == 5);
}
