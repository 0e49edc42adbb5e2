// The command log (append_request::command): its layout's decoder and the
// store's writes and reads of it (docs/storage-format.md#command_log).

#include <string>

#include <catch2/catch.hpp>

#include "cairn/persistence/format.hpp"
#include "helpers.hpp"
#include "support/temp_dir.hpp"

namespace {

using namespace cairn::test;
namespace format = cp::format;

format::command_view sample_view() {
  format::command_view c;
  c.stream = "account-1";
  c.version_before = 4;
  c.first_position = 17;
  c.event_count = 2;
  c.timestamp_ns = -5;
  c.correlation_id = "corr";
  c.command_id = "c-1";
  c.tenant = "acme";
  c.user = "ops";
  c.payload = std::string_view{"\x01\x00payload", 9};
  return c;
}

TEST_CASE("a command log entry decodes to what was encoded", "[unit][command_log]") {
  auto key = format::be64_key(3);
  auto value = format::seal_command(key, sample_view());
  REQUIRE(value.size() == format::command_value_size(sample_view()));
  auto c = format::decode_command(key, value);
  REQUIRE(c);
  CHECK(c->stream == "account-1");
  CHECK(c->version_before == 4);
  CHECK(c->first_position == 17);
  CHECK(c->event_count == 2);
  CHECK(c->timestamp_ns == -5);
  CHECK(c->correlation_id == "corr");
  CHECK(c->causation_id.empty());
  CHECK(c->command_id == "c-1");
  CHECK(c->tenant == "acme");
  CHECK(c->user == "ops");
  CHECK(c->payload == std::string_view{"\x01\x00payload", 9});
}

TEST_CASE("a damaged or truncated command log entry is corrupted, naming its sequence",
          "[unit][command_log]") {
  auto key = format::be64_key(3);
  auto value = format::seal_command(key, sample_view());
  auto flipped = value;
  flipped[format::seal_size + 20] ^= 0x01;
  auto bad = format::decode_command(key, flipped);
  REQUIRE(!bad);
  CHECK(bad.error().code == cairn::errc::corrupted);
  CHECK(bad.error().context == "sequence 3");
  // Another key: the seal binds the value to its key.
  CHECK(!format::decode_command(format::be64_key(4), value));
  CHECK(!format::decode_command("short", value));
  // Resealed after a change, the layout checks speak.
  auto body = value.substr(format::seal_size);
  auto reseal = [&](std::string b) { return format::seal(key, b); };
  CHECK(!format::decode_command(key, reseal(body.substr(0, 30)))); // shorter than its header
  CHECK(!format::decode_command(key, reseal(body + "x")));         // lengths do not add up
  auto layout = body;
  layout[0] = 2;
  CHECK(!format::decode_command(key, reseal(layout)));
  auto no_events = body;
  no_events[24] = 0; // event count 0 with a first position
  auto r = format::decode_command(key, reseal(no_events));
  REQUIRE(!r);
  CHECK_THAT(r.error().message, Catch::Contains("disagree"));
}

TEST_CASE("the store records a command with its events, and one with none", "[unit][command_log]") {
  temp_dir dir;
  auto s = open_ok(dir.path());
  append_ok(*s, "other-1", numbered(2)); // no command: nothing recorded
  auto with = request("account-1", cp::expected_version::no_stream(), numbered(2),
                      {"corr", "cause", "c-1", "acme", "ops", ""});
  with.command = std::string{"cmd-one"};
  REQUIRE(s->append(with));
  auto none = request("account-1", cp::expected_version::exact(2), {});
  none.command = std::string{"cmd-two"};
  auto r = s->append(none);
  REQUIRE(r);
  CHECK(r->last_version == 2);
  auto page = value_of(s->read_commands(1, 100));
  REQUIRE(page.commands.size() == 2);
  CHECK(page.next_sequence == 3);
  const auto& one = page.commands[0];
  CHECK(one.sequence == 1);
  CHECK(one.stream == "account-1");
  CHECK(one.version_before == 0);
  CHECK(one.first_position == 3);
  CHECK(one.event_count == 2);
  CHECK(one.payload == "cmd-one");
  CHECK(one.meta == cp::metadata{"corr", "cause", "c-1", "acme", "ops", ""});
  const auto& two = page.commands[1];
  CHECK(two.version_before == 2);
  CHECK(two.first_position == 0);
  CHECK(two.event_count == 0);
  CHECK(two.payload == "cmd-two");
}

TEST_CASE("a duplicate, a conflict or an oversized command records nothing",
          "[unit][command_log]") {
  temp_dir dir;
  auto o = fast_options();
  o.max_event_size = 64;
  auto s = open_ok(dir.path(), o);
  auto req = request("account-1", cp::expected_version::any(), numbered(1),
                     {"", "", "c-1", "", "", ""});
  req.command = std::string{"cmd"};
  REQUIRE(s->append(req));
  auto again = s->append(req);
  REQUIRE(again);
  CHECK(again->duplicate);
  auto conflict = request("account-1", cp::expected_version::exact(7), numbered(1));
  conflict.command = std::string{"cmd"};
  CHECK(s->append(conflict).error().code == cairn::errc::conflict);
  auto big = request("account-1", cp::expected_version::any(), numbered(1));
  big.command = std::string(65, 'x');
  CHECK(s->append(big).error().code == cairn::errc::invalid_argument);
  CHECK(value_of(s->read_commands(1, 100)).commands.size() == 1);
}

TEST_CASE("read_commands pages by sequence and filters by stream prefix", "[unit][command_log]") {
  temp_dir dir;
  {
    auto s = open_ok(dir.path());
    for (int i = 0; i < 5; ++i)
      for (const char* stream : {"account-1", "account-2", "ledger-1"}) {
        auto req = request(stream, cp::expected_version::any(), numbered(1));
        req.command = std::string{stream} + "/" + std::to_string(i);
        REQUIRE(s->append(req));
      }
  }
  auto s = open_ok(dir.path()); // the sequence goes on after a reopen
  auto req = request("account-1", cp::expected_version::any(), numbered(1));
  req.command = std::string{"late"};
  REQUIRE(s->append(req));
  auto first = value_of(s->read_commands(1, 4, "account-"));
  REQUIRE(first.commands.size() == 4);
  CHECK(first.commands[0].sequence == 1);
  CHECK(first.commands[3].sequence == 5);
  CHECK(first.next_sequence == 6);
  auto rest = value_of(s->read_commands(first.next_sequence, 100, "account-"));
  REQUIRE(rest.commands.size() == 7);
  CHECK(rest.commands.back().sequence == 16);
  CHECK(rest.commands.back().payload == "late");
  CHECK(value_of(s->read_commands(17, 100)).commands.empty());
  CHECK(value_of(s->read_commands(1, 100, "ledger-1")).commands.size() == 5);
}

} // namespace
