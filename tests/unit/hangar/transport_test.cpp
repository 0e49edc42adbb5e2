// The hangar's transports: the simulated one is deterministic per seed; the
// subprocess one really runs a child, talks to it and notices its death.

#include <signal.h>

#include <atomic>
#include <chrono>
#include <thread>

#include <catch2/catch.hpp>

#include "hangar/transport.hpp"

using namespace std::chrono_literals;

namespace {

/// A provider as a shell loop: answers one line per request line.
std::vector<std::string> script_provider() {
  return {"/bin/sh", "-c",
          "while read -r id t a; do case $t in tools) echo \"$id ok 2\";; "
          "slow) sleep 1; echo \"$id ok late\";; fail) echo \"$id error boom\";; "
          "*) echo \"$id ok $a\";; esac; done"};
}

} // namespace

TEST_CASE("the simulated transport gives the same outcomes for the same seed",
          "[unit][hangar][transport]") {
  auto run = [](std::uint64_t seed) {
    hangar::simulated_options o;
    o.seed = seed;
    o.failure_rate = 0.2;
    o.error_rate = 0.1;
    hangar::simulated_transport t{o};
    REQUIRE(t.start().ok);
    std::string trace;
    for (int i = 0; i < 200; ++i) {
      auto r = t.invoke("search", "q", 1s);
      trace += r.ok ? 'o' : r.error_type == "transport" ? 't' : 'a';
    }
    return trace;
  };
  auto a = run(7);
  CHECK(a == run(7));
  CHECK(a != run(8));
  CHECK(a.find('o') != std::string::npos);
  CHECK(a.find('t') != std::string::npos);
  CHECK(a.find('a') != std::string::npos);
}

TEST_CASE("scripted outages fail exactly their calls as transport failures",
          "[unit][hangar][transport]") {
  hangar::simulated_options o;
  o.outages.push_back({3, 6});
  hangar::simulated_transport t{o};
  REQUIRE(t.start().ok); // call 0
  std::string trace;
  for (int i = 1; i < 9; ++i)
    trace += t.probe().ok ? 'o' : 'x';
  CHECK(trace == "ooxxxooo");
  t.fail_next(2);
  CHECK_FALSE(t.invoke("x", "", 1s).ok);
  CHECK_FALSE(t.invoke("x", "", 1s).ok);
  CHECK(t.invoke("x", "", 1s).ok);
  t.stop();
  auto r = t.invoke("x", "", 1s);
  CHECK_FALSE(r.ok);
  CHECK(r.error_type == "transport");
}

TEST_CASE("the subprocess transport runs the child, calls it and reports its death",
          "[unit][hangar][transport]") {
  std::atomic<int> exits{0};
  hangar::subprocess_transport t{script_provider(), [&](int) { ++exits; }};
  auto started = t.start();
  INFO(started.error);
  REQUIRE(started.ok);
  CHECK(started.tools_count == 2);
  REQUIRE(t.running());
  auto r = t.invoke("echo", "hello", 2s);
  CHECK(r.ok);
  CHECK(r.result_bytes == 5);
  auto bad = t.invoke("fail", "", 2s);
  CHECK_FALSE(bad.ok);
  CHECK(bad.error_type == "application");
  CHECK(bad.error == "boom");
  auto slow = t.invoke("slow", "", 200ms);
  CHECK_FALSE(slow.ok);
  CHECK(slow.error_type == "timeout");
  // The late answer of "slow" arrives first and is not taken for this one's.
  auto next = t.invoke("echo", "fresh", 5s);
  CHECK(next.ok);
  CHECK(next.result_bytes == 5);
  CHECK(t.probe().ok);

  ::kill(t.pid(), SIGKILL);
  REQUIRE([&] {
    for (int i = 0; i < 500 && exits.load() == 0; ++i)
      std::this_thread::sleep_for(10ms);
    return exits.load() == 1;
  }());
  CHECK_FALSE(t.running());
  auto after = t.invoke("echo", "x", 1s);
  CHECK_FALSE(after.ok);
  CHECK(after.error_type == "transport");

  // It starts again; a stop is not reported as a death.
  REQUIRE(t.start().ok);
  t.stop();
  CHECK_FALSE(t.running());
  CHECK(exits.load() == 1);
}

TEST_CASE("a subprocess that cannot be started says why", "[unit][hangar][transport]") {
  hangar::subprocess_transport t{{"/nonexistent/provider"}, nullptr};
  auto r = t.start();
  CHECK_FALSE(r.ok);
  CHECK(r.error.find("cannot run /nonexistent/provider") != std::string::npos);
  hangar::subprocess_transport none{{}, nullptr};
  CHECK(none.start().error == "no command configured");
}
