// The aggregate actor's core on CAF's deterministic test coordinator: a real
// LMDB store, and in place of the journal and the registry two small actors
// the test drives, so every interleaving below is chosen, not waited for.

#include <deque>
#include <memory>
#include <stdexcept>
#include <string>
#include <variant>
#include <vector>

#include <caf/all.hpp>
#include <catch2/catch.hpp>
#include <cereal/types/variant.hpp>

#include "cairn/actors/aggregate_actor.hpp"
#include "cairn/actors/log.hpp"
#include "cairn/actors/messages.hpp"
#include "support/temp_dir.hpp"

namespace {

using namespace cairn;
using namespace cairn::actors;

/// A running total whose `poison` event throws in evolve and whose `explode`
/// command throws in decide.
struct tally {
  static constexpr const char* category = "tally";
  struct state {
    std::int64_t total = 0;
    template <class Ar> void serialize(Ar& ar) { ar(total); }
  };
  struct add {
    std::int64_t n = 0;
    template <class Ar> void serialize(Ar& ar) { ar(n); }
  };
  struct poison {
    template <class Ar> void serialize(Ar&) {}
  };
  struct explode {
    template <class Ar> void serialize(Ar&) {}
  };
  struct added {
    static constexpr const char* type_name = "tally_added";
    std::int64_t n = 0;
    template <class Ar> void serialize(Ar& ar) { ar(n); }
  };
  struct poisoned {
    static constexpr const char* type_name = "tally_poisoned";
    template <class Ar> void serialize(Ar&) {}
  };
  using command = std::variant<add, poison, explode>;
  using event = std::variant<added, poisoned>;

  static state initial() { return {}; }
  static decision<event> decide(const state&, const command& c) {
    if (auto a = std::get_if<add>(&c)) {
      if (a->n <= 0)
        return reject("not_positive");
      return emit<event>(added{a->n});
    }
    if (std::holds_alternative<poison>(c))
      return emit<event>(poisoned{});
    throw std::runtime_error("decide exploded");
  }
  static state evolve(state s, const event& e) {
    if (auto a = std::get_if<added>(&e)) {
      s.total += a->n;
      return s;
    }
    throw std::runtime_error("poisoned");
  }
};

/// Holds each append until the test releases it into the real store.
struct journal_double {
  struct held {
    journal_append request;
    caf::response_promise promise;
  };
  std::deque<held> waiting;
  std::vector<std::size_t> request_sizes; ///< Appends per request, in arrival order.
  std::vector<persistence::snapshot> snapshots;
};

/// Answers the oldest held append. A promise is delivered inside its own
/// actor: outside, CAF would use an execution unit the test coordinator
/// has already discarded.
using release_atom = caf::atom_constant<caf::atom("t_release")>;

caf::behavior journal_actor(caf::event_based_actor* self, std::shared_ptr<journal_double> j) {
  return {
    [j](release_atom, journal_result& r) {
      auto promise = std::move(j->waiting.front().promise);
      j->waiting.pop_front();
      promise.deliver(std::move(r));
    },
    [self, j](append_atom, journal_append& a) -> caf::result<journal_result> {
      j->request_sizes.push_back(a.requests.size());
      auto promise = self->make_response_promise();
      j->waiting.push_back({std::move(a), promise});
      return promise;
    },
    [j](snapshot_atom, journal_snapshot& s) { j->snapshots.push_back(std::move(s.value)); },
  };
}

/// Records what the aggregate tells the registry; answers commands handed
/// back to it with a marker.
struct registry_double {
  std::vector<std::string> activated;
  std::vector<std::string> failed;
  std::vector<command_msg> handed_back;
};

caf::behavior registry_actor(caf::event_based_actor*, std::shared_ptr<registry_double> r) {
  return {
    [r](activated_atom, const std::string& stream, bool ok) {
      r->activated.push_back(stream + (ok ? " ok" : " failed"));
    },
    [](touch_atom) {},
    [r](failed_atom, const std::string&, const std::string& why) { r->failed.push_back(why); },
    [r](command_atom, const command_msg& m) -> reply_msg {
      r->handed_back.push_back(m);
      return error_reply({errc::unavailable, "handed back to the registry"});
    },
  };
}

struct fixture {
  test::temp_dir dir;
  std::unique_ptr<persistence::event_store> store;
  std::shared_ptr<persistence::event_registry> events =
    std::make_shared<persistence::event_registry>();
  std::shared_ptr<const aggregate_type> type;
  metrics stats;
  caf::actor_system_config cfg;
  std::unique_ptr<caf::actor_system> sys;
  caf::scheduler::test_coordinator* sched = nullptr;
  std::shared_ptr<journal_double> journal = std::make_shared<journal_double>();
  std::shared_ptr<registry_double> registry = std::make_shared<registry_double>();
  std::shared_ptr<aggregate_env> env = std::make_shared<aggregate_env>();

  fixture() {
    auto opened = persistence::open_store(dir.path());
    REQUIRE(opened);
    store = std::move(*opened);
    REQUIRE(persistence::register_event_types<tally::event>(*events));
    type = std::make_shared<typed_aggregate<tally>>(events);
    cfg.set("scheduler.policy", caf::atom("testing"));
    sys = std::make_unique<caf::actor_system>(cfg);
    sched = &dynamic_cast<caf::scheduler::test_coordinator&>(sys->scheduler());
    sched->clock().current_time += std::chrono::hours(1); // a time point of 0 means "never"
    env->store = store.get();
    env->journal = sys->spawn(journal_actor, journal);
    env->registry_actor = sys->spawn(registry_actor, registry);
    env->stats = &stats;
    env->log = logger(aggregate_logger);
    env->request_timeout = std::chrono::milliseconds{100};
    sched->run();
  }

  ~fixture() {
    // A held append's promise keeps its aggregate alive, and the aggregate
    // keeps the journal double alive: drop them, or a test that failed
    // midway would wait forever for the actor system to empty.
    journal->waiting.clear();
    sys->clock().cancel_all();
    sched->run();
  }

  caf::actor spawn(const std::string& id = "t1") {
    auto a = spawn_aggregate(*sys, id, type, env);
    sched->run();
    return a;
  }

  /// Sends `cmd` from a fresh client; its reply lands in `replies`.
  void send(const caf::actor& agg, const tally::command& cmd, std::string command_id = {}) {
    command_msg m;
    m.category = tally::category;
    m.id = "t1";
    persistence::encode_payload(cmd, m.payload);
    m.command_id = std::move(command_id);
    ask(agg, std::move(m));
  }

  void query(const caf::actor& agg) {
    command_msg m;
    m.category = tally::category;
    m.id = "t1";
    m.query = true;
    ask(agg, std::move(m));
  }

  void ask(const caf::actor& agg, command_msg m) {
    // The arguments go through spawn, not a capture: CAF 0.17 binds a
    // reference to a null tuple for a function actor without any (UBSan).
    sys->spawn(client, agg, std::move(m), replies);
  }

  static void client(caf::event_based_actor* self, const caf::actor& agg, const command_msg& m,
                     const std::shared_ptr<std::vector<reply_msg>>& out) {
    self->request(agg, caf::infinite, command_atom::value, m)
      .then([out](reply_msg& r) { out->push_back(std::move(r)); },
            [out](caf::error&) {
              out->push_back(error_reply({errc::internal, "no answer"}));
            });
  }

  /// Answers the oldest held append: into the store, or with `err`.
  void release(std::optional<cairn::error> err = {}) {
    REQUIRE(!journal->waiting.empty());
    journal_result out;
    for (const auto& req : journal->waiting.front().request.requests)
      out.values.push_back(err ? result<persistence::append_result>{tl::unexpected(*err)}
                               : store->append(req));
    caf::anon_send(env->journal, release_atom::value, std::move(out));
    sched->run();
  }

  /// True when `agg` has terminated: a request to it fails in CAF itself.
  /// Leaves `replies` as it was.
  bool gone(const caf::actor& agg) {
    auto before = replies->size();
    query(agg);
    sched->run();
    REQUIRE(replies->size() == before + 1);
    auto answer = replies->back();
    replies->pop_back();
    return !answer.ok() && answer.message == "no answer";
  }

  std::uint64_t stored_version() {
    auto v = store->stream_version("tally-t1");
    REQUIRE(v);
    return *v;
  }

  std::shared_ptr<std::vector<reply_msg>> replies = std::make_shared<std::vector<reply_msg>>();
};

std::int64_t total_of(const reply_msg& r) {
  auto s = persistence::decode_payload<tally::state>(r.state);
  REQUIRE(s);
  return s->total;
}

} // namespace

TEST_CASE("commands decided while an append is at the journal are pipelined into one request "
          "and answered in order",
          "[unit][aggregate]") {
  fixture f;
  auto agg = f.spawn();
  REQUIRE(f.registry->activated == std::vector<std::string>{"tally-t1 ok"});
  f.send(agg, tally::add{1});
  f.sched->run();
  f.send(agg, tally::add{2});
  f.send(agg, tally::add{0}); // rejected, but answered after the two before it
  f.send(agg, tally::add{3});
  f.sched->run();
  CHECK(f.replies->empty());
  CHECK(f.journal->request_sizes == std::vector<std::size_t>{1});
  f.release();
  CHECK(f.replies->size() == 1);
  CHECK(f.journal->request_sizes == std::vector<std::size_t>{1, 2});
  f.release();
  REQUIRE(f.replies->size() == 4);
  CHECK((*f.replies)[0].last_version == 1);
  CHECK((*f.replies)[1].last_version == 2);
  CHECK((*f.replies)[2].error().code == errc::rejected);
  CHECK((*f.replies)[2].message == "not_positive");
  CHECK((*f.replies)[3].last_version == 3);
  f.query(agg);
  f.sched->run();
  CHECK(total_of(f.replies->back()) == 6);
  CHECK(f.stored_version() == 3);
}

TEST_CASE("when an append fails, the appends decided on top of it never reach the store and the "
          "aggregate reloads before the next command",
          "[unit][aggregate]") {
  fixture f;
  auto agg = f.spawn();
  f.send(agg, tally::add{1});
  f.sched->run();
  f.send(agg, tally::add{2});
  f.send(agg, tally::add{3});
  f.sched->run();
  // Another writer takes version 1: the held append's expectation is stale,
  // and the next one's (version 1) would now hold if it reached the store.
  persistence::append_request foreign;
  foreign.stream = "tally-t1";
  auto added = f.events->encode(tally::event{tally::added{100}});
  REQUIRE(added);
  foreign.events.push_back(*added);
  REQUIRE(f.store->append(foreign));
  f.release();
  REQUIRE(f.replies->size() == 3);
  CHECK((*f.replies)[0].error().code == errc::conflict);
  CHECK((*f.replies)[1].error().code == errc::unavailable);
  CHECK((*f.replies)[2].error().code == errc::unavailable);
  CHECK(f.journal->waiting.empty());
  CHECK(f.stored_version() == 1);
  // Reloaded: the next command sees the foreign event.
  f.send(agg, tally::add{5});
  f.sched->run();
  f.release();
  REQUIRE(f.replies->size() == 4);
  CHECK((*f.replies)[3].last_version == 2);
  f.query(agg);
  f.sched->run();
  CHECK(total_of(f.replies->back()) == 105);
}

TEST_CASE("an aggregate told to passivate while its append fails stops once it has answered",
          "[unit][aggregate]") {
  fixture f;
  auto agg = f.spawn();
  f.send(agg, tally::add{1});
  f.send(agg, tally::add{2});
  f.sched->run(); // 1 at the journal, 2 gathered behind it
  caf::anon_send(agg, stop_atom::value);
  f.sched->run();
  f.release({cairn::error{errc::invalid_argument, "too large"}});
  REQUIRE(f.replies->size() == 2);
  CHECK((*f.replies)[0].error().code == errc::invalid_argument);
  CHECK((*f.replies)[1].error().code == errc::unavailable);
  CHECK(f.gone(agg));
  CHECK(f.journal->waiting.empty());
  CHECK(f.stored_version() == 0);
}

TEST_CASE("a passivating aggregate answers what it holds and hands later commands back to the "
          "registry",
          "[unit][aggregate]") {
  fixture f;
  auto agg = f.spawn();
  f.send(agg, tally::add{1});
  f.sched->run();
  caf::anon_send(agg, stop_atom::value);
  f.sched->run();
  f.send(agg, tally::add{2}); // while an append is at the journal
  f.sched->run();
  REQUIRE(f.registry->handed_back.size() == 1);
  f.release();
  CHECK(f.gone(agg));
  REQUIRE(f.replies->size() == 2);
  CHECK((*f.replies)[0].message == "handed back to the registry");
  CHECK((*f.replies)[1].ok());
  CHECK((*f.replies)[1].last_version == 1);
  CHECK(f.stored_version() == 1);
}

TEST_CASE("an append the journal does not answer within the bound fails as unavailable, and its "
          "late answer is ignored",
          "[unit][aggregate]") {
  fixture f;
  auto agg = f.spawn();
  f.send(agg, tally::add{1});
  f.sched->run();
  f.sched->advance_time(std::chrono::milliseconds{50});
  CHECK(f.replies->empty());
  f.sched->advance_time(std::chrono::milliseconds{60});
  f.sched->run();
  REQUIRE(f.replies->size() == 1);
  CHECK((*f.replies)[0].error().code == errc::unavailable);
  CHECK_THAT((*f.replies)[0].message, Catch::Contains("did not answer within 100 ms"));
  CHECK(f.gone(agg)); // the outcome is unknown: the next incarnation rereads the store
  f.release();
  CHECK(f.replies->size() == 1);
}

TEST_CASE("a repeated command id is answered with the first outcome, in flight or stored",
          "[unit][aggregate]") {
  fixture f;
  auto agg = f.spawn();
  f.send(agg, tally::add{7}, "c-1");
  f.send(agg, tally::add{7}, "c-1");
  f.sched->run();
  f.release();
  REQUIRE(f.replies->size() == 2);
  CHECK((*f.replies)[0].last_version == 1);
  CHECK_FALSE((*f.replies)[0].duplicate);
  CHECK((*f.replies)[1].last_version == 1);
  CHECK((*f.replies)[1].duplicate);
  caf::anon_send_exit(agg, caf::exit_reason::user_shutdown);
  f.sched->run();
  auto again = f.spawn(); // a new incarnation finds the id in the store
  f.send(again, tally::add{7}, "c-1");
  f.sched->run();
  REQUIRE(f.replies->size() == 3);
  CHECK((*f.replies)[2].duplicate);
  CHECK((*f.replies)[2].last_version == 1);
  REQUIRE((*f.replies)[2].events.size() == 1);
  CHECK((*f.replies)[2].events[0].type == "tally_added");
  CHECK(f.journal->waiting.empty());
  CHECK(f.stored_version() == 1);
}

TEST_CASE("a throwing evolve puts the aggregate out of service after the appends at the journal "
          "are answered",
          "[unit][aggregate]") {
  fixture f;
  auto agg = f.spawn();
  f.send(agg, tally::add{1});
  f.sched->run();
  f.send(agg, tally::poison{});
  f.send(agg, tally::add{2});
  f.sched->run();
  // The poisoned command failed before anything of it was appended; the
  // aggregate refuses what follows and waits only for the journal.
  REQUIRE(f.replies->size() == 2);
  CHECK((*f.replies)[0].error().code == errc::internal);
  CHECK_THAT((*f.replies)[0].message, Catch::Contains("nothing of this command was appended"));
  CHECK((*f.replies)[1].error().code == errc::internal);
  CHECK_THAT((*f.replies)[1].message, Catch::Contains("evolve threw: poisoned"));
  REQUIRE(f.registry->failed.size() == 1);
  CHECK_FALSE(f.gone(agg));
  f.release();
  REQUIRE(f.replies->size() == 3);
  CHECK((*f.replies)[2].ok()); // durable: it gets its real outcome
  CHECK(f.gone(agg));
  CHECK(f.stored_version() == 1);
}

TEST_CASE("a throwing decide rejects only its own command as internal", "[unit][aggregate]") {
  fixture f;
  auto agg = f.spawn();
  f.send(agg, tally::explode{});
  f.send(agg, tally::add{1});
  f.sched->run();
  REQUIRE(f.replies->size() == 1);
  CHECK((*f.replies)[0].error().code == errc::internal);
  CHECK_THAT((*f.replies)[0].message, Catch::Contains("decide threw: decide exploded"));
  f.release();
  REQUIRE(f.replies->size() == 2);
  CHECK((*f.replies)[1].ok());
  CHECK(f.registry->failed.empty());
}

TEST_CASE("a snapshot is sent every snapshot_interval events and a new incarnation recovers from "
          "it plus the events after it",
          "[unit][aggregate]") {
  fixture f;
  f.env->snapshot_interval = 2;
  auto agg = f.spawn();
  for (int n = 1; n <= 3; ++n) {
    f.send(agg, tally::add{n});
    f.sched->run();
    f.release();
  }
  REQUIRE(f.journal->snapshots.size() == 1);
  const auto& snap = f.journal->snapshots[0];
  CHECK(snap.version == 2);
  CHECK(snap.state_type == "tally.state");
  // Write a snapshot that disagrees with the events: recovery must use it.
  auto doctored = snap;
  doctored.data.clear(); // encode_payload appends
  persistence::encode_payload(tally::state{1000}, doctored.data);
  REQUIRE(f.store->save_snapshot(doctored));
  auto loaded = f.store->load_snapshot("tally-t1");
  REQUIRE(loaded);
  REQUIRE(*loaded);
  CHECK((*loaded)->version == 2);
  caf::anon_send_exit(agg, caf::exit_reason::user_shutdown);
  f.sched->run();
  auto again = f.spawn();
  f.query(again);
  f.sched->run();
  REQUIRE(f.replies->size() == 4);
  CHECK(f.replies->back().last_version == 3);
  CHECK(total_of(f.replies->back()) == 1003);
}

TEST_CASE("an aggregate whose recovery throws answers every command with the reason and tells "
          "the registry",
          "[unit][aggregate]") {
  fixture f;
  persistence::append_request poisoned;
  poisoned.stream = "tally-t1";
  auto ev = f.events->encode(tally::event{tally::poisoned{}});
  REQUIRE(ev);
  poisoned.events.push_back(*ev);
  REQUIRE(f.store->append(poisoned));
  auto agg = f.spawn();
  CHECK(f.registry->activated == std::vector<std::string>{"tally-t1 failed"});
  REQUIRE(f.registry->failed.size() == 1);
  f.send(agg, tally::add{1});
  f.sched->run();
  REQUIRE(f.replies->size() == 1);
  CHECK((*f.replies)[0].error().code == errc::internal);
  CHECK_THAT((*f.replies)[0].message, Catch::Contains("evolve of tally_poisoned threw"));
  CHECK((*f.replies)[0].context == "tally-t1 v1");
  CHECK(f.journal->request_sizes.empty());
}

namespace {

/// A command of tenant `tenant` for tally-t1.
command_msg tenant_command(const tally::command& cmd, std::string tenant) {
  command_msg m;
  m.category = tally::category;
  m.id = "t1";
  m.tenant = std::move(tenant);
  persistence::encode_payload(cmd, m.payload);
  return m;
}

} // namespace

TEST_CASE("a command naming another tenant than its stream's, or none, is refused before "
          "decide and never reaches the journal",
          "[unit][aggregate][tenant]") {
  fixture f;
  auto agg = f.spawn();
  f.ask(agg, tenant_command(tally::add{1}, "acme"));
  f.sched->run();
  f.release();
  REQUIRE(f.replies->size() == 1);
  CHECK((*f.replies)[0].ok());
  f.ask(agg, tenant_command(tally::add{2}, "globex"));
  f.ask(agg, tenant_command(tally::add{3}, ""));
  f.sched->run();
  REQUIRE(f.replies->size() == 3);
  CHECK(f.journal->request_sizes == std::vector<std::size_t>{1});
  for (int i : {1, 2}) {
    const auto& r = (*f.replies)[static_cast<std::size_t>(i)];
    CHECK(r.error().code == errc::invalid_argument);
    CHECK_THAT(r.message, Catch::Contains("'acme'") && Catch::Contains("tally-t1"));
  }
  CHECK_THAT((*f.replies)[1].message, Catch::Contains("'globex'"));
  f.ask(agg, tenant_command(tally::add{4}, "acme"));
  f.sched->run();
  f.release();
  REQUIRE(f.replies->size() == 4);
  CHECK(f.replies->back().last_version == 2);
  f.query(agg);
  f.sched->run();
  CHECK(total_of(f.replies->back()) == 5);
}

TEST_CASE("a stream without a tenant takes its first command's, also for the commands decided "
          "while that one is at the journal",
          "[unit][aggregate][tenant]") {
  fixture f;
  auto agg = f.spawn();
  f.ask(agg, tenant_command(tally::add{1}, "acme"));
  f.sched->run(); // at the journal, not yet stored
  f.ask(agg, tenant_command(tally::add{2}, "globex"));
  f.sched->run();
  REQUIRE(f.replies->size() == 1);
  CHECK(f.replies->front().error().code == errc::invalid_argument);
  f.release();
  REQUIRE(f.replies->size() == 2);
  CHECK(f.replies->back().last_version == 1);
}

TEST_CASE("an aggregate recovered from a snapshot alone still knows its stream's tenant",
          "[unit][aggregate][tenant]") {
  fixture f;
  persistence::append_request req;
  req.stream = "tally-t1";
  req.meta.tenant = "acme";
  for (int n : {1, 2}) {
    auto added = f.events->encode(tally::event{tally::added{n}});
    REQUIRE(added);
    req.events.push_back(*added);
  }
  REQUIRE(f.store->append(req));
  persistence::snapshot snap;
  snap.stream = "tally-t1";
  snap.version = 2;
  snap.state_type = f.type->state_type();
  snap.schema_version = f.type->state_schema();
  persistence::encode_payload(tally::state{1000}, snap.data); // not the events' 3: proves its use
  REQUIRE(f.store->save_snapshot(snap));
  auto agg = f.spawn();
  f.query(agg);
  f.sched->run();
  REQUIRE(f.replies->size() == 1);
  CHECK(total_of(f.replies->back()) == 1000);
  f.ask(agg, tenant_command(tally::add{5}, "globex"));
  f.sched->run();
  REQUIRE(f.replies->size() == 2);
  CHECK(f.replies->back().error().code == errc::invalid_argument);
  CHECK(f.journal->request_sizes.empty()); // the actor refused it, not the store
  f.ask(agg, tenant_command(tally::add{5}, "acme"));
  f.sched->run();
  f.release();
  REQUIRE(f.replies->size() == 3);
  CHECK(f.replies->back().last_version == 3);
}

TEST_CASE("a mismatch the aggregate cannot see is refused by the store, and the aggregate goes "
          "on",
          "[unit][aggregate][tenant]") {
  fixture f;
  auto agg = f.spawn(); // knows no tenant: the stream is new
  // Another writer gives the stream a tenant behind the aggregate's back.
  persistence::append_request foreign;
  foreign.stream = "tally-t1";
  foreign.meta.tenant = "acme";
  auto added = f.events->encode(tally::event{tally::added{100}});
  REQUIRE(added);
  foreign.events.push_back(*added);
  REQUIRE(f.store->append(foreign));
  f.ask(agg, tenant_command(tally::add{1}, "globex"));
  f.sched->run();
  f.release(); // expected version 0 is stale too; the tenant check comes first
  REQUIRE(f.replies->size() == 1);
  CHECK(f.replies->back().error().code == errc::invalid_argument);
  CHECK_THAT(f.replies->back().message, Catch::Contains("'acme'"));
  // Reloaded: the aggregate now knows the tenant itself.
  f.ask(agg, tenant_command(tally::add{2}, "globex"));
  f.sched->run();
  REQUIRE(f.replies->size() == 2);
  CHECK(f.replies->back().error().code == errc::invalid_argument);
  CHECK(f.journal->request_sizes.size() == 1);
}
