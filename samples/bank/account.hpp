#pragma once

// A bank account as a cairn aggregate: the example of docs/writing-an-aggregate.md,
// the workload of `cairn-bench bank`, and the test aggregate of the runtime tests.

#include <cstdint>
#include <string>
#include <utility>
#include <variant>

#include <cereal/types/string.hpp>
#include <cereal/types/variant.hpp>

#include "cairn/model/aggregate.hpp"
#include "cairn/model/match.hpp"

namespace bank {

// Commands: imperative, plain structs.
struct open_account {
  std::string owner;
  template <class Ar> void serialize(Ar& ar) { ar(owner); }
};
struct deposit {
  std::int64_t amount = 0;
  template <class Ar> void serialize(Ar& ar) { ar(amount); }
};
struct withdraw {
  std::int64_t amount = 0;
  template <class Ar> void serialize(Ar& ar) { ar(amount); }
};

// Events: past tense, each with a stable name for the store.
struct account_opened {
  static constexpr const char* type_name = "account_opened";
  std::string owner;
  template <class Ar> void serialize(Ar& ar) { ar(owner); }
};
struct money_deposited {
  static constexpr const char* type_name = "money_deposited";
  std::int64_t amount = 0;
  template <class Ar> void serialize(Ar& ar) { ar(amount); }
};
struct money_withdrawn {
  static constexpr const char* type_name = "money_withdrawn";
  std::int64_t amount = 0;
  template <class Ar> void serialize(Ar& ar) { ar(amount); }
};

// The decider: one decide per command, one evolve per event, each a pure
// function (cairn/model/match.hpp picks the overload for the variant's
// alternative, and does not compile while one is missing).
struct account {
  static constexpr const char* category = "account";

  struct state {
    bool open = false;
    std::string owner;
    std::int64_t balance = 0;
    template <class Ar> void serialize(Ar& ar) { ar(open, owner, balance); }
  };
  using command = std::variant<open_account, deposit, withdraw>;
  using event = std::variant<account_opened, money_deposited, money_withdrawn>;

  static state initial() { return {}; }

  static cairn::decision<event> decide(const state& s, const open_account& c) {
    if (s.open)
      return cairn::reject("already_open");
    return cairn::emit<event>(account_opened{c.owner});
  }
  static cairn::decision<event> decide(const state& s, const deposit& c) {
    if (!s.open)
      return cairn::reject("not_open");
    if (c.amount <= 0)
      return cairn::reject("amount_not_positive");
    return cairn::emit<event>(money_deposited{c.amount});
  }
  static cairn::decision<event> decide(const state& s, const withdraw& c) {
    if (!s.open)
      return cairn::reject("not_open");
    if (c.amount <= 0)
      return cairn::reject("amount_not_positive");
    if (c.amount > s.balance)
      return cairn::reject("insufficient_funds");
    return cairn::emit<event>(money_withdrawn{c.amount});
  }

  static state evolve(state s, const account_opened& e) {
    s.open = true;
    s.owner = e.owner;
    return s;
  }
  static state evolve(state s, const money_deposited& e) {
    s.balance += e.amount;
    return s;
  }
  static state evolve(state s, const money_withdrawn& e) {
    s.balance -= e.amount;
    return s;
  }
};

} // namespace bank
