// The hangar sample end to end: the demo scenario with a fixed seed, and the
// line-command server.

#include <sstream>

#include <catch2/catch.hpp>

#include "hangar/demo.hpp"
#include "support/temp_dir.hpp"

TEST_CASE("the hangar demo opens, half-opens and closes the circuit, restarts idle providers "
          "on demand, detects the killed subprocess and restores every state after a restart",
          "[integration][hangar][slow]") {
  cairn::test::temp_dir dir;
  hangar::demo_options o;
  o.seed = 42;
  o.data_dir = dir.sub("hangar");
  o.metrics_address.clear();
  std::ostringstream out;
  auto report = hangar::run_demo(o, out);
  INFO(out.str());
  REQUIRE(report);
  CHECK(report->circuit_opened);
  CHECK(report->circuit_half_opened);
  CHECK(report->circuit_closed_again);
  CHECK(report->idle_stopped);
  CHECK(report->restarted_on_demand);
  CHECK(out.str().find("idle providers restarted on demand yes") != std::string::npos);
  CHECK(report->subprocess_death_detected);
  CHECK(report->restart_restored_everything);
  CHECK(report->invocations > 100);
  CHECK(out.str().find("identical to before the restart") != std::string::npos);
  CHECK(out.str().find("provider_transport_died") != std::string::npos);
  // The what-if at the end: at a circuit threshold of 3 instead of 5, the
  // search group's breaker opens at an earlier recorded command.
  CHECK(report->what_if_differing >= 1);
  CHECK(report->what_if_opened_earlier >= 1);
  CHECK(out.str().find("group search   first difference") != std::string::npos);
}

TEST_CASE("hangar serve answers one line per command, with clear errors for bad input",
          "[integration][hangar]") {
  cairn::test::temp_dir dir;
  std::istringstream in{"register p1 subprocess /bin/sh -c \"exit\"\n"
                        "register bad/id remote https://x\n"
                        "register a.b remote https://x\n"
                        "register p2 teleport\n"
                        "status p1\n"
                        "history p1\n"
                        "state-at p1 1\n"
                        "state-at p1 one\n"
                        "invoke p1 search {}\n"
                        "stop p1\n"
                        "frobnicate\n"
                        "status nobody\n"
                        "quit\n"
                        "status p1\n"};
  std::ostringstream out;
  CHECK(hangar::serve(dir.sub("serve"), in, out) == 0);
  std::vector<std::string> lines;
  std::istringstream back{out.str()};
  for (std::string l; std::getline(back, l);)
    lines.push_back(l);
  REQUIRE(lines.size() == 13); // a greeting, one answer per command, nothing after quit
  CHECK(lines[0].rfind("ok hangar serving", 0) == 0);
  CHECK(lines[1] == "ok registered p1");
  CHECK(lines[2].rfind("error invalid_argument: invalid stream name", 0) == 0);
  CHECK(lines[3].find("invalid_provider_id") != std::string::npos);
  CHECK(lines[4].find("unknown mode 'teleport'") != std::string::npos);
  CHECK(lines[5].find("ok state=cold mode=subprocess") == 0);
  CHECK(lines[6] == "ok 1 events: v1=provider_registered");
  CHECK(lines[7].find("ok state=cold") == 0);
  CHECK(lines[8].find("VERSION must be a number") != std::string::npos);
  CHECK(lines[9].rfind("ok requested", 0) == 0);          // a cold provider starts on demand
  CHECK(lines[10].find("rejected") != std::string::npos); // stop while starting or after it failed
  CHECK(lines[11].rfind("error invalid_argument: commands:", 0) == 0);
  CHECK(lines[12].find("not_registered") != std::string::npos);
}
