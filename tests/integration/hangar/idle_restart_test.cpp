// Issue 23 through the service and the simulated transport: a group whose
// members were stopped as idle keeps serving, because the first call to a
// cold provider starts it on demand and an idle stop is not a failure.

#include <chrono>
#include <map>
#include <mutex>
#include <string>

#include <catch2/catch.hpp>

#include "hangar/service.hpp"
#include "support/eventually.hpp"
#include "support/temp_dir.hpp"

using namespace std::chrono_literals;

namespace {

std::size_t count_events(hangar::service& s, const std::string& stream, const std::string& type) {
  auto events = s.runtime().store().read_stream(stream, 1, 100000);
  REQUIRE(events);
  std::size_t n = 0;
  for (const auto& e : *events)
    n += e.type == type ? 1 : 0;
  return n;
}

} // namespace

TEST_CASE("a group whose members were stopped as idle starts them on demand and keeps serving",
          "[integration][hangar]") {
  cairn::test::temp_dir dir;
  std::mutex mutex;
  std::map<std::string, bool> done; // request id -> ok
  hangar::service_options so;
  so.data_dir = dir.sub("hangar");
  so.speed = 100; // the 5 s health beat (which also detects idleness) is 50 ms of wall time
  so.timer_period = 10ms;
  so.durability = cairn::persistence::durability::no_sync;
  so.on_request_done = [&](const std::string& request, bool ok) {
    std::lock_guard lock{mutex};
    done[request] = ok;
  };
  auto started = hangar::service::start(so);
  REQUIRE(started);
  auto& s = **started;

  hangar::provider_options po;
  po.idle_ttl_s = 1;
  po.health_check_interval_s = 5;
  for (const char* id : {"a", "b"})
    REQUIRE(s.register_provider(id, hangar::provider_mode::remote, {{}, "https://x/mcp", {}}, po));
  hangar::group_options go;
  go.strategy = hangar::selection_strategy::round_robin;
  go.unhealthy_threshold = 1;
  go.circuit_failure_threshold = 2;
  REQUIRE(s.create_group("g", go));
  REQUIRE(s.add_member("g", "a"));
  REQUIRE(s.add_member("g", "b"));
  REQUIRE(s.start_provider("a"));
  REQUIRE(s.start_provider("b"));
  // From the live aggregates: the projection may lag behind them.
  auto both = [&](hangar::provider_state want) {
    for (const char* id : {"a", "b"}) {
      auto p = s.runtime().state<hangar::provider>(id);
      if (!p || p->status != want)
        return false;
    }
    return true;
  };
  REQUIRE(cairn::test::eventually([&] { return both(hangar::provider_state::ready); }, 30s));

  constexpr std::size_t per_round = 6;
  for (std::size_t round = 1; round <= 3; ++round) {
    CAPTURE(round);
    if (round > 1) {
      // Both providers were stopped as idle; the group still counts them.
      REQUIRE(cairn::test::eventually([&] { return both(hangar::provider_state::cold); }, 30s));
      // The group learned it (the bridge forwards the stops): both in rotation, both stopped.
      CHECK(cairn::test::eventually(
        [&] {
          auto g = s.groups()["g"];
          return g.stopped() == 2 && g.healthy() == 2 && g.state == "healthy"
                 && g.circuit == "closed";
        },
        30s));
    }
    for (std::size_t i = 0; i < per_round; ++i) {
      auto r = s.invoke_group("g", "add", "{\"a\":1,\"b\":2}");
      REQUIRE(r);
    }
    REQUIRE(cairn::test::eventually(
      [&] {
        std::lock_guard lock{mutex};
        return done.size() == per_round * round;
      },
      30s));
    std::lock_guard lock{mutex};
    for (const auto& [request, ok] : done) {
      CAPTURE(request);
      CHECK(ok);
    }
  }
  REQUIRE(s.settle(30s));
  auto g = s.groups()["g"];
  CHECK(g.state == "healthy");
  CHECK(g.circuit == "closed");
  CHECK(g.circuit_openings == 0);
  CHECK(g.healthy() == 2);
  CHECK(count_events(s, "provider_group-g", "group_circuit_opened") == 0);
  // The idle stops are events, and each was followed by a start on demand.
  for (const char* id : {"a", "b"}) {
    CAPTURE(id);
    const std::string stream = std::string{"provider-"} + id;
    CHECK(count_events(s, stream, "provider_idle_detected") >= 2);
    CHECK(count_events(s, stream, "provider_started") >= 3);
    CHECK(count_events(s, stream, "tool_invocation_failed") == 0);
  }
}
