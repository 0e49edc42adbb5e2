#include <optional>
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

namespace {

snapshot snap(std::string stream, std::uint64_t version, std::string data) {
  return snapshot{std::move(stream), version, "account_state", 3, std::move(data)};
}

/// The version of the snapshot `load_snapshot` returns; 0 for none.
std::uint64_t loaded_version(const event_store& s, std::string_view stream,
                             std::uint64_t max_version = no_limit) {
  auto r = s.load_snapshot(stream, max_version);
  INFO("load_snapshot(" << stream << ", " << max_version << ")");
  REQUIRE(r);
  return r->has_value() ? (*r)->version : 0;
}

} // namespace

// -- snapshots ----------------------------------------------------------------------

TEST_CASE("a saved snapshot loads back whole", "[unit][store][snapshot]") {
  temp_dir dir;
  auto store = open_ok(dir.sub("s"));
  append_ok(*store, "acct-1", numbered(5));
  std::string data("state\0with\xff bytes", 17);
  REQUIRE(store->save_snapshot(snapshot{"acct-1", 5, "account_state", 3, data}));
  auto r = store->load_snapshot("acct-1");
  REQUIRE(r);
  REQUIRE(r->has_value());
  const auto& s = **r;
  CHECK(s.stream == "acct-1");
  CHECK(s.version == 5);
  CHECK(s.state_type == "account_state");
  CHECK(s.schema_version == 3);
  CHECK(s.data == data);

  // Saving at the same version replaces it.
  REQUIRE(store->save_snapshot(snap("acct-1", 5, "replaced")));
  CHECK((value_of(store->load_snapshot("acct-1")))->data == "replaced");
  // An empty state is a valid state.
  REQUIRE(store->save_snapshot(snap("acct-1", 5, "")));
  CHECK((value_of(store->load_snapshot("acct-1")))->data.empty());
}

TEST_CASE("loading a snapshot with a max version falls back to an older one",
          "[unit][store][snapshot]") {
  temp_dir dir;
  auto store = open_ok(dir.sub("s"));
  append_ok(*store, "acct-1", numbered(3));
  REQUIRE(store->save_snapshot(snap("acct-1", 3, "at3")));
  append_ok(*store, "acct-1", numbered(3));
  REQUIRE(store->save_snapshot(snap("acct-1", 6, "at6")));
  CHECK(loaded_version(*store, "acct-1") == 6);
  CHECK(loaded_version(*store, "acct-1", 100) == 6);
  CHECK(loaded_version(*store, "acct-1", 6) == 6);
  CHECK(loaded_version(*store, "acct-1", 5) == 3);
  CHECK((value_of(store->load_snapshot("acct-1", 5)))->data == "at3");
  CHECK(loaded_version(*store, "acct-1", 3) == 3);
  CHECK(loaded_version(*store, "acct-1", 2) == 0);
  CHECK(loaded_version(*store, "acct-1", 0) == 0);
  CHECK(loaded_version(*store, "acct-2") == 0);
}

TEST_CASE("only the two newest snapshots of a stream are kept", "[unit][store][snapshot]") {
  temp_dir dir;
  auto store = open_ok(dir.sub("s"));
  append_ok(*store, "acct-1", numbered(10));
  append_ok(*store, "acct-2", numbered(10));
  append_ok(*store, "acct-3", numbered(10));
  REQUIRE(store->save_snapshot(snap("acct-2", 5, "b5")));
  for (std::uint64_t v : {2, 4, 6, 8}) // acct-1 sits before acct-2 in key order
    REQUIRE(store->save_snapshot(snap("acct-1", v, "a" + std::to_string(v))));
  for (std::uint64_t v : {1, 3, 7}) // acct-3 is the last stream in key order
    REQUIRE(store->save_snapshot(snap("acct-3", v, "c" + std::to_string(v))));
  CHECK(value_of(store->stats()).snapshots == 5);
  CHECK(loaded_version(*store, "acct-1") == 8);
  CHECK(loaded_version(*store, "acct-1", 7) == 6);
  CHECK(loaded_version(*store, "acct-1", 5) == 0);
  CHECK(loaded_version(*store, "acct-2") == 5);
  CHECK(loaded_version(*store, "acct-3") == 7);
  CHECK(loaded_version(*store, "acct-3", 6) == 3);
  CHECK(loaded_version(*store, "acct-3", 2) == 0);

  SECTION("a snapshot older than the two kept is dropped at once") {
    REQUIRE(store->save_snapshot(snap("acct-1", 1, "a1")));
    CHECK(loaded_version(*store, "acct-1", 5) == 0);
    CHECK(loaded_version(*store, "acct-1") == 8);
    CHECK(value_of(store->stats()).snapshots == 5);
  }
}

TEST_CASE("a snapshot of an unknown stream or past the stream's version is invalid",
          "[unit][store][snapshot]") {
  temp_dir dir;
  auto store = open_ok(dir.sub("s"));
  append_ok(*store, "acct-1", numbered(3));
  auto unknown = store->save_snapshot(snap("acct-2", 1, "x"));
  REQUIRE_FALSE(unknown);
  CHECK(unknown.error().code == errc::invalid_argument);
  CHECK(unknown.error().context == "acct-2");
  auto past = store->save_snapshot(snap("acct-1", 4, "x"));
  REQUIRE_FALSE(past);
  CHECK(past.error().code == errc::invalid_argument);
  CHECK_THAT(past.error().message, Catch::Contains("4"));
  CHECK_THAT(past.error().message, Catch::Contains("3"));
  auto zero = store->save_snapshot(snap("acct-1", 0, "x"));
  REQUIRE_FALSE(zero);
  CHECK(zero.error().code == errc::invalid_argument);
  auto no_type = store->save_snapshot(snapshot{"acct-1", 1, "", 1, "x"});
  REQUIRE_FALSE(no_type);
  CHECK(no_type.error().code == errc::invalid_argument);
  auto bad_name = store->save_snapshot(snap("acct1", 1, "x"));
  REQUIRE_FALSE(bad_name);
  CHECK(bad_name.error().code == errc::invalid_argument);
  CHECK(value_of(store->stats()).snapshots == 0);
  CHECK(value_of(store->stats()).streams == 1);
  // The failed snapshot of acct-2 did not reserve anything: acct-2 starts clean.
  append_ok(*store, "acct-2", numbered(1, "two"));
  CHECK(value_of(store->read_stream("acct-2", 1, 9)).front().payload == "two1");
  CHECK(value_of(store->read_stream("acct-1", 1, 9)).size() == 3);
}

TEST_CASE("a snapshot larger than max_snapshot_size or without a valid type is invalid",
          "[unit][store][snapshot][limits]") {
  temp_dir dir;
  auto opts = cairn::test::fast_options();
  opts.max_snapshot_size = 100;
  auto store = open_ok(dir.sub("s"), opts);
  append_ok(*store, "acct-1", numbered(2));
  REQUIRE(store->save_snapshot(snap("acct-1", 1, std::string(100, 's'))));
  auto big = store->save_snapshot(snap("acct-1", 2, std::string(101, 's')));
  REQUIRE_FALSE(big);
  CHECK(big.error().code == errc::invalid_argument);
  CHECK_THAT(big.error().message, Catch::Contains("max_snapshot_size"));
  auto v0 = store->save_snapshot(snapshot{"acct-1", 2, "state", 0, "x"});
  REQUIRE_FALSE(v0);
  CHECK(v0.error().code == errc::invalid_argument);
  auto spaced = store->save_snapshot(snapshot{"acct-1", 2, "my state", 1, "x"});
  REQUIRE_FALSE(spaced);
  CHECK(spaced.error().code == errc::invalid_argument);
  CHECK(loaded_version(*store, "acct-1") == 1);
}

TEST_CASE("snapshots survive closing and reopening the store", "[unit][store][snapshot]") {
  temp_dir dir;
  {
    auto store = open_ok(dir.sub("s"));
    append_ok(*store, "acct-1", numbered(4));
    REQUIRE(store->save_snapshot(snap("acct-1", 4, "durable")));
  }
  auto store = open_ok(dir.sub("s"));
  auto r = store->load_snapshot("acct-1");
  REQUIRE(r);
  REQUIRE(r->has_value());
  CHECK((*r)->data == "durable");
}

TEST_CASE("a corrupted snapshot is reported as corrupted and never returned",
          "[unit][store][snapshot][corruption]") {
  temp_dir dir;
  const std::string marker = "SNAPSHOT-MARKER-7f3a9c";
  {
    auto store = open_ok(dir.sub("s"));
    append_ok(*store, "acct-1", numbered(2));
    REQUIRE(store->save_snapshot(snap("acct-1", 2, "older-intact-state")));
    append_ok(*store, "acct-1", numbered(2));
    REQUIRE(store->save_snapshot(snap("acct-1", 4, "newer " + marker + " state")));
    append_ok(*store, "acct-2", numbered(1));
    REQUIRE(store->save_snapshot(snap("acct-2", 1, "other-stream-state")));
  }
  auto flipped = cairn::test::flip_in_file(dir.sub("s") + "/data.mdb", marker, 3);
  REQUIRE(flipped >= 1);

  auto store = open_ok(dir.sub("s"));
  auto r = store->load_snapshot("acct-1");
  REQUIRE_FALSE(r);
  CHECK(r.error().code == errc::corrupted);
  CHECK_THAT(r.error().message, Catch::Contains("version 4"));
  CHECK_THAT(r.error().to_string(), Catch::Contains("acct-1"));
  // The caller falls back to the older snapshot, which is intact.
  auto older = store->load_snapshot("acct-1", 3);
  REQUIRE(older);
  REQUIRE(older->has_value());
  CHECK((*older)->version == 2);
  CHECK((*older)->data == "older-intact-state");
  auto other = store->load_snapshot("acct-2");
  REQUIRE(other);
  REQUIRE(other->has_value());
  CHECK((*other)->data == "other-stream-state");
  CHECK(value_of(store->read_stream("acct-1", 1, no_limit)).size() == 4);
}

// -- checkpoints ----------------------------------------------------------------------

TEST_CASE("checkpoints save, load and list in name order", "[unit][store][checkpoint]") {
  temp_dir dir;
  auto store = open_ok(dir.sub("s"));
  auto missing = store->load_checkpoint("projector");
  REQUIRE(missing);
  CHECK_FALSE(missing->has_value());
  CHECK(value_of(store->list_checkpoints()).empty());

  REQUIRE(store->save_checkpoint({"projector", 42}));
  REQUIRE(store->save_checkpoint({"mailer", 0}));
  REQUIRE(store->save_checkpoint({std::string(255, 'z'), 18'000'000'000'000'000'000ull}));
  REQUIRE(store->save_checkpoint({"projector", 43})); // overwrites
  CHECK(value_of(store->load_checkpoint("projector")).value() == 43);
  CHECK(value_of(store->load_checkpoint("mailer")).value() == 0);
  CHECK(value_of(store->load_checkpoint(std::string(255, 'z'))).value()
        == 18'000'000'000'000'000'000ull);
  CHECK_FALSE(value_of(store->load_checkpoint("Projector")).has_value());
  auto all = store->list_checkpoints();
  REQUIRE(all);
  REQUIRE(all->size() == 3);
  CHECK((*all)[0].name == "mailer");
  CHECK((*all)[0].position == 0);
  CHECK((*all)[1].name == "projector");
  CHECK((*all)[1].position == 43);
  CHECK((*all)[2].name == std::string(255, 'z'));
  CHECK(value_of(store->stats()).checkpoints == 3);
}

TEST_CASE("checkpoint names must be 1 to 255 bytes", "[unit][store][checkpoint]") {
  temp_dir dir;
  auto store = open_ok(dir.sub("s"));
  CHECK(store->save_checkpoint({"", 1}).error().code == errc::invalid_argument);
  CHECK(store->save_checkpoint({std::string(256, 'n'), 1}).error().code == errc::invalid_argument);
  CHECK(store->load_checkpoint("").error().code == errc::invalid_argument);
  CHECK(value_of(store->list_checkpoints()).empty());
}

TEST_CASE("checkpoints survive closing and reopening the store", "[unit][store][checkpoint]") {
  temp_dir dir;
  {
    auto store = open_ok(dir.sub("s"));
    REQUIRE(store->save_checkpoint({"projector", 7}));
  }
  auto store = open_ok(dir.sub("s"));
  CHECK(value_of(store->load_checkpoint("projector")).value() == 7);
}
