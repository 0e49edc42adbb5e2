// User code that misbehaves (throws in initial, decide, evolve or a send
// callback; blocks in decide) never leaves a caller waiting, never takes
// the registry down and never keeps shutdown() from returning.

#include <atomic>
#include <chrono>
#include <future>
#include <stdexcept>
#include <string>
#include <variant>
#include <vector>

#include <catch2/catch.hpp>
#include <cereal/types/string.hpp>
#include <cereal/types/variant.hpp>

#include "account.hpp"
#include "runtime_support.hpp"
#include "support/temp_dir.hpp"

using namespace cairn;
using namespace cairn::test;
using namespace std::chrono_literals;

namespace unruly {

// Switches the tests flip to make the user code below misbehave.
inline std::atomic<bool> initial_throws{false};
inline std::atomic<bool> thirteen_throws{false}; ///< evolve of added{13}
inline std::shared_future<void> gate;            ///< stall{} waits for it

struct add {
  std::int64_t amount = 0;
  template <class Ar> void serialize(Ar& ar) { ar(amount); }
};
struct poison {
  template <class Ar> void serialize(Ar&) {}
};
struct stall {
  template <class Ar> void serialize(Ar&) {}
};

struct added {
  static constexpr const char* type_name = "unruly_added";
  std::int64_t amount = 0;
  template <class Ar> void serialize(Ar& ar) { ar(amount); }
};
struct poisoned {
  static constexpr const char* type_name = "unruly_poisoned";
  template <class Ar> void serialize(Ar&) {}
};

struct counter {
  static constexpr const char* category = "unruly";
  struct state {
    std::int64_t total = 0;
    template <class Ar> void serialize(Ar& ar) { ar(total); }
  };
  using command = std::variant<add, poison, stall>;
  using event = std::variant<added, poisoned>;

  static state initial() {
    if (initial_throws.load())
      throw std::runtime_error("no initial state today");
    return {};
  }
  static cairn::decision<event> decide(const state&, const command& c) {
    if (std::holds_alternative<poison>(c))
      return cairn::emit<event>(poisoned{});
    if (std::holds_alternative<stall>(c)) {
      auto mine = gate; // keeps the state alive if the process exits while this thread waits
      mine.wait();
    }
    return cairn::emit<event>(added{std::holds_alternative<add>(c) ? std::get<add>(c).amount : 0});
  }
  static state evolve(state s, const event& e) {
    // The bug under test: poisoned is not handled, and std::get throws.
    const auto& a = std::get<added>(e);
    if (a.amount == 13 && thirteen_throws.load())
      throw std::runtime_error("unlucky 13");
    s.total += a.amount;
    return s;
  }
};

/// An event at schema version 2 whose upcaster from version 1 throws.
struct bumped {
  static constexpr const char* type_name = "unruly_bumped";
  std::int64_t by = 0;
  template <class Ar> void serialize(Ar& ar) { ar(by); }
};

} // namespace unruly

CEREAL_CLASS_VERSION(unruly::bumped, 2)

namespace unruly {

struct bumper {
  static constexpr const char* category = "bumper";
  struct state {
    std::int64_t total = 0;
    template <class Ar> void serialize(Ar& ar) { ar(total); }
  };
  using command = std::variant<add>;
  using event = std::variant<bumped>;
  static state initial() { return {}; }
  static cairn::decision<event> decide(const state&, const command& c) {
    return cairn::emit<event>(bumped{std::get<add>(c).amount});
  }
  static state evolve(state s, const event& e) {
    s.total += std::get<bumped>(e).by;
    return s;
  }
  static cairn::result<void> upcasters(persistence::event_registry& reg) {
    return reg.add_upcaster("unruly_bumped", 1, [](std::string_view) -> result<std::string> {
      throw std::logic_error("upcaster bug");
    });
  }
};

} // namespace unruly

namespace {

using clock_type = std::chrono::steady_clock;

bool mentions(const cairn::error& e, const std::string& text) {
  return e.to_string().find(text) != std::string::npos;
}

runtime_options supervised_options(const std::string& dir) {
  auto opts = quick_options(dir);
  opts.shutdown_timeout = 5s;
  return opts;
}

} // namespace

TEST_CASE("an evolve that throws answers every command and the aggregate comes back",
          "[integration][runtime][supervision]") {
  temp_dir dir;
  auto rt = start_runtime(supervised_options(dir.path()));
  register_ok<unruly::counter>(*rt);
  register_ok<bank::account>(*rt);

  std::vector<std::future<result<outcome<unruly::counter>>>> sent;
  for (int i = 0; i < 30; ++i)
    sent.push_back(i == 15 ? rt->send<unruly::counter>("c", unruly::poison{})
                           : rt->send<unruly::counter>("c", unruly::add{1}));
  int ok = 0;
  for (int i = 0; i < 30; ++i) {
    auto r = await(sent[i], 10s);
    if (i < 15) {
      INFO(describe(r));
      CHECK(r); // decided and appended before the poison: their real outcome
      ok += r ? 1 : 0;
    } else {
      REQUIRE_FALSE(r);
      CHECK(r.error().code == errc::internal);
      CHECK(mentions(r.error(), "evolve threw"));
      CHECK(mentions(r.error(), "unruly-c"));
      if (i == 15)
        CHECK(mentions(r.error(), "nothing of this command was appended"));
    }
  }
  CHECK(ok == 15);

  // Out of service for a backoff: refused at once, naming why (once the
  // registry has seen the actor stop).
  REQUIRE(eventually([&] { return rt->registry_stats().failures >= 1; }));
  auto started = clock_type::now();
  auto refused = await(rt->send<unruly::counter>("c", unruly::add{1}), 5s);
  REQUIRE_FALSE(refused);
  CHECK(refused.error().code == errc::internal);
  CHECK(clock_type::now() - started < 2s);

  // Routing never stopped, and the aggregate is tried again after its backoff.
  CHECK(await(rt->send<bank::account>("a", bank::open_account{"A"})));
  CHECK(eventually(
    [&] { return static_cast<bool>(rt->send<unruly::counter>("c", unruly::add{100}).get()); }));
  auto s = rt->state<unruly::counter>("c");
  INFO(describe(s));
  REQUIRE(s);
  CHECK(s->total == 115); // the poison appended nothing

  started = clock_type::now();
  rt->shutdown();
  CHECK(clock_type::now() - started < 5s);
}

TEST_CASE("an initial() that throws fails its commands and not the registry",
          "[integration][runtime][supervision]") {
  temp_dir dir;
  auto rt = start_runtime(supervised_options(dir.path()));
  register_ok<unruly::counter>(*rt);
  register_ok<bank::account>(*rt);
  unruly::initial_throws = true;
  for (int i = 0; i < 5; ++i) {
    auto r = await(rt->send<unruly::counter>("i" + std::to_string(i % 2), unruly::add{1}), 10s);
    REQUIRE_FALSE(r);
    CHECK(r.error().code == errc::internal);
    CHECK(mentions(r.error(), "initial threw: no initial state today"));
  }
  auto s = rt->state<unruly::counter>("i0");
  REQUIRE_FALSE(s);
  CHECK(s.error().code == errc::internal);
  auto then = rt->state_at<unruly::counter>("i0", 1);
  REQUIRE_FALSE(then);
  CHECK(mentions(then.error(), "initial threw"));
  CHECK(await(rt->send<bank::account>("a", bank::open_account{"A"})));

  unruly::initial_throws = false;
  CHECK(eventually(
    [&] { return static_cast<bool>(rt->send<unruly::counter>("i0", unruly::add{2}).get()); }));
  auto started = clock_type::now();
  rt->shutdown();
  CHECK(clock_type::now() - started < 5s);
}

TEST_CASE("an evolve that throws on a stored event fails recovery with its reason",
          "[integration][runtime][supervision]") {
  temp_dir dir;
  {
    auto rt = start_runtime(supervised_options(dir.path()));
    register_ok<unruly::counter>(*rt);
    REQUIRE(await(rt->send<unruly::counter>("r", unruly::add{13})));
  }
  unruly::thirteen_throws = true;
  auto rt = start_runtime(supervised_options(dir.path()));
  register_ok<unruly::counter>(*rt);
  auto s = rt->state<unruly::counter>("r");
  REQUIRE_FALSE(s);
  CHECK(s.error().code == errc::internal);
  CHECK(mentions(s.error(), "unlucky 13"));
  auto r = await(rt->send<unruly::counter>("r", unruly::add{1}), 10s);
  REQUIRE_FALSE(r);
  CHECK(r.error().code == errc::internal);
  auto then = rt->state_at<unruly::counter>("r", 1);
  REQUIRE_FALSE(then);
  CHECK(mentions(then.error(), "unlucky 13"));
  unruly::thirteen_throws = false;
  auto started = clock_type::now();
  rt->shutdown();
  CHECK(clock_type::now() - started < 5s);
}

TEST_CASE("a send callback that throws is logged and the bridge keeps serving",
          "[integration][runtime][supervision]") {
  temp_dir dir;
  auto rt = start_runtime(supervised_options(dir.path()));
  register_ok<unruly::counter>(*rt);
  std::atomic<int> called{0};
  for (int i = 0; i < 50; ++i)
    rt->send<unruly::counter>("d", unruly::add{1}, {}, [&](result<outcome<unruly::counter>>) {
      ++called;
      throw std::runtime_error("callback bug");
    });
  REQUIRE(eventually([&] { return called.load() == 50; }));
  auto r = await(rt->send<unruly::counter>("d", unruly::add{1}), 10s);
  INFO(describe(r));
  REQUIRE(r);
  CHECK(r->version == 51);
}

TEST_CASE("a decide that blocks neither hangs its caller nor shutdown",
          "[integration][runtime][supervision]") {
  temp_dir dir;
  auto opts = supervised_options(dir.path());
  opts.request_timeout = 500ms;
  opts.shutdown_timeout = 1s;
  std::promise<void> open_gate;
  unruly::gate = open_gate.get_future().share();
  auto rt = start_runtime(opts);
  register_ok<unruly::counter>(*rt);
  register_ok<bank::account>(*rt);

  auto stalled = rt->send<unruly::counter>("s", unruly::stall{});
  auto r = await(stalled, 5s); // bounded by request_timeout
  REQUIRE_FALSE(r);
  CHECK(r.error().code == errc::unavailable);
  // The other worker still serves everyone else.
  CHECK(await(rt->send<bank::account>("a", bank::open_account{"A"}), 5s));

  auto started = clock_type::now();
  rt->shutdown();
  auto took = clock_type::now() - started;
  CHECK(took < 3s);
  CHECK(took >= 900ms);  // it waited for the deadline, then gave up on the stalled aggregate
  open_gate.set_value(); // the abandoned thread finishes on its own
  rt.reset();
}

TEST_CASE("an upcaster that throws fails recovery with its reason and nothing else",
          "[integration][runtime][supervision]") {
  temp_dir dir;
  {
    persistence::store_options so;
    so.durability = persistence::durability::no_sync;
    auto store = persistence::open_store(dir.path(), so);
    REQUIRE(store);
    persistence::append_request req;
    req.stream = "bumper-b";
    persistence::event_data ev;
    ev.type = "unruly_bumped";
    ev.schema_version = 1;
    persistence::encode_payload(std::int64_t{5}, ev.payload);
    req.events.push_back(std::move(ev));
    REQUIRE((*store)->append(std::move(req)));
  }
  auto rt = start_runtime(supervised_options(dir.path()));
  register_ok<unruly::bumper>(*rt);
  register_ok<bank::account>(*rt);
  auto r = await(rt->send<unruly::bumper>("b", unruly::add{1}), 10s);
  REQUIRE_FALSE(r);
  CHECK(r.error().code == errc::internal);
  CHECK(mentions(r.error(), "the upcaster threw: upcaster bug"));
  CHECK(mentions(r.error(), "bumper-b v1"));
  auto then = rt->state_at<unruly::bumper>("b", 1);
  REQUIRE_FALSE(then);
  CHECK(mentions(then.error(), "upcaster bug"));
  CHECK(await(rt->send<bank::account>("a", bank::open_account{"A"})));
  auto started = clock_type::now();
  rt->shutdown();
  CHECK(clock_type::now() - started < 5s);
}
