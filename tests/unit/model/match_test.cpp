// cairn::match and the decide/evolve dispatch of cairn/model/match.hpp.
//
// A missing handler is a compile error, which a test binary cannot show at
// run time; the traits behind those static_asserts are checked here instead
// (has_decide, has_evolve), and docs/writing-an-aggregate.md shows the error.

#include <memory>
#include <string>
#include <utility>
#include <variant>

#include <catch2/catch.hpp>

#include "cairn/model/match.hpp"

namespace {

struct start {
  int n = 0;
};
struct stop {};
struct started {
  int n = 0;
};
struct stopped {};

/// A decider written with one overload per alternative, recording which
/// overload ran.
struct machine {
  struct state {
    bool running = false;
    int n = 0;
    std::string calls;
  };
  using command = std::variant<start, stop>;
  using event = std::variant<started, stopped>;

  static state initial() { return {}; }

  static cairn::decision<event> decide(const state& s, const start& c) {
    if (s.running)
      return cairn::reject("already_running");
    return cairn::emit<event>(started{c.n});
  }
  static cairn::decision<event> decide(const state& s, const stop&) {
    if (!s.running)
      return cairn::reject("not_running");
    return cairn::emit<event>(stopped{});
  }
  static state evolve(state s, const started& e) { // by value
    s.running = true;
    s.n = e.n;
    s.calls += "started;";
    return s;
  }
  static state evolve(const state& s, const stopped&) { // by reference
    state next = s;
    next.running = false;
    next.calls += "stopped;";
    return next;
  }

  static cairn::decision<event> decide(const state& s, const command& c) {
    return cairn::dispatch_decide<machine>(s, c);
  }
  static state evolve(state s, const event& e) {
    return cairn::dispatch_evolve<machine>(std::move(s), e);
  }
};

/// The same decider with `stop` and `stopped` left out: it must not be
/// dispatchable, and the traits must say why.
struct incomplete {
  struct state {};
  using command = std::variant<start, stop>;
  using event = std::variant<started, stopped>;
  static cairn::decision<event> decide(const state&, const start&) { return cairn::emit<event>(); }
  static cairn::decision<event> decide(const state&, const command&) {
    return cairn::reject("only the variant overload"); // what dispatch must never pick
  }
  static state evolve(state s, const started&) { return s; }
  static state evolve(state s, const event&) { return s; }
};

} // namespace

// The static_asserts of dispatch_decide and dispatch_evolve rest on these.
static_assert(cairn::detail::has_decide<machine, start>);
static_assert(cairn::detail::has_decide<machine, stop>);
static_assert(cairn::detail::has_evolve<machine, started>);
static_assert(cairn::detail::has_evolve<machine, stopped>);
static_assert(cairn::detail::has_decide<incomplete, start>);
static_assert(!cairn::detail::has_decide<incomplete, stop>,
              "the variant overload, reachable through the variant's converting constructor, "
              "must not count as a handler of `stop`");
static_assert(cairn::detail::has_evolve<incomplete, started>);
static_assert(!cairn::detail::has_evolve<incomplete, stopped>);

TEST_CASE("dispatch_decide runs the overload of the command held", "[unit][model][match]") {
  auto s = machine::initial();
  auto d = machine::decide(s, machine::command{start{7}});
  REQUIRE(d);
  REQUIRE(d->size() == 1);
  CHECK(std::get<started>(d->front()).n == 7);

  auto r = machine::decide(s, machine::command{stop{}});
  REQUIRE_FALSE(r);
  CHECK(r.error().reason == "not_running");
}

TEST_CASE("dispatch_evolve runs the overload of the event held, by value or by reference",
          "[unit][model][match]") {
  auto s = machine::initial();
  s = machine::evolve(std::move(s), machine::event{started{3}});
  CHECK(s.running);
  CHECK(s.n == 3);
  s = machine::evolve(std::move(s), machine::event{stopped{}});
  CHECK_FALSE(s.running);
  CHECK(s.calls == "started;stopped;");

  auto d = machine::decide(s, machine::command{stop{}});
  REQUIRE_FALSE(d);
  CHECK(d.error().reason == "not_running");
}

TEST_CASE("overloaded turns lambdas into one visitor", "[unit][model][match]") {
  std::variant<int, std::string> v = std::string{"abc"};
  auto size = std::visit(cairn::overloaded{[](int) { return std::size_t{0}; },
                                           [](const std::string& x) { return x.size(); }},
                         v);
  CHECK(size == 3);
}

TEST_CASE("match returns what the handler of the alternative held returns",
          "[unit][model][match]") {
  const std::variant<start, stop> c = start{4};
  int got = cairn::match(
    c, [](const start& x) { return x.n; }, [](const stop&) { return -1; });
  CHECK(got == 4);
}

TEST_CASE("match<R> converts each handler's result to R", "[unit][model][match]") {
  using event = machine::event;
  auto decide = [](bool running, const machine::command& c) {
    return cairn::match<cairn::decision<event>>(
      c,
      [&](const start& x) -> cairn::decision<event> {
        if (running)
          return cairn::reject("already_running");
        return cairn::emit<event>(started{x.n});
      },
      [&](const stop&) { return cairn::reject("not_running"); }); // tl::unexpected, converted
  };
  auto ok = decide(false, start{2});
  REQUIRE(ok);
  CHECK(std::get<started>(ok->front()).n == 2);
  auto no = decide(false, stop{});
  REQUIRE_FALSE(no);
  CHECK(no.error().reason == "not_running");
}

TEST_CASE("a generic handler takes the alternatives the others do not", "[unit][model][match]") {
  std::variant<int, double, std::string> v = 2.5;
  auto name = [](const auto& x) {
    return cairn::match(
      x, [](const std::string&) { return std::string{"string"}; },
      [](const auto&) { return std::string{"number"}; });
  };
  CHECK(name(v) == "number");
  v = std::string{"x"};
  CHECK(name(v) == "string");
}

TEST_CASE("match hands a mutable variant's alternative by reference and an rvalue's by rvalue",
          "[unit][model][match]") {
  std::variant<int, std::string> v = 1;
  cairn::match(
    v, [](int& i) { i += 41; }, [](std::string&) {});
  CHECK(std::get<int>(v) == 42);

  std::variant<std::unique_ptr<int>, int> owned = std::make_unique<int>(5);
  auto taken = cairn::match(
    std::move(owned), [](std::unique_ptr<int>&& p) { return std::move(p); },
    [](int&&) { return std::unique_ptr<int>{}; });
  REQUIRE(taken);
  CHECK(*taken == 5);
}
