#include "hangar/demo.hpp"

#include <signal.h>

#include <chrono>
#include <filesystem>
#include <iomanip>
#include <ostream>
#include <sstream>
#include <thread>

#include "hangar/service.hpp"
#include "hangar/what_if.hpp"

namespace hangar {

namespace {

using namespace std::chrono_literals;
using clock_type = std::chrono::steady_clock;

/// The shell provider: one answer line per request line (transport.hpp).
const std::vector<std::string> shell_provider = {
  "/bin/sh", "-c",
  "while read -r id t a; do case $t in tools) echo \"$id ok 2\";; *) echo \"$id ok $a\";; esac; "
  "done"};

std::string iso(std::int64_t ns) {
  auto secs = static_cast<std::time_t>(ns / 1'000'000'000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  std::ostringstream s;
  s << std::put_time(&tm, "%H:%M:%S") << '.' << std::setw(3) << std::setfill('0')
    << (ns / 1'000'000) % 1000;
  return s.str();
}

void print_table(service& svc, std::ostream& out, double t) {
  out << "--- t=" << std::fixed << std::setprecision(0) << t << " s ---------------------------\n";
  out << "  provider    mode        state         consec  failures  calls    ok\n";
  for (const auto& [id, p] : svc.providers())
    out << "  " << std::left << std::setw(11) << id << ' ' << std::setw(11) << p.mode << ' '
        << std::setw(13) << p.state << std::right << std::setw(7) << p.consecutive_failures
        << std::setw(10) << p.total_failures << std::setw(7) << p.invocations << std::setw(6)
        << p.completed << '\n';
  out << "  group       state         circuit     in rotation  stopped  openings\n";
  for (const auto& [id, g] : svc.groups())
    out << "  " << std::left << std::setw(11) << id << ' ' << std::setw(13) << g.state << ' '
        << std::setw(11) << g.circuit << std::right << std::setw(6) << g.healthy() << '/'
        << std::left << std::setw(6) << g.in_rotation.size() << std::right << std::setw(8)
        << g.stopped() << std::setw(10) << g.circuit_openings << '\n';
  out.flush();
}

cairn::result<void> check(cairn::result<void> r, const char* what) {
  if (!r)
    return cairn::fail(r.error().code, std::string{what} + ": " + r.error().to_string());
  return {};
}

cairn::result<void> set_up(service& svc) {
  provider_options fast;
  fast.health_check_interval_s = 10;
  provider_options idle_soon = fast;
  idle_soon.idle_ttl_s = 30;
  for (int i = 1; i <= 4; ++i) {
    if (auto ok = check(svc.register_provider("search-" + std::to_string(i), provider_mode::remote,
                                              {{}, "https://search.example/mcp", {}}, fast),
                        "register");
        !ok)
      return ok;
    if (auto ok = check(svc.register_provider("math-" + std::to_string(i), provider_mode::remote,
                                              {{}, "https://math.example/mcp", {}}, idle_soon),
                        "register");
        !ok)
      return ok;
  }
  if (auto ok = check(svc.register_provider("shell", provider_mode::subprocess,
                                            {shell_provider, {}, {}}, fast),
                      "register shell");
      !ok)
    return ok;
  group_options search;
  search.circuit_failure_threshold = 5;
  search.circuit_reset_timeout_s = 30;
  search.unhealthy_threshold = 3;
  group_options math;
  for (auto [name, opts] : {std::pair<const char*, group_options>{"search", search},
                            std::pair<const char*, group_options>{"math", math}}) {
    if (auto ok = check(svc.create_group(name, opts), "create group"); !ok)
      return ok;
    for (int i = 1; i <= 4; ++i)
      if (auto ok = check(svc.add_member(name, std::string{name} + "-" + std::to_string(i)),
                          "add member");
          !ok)
        return ok;
  }
  for (const char* prefix : {"search-", "math-"})
    for (int i = 1; i <= 4; ++i)
      if (auto ok = check(svc.start_provider(prefix + std::to_string(i)), "start"); !ok)
        return ok;
  return check(svc.start_provider("shell"), "start shell");
}

/// The live aggregates' states, in short, to compare across the restart.
std::map<std::string, std::string> live_states(service& svc,
                                               const std::map<std::string, provider_status>& ps,
                                               const std::map<std::string, group_status>& gs) {
  std::map<std::string, std::string> out;
  for (const auto& [id, p] : ps)
    if (auto s = svc.runtime().state<provider>(id))
      out[id] = std::string{to_string(s->status)} + "/" + std::to_string(s->consecutive_failures)
                + "/" + std::to_string(s->total_failures);
  for (const auto& [id, g] : gs)
    if (auto s = svc.runtime().state<provider_group>(id))
      out[id] = std::string{to_string(s->circuit.state)} + "/" + std::to_string(s->healthy());
  return out;
}

/// The math providers: how many are cold and the calls they ran.
struct math_view {
  int cold = 0;
  std::uint64_t calls = 0;
};

math_view math_now(service& svc) {
  math_view v;
  for (const auto& [id, p] : svc.providers())
    if (id.rfind("math-", 0) == 0) {
      v.cold += p.state == "cold" ? 1 : 0;
      v.calls += p.invocations;
    }
  return v;
}

} // namespace

cairn::result<demo_report> run_demo(const demo_options& opts, std::ostream& out) {
  std::error_code ec;
  std::filesystem::remove_all(opts.data_dir, ec);
  service_options so;
  so.data_dir = opts.data_dir;
  so.seed = opts.seed;
  so.speed = opts.speed;
  so.error_rate = 0.02;
  so.metrics_address = opts.metrics_address;
  so.record_commands = true; // for the what-if at the end
  auto started = service::start(so);
  if (!started)
    return tl::unexpected(started.error());
  auto& svc = **started;
  out << "hangar demo: seed " << opts.seed << ", data in " << opts.data_dir << ", clock x"
      << opts.speed << '\n';
  if (!opts.metrics_address.empty())
    out << "metrics: http://" << svc.runtime().metrics_endpoint() << "/metrics\n";
  if (auto ok = set_up(svc); !ok)
    return tl::unexpected(ok.error());

  demo_report report;
  std::mt19937_64 rng{opts.seed};
  auto t0 = clock_type::now();
  auto elapsed = [&] { return std::chrono::duration<double>(clock_type::now() - t0).count(); };
  bool outage_done = false, kill_done = false, burst_sent = false;
  constexpr std::uint64_t burst = 8;
  math_view before_burst;
  double next_table = 1;
  while (elapsed() < opts.seconds) {
    auto t = elapsed();
    // The late burst: math calls once its providers went idle (from 60 %, and
    // at 80 % whatever they are); each cold provider starts on demand.
    if (!burst_sent && t >= opts.seconds * 0.6) {
      before_burst = math_now(svc);
      if (before_burst.cold == 4 || t >= opts.seconds * 0.8) {
        report.idle_stopped |= before_burst.cold > 0;
        out << ">>> late burst: " << burst << " math calls; " << before_burst.cold
            << " of its 4 providers are cold (stopped as idle)\n";
        for (std::uint64_t i = 0; i < burst; ++i)
          (void)svc.invoke_group("math", "add", "{\"a\":" + std::to_string(i) + ",\"b\":2}");
        burst_sent = true;
        next_table = t; // show them starting
      }
    }
    if (burst_sent && !report.restarted_on_demand && before_burst.cold > 0
        && math_now(svc).calls >= before_burst.calls + burst) {
      report.restarted_on_demand = true;
      out << ">>> late burst served: " << burst << "/" << burst
          << " math calls ran; its idle providers started again on demand\n";
      next_table = t;
    }
    if (!outage_done && t >= opts.seconds * 0.3) {
      out << ">>> outage: every search provider fails its next 4 calls\n";
      for (int i = 1; i <= 4; ++i)
        (void)svc.inject_outage("search-" + std::to_string(i), 4);
      outage_done = true;
    }
    if (!kill_done && t >= opts.seconds * 0.7) {
      auto pid = svc.child_of("shell");
      out << ">>> killing the shell provider's process " << pid << '\n';
      if (pid > 0)
        ::kill(pid, SIGKILL);
      kill_done = true;
    }
    (void)svc.invoke_group("search", "search", "{\"q\":\"" + std::to_string(rng() % 1000) + "\"}");
    if (t < opts.seconds * 0.4)
      (void)svc.invoke_group("math", "add", "{\"a\":1,\"b\":2}");
    if (rng() % 8 == 0)
      (void)svc.invoke("shell", "echo", "hello");
    if (t >= next_table) {
      print_table(svc, out, t);
      next_table += 1;
    }
    std::this_thread::sleep_for(40ms);
  }
  if (auto ok = svc.settle(30s); !ok)
    return tl::unexpected(ok.error());
  auto before_providers = svc.providers();
  auto before_groups = svc.groups();
  for (const auto& [id, p] : before_providers) {
    report.invocations += p.invocations;
    report.idle_stopped |= id.rfind("math-", 0) == 0 && p.state == "cold";
  }
  if (burst_sent && !report.restarted_on_demand)
    out << ">>> late burst: only " << math_now(svc).calls - before_burst.calls << "/" << burst
        << " math calls ran\n";
  report.subprocess_death_detected = before_providers["shell"].state == "dead"
                                     || before_providers["shell"].state == "degraded"
                                     || before_providers["shell"].state == "initializing";
  auto live_before = live_states(svc, before_providers, before_groups);
  print_table(svc, out, elapsed());
  out << "\n>>> stopping the service, then starting a new one on " << opts.data_dir << '\n';
  started->reset();

  so.metrics_address.clear();
  auto again = service::start(so);
  if (!again)
    return tl::unexpected(again.error());
  auto& svc2 = **again;
  if (auto ok = svc2.settle(30s); !ok)
    return tl::unexpected(ok.error());
  auto live_after = live_states(svc2, before_providers, before_groups);
  report.restart_restored_everything = svc2.providers() == before_providers
                                       && svc2.groups() == before_groups
                                       && live_after == live_before;
  print_table(svc2, out, elapsed());
  out << "restored from the events: " << before_providers.size() << " providers and "
      << before_groups.size() << " groups, "
      << (report.restart_restored_everything ? "identical to before the restart"
                                             : "DIFFERENT from before the restart")
      << '\n';

  out << "\naudit trail of provider-shell (time, version, event, correlation id):\n";
  auto trail = svc2.runtime().store().read_stream("provider-shell", 1, 10000);
  // The death was detected if the transport reported it (a later call may
  // have started the shell again on demand).
  if (trail)
    for (const auto& e : *trail)
      report.subprocess_death_detected |= e.type == provider_transport_died::type_name;
  if (trail)
    for (const auto& e : *trail)
      if (e.type != tool_invocation_requested::type_name
          && e.type != tool_invocation_completed::type_name
          && e.type != health_check_passed::type_name)
        out << "  " << iso(e.timestamp_ns) << "  v" << std::left << std::setw(4) << e.version
            << std::setw(26) << e.type << std::right
            << (e.meta.correlation_id.empty() ? std::string{"-"} : e.meta.correlation_id) << '\n';
  out << "  (tool calls and passed health checks omitted: " << before_providers["shell"].invocations
      << " calls requested)\n";

  // The breaker's moves, from the group's own events.
  auto history = svc2.runtime().store().read_stream("provider_group-search", 1, 100000);
  out << "\nbreaker of group search (time, version, event, correlation id):\n";
  if (history)
    for (const auto& e : *history) {
      bool opened = e.type == group_circuit_opened::type_name;
      bool half = e.type == group_circuit_half_opened::type_name;
      bool closed = e.type == group_circuit_closed::type_name;
      if (!opened && !half && !closed)
        continue;
      report.circuit_opened |= opened;
      report.circuit_half_opened |= report.circuit_opened && half;
      report.circuit_closed_again |= report.circuit_half_opened && closed;
      out << "  " << iso(e.timestamp_ns) << "  v" << std::left << std::setw(5) << e.version
          << std::setw(26) << e.type << std::right << e.meta.correlation_id << '\n';
    }
  // Time travel: the search group as it stood when its circuit opened.
  if (history)
    for (const auto& e : *history)
      if (e.type == group_circuit_opened::type_name) {
        auto then = svc2.runtime().state_at<provider_group>("search", e.version);
        auto now = svc2.runtime().state<provider_group>("search");
        if (then && now)
          out << "\ntime travel: group search at version " << e.version << " ("
              << iso(e.timestamp_ns) << "): circuit " << to_string(then->circuit.state) << ", "
              << then->healthy() << "/" << then->members.size() << " in rotation; now (version "
              << history->back().version << "): circuit " << to_string(now->circuit.state) << ", "
              << now->healthy() << "/" << now->members.size() << " in rotation\n";
        break;
      }
  // What-if: the same recorded group commands under a stricter breaker.
  out << '\n';
  auto sum = print_what_if(svc2.runtime(), 3, out);
  if (!sum)
    return tl::unexpected(sum.error());
  report.what_if_differing = sum->differing;
  report.what_if_opened_earlier = sum->opened_earlier;
  out << "\nkey moments: circuit opened " << (report.circuit_opened ? "yes" : "no")
      << ", half-opened " << (report.circuit_half_opened ? "yes" : "no") << ", closed again "
      << (report.circuit_closed_again ? "yes" : "no") << "; idle providers stopped "
      << (report.idle_stopped ? "yes" : "no") << ", idle providers restarted on demand "
      << (report.restarted_on_demand ? "yes" : "no") << "; shell death detected "
      << (report.subprocess_death_detected ? "yes" : "no") << '\n';
  return report;
}

} // namespace hangar
