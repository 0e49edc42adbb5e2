// The account aggregate through the given/when/then kit: pure decide and
// evolve, every event and state round-tripped through the codec.

#include <cstdint>
#include <string>
#include <type_traits>
#include <vector>

#include <catch2/catch.hpp>
#include <cereal/types/vector.hpp>

#include "account.hpp"
#include "cairn/persistence/codec.hpp"
#include "cairn/runtime/testkit.hpp"

using namespace bank;
using kit = cairn::testkit::given_when_then<account>;

TEST_CASE("opening an account emits account_opened", "[unit][account]") {
  kit t;
  auto d = t.when(open_account{"Ann"});
  REQUIRE(d);
  REQUIRE(d->size() == 1);
  CHECK(std::get<account_opened>(d->front()).owner == "Ann");
  CHECK(t.state().open);
  CHECK(t.state().owner == "Ann");
}

TEST_CASE("opening an open account is rejected", "[unit][account]") {
  kit t{{account_opened{"Ann"}}};
  auto d = t.when(open_account{"Bob"});
  REQUIRE_FALSE(d);
  CHECK(d.error().reason == "already_open");
  CHECK(t.state().owner == "Ann");
}

TEST_CASE("withdrawing more than the balance is rejected", "[unit][account]") {
  kit t{{account_opened{"Ann"}, money_deposited{50}}};
  auto d = t.when(withdraw{80});
  REQUIRE_FALSE(d);
  CHECK(d.error().reason == "insufficient_funds");
  CHECK(t.state().balance == 50);
}

TEST_CASE("deposits and withdrawals move the balance", "[unit][account]") {
  kit t{{account_opened{"Ann"}}};
  REQUIRE(t.when(deposit{100}));
  REQUIRE(t.when(withdraw{30}));
  REQUIRE(t.when(deposit{5}));
  CHECK(t.state().balance == 75);
  CHECK(t.history().size() == 4);
}

TEST_CASE("commands to an account that is not open are rejected", "[unit][account]") {
  kit t;
  CHECK(t.when(deposit{10}).error().reason == "not_open");
  CHECK(t.when(withdraw{10}).error().reason == "not_open");
}

TEST_CASE("amounts must be positive", "[unit][account]") {
  kit t{{account_opened{"Ann"}, money_deposited{10}}};
  CHECK(t.when(deposit{0}).error().reason == "amount_not_positive");
  CHECK(t.when(withdraw{-5}).error().reason == "amount_not_positive");
}

namespace {

// An event whose serialize drops a field: tests must see what a replay sees.
struct lossy_event {
  static constexpr const char* type_name = "lossy_event";
  int kept = 0;
  int lost = 0;
  template <class Ar> void serialize(Ar& ar) { ar(kept); }
};

struct lossy {
  static constexpr const char* category = "lossy";
  struct state {
    int sum = 0;
    template <class Ar> void serialize(Ar& ar) { ar(sum); }
  };
  struct add {
    int n = 0;
    template <class Ar> void serialize(Ar& ar) { ar(n); }
  };
  using command = std::variant<add>;
  using event = std::variant<lossy_event>;
  static state initial() { return {}; }
  static cairn::decision<event> decide(const state&, const command& c) {
    return cairn::emit<event>(lossy_event{std::get<add>(c).n, std::get<add>(c).n});
  }
  static state evolve(state s, const event& e) {
    s.sum += std::get<lossy_event>(e).kept + std::get<lossy_event>(e).lost;
    return s;
  }
};

} // namespace

TEST_CASE("the kit applies events as the store returns them, not as decide built them",
          "[unit][testkit]") {
  // `lost` does not survive the codec, so the state only counts `kept`: what
  // a replay would see, not what decide produced in memory.
  cairn::testkit::given_when_then<lossy> t;
  REQUIRE(t.when(lossy::add{3}));
  CHECK(t.state().sum == 3);
}

namespace {

template <class T> std::string bytes_of(const T& value) {
  std::string out;
  cairn::persistence::encode_payload(value, out);
  return out;
}

std::string le64(std::uint64_t v) {
  std::string out;
  for (int i = 0; i < 8; ++i)
    out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
  return out;
}

} // namespace

TEST_CASE("the account's events and state keep their stored bytes", "[unit][account]") {
  // Stores written before decide and evolve became one overload per
  // alternative must still decode: the payloads are cereal's binary archive,
  // a string as its 64-bit length and bytes, an int64 as 8 bytes.
  CHECK(bytes_of(account_opened{"Ann"}) == le64(3) + "Ann");
  CHECK(bytes_of(money_deposited{100}) == le64(100));
  CHECK(bytes_of(money_withdrawn{30}) == le64(30));
  account::state s{true, "Ann", 70};
  CHECK(bytes_of(s) == std::string{"\x01", 1} + le64(3) + "Ann" + le64(70));
  CHECK(cairn::persistence::decode_payload<money_withdrawn>(le64(30))->amount == 30);
  CHECK(cairn::persistence::schema_version_of<money_deposited>() == 1);
  CHECK(cairn::persistence::schema_version_of<account::state>() == 1);
}

namespace {

/// The account written with cairn::match lambdas (docs/writing-an-aggregate.md).
struct account_with_lambdas {
  static constexpr const char* category = "account";
  using state = account::state;
  using command = account::command;
  using event = account::event;

  static state initial() { return {}; }

  static cairn::decision<event> decide(const state& s, const command& c) {
    using d = cairn::decision<event>;
    return cairn::match<d>(
      c,
      [&](const open_account& cmd) -> d {
        if (s.open)
          return cairn::reject("already_open");
        return cairn::emit<event>(account_opened{cmd.owner});
      },
      [&](const auto& cmd) -> d { // deposit and withdraw
        if (!s.open)
          return cairn::reject("not_open");
        if (cmd.amount <= 0)
          return cairn::reject("amount_not_positive");
        if constexpr (std::is_same_v<std::decay_t<decltype(cmd)>, deposit>)
          return cairn::emit<event>(money_deposited{cmd.amount});
        if (cmd.amount > s.balance)
          return cairn::reject("insufficient_funds");
        return cairn::emit<event>(money_withdrawn{cmd.amount});
      });
  }

  static state evolve(state s, const event& e) {
    cairn::match(
      e,
      [&](const account_opened& ev) {
        s.open = true;
        s.owner = ev.owner;
      },
      [&](const money_deposited& ev) { s.balance += ev.amount; },
      [&](const money_withdrawn& ev) { s.balance -= ev.amount; });
    return s;
  }
};

} // namespace

TEST_CASE("the account decides alike written as overloads and as match lambdas",
          "[unit][account]") {
  const std::vector<account::command> script{deposit{5},   open_account{"Ann"}, open_account{"Bob"},
                                             deposit{0},   deposit{50},         withdraw{80},
                                             withdraw{-1}, withdraw{20}};
  cairn::testkit::given_when_then<account> decider;
  cairn::testkit::given_when_then<account_with_lambdas> lambdas;
  for (const auto& c : script) {
    auto a = decider.when(c);
    auto b = lambdas.when(c);
    REQUIRE(a.has_value() == b.has_value());
    if (a)
      CHECK(bytes_of(*a) == bytes_of(*b));
    else
      CHECK(a.error().reason == b.error().reason);
  }
  CHECK(decider.state().balance == 30);
  CHECK(bytes_of(decider.state()) == bytes_of(lambdas.state()));
  CHECK(decider.history().size() == 3);
}
