#include <algorithm>
#include <cstdint>
#include <map>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include <catch2/catch.hpp>

#include "cairn/persistence/event_store.hpp"
#include "cairn/persistence/format.hpp"
#include "support/temp_dir.hpp"

#include "helpers.hpp"

using namespace cairn::persistence;
using cairn::errc;
using cairn::test::append_ok;
using cairn::test::event;
using cairn::test::numbered;
using cairn::test::open_ok;
using cairn::test::request;
using cairn::test::temp_dir;
using cairn::test::value_of;

namespace {

std::vector<std::uint64_t> versions_of(const std::vector<recorded_event>& evs) {
  std::vector<std::uint64_t> out;
  for (const auto& e : evs)
    out.push_back(e.version);
  return out;
}

std::vector<std::uint64_t> positions_of(const std::vector<recorded_event>& evs) {
  std::vector<std::uint64_t> out;
  for (const auto& e : evs)
    out.push_back(e.position);
  return out;
}

using V = std::vector<std::uint64_t>;

event_data at_time(std::string payload, std::int64_t ts) {
  auto e = event("noted", std::move(payload));
  e.timestamp_ns = ts;
  return e;
}

} // namespace

TEST_CASE("read_stream returns a window of versions from a start version", "[unit][store][read]") {
  temp_dir dir;
  auto store = open_ok(dir.sub("s"));
  append_ok(*store, "acct-1", numbered(4));
  append_ok(*store, "acct-2", numbered(3));
  append_ok(*store, "acct-1", numbered(6, "p", 5));
  auto window = [&](std::uint64_t from, std::size_t max) {
    auto r = store->read_stream("acct-1", from, max);
    REQUIRE(r);
    for (const auto& e : *r) {
      CHECK(e.stream == "acct-1");
      CHECK(e.payload == "p" + std::to_string(e.version));
    }
    return versions_of(*r);
  };
  CHECK(window(1, no_limit) == V{1, 2, 3, 4, 5, 6, 7, 8, 9, 10});
  CHECK(window(4, 3) == V{4, 5, 6});
  CHECK(window(8, 100) == V{8, 9, 10});
  CHECK(window(10, 1) == V{10});
  CHECK(window(11, 5).empty());
  CHECK(window(0, 2) == V{1, 2});
  CHECK(window(3, 0).empty());
  auto r = store->read_stream("acct-1", 3, 3);
  REQUIRE(r);
  CHECK(positions_of(*r) == V{3, 4, 8});
}

TEST_CASE("reading a stream that does not exist gives nothing, not an error",
          "[unit][store][read]") {
  temp_dir dir;
  auto store = open_ok(dir.sub("s"));
  append_ok(*store, "acct-1", numbered(2));
  auto fwd = store->read_stream("acct-2", 1, no_limit);
  REQUIRE(fwd);
  CHECK(fwd->empty());
  auto back = store->read_stream_backward("acct-2", no_limit, no_limit);
  REQUIRE(back);
  CHECK(back->empty());
  CHECK(value_of(store->stream_version("acct-2")) == 0);
  CHECK(value_of(store->stream_version("acct-1")) == 2);
  auto bad = store->read_stream("no_dash", 1, 1);
  REQUIRE_FALSE(bad);
  CHECK(bad.error().code == errc::invalid_argument);
  CHECK(store->stream_version("").error().code == errc::invalid_argument);
}

TEST_CASE("read_stream_backward returns newest first from the last or a given version",
          "[unit][store][read]") {
  temp_dir dir;
  auto store = open_ok(dir.sub("s"));
  append_ok(*store, "acct-1", numbered(5));
  append_ok(*store, "acct-9", numbered(1));
  append_ok(*store, "acct-1", numbered(5, "p", 6));
  auto back = [&](std::uint64_t from, std::size_t max) {
    auto r = store->read_stream_backward("acct-1", from, max);
    REQUIRE(r);
    for (const auto& e : *r)
      CHECK(e.payload == "p" + std::to_string(e.version));
    return versions_of(*r);
  };
  CHECK(back(no_limit, no_limit) == V{10, 9, 8, 7, 6, 5, 4, 3, 2, 1});
  CHECK(back(no_limit, 3) == V{10, 9, 8});
  CHECK(back(5, 2) == V{5, 4});
  CHECK(back(2, 10) == V{2, 1});
  CHECK(back(1, 1) == V{1});
  CHECK(back(100, 2) == V{10, 9});
  CHECK(back(0, 5).empty());
  CHECK(back(7, 0).empty());
  auto r = store->read_stream_backward("acct-1", 7, 3);
  REQUIRE(r);
  CHECK(positions_of(*r) == V{8, 7, 5});
}

TEST_CASE("read_all pages through the global log from a position",
          "[unit][store][read][read_all]") {
  temp_dir dir;
  auto store = open_ok(dir.sub("s"));
  CHECK(value_of(store->last_position()) == 0);
  auto empty = store->read_all(1, 10);
  REQUIRE(empty);
  CHECK(empty->events.empty());
  CHECK(empty->next_position == 1);

  append_ok(*store, "acct-1", numbered(3, "a"));
  append_ok(*store, "order-1", numbered(2, "o"));
  append_ok(*store, "acct-2", numbered(2, "b"));
  CHECK(value_of(store->last_position()) == 7);

  auto p1 = store->read_all(1, 3);
  REQUIRE(p1);
  CHECK(positions_of(p1->events) == V{1, 2, 3});
  CHECK(p1->next_position == 4);
  auto p2 = store->read_all(p1->next_position, 3);
  REQUIRE(p2);
  CHECK(positions_of(p2->events) == V{4, 5, 6});
  CHECK(p2->events[0].stream == "order-1");
  CHECK(p2->events[0].version == 1);
  CHECK(p2->events[2].stream == "acct-2");
  auto p3 = store->read_all(p2->next_position, 3);
  REQUIRE(p3);
  CHECK(positions_of(p3->events) == V{7});
  CHECK(p3->next_position == 8);
  auto p4 = store->read_all(p3->next_position, 3);
  REQUIRE(p4);
  CHECK(p4->events.empty());
  CHECK(p4->next_position == 8);

  auto from0 = store->read_all(0, 1);
  REQUIRE(from0);
  CHECK(positions_of(from0->events) == V{1});
  auto none = store->read_all(3, 0);
  REQUIRE(none);
  CHECK(none->events.empty());
  CHECK(none->next_position == 3);
}

TEST_CASE("read_all filters by category and by event type and still advances",
          "[unit][store][read][read_all]") {
  temp_dir dir;
  auto store = open_ok(dir.sub("s"));
  append_ok(*store, "acct-1", {event("opened", "1"), event("deposited", "2")});  // 1, 2
  append_ok(*store, "order-1", {event("placed", "3"), event("shipped", "4")});   // 3, 4
  append_ok(*store, "acct-2", {event("opened", "5")});                           // 5
  append_ok(*store, "acctx-1", {event("opened", "6")});                          // 6
  append_ok(*store, "order-2", {event("placed", "7"), event("cancelled", "8")}); // 7, 8
  append_ok(*store, "acct-1", {event("closed", "9")});                           // 9

  SECTION("by category: the exact part before the first dash") {
    read_filter f;
    f.categories = {"acct"};
    auto page = store->read_all(1, no_limit, f);
    REQUIRE(page);
    CHECK(positions_of(page->events) == V{1, 2, 5, 9});
    CHECK(page->next_position == 10);
    f.categories = {"order", "acctx"};
    auto both = store->read_all(1, no_limit, f);
    REQUIRE(both);
    CHECK(positions_of(both->events) == V{3, 4, 6, 7, 8});
  }
  SECTION("by type") {
    read_filter f;
    f.types = {"opened", "placed"};
    auto page = store->read_all(1, no_limit, f);
    REQUIRE(page);
    CHECK(positions_of(page->events) == V{1, 3, 5, 6, 7});
  }
  SECTION("by category and type together") {
    read_filter f;
    f.categories = {"acct", "order"};
    f.types = {"opened", "cancelled"};
    auto page = store->read_all(1, no_limit, f);
    REQUIRE(page);
    CHECK(positions_of(page->events) == V{1, 5, 8});
  }
  SECTION("a filtered page with max stops after its last match") {
    read_filter f;
    f.categories = {"order"};
    auto page = store->read_all(1, 2, f);
    REQUIRE(page);
    CHECK(positions_of(page->events) == V{3, 4});
    CHECK(page->next_position == 5);
    auto next = store->read_all(page->next_position, 2, f);
    REQUIRE(next);
    CHECK(positions_of(next->events) == V{7, 8});
    CHECK(next->next_position == 9);
    auto last = store->read_all(next->next_position, 2, f);
    REQUIRE(last);
    CHECK(last->events.empty());
    CHECK(last->next_position == 10); // moved past the skipped event 9
  }
  SECTION("a filter that matches nothing moves past everything it skipped") {
    read_filter f;
    f.types = {"nothing"};
    auto page = store->read_all(2, 5, f);
    REQUIRE(page);
    CHECK(page->events.empty());
    CHECK(page->next_position == 10);
  }
}

TEST_CASE("a filtered read_all over a long run of skipped events returns to its caller "
          "and resumes where it stopped",
          "[unit][store][read][read_all]") {
  temp_dir dir;
  auto store = open_ok(dir.sub("s"));
  constexpr std::size_t skipped = 70'000;
  std::vector<event_data> evs(skipped, event("noise", ""));
  append_ok(*store, "noise-1", std::move(evs));
  append_ok(*store, "acct-1", {event("opened", "needle")});
  read_filter f;
  f.categories = {"acct"};
  std::uint64_t from = 1;
  std::vector<recorded_event> found;
  int calls = 0;
  while (found.empty() && calls < 10) {
    auto page = store->read_all(from, 10, f);
    REQUIRE(page);
    ++calls;
    REQUIRE(page->next_position > from); // always advances
    from = page->next_position;
    found = page->events;
  }
  REQUIRE(found.size() == 1);
  CHECK(found[0].payload == "needle");
  CHECK(found[0].position == skipped + 1);
  CHECK(calls >= 2); // one call scans a bounded number of records
}

TEST_CASE("list_streams lists names with a prefix in name order", "[unit][store][read]") {
  temp_dir dir;
  auto store = open_ok(dir.sub("s"));
  for (const char* s : {"order-1", "acct-10", "acct-2", "acct-1", "acctx-1", "zeta-1"})
    append_ok(*store, s, numbered(std::string{s}.size() % 3 + 1));
  auto names = [&](std::string_view prefix, std::size_t max) {
    auto r = store->list_streams(prefix, max);
    REQUIRE(r);
    std::vector<std::string> out;
    for (const auto& i : *r) {
      CHECK(i.version == i.name.size() % 3 + 1);
      out.push_back(i.name);
    }
    return out;
  };
  using S = std::vector<std::string>;
  CHECK(names("", no_limit) == S{"acct-1", "acct-10", "acct-2", "acctx-1", "order-1", "zeta-1"});
  CHECK(names("acct-", no_limit) == S{"acct-1", "acct-10", "acct-2"});
  CHECK(names("acct-1", no_limit) == S{"acct-1", "acct-10"});
  CHECK(names("acct", 2) == S{"acct-1", "acct-10"});
  CHECK(names("order-", no_limit) == S{"order-1"});
  CHECK(names("b", no_limit).empty());
  CHECK(names("zz", no_limit).empty());
  CHECK(names("", 0).empty());
}

TEST_CASE("read_stream from version 1 returns the stream as it stood at a version",
          "[unit][store][read][time_travel]") {
  temp_dir dir;
  auto store = open_ok(dir.sub("s"));
  append_ok(*store, "acct-1", numbered(3));
  append_ok(*store, "acct-2", numbered(3));
  append_ok(*store, "acct-1", numbered(3, "p", 4));
  auto until = [&](std::uint64_t v) {
    auto r = store->read_stream("acct-1", 1, v);
    REQUIRE(r);
    return versions_of(*r);
  };
  CHECK(until(0).empty());
  CHECK(until(1) == V{1});
  CHECK(until(4) == V{1, 2, 3, 4});
  CHECK(until(6) == V{1, 2, 3, 4, 5, 6});
  CHECK(until(99) == V{1, 2, 3, 4, 5, 6});
  CHECK(value_of(store->read_stream("acct-9", 1, 3)).empty());
}

TEST_CASE("read_stream_until_time returns the leading events at or before a time",
          "[unit][store][read][time_travel]") {
  temp_dir dir;
  auto store = open_ok(dir.sub("s"));
  append_ok(*store, "acct-1", {at_time("a", 100), at_time("b", 200)});
  append_ok(*store, "acct-2", {at_time("x", 150)});
  append_ok(*store, "acct-1", {at_time("c", 300), at_time("d", 400)});
  auto until = [&](std::int64_t ts) {
    auto r = store->read_stream_until_time("acct-1", ts);
    REQUIRE(r);
    std::string out;
    for (const auto& e : *r)
      out += e.payload;
    return out;
  };
  CHECK(until(99) == "");
  CHECK(until(100) == "a");
  CHECK(until(250) == "ab");
  CHECK(until(300) == "abc");
  CHECK(until(400) == "abcd");
  CHECK(until(std::int64_t{1} << 62) == "abcd");
  SECTION("an out-of-order timestamp ends the leading run") {
    append_ok(*store, "acct-3", {at_time("a", 100), at_time("b", 300), at_time("c", 200)});
    auto r = store->read_stream_until_time("acct-3", 250);
    REQUIRE(r);
    REQUIRE(r->size() == 1);
    CHECK(r->front().payload == "a");
  }
  CHECK(value_of(store->read_stream_until_time("acct-9", 1000)).empty());
  CHECK(store->read_stream_until_time("bad", 1000).error().code == errc::invalid_argument);
}

TEST_CASE("read_stream_until_time pages through streams longer than one read",
          "[unit][store][read][time_travel]") {
  temp_dir dir;
  auto store = open_ok(dir.sub("s"));
  std::vector<event_data> evs;
  for (std::int64_t i = 1; i <= 9000; ++i)
    evs.push_back(at_time("e" + std::to_string(i), i * 10));
  append_ok(*store, "acct-1", std::move(evs));
  for (std::int64_t cut : {5, 10, 40960, 40965, 40970, 81920, 81930, 89990, 90000, 1000000}) {
    INFO("until " << cut);
    auto r = store->read_stream_until_time("acct-1", cut);
    REQUIRE(r);
    auto expected = static_cast<std::size_t>(std::min<std::int64_t>(cut / 10, 9000));
    REQUIRE(r->size() == expected);
    if (expected > 0) {
      CHECK(r->back().version == expected);
      CHECK(r->back().payload == "e" + std::to_string(expected));
    }
  }
}

TEST_CASE("long interleaved streams read back correctly from every start version",
          "[unit][store][read][index]") {
  // 1000 and 100 events, interleaved with each other and with noise, so the
  // back-pointer chains jump and the sparse index (an entry every
  // format::index_interval versions) is used.
  constexpr std::uint64_t interval = format::index_interval;
  const std::size_t window = static_cast<std::size_t>(interval + 8); // crosses an anchor
  temp_dir dir;
  auto store = open_ok(dir.sub("s"));
  std::map<std::string, std::vector<std::uint64_t>> pos; // stream -> position of version i+1
  std::uint64_t next = 1;
  for (int round = 0; round < 20; ++round) {
    write_batch batch;
    for (int k = 0; k < 50; ++k) {
      auto i = round * 50 + k;
      auto add = [&](const std::string& s, std::size_t n) {
        auto v = pos[s].size() + 1;
        batch.appends.push_back(
          request(s, expected_version::exact(v - 1), numbered(n, s + ":", v)));
        for (std::size_t j = 0; j < n; ++j)
          pos[s].push_back(next++);
      };
      add("long-a", 1);
      if (i % 10 == 3)
        add("long-b", 1);
      if (i % 7 == 0)
        add("noise-" + std::to_string(i % 3), 2);
    }
    auto out = store->append_batch(batch);
    REQUIRE(out);
    for (const auto& r : *out)
      REQUIRE(r);
  }
  REQUIRE(pos["long-a"].size() == 1000);
  REQUIRE(pos["long-b"].size() == 100);
  REQUIRE(1000 > 4 * interval); // several index entries

  auto check_events = [&](const std::string& s, const std::vector<recorded_event>& evs,
                          std::uint64_t first, int step) {
    auto v = first;
    for (const auto& e : evs) {
      if (e.version != v || e.stream != s || e.position != pos[s][v - 1]
          || e.payload != s + ":" + std::to_string(v)) {
        FAIL_CHECK(s << " expected v" << v << " at " << pos[s][v - 1] << ", got " << e.stream
                     << " v" << e.version << " at " << e.position << " '" << e.payload << "'");
        return false;
      }
      v = step > 0 ? v + 1 : v - 1;
    }
    return true;
  };

  auto reads_back = [&](const std::string& s) {
    const std::uint64_t n = pos[s].size();
    for (std::uint64_t from = 1; from <= n; ++from) {
      INFO(s << " from " << from);
      auto fwd = store->read_stream(s, from, window);
      REQUIRE(fwd);
      REQUIRE(fwd->size() == std::min<std::uint64_t>(window, n - from + 1));
      REQUIRE(check_events(s, *fwd, from, 1));
      auto back = store->read_stream_backward(s, from, window);
      REQUIRE(back);
      REQUIRE(back->size() == std::min<std::uint64_t>(window, from));
      REQUIRE(check_events(s, *back, from, -1));
      auto one = store->read_stream(s, from, 1);
      REQUIRE(one);
      REQUIRE(one->size() == 1);
      REQUIRE(check_events(s, *one, from, 1));
    }
    for (std::uint64_t from :
         {std::uint64_t{1}, interval - 1, interval, interval + 1, 2 * interval, n}) {
      if (from > n)
        continue;
      INFO(s << " whole tail from " << from);
      auto tail = store->read_stream(s, from, no_limit);
      REQUIRE(tail);
      REQUIRE(tail->size() == n - from + 1);
      REQUIRE(check_events(s, *tail, from, 1));
    }
    for (std::uint64_t v : {std::uint64_t{1}, interval, interval + 1, n - 1}) {
      if (v > n)
        continue;
      INFO(s << " until " << v);
      auto until = store->read_stream(s, 1, v);
      REQUIRE(until);
      REQUIRE(until->size() == v);
      REQUIRE(check_events(s, *until, 1, 1));
    }
  };
  reads_back("long-a");
  reads_back("long-b");

  auto all = store->read_all(1, no_limit);
  REQUIRE(all);
  REQUIRE(all->events.size() == next - 1);

  SECTION("after reopening, the chains continue across new index entries") {
    store.reset();
    store = open_ok(dir.sub("s"));
    reads_back("long-b");
    // Append past the next index entry of long-a, interleaved with a new stream.
    auto next_anchor = (1000 / interval + 1) * interval;
    auto target = next_anchor + 20;
    while (pos["long-a"].size() < target) {
      for (const char* name : {"long-a", "noise-7"}) {
        const std::string s = name;
        auto v = pos[s].size() + 1;
        auto r = store->append(request(s, expected_version::exact(v - 1), numbered(1, s + ":", v)));
        REQUIRE(r);
        CHECK(r->first_position == next);
        pos[s].push_back(next++);
      }
    }
    auto tail = store->read_stream("long-a", 990, no_limit);
    REQUIRE(tail);
    REQUIRE(tail->size() == target - 990 + 1);
    CHECK(check_events("long-a", *tail, 990, 1));
    auto back = store->read_stream_backward("long-a", no_limit, 100);
    REQUIRE(back);
    REQUIRE(back->size() == 100);
    CHECK(check_events("long-a", *back, target, -1));
    reads_back("long-a");
    reads_back("noise-7");
  }
}

TEST_CASE("hundreds of streams keep their own heads, also after reopening", "[unit][store][read]") {
  // More streams than one heads bucket holds (128 at the time of writing).
  temp_dir dir;
  constexpr int streams = 300;
  {
    auto store = open_ok(dir.sub("s"));
    write_batch batch;
    for (int i = 1; i <= streams; ++i)
      batch.appends.push_back(
        request("s-" + std::to_string(i), expected_version::no_stream(),
                numbered(static_cast<std::size_t>(i % 4 + 1), std::to_string(i) + ":")));
    auto out = store->append_batch(batch);
    REQUIRE(out);
    for (const auto& r : *out)
      REQUIRE(r);
  }
  auto store = open_ok(dir.sub("s"));
  auto check_stream = [&](int i, std::uint64_t extra) {
    auto name = "s-" + std::to_string(i);
    auto evs = store->read_stream(name, 1, no_limit);
    REQUIRE(evs);
    REQUIRE(evs->size() == static_cast<std::size_t>(i % 4 + 1) + extra);
    CHECK(evs->front().payload == std::to_string(i) + ":1");
    CHECK(value_of(store->stream_version(name)) == evs->size());
  };
  for (int i = 1; i <= streams; ++i)
    check_stream(i, 0);
  // New streams after reopening take fresh numbers: old streams are untouched.
  for (int i = streams + 1; i <= streams + 5; ++i)
    append_ok(*store, "s-" + std::to_string(i),
              numbered(static_cast<std::size_t>(i % 4 + 1), std::to_string(i) + ":"));
  for (int i : {1, 127, 128, 129, 255, 256, 300})
    append_ok(*store, "s-" + std::to_string(i), numbered(1, "more"));
  for (int i = 1; i <= streams + 5; ++i) {
    INFO("stream s-" << i);
    bool touched = i == 1 || i == 127 || i == 128 || i == 129 || i == 255 || i == 256 || i == 300;
    check_stream(i, touched ? 1 : 0);
  }
  CHECK(value_of(store->stats()).streams == streams + 5);
  CHECK(value_of(store->list_streams("s-")).size() == streams + 5);
}

TEST_CASE("visit_stream shows the events of a window in order without copying them",
          "[unit][store][read][visit]") {
  temp_dir dir;
  auto store = open_ok(dir.sub("s"));
  metadata m;
  m.correlation_id = "corr";
  m.user = "u";
  append_ok(*store, "acct-1", numbered(3), m);
  append_ok(*store, "acct-2", numbered(2));
  append_ok(*store, "acct-1", numbered(4, "p", 4));
  auto full = store->read_stream("acct-1", 1, no_limit);
  REQUIRE(full);

  auto visit = [&](std::uint64_t from, std::size_t max, std::uint64_t stop_at = 0) {
    std::vector<recorded_event> seen;
    auto n = store->visit_stream("acct-1", from, max, [&](const event_view& v) {
      recorded_event e;
      e.stream = std::string{v.stream};
      e.version = v.version;
      e.position = v.position;
      std::copy(v.id, v.id + 16, e.id.bytes.begin());
      e.timestamp_ns = v.timestamp_ns;
      e.type = std::string{v.type};
      e.schema_version = v.schema_version;
      e.meta.correlation_id = std::string{v.correlation_id};
      e.meta.causation_id = std::string{v.causation_id};
      e.meta.command_id = std::string{v.command_id};
      e.meta.tenant = std::string{v.tenant};
      e.meta.user = std::string{v.user};
      e.payload = std::string{v.payload};
      seen.push_back(std::move(e));
      return v.version != stop_at;
    });
    REQUIRE(n);
    CHECK(*n == seen.size());
    return seen;
  };
  auto same = [&](const std::vector<recorded_event>& seen, std::uint64_t first) {
    for (std::size_t i = 0; i < seen.size(); ++i) {
      const auto& want = (*full)[first - 1 + i];
      const auto& got = seen[i];
      CHECK(got.version == want.version);
      CHECK(got.position == want.position);
      CHECK(got.id == want.id);
      CHECK(got.timestamp_ns == want.timestamp_ns);
      CHECK(got.type == want.type);
      CHECK(got.schema_version == want.schema_version);
      CHECK(got.meta == want.meta);
      CHECK(got.payload == want.payload);
      CHECK(got.stream == "acct-1");
    }
  };
  auto all = visit(1, no_limit);
  CHECK(all.size() == 7);
  same(all, 1);
  auto window = visit(3, 3);
  CHECK(versions_of(window) == V{3, 4, 5});
  same(window, 3);
  auto stopped = visit(2, no_limit, 4); // the visitor says stop after v4
  CHECK(versions_of(stopped) == V{2, 3, 4});
  CHECK(visit(8, 5).empty());
  CHECK(visit(1, 0).empty());
  auto none = store->visit_stream("acct-9", 1, no_limit, [](const event_view&) { return true; });
  REQUIRE(none);
  CHECK(*none == 0);
  auto bad = store->visit_stream("bad", 1, 1, [](const event_view&) { return true; });
  REQUIRE_FALSE(bad);
  CHECK(bad.error().code == errc::invalid_argument);
}

TEST_CASE("a visitor that throws fails the read and leaves the store usable",
          "[unit][store][read][visit]") {
  temp_dir dir;
  auto store = open_ok(dir.sub("s"));
  append_ok(*store, "acct-1", numbered(3));
  for (int i = 0; i < 3; ++i) { // repeated: a leaked read transaction would show
    auto r = store->visit_stream("acct-1", 1, no_limit, [](const event_view& v) -> bool {
      if (v.version == 2)
        throw std::runtime_error("visitor gave up");
      return true;
    });
    REQUIRE_FALSE(r);
    CHECK(r.error().code == errc::internal);
    CHECK_THAT(r.error().message, Catch::Contains("visitor gave up"));
  }
  append_ok(*store, "acct-1", numbered(1, "p", 4));
  CHECK(value_of(store->read_stream("acct-1", 1, no_limit)).size() == 4);
}

TEST_CASE("stats count events, streams, snapshots and checkpoints", "[unit][store][read]") {
  temp_dir dir;
  auto store = open_ok(dir.sub("s"));
  append_ok(*store, "acct-1", numbered(3));
  append_ok(*store, "acct-2", numbered(2));
  REQUIRE(store->save_snapshot({"acct-1", 2, "state", 1, "s"}));
  REQUIRE(store->save_checkpoint({"cp-a", 4}));
  auto st = store->stats();
  REQUIRE(st);
  CHECK(st->events == 5);
  CHECK(st->streams == 2);
  CHECK(st->snapshots == 1);
  CHECK(st->checkpoints == 1);
  CHECK(st->format_version == cairn::persistence::format::current_version);
  CHECK(st->map_size >= (std::size_t{16} << 20));
  CHECK(st->map_used > 0);
  CHECK(st->map_used <= st->map_size);
  CHECK(store->path() == dir.sub("s"));
}
