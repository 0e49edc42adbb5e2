#pragma once

// A bank account as a cairn aggregate: the example of docs/writing-an-aggregate.md,
// the workload of `cairn-bench bank`, and the test aggregate of the runtime tests.

#include <cstdint>
#include <string>
#include <variant>

#include <cereal/types/string.hpp>
#include <cereal/types/variant.hpp>

#include "cairn/model/aggregate.hpp"

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

  static cairn::decision<event> decide(const state& s, const command& c) {
    return std::visit(
      [&](const auto& cmd) -> cairn::decision<event> {
        using T = std::decay_t<decltype(cmd)>;
        if constexpr (std::is_same_v<T, open_account>) {
          if (s.open)
            return cairn::reject("already_open");
          return cairn::emit<event>(account_opened{cmd.owner});
        } else {
          if (!s.open)
            return cairn::reject("not_open");
          if (cmd.amount <= 0)
            return cairn::reject("amount_not_positive");
          if constexpr (std::is_same_v<T, deposit>) {
            return cairn::emit<event>(money_deposited{cmd.amount});
          } else {
            if (cmd.amount > s.balance)
              return cairn::reject("insufficient_funds");
            return cairn::emit<event>(money_withdrawn{cmd.amount});
          }
        }
      },
      c);
  }

  static state evolve(state s, const event& e) {
    std::visit(
      [&](const auto& ev) {
        using T = std::decay_t<decltype(ev)>;
        if constexpr (std::is_same_v<T, account_opened>) {
          s.open = true;
          s.owner = ev.owner;
        } else if constexpr (std::is_same_v<T, money_deposited>) {
          s.balance += ev.amount;
        } else {
          s.balance -= ev.amount;
        }
      },
      e);
    return s;
  }
};

} // namespace bank
