// The journal publishes the committed position of the global log.

#include <catch2/catch.hpp>
#include <caf/all.hpp>

#include "account.hpp"
#include "cairn/runtime/runtime_caf.hpp"
#include "support/temp_dir.hpp"

TEST_CASE("a journal watcher sees the committed position reach every acknowledged command",
          "[integration][journal]") {
  cairn::test::temp_dir dir;
  cairn::runtime_options opts;
  opts.data_dir = dir.path();
  opts.durability = cairn::persistence::durability::no_sync;
  opts.worker_threads = 2;
  auto rt = cairn::runtime::start(opts);
  REQUIRE(rt);
  REQUIRE((*rt)->register_aggregate<bank::account>());
  caf::scoped_actor watcher{(*rt)->system()};
  watcher->send((*rt)->journal(), cairn::actors::subscribe_atom::value,
                caf::actor_cast<caf::actor>(watcher));
  std::uint64_t seen = 99;
  watcher->receive([&](cairn::actors::committed_atom, std::uint64_t p) { seen = p; },
                   caf::after(std::chrono::seconds(10)) >> [] {});
  CHECK(seen == 0); // an empty store: the current position comes first
  std::uint64_t last = 0;
  for (int i = 0; i < 20; ++i) {
    auto r = (*rt)->send<bank::account>("w" + std::to_string(i), bank::open_account{"x"}).get();
    REQUIRE(r);
    last = r->last_position;
  }
  CHECK(last == 20);
  // Positions arrive in increasing order and reach the last acknowledged one.
  std::uint64_t previous = 0;
  bool timed_out = false;
  while (previous < last && !timed_out) {
    watcher->send((*rt)->journal(), cairn::actors::demand_atom::value,
                  caf::actor_cast<caf::actor>(watcher));
    watcher->receive(
      [&](cairn::actors::committed_atom, std::uint64_t p) {
        CHECK(p > previous);
        previous = p;
      },
      caf::after(std::chrono::seconds(10)) >> [&] { timed_out = true; });
  }
  CHECK(previous == last);
  // Without a demand, nothing more arrives, however much is committed.
  REQUIRE((*rt)->send<bank::account>("late", bank::open_account{"x"}).get());
  bool more = false;
  watcher->receive([&](cairn::actors::committed_atom, std::uint64_t) { more = true; },
                   caf::after(std::chrono::milliseconds(200)) >> [] {});
  CHECK_FALSE(more);
}
