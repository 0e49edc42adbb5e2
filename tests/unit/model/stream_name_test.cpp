#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "cairn/model/error.hpp"
#include "cairn/model/stream_name.hpp"

using cairn::errc;

namespace {

/// The error of an invalid name; fails the test when the name is accepted.
cairn::error rejection_of(const std::string& name) {
  auto r = cairn::validate_stream_name(name);
  INFO("name: '" << name << "'");
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error().code == errc::invalid_argument);
  return r.error();
}

} // namespace

TEST_CASE("well-formed stream names are accepted", "[unit][model][stream_name]") {
  for (const std::string& name :
       std::vector<std::string>{"account-42", "a-b", "provider_group-a-1", "x.y:z@w-0",
                                "CAPS-lower_1.2:3@4", std::string(253, 'a') + "-b"})
    CHECK(cairn::validate_stream_name(name).has_value());
}

TEST_CASE("a name of exactly 255 bytes is accepted and 256 is not", "[unit][model][stream_name]") {
  auto at_limit = "c-" + std::string(253, 'x');
  REQUIRE(at_limit.size() == cairn::max_stream_name_size);
  CHECK(cairn::validate_stream_name(at_limit).has_value());
  auto err = rejection_of(at_limit + "x");
  CHECK_THAT(err.message, Catch::Contains("255"));
  CHECK_THAT(err.message, Catch::Contains("256"));
  CHECK(err.context.size() <= 64); // the context is a prefix, not the whole name
}

TEST_CASE("an empty stream name is rejected as empty", "[unit][model][stream_name]") {
  CHECK_THAT(rejection_of("").message, Catch::Contains("empty"));
}

TEST_CASE("a stream name with a byte outside the alphabet names the byte",
          "[unit][model][stream_name]") {
  SECTION("a space") {
    auto err = rejection_of("account-4 2");
    CHECK_THAT(err.message, Catch::Contains("byte 9"));
    CHECK_THAT(err.message, Catch::Contains("[A-Za-z0-9_.:@-]"));
    CHECK(err.context == "account-4 2");
  }
  SECTION("a slash") { CHECK_THAT(rejection_of("a/b-1").message, Catch::Contains("byte 1")); }
  SECTION("a NUL byte") {
    CHECK_THAT(rejection_of(std::string("ab-c\0d", 6)).message, Catch::Contains("byte 4"));
  }
  SECTION("a non-ASCII byte") {
    CHECK_THAT(rejection_of("caf\xc3\xa9-1").message, Catch::Contains("byte 3"));
  }
}

TEST_CASE("a stream name without a dash has no category prefix", "[unit][model][stream_name]") {
  auto err = rejection_of("account42");
  CHECK_THAT(err.message, Catch::Contains("no category prefix"));
  CHECK_THAT(err.message, Catch::Contains("<category>-<id>"));
}

TEST_CASE("a stream name starting with a dash has an empty category",
          "[unit][model][stream_name]") {
  CHECK_THAT(rejection_of("-42").message, Catch::Contains("empty category"));
}

TEST_CASE("a stream name ending with its first dash has an empty id",
          "[unit][model][stream_name]") {
  CHECK_THAT(rejection_of("account-").message, Catch::Contains("empty id"));
}

TEST_CASE("the category is the part before the first dash", "[unit][model][stream_name]") {
  CHECK(cairn::category_of("account-42") == "account");
  CHECK(cairn::category_of("provider_group-a-1") == "provider_group");
  CHECK(cairn::category_of("nodash") == "nodash");
  CHECK(cairn::category_of("-x") == "");
  CHECK(cairn::category_of("") == "");
  static_assert(cairn::category_of("a-b") == "a");
}

TEST_CASE("an error prints its code, message and context", "[unit][model][error]") {
  cairn::error e{errc::conflict, "expected version 3, actual 5", "account-1"};
  CHECK(e.to_string() == "conflict: expected version 3, actual 5 [account-1]");
  cairn::error no_ctx{errc::unavailable, "map full"};
  CHECK(no_ctx.to_string() == "unavailable: map full");
  auto f = cairn::fail(errc::corrupted, "bad", "position 7");
  CHECK(f.value().code == errc::corrupted);
  CHECK(f.value().context == "position 7");
}

TEST_CASE("every error code has a stable lower-case name", "[unit][model][error]") {
  CHECK(cairn::to_string(errc::rejected) == "rejected");
  CHECK(cairn::to_string(errc::conflict) == "conflict");
  CHECK(cairn::to_string(errc::unavailable) == "unavailable");
  CHECK(cairn::to_string(errc::overloaded) == "overloaded");
  CHECK(cairn::to_string(errc::invalid_argument) == "invalid_argument");
  CHECK(cairn::to_string(errc::corrupted) == "corrupted");
  CHECK(cairn::to_string(errc::internal) == "internal");
  CHECK(cairn::to_string(errc::truncated) == "truncated");
  CHECK(static_cast<int>(errc::truncated) == 8); // codes travel on the wire
}
