// The subscriber on CAF's deterministic test coordinator, over a real LMDB
// store and the real journal (both actors scheduled, not detached, so the
// coordinator steps them): retries wait exactly their backoff, and every
// phase can be observed between two steps.

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include <caf/all.hpp>
#include <catch2/catch.hpp>

#include "cairn/actors/error.hpp"
#include "cairn/actors/journal.hpp"
#include "cairn/actors/messages.hpp"
#include "cairn/actors/metrics.hpp"
#include "cairn/actors/subscriber.hpp"
#include "cairn/persistence/event_store.hpp"
#include "support/journal_fixture.hpp"

using namespace std::chrono_literals;
using namespace cairn::actors;
using cairn::errc;
namespace cp = cairn::persistence;

namespace {

struct fixture : cairn::test::journal_fixture {
  /// Appends `n` events to stream "s-1" straight into the store.
  void append(std::size_t n) {
    cp::append_request req;
    req.stream = "s-1";
    for (std::size_t i = 0; i < n; ++i)
      req.events.push_back(cp::event_data{"happened", 1, "payload", {}, {}});
    REQUIRE(store->append(req));
  }

  caf::actor spawn(subscriber_spec spec) {
    REQUIRE(validate_subscriber(spec));
    auto s = spawn_subscriber(*sys, *store, journal, std::move(spec), placement::scheduled);
    subscribers.push_back(s);
    return s;
  }

  /// Sends `xs` to `dest`, runs everything, and returns the answer; a CAF
  /// error comes back as the cairn error it carries.
  template <class T, class... Ts> cairn::result<T> ask(const caf::actor& dest, Ts... xs) {
    caf::scoped_actor self{*sys};
    auto h = self->request(dest, caf::infinite, xs...);
    sched->run();
    cairn::result<T> out = cairn::fail(errc::internal, "no answer");
    if (self->mailbox().empty())
      return out; // receive would block forever: nothing else runs
    h.receive(
      [&](T& v) { out = std::move(v); },
      [&](caf::error& e) {
        auto carried = from_caf_error(e);
        out = tl::unexpected(carried ? *carried : cairn::error{errc::internal, sys->render(e)});
      });
    return out;
  }

  subscriber_status status(const caf::actor& s) {
    auto st = ask<subscriber_status>(s, status_atom::value);
    REQUIRE(st);
    return *st;
  }

  void advance(caf::timespan d) {
    sched->advance_time(d);
    sched->run();
  }
};

/// Options with a checkpoint timer far away, so only the test writes one.
subscription_options quiet_options() {
  subscription_options o;
  o.checkpoint_interval = std::chrono::hours{1};
  o.max_attempts = 3;
  o.initial_backoff = 100ms;
  o.max_backoff = 10s;
  return o;
}

/// A spec whose handler fails every call for the event at `failing`.
subscriber_spec failing_at(std::uint64_t failing, std::shared_ptr<int> calls,
                           subscription_options o = quiet_options()) {
  subscriber_spec spec;
  spec.name = "sub";
  spec.options = o;
  spec.handle = [failing, calls](const cp::recorded_event& ev, read_model*) -> cairn::result<void> {
    if (ev.position != failing)
      return {};
    ++*calls;
    return cairn::fail(errc::unavailable, "the mail server is down");
  };
  return spec;
}

} // namespace

TEST_CASE("a failing event is retried after each backoff, then dead-lettered",
          "[unit][subscriber]") {
  fixture f;
  f.append(3);
  auto calls = std::make_shared<int>(0);
  auto sub = f.spawn(failing_at(2, calls));
  f.sched->run();
  auto s = f.status(sub);
  CHECK(s.state == subscriber_state::retrying);
  CHECK(s.position == 1);
  CHECK(s.last_error == "unavailable: the mail server is down");
  CHECK(*calls == 1);
  f.advance(99ms);
  CHECK(*calls == 1);
  f.advance(1ms); // the first backoff: 100 ms
  CHECK(*calls == 2);
  CHECK(f.status(sub).state == subscriber_state::retrying);
  f.advance(199ms);
  CHECK(*calls == 2);
  f.advance(1ms); // doubled: 200 ms; the third and last attempt
  CHECK(*calls == 3);
  s = f.status(sub);
  CHECK(s.state == subscriber_state::live);
  CHECK(s.position == 3);
  CHECK(s.dead_letters == 1);
  CHECK(s.handled == 2);
  CHECK(s.last_error.empty());
  // Waiting for position 3 writes the checkpoint with the dead letter.
  auto reached = f.ask<bool>(sub, wait_atom::value, std::uint64_t{3});
  REQUIRE(reached);
  auto letters = f.store->list_dead_letters("sub");
  REQUIRE(letters);
  REQUIRE(letters->size() == 1);
  CHECK(letters->front().position == 2);
  CHECK(letters->front().attempts == 3);
  CHECK(letters->front().error == "unavailable: the mail server is down");
  auto saved = f.store->load_checkpoint("sub");
  REQUIRE(saved);
  CHECK(*saved == std::optional<std::uint64_t>{3});
  f.advance(1h);
  CHECK(*calls == 3); // never tried again
}

TEST_CASE("a subscriber that stops after the last retry keeps its checkpoint before the event",
          "[unit][subscriber]") {
  fixture f;
  f.append(3);
  auto calls = std::make_shared<int>(0);
  auto o = quiet_options();
  o.on_failure = after_last_retry::stop;
  auto sub = f.spawn(failing_at(2, calls, o));
  f.sched->run();
  f.advance(100ms);
  f.advance(200ms);
  CHECK(*calls == 3);
  auto s = f.status(sub);
  CHECK(s.state == subscriber_state::stopped);
  CHECK(s.position == 1);
  CHECK(s.checkpoint == 1);
  CHECK(s.last_error == "unavailable: the mail server is down");
  f.advance(1h);
  CHECK(*calls == 3);
  CHECK(f.status(sub).state == subscriber_state::stopped);
}

TEST_CASE("a subscriber catches up, goes live, and checkpoints on its timer",
          "[unit][subscriber]") {
  fixture f;
  f.append(5);
  auto handled = std::make_shared<std::vector<std::uint64_t>>();
  subscriber_spec spec;
  spec.name = "sub";
  spec.options.batch_size = 2;
  spec.options.checkpoint_interval = 100ms;
  spec.handle = [handled](const cp::recorded_event& ev, read_model*) -> cairn::result<void> {
    handled->push_back(ev.position);
    return {};
  };
  auto sub = f.spawn(spec);
  // Asked before it ran at all: catching up from the start.
  auto s = f.status(sub);
  CHECK(s.state == subscriber_state::catching_up);
  CHECK(s.position == 0);
  CHECK(s.lag == 5);
  s = f.status(sub);
  CHECK(s.state == subscriber_state::live);
  CHECK(s.position == 5);
  CHECK(s.lag == 0);
  CHECK(s.checkpoint == 0); // the timer has not fired
  CHECK(*handled == std::vector<std::uint64_t>{1, 2, 3, 4, 5});
  f.advance(99ms);
  CHECK(f.status(sub).checkpoint == 0);
  f.advance(1ms);
  CHECK(f.status(sub).checkpoint == 5);
  CHECK(f.store->load_checkpoint("sub").value() == std::optional<std::uint64_t>{5});
  // Live: the journal's commit wakes it.
  f.append_through_journal(2);
  s = f.status(sub);
  CHECK(s.state == subscriber_state::live);
  CHECK(s.position == 7);
  CHECK(s.checkpoint == 5);
  f.advance(100ms);
  CHECK(f.status(sub).checkpoint == 7);
  CHECK(handled->size() == 7);
}

TEST_CASE("a stopped subscriber writes its final checkpoint and quits", "[unit][subscriber]") {
  fixture f;
  f.append(4);
  subscriber_spec spec;
  spec.name = "sub";
  spec.options = quiet_options();
  spec.handle = [](const cp::recorded_event&, read_model*) -> cairn::result<void> { return {}; };
  auto sub = f.spawn(spec);
  f.sched->run();
  CHECK(f.status(sub).checkpoint == 0);
  auto stopped = f.ask<bool>(sub, stop_atom::value);
  REQUIRE(stopped);
  CHECK(f.store->load_checkpoint("sub").value() == std::optional<std::uint64_t>{4});
  auto again = f.ask<subscriber_status>(sub, status_atom::value);
  CHECK_FALSE(again); // it is gone
}

TEST_CASE("a subscriber's control call that fails in the store keeps its code",
          "[unit][subscriber][errors]") {
  fixture f;
  f.append(3);
  auto calls = std::make_shared<int>(0);
  auto o = quiet_options();
  o.max_attempts = 1;
  auto sub = f.spawn(failing_at(2, calls, o));
  f.sched->run();
  REQUIRE(f.status(sub).dead_letters == 1);
  // A refusal of the caller's input stays invalid_argument…
  auto rebuilt = f.ask<bool>(sub, rebuild_atom::value);
  REQUIRE_FALSE(rebuilt);
  CHECK(rebuilt.error().code == errc::invalid_argument);
  CHECK(rebuilt.error().message == "only a projection can be rebuilt");
  CHECK(rebuilt.error().context == "sub");
  // …while a write path that is down reads as unavailable: retry later.
  caf::anon_send_exit(f.journal, caf::exit_reason::kill);
  f.sched->run();
  auto discarded = f.ask<std::uint64_t>(sub, discard_atom::value, std::uint64_t{0});
  REQUIRE_FALSE(discarded);
  CHECK(discarded.error().code == errc::unavailable);
  CHECK(discarded.error().message.find("the journal did not answer") != std::string::npos);
}

TEST_CASE("a cairn error survives the trip through a CAF error", "[unit][errors]") {
  for (auto code : {errc::rejected, errc::conflict, errc::unavailable, errc::overloaded,
                    errc::invalid_argument, errc::corrupted, errc::internal}) {
    cairn::error e{code, "message", "context"};
    auto back = from_caf_error(to_caf_error(e));
    REQUIRE(back);
    CHECK(back->code == code);
    CHECK(back->message == "message");
    CHECK(back->context == "context");
  }
  CHECK_FALSE(from_caf_error(caf::make_error(caf::sec::request_timeout)));
  CHECK_FALSE(from_caf_error(caf::error{}));
}

TEST_CASE("a projection rebuilt from the start handles every event again", "[unit][subscriber]") {
  fixture f;
  f.append(3);
  auto calls = std::make_shared<int>(0);
  subscriber_spec spec;
  spec.name = "proj";
  spec.projection = true;
  spec.options = quiet_options();
  spec.handle = [calls](const cp::recorded_event& ev, read_model* model) -> cairn::result<void> {
    ++*calls;
    return model->put("last", std::to_string(ev.position));
  };
  auto sub = f.spawn(spec);
  REQUIRE(f.ask<bool>(sub, wait_atom::value, std::uint64_t{3}));
  CHECK(*calls == 3);
  CHECK(f.store->kv_get("proj", "last").value() == std::optional<std::string>{"3"});
  auto rebuilt = f.ask<bool>(sub, rebuild_atom::value);
  REQUIRE(rebuilt);
  auto s = f.status(sub);
  CHECK(s.state == subscriber_state::live);
  CHECK(s.position == 3);
  CHECK(*calls == 6);
  REQUIRE(f.ask<bool>(sub, wait_atom::value, std::uint64_t{3}));
  CHECK(f.store->kv_get("proj", "last").value() == std::optional<std::string>{"3"});
}

TEST_CASE("a rebuild still waiting for a checkpoint write when the subscriber stops is refused",
          "[unit][subscriber]") {
  fixture f;
  f.append(3);
  subscriber_spec spec;
  spec.name = "proj";
  spec.projection = true;
  spec.options = quiet_options();
  spec.handle = [](const cp::recorded_event&, read_model*) -> cairn::result<void> { return {}; };
  auto sub = f.spawn(spec);
  f.sched->run();
  REQUIRE(f.status(sub).checkpoint == 0);
  // All three arrive before anything else runs: the wait starts a checkpoint
  // write, the rebuild waits for it, the stop comes first.
  caf::scoped_actor self{*f.sys};
  auto waited = self->request(sub, caf::infinite, wait_atom::value, std::uint64_t{3});
  auto rebuilt = self->request(sub, caf::infinite, rebuild_atom::value);
  auto stopped = self->request(sub, caf::infinite, stop_atom::value);
  f.sched->run();
  bool wait_ok = false, stop_ok = false;
  std::optional<cairn::error> rebuild_error;
  waited.receive([&](bool b) { wait_ok = b; }, [](caf::error&) {});
  rebuilt.receive([](bool) {}, [&](caf::error& e) { rebuild_error = from_caf_error(e); });
  stopped.receive([&](bool b) { stop_ok = b; }, [](caf::error&) {});
  CHECK(wait_ok);
  CHECK(stop_ok);
  REQUIRE(rebuild_error);
  CHECK(rebuild_error->code == errc::unavailable);
  CHECK(rebuild_error->message == "stopped before the rebuild started");
  CHECK(f.store->load_checkpoint("proj").value() == std::optional<std::uint64_t>{3});
}

TEST_CASE("a new subscriber whose start retention removed begins at the first position kept and "
          "says so",
          "[unit][subscriber][retention]") {
  fixture f;
  for (int i = 0; i < 10; ++i)
    f.append(1); // s-1 v1..v10 at positions 1..10
  REQUIRE(f.store->save_snapshot(cp::snapshot{"s-1", 10, "state", 1, "x"}));
  auto policy = cp::parse_retention_policy({"s=last:4"});
  REQUIRE(policy);
  auto plan = f.store->plan_retention(*policy, 0);
  REQUIRE(plan);
  auto done = f.store->apply_retention(*plan);
  REQUIRE(done);
  REQUIRE(done->first_position == 7);

  auto seen = std::make_shared<std::vector<std::uint64_t>>();
  subscriber_spec spec;
  spec.name = "late";
  spec.options = quiet_options();
  spec.handle = [seen](const cp::recorded_event& ev, read_model*) -> cairn::result<void> {
    seen->push_back(ev.position);
    return {};
  };
  auto sub = f.spawn(spec);
  f.sched->run();
  CHECK(*seen == std::vector<std::uint64_t>{7, 8, 9, 10});
  auto s = f.status(sub);
  CHECK(s.started_at_cut == 7);
  CHECK(s.position == 10);
}

TEST_CASE("a subscriber that never cut sees no jump", "[unit][subscriber][retention]") {
  fixture f;
  f.append(3);
  auto seen = std::make_shared<std::vector<std::uint64_t>>();
  subscriber_spec spec;
  spec.name = "early";
  spec.options = quiet_options();
  spec.handle = [seen](const cp::recorded_event& ev, read_model*) -> cairn::result<void> {
    seen->push_back(ev.position);
    return {};
  };
  auto sub = f.spawn(spec);
  f.sched->run();
  CHECK(*seen == std::vector<std::uint64_t>{1, 2, 3});
  CHECK(f.status(sub).started_at_cut == 0);
}
