#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <future>

#include <caf/all.hpp>

#include "cairn/actors/scheduler.hpp"
#include "support/eventually.hpp"

namespace {

using namespace std::chrono_literals;

// Each spawned function takes an argument: CAF 0.17 dereferences a null
// tuple of arguments for one that takes none, which UBSan reports.

/// Sends itself to `peer` for every peer it gets, until `stop`: two of them
/// keep a worker busy with jobs it enqueues for itself, one at a time.
caf::behavior bouncer(caf::event_based_actor* self, std::atomic<bool>* stop) {
  return {[=](caf::actor& peer) {
    if (!stop->load())
      self->send(peer, caf::actor_cast<caf::actor>(self));
  }};
}

caf::behavior adder(int step) {
  return {[=](int x) { return x + step; }};
}

/// Holds its worker, once asked, until `released` is ready (10 s at most,
/// so a failing run still ends).
caf::behavior holder(std::shared_future<void> released, std::atomic<bool>* held) {
  return {[=](caf::atom_value) {
    *held = true;
    released.wait_for(10s);
  }};
}

} // namespace

// One worker held by a blocking handler stands for a worker the kernel has
// not given a core yet; the other runs a chain of jobs it enqueues for
// itself. A message from outside must still be handled by the worker that
// runs: CAF's own policy would queue it behind the held worker, or at the
// far end of the running worker's queue, which such a chain never reaches.
TEST_CASE("a job from outside runs while one worker is held and the other is busy",
          "[unit][scheduler]") {
  caf::actor_system_config cfg;
  cfg.set("scheduler.max-threads", std::size_t{2});
  cairn::actors::use_work_stealing_scheduler(cfg);
  caf::actor_system sys{cfg};

  auto echo = sys.spawn(adder, 1);
  std::atomic<bool> held{false};
  std::promise<void> release;
  auto hold = sys.spawn(holder, release.get_future().share(), &held);
  caf::anon_send(hold, caf::atom("hold"));
  REQUIRE(cairn::test::eventually([&] { return held.load(); }, 10s));

  std::atomic<bool> stop{false};
  // Runs before the actor system waits for its actors, also after a failed REQUIRE.
  struct cleanup {
    std::atomic<bool>& stop;
    std::promise<void>& release;
    ~cleanup() {
      stop = true;
      release.set_value();
    }
  } finally{stop, release};
  auto ping = sys.spawn(bouncer, &stop);
  auto pong = sys.spawn(bouncer, &stop);
  caf::anon_send(ping, pong);

  for (int round = 0; round < 20; ++round) {
    caf::scoped_actor self{sys};
    auto t0 = std::chrono::steady_clock::now();
    int answer = 0;
    self->request(echo, 5s, round)
      .receive([&](int x) { answer = x; }, [&](caf::error&) { answer = -1; });
    auto waited = std::chrono::steady_clock::now() - t0;
    INFO("round " << round << " waited "
                  << std::chrono::duration_cast<std::chrono::milliseconds>(waited).count()
                  << " ms");
    REQUIRE(answer == round + 1);
    REQUIRE(waited < 2s);
  }
  for (auto& a : {echo, hold, ping, pong})
    caf::anon_send_exit(a, caf::exit_reason::user_shutdown);
}
