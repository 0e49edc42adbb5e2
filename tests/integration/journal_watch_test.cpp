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

TEST_CASE("a journal watcher hears of a commit before the appender hears it is durable",
          "[integration][journal]") {
  // Whatever an appender's answer sets off (a reply to a caller, a status
  // read from a watcher) must find the watcher told already. One actor is
  // both here, so the order of its mailbox is the order the journal sent.
  cairn::test::temp_dir dir;
  cairn::runtime_options opts;
  opts.data_dir = dir.path();
  opts.durability = cairn::persistence::durability::sync;
  auto rt = cairn::runtime::start(opts);
  REQUIRE(rt);
  caf::scoped_actor self{(*rt)->system()};
  auto me = caf::actor_cast<caf::actor>(self);
  self->send((*rt)->journal(), cairn::actors::subscribe_atom::value, me);
  self->receive([](cairn::actors::committed_atom, std::uint64_t) {},
                caf::after(std::chrono::seconds(10)) >> [] { FAIL("no first position"); });
  for (int i = 1; i <= 5; ++i) {
    self->send((*rt)->journal(), cairn::actors::demand_atom::value, me);
    cairn::actors::journal_append a;
    cairn::persistence::append_request req;
    req.stream = "watched-" + std::to_string(i);
    cairn::persistence::event_data ev;
    ev.type = "noted";
    ev.payload = "x";
    req.events.push_back(std::move(ev));
    a.requests.push_back(std::move(req));
    self->send((*rt)->journal(), cairn::actors::append_atom::value, std::move(a));
    std::vector<std::string> order;
    for (int n = 0; n < 2; ++n)
      self->receive(
        [&](cairn::actors::committed_atom, std::uint64_t p) {
          CHECK(p == static_cast<std::uint64_t>(i));
          order.push_back("committed");
        },
        [&](cairn::actors::journal_result& r) {
          REQUIRE(r.values.size() == 1);
          INFO((r.values[0] ? std::string{} : r.values[0].error().to_string()));
          CHECK(r.values[0]);
          order.push_back("answer");
        },
        caf::after(std::chrono::seconds(10)) >> [&] { order.push_back("nothing"); });
    CHECK(order == std::vector<std::string>{"committed", "answer"});
  }
}
