// The CLI's parsers of untrusted text: times, hex and import lines. Each
// answers an error for bad input, never a crash, a wrap or a huge allocation.

#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <variant>

#include <catch2/catch.hpp>

#include "cairn/tools/import_line.hpp"
#include "cairn/tools/text.hpp"

using namespace cairn::tools;
using cairn::errc;

namespace {

const std::string good_event =
  R"({"position":2,"stream":"account-alice","version":1,"id":"d700676c9ea3e8d25653de96e71a0300",)"
  R"("timestamp":"2026-11-24T10:00:10.000000000Z","timestamp_ns":1795514410000000000,)"
  R"("type":"money_deposited","schema_version":1,"correlation_id":"corr-1","causation_id":"",)"
  R"("command_id":"dep-1","tenant":"","user":"teller","size":8,"data":{"value0":100},)"
  R"("payload_hex":"6400000000000000"})";

} // namespace

TEST_CASE("parse_time reads ISO-8601 and epoch nanoseconds", "[unit][tools][time]") {
  CHECK(parse_time("0").value() == 0);
  CHECK(parse_time("-5").value() == -5);
  CHECK(parse_time("1970-01-01T00:00:01Z").value() == 1'000'000'000);
  CHECK(parse_time("1970-01-01T00:00:00.5Z").value() == 500'000'000);
  CHECK(parse_time("1970-01-01T01:00:00+01:00").value() == 0);
  CHECK(parse_time("2262-04-11T23:47:16.854775807Z").value()
        == std::numeric_limits<std::int64_t>::max());
  // The earliest whole second whose nanoseconds fit.
  CHECK(parse_time("1677-09-21T00:12:44Z").value() == -9'223'372'036'000'000'000);
}

TEST_CASE("parse_time refuses times that int64 nanoseconds cannot hold", "[unit][tools][time]") {
  for (const char* text :
       {"2262-04-11T23:47:16.854775808Z", "9999-12-31T23:59:59.999999999Z", "0000-01-01T00:00:00Z",
        "1677-09-21T00:12:43.145224191Z", "0001-01-01T00:00:00-23:59"}) {
    INFO(text);
    auto t = parse_time(text);
    REQUIRE_FALSE(t);
    CHECK(t.error().code == errc::invalid_argument);
    CHECK_THAT(t.error().message, Catch::Contains("out of range"));
  }
}

TEST_CASE("parse_time refuses malformed text, every prefix and random bytes included",
          "[unit][tools][time]") {
  for (const char* text :
       {"", "-", "--1", "1-", "99999999999999999999", "-9223372036854775809", "2026-11-24T10:00:00",
        "2026-11-24T10:00:00.Z", "2026-11-24T10:00:00.1234567890Z", "2026-13-01T00:00:00Z",
        "2026-11-24T10:00:00+", "2026-11-24T10:00:00+01", "2026-11-24T10:00:00Zjunk",
        "2026-11-24 10:00:00Z"}) {
    INFO(text);
    CHECK_FALSE(parse_time(text));
  }
  std::string full = "2026-11-24T10:00:00.123+01:30";
  REQUIRE(parse_time(full));
  for (std::size_t n = 5; n < full.size(); ++n) { // "2026" alone is a number of ns
    INFO(full.substr(0, n));
    CHECK_FALSE(parse_time(full.substr(0, n)));
  }
  std::mt19937 rng{42};
  const std::string alphabet = "0123456789-+:.TZ ";
  for (int i = 0; i < 20'000; ++i) {
    std::string text = full;
    for (int k = 0; k < 3; ++k)
      text[rng() % text.size()] = alphabet[rng() % alphabet.size()];
    (void)parse_time(text); // any answer, no crash (UBSan: no overflow)
  }
}

TEST_CASE("from_hex refuses odd lengths and non-hex digits", "[unit][tools][hex]") {
  CHECK(from_hex("").value().empty());
  CHECK(from_hex("00ffAB").value() == std::string("\x00\xff\xab", 3));
  auto odd = from_hex("abc");
  REQUIRE_FALSE(odd);
  CHECK_THAT(odd.error().message, Catch::Contains("odd length"));
  auto bad = from_hex("00zz");
  REQUIRE_FALSE(bad);
  CHECK_THAT(bad.error().message, Catch::Contains("offset 2"));
  CHECK_FALSE(from_hex(std::string("0\0", 2)));
  CHECK(to_hex(from_hex("0123456789abcdef").value()) == "0123456789abcdef");
}

TEST_CASE("parse_import_line reads events, checkpoints, read-model keys and dead letters",
          "[unit][tools][import]") {
  auto ev = parse_import_line(good_event, "f line 3");
  REQUIRE(ev);
  const auto& e = std::get<imported_event>(*ev);
  CHECK(e.position == 2);
  CHECK(e.stream == "account-alice");
  CHECK(e.data.type == "money_deposited");
  CHECK(e.data.payload == std::string("\x64\0\0\0\0\0\0\0", 8));
  CHECK(e.meta.command_id == "dep-1");

  auto cp = parse_import_line(R"({"checkpoint":"p","position":4})");
  REQUIRE(cp);
  CHECK(std::get<cairn::persistence::checkpoint>(*cp).position == 4);

  auto kv = parse_import_line(R"({"kv":"s","key_hex":"61","value_hex":"0001"})");
  REQUIRE(kv);
  CHECK(std::get<cairn::persistence::kv_op>(*kv).value == std::string("\0\1", 2));

  auto dl = parse_import_line(
    R"({"dead_letter":"mailer","position":2,"stream":"account-alice","version":2,)"
    R"("type":"t","error":"e","attempts":5,"first_failure_ns":1,"last_failure_ns":2,)"
    R"("replay_requested":true})");
  REQUIRE(dl);
  CHECK(std::get<cairn::persistence::dead_letter>(*dl).replay_requested);

  auto header = parse_import_header(R"({"cairn_export":1,"events":6,"checkpoints":1})");
  REQUIRE(header);
  CHECK(header->events == 6);
}

TEST_CASE("an export header names the position retention cut its log at, and 1 without one",
          "[unit][tools][import][retention]") {
  auto whole = parse_import_header(R"({"cairn_export":1,"events":6,"checkpoints":1})");
  REQUIRE(whole);
  CHECK(whole->first_position == 1);
  auto cut = parse_import_header(
    R"({"cairn_export":1,"events":26,"checkpoints":1,"first_position":28,"kept_below":13})");
  REQUIRE(cut);
  CHECK(cut->first_position == 28);
  auto bad = parse_import_header(R"({"cairn_export":1,"events":6,"first_position":"x"})");
  REQUIRE_FALSE(bad);
  CHECK(bad.error().code == errc::invalid_argument);
  CHECK(bad.error().message.find("first_position") != std::string::npos);
}

TEST_CASE("parse_import_line names the line and the field it refuses", "[unit][tools][import]") {
  struct bad_case {
    std::string line;
    std::string says;
  };
  std::vector<bad_case> cases{
    {"", "not JSON"},
    {"[1,2]", "not a JSON object"},
    {"{\"checkpoint\":\"p\",\"position\":-1}", "\"position\" is not a non-negative integer"},
    {"{\"checkpoint\":7,\"position\":1}", "\"checkpoint\" is not a string"},
    {"{\"kv\":\"s\",\"key_hex\":\"6\",\"value_hex\":\"\"}", "\"key_hex\": hex of odd length"},
    {"{\"position\":1}", "no \"stream\" field"},
  };
  auto with = [](std::string line, const std::string& from, const std::string& to) {
    line.replace(line.find(from), from.size(), to);
    return line;
  };
  cases.push_back({with(good_event, "\"version\":1", "\"version\":0"), "versions start at 1"});
  cases.push_back({with(good_event, "account-alice", "no dash"), "stream"});
  cases.push_back({with(good_event, "d700676c", "xx00676c"), "\"id\" is not 32 hex digits"});
  cases.push_back(
    {with(good_event, "\"schema_version\":1", "\"schema_version\":4294967296"), "out of range"});
  cases.push_back({with(good_event, "money_deposited", "money deposited"), "\"type\""});
  cases.push_back({with(good_event, "6400000000000000", "640000000000000"), "odd length"});
  for (const auto& c : cases) {
    INFO(c.line);
    auto r = parse_import_line(c.line, "f line 9");
    REQUIRE_FALSE(r);
    CHECK(r.error().code == errc::invalid_argument);
    CHECK(r.error().context == "f line 9");
    CHECK_THAT(r.error().message, Catch::Contains(c.says));
  }
}

TEST_CASE("parse_import_line survives deep nesting, every prefix and random damage",
          "[unit][tools][import]") {
  std::string nested;
  for (int i = 0; i < 200'000; ++i)
    nested += "{\"a\":";
  nested += "1";
  nested.append(200'000, '}');
  auto deep = parse_import_line(nested);
  REQUIRE_FALSE(deep);
  CHECK_THAT(deep.error().message, Catch::Contains("no \"position\" field"));
  CHECK_FALSE(parse_import_line(std::string(200'000, '[')));
  CHECK_FALSE(parse_import_header(nested));

  for (std::size_t n = 0; n < good_event.size(); ++n)
    CHECK_FALSE(parse_import_line(good_event.substr(0, n)));
  std::mt19937 rng{7};
  for (int i = 0; i < 5'000; ++i) {
    std::string line = good_event;
    for (int k = 0; k < 2; ++k)
      line[rng() % line.size()] = static_cast<char>(rng() % 256);
    (void)parse_import_line(line); // any answer, no crash
  }
}
