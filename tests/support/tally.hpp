#pragma once

// The aggregate of the cluster tests: each command notes (sender, sequence
// number), so a test can check every note arrived once and in send order.

#include <cstdint>
#include <map>
#include <string>
#include <variant>

#include <cereal/types/map.hpp>
#include <cereal/types/string.hpp>
#include <cereal/types/variant.hpp>

#include "cairn/model/aggregate.hpp"
#include "cairn/model/match.hpp"

namespace cairn::test {

struct note {
  std::string sender;
  std::uint64_t seq = 0;
  template <class Ar> void serialize(Ar& ar) { ar(sender, seq); }
};

struct noted {
  static constexpr const char* type_name = "tally_noted";
  std::string sender;
  std::uint64_t seq = 0;
  template <class Ar> void serialize(Ar& ar) { ar(sender, seq); }
};

struct tally {
  static constexpr const char* category = "tally";
  struct state {
    std::map<std::string, std::uint64_t> last; ///< Per sender.
    std::uint64_t count = 0;
    template <class Ar> void serialize(Ar& ar) { ar(last, count); }
  };
  using command = std::variant<note>;
  using event = std::variant<noted>;

  static state initial() { return {}; }
  static decision<event> decide(const state&, const note& c) {
    if (c.sender.empty())
      return reject("no_sender");
    return emit<event>(noted{c.sender, c.seq});
  }
  static state evolve(state s, const noted& e) {
    s.last[e.sender] = e.seq;
    ++s.count;
    return s;
  }
};

} // namespace cairn::test
