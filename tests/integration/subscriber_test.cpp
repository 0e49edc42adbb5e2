// Subscribers and local projections: catch-up then live without skipping,
// restarts, retries and dead letters, rebuilds, bounded memory.

#include <algorithm>
#include <atomic>
#include <fstream>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>

#include "account.hpp"
#include "cairn/runtime/runtime.hpp"
#include "runtime_support.hpp"
#include "support/temp_dir.hpp"

using namespace std::chrono_literals;
using cairn::test::describe;
using cairn::test::eventually;
using cairn::test::scaled;

namespace {

/// Positions a handler saw, from its own thread.
struct seen_positions {
  std::mutex m;
  std::vector<std::uint64_t> positions;
  void add(std::uint64_t p) {
    std::lock_guard lock{m};
    positions.push_back(p);
  }
  std::vector<std::uint64_t> get() {
    std::lock_guard lock{m};
    return positions;
  }
  std::size_t size() {
    std::lock_guard lock{m};
    return positions.size();
  }
};

/// The positions of the log matching `filter`, straight from the store.
std::vector<std::uint64_t> expected_positions(cairn::runtime& rt,
                                              const cairn::subscription_filter& filter) {
  std::vector<std::uint64_t> out;
  std::uint64_t from = 1;
  for (;;) {
    auto page = rt.store().read_all(from, 10000, filter);
    REQUIRE(page);
    for (const auto& e : page->events)
      out.push_back(e.position);
    if (page->next_position == from)
      return out;
    from = page->next_position;
  }
}

void check_dense(const std::vector<std::uint64_t>& seen,
                 const std::vector<std::uint64_t>& expected) {
  REQUIRE(std::is_sorted(seen.begin(), seen.end()));
  REQUIRE(std::adjacent_find(seen.begin(), seen.end()) == seen.end()); // no repeats
  CHECK(seen.size() == expected.size());
  CHECK(seen == expected);
}

/// Sends `per_thread` commands from each of `threads` threads over `accounts`
/// accounts (opened first unless `opened`); returns the last position acknowledged.
/// Catch macros are for the test's thread: call CHECK on what it returns.
std::uint64_t drive_from_any_thread(cairn::runtime& rt, int threads, int per_thread, int accounts,
                                    bool opened, int& failed) {
  std::atomic<std::uint64_t> last{0};
  std::atomic<int> failures{0};
  std::vector<std::thread> writers;
  for (int t = 0; t < threads; ++t)
    writers.emplace_back([&, t] {
      std::vector<std::future<cairn::result<cairn::outcome<bank::account>>>> inflight;
      auto settle = [&](auto& f) {
        auto r = f.get();
        if (!r) {
          ++failures;
          return;
        }
        auto p = r->last_position;
        auto prev = last.load();
        while (p > prev && !last.compare_exchange_weak(prev, p)) {
        }
      };
      for (int i = 0; i < per_thread; ++i) {
        auto id = "a" + std::to_string((t + threads * i) % accounts);
        bank::account::command cmd = !opened && i < accounts / threads
                                       ? bank::account::command{bank::open_account{id}}
                                       : bank::account::command{bank::deposit{1 + i % 7}};
        inflight.push_back(rt.send<bank::account>(id, cmd));
        if (inflight.size() >= 64) {
          for (auto& f : inflight)
            settle(f);
          inflight.clear();
        }
      }
      for (auto& f : inflight)
        settle(f);
    });
  for (auto& w : writers)
    w.join();
  failed = failures.load();
  return last.load();
}

std::uint64_t drive(cairn::runtime& rt, int threads, int per_thread, int accounts,
                    bool opened = false) {
  int failed = 0;
  auto last = drive_from_any_thread(rt, threads, per_thread, accounts, opened, failed);
  CHECK(failed == 0);
  return last;
}

/// A projection of balances: key = account id, value = balance.
cairn::result<void> project_balance(const cairn::envelope<bank::account::event>& e,
                                    cairn::read_model& model) {
  auto id = std::string{e.stream.substr(std::string_view{"account-"}.size())};
  auto current = model.get_as<std::int64_t>(id);
  if (!current)
    return tl::unexpected(current.error());
  std::int64_t balance = current->value_or(0);
  if (auto d = std::get_if<bank::money_deposited>(&e.event))
    balance += d->amount;
  if (auto w = std::get_if<bank::money_withdrawn>(&e.event))
    balance -= w->amount;
  return model.put_as(id, balance);
}

cairn::subscription_options quick_retries(std::uint32_t attempts) {
  cairn::subscription_options o;
  o.max_attempts = attempts;
  o.initial_backoff = 2ms;
  o.max_backoff = 10ms;
  return o;
}

std::size_t resident_kib() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("VmRSS:", 0) == 0)
      return std::stoul(line.substr(6));
  return 0;
}

} // namespace

TEST_CASE("subscribers see a dense increasing sequence of exactly the matching events while "
          "8 threads write",
          "[integration][subscriber]") {
  cairn::test::temp_dir dir;
  auto rt = cairn::test::start_runtime(cairn::test::quick_options(dir.path()));
  cairn::test::register_ok<bank::account>(*rt);

  seen_positions all, deposits, projected;
  std::atomic<int> bad_amounts{0}; // Catch macros belong to the test's thread
  REQUIRE(rt->subscribe<bank::account::event>("all", {}, [&](const auto& e) {
    all.add(e.position);
    return cairn::result<void>{};
  }));
  REQUIRE(rt->subscribe<bank::money_deposited>("deposits", {{"account"}, {}}, [&](const auto& e) {
    bad_amounts += e.event.amount > 0 ? 0 : 1;
    deposits.add(e.position);
    return cairn::result<void>{};
  }));
  REQUIRE(
    rt->project<bank::account::event>("balances", {}, [&](const auto& e, cairn::read_model& model) {
      projected.add(e.position);
      return project_balance(e, model);
    }));

  int per_thread = scaled(12500, 500);
  auto last = drive(*rt, 8, per_thread, 1000);
  REQUIRE(last >= static_cast<std::uint64_t>(8 * per_thread) - 8); // every command emits one event
  for (auto name : {"all", "deposits", "balances"}) {
    auto waited = rt->wait_for(name, last, 60s);
    INFO(name << ": " << describe(waited));
    REQUIRE(waited);
  }
  CHECK(bad_amounts.load() == 0);
  check_dense(all.get(), expected_positions(*rt, {}));
  check_dense(deposits.get(), expected_positions(*rt, {{}, {"money_deposited"}}));
  check_dense(projected.get(), expected_positions(*rt, {}));

  // The read model equals the aggregates' own state.
  auto balances = rt->query_range<std::int64_t>("balances");
  REQUIRE(balances);
  CHECK(balances->size() == 1000);
  for (const auto& [id, balance] : *balances) {
    auto state = rt->state<bank::account>(id);
    REQUIRE(state);
    CHECK(state->balance == balance);
  }
  auto status = rt->subscription("all");
  REQUIRE(status);
  CHECK(status->checkpoint >= last);
  CHECK(status->lag == 0);
  CHECK(status->state == cairn::subscription_state::live);
  CHECK(status->dead_letters == 0);
  CHECK(rt->subscriptions().size() == 3);
}

TEST_CASE("a subscriber restarted mid-stream resumes after its checkpoint and skips nothing",
          "[integration][subscriber]") {
  cairn::test::temp_dir dir;
  seen_positions first_run, second_run;
  std::uint64_t stopped_at = 0;
  {
    auto rt = cairn::test::start_runtime(cairn::test::quick_options(dir.path()));
    cairn::test::register_ok<bank::account>(*rt);
    auto written = drive(*rt, 2, scaled(3000, 300), 50);
    cairn::subscription_options o;
    o.checkpoint_every = 100;
    REQUIRE(rt->subscribe<bank::account::event>(
      "auditor", {},
      [&](const auto& e) {
        first_run.add(e.position);
        if (first_run.size() % 100 == 0)
          std::this_thread::sleep_for(5ms); // slow enough to stop it mid-stream
        return cairn::result<void>{};
      },
      o));
    REQUIRE(eventually([&] { return first_run.size() >= written / 3; }));
    REQUIRE(rt->unsubscribe("auditor"));
    auto cp = rt->store().load_checkpoint("auditor");
    REQUIRE(cp);
    REQUIRE(cp->has_value());
    stopped_at = **cp;
    CHECK(stopped_at == first_run.get().back()); // a clean stop saves exactly what it handled
    drive(*rt, 2, scaled(1000, 100), 50, true);
  }
  auto rt = cairn::test::start_runtime(cairn::test::quick_options(dir.path()));
  cairn::test::register_ok<bank::account>(*rt);
  REQUIRE(rt->subscribe<bank::account::event>("auditor", {}, [&](const auto& e) {
    second_run.add(e.position);
    return cairn::result<void>{};
  }));
  auto last = rt->store().last_position();
  REQUIRE(last);
  REQUIRE(rt->wait_for("auditor", *last, 60s));
  auto seen = first_run.get();
  auto more = second_run.get();
  REQUIRE_FALSE(more.empty());
  CHECK(more.front() == stopped_at + 1);
  seen.insert(seen.end(), more.begin(), more.end());
  check_dense(seen, expected_positions(*rt, {}));
}

TEST_CASE("a poison event is retried, dead-lettered, and replayed once the handler is fixed",
          "[integration][subscriber]") {
  cairn::test::temp_dir dir;
  auto rt = cairn::test::start_runtime(cairn::test::quick_options(dir.path()));
  cairn::test::register_ok<bank::account>(*rt);
  auto last = drive(*rt, 1, 200, 10);
  const std::uint64_t poison = 77;
  std::atomic<bool> broken{true};
  std::atomic<int> poison_calls{0};
  seen_positions handled;
  REQUIRE(rt->subscribe<bank::account::event>(
    "mailer", {},
    [&](const auto& e) -> cairn::result<void> {
      if (e.position == poison) {
        ++poison_calls;
        if (broken.load())
          return cairn::fail(cairn::errc::unavailable, "smtp is down");
      }
      handled.add(e.position);
      return {};
    },
    quick_retries(3)));
  REQUIRE(rt->wait_for("mailer", last, 60s));
  CHECK(poison_calls.load() == 3);
  auto seen = handled.get();
  CHECK(std::find(seen.begin(), seen.end(), poison) == seen.end());
  CHECK(seen.size() == last - 1); // the subscriber went on past it
  auto letters = rt->dead_letters("mailer");
  REQUIRE(letters);
  REQUIRE(letters->size() == 1);
  const auto& dl = letters->front();
  CHECK(dl.position == poison);
  CHECK(dl.attempts == 3);
  CHECK(dl.stream.rfind("account-", 0) == 0);
  CHECK(dl.error.find("smtp is down") != std::string::npos);
  CHECK(dl.first_failure_ns <= dl.last_failure_ns);
  CHECK(rt->subscription("mailer")->dead_letters == 1);
  // The checkpoint passed the poison event only with its dead letter.
  CHECK(**rt->store().load_checkpoint("mailer") >= poison);

  // Still broken: a replay keeps it, counting the attempt.
  auto again = rt->replay_dead_letters("mailer");
  REQUIRE(again);
  CHECK(again->failed == 1);
  CHECK(rt->dead_letters("mailer")->front().attempts == 4);

  broken = false;
  auto fixed = rt->replay_dead_letters("mailer", poison);
  INFO(describe(fixed));
  REQUIRE(fixed);
  CHECK(fixed->succeeded == 1);
  CHECK(fixed->failed == 0);
  CHECK(rt->dead_letters("mailer")->empty());
  seen = handled.get();
  CHECK(std::count(seen.begin(), seen.end(), poison) == 1);
}

TEST_CASE("a handler that throws is retried like one that fails; discard removes dead letters",
          "[integration][subscriber]") {
  cairn::test::temp_dir dir;
  auto rt = cairn::test::start_runtime(cairn::test::quick_options(dir.path()));
  cairn::test::register_ok<bank::account>(*rt);
  auto last = drive(*rt, 1, 30, 3);
  std::atomic<int> calls{0};
  REQUIRE(rt->subscribe<bank::account_opened>(
    "thrower", {},
    [&](const auto&) -> cairn::result<void> {
      ++calls;
      throw std::runtime_error("boom");
    },
    quick_retries(2)));
  REQUIRE(rt->wait_for("thrower", last, 60s));
  CHECK(calls.load() == 3 * 2);
  auto letters = rt->dead_letters("thrower");
  REQUIRE(letters);
  REQUIRE(letters->size() == 3);
  CHECK(letters->front().error.find("boom") != std::string::npos);
  auto removed = rt->discard_dead_letters("thrower", letters->front().position);
  REQUIRE(removed);
  CHECK(*removed == 1);
  CHECK(rt->dead_letters("thrower")->size() == 2);
  CHECK(*rt->discard_dead_letters("thrower") == 2);
  CHECK(rt->dead_letters("thrower")->empty());
}

TEST_CASE("with on_failure = stop the subscriber stops before the failing event",
          "[integration][subscriber]") {
  cairn::test::temp_dir dir;
  auto rt = cairn::test::start_runtime(cairn::test::quick_options(dir.path()));
  cairn::test::register_ok<bank::account>(*rt);
  drive(*rt, 1, 100, 5);
  auto o = quick_retries(2);
  o.on_failure = cairn::after_last_retry::stop;
  REQUIRE(rt->subscribe<bank::account::event>(
    "strict", {},
    [&](const auto& e) -> cairn::result<void> {
      if (e.position == 40)
        return cairn::fail(cairn::errc::invalid_argument, "cannot handle 40");
      return {};
    },
    o));
  REQUIRE(eventually([&] {
    auto s = rt->subscription("strict");
    return s && s->state == cairn::subscription_state::stopped && s->checkpoint == 39;
  }));
  auto s = rt->subscription("strict");
  CHECK(s->position == 39);
  CHECK(s->last_error.find("cannot handle 40") != std::string::npos);
  CHECK(s->dead_letters == 0);
  CHECK(s->lag == 61);
}

TEST_CASE("rebuilding a projection while commands go on yields the same read model",
          "[integration][subscriber]") {
  cairn::test::temp_dir dir;
  auto rt = cairn::test::start_runtime(cairn::test::quick_options(dir.path()));
  cairn::test::register_ok<bank::account>(*rt);
  std::atomic<int> calls{0};
  REQUIRE(rt->project<bank::account::event>("balances", {}, [&](const auto& e, auto& model) {
    ++calls;
    return project_balance(e, model);
  }));
  auto last = drive(*rt, 4, scaled(2000, 200), 100);
  REQUIRE(rt->wait_for("balances", last, 60s));
  auto before = rt->query_range<std::int64_t>("balances");
  REQUIRE(before);
  REQUIRE(before->size() == 100);
  auto calls_before = calls.load();

  int failed = 0;
  std::thread more(
    [&] { last = drive_from_any_thread(*rt, 2, scaled(500, 50), 100, true, failed); });
  auto rebuilt = rt->rebuild("balances");
  more.join();
  REQUIRE(rebuilt);
  CHECK(failed == 0);
  REQUIRE(rt->wait_for("balances", last, 60s));
  CHECK(calls.load() > calls_before); // it really replayed
  auto after = rt->query_range<std::int64_t>("balances");
  REQUIRE(after);
  REQUIRE(after->size() == 100);
  for (const auto& [id, balance] : *after)
    CHECK(rt->state<bank::account>(id)->balance == balance);
  CHECK_FALSE(rt->rebuild("nobody"));
}

TEST_CASE("a slow subscriber far behind keeps memory bounded", "[integration][subscriber][slow]") {
  cairn::test::temp_dir dir;
  const std::uint64_t backlog = scaled<std::uint64_t>(1000000, 100000);
  {
    auto o = cairn::test::quick_options(dir.path()).store;
    o.durability = cairn::persistence::durability::no_sync;
    auto store = cairn::persistence::open_store(dir.path(), o);
    REQUIRE(store);
    std::string payload;
    cairn::persistence::encode_payload(bank::money_deposited{5}, payload);
    for (std::uint64_t done = 0; done < backlog;) {
      cairn::persistence::write_batch b;
      for (int i = 0; i < 10000 && done < backlog; ++i, ++done) {
        cairn::persistence::append_request r;
        r.stream = "account-b" + std::to_string(done % 1000);
        r.events.push_back({"money_deposited", 1, payload, {}, {}});
        b.appends.push_back(std::move(r));
      }
      REQUIRE((*store)->append_batch(b));
    }
  }
  auto rt = cairn::test::start_runtime(cairn::test::quick_options(dir.path()));
  cairn::test::register_ok<bank::account>(*rt);
  auto rss_before = resident_kib();
  std::atomic<std::uint64_t> handled{0};
  REQUIRE(rt->subscribe<bank::account::event>("slow", {}, [&](const auto&) {
    if (++handled % 64 == 0)
      std::this_thread::sleep_for(1ms);
    return cairn::result<void>{};
  }));
  // Commits keep arriving while it is far behind.
  auto last = drive(*rt, 2, scaled(3000, 300), 20);
  REQUIRE(eventually([&] { return handled.load() > 10000; }));
  auto status = rt->subscription("slow");
  REQUIRE(status);
  CHECK(status->state == cairn::subscription_state::catching_up);
  CHECK(status->lag > backlog / 2);
  CHECK(status->lag_ms > 0);
  auto grown_kib = resident_kib() - std::min(resident_kib(), rss_before);
  INFO("RSS grew by " << grown_kib << " KiB with " << status->lag << " events behind");
  CHECK(grown_kib < 64 * 1024);
  CHECK(last > backlog);
}

TEST_CASE("a new subscription can start at the end of the log", "[integration][subscriber]") {
  cairn::test::temp_dir dir;
  auto rt = cairn::test::start_runtime(cairn::test::quick_options(dir.path()));
  cairn::test::register_ok<bank::account>(*rt);
  auto old_end = drive(*rt, 1, 50, 5);
  seen_positions seen;
  cairn::subscription_options o;
  o.start = cairn::start_position::end;
  REQUIRE(rt->subscribe<bank::account::event>(
    "new-only", {},
    [&](const auto& e) {
      seen.add(e.position);
      return cairn::result<void>{};
    },
    o));
  REQUIRE(rt->wait_for("new-only", old_end, 10s)); // starts there, checkpointed
  auto last = drive(*rt, 1, 20, 5, true);
  REQUIRE(rt->wait_for("new-only", last, 60s));
  auto got = seen.get();
  REQUIRE(got.size() == last - old_end);
  CHECK(got.front() == old_end + 1);
}

TEST_CASE("subscription calls validate their input", "[integration][subscriber]") {
  cairn::test::temp_dir dir;
  auto rt = cairn::test::start_runtime(cairn::test::quick_options(dir.path()));
  cairn::test::register_ok<bank::account>(*rt);
  auto noop = [](const cairn::envelope<bank::account::event>&) { return cairn::result<void>{}; };
  auto refused = [](const cairn::result<void>& r, const char* needle) {
    INFO(describe(r));
    REQUIRE_FALSE(r);
    CHECK(r.error().code == cairn::errc::invalid_argument);
    CHECK(r.error().to_string().find(needle) != std::string::npos);
  };
  refused(rt->subscribe<bank::account::event>("", {}, noop), "subscriber names");
  refused(rt->subscribe<bank::account::event>("has space", {}, noop), "subscriber names");
  cairn::subscription_options bad;
  bad.max_attempts = 0;
  refused(rt->subscribe<bank::account::event>("s", {}, noop, bad), "max_attempts");
  bad = {};
  bad.max_backoff = 1ms;
  refused(rt->subscribe<bank::account::event>("s", {}, noop, bad), "backoff");
  bad = {};
  bad.batch_size = 0;
  refused(rt->subscribe<bank::account::event>("s", {}, noop, bad), "batch_size");
  REQUIRE(rt->subscribe<bank::account::event>("s", {}, noop));
  refused(rt->subscribe<bank::account::event>("s", {}, noop), "already running");
  refused(rt->unsubscribe("nobody"), "no subscriber");
  refused(rt->rebuild("s"), "only a projection");
  CHECK_FALSE(rt->subscription("nobody"));
  CHECK_FALSE(rt->replay_dead_letters("nobody"));
  auto late = rt->register_aggregate<bank::account>();
  CHECK_FALSE(late); // subscribing froze the registrations
}

TEST_CASE("a projection's failed or throwing call leaves no trace in its read model",
          "[integration][subscriber]") {
  cairn::test::temp_dir dir;
  auto rt = cairn::test::start_runtime(cairn::test::quick_options(dir.path()));
  cairn::test::register_ok<bank::account>(*rt);
  auto last = drive(*rt, 1, 60, 6);
  REQUIRE(rt->project<bank::account::event>(
    "careful", {},
    [&](const auto& e, cairn::read_model& model) -> cairn::result<void> {
      auto key = "p" + std::to_string(e.position);
      if (auto ok = model.put_as(key, e.position); !ok)
        return ok;
      // Its own uncommitted write is visible to itself.
      auto back = model.get_as<std::uint64_t>(key);
      if (!back || *back != std::optional<std::uint64_t>{e.position})
        return cairn::fail(cairn::errc::internal, "own write not visible");
      if (e.position == 20)
        return cairn::fail(cairn::errc::invalid_argument, "refused");
      if (e.position == 30)
        throw std::runtime_error("thrown");
      return {};
    },
    quick_retries(2)));
  REQUIRE(rt->wait_for("careful", last, 60s));
  auto model = rt->query_range<std::uint64_t>("careful");
  REQUIRE(model);
  CHECK(model->size() == last - 2);
  CHECK_FALSE(rt->query<std::uint64_t>("careful", "p20")->has_value());
  CHECK_FALSE(rt->query<std::uint64_t>("careful", "p30")->has_value());
  CHECK(rt->query<std::uint64_t>("careful", "p21")->value_or(0) == 21);
  CHECK(rt->dead_letters("careful")->size() == 2);
  // A read model key must be 1-255 bytes: the handler learns it at once.
  cairn::read_model probe{rt->store(), "careful"};
  CHECK_FALSE(probe.put(std::string(256, 'k'), "v"));
  CHECK_FALSE(probe.erase(""));
}

TEST_CASE("the dead-letter count follows dead letters, replays, discards and restarts",
          "[integration][subscriber][metrics]") {
  cairn::test::temp_dir dir;
  std::atomic<bool> broken{true};
  auto handler = [&](const auto& e) -> cairn::result<void> {
    if (broken.load() && e.position % 10 == 0)
      return cairn::fail(cairn::errc::unavailable, "down");
    return {};
  };
  auto count = [](cairn::runtime& rt) { return rt.subscription("counted")->dead_letters; };
  std::uint64_t last = 0;
  {
    auto rt = cairn::test::start_runtime(cairn::test::quick_options(dir.path()));
    cairn::test::register_ok<bank::account>(*rt);
    last = drive(*rt, 1, 50, 5);
    REQUIRE(rt->subscribe<bank::account::event>("counted", {}, handler, quick_retries(1)));
    REQUIRE(rt->wait_for("counted", last, 60s));
    const auto expected = last / 10;
    REQUIRE(expected >= 3);
    CHECK(count(*rt) == expected);
    CHECK(rt->dead_letters("counted")->size() == expected);
    // A failed replay keeps every letter: the count stays, twice in a row.
    for (int i = 0; i < 2; ++i) {
      auto again = rt->replay_dead_letters("counted");
      REQUIRE(again);
      CHECK(again->failed == expected);
      CHECK(count(*rt) == expected);
    }
    CHECK(rt->dead_letters("counted")->size() == expected);
    CHECK(*rt->discard_dead_letters("counted", 10) == 1);
    CHECK(count(*rt) == expected - 1);
    broken = false;
    auto fixed = rt->replay_dead_letters("counted", 20);
    REQUIRE(fixed);
    CHECK(fixed->succeeded == 1);
    CHECK(count(*rt) == expected - 2);
    CHECK(rt->dead_letters("counted")->size() == expected - 2);
    broken = true;
  }
  // A restart counts what the store holds, once.
  auto rt = cairn::test::start_runtime(cairn::test::quick_options(dir.path()));
  cairn::test::register_ok<bank::account>(*rt);
  REQUIRE(rt->subscribe<bank::account::event>("counted", {}, handler, quick_retries(1)));
  REQUIRE(rt->wait_for("counted", last, 60s));
  CHECK(count(*rt) == last / 10 - 2);
  CHECK(*rt->discard_dead_letters("counted") == last / 10 - 2);
  CHECK(count(*rt) == 0);
  CHECK(rt->dead_letters("counted")->empty());
}
