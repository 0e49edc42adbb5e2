#pragma once

// A real LMDB store and the real journal on CAF's deterministic test
// coordinator: what the actor tests that drive the journal, subscribers or
// replication by hand start from. A test's fixture derives from it.

#include <cstddef>
#include <memory>
#include <vector>

#include <caf/all.hpp>
#include <catch2/catch.hpp>

#include "cairn/actors/journal.hpp"
#include "cairn/actors/messages.hpp"
#include "cairn/actors/metrics.hpp"
#include "cairn/persistence/event_store.hpp"
#include "support/temp_dir.hpp"

namespace cairn::test {

struct journal_fixture {
  temp_dir dir;
  std::unique_ptr<persistence::event_store> store;
  actors::metrics m; // outlives the actor system
  caf::actor_system_config cfg;
  std::unique_ptr<caf::actor_system> sys;
  caf::scheduler::test_coordinator* sched = nullptr;
  caf::actor journal;
  std::vector<caf::actor> subscribers; ///< Killed before the journal.

  journal_fixture() {
    persistence::store_options o;
    o.durability = persistence::durability::no_sync;
    o.initial_map_size = std::size_t{16} << 20;
    auto opened = persistence::open_store(dir.path(), o);
    REQUIRE(opened);
    store = std::move(*opened);
    cfg.set("scheduler.policy", caf::atom("testing"));
    sys = std::make_unique<caf::actor_system>(cfg);
    sched = &dynamic_cast<caf::scheduler::test_coordinator&>(sys->scheduler());
    journal = actors::spawn_journal(*sys, *store, m, actors::placement::scheduled);
    sched->run();
  }

  ~journal_fixture() {
    for (auto& s : subscribers)
      caf::anon_send_exit(s, caf::exit_reason::kill);
    caf::anon_send_exit(journal, caf::exit_reason::kill);
    sched->run();
    sys.reset(); // before the store it reads
  }

  /// Appends `n` events to stream "s-1" through the journal, as aggregates
  /// do (it wakes the subscribers), and requires that they were stored.
  void append_through_journal(std::size_t n) {
    actors::journal_append ja;
    persistence::append_request req;
    req.stream = "s-1";
    for (std::size_t i = 0; i < n; ++i)
      req.events.push_back(persistence::event_data{"happened", 1, "payload", {}, {}});
    ja.requests.push_back(std::move(req));
    caf::scoped_actor self{*sys};
    auto h = self->request(journal, caf::infinite, actors::append_atom::value, std::move(ja));
    sched->run();
    REQUIRE_FALSE(self->mailbox().empty());
    bool ok = false;
    h.receive(
      [&](actors::journal_result& r) { ok = r.values.size() == 1 && r.values[0].has_value(); },
      [&](caf::error&) {});
    REQUIRE(ok);
  }

  journal_fixture(const journal_fixture&) = delete;
  journal_fixture& operator=(const journal_fixture&) = delete;
};

} // namespace cairn::test
