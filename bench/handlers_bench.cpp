// cairn-bench handlers: subscribers under load.
//   live:    4 subscribers while events commit at a sustained rate (commands
//            of a ticker aggregate, --per-command events each); lag is
//            the handler's wall clock minus the event's timestamp, which the
//            store takes inside the transaction just before the commit (so it
//            includes the commit's fsync).
//   catchup: a new projection (and a plain subscriber) over a prefilled log.

#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <cereal/types/vector.hpp>

#include "account.hpp"
#include "bench.hpp"
#include "cairn/runtime/runtime.hpp"

namespace cairn::bench {

namespace {

using bank::account;
using namespace std::chrono_literals;

std::int64_t wall_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
           std::chrono::system_clock::now().time_since_epoch())
    .count();
}

struct tick {
  std::uint32_t count = 1;
  template <class Ar> void serialize(Ar& ar) { ar(count); }
};
struct ticked {
  static constexpr const char* type_name = "bench_ticked";
  std::uint64_t seq = 0;
  template <class Ar> void serialize(Ar& ar) { ar(seq); }
};

/// Emits `count` events per command: a steady event rate from few commands.
struct ticker {
  static constexpr const char* category = "ticker";
  struct state {
    std::uint64_t seq = 0;
    template <class Ar> void serialize(Ar& ar) { ar(seq); }
  };
  using command = std::variant<tick>;
  using event = std::variant<ticked>;
  static state initial() { return {}; }
  static decision<event> decide(const state& s, const command& c) {
    std::vector<event> out;
    for (std::uint32_t i = 0; i < std::get<tick>(c).count; ++i)
      out.push_back(ticked{s.seq + i + 1});
    return out;
  }
  static state evolve(state s, const event& e) {
    s.seq = std::get<ticked>(e).seq;
    return s;
  }
};

/// Lag samples of one subscriber, written from its own thread.
struct lag_samples {
  std::mutex m;
  std::vector<double> ms;
};

std::string live_case(const args& a) {
  auto rate = a.number("--rate", 50000);
  auto seconds = a.number("--seconds", 5);
  auto subscribers = static_cast<int>(a.number("--subscribers", 4));
  auto per_command = static_cast<std::uint32_t>(a.number("--per-command", 10));
  auto dir = scratch_dir(a, "handlers-live");
  runtime_options opts;
  opts.data_dir = dir;
  opts.durability = parse_durability(a.get("--durability", "sync"));
  auto rt = start_bank_runtime(opts);
  if (auto ok = rt->register_aggregate<ticker>(); !ok)
    throw std::runtime_error(ok.error().to_string());
  const std::size_t tickers = 1000;
  std::vector<std::unique_ptr<lag_samples>> lags;
  for (int s = 0; s < subscribers; ++s) {
    lags.push_back(std::make_unique<lag_samples>());
    auto* mine = lags.back().get();
    subscription_options so;
    so.start = start_position::end;
    auto ok = rt->subscribe<ticked>(
      "lag-" + std::to_string(s), {},
      [mine](const envelope<ticked>& e) {
        auto ms = static_cast<double>(wall_ns() - e.timestamp_ns) / 1e6;
        std::lock_guard lock{mine->m};
        mine->ms.push_back(ms);
        return result<void>{};
      },
      so);
    if (!ok)
      throw std::runtime_error(ok.error().to_string());
  }
  // Paced sender: commands due by the schedule go out, at most 8192 in flight.
  std::mutex m;
  std::condition_variable cv;
  std::size_t in_flight = 0;
  std::atomic<std::uint64_t> errors{0};
  auto commands_per_s = rate / per_command;
  auto total = static_cast<std::uint64_t>(commands_per_s * seconds);
  auto t0 = clock::now();
  for (std::uint64_t sent = 0; sent < total;) {
    auto due = static_cast<std::uint64_t>(seconds_since(t0) * commands_per_s);
    if (sent >= due) {
      std::this_thread::sleep_for(200us);
      continue;
    }
    for (; sent < std::min(due, total); ++sent) {
      {
        std::unique_lock lock{m};
        cv.wait(lock, [&] { return in_flight < 8192; });
        ++in_flight;
      }
      rt->send<ticker>(std::to_string(sent % tickers), tick{per_command}, {},
                       [&](result<outcome<ticker>> r) {
                         if (!r)
                           ++errors;
                         std::lock_guard lock{m};
                         --in_flight;
                         cv.notify_one();
                       });
    }
  }
  {
    std::unique_lock lock{m};
    cv.wait(lock, [&] { return in_flight == 0; });
  }
  auto achieved = static_cast<double>(total * per_command) / seconds_since(t0);
  auto last = rt->store().last_position();
  for (int s = 0; s < subscribers; ++s)
    if (!rt->wait_for("lag-" + std::to_string(s), last ? *last : 0, 60s))
      throw std::runtime_error("a subscriber did not catch up within 60 s");
  std::vector<double> all;
  for (auto& l : lags) {
    std::lock_guard lock{l->m};
    all.insert(all.end(), l->ms.begin(), l->ms.end());
  }
  auto seen = all.size();
  auto p50 = quantile(all, 0.50), p99 = quantile(all, 0.99), worst = all.empty() ? 0 : all.back();
  rt.reset();
  remove_dir(dir);
  std::printf("%-8s %11s %12.0f %12.0f %9zu %9.2f %9.2f %9.2f %7llu\n", "live",
              a.get("--durability", "sync").c_str(), rate, achieved, seen, p50, p99, worst,
              static_cast<unsigned long long>(errors.load()));
  char line[512];
  std::snprintf(line, sizeof line,
                "{\"bench\":\"handlers\",\"case\":\"live\",\"durability\":\"%s\","
                "\"subscribers\":%d,\"events_per_command\":%u,\"target_events_per_s\":%.0f,"
                "\"events_per_s\":%.0f,"
                "\"deliveries\":%zu,\"lag_p50_ms\":%.3f,\"lag_p99_ms\":%.3f,\"lag_max_ms\":%.3f,"
                "\"errors\":%llu}",
                a.get("--durability", "sync").c_str(), subscribers, per_command, rate, achieved,
                seen, p50, p99, worst, static_cast<unsigned long long>(errors.load()));
  return line;
}

std::vector<std::string> catchup_cases(const args& a) {
  auto n = static_cast<std::uint64_t>(a.number("--events", 1000000));
  auto dir = scratch_dir(a, "handlers-catchup");
  prefill_deposits(dir, n, "account-");
  std::vector<std::string> out;
  runtime_options opts;
  opts.data_dir = dir;
  auto rt = start_bank_runtime(opts);
  for (bool projection : {true, false}) {
    auto name = std::string{projection ? "count-projection" : "count-subscriber"};
    std::uint64_t count = 0;
    auto t0 = clock::now();
    result<void> ok;
    if (projection)
      ok = rt->project<account::event>(name, {},
                                       [&count](const envelope<account::event>&, read_model& m) {
                                         return m.put_as("events", ++count);
                                       });
    else
      ok = rt->subscribe<account::event>(name, {}, [&count](const envelope<account::event>&) {
        ++count;
        return result<void>{};
      });
    if (!ok)
      throw std::runtime_error(ok.error().to_string());
    if (!rt->wait_for(name, n, 600s))
      throw std::runtime_error(name + " did not catch up within 600 s");
    auto secs = seconds_since(t0);
    if (!rt->unsubscribe(name))
      throw std::runtime_error("unsubscribe failed");
    if (count != n)
      throw std::runtime_error(name + " saw " + std::to_string(count) + " events, not "
                               + std::to_string(n));
    auto rate = static_cast<double>(n) / secs;
    std::printf("%-8s %-18s %10llu %10.3f %12.0f\n", "catchup", name.c_str(),
                static_cast<unsigned long long>(n), secs, rate);
    char line[256];
    std::snprintf(line, sizeof line,
                  "{\"bench\":\"handlers\",\"case\":\"catchup\",\"handler\":\"%s\","
                  "\"events\":%llu,\"seconds\":%.3f,\"events_per_s\":%.0f}",
                  projection ? "projection" : "subscriber", static_cast<unsigned long long>(n),
                  secs, rate);
    out.emplace_back(line);
  }
  rt.reset();
  remove_dir(dir);
  return out;
}

} // namespace

int handlers_main(const args& a) {
  std::vector<std::string> json;
  auto which = a.get("--case", "all");
  if (which == "all" || which == "live") {
    std::printf("%-8s %11s %12s %12s %9s %9s %9s %9s %7s\n", "case", "durability", "target/s",
                "events/s", "seen", "p50 ms", "p99 ms", "max ms", "errors");
    json.push_back(live_case(a));
  }
  if (which == "all" || which == "catchup") {
    std::printf("%-8s %-18s %10s %10s %12s\n", "case", "handler", "events", "seconds", "events/s");
    auto lines = catchup_cases(a);
    json.insert(json.end(), lines.begin(), lines.end());
  }
  for (const auto& line : json)
    print_json(line);
  return 0;
}

} // namespace cairn::bench
