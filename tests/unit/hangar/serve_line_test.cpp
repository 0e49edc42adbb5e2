// `hangar serve`'s line parser, apart from the service (the server's answers
// are tested end to end in tests/integration/hangar/demo_test.cpp).

#include <catch2/catch.hpp>

#include "hangar/serve_line.hpp"

using hangar::parse_serve_line;
using kind = hangar::serve_request::kind;

TEST_CASE("a serve line parses into its request with defaults", "[unit][hangar][serve]") {
  auto reg = parse_serve_line("  register p1 subprocess /bin/mcp --stdio ");
  REQUIRE(reg);
  REQUIRE(*reg);
  CHECK((*reg)->what == kind::register_provider);
  CHECK((*reg)->id == "p1");
  CHECK((*reg)->mode == hangar::provider_mode::subprocess);
  CHECK((*reg)->config.command == std::vector<std::string>{"/bin/mcp", "--stdio"});

  auto remote = parse_serve_line("register r1 remote https://x extra");
  REQUIRE((remote && *remote));
  CHECK((*remote)->config.endpoint == "https://x");
  CHECK((*remote)->config.command.empty());

  auto stop = parse_serve_line("stop p1");
  REQUIRE((stop && *stop));
  CHECK((*stop)->reason == "manual");
  auto invoke = parse_serve_line("invoke p1 search");
  REQUIRE((invoke && *invoke));
  CHECK((*invoke)->tool == "search");
  CHECK((*invoke)->args == "{}");
  auto at = parse_serve_line("state-at p1 42");
  REQUIRE((at && *at));
  CHECK((*at)->version == 42);
  auto all = parse_serve_line("status");
  REQUIRE((all && *all));
  CHECK((*all)->what == kind::status);
  CHECK((*all)->id.empty());
  auto quit = parse_serve_line("quit now");
  REQUIRE((quit && *quit));
  CHECK((*quit)->what == kind::quit);
}

TEST_CASE("a blank serve line is skipped and a bad one names the problem",
          "[unit][hangar][serve]") {
  auto blank = parse_serve_line(" \t ");
  REQUIRE(blank);
  CHECK(!*blank);
  auto check_bad = [](const std::string& line, const std::string& says) {
    INFO(line);
    auto r = parse_serve_line(line);
    REQUIRE(!r);
    CHECK(r.error().code == cairn::errc::invalid_argument);
    CHECK_THAT(r.error().message, Catch::Contains(says));
  };
  check_bad("register p2", "register ID MODE");
  check_bad("register p2 teleport", "unknown mode 'teleport'");
  check_bad("state-at p1 one", "VERSION must be a number, not 'one'");
  check_bad("state-at p1 1x", "VERSION must be a number");
  check_bad("start", "commands:");
  check_bad("frobnicate p1", "commands:");
}
