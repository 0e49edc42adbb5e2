#pragma once

// The consumer's own aggregate: a counter that only goes up.

#include <cstdint>
#include <variant>

#include "cairn/model/aggregate.hpp"

namespace consumer {

struct add {
  std::int64_t amount = 0;
  template <class Ar> void serialize(Ar& ar) { ar(amount); }
};

struct added {
  static constexpr const char* type_name = "added";
  std::int64_t amount = 0;
  template <class Ar> void serialize(Ar& ar) { ar(amount); }
};

struct counter {
  static constexpr const char* category = "counter";

  struct state {
    std::int64_t total = 0;
    template <class Ar> void serialize(Ar& ar) { ar(total); }
  };
  using command = std::variant<add>;
  using event = std::variant<added>;

  static state initial() { return {}; }

  static cairn::decision<event> decide(const state&, const command& c) {
    const auto& cmd = std::get<add>(c);
    if (cmd.amount <= 0)
      return cairn::reject("amount_not_positive");
    return cairn::emit<event>(added{cmd.amount});
  }

  static state evolve(state s, const event& e) {
    s.total += std::get<added>(e).amount;
    return s;
  }
};

} // namespace consumer
