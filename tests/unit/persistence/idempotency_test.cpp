#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "cairn/persistence/event_store.hpp"
#include "support/temp_dir.hpp"

#include "helpers.hpp"

using namespace cairn::persistence;
using cairn::errc;
using cairn::test::append_ok;
using cairn::test::fast_options;
using cairn::test::numbered;
using cairn::test::open_ok;
using cairn::test::request;
using cairn::test::temp_dir;
using cairn::test::value_of;

namespace {

metadata with_command(std::string id) {
  metadata m;
  m.command_id = std::move(id);
  return m;
}

void check_same_outcome(const append_result& dup, const append_result& original) {
  CHECK(dup.duplicate);
  CHECK(dup.first_version == original.first_version);
  CHECK(dup.last_version == original.last_version);
  CHECK(dup.first_position == original.first_position);
  CHECK(dup.last_position == original.last_position);
}

} // namespace

TEST_CASE("a repeated command id returns the original result and writes nothing",
          "[unit][store][idempotency]") {
  temp_dir dir;
  auto store = open_ok(dir.sub("s"));
  auto original = append_ok(*store, "acct-1", numbered(3, "first"), with_command("cmd-1"));
  CHECK_FALSE(original.duplicate);
  append_ok(*store, "acct-2", numbered(1));

  // Different events and an expectation that would now conflict: still the original.
  auto again = store->append(
    request("acct-1", expected_version::no_stream(), numbered(5, "second"), with_command("cmd-1")));
  REQUIRE(again);
  check_same_outcome(*again, original);
  CHECK(value_of(store->stream_version("acct-1")) == 3);
  CHECK(value_of(store->last_position()) == 4);
  auto events = store->read_stream("acct-1", 1, no_limit);
  REQUIRE(events);
  REQUIRE(events->size() == 3);
  CHECK(events->back().payload == "first3");
  CHECK(events->back().meta.command_id == "cmd-1");

  // A new command id appends again.
  auto next = store->append(
    request("acct-1", expected_version::exact(3), numbered(1), with_command("cmd-2")));
  REQUIRE(next);
  CHECK_FALSE(next->duplicate);
  CHECK(next->first_version == 4);
  CHECK(next->first_position == 5);
}

TEST_CASE("the same command id on another stream is independent", "[unit][store][idempotency]") {
  temp_dir dir;
  auto store = open_ok(dir.sub("s"));
  auto a = append_ok(*store, "acct-1", numbered(2), with_command("cmd-x"));
  auto b = append_ok(*store, "acct-2", numbered(2), with_command("cmd-x"));
  CHECK_FALSE(b.duplicate);
  CHECK(b.first_position == 3);
  auto c = append_ok(*store, "acct-3", numbered(1), with_command("cmd-x"));
  CHECK_FALSE(c.duplicate);
  auto a2 = append_ok(*store, "acct-1", numbered(2), with_command("cmd-x"));
  check_same_outcome(a2, a);
  CHECK(value_of(store->last_position()) == 5);
}

TEST_CASE("a recorded command id survives closing and reopening the store",
          "[unit][store][idempotency]") {
  temp_dir dir;
  append_result original;
  {
    auto store = open_ok(dir.sub("s"));
    append_ok(*store, "acct-0", numbered(1));
    original = append_ok(*store, "acct-1", numbered(2), with_command("cmd-durable"));
  }
  auto store = open_ok(dir.sub("s"));
  auto again = store->append(
    request("acct-1", expected_version::any(), numbered(2), with_command("cmd-durable")));
  REQUIRE(again);
  check_same_outcome(*again, original);
  CHECK(value_of(store->last_position()) == 3);
  CHECK(value_of(store->stream_version("acct-1")) == 2);
}

TEST_CASE("a command id repeated inside one batch is written once",
          "[unit][store][idempotency][batch]") {
  temp_dir dir;
  auto store = open_ok(dir.sub("s"));
  write_batch batch;
  batch.appends.push_back(
    request("acct-1", expected_version::no_stream(), numbered(2, "a"), with_command("cmd-1")));
  batch.appends.push_back(
    request("acct-2", expected_version::any(), numbered(1, "b"), with_command("cmd-1")));
  batch.appends.push_back(
    request("acct-1", expected_version::no_stream(), numbered(3, "dup"), with_command("cmd-1")));
  batch.appends.push_back(
    request("acct-1", expected_version::exact(2), numbered(1, "c", 3), with_command("cmd-2")));
  auto out = store->append_batch(batch);
  REQUIRE(out);
  REQUIRE(out->size() == 4);
  for (const auto& r : *out)
    REQUIRE(r);
  CHECK_FALSE((*out)[0]->duplicate);
  CHECK_FALSE((*out)[1]->duplicate);
  check_same_outcome(*(*out)[2], *(*out)[0]);
  CHECK_FALSE((*out)[3]->duplicate);
  CHECK((*out)[3]->first_version == 3);
  CHECK((*out)[3]->first_position == 4);
  auto events = store->read_stream("acct-1", 1, no_limit);
  REQUIRE(events);
  REQUIRE(events->size() == 3);
  CHECK((*events)[0].payload == "a1");
  CHECK((*events)[1].payload == "a2");
  CHECK((*events)[2].payload == "c3");
  CHECK(value_of(store->last_position()) == 4);

  // And the command recorded in the batch is recorded for later appends too.
  auto later =
    store->append(request("acct-1", expected_version::any(), numbered(1), with_command("cmd-1")));
  REQUIRE(later);
  check_same_outcome(*later, *(*out)[0]);
}

TEST_CASE("a command whose append failed is not recorded", "[unit][store][idempotency]") {
  temp_dir dir;
  auto store = open_ok(dir.sub("s"));
  append_ok(*store, "acct-1", numbered(1));
  auto conflict = store->append(
    request("acct-1", expected_version::exact(7), numbered(1), with_command("cmd-1")));
  REQUIRE_FALSE(conflict);
  CHECK(conflict.error().code == errc::conflict);
  auto retry = store->append(
    request("acct-1", expected_version::exact(1), numbered(1), with_command("cmd-1")));
  REQUIRE(retry);
  CHECK_FALSE(retry->duplicate);
  CHECK(retry->first_version == 2);
}

TEST_CASE("find_command returns the recorded outcome of a command, or nothing",
          "[unit][store][idempotency]") {
  temp_dir dir;
  append_result original;
  {
    auto store = open_ok(dir.sub("s"));
    append_ok(*store, "acct-0", numbered(2));
    original = append_ok(*store, "acct-1", numbered(3), with_command("cmd-1"));
    append_ok(*store, "acct-1", numbered(1)); // no command id
  }
  auto store = open_ok(dir.sub("s"));
  auto found = store->find_command("acct-1", "cmd-1");
  REQUIRE(found);
  REQUIRE(found->has_value());
  check_same_outcome(**found, original);
  CHECK((*found)->first_position == 3);

  auto other_id = store->find_command("acct-1", "cmd-2");
  REQUIRE(other_id);
  CHECK_FALSE(other_id->has_value());
  auto other_stream = store->find_command("acct-0", "cmd-1");
  REQUIRE(other_stream);
  CHECK_FALSE(other_stream->has_value());
  auto unknown_stream = store->find_command("acct-9", "cmd-1");
  REQUIRE(unknown_stream);
  CHECK_FALSE(unknown_stream->has_value());

  CHECK(store->find_command("acct-1", "").error().code == errc::invalid_argument);
  CHECK(store->find_command("acct-1", std::string(256, 'c')).error().code
        == errc::invalid_argument);
  CHECK(store->find_command("nodash", "cmd-1").error().code == errc::invalid_argument);
}
