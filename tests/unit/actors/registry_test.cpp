// The registry on CAF's deterministic test coordinator: time moves only when
// the test advances it, and every message runs when the test says so. The
// aggregates are test doubles that follow the protocol of registry.hpp.

#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <caf/all.hpp>
#include <catch2/catch.hpp>

#include "cairn/actors/messages.hpp"
#include "cairn/actors/metrics.hpp"
#include "cairn/actors/registry.hpp"

using namespace std::chrono_literals;
using namespace cairn::actors;
using cairn::errc;

namespace {

using release_atom = caf::atom_constant<caf::atom("t_release")>;
using report_atom = caf::atom_constant<caf::atom("t_report")>;

/// What the aggregate doubles do, and what they saw. One per test.
struct script {
  bool activation_fails = false;  ///< Report a failed recovery.
  bool defer_activation = false;  ///< Report only on report_atom.
  bool hold_stop = false;         ///< Quit on stop only after release_atom.
  int spawned = 0;                ///< Incarnations so far.
  std::vector<caf::actor> actors; ///< Every incarnation, in spawn order.
};

/// An aggregate double: answers each command with its incarnation number in
/// `first_version` and the command's id in `message`; the payload "throw"
/// plays user code that threw (failed_atom, then it quits).
caf::behavior fake_aggregate(caf::event_based_actor* self, std::string stream, caf::actor registry,
                             std::shared_ptr<script> s, int incarnation) {
  auto report = [=] { self->send(registry, activated_atom::value, stream, !s->activation_fails); };
  if (!s->defer_activation)
    report();
  return {
    [=](command_atom, command_msg& m) -> reply_msg {
      if (s->activation_fails)
        return error_reply({errc::unavailable, "cannot recover", stream});
      if (m.payload == "throw") {
        self->send(registry, failed_atom::value, stream, std::string{"user code threw"});
        self->quit(caf::make_error(caf::sec::runtime_error, "user code threw"));
        return error_reply({errc::internal, "user code threw", stream});
      }
      reply_msg r;
      r.first_version = static_cast<std::uint64_t>(incarnation);
      r.message = m.command_id;
      return r;
    },
    [=](report_atom) { report(); },
    [=](stop_atom) {
      if (!s->hold_stop)
        self->quit();
    },
    [=](release_atom) { self->quit(); },
  };
}

/// A client that sends commands and keeps every answer it gets.
struct answers {
  std::vector<reply_msg> replies;
  std::vector<caf::error> errors;
  /// How many answers each command id got.
  [[nodiscard]] std::map<std::string, int> per_command() const {
    std::map<std::string, int> out;
    for (const auto& r : replies)
      if (r.ok())
        ++out[r.message];
    return out;
  }
};

caf::behavior client(caf::event_based_actor* self, caf::actor registry,
                     std::shared_ptr<answers> seen) {
  return {
    [=](command_msg& m) {
      self->request(registry, caf::infinite, command_atom::value, std::move(m))
        .then([=](reply_msg& r) { seen->replies.push_back(std::move(r)); },
              [=](caf::error& e) { seen->errors.push_back(std::move(e)); });
    },
  };
}

struct fixture {
  metrics m; // outlives the actor system
  caf::actor_system_config cfg;
  std::unique_ptr<caf::actor_system> sys;
  caf::scheduler::test_coordinator* sched = nullptr;
  caf::actor registry;
  std::shared_ptr<script> s = std::make_shared<script>();
  std::shared_ptr<answers> seen = std::make_shared<answers>();
  caf::actor sender;

  explicit fixture(registry_options opts = {}) {
    cfg.set("scheduler.policy", caf::atom("testing"));
    sys = std::make_unique<caf::actor_system>(cfg);
    sched = &dynamic_cast<caf::scheduler::test_coordinator&>(sys->scheduler());
    registry = spawn_registry(*sys, opts, m);
    aggregate_kind kind;
    kind.category = "t";
    auto sc = s;
    kind.spawn = [sc](caf::local_actor& parent, const std::string& id) {
      auto reg = caf::actor_cast<caf::actor>(&parent);
      auto a = parent.system().spawn(fake_aggregate, "t-" + id, reg, sc, ++sc->spawned);
      sc->actors.push_back(a);
      return a;
    };
    caf::anon_send(registry, kind_atom::value, std::move(kind));
    sender = sys->spawn(client, registry, seen);
    sched->run();
  }

  ~fixture() {
    caf::anon_send_exit(sender, caf::exit_reason::kill);
    caf::anon_send_exit(registry, caf::exit_reason::kill);
    for (auto& a : s->actors)
      caf::anon_send_exit(a, caf::exit_reason::kill);
    sched->run();
  }

  fixture(const fixture&) = delete;
  fixture& operator=(const fixture&) = delete;

  /// Sends a command for aggregate `id` and runs everything that follows.
  void command(const std::string& id, const std::string& command_id,
               const std::string& payload = "ok") {
    command_msg msg;
    msg.category = "t";
    msg.id = id;
    msg.command_id = command_id;
    msg.payload = payload;
    caf::anon_send(sender, std::move(msg));
    sched->run();
  }

  void advance(caf::timespan d) {
    sched->advance_time(d);
    sched->run();
  }

  [[nodiscard]] const reply_msg& last() const {
    REQUIRE_FALSE(seen->replies.empty());
    return seen->replies.back();
  }
};

/// Makes the live aggregate throw and checks the refusal that follows.
void make_it_throw(fixture& f, const std::string& command_id) {
  f.command("a", command_id, "throw");
  CHECK(f.last().code == static_cast<std::uint8_t>(errc::internal));
}

/// Checks that a command is refused as out of service for `left` more ms.
void refused_for(fixture& f, const std::string& command_id, long left) {
  auto spawned = f.s->spawned;
  f.command("a", command_id);
  const auto& r = f.last();
  CHECK(r.code == static_cast<std::uint8_t>(errc::internal));
  CHECK(r.message
        == "user code threw (out of service for another " + std::to_string(left) + " ms)");
  CHECK(f.s->spawned == spawned);
}

} // namespace

TEST_CASE("an aggregate whose user code threw is refused for 1 s, doubling to 32 s",
          "[unit][registry]") {
  fixture f;
  f.command("a", "c0");
  REQUIRE(f.last().ok());
  REQUIRE(f.s->spawned == 1);
  long window = 1000;
  for (int failure = 1; failure <= 7; ++failure) {
    INFO("failure " << failure);
    make_it_throw(f, "throw" + std::to_string(failure));
    refused_for(f, "early" + std::to_string(failure), window);
    f.advance(std::chrono::milliseconds{window - 1});
    refused_for(f, "late" + std::to_string(failure), 1);
    f.advance(1ms);
    auto spawned = f.s->spawned;
    f.command("a", "again" + std::to_string(failure));
    CHECK(f.last().ok());
    CHECK(f.s->spawned == spawned + 1); // a new incarnation
    window = std::min(window * 2, 32000L);
  }
  CHECK(window == 32000);
  auto stats = f.m.snapshot();
  CHECK(stats.activations == 8);
}

TEST_CASE("an aggregate that cannot recover restarts after 20 ms, doubling per failure",
          "[unit][registry]") {
  fixture f;
  f.s->activation_fails = true;
  f.command("a", "c1");
  CHECK(f.last().code == static_cast<std::uint8_t>(errc::unavailable));
  REQUIRE(f.s->spawned == 1);
  // Failure 1: the next command waits 20 ms before the restart.
  f.command("a", "c2");
  CHECK(f.seen->replies.size() == 1); // buffered
  f.advance(19ms);
  CHECK(f.s->spawned == 1);
  f.advance(1ms);
  CHECK(f.s->spawned == 2);
  CHECK(f.seen->replies.size() == 2);
  // Failure 2: 40 ms. Then it recovers and answers normally.
  f.s->activation_fails = false;
  f.command("a", "c3");
  f.advance(39ms);
  CHECK(f.s->spawned == 2);
  f.advance(1ms);
  CHECK(f.s->spawned == 3);
  REQUIRE(f.seen->replies.size() == 3);
  CHECK(f.last().ok());
  CHECK(f.last().first_version == 3);
}

TEST_CASE("commands sent while an aggregate passivates reach its next incarnation once",
          "[unit][registry]") {
  registry_options o;
  o.idle_timeout = 10s;
  fixture f{o};
  f.s->hold_stop = true;
  f.command("a", "before");
  REQUIRE(f.last().ok());
  CHECK(f.last().first_version == 1);
  // Idle past the timeout: the sweep tells it to stop; it holds on.
  f.advance(11s);
  REQUIRE(f.s->actors.size() == 1);
  for (int i = 0; i < 5; ++i)
    f.command("a", "during" + std::to_string(i));
  CHECK(f.seen->replies.size() == 1); // all buffered in the registry
  CHECK(f.s->spawned == 1);
  caf::anon_send(f.s->actors.front(), release_atom::value);
  f.sched->run();
  CHECK(f.s->spawned == 2);
  REQUIRE(f.seen->replies.size() == 6);
  CHECK(f.seen->errors.empty());
  auto per = f.seen->per_command();
  for (int i = 0; i < 5; ++i) {
    INFO("during" << i);
    CHECK(per["during" + std::to_string(i)] == 1);
  }
  for (std::size_t i = 1; i < f.seen->replies.size(); ++i) {
    CHECK(f.seen->replies[i].first_version == 2);                          // the next incarnation
    CHECK(f.seen->replies[i].message == "during" + std::to_string(i - 1)); // in order
  }
  CHECK(f.m.snapshot().passivations == 1);
}

TEST_CASE("at most max_activations aggregates recover at once; the rest wait their turn",
          "[unit][registry]") {
  registry_options o;
  o.max_activations = 2;
  fixture f{o};
  f.s->defer_activation = true;
  f.command("a", "ca");
  f.command("b", "cb");
  f.command("c", "cc");
  f.command("c", "cc2");
  CHECK(f.s->spawned == 2);           // c waits for a slot
  CHECK(f.seen->replies.size() == 2); // a and b answer while they recover
  caf::anon_send(f.s->actors[0], report_atom::value);
  f.sched->run();
  REQUIRE(f.s->spawned == 3); // a's slot went to c
  REQUIRE(f.seen->replies.size() == 4);
  auto per = f.seen->per_command();
  CHECK(per["cc"] == 1);
  CHECK(per["cc2"] == 1);
  f.command("d", "cd");
  CHECK(f.s->spawned == 3); // b and c still recover
  caf::anon_send(f.s->actors[1], report_atom::value);
  f.sched->run();
  CHECK(f.s->spawned == 4);
  CHECK(f.seen->per_command()["cd"] == 1);
}

TEST_CASE("an aggregate evicted while it recovers hands its later commands to the next one",
          "[unit][registry]") {
  registry_options o;
  o.max_live = 1;
  fixture f{o};
  f.s->defer_activation = true;
  f.s->hold_stop = true;
  f.command("a", "a1");
  f.command("b", "b1"); // past max_live: a, still recovering, is told to stop
  REQUIRE(f.s->spawned == 2);
  f.command("a", "a2"); // buffered for a's next incarnation
  CHECK(f.seen->per_command()["a2"] == 0);
  caf::anon_send(f.s->actors[0], report_atom::value); // a recovered after all, then stops
  caf::anon_send(f.s->actors[0], release_atom::value);
  f.sched->run();
  REQUIRE(f.s->spawned == 3);
  auto per = f.seen->per_command();
  CHECK(per["a1"] == 1);
  CHECK(per["b1"] == 1);
  CHECK(per["a2"] == 1);
  CHECK(f.last().message == "a2");
  CHECK(f.last().first_version == 3);
  CHECK(f.m.snapshot().passivations == 1); // it reported before it stopped: clean
}
