// A plain subscriber held on a standby (docs/cluster.md#what-is-copied), on
// CAF's deterministic test coordinator over a real LMDB store and the real
// journal: held, it calls nothing; released, it starts from the further of
// its own checkpoint and the owner's replicated one.

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
#include "cairn/persistence/replication.hpp"
#include "support/journal_fixture.hpp"

using namespace std::chrono_literals;
using namespace cairn::actors;
using cairn::errc;
namespace cp = cairn::persistence;

namespace {

const std::string why = "held: this node is the standby of A";

struct fixture : cairn::test::journal_fixture {
  /// Stores the owner's checkpoint `name` at `position` as a replication
  /// frame does (persistence::log_frame::checkpoints).
  void owner_checkpoint(const std::string& name, std::uint64_t position) {
    cp::log_frame f;
    f.first_position = *store->last_position() + 1;
    f.checkpoints = {{name, position}};
    REQUIRE(store->apply_frame(f));
  }

  caf::actor spawn(subscriber_spec spec) {
    REQUIRE(validate_subscriber(spec));
    auto s = spawn_subscriber(*sys, *store, journal, std::move(spec), placement::scheduled);
    subscribers.push_back(s);
    sched->run();
    return s;
  }

  template <class T, class... Ts> cairn::result<T> ask(const caf::actor& dest, Ts... xs) {
    caf::scoped_actor self{*sys};
    auto h = self->request(dest, caf::infinite, xs...);
    sched->run();
    if (self->mailbox().empty())
      return cairn::fail(errc::internal, "no answer");
    return answer<T>(h);
  }

  /// The answer to a request whose response is in its actor's mailbox.
  template <class T, class Handle> cairn::result<T> answer(Handle& h) {
    cairn::result<T> out = cairn::fail(errc::internal, "no answer");
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
};

/// A spec named `name` whose handler records the positions it is called for.
subscriber_spec recording(const std::string& name, std::shared_ptr<std::vector<std::uint64_t>> seen,
                          bool projection = false) {
  subscriber_spec spec;
  spec.name = name;
  spec.projection = projection;
  spec.options.checkpoint_interval = std::chrono::hours{1};
  spec.options.checkpoint_every = 1;
  spec.handle = [seen](const cp::recorded_event& ev, read_model*) -> cairn::result<void> {
    seen->push_back(ev.position);
    return {};
  };
  return spec;
}

std::vector<std::uint64_t> range(std::uint64_t from, std::uint64_t to) {
  std::vector<std::uint64_t> out;
  for (auto p = from; p <= to; ++p)
    out.push_back(p);
  return out;
}

} // namespace

TEST_CASE("a held subscriber calls nothing as the log grows and says why in its status",
          "[unit][actors][subscriber][standby]") {
  fixture f;
  f.append_through_journal(4);
  auto seen = std::make_shared<std::vector<std::uint64_t>>();
  auto spec = recording("mailer", seen);
  spec.held = why;
  auto sub = f.spawn(spec);
  f.append_through_journal(6);
  f.sched->advance_time(std::chrono::hours{2});
  f.sched->run();
  CHECK(seen->empty());
  auto st = f.status(sub);
  CHECK(st.state == subscriber_state::held);
  CHECK(std::string{to_string(st.state)} == "held");
  CHECK(st.last_error == why);
  CHECK(st.checkpoint == 0);
  CHECK(st.lag == 10);
  // Replaying its dead letters would call the handler: refused.
  auto replay = f.ask<replay_report>(sub, replay_atom::value, std::uint64_t{0});
  REQUIRE_FALSE(replay);
  CHECK(replay.error().code == errc::unavailable);
  CHECK(seen->empty());
}

TEST_CASE("released, a held subscriber resumes after the owner's replicated checkpoint",
          "[unit][actors][subscriber][standby]") {
  fixture f;
  f.append_through_journal(10);
  f.owner_checkpoint("mailer", 7);
  f.owner_checkpoint("other", 9); // another subscriber's: not this one's
  auto seen = std::make_shared<std::vector<std::uint64_t>>();
  auto spec = recording("mailer", seen);
  spec.held = why;
  auto sub = f.spawn(spec);
  CHECK(seen->empty());
  REQUIRE(f.ask<bool>(sub, unhold_atom::value));
  CHECK(*seen == range(8, 10)); // the owner's 8-10 again: at-least-once
  f.append_through_journal(2);
  CHECK(*seen == range(8, 12));
  auto st = f.status(sub);
  CHECK(st.state == subscriber_state::live);
  CHECK(st.last_error.empty());
  CHECK(st.checkpoint == 12);
  CHECK(*f.store->load_checkpoint("mailer") == std::uint64_t{12});
}

TEST_CASE("released, a held subscriber keeps its own checkpoint when it is further",
          "[unit][actors][subscriber][standby]") {
  fixture f;
  f.append_through_journal(10);
  f.owner_checkpoint("mailer", 4);
  REQUIRE(f.store->save_checkpoint({"mailer", 8}));
  auto seen = std::make_shared<std::vector<std::uint64_t>>();
  auto spec = recording("mailer", seen);
  spec.held = why;
  auto sub = f.spawn(spec);
  REQUIRE(f.ask<bool>(sub, unhold_atom::value));
  CHECK(*seen == range(9, 10));
  // Without any checkpoint it starts as a new subscriber: from the beginning.
  auto fresh = std::make_shared<std::vector<std::uint64_t>>();
  auto spec2 = recording("fresh", fresh);
  spec2.held = why;
  auto sub2 = f.spawn(spec2);
  REQUIRE(f.ask<bool>(sub2, unhold_atom::value));
  CHECK(*fresh == range(1, 10));
}

TEST_CASE("holding a running subscriber stops it where it is; a projection is never held",
          "[unit][actors][subscriber][standby]") {
  fixture f;
  auto plain_seen = std::make_shared<std::vector<std::uint64_t>>();
  auto model_seen = std::make_shared<std::vector<std::uint64_t>>();
  auto plain = f.spawn(recording("mailer", plain_seen));
  auto projection = f.spawn(recording("totals", model_seen, true));
  f.append_through_journal(5);
  CHECK(*plain_seen == range(1, 5));
  CHECK(*model_seen == range(1, 5));
  REQUIRE(f.ask<bool>(plain, hold_atom::value, why));
  REQUIRE(f.ask<bool>(projection, hold_atom::value, why));
  f.append_through_journal(5);
  CHECK(*plain_seen == range(1, 5));
  CHECK(*model_seen == range(1, 10));
  CHECK(f.status(plain).state == subscriber_state::held);
  CHECK(f.status(plain).checkpoint == 5); // its progress was saved
  CHECK(f.status(projection).state == subscriber_state::live);
  // Released with no owner's checkpoint: on from its own.
  REQUIRE(f.ask<bool>(plain, unhold_atom::value));
  CHECK(*plain_seen == range(1, 10));
}

TEST_CASE("waiting for a held subscriber is answered unavailable at once, not at the timeout",
          "[unit][actors][subscriber][standby]") {
  fixture f;
  auto seen = std::make_shared<std::vector<std::uint64_t>>();
  auto sub = f.spawn(recording("mailer", seen));
  f.append_through_journal(5);
  REQUIRE(*seen == range(1, 5));
  // One waits for what it handled, one for what it has not seen yet.
  caf::scoped_actor self{*f.sys};
  auto handled = self->request(sub, caf::infinite, wait_atom::value, std::uint64_t{5});
  auto beyond = self->request(sub, caf::infinite, wait_atom::value, std::uint64_t{8});
  REQUIRE(f.ask<bool>(sub, hold_atom::value, why));
  f.sched->run();
  // Both are answered (an unanswered one would block the receive).
  REQUIRE_FALSE(self->mailbox().empty());
  CHECK(f.answer<bool>(handled).value_or(false));
  REQUIRE_FALSE(self->mailbox().empty());
  auto waited = f.answer<bool>(beyond);
  REQUIRE_FALSE(waited);
  CHECK(waited.error().code == errc::unavailable);
  CHECK(waited.error().message.find(why) != std::string::npos);
  // Held already: a new wait for what it has not handled fails the same way.
  auto later = f.ask<bool>(sub, wait_atom::value, std::uint64_t{6});
  REQUIRE_FALSE(later);
  CHECK(later.error().code == errc::unavailable);
  CHECK(f.ask<bool>(sub, wait_atom::value, std::uint64_t{5}));
}
