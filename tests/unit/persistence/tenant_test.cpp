// Tenants in the store: read_all's tenant filter, and the append path's rule
// that a stream never mixes tenants (docs/audit.md#tenants).

#include <cstdint>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "cairn/persistence/event_store.hpp"
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

using V = std::vector<std::uint64_t>;

metadata of_tenant(std::string t) {
  metadata m;
  m.tenant = std::move(t);
  return m;
}

V positions_of(const std::vector<recorded_event>& evs) {
  V out;
  for (const auto& e : evs)
    out.push_back(e.position);
  return out;
}

cairn::error refused(const cairn::result<append_result>& r) {
  REQUIRE_FALSE(r.has_value());
  INFO(r.error().to_string());
  CHECK(r.error().code == errc::invalid_argument);
  return r.error();
}

} // namespace

TEST_CASE("read_all with a tenant returns only that tenant's events and still advances",
          "[unit][store][read_all][tenant]") {
  temp_dir dir;
  auto store = open_ok(dir.sub("s"));
  append_ok(*store, "acct-1", numbered(2), of_tenant("acme"));   // 1, 2
  append_ok(*store, "acct-2", numbered(1), of_tenant("globex")); // 3
  append_ok(*store, "order-1", numbered(2), of_tenant("acme"));  // 4, 5
  append_ok(*store, "acct-3", numbered(1));                      // 6: no tenant
  append_ok(*store, "acct-2", numbered(2), of_tenant("globex")); // 7, 8

  SECTION("the tenant alone") {
    read_filter f;
    f.tenant = "acme";
    auto page = value_of(store->read_all(1, no_limit, f));
    CHECK(positions_of(page.events) == V{1, 2, 4, 5});
    CHECK(page.next_position == 9); // moved past globex's tail
    for (const auto& ev : page.events)
      CHECK(ev.meta.tenant == "acme");
  }
  SECTION("with a category: both must hold") {
    read_filter f;
    f.tenant = "acme";
    f.categories = {"acct"};
    CHECK(positions_of(value_of(store->read_all(1, no_limit, f)).events) == V{1, 2});
  }
  SECTION("a page of one at a time skips the other tenants' events") {
    read_filter f;
    f.tenant = "globex";
    V seen;
    std::uint64_t from = 1;
    for (int calls = 0; calls < 10; ++calls) {
      auto page = value_of(store->read_all(from, 1, f));
      if (page.events.empty()) { // at the end: nothing more to skip
        CHECK(page.next_position == from);
        break;
      }
      REQUIRE(page.next_position > from);
      from = page.next_position;
      seen.push_back(page.events.front().position);
    }
    CHECK(seen == V{3, 7, 8});
    CHECK(from == 9);
  }
  SECTION("events without a tenant match no tenant, and an unknown tenant nothing") {
    read_filter f;
    f.tenant = "initech";
    auto page = value_of(store->read_all(1, no_limit, f));
    CHECK(page.events.empty());
    CHECK(page.next_position == 9);
  }
  SECTION("an empty tenant matches every event") {
    CHECK(value_of(store->read_all(1, no_limit, read_filter{})).events.size() == 8);
  }
}

TEST_CASE("an append naming another tenant than its stream's is invalid and writes nothing",
          "[unit][store][append][tenant]") {
  temp_dir dir;
  auto store = open_ok(dir.sub("s"));
  append_ok(*store, "acct-1", numbered(2), of_tenant("acme"));
  auto err = refused(
    store->append(request("acct-1", expected_version::any(), numbered(1), of_tenant("globex"))));
  CHECK_THAT(err.message,
             Catch::Contains("'globex'") && Catch::Contains("'acme'") && Catch::Contains("acct-1"));
  CHECK(err.context == "acct-1");
  CHECK(value_of(store->stream_version("acct-1")) == 2);
  CHECK(value_of(store->last_position()) == 2);
  // The same tenant goes on.
  CHECK(
    store->append(request("acct-1", expected_version::exact(2), numbered(1), of_tenant("acme"))));
  CHECK(value_of(store->stream_version("acct-1")) == 3);
}

TEST_CASE("the tenant check comes before the command id: a retry from another tenant is "
          "refused, not answered as a duplicate",
          "[unit][store][append][tenant]") {
  temp_dir dir;
  auto store = open_ok(dir.sub("s"));
  auto m = of_tenant("acme");
  m.command_id = "cmd-1";
  append_ok(*store, "acct-1", numbered(1), m);
  m.tenant = "globex";
  refused(store->append(request("acct-1", expected_version::any(), numbered(1), m)));
  m.tenant = "acme";
  auto again = value_of(store->append(request("acct-1", expected_version::any(), numbered(1), m)));
  CHECK(again.duplicate);
}

TEST_CASE("a stream without a tenant takes the first one it is given, and then keeps it",
          "[unit][store][append][tenant]") {
  temp_dir dir;
  auto path = dir.sub("s");
  {
    auto store = open_ok(path);
    append_ok(*store, "acct-1", numbered(3)); // before tenants: none
    append_ok(*store, "acct-1", numbered(1), of_tenant("acme"));
    refused(
      store->append(request("acct-1", expected_version::any(), numbered(1), of_tenant("globex"))));
  }
  auto store = open_ok(path); // learned again from the records after a reopen
  refused(
    store->append(request("acct-1", expected_version::any(), numbered(1), of_tenant("globex"))));
  append_ok(*store, "acct-1", numbered(1), of_tenant("acme"));
  CHECK(value_of(store->stream_version("acct-1")) == 5);
}

TEST_CASE("an append without a tenant claims none: the store takes it and the stream keeps its "
          "tenant, also after a reopen",
          "[unit][store][append][tenant]") {
  temp_dir dir;
  auto path = dir.sub("s");
  {
    auto store = open_ok(path);
    append_ok(*store, "acct-1", numbered(1), of_tenant("acme"));
    append_ok(*store, "acct-1", numbered(3)); // a tool's direct append
    refused(
      store->append(request("acct-1", expected_version::any(), numbered(1), of_tenant("globex"))));
  }
  // After a reopen the newest records carry no tenant: the writer walks the
  // stream's chain back to the one that does.
  auto store = open_ok(path);
  auto err = refused(
    store->append(request("acct-1", expected_version::any(), numbered(1), of_tenant("globex"))));
  CHECK_THAT(err.message, Catch::Contains("'acme'"));
  append_ok(*store, "acct-1", numbered(1), of_tenant("acme"));
  auto events = value_of(store->read_stream("acct-1", 1, no_limit));
  REQUIRE(events.size() == 5);
  CHECK(events[0].meta.tenant == "acme");
  CHECK(events[1].meta.tenant.empty());
  CHECK(events[4].meta.tenant == "acme");
}

TEST_CASE("in one batch, an append that mixes tenants into a stream the batch created fails "
          "alone",
          "[unit][store][append][tenant]") {
  temp_dir dir;
  auto store = open_ok(dir.sub("s"));
  write_batch b;
  b.appends.push_back(
    request("acct-1", expected_version::no_stream(), numbered(1), of_tenant("acme")));
  b.appends.push_back(request("acct-1", expected_version::any(), numbered(1), of_tenant("globex")));
  b.appends.push_back(
    request("acct-2", expected_version::no_stream(), numbered(1), of_tenant("globex")));
  b.appends.push_back(request("acct-1", expected_version::any(), numbered(1), of_tenant("acme")));
  auto results = value_of(store->append_batch(b));
  REQUIRE(results.size() == 4);
  CHECK(results[0]);
  refused(results[1]);
  CHECK(results[2]);
  CHECK(results[3]);
  CHECK(value_of(store->stream_version("acct-1")) == 2);
  CHECK(value_of(store->stream_version("acct-2")) == 1);
}

TEST_CASE("a failed batch teaches the writer no tenant", "[unit][store][append][tenant]") {
  temp_dir dir;
  auto store = open_ok(dir.sub("s"));
  // The batch's snapshot is past its stream's version, which the transaction
  // finds after it staged the append: nothing of it commits, and the stream
  // it would have given a tenant stays without one.
  write_batch b;
  b.appends.push_back(
    request("acct-1", expected_version::no_stream(), numbered(1), of_tenant("acme")));
  b.snapshots.push_back(snapshot{"acct-1", 5, "state", 1, "x"});
  auto failed = store->append_batch(b);
  REQUIRE_FALSE(failed);
  CHECK_THAT(failed.error().message, Catch::Contains("past the stream's version"));
  CHECK(value_of(store->stream_version("acct-1")) == 0);
  append_ok(*store, "acct-1", numbered(1), of_tenant("globex"));
  CHECK(value_of(store->read_stream("acct-1", 1, 1)).front().meta.tenant == "globex");
}
