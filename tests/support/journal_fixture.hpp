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

  journal_fixture(const journal_fixture&) = delete;
  journal_fixture& operator=(const journal_fixture&) = delete;
};

} // namespace cairn::test
