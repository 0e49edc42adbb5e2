// cairn-bench activation:  cold activation latency with and without
//                          snapshots, and replay speed of one long aggregate.
// cairn-bench passivation: many aggregates touched once under a live cap:
//                          commands/s and peak RSS.

#include <sys/resource.h>

#include <algorithm>
#include <condition_variable>
#include <cstdio>
#include <functional>
#include <memory>
#include <mutex>
#include <numeric>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include <caf/all.hpp>

#include "account.hpp"
#include "bench.hpp"
#include "cairn/runtime/runtime_caf.hpp"

namespace cairn::bench {

namespace {

using bank::account;

double peak_rss_mb() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_maxrss) / 1024.0; // ru_maxrss is KiB on Linux
}

/// Writes accounts 0..n-1 straight into the store: account_opened plus
/// 49..199 deposits each (50-200 events); with `snapshots`, a snapshot of the
/// final state as the runtime would write it.
void fill_accounts(const std::string& dir, std::size_t n, bool snapshots,
                   std::vector<std::int64_t>& balances) {
  persistence::store_options opts;
  opts.durability = persistence::durability::no_sync;
  auto store = persistence::open_store(dir, opts);
  if (!store)
    throw std::runtime_error(store.error().to_string());
  persistence::event_registry reg;
  (void)reg.add<bank::account_opened>("account_opened");
  (void)reg.add<bank::money_deposited>("money_deposited");
  std::mt19937_64 rng{11};
  balances.assign(n, 0);
  persistence::write_batch batch;
  std::size_t events_in_batch = 0;
  auto flush = [&] {
    auto r = (*store)->append_batch(batch);
    if (!r)
      throw std::runtime_error(r.error().to_string());
    for (auto& one : *r)
      if (!one)
        throw std::runtime_error(one.error().to_string());
    batch = {};
    events_in_batch = 0;
  };
  for (std::size_t i = 0; i < n; ++i) {
    persistence::append_request req;
    req.stream = "account-" + std::to_string(i);
    req.events.push_back(*reg.encode(bank::account_opened{"owner"}));
    auto deposits = 49 + rng() % 151;
    account::state s;
    s.open = true;
    s.owner = "owner";
    for (std::size_t d = 0; d < deposits; ++d) {
      req.events.push_back(*reg.encode(bank::money_deposited{1}));
      s.balance += 1;
    }
    balances[i] = s.balance;
    if (snapshots) {
      persistence::snapshot snap;
      snap.stream = req.stream;
      snap.version = deposits + 1;
      snap.state_type = std::string{account::category} + ".state";
      snap.schema_version = 1;
      persistence::encode_payload(s, snap.data);
      batch.snapshots.push_back(std::move(snap));
    }
    events_in_batch += req.events.size();
    batch.appends.push_back(std::move(req));
    if (events_in_batch >= 20000)
      flush();
  }
  if (!batch.appends.empty())
    flush();
}

std::unique_ptr<runtime> start(const std::string& dir, std::size_t max_live,
                               std::uint64_t snapshot_interval) {
  runtime_options opts;
  opts.data_dir = dir;
  opts.durability = persistence::durability::no_sync;
  opts.max_live_aggregates = max_live;
  opts.snapshot_interval = snapshot_interval;
  return start_bank_runtime(opts);
}

} // namespace

int activation_main(const args& a) {
  auto n = static_cast<std::size_t>(a.number("--aggregates", 100000));
  if (n < 2)
    throw std::invalid_argument("activation needs --aggregates of at least 2");
  // Each activation case takes its own sample of ids.
  auto samples = std::clamp<std::size_t>(static_cast<std::size_t>(a.number("--samples", 2000)), 1,
                                         n / 2);
  auto long_events = static_cast<std::uint64_t>(a.number("--replay-events", 1000000));
  std::printf("%-32s %10s %10s %10s %14s\n", "case", "samples", "p50 us", "p99 us", "events/s");
  std::vector<std::string> json;
  // One table row and one JSON line per latency case.
  auto report = [&](const char* name, std::vector<double>& us) {
    auto p50 = quantile(us, 0.5), p99 = quantile(us, 0.99);
    std::printf("%-32s %10zu %10.0f %10.0f %14s\n", name, samples, p50, p99, "-");
    char line[256];
    std::snprintf(line, sizeof line,
                  "{\"bench\":\"activation\",\"case\":\"%s\",\"aggregates\":%zu,\"samples\":%zu,"
                  "\"p50_us\":%.0f,\"p99_us\":%.0f}",
                  name, n, samples, p50, p99);
    json.emplace_back(line);
    std::fflush(stdout);
  };
  for (bool snapshots : {false, true}) {
    auto dir = scratch_dir(a, "activation");
    std::vector<std::int64_t> balances;
    fill_accounts(dir, n, snapshots, balances);
    {
      // The store's part of a cold activation: the reads recovery makes, on
      // another sample of ids, without actors or threads in between.
      persistence::store_options opts;
      opts.durability = persistence::durability::no_sync;
      auto store = persistence::open_store(dir, opts);
      if (!store)
        throw std::runtime_error(store.error().to_string());
      std::mt19937_64 rng{5};
      std::vector<double> us;
      for (std::size_t i = 0; i < samples; ++i) {
        auto stream = "account-" + std::to_string(rng() % n);
        auto t0 = clock::now();
        auto snap = (*store)->load_snapshot(stream);
        std::uint64_t from = snap && *snap ? (*snap)->version + 1 : 1;
        auto events = (*store)->visit_stream(stream, from, 4096,
                                             [](const persistence::event_view&) { return true; });
        us.push_back(std::chrono::duration<double, std::micro>(clock::now() - t0).count());
        if (!snap || !events)
          throw std::runtime_error("store reads of " + stream + " failed");
      }
      auto name = snapshots ? "store_reads_snapshot" : "store_reads_replay";
      report(name, us);
    }
    {
      // Snapshots off in the runtime, so activation reads only what was filled.
      auto rt = start(dir, n + 1, 0);
      // Two disjoint samples of ids, so every activation is cold.
      std::vector<std::size_t> ids(n);
      std::iota(ids.begin(), ids.end(), std::size_t{0});
      std::shuffle(ids.begin(), ids.end(), std::mt19937_64{3});
      auto check = [&](std::size_t id, const result<account::state>& s) {
        if (!s || s->balance != balances[id])
          throw std::runtime_error("activation of account-" + std::to_string(id)
                                   + " gave the wrong state");
      };
      std::vector<double> us;
      for (std::size_t i = 0; i < samples; ++i) {
        auto id = ids[i];
        auto t0 = clock::now();
        auto s = rt->state<account>(std::to_string(id)); // activates: not live before
        us.push_back(std::chrono::duration<double, std::micro>(clock::now() - t0).count());
        check(id, s);
      }
      report(snapshots ? "cold_activation_snapshot" : "cold_activation_replay", us);
      // The same through the CAF-native form, one query at a time from an
      // actor: no thread outside CAF waits or has to be woken.
      us.clear();
      std::vector<std::size_t> native(ids.begin() + static_cast<std::ptrdiff_t>(samples),
                                      ids.begin() + static_cast<std::ptrdiff_t>(2 * samples));
      std::vector<actors::reply_msg> replies(samples);
      // The registry comes as an argument: CAF 0.17 dereferences a null tuple
      // of arguments when it spawns a function that takes none.
      auto asker = [&](caf::event_based_actor* self, caf::actor registry) -> caf::behavior {
        auto next = std::make_shared<std::function<void(std::size_t)>>();
        std::weak_ptr<std::function<void(std::size_t)>> again = next;
        *next = [self, again, registry, &native, &us, &replies, &rt](std::size_t i) {
          auto query = rt->make_command<account>(std::to_string(native[i]), bank::deposit{0});
          query.query = true;
          auto t0 = clock::now();
          auto settle = [self, again, &us, &replies, t0, i](actors::reply_msg r) {
            us.push_back(std::chrono::duration<double, std::micro>(clock::now() - t0).count());
            replies[i] = std::move(r);
            if (i + 1 == replies.size())
              self->quit();
            else if (auto f = again.lock())
              (*f)(i + 1);
          };
          self->request(registry, caf::infinite, actors::command_atom::value, std::move(query))
            .then([settle](actors::reply_msg& r) { settle(std::move(r)); },
                  [settle](caf::error&) {
                    settle(actors::error_reply({errc::internal, "lost"}));
                  });
        };
        self->attach_functor([next] {}); // keeps the closure alive as long as the actor
        (*next)(0);
        return {};
      };
      {
        caf::scoped_actor waiter{rt->system()};
        waiter->wait_for(rt->system().spawn(asker, rt->handle()));
      }
      for (std::size_t i = 0; i < samples; ++i)
        check(native[i], replies[i].ok()
                           ? persistence::decode_payload<account::state>(replies[i].state)
                           : result<account::state>{tl::unexpected(replies[i].error())});
      report(snapshots ? "cold_activation_snapshot_native" : "cold_activation_replay_native", us);
    }
    remove_dir(dir);
  }
  {
    // One aggregate with a long history: replay speed of activation.
    auto dir = scratch_dir(a, "replay");
    {
      persistence::store_options opts;
      opts.durability = persistence::durability::no_sync;
      auto store = persistence::open_store(dir, opts);
      if (!store)
        throw std::runtime_error(store.error().to_string());
      persistence::event_registry reg;
      (void)reg.add<bank::account_opened>("account_opened");
      (void)reg.add<bank::money_deposited>("money_deposited");
      for (std::uint64_t written = 0; written < long_events;) {
        persistence::append_request req;
        req.stream = "account-long";
        if (written == 0)
          req.events.push_back(*reg.encode(bank::account_opened{"owner"}));
        while (req.events.size() < 10000 && written + req.events.size() < long_events)
          req.events.push_back(*reg.encode(bank::money_deposited{1}));
        written += req.events.size();
        if (auto r = (*store)->append(req); !r)
          throw std::runtime_error(r.error().to_string());
      }
    }
    auto rt = start(dir, 10, 0);
    auto t0 = clock::now();
    auto s = rt->state<account>("long");
    auto secs = seconds_since(t0);
    if (!s || s->balance != static_cast<std::int64_t>(long_events - 1))
      throw std::runtime_error("replay of account-long gave the wrong state");
    auto rate = static_cast<double>(long_events) / secs;
    std::printf("%-32s %10d %10.0f %10s %14.0f\n", "replay_one_aggregate", 1, secs * 1e6, "-",
                rate);
    char line[256];
    std::snprintf(line, sizeof line,
                  "{\"bench\":\"activation\",\"case\":\"replay_one_aggregate\",\"events\":%llu,"
                  "\"events_per_s\":%.0f}",
                  static_cast<unsigned long long>(long_events), rate);
    json.emplace_back(line);
    rt.reset();
    remove_dir(dir);
  }
  for (const auto& line : json)
    print_json(line);
  return 0;
}

int passivation_main(const args& a) {
  auto n = static_cast<std::size_t>(a.number("--aggregates", 1000000));
  auto max_live = static_cast<std::size_t>(a.number("--max-live", 10000));
  auto window = static_cast<std::size_t>(a.number("--inflight", 1024));
  auto dir = scratch_dir(a, "passivation");
  double rate = 0, rss = 0;
  actors::registry_stats stats;
  {
    auto rt = start(dir, max_live, 50);
    std::mutex m;
    std::condition_variable cv;
    std::size_t outstanding = 0, errors = 0;
    auto t0 = clock::now();
    for (std::size_t i = 0; i < n; ++i) {
      std::unique_lock lock{m};
      cv.wait(lock, [&] { return outstanding < window; });
      ++outstanding;
      lock.unlock();
      rt->send<account>(std::to_string(i), bank::open_account{"owner"}, {},
                        [&](result<outcome<account>> r) {
                          std::lock_guard g{m};
                          errors += r ? 0 : 1;
                          --outstanding;
                          cv.notify_all();
                        });
    }
    std::unique_lock lock{m};
    cv.wait(lock, [&] { return outstanding == 0; });
    rate = static_cast<double>(n) / seconds_since(t0);
    lock.unlock();
    stats = rt->registry_stats();
    rss = peak_rss_mb();
    if (errors != 0)
      throw std::runtime_error(std::to_string(errors) + " commands failed");
  }
  remove_dir(dir);
  std::printf("%-12s %10s %10s %12s %12s %12s\n", "aggregates", "max live", "commands/s",
              "peak RSS MB", "passivated", "live at end");
  std::printf("%-12zu %10zu %10.0f %12.0f %12llu %12llu\n", n, max_live, rate, rss,
              static_cast<unsigned long long>(stats.passivations),
              static_cast<unsigned long long>(stats.live));
  char line[256];
  std::snprintf(line, sizeof line,
                "{\"bench\":\"passivation\",\"aggregates\":%zu,\"max_live\":%zu,"
                "\"commands_per_s\":%.0f,\"peak_rss_mb\":%.0f,\"passivations\":%llu}",
                n, max_live, rate, rss, static_cast<unsigned long long>(stats.passivations));
  print_json(line);
  return 0;
}

} // namespace cairn::bench
