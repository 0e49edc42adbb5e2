// read_all across retention's cut (read_filter::kept_below_cut) and the log's
// extent: a reader that must list every record still stored reads the ones
// kept below the cut, in position order, past the holes; every other reader
// still gets `truncated` naming the first position (docs/audit.md#retention).

#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "cairn/persistence/event_store.hpp"
#include "cairn/persistence/retention.hpp"
#include "support/temp_dir.hpp"
#include "unit/persistence/helpers.hpp"

using namespace cairn::persistence;
using cairn::errc;
using cairn::test::open_ok;
using cairn::test::temp_dir;
using cairn::test::value_of;

namespace {

constexpr std::int64_t t0 = 1'760'000'000LL * 1'000'000'000LL;

/// prov-1 (rule last:1) and acct-1 (no rule) alternate, 5 events each:
/// prov-1 at odd positions 1-9, acct-1 at even 2-10. With a snapshot of
/// prov-1 at 5, prov-1 v1..v4 (positions 1, 3, 5, 7) go: the log is complete
/// from 8, and acct-1's records at 2, 4 and 6 are kept below the cut.
std::unique_ptr<event_store> cut_store(const std::string& dir) {
  auto store = open_ok(dir);
  for (int i = 1; i <= 5; ++i)
    for (const char* s : {"prov-1", "acct-1"}) {
      auto e = cairn::test::event("noted", std::string{s} + " v" + std::to_string(i));
      e.timestamp_ns = t0;
      REQUIRE(store->append(cairn::test::request(s, expected_version::any(), {e})));
    }
  REQUIRE(store->save_snapshot(snapshot{"prov-1", 5, "state", 1, "s5"}));
  auto plan =
    value_of(store->plan_retention(value_of(parse_retention_policy({"prov=last:1"})), t0));
  REQUIRE(value_of(store->apply_retention(plan)).events == 4);
  REQUIRE(value_of(store->first_position()) == 8);
  return store;
}

std::vector<std::uint64_t> positions_of(const log_page& page) {
  std::vector<std::uint64_t> out;
  for (const auto& ev : page.events)
    out.push_back(ev.position);
  return out;
}

} // namespace

TEST_CASE("read_all with kept_below_cut reads the records kept below the cut past the holes, "
          "and without it a read below the cut is still truncated",
          "[integration][persistence][retention]") {
  temp_dir dir;
  auto store = cut_store(dir.path());

  auto plain = store->read_all(1, 100);
  REQUIRE_FALSE(plain);
  CHECK(plain.error().code == errc::truncated);
  CHECK(plain.error().message.find("complete from position 8") != std::string::npos);

  read_filter across;
  across.kept_below_cut = true;
  auto all = value_of(store->read_all(1, 100, across));
  CHECK(positions_of(all) == std::vector<std::uint64_t>{2, 4, 6, 8, 9, 10});
  CHECK(all.next_position == 11);
  CHECK(all.events.front().stream == "acct-1");
  CHECK(all.events.front().version == 1);

  // Paged: max bounds a page, and next_position steps over the holes.
  auto first = value_of(store->read_all(1, 2, across));
  CHECK(positions_of(first) == std::vector<std::uint64_t>{2, 4});
  CHECK(first.next_position == 5);
  auto second = value_of(store->read_all(first.next_position, 2, across));
  CHECK(positions_of(second) == std::vector<std::uint64_t>{6, 8});

  // From a hole, and filtered: only what exists and matches.
  across.categories = {"prov"};
  CHECK(positions_of(value_of(store->read_all(3, 100, across))) == std::vector<std::uint64_t>{9});
}

TEST_CASE("extent tells where a cut log is complete from, where it ends and what it keeps below",
          "[integration][persistence][retention]") {
  temp_dir dir;
  {
    auto fresh = open_ok(dir.sub("fresh"));
    auto e = value_of(fresh->extent());
    CHECK(e.first_position == 1);
    CHECK(e.last_position == 0);
    CHECK(e.records == 0);
    CHECK_FALSE(e.cut());
    CHECK(e.kept_below() == 0);
    cairn::test::append_ok(*fresh, "acct-1", cairn::test::numbered(3));
    auto whole = value_of(fresh->extent());
    CHECK(whole.last_position == 3);
    CHECK(whole.records == 3);
    CHECK(whole.kept_below() == 0);
  }
  auto store = cut_store(dir.sub("cut"));
  auto e = value_of(store->extent());
  CHECK(e.cut());
  CHECK(e.first_position == 8);
  CHECK(e.last_position == 10);
  CHECK(e.records == 6);
  CHECK(e.kept_below() == 3);
}
