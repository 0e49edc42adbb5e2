// The text form of retention rules (cairn retention --keep): what parses, what
// is refused and how the refusal names the rule, and the round trip.

#include <chrono>
#include <string>

#include <catch2/catch.hpp>

#include "cairn/persistence/retention.hpp"

using namespace cairn::persistence;
using cairn::errc;

TEST_CASE("an age rule and a count rule parse", "[unit][retention]") {
  auto age = parse_retention_rule("provider=30d");
  REQUIRE(age);
  CHECK(age->category == "provider");
  REQUIRE(age->max_age);
  CHECK(*age->max_age == std::chrono::hours{24 * 30});
  CHECK_FALSE(age->keep_newest);
  auto count = parse_retention_rule("account=last:1000");
  REQUIRE(count);
  CHECK(count->category == "account");
  CHECK(count->keep_newest == std::uint64_t{1000});
  CHECK_FALSE(count->max_age);
  for (auto [text, seconds] : {std::pair{"a=90s", 90}, std::pair{"a=5m", 300},
                               std::pair{"a=12h", 43200}, std::pair{"a=2w", 1209600}}) {
    auto r = parse_retention_rule(text);
    REQUIRE(r);
    CHECK(*r->max_age == std::chrono::seconds{seconds});
  }
}

TEST_CASE("a malformed rule is refused with a message that names it", "[unit][retention]") {
  for (auto text : {"provider", "=30d", "provider=", "provider=30", "provider=30x", "provider=d",
                    "provider=0d", "provider=last:", "provider=last:0", "provider=last:-1",
                    "provider=last:1x", "pro-vider=30d", "pro vider=30d",
                    "provider=99999999999999999999d", "provider=999999999w"}) {
    auto r = parse_retention_rule(text);
    INFO(text);
    REQUIRE_FALSE(r);
    CHECK(r.error().code == errc::invalid_argument);
    CHECK(r.error().message.find(std::string{"retention rule '"} + text + "'")
          != std::string::npos);
  }
}

TEST_CASE("a policy refuses a category named twice", "[unit][retention]") {
  auto ok = parse_retention_policy({"a=1d", "b=last:5"});
  REQUIRE(ok);
  CHECK(ok->rules.size() == 2);
  auto twice = parse_retention_policy({"a=1d", "a=last:5"});
  REQUIRE_FALSE(twice);
  CHECK(twice.error().message.find("'a=last:5'") != std::string::npos);
  CHECK(twice.error().message.find("has a rule already") != std::string::npos);
}

TEST_CASE("a rule prints in the form it parses from", "[unit][retention]") {
  for (auto text : {"a=30d", "a=2w", "a=90s", "a=5m", "a=36h", "b=last:7"}) {
    auto r = parse_retention_rule(text);
    REQUIRE(r);
    CHECK(to_string(*r) == text);
  }
}
