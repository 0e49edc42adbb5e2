// cairn-bench e2e:  commands through the runtime's CAF-native form, with a
//                   window of commands in flight kept by driver actors; they
//                   send through a router, or with --via registry, to the
//                   registry's handle every time.
// cairn-bench bank: the bank workload through the public callback API.

#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include <caf/all.hpp>

#include "account.hpp"
#include "bench.hpp"
#include "cairn/actors/router.hpp"
#include "cairn/persistence/codec.hpp"
#include "cairn/persistence/event_store.hpp"
#include "cairn/runtime/runtime_caf.hpp"

namespace cairn::bench {

namespace {

using bank::account;

std::unique_ptr<runtime> start_runtime(const std::string& dir, persistence::durability d,
                                       unsigned threads, bool record = false) {
  runtime_options opts;
  opts.data_dir = dir;
  opts.durability = d;
  opts.worker_threads = threads;
  opts.record_commands = record;
  return start_bank_runtime(opts);
}

/// The account ids "0" to n-1.
std::vector<std::string> numbered_ids(std::size_t n) {
  std::vector<std::string> ids;
  ids.reserve(n);
  for (std::size_t i = 0; i < n; ++i)
    ids.push_back(std::to_string(i));
  return ids;
}

struct e2e_figures {
  double commands_per_s = 0;
  double p50_us = 0, p95_us = 0, p99_us = 0;
  double mean_batch = 0;
  std::uint64_t errors = 0;
};

/// Sends `total` deposits spread over `aggregates` ids (all to id 0 when 1),
/// keeping `inflight` outstanding; measures each command's latency. The
/// window is shared by up to 16 driver actors: one actor holding 1024
/// requests spends more on CAF's per-request bookkeeping (a linear map of
/// pending responses) than the runtime spends on a command. With a router,
/// an untimed warm-up first sends one deposit from each driver to each
/// aggregate, so the timed run measures routers that know the live actors,
/// as a long-running client's do.
e2e_figures run_e2e(runtime& rt, std::size_t aggregates, std::size_t total, std::size_t inflight,
                    bool via_router) {
  std::vector<actors::command_msg> ids;
  ids.reserve(aggregates);
  for (std::size_t i = 0; i < aggregates; ++i)
    ids.push_back(rt.make_command<account>(std::to_string(i), bank::deposit{1}));
  std::vector<double> latencies(total);
  std::atomic<std::uint64_t> errors{0};
  auto registry = rt.handle();
  // Driver d sends commands [first, last), `window` at a time: to random
  // aggregates, recording latencies, or in the warm-up (no `lat`) to each in turn.
  auto driver = [&](caf::event_based_actor* self, std::size_t first, std::size_t last,
                    std::size_t window, std::uint64_t seed, std::shared_ptr<actors::router> route,
                    std::vector<double>* lat) -> caf::behavior {
    struct progress {
      std::size_t next, done;
      std::mt19937_64 rng;
    };
    auto p = std::make_shared<progress>(progress{first, first, std::mt19937_64{seed}});
    // Recursion through a weak reference: the closure must not own itself.
    auto send_one = std::make_shared<std::function<void()>>();
    std::weak_ptr<std::function<void()>> again = send_one;
    auto* errs = &errors;
    *send_one = [=, &ids] {
      auto i = p->next++;
      auto start = clock::now();
      auto settle = [=](bool ok) {
        if (lat != nullptr)
          (*lat)[i] = std::chrono::duration<double, std::micro>(clock::now() - start).count();
        if (!ok)
          ++*errs;
        if (++p->done == last)
          self->quit();
        else if (p->next < last)
          if (auto f = again.lock())
            (*f)();
      };
      const auto& msg = lat != nullptr ? ids[p->rng() % ids.size()] : ids[(i - first) % ids.size()];
      if (route)
        route->send(self, msg, {}, [=](actors::reply_msg& r) { settle(r.ok()); });
      else
        self->request(registry, caf::infinite, actors::command_atom::value, msg)
          .then([=](actors::reply_msg& r) { settle(r.ok()); }, [=](caf::error&) { settle(false); });
    };
    self->attach_functor([send_one] {}); // keeps the closure alive as long as the driver
    for (std::size_t k = 0; k < window && p->next < last; ++k)
      (*send_one)();
    return {};
  };
  auto drivers = std::max<std::size_t>(1, std::min<std::size_t>({16, inflight, total}));
  std::vector<std::shared_ptr<actors::router>> routes(drivers);
  if (via_router)
    for (auto& r : routes)
      r = std::make_shared<actors::router>(registry);
  // Runs every driver over `n` commands and waits for them.
  auto run = [&](std::size_t n, std::vector<double>* lat) {
    caf::scoped_actor waiter{rt.system()};
    std::vector<caf::actor> running;
    for (std::size_t d = 0; d < drivers; ++d) {
      auto first = n * d / drivers, last = n * (d + 1) / drivers;
      auto window = inflight / drivers + (d < inflight % drivers ? 1 : 0);
      running.push_back(rt.system().spawn(driver, first, last, window, 42 + d, routes[d], lat));
    }
    for (auto& a : running)
      waiter->wait_for(a);
  };
  if (via_router)
    run(drivers * aggregates, nullptr); // each driver: every aggregate once
  errors = 0;
  auto [batches0, appends0] = rt.journal_stats();
  auto t0 = clock::now();
  run(total, &latencies);
  e2e_figures f;
  f.commands_per_s = static_cast<double>(total) / seconds_since(t0);
  f.p50_us = quantile(latencies, 0.50);
  f.p95_us = quantile(latencies, 0.95);
  f.p99_us = quantile(latencies, 0.99);
  auto [batches1, appends1] = rt.journal_stats();
  f.mean_batch = batches1 > batches0 ? static_cast<double>(appends1 - appends0)
                                         / static_cast<double>(batches1 - batches0)
                                     : 0;
  f.errors = errors.load();
  return f;
}

void print_e2e(const char* workload, const char* via, std::size_t aggregates, std::size_t total,
               std::size_t inflight, const std::string& durability, const e2e_figures& f) {
  std::printf("%-12s %-8s %8zu %8zu %8zu %-8s %12.0f %9.0f %9.0f %9.0f %8.1f %6llu\n", workload,
              via, aggregates, total, inflight, durability.c_str(), f.commands_per_s, f.p50_us,
              f.p95_us, f.p99_us, f.mean_batch, static_cast<unsigned long long>(f.errors));
}

std::string e2e_json(const char* bench, const char* workload, const char* via,
                     std::size_t aggregates, std::size_t total, std::size_t inflight,
                     const std::string& durability, const e2e_figures& f) {
  char line[512];
  std::snprintf(line, sizeof line,
                "{\"bench\":\"%s\",\"workload\":\"%s\",\"via\":\"%s\",\"aggregates\":%zu,"
                "\"commands\":%zu,"
                "\"inflight\":%zu,\"durability\":\"%s\",\"commands_per_s\":%.0f,\"p50_us\":%.0f,"
                "\"p95_us\":%.0f,\"p99_us\":%.0f,\"mean_batch\":%.1f,\"errors\":%llu}",
                bench, workload, via, aggregates, total, inflight, durability.c_str(),
                f.commands_per_s, f.p50_us, f.p95_us, f.p99_us, f.mean_batch,
                static_cast<unsigned long long>(f.errors));
  return line;
}

void print_header() {
  std::printf("%-12s %-8s %8s %8s %8s %-8s %12s %9s %9s %9s %8s %6s\n", "workload", "via", "aggs",
              "commands", "inflight", "durab.", "commands/s", "p50 us", "p95 us", "p99 us", "batch",
              "errors");
}

} // namespace

std::unique_ptr<runtime> start_bank_runtime(const runtime_options& opts) {
  auto rt = runtime::start(opts);
  if (!rt)
    throw std::runtime_error(rt.error().to_string());
  if (auto ok = (*rt)->register_aggregate<account>(); !ok)
    throw std::runtime_error(ok.error().to_string());
  return std::move(*rt);
}

void open_accounts(runtime& rt, const std::vector<std::string>& ids, std::size_t window) {
  std::mutex m;
  std::condition_variable cv;
  std::size_t outstanding = 0;
  std::string failure;
  for (const auto& id : ids) {
    {
      std::unique_lock lock{m};
      cv.wait(lock, [&] { return outstanding < window; });
      ++outstanding;
    }
    rt.send<account>(id, bank::open_account{"owner-" + id}, {}, [&](result<outcome<account>> r) {
      std::lock_guard g{m};
      if (!r && r.error().message != "already_open")
        failure = r.error().to_string();
      --outstanding;
      cv.notify_all();
    });
  }
  std::unique_lock lock{m};
  cv.wait(lock, [&] { return outstanding == 0; });
  if (!failure.empty())
    throw std::runtime_error("opening accounts: " + failure);
}

void prefill_deposits(const std::string& dir, std::uint64_t n, const std::string& stream_prefix) {
  persistence::store_options o;
  o.durability = persistence::durability::no_sync;
  auto store = persistence::open_store(dir, o);
  if (!store)
    throw std::runtime_error("prefill: " + store.error().to_string());
  std::string payload;
  persistence::encode_payload(bank::money_deposited{5}, payload);
  for (std::uint64_t done = 0; done < n;) {
    persistence::write_batch b;
    for (int i = 0; i < 10000 && done < n; ++i, ++done) {
      persistence::append_request r;
      r.stream = stream_prefix + std::to_string(done % 1000);
      r.events.push_back({bank::money_deposited::type_name, 1, payload, {}, {}});
      b.appends.push_back(std::move(r));
    }
    if (auto ok = (*store)->append_batch(b); !ok)
      throw std::runtime_error("prefill: " + ok.error().to_string());
  }
}

int e2e_main(const args& a) {
  auto durability = a.get("--durability", "sync");
  auto via = a.get("--via", "router");
  if (via != "router" && via != "registry")
    throw std::invalid_argument("--via must be router or registry, not " + via);
  struct workload {
    const char* name;
    std::size_t aggregates, commands, inflight;
  };
  std::vector<workload> cases;
  auto n = static_cast<std::size_t>(a.number("--commands", 200000));
  if (a.get("--aggregates", "").empty() && a.get("--inflight", "").empty()) {
    cases.push_back(workload{"uniform", 1000, n, 1024});
    cases.push_back(workload{"uniform", 1000, n, 64});
    cases.push_back(workload{"hot", 1, n, 1024});
  } else {
    auto aggs = static_cast<std::size_t>(a.number("--aggregates", 1000));
    cases.push_back(workload{aggs == 1 ? "hot" : "uniform", aggs, n,
                             static_cast<std::size_t>(a.number("--inflight", 1024))});
  }
  // --record off|on|both: record_commands (what-if replay); both runs each
  // case without, then with it, so the two meet the same stretch of the disk.
  auto record = a.get("--record", "off");
  if (record != "off" && record != "on" && record != "both")
    throw std::invalid_argument("--record must be off, on or both, not " + record);
  std::vector<bool> modes;
  if (record != "on")
    modes.push_back(false);
  if (record != "off")
    modes.push_back(true);
  print_header();
  std::vector<std::string> json;
  for (const auto& c : cases)
    for (bool rec : modes) {
      auto name = std::string{c.name} + (rec ? "+rec" : "");
      auto dir = scratch_dir(a, "e2e");
      {
        auto rt = start_runtime(dir, parse_durability(durability),
                                static_cast<unsigned>(a.number("--threads", 0)), rec);
        open_accounts(*rt, numbered_ids(c.aggregates));
        auto f = run_e2e(*rt, c.aggregates, c.commands, c.inflight, via == "router");
        print_e2e(name.c_str(), via.c_str(), c.aggregates, c.commands, c.inflight, durability, f);
        json.push_back(e2e_json("e2e", name.c_str(), via.c_str(), c.aggregates, c.commands,
                                c.inflight, durability, f));
        std::fflush(stdout);
      }
      remove_dir(dir);
    }
  for (const auto& line : json)
    print_json(line);
  return 0;
}

int bank_main(const args& a) {
  // The shape we run against other event-sourcing libraries: 1000 accounts,
  // 20 000 deposits, 1 / 16 / 64 in flight, durability sync.
  constexpr std::size_t accounts = 1000, deposits = 20000;
  auto durability = a.get("--durability", "sync");
  print_header();
  std::vector<std::string> json;
  for (std::size_t window : {1, 16, 64}) {
    auto dir = scratch_dir(a, "bank");
    {
      auto rt = start_runtime(dir, parse_durability(durability),
                              static_cast<unsigned>(a.number("--threads", 0)));
      open_accounts(*rt, numbered_ids(accounts), window);
      std::mutex m;
      std::condition_variable cv;
      std::size_t outstanding = 0;
      std::uint64_t errors = 0;
      std::vector<double> latencies;
      latencies.reserve(deposits);
      std::mt19937_64 rng{7};
      auto [b0, a0] = rt->journal_stats();
      auto t0 = clock::now();
      for (std::size_t i = 0; i < deposits; ++i) {
        std::unique_lock lock{m};
        cv.wait(lock, [&] { return outstanding < window; });
        ++outstanding;
        lock.unlock();
        auto start = clock::now();
        rt->send<account>(
          std::to_string(rng() % accounts), bank::deposit{10}, {},
          [&, start](result<outcome<account>> r) {
            auto us = std::chrono::duration<double, std::micro>(clock::now() - start).count();
            std::lock_guard g{m};
            latencies.push_back(us);
            errors += r ? 0 : 1;
            --outstanding;
            cv.notify_all();
          });
      }
      std::unique_lock lock{m};
      cv.wait(lock, [&] { return outstanding == 0; });
      e2e_figures f;
      f.commands_per_s = static_cast<double>(deposits) / seconds_since(t0);
      f.p50_us = quantile(latencies, 0.50);
      f.p95_us = quantile(latencies, 0.95);
      f.p99_us = quantile(latencies, 0.99);
      f.errors = errors;
      lock.unlock();
      auto [b1, a1] = rt->journal_stats();
      f.mean_batch = b1 > b0 ? static_cast<double>(a1 - a0) / static_cast<double>(b1 - b0) : 0;
      print_e2e("bank", "callback", accounts, deposits, window, durability, f);
      json.push_back(
        e2e_json("bank", "deposits", "callback", accounts, deposits, window, durability, f));
      std::fflush(stdout);
    }
    remove_dir(dir);
  }
  for (const auto& line : json)
    print_json(line);
  return 0;
}

} // namespace cairn::bench
