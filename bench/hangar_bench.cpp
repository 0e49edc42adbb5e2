// cairn-bench hangar: tool invocations end to end through the provider_group
// and provider aggregates and the hangar handlers, on the simulated transport
// at zero latency. One invocation is: select_member on the group, the
// selection handler's invoke_tool on the member, the transport handler's call
// and record_invocation_result, the bridge's record_member_result; its
// latency runs from the caller's invoke_group to that last command's answer.

#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <map>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <vector>

#include "bench.hpp"
#include "hangar/service.hpp"

namespace cairn::bench {

int hangar_main(const args& a) {
  auto total = static_cast<std::size_t>(a.number("--invocations", 20000));
  auto window = static_cast<std::size_t>(a.number("--inflight", 64));
  auto members = static_cast<int>(a.number("--providers", 8));
  auto durability = a.get("--durability", "sync");
  auto dir = scratch_dir(a, "hangar");

  std::mutex m;
  std::condition_variable cv;
  std::size_t in_flight = 0, done = 0, failed = 0;
  std::map<std::string, clock::time_point> started;
  std::vector<double> latencies_us;
  latencies_us.reserve(total);

  hangar::service_options so;
  so.data_dir = dir;
  so.durability = parse_durability(durability);
  so.on_request_done = [&](const std::string& request, bool ok) {
    auto now = clock::now();
    std::lock_guard lock{m};
    if (auto it = started.find(request); it != started.end()) {
      latencies_us.push_back(std::chrono::duration<double, std::micro>(now - it->second).count());
      started.erase(it);
    }
    failed += ok ? 0 : 1;
    ++done;
    --in_flight;
    cv.notify_all();
  };
  auto svc = hangar::service::start(so);
  if (!svc)
    throw std::runtime_error(svc.error().to_string());
  auto& s = **svc;
  hangar::group_options go;
  go.circuit_failure_threshold = 1000;
  if (auto ok = s.create_group("bench", go); !ok)
    throw std::runtime_error(ok.error().to_string());
  for (int i = 0; i < members; ++i) {
    auto id = "p" + std::to_string(i);
    if (!s.register_provider(id, hangar::provider_mode::remote, {{}, "sim://bench", {}})
        || !s.add_member("bench", id) || !s.start_provider(id))
      throw std::runtime_error("setting up provider " + id + " failed");
  }
  if (auto ok = s.settle(std::chrono::seconds{30}); !ok)
    throw std::runtime_error(ok.error().to_string());

  // Callers block until their selection is committed; 8 threads keep the window full.
  std::atomic<std::size_t> issued{0};
  auto t0 = clock::now();
  std::vector<std::thread> callers;
  for (int c = 0; c < 8; ++c)
    callers.emplace_back([&] {
      while (issued.fetch_add(1) < total) {
        {
          std::unique_lock lock{m};
          cv.wait(lock, [&] { return in_flight < window; });
          ++in_flight;
        }
        auto begun = clock::now();
        auto r = s.invoke_group("bench", "search", "{}");
        std::lock_guard lock{m};
        if (!r) {
          ++failed;
          ++done;
          --in_flight;
          cv.notify_all();
        } else {
          started.emplace(*r, begun);
        }
      }
    });
  for (auto& c : callers)
    c.join();
  {
    std::unique_lock lock{m};
    cv.wait_for(lock, std::chrono::seconds{60}, [&] { return done >= total; });
  }
  auto secs = seconds_since(t0);
  std::size_t finished = 0, failures = 0;
  double p50 = 0, p99 = 0;
  {
    std::lock_guard lock{m};
    finished = done;
    failures = failed;
    p50 = quantile(latencies_us, 0.50);
    p99 = quantile(latencies_us, 0.99);
  }
  svc->reset();
  remove_dir(dir);
  auto rate = static_cast<double>(finished) / secs;
  std::printf("%-10s %10s %9s %10s %14s %10s %10s %8s\n", "durability", "providers", "inflight",
              "calls", "calls/s", "p50 us", "p99 us", "failed");
  std::printf("%-10s %10d %9zu %10zu %14.0f %10.0f %10.0f %8zu\n", durability.c_str(), members,
              window, finished, rate, p50, p99, failures);
  char line[512];
  std::snprintf(line, sizeof line,
                "{\"bench\":\"hangar\",\"durability\":\"%s\",\"providers\":%d,\"inflight\":%zu,"
                "\"invocations\":%zu,\"invocations_per_s\":%.0f,\"p50_us\":%.0f,\"p99_us\":%.0f,"
                "\"failed\":%zu}",
                durability.c_str(), members, window, finished, rate, p50, p99, failures);
  print_json(line);
  return finished == total ? 0 : 1;
}

} // namespace cairn::bench
