// The journal's sync-replication gate on CAF's deterministic test
// coordinator, over a real LMDB store: a durable commit is answered only
// once the standby acknowledged it, or `unavailable` when the standby stays
// silent past the timeout (docs/cluster.md#replication-modes).

#include <chrono>
#include <memory>
#include <string>

#include <caf/all.hpp>
#include <catch2/catch.hpp>

#include "cairn/actors/journal.hpp"
#include "cairn/actors/messages.hpp"
#include "cairn/actors/metrics.hpp"
#include "cairn/actors/replication.hpp"
#include "cairn/persistence/event_store.hpp"
#include "support/journal_fixture.hpp"

using namespace std::chrono_literals;
using namespace cairn::actors;
using cairn::errc;
namespace cp = cairn::persistence;

namespace {

struct fixture : cairn::test::journal_fixture {
  std::unique_ptr<caf::scoped_actor> client = std::make_unique<caf::scoped_actor>(*sys);

  /// Sends one append of one event to stream `stream` and runs the journal.
  void append(const std::string& stream) {
    journal_append ja;
    cp::append_request req;
    req.stream = stream;
    req.events.push_back(cp::event_data{"happened", 1, "payload", {}, {}});
    ja.requests.push_back(std::move(req));
    (*client)->send(journal, append_atom::value, std::move(ja));
    sched->run();
  }

  /// The answer waiting in the client's mailbox, if any.
  std::optional<journal_result> answer() {
    if ((*client)->mailbox().empty())
      return std::nullopt;
    std::optional<journal_result> out;
    (*client)->receive([&](journal_result& r) { out = std::move(r); });
    return out;
  }
};

} // namespace

TEST_CASE("under sync replication a commit is answered once the standby acknowledges it",
          "[unit][journal][replication]") {
  fixture f;
  caf::anon_send(f.journal, replication_atom::value, true, caf::timespan{2s}, std::string{"B"});
  f.sched->run();
  f.append("s-1");
  CHECK_FALSE(f.answer()); // durable here, not yet at the standby
  caf::anon_send(f.journal, replicated_atom::value, std::uint64_t{0});
  f.sched->run();
  CHECK_FALSE(f.answer());
  caf::anon_send(f.journal, replicated_atom::value, std::uint64_t{1});
  f.sched->run();
  auto r = f.answer();
  REQUIRE(r);
  REQUIRE(r->values.size() == 1);
  REQUIRE(r->values[0]);
  CHECK(r->values[0]->last_position == 1);

  // Acknowledged ahead of the commit: answered at once.
  caf::anon_send(f.journal, replicated_atom::value, std::uint64_t{5});
  f.sched->run();
  f.append("s-2");
  REQUIRE(f.answer());
}

TEST_CASE("a commit the standby does not acknowledge in time is answered unavailable",
          "[unit][journal][replication]") {
  fixture f;
  caf::anon_send(f.journal, replication_atom::value, true, caf::timespan{2s}, std::string{"B"});
  f.sched->run();
  f.append("s-1");
  f.sched->advance_time(1s);
  f.sched->run();
  CHECK_FALSE(f.answer());
  f.sched->advance_time(1s);
  f.sched->run();
  auto r = f.answer();
  REQUIRE(r);
  REQUIRE(r->values.size() == 1);
  REQUIRE_FALSE(r->values[0]);
  CHECK(r->values[0].error().code == errc::unavailable);
  CHECK(r->values[0].error().message.find("standby B has not acknowledged position 1")
        != std::string::npos);
  CHECK(f.m.replication_sync_timeouts.value() == 1);
  // The event is durable on this node all the same.
  CHECK(*f.store->last_position() == 1);
}

TEST_CASE("switching to async answers what waited for the standby",
          "[unit][journal][replication]") {
  fixture f;
  caf::anon_send(f.journal, replication_atom::value, true, caf::timespan{2s}, std::string{"B"});
  f.sched->run();
  f.append("s-1");
  f.append("s-2");
  CHECK_FALSE(f.answer());
  caf::anon_send(f.journal, replication_atom::value, false, caf::timespan{2s}, std::string{"B"});
  f.sched->run();
  auto a = f.answer();
  auto b = f.answer();
  REQUIRE(a);
  REQUIRE(b);
  CHECK(a->values[0]->last_position == 1);
  CHECK(b->values[0]->last_position == 2);
  f.append("s-3"); // async: no wait
  REQUIRE(f.answer());
}

TEST_CASE("a fenced journal refuses appends and acknowledges no commit under way",
          "[unit][journal][replication]") {
  fixture f;
  caf::anon_send(f.journal, fenced_atom::value, std::string{"node A stepped down"});
  f.sched->run();
  f.append("s-1");
  auto r = f.answer();
  REQUIRE(r);
  REQUIRE_FALSE(r->values[0]);
  CHECK(r->values[0].error().code == errc::unavailable);
  CHECK(r->values[0].error().message == "node A stepped down");
  CHECK(*f.store->last_position() == 0);                        // nothing written
  caf::anon_send(f.journal, fenced_atom::value, std::string{}); // serving again
  f.sched->run();
  f.append("s-1");
  auto ok = f.answer();
  REQUIRE(ok);
  CHECK(ok->values[0]);
}

TEST_CASE("a source without a standby keeps its log end current", "[unit][journal][replication]") {
  fixture f;
  source_config sc;
  sc.node_id = "A";
  sc.standby = "B";
  auto source = spawn_replication_source(*f.sys, *f.store, f.journal, sc);
  f.sched->run();
  auto status = [&] {
    replication_status s;
    (*f.client)->send(source, status_atom::value);
    f.sched->run();
    (*f.client)->receive([&](replication_status& r) { s = std::move(r); });
    return s;
  };
  CHECK(status().committed == 0);
  f.append("s-1");
  (void)f.answer();
  f.append("s-2");
  (void)f.answer();
  f.append("s-3");
  (void)f.answer();
  auto s = status();
  CHECK_FALSE(s.connected);
  CHECK(s.committed == 3); // what a loss of this node's disk would take, with no standby
  CHECK(s.acknowledged == 0);
  caf::anon_send_exit(source, caf::exit_reason::kill);
  f.sched->run();
}
