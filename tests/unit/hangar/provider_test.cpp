// The provider aggregate through given/when/then: one test per cell of the
// transition table in docs/hangar.md, then health counters and rejections.

#include <catch2/catch.hpp>

#include "cairn/runtime/testkit.hpp"
#include "fixtures.hpp"

using namespace hangar;
using namespace hangar_test;
using kit = cairn::testkit::given_when_then<provider>;
using ps = provider_state;

namespace {

record_start_result start_ok(std::int64_t now_ns) {
  record_start_result r;
  r.ok = true;
  r.tools_count = 5;
  r.duration_ms = 250;
  r.tags.push_back("math");
  r.now_ns = now_ns;
  return r;
}

record_start_result start_failed(std::int64_t now_ns) {
  return record_start_result{false, 0, 30, {}, "exec failed", now_ns};
}

record_health_probe probe_failed(std::int64_t now_ns) {
  return record_health_probe{false, 5, "no pong", now_ns};
}

invoke_tool call(const std::string& correlation_id, std::int64_t now_ns) {
  return invoke_tool{"add", "{\"a\":1}", correlation_id, 30000, now_ns};
}

record_invocation_result call_failed(const std::string& correlation_id, error_type type,
                                     std::int64_t now_ns) {
  return record_invocation_result{correlation_id, false, 10, 0, "boom", type, now_ns};
}

record_invocation_result call_ok(const std::string& correlation_id, std::int64_t now_ns) {
  return record_invocation_result{correlation_id,          true,  10, 42, "",
                                  error_type::application, now_ns};
}

} // namespace

// -- the transition table, cell by cell ---------------------------------------------------

TEST_CASE("cold -> initializing: start", "[unit][hangar][provider]") {
  kit t{{math_registered()}};
  auto d = t.when(start_provider{sec(10), 0});
  REQUIRE(d);
  require_state_changes(*d, {{ps::cold, ps::initializing}});
  CHECK(t.state().status == ps::initializing);
  CHECK(t.state().last_state_change_ns == sec(10));
}

TEST_CASE("initializing -> ready: start succeeded", "[unit][hangar][provider]") {
  kit t{{math_registered(), moved(ps::cold, ps::initializing, sec(1)),
         provider_start_failed{1, "first try", sec(1)}, moved(ps::initializing, ps::dead, sec(1)),
         moved(ps::dead, ps::initializing, sec(3))}};
  REQUIRE(t.state().consecutive_failures == 1);
  auto d = t.when(start_ok(sec(4)));
  REQUIRE(d);
  require_state_changes(*d, {{ps::initializing, ps::ready}});
  const auto& started = only<provider_started>(*d);
  CHECK(started.tools_count == 5);
  CHECK(started.startup_ms == 250);
  CHECK(started.tags == std::vector<std::string>{"math"});
  CHECK(t.state().status == ps::ready);
  CHECK(t.state().tools_count == 5);
  CHECK(t.state().consecutive_failures == 0); // a successful start resets the streak
  CHECK(t.state().total_failures == 1);
  CHECK(t.state().last_used_ns == sec(4)); // the idle clock starts at ready
}

TEST_CASE("initializing -> degraded: start failed, consecutive >= max",
          "[unit][hangar][provider]") {
  kit t{{math_registered(2), moved(ps::cold, ps::initializing, sec(1)),
         provider_start_failed{1, "first", sec(1)}, moved(ps::initializing, ps::dead, sec(1)),
         moved(ps::dead, ps::initializing, sec(2))}};
  auto d = t.when(start_failed(sec(3)));
  REQUIRE(d);
  require_state_changes(*d, {{ps::initializing, ps::degraded}});
  CHECK(only<provider_start_failed>(*d).consecutive_failures == 2);
  const auto& deg = only<provider_degraded>(*d);
  CHECK(deg.consecutive_failures == 2);
  CHECK(deg.total_failures == 2);
  CHECK(deg.reason == "start_failed");
  CHECK(t.state().status == ps::degraded);
  CHECK(t.state().last_error == "exec failed");
  CHECK(t.state().last_failure_ns == sec(3));
}

TEST_CASE("initializing -> dead: start failed, below max", "[unit][hangar][provider]") {
  kit t{{math_registered(), moved(ps::cold, ps::initializing, sec(1))}};
  auto d = t.when(start_failed(sec(2)));
  REQUIRE(d);
  require_state_changes(*d, {{ps::initializing, ps::dead}});
  CHECK(only<provider_start_failed>(*d).consecutive_failures == 1);
  CHECK_FALSE(has<provider_degraded>(*d));
  CHECK(t.state().status == ps::dead);
  CHECK(t.state().consecutive_failures == 1);
  CHECK(t.state().total_failures == 1);
}

TEST_CASE("ready -> cold: idle TTL, not a failure", "[unit][hangar][provider]") {
  kit t{ready_history()}; // ready at 2 s, idle_ttl_s 300
  REQUIRE(t.when(call("c1", sec(10))));
  REQUIRE(t.when(call_ok("c1", sec(11))));
  auto early = t.when(detect_idle{sec(11 + 299)});
  REQUIRE(early);
  CHECK(early->empty());
  auto d = t.when(detect_idle{sec(11 + 300)});
  REQUIRE(d);
  require_state_changes(*d, {{ps::ready, ps::cold}});
  const auto& idle = only<provider_idle_detected>(*d);
  CHECK(idle.idle_s == 300);
  CHECK(idle.last_used_at_ns == sec(11));
  CHECK(only<provider_stopped>(*d).reason == "idle");
  CHECK(t.state().status == ps::cold);
  CHECK(t.state().total_failures == 0);
  CHECK(t.state().consecutive_failures == 0);
}

TEST_CASE("ready -> cold: stop", "[unit][hangar][provider]") {
  kit t{ready_history()};
  auto d = t.when(stop_provider{"manual", sec(5)});
  REQUIRE(d);
  require_state_changes(*d, {{ps::ready, ps::cold}});
  CHECK(only<provider_stopped>(*d).reason == "manual");
  CHECK(t.state().status == ps::cold);
}

TEST_CASE("ready -> degraded: health failures >= max", "[unit][hangar][provider]") {
  kit t{ready_history()};
  auto first = t.when(probe_failed(sec(10)));
  REQUIRE(first);
  require_state_changes(*first, {});
  CHECK(only<health_check_failed>(*first).consecutive_failures == 1);
  REQUIRE(t.when(probe_failed(sec(20))));
  auto d = t.when(probe_failed(sec(30)));
  REQUIRE(d);
  require_state_changes(*d, {{ps::ready, ps::degraded}});
  CHECK(only<health_check_failed>(*d).consecutive_failures == 3);
  CHECK(only<provider_degraded>(*d).reason == "health_check_failed");
  CHECK(t.state().status == ps::degraded);
  CHECK(t.state().consecutive_failures == 3);
  CHECK(t.state().last_state_change_ns == sec(30));
}

TEST_CASE("ready -> degraded: transport failures and timeouts of calls count as consecutive",
          "[unit][hangar][provider]") {
  kit t{ready_history(2)};
  REQUIRE(t.when(call("c1", sec(3))));
  REQUIRE(t.when(call("c2", sec(3))));
  REQUIRE(t.when(call_failed("c1", error_type::transport, sec(4))));
  CHECK(t.state().status == ps::ready);
  auto d = t.when(call_failed("c2", error_type::timeout, sec(5)));
  REQUIRE(d);
  require_state_changes(*d, {{ps::ready, ps::degraded}});
  CHECK(only<provider_degraded>(*d).reason == "invocation_failed");
  CHECK(t.state().pending.empty());
}

TEST_CASE("ready -> dead: transport died", "[unit][hangar][provider]") {
  kit t{ready_history()};
  auto d = t.when(record_transport_died{"exit code 137", sec(9)});
  REQUIRE(d);
  require_state_changes(*d, {{ps::ready, ps::dead}});
  CHECK(only<provider_transport_died>(*d).consecutive_failures == 1);
  CHECK(t.state().status == ps::dead);
  CHECK(t.state().last_error == "exit code 137");
}

TEST_CASE("degraded -> cold: stop", "[unit][hangar][provider]") {
  kit t{with(ready_history(1),
             {health_check_failed{1, "x", sec(5)}, provider_degraded{1, 1, "health_check_failed"},
              moved(ps::ready, ps::degraded, sec(5))})};
  auto d = t.when(stop_provider{"max_retries_exceeded", sec(6)});
  REQUIRE(d);
  require_state_changes(*d, {{ps::degraded, ps::cold}});
  CHECK(t.state().status == ps::cold);
  CHECK(t.state().consecutive_failures == 1); // a stop is not a success
}

TEST_CASE("degraded -> initializing: retry after backoff", "[unit][hangar][provider]") {
  // Degraded at 100 s after 3 consecutive failures: backoff min(60, 2^3) = 8 s.
  kit t{with(ready_history(),
             {health_check_failed{1, "x", sec(80)}, health_check_failed{2, "x", sec(90)},
              health_check_failed{3, "x", sec(100)}, provider_degraded{3, 3, "health_check_failed"},
              moved(ps::ready, ps::degraded, sec(100))})};
  CHECK(provider::retry_at_ns(t.state(), 0) == sec(108));
  auto early = t.when(start_provider{sec(107), 0});
  REQUIRE_FALSE(early);
  CHECK(early.error().reason == "backoff_not_elapsed");
  // +10 % jitter stretches the backoff to 8.8 s.
  CHECK(t.when(start_provider{sec(108), 100}).error().reason == "backoff_not_elapsed");
  auto d = t.when(start_provider{sec(108), 0});
  REQUIRE(d);
  require_state_changes(*d, {{ps::degraded, ps::initializing}});
  CHECK(t.state().status == ps::initializing);
}

TEST_CASE("dead -> initializing: retry", "[unit][hangar][provider]") {
  kit t{{math_registered(), moved(ps::cold, ps::initializing, sec(1)),
         provider_start_failed{1, "x", sec(2)}, moved(ps::initializing, ps::dead, sec(2))}};
  auto d = t.when(start_provider{sec(2), 0}); // no backoff from dead
  REQUIRE(d);
  require_state_changes(*d, {{ps::dead, ps::initializing}});
}

TEST_CASE("dead -> degraded: failures >= max", "[unit][hangar][provider]") {
  SECTION("the transport death that reaches max moves on to degraded") {
    kit t{with(ready_history(2), {health_check_failed{1, "slow", sec(5)}})};
    auto d = t.when(record_transport_died{"gone", sec(6)});
    REQUIRE(d);
    require_state_changes(*d, {{ps::ready, ps::dead}, {ps::dead, ps::degraded}});
    CHECK(only<provider_degraded>(*d).reason == "transport_died");
    CHECK(t.state().status == ps::degraded);
  }
  SECTION("a late call failure while dead that reaches max") {
    kit t{ready_history(2)};
    REQUIRE(t.when(call("c1", sec(3))));
    REQUIRE(t.when(record_transport_died{"gone", sec(4)}));
    REQUIRE(t.state().status == ps::dead);
    auto d = t.when(call_failed("c1", error_type::transport, sec(5)));
    REQUIRE(d);
    require_state_changes(*d, {{ps::dead, ps::degraded}});
    CHECK(t.state().status == ps::degraded);
  }
}

TEST_CASE("moves outside the table are rejected", "[unit][hangar][provider]") {
  SECTION("start while initializing or ready") {
    kit t{{math_registered(), moved(ps::cold, ps::initializing, sec(1))}};
    CHECK(t.when(start_provider{sec(2), 0}).error().reason == "already_running");
    kit r{ready_history()};
    CHECK(r.when(start_provider{sec(3), 0}).error().reason == "already_running");
  }
  SECTION("stop while cold, initializing or dead") {
    kit t{{math_registered()}};
    CHECK(t.when(stop_provider{"manual", sec(1)}).error().reason == "not_running");
    REQUIRE(t.when(start_provider{sec(1), 0}));
    CHECK(t.when(stop_provider{"manual", sec(1)}).error().reason == "still_initializing");
    REQUIRE(t.when(start_failed(sec(2))));
    REQUIRE(t.state().status == ps::dead);
    CHECK(t.when(stop_provider{"manual", sec(3)}).error().reason == "not_running");
  }
  SECTION("a start result outside initializing") {
    kit t{ready_history()};
    CHECK(t.when(start_ok(sec(3))).error().reason == "not_initializing");
  }
  SECTION("a health probe or a transport death outside ready") {
    kit t{{math_registered()}};
    CHECK(t.when(probe_failed(sec(1))).error().reason == "not_ready");
    CHECK(t.when(record_transport_died{"x", sec(1)}).error().reason == "not_ready");
  }
  SECTION("a stop needs a reason") {
    kit t{ready_history()};
    CHECK(t.when(stop_provider{"", sec(3)}).error().reason == "missing_reason");
  }
  SECTION("jitter beyond 10 %") {
    kit t{{math_registered()}};
    CHECK(t.when(start_provider{sec(1), 101}).error().reason == "jitter_out_of_range");
    CHECK(t.when(start_provider{sec(1), -101}).error().reason == "jitter_out_of_range");
  }
}

// -- health counters ----------------------------------------------------------------------

TEST_CASE("an application error counts in total_failures only", "[unit][hangar][provider]") {
  kit t{ready_history(1)};
  REQUIRE(t.when(call("c1", sec(3))));
  auto d = t.when(call_failed("c1", error_type::application, sec(4)));
  REQUIRE(d);
  require_state_changes(*d, {}); // max 1, yet still ready
  CHECK(only<tool_invocation_failed>(*d).type == error_type::application);
  CHECK(t.state().total_failures == 1);
  CHECK(t.state().consecutive_failures == 0);
  CHECK(t.state().last_error == "boom");
  CHECK(t.state().status == ps::ready);
}

TEST_CASE("any success resets consecutive failures but not total_failures",
          "[unit][hangar][provider]") {
  kit t{ready_history()};
  REQUIRE(t.when(probe_failed(sec(10))));
  REQUIRE(t.when(probe_failed(sec(20))));
  REQUIRE(t.when(record_health_probe{true, 3, "", sec(30)}));
  CHECK(t.state().consecutive_failures == 0);
  CHECK(t.state().last_success_ns == sec(30));
  REQUIRE(t.when(call("c1", sec(31))));
  REQUIRE(t.when(call_failed("c1", error_type::timeout, sec(32))));
  REQUIRE(t.when(call("c2", sec(33))));
  REQUIRE(t.when(call_ok("c2", sec(34))));
  CHECK(t.state().consecutive_failures == 0);
  CHECK(t.state().total_failures == 3);
  CHECK(t.state().total_invocations == 2);
  CHECK(t.state().last_failure_ns == sec(32));
}

TEST_CASE("detect_idle does nothing with calls in flight or outside ready",
          "[unit][hangar][provider]") {
  kit t{ready_history()};
  REQUIRE(t.when(call("c1", sec(3))));
  auto busy = t.when(detect_idle{sec(10000)});
  REQUIRE(busy);
  CHECK(busy->empty());
  kit cold{{math_registered()}};
  auto d = cold.when(detect_idle{sec(10000)});
  REQUIRE(d);
  CHECK(d->empty());
}

TEST_CASE("invocations: requested, then completed or failed by correlation id",
          "[unit][hangar][provider]") {
  kit t{ready_history()};
  auto d = t.when(call("c1", sec(3)));
  REQUIRE(d);
  const auto& req = only<tool_invocation_requested>(*d);
  CHECK(req.tool == "add");
  CHECK(req.arguments == "{\"a\":1}");
  CHECK(req.timeout_ms == 30000);
  CHECK(t.state().pending.count("c1") == 1);
  CHECK(t.when(call("c1", sec(3))).error().reason == "duplicate_correlation_id");
  auto done = t.when(call_ok("c1", sec(4)));
  REQUIRE(done);
  CHECK(only<tool_invocation_completed>(*done).result_bytes == 42);
  CHECK(t.state().pending.empty());
  CHECK(t.when(call_ok("c1", sec(5))).error().reason == "unknown_correlation_id");
}

TEST_CASE("a stop abandons calls in flight", "[unit][hangar][provider]") {
  kit t{ready_history()};
  REQUIRE(t.when(call("c1", sec(3))));
  REQUIRE(t.when(stop_provider{"manual", sec(4)}));
  CHECK(t.state().pending.empty());
  CHECK(t.when(call_ok("c1", sec(5))).error().reason == "unknown_correlation_id");
}

TEST_CASE("retry backoff is min(60, 2^n x (1 + jitter)) seconds", "[unit][hangar][provider]") {
  CHECK(retry_backoff_ns(0, 0) == sec(1));
  CHECK(retry_backoff_ns(3, 0) == sec(8));
  CHECK(retry_backoff_ns(5, 0) == sec(32));
  CHECK(retry_backoff_ns(6, 0) == sec(60));
  CHECK(retry_backoff_ns(40, 0) == sec(60));
  CHECK(retry_backoff_ns(3, 100) == sec(8) + sec(8) / 10);
  CHECK(retry_backoff_ns(3, -100) == sec(8) - sec(8) / 10);
  CHECK(retry_backoff_ns(6, 100) == sec(60)); // capped after the jitter
}

// -- rejections -------------------------------------------------------------------------------

TEST_CASE("invoking a tool on a provider that is not ready starts it, except inside a backoff",
          "[unit][hangar][provider]") {
  // on_demand_test.cpp has the details; here, which states start and which refuse.
  kit t{{math_registered()}};
  auto cold = t.when(call("c1", sec(1)));
  REQUIRE(cold);
  require_state_changes(*cold, {{ps::cold, ps::initializing}});
  auto initializing = t.when(call("c2", sec(1)));
  REQUIRE(initializing);
  require_state_changes(*initializing, {}); // waits for the start under way
  REQUIRE(t.when(start_failed(sec(2))));
  auto dead = t.when(call("c3", sec(2)));
  REQUIRE(dead);
  require_state_changes(*dead, {{ps::dead, ps::initializing}});
  kit degraded{with(ready_history(1), {health_check_failed{1, "x", sec(5)},
                                       provider_degraded{1, 1, "health_check_failed"},
                                       moved(ps::ready, ps::degraded, sec(5))})};
  CHECK(degraded.when(call("c1", sec(6))).error().reason == "backoff_not_elapsed");
  CHECK(degraded.state().total_invocations == 0);
}

TEST_CASE("invalid invocations are rejected", "[unit][hangar][provider]") {
  kit t{ready_history()};
  CHECK(t.when(invoke_tool{"", "", "c1", 1000, sec(3)}).error().reason == "missing_tool");
  CHECK(t.when(invoke_tool{"add", "", "", 1000, sec(3)}).error().reason
        == "invalid_correlation_id");
  CHECK(t.when(invoke_tool{"add", "", "has space", 1000, sec(3)}).error().reason
        == "invalid_correlation_id");
  CHECK(t.when(invoke_tool{"add", "", "c1", 0, sec(3)}).error().reason == "timeout_out_of_range");
  CHECK(t.when(invoke_tool{"add", "", "c1", 600001, sec(3)}).error().reason
        == "timeout_out_of_range");
  REQUIRE(t.when(call("c1", sec(3))));
  CHECK(t.when(record_invocation_result{"c1", false, 1, 0, "x", static_cast<error_type>(9), sec(4)})
          .error()
          .reason
        == "invalid_error_type");
}

TEST_CASE("invalid provider ids are rejected", "[unit][hangar][provider]") {
  auto reg = [](std::string id) {
    return register_provider{std::move(id), "test", provider_mode::subprocess, math_config(), {}};
  };
  kit t;
  CHECK(t.when(reg("")).error().reason == "invalid_provider_id");
  CHECK(t.when(reg(std::string(65, 'a'))).error().reason == "invalid_provider_id");
  CHECK(t.when(reg("math/1")).error().reason == "invalid_provider_id");
  CHECK(t.when(reg("math 1")).error().reason == "invalid_provider_id");
  CHECK(t.when(reg(std::string(64, 'a'))));
  CHECK(is_valid_id("A-z_09"));
}

TEST_CASE("out-of-range options are rejected", "[unit][hangar][provider]") {
  auto reg = [](std::uint32_t idle, std::uint32_t health, std::uint32_t max) {
    return register_provider{"math", "test", provider_mode::subprocess, math_config(),
                             provider_options{idle, health, max}};
  };
  kit t;
  CHECK(t.when(reg(0, 60, 3)).error().reason == "idle_ttl_out_of_range");
  CHECK(t.when(reg(86401, 60, 3)).error().reason == "idle_ttl_out_of_range");
  CHECK(t.when(reg(300, 4, 3)).error().reason == "health_check_interval_out_of_range");
  CHECK(t.when(reg(300, 3601, 3)).error().reason == "health_check_interval_out_of_range");
  CHECK(t.when(reg(300, 60, 0)).error().reason == "max_consecutive_failures_out_of_range");
  CHECK(t.history().empty());
  REQUIRE(t.when(reg(1, 5, 1)));
  CHECK(t.when(update_provider{math_config(), provider_options{86401, 60, 3}}).error().reason
        == "idle_ttl_out_of_range");
  CHECK(t.when(update_provider{math_config(), provider_options{86400, 3600, 3}}));
}

TEST_CASE("defaults: idle 300 s, health every 60 s, degraded after 3", "[unit][hangar][provider]") {
  provider_options o;
  CHECK(o.idle_ttl_s == 300);
  CHECK(o.health_check_interval_s == 60);
  CHECK(o.max_consecutive_failures == 3);
  CHECK(invoke_tool{}.timeout_ms == 30000);
}

TEST_CASE("each mode needs its config", "[unit][hangar][provider]") {
  kit t;
  auto reg = [](provider_mode m, provider_config c) {
    return register_provider{"p1", "test", m, std::move(c), {}};
  };
  CHECK(t.when(reg(provider_mode::subprocess, {})).error().reason == "missing_command");
  CHECK(t.when(reg(provider_mode::docker, {})).error().reason == "missing_command");
  CHECK(t.when(reg(provider_mode::remote, {})).error().reason == "missing_endpoint");
  provider_config bad_group;
  bad_group.endpoint = "not a group";
  CHECK(t.when(reg(provider_mode::group, bad_group)).error().reason == "invalid_group_id");
  CHECK(t.when(reg(static_cast<provider_mode>(7), math_config())).error().reason == "invalid_mode");
  provider_config remote;
  remote.endpoint = "http://localhost:9000/mcp";
  REQUIRE(t.when(reg(provider_mode::remote, remote)));
  CHECK(t.state().mode == provider_mode::remote);
}

TEST_CASE("duplicate registration is rejected", "[unit][hangar][provider]") {
  kit t{{math_registered()}};
  auto d = t.when(register_provider{"math", "api", provider_mode::subprocess, math_config(), {}});
  REQUIRE_FALSE(d);
  CHECK(d.error().reason == "already_registered");
}

TEST_CASE("commands before registration are rejected", "[unit][hangar][provider]") {
  kit t;
  CHECK(t.when(start_provider{sec(1), 0}).error().reason == "not_registered");
  CHECK(t.when(detect_idle{sec(1)}).error().reason == "not_registered");
  CHECK(t.when(deregister_provider{}).error().reason == "not_registered");
}

TEST_CASE("an update replaces config and options; the same values emit nothing",
          "[unit][hangar][provider]") {
  kit t{ready_history()};
  auto same = t.when(update_provider{math_config(), provider_options{}});
  REQUIRE(same);
  CHECK(same->empty());
  provider_config c = math_config();
  c.params["latency_ms"] = "5";
  auto d = t.when(update_provider{c, provider_options{600, 30, 5}});
  REQUIRE(d);
  CHECK(has<provider_updated>(*d));
  CHECK(t.state().config.params.at("latency_ms") == "5");
  CHECK(t.state().options.idle_ttl_s == 600);
  CHECK(t.state().status == ps::ready); // takes effect at the next start
}

TEST_CASE("deregistration only while nothing runs; the same id may register again",
          "[unit][hangar][provider]") {
  kit t{ready_history()};
  CHECK(t.when(deregister_provider{}).error().reason == "provider_running");
  REQUIRE(t.when(stop_provider{"manual", sec(5)}));
  REQUIRE(t.when(deregister_provider{}));
  CHECK_FALSE(t.state().registered);
  CHECK(t.when(start_provider{sec(6), 0}).error().reason == "not_registered");
  CHECK(t.when(register_provider{"other", "api", provider_mode::subprocess, math_config(), {}})
          .error()
          .reason
        == "provider_id_mismatch");
  REQUIRE(t.when(register_provider{"math", "api", provider_mode::subprocess, math_config(), {}}));
  CHECK(t.state().source == "api");
}

TEST_CASE("mode and error names parse back", "[unit][hangar][provider]") {
  CHECK(parse_provider_mode("docker") == provider_mode::docker);
  CHECK_FALSE(parse_provider_mode("kubernetes"));
  CHECK(parse_error_type("timeout") == error_type::timeout);
  CHECK(std::string{to_string(provider_state::degraded)} == "degraded");
}
