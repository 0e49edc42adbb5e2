// Many more aggregates than may live at once, an idle timeout of 1 ms and
// commands from several threads: aggregates are passivated and reactivated
// all the time, and still every command is answered exactly once and applied
// exactly once.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>

#include "account.hpp"
#include "cairn/runtime/runtime.hpp"
#include "runtime_support.hpp"
#include "support/temp_dir.hpp"

using bank::account;
using cairn::test::await;
using cairn::test::describe;
using cairn::test::quick_options;
using cairn::test::register_ok;
using cairn::test::scaled;
using cairn::test::start_runtime;

namespace {

using account_result = cairn::result<cairn::outcome<account>>;

std::string account_id(int i) { return "storm-" + std::to_string(i); }

/// One deposit of the storm and what became of it.
struct planned {
  int account = 0;
  std::int64_t amount = 0;
  bool repeated = false; ///< Sent a second time, with the same command id.
};

struct answer {
  std::atomic<int> count{0};
  std::uint64_t version = 0;
  bool duplicate = false;
};

} // namespace

TEST_CASE("a storm of commands under constant passivation is answered and applied exactly once",
          "[integration][runtime][passivation]") {
  cairn::test::temp_dir dir;
  const int accounts = scaled(1000, 200);
  const int commands = scaled(100000, 20000);
  const int threads = 4;
  auto opts = quick_options(dir.path());
  opts.idle_timeout = std::chrono::milliseconds{1};
  opts.max_live_aggregates = 10;

  std::vector<planned> plan(static_cast<std::size_t>(commands));
  std::mt19937 rng{7};
  int repeats = 0;
  for (int j = 0; j < commands; ++j) {
    plan[j].account = std::uniform_int_distribution<int>{0, accounts - 1}(rng);
    plan[j].amount = 1 + j % 13;
    plan[j].repeated = j % 97 == 0;
    repeats += plan[j].repeated ? 1 : 0;
  }

  // Slot j answers command j; slot commands + j its repeat.
  std::vector<answer> answers(static_cast<std::size_t>(commands) * 2);
  std::atomic<int> answered{0};
  std::mutex mutex;
  std::vector<std::string> errors;
  // Each sender keeps at most `window` commands in flight, so aggregates go
  // idle and come back all the time instead of draining one long queue each.
  const int window = 64;
  struct flow {
    std::mutex mutex;
    std::condition_variable freed;
    int in_flight = 0;
  };
  std::vector<flow> flows(threads);
  auto on_answer = [&](std::size_t slot, account_result r) {
    if (!r) {
      std::lock_guard<std::mutex> guard{mutex};
      errors.push_back("slot " + std::to_string(slot) + ": " + r.error().to_string());
    } else {
      answers[slot].version = r->version;
      answers[slot].duplicate = r->duplicate;
    }
    answers[slot].count.fetch_add(1);
    answered.fetch_add(1);
    auto& f = flows[(slot % static_cast<std::size_t>(commands)) % threads];
    std::lock_guard<std::mutex> guard{f.mutex};
    --f.in_flight;
    f.freed.notify_one();
  };
  // Everything the callbacks touch is declared above: the runtime dies first.
  auto rt = start_runtime(opts);
  register_ok<account>(*rt);
  {
    std::vector<std::future<account_result>> opening;
    for (int i = 0; i < accounts; ++i)
      opening.push_back(
        rt->send<account>(account_id(i), bank::open_account{"O" + std::to_string(i)}));
    for (auto& f : opening) {
      auto r = await(f);
      INFO(describe(r));
      REQUIRE(r);
    }
  }

  auto sender = [&](int t) {
    std::vector<int> due; // repeats, sent a few commands after their original
    auto& f = flows[t];
    auto send = [&](int j, bool repeat) {
      {
        std::unique_lock<std::mutex> lock{f.mutex};
        if (!f.freed.wait_for(lock, std::chrono::seconds{60},
                              [&] { return f.in_flight < window; })) {
          std::lock_guard<std::mutex> guard{mutex};
          errors.push_back("sender " + std::to_string(t) + ": no answer for 60 s");
        }
        ++f.in_flight;
      }
      cairn::command_options o;
      o.command_id = "storm-cmd-" + std::to_string(j);
      auto slot = static_cast<std::size_t>(j) + (repeat ? commands : 0);
      rt->send<account>(account_id(plan[j].account), bank::deposit{plan[j].amount}, o,
                        [&on_answer, slot](account_result r) { on_answer(slot, std::move(r)); });
    };
    for (int j = t, sent = 0; j < commands; j += threads, ++sent) {
      send(j, false);
      if (plan[j].repeated)
        due.push_back(j);
      if (sent % 8 == 7) {
        for (int k : due)
          send(k, true);
        due.clear();
      }
    }
    for (int k : due)
      send(k, true);
  };
  auto start = std::chrono::steady_clock::now();
  std::vector<std::thread> senders;
  for (int t = 0; t < threads; ++t)
    senders.emplace_back(sender, t);
  for (auto& s : senders)
    s.join();
  const int expected_answers = commands + repeats;
  bool all = cairn::test::eventually([&] { return answered.load() >= expected_answers; },
                                     std::chrono::seconds{100});
  auto seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  auto stats = rt->registry_stats();
  INFO(answered.load() << " of " << expected_answers << " answers after " << seconds << " s; "
                       << stats.activations << " activations, " << stats.passivations
                       << " passivations, " << stats.failures << " failures");
  REQUIRE(all);
  {
    std::lock_guard<std::mutex> guard{mutex};
    INFO(errors.size() << " errors; the first: " << (errors.empty() ? "" : errors.front()));
    CHECK(errors.empty());
  }
  CHECK(stats.passivations > 0);
  CHECK(stats.failures == 0);

  // Every command once; of a command and its repeat, exactly one was applied.
  std::vector<std::int64_t> model(static_cast<std::size_t>(accounts), 0);
  std::vector<int> deposits(static_cast<std::size_t>(accounts), 0);
  int wrong_counts = 0, wrong_duplicates = 0;
  for (int j = 0; j < commands; ++j) {
    const auto& a = answers[j];
    if (a.count.load() != 1)
      ++wrong_counts;
    if (plan[j].repeated) {
      const auto& b = answers[static_cast<std::size_t>(commands) + j];
      if (b.count.load() != 1)
        ++wrong_counts;
      if (a.duplicate == b.duplicate || a.version != b.version)
        ++wrong_duplicates;
    } else if (a.duplicate) {
      ++wrong_duplicates;
    }
    model[plan[j].account] += plan[j].amount;
    deposits[plan[j].account] += 1;
  }
  CHECK(wrong_counts == 0);
  CHECK(wrong_duplicates == 0);

  // The states, through the actors (more activations) and in the store.
  int wrong_states = 0, wrong_streams = 0;
  std::string first_wrong;
  for (int i = 0; i < accounts; ++i) {
    auto s = rt->state<account>(account_id(i));
    REQUIRE(s);
    if (s->balance != model[i]) {
      if (wrong_states++ == 0)
        first_wrong = account_id(i) + ": balance " + std::to_string(s->balance) + ", model "
                      + std::to_string(model[i]);
    }
    auto events = rt->store().read_stream("account-" + account_id(i), 1, 1000000);
    REQUIRE(events);
    std::set<std::string> ids;
    for (const auto& ev : *events)
      if (!ev.meta.command_id.empty())
        ids.insert(ev.meta.command_id);
    // One open plus one event per distinct command id, each id once.
    if (events->size() != static_cast<std::size_t>(deposits[i]) + 1
        || ids.size() != static_cast<std::size_t>(deposits[i]))
      ++wrong_streams;
  }
  INFO(first_wrong);
  CHECK(wrong_states == 0);
  CHECK(wrong_streams == 0);

  // Shutting down answers nothing a second time.
  rt.reset();
  int late = 0;
  for (const auto& a : answers)
    late += a.count.load() > 1 ? 1 : 0;
  CHECK(late == 0);
}

TEST_CASE("one aggregate past max_live_aggregates passivates only the least recently used",
          "[integration][runtime][passivation]") {
  cairn::test::temp_dir dir;
  auto opts = quick_options(dir.path());
  opts.max_live_aggregates = 10; // the idle timeout stays at 120 s: no sweeps
  auto rt = start_runtime(opts);
  register_ok<account>(*rt);
  for (int i = 0; i <= 10; ++i) { // the eleventh pushes lru-0, the least recently used, out
    auto r = await(rt->send<account>("lru-" + std::to_string(i), bank::open_account{"L"}));
    INFO(describe(r));
    REQUIRE(r);
  }
  // lru-1 to lru-9 are still live: commands to them activate nothing.
  for (int i = 1; i <= 9; ++i)
    REQUIRE(await(rt->send<account>("lru-" + std::to_string(i), bank::deposit{1})));
  CHECK(cairn::test::eventually([&] { return rt->registry_stats().passivations >= 1; },
                                std::chrono::seconds{10}));
  auto stats = rt->registry_stats();
  INFO(stats.activations << " activations, " << stats.passivations << " passivations, "
                         << stats.live << " live");
  CHECK(stats.activations == 11);
  CHECK(stats.passivations == 1);
  CHECK(stats.live == 10);
}
