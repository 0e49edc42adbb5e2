#pragma once

// A customer with personal data (crypto-shredding tests): its name and email
// are cairn::personal<T>, encrypted under the customer's data-subject key,
// and evolve handles them being absent after the subject was forgotten.

#include <string>
#include <variant>

#include <cereal/types/string.hpp>
#include <cereal/types/variant.hpp>

#include "cairn/model/aggregate.hpp"
#include "cairn/model/match.hpp"
#include "cairn/persistence/personal.hpp"

namespace crm {

struct register_customer {
  std::string name, email, tier;
  template <class Ar> void serialize(Ar& ar) { ar(name, email, tier); }
};
struct rename_customer {
  std::string name;
  template <class Ar> void serialize(Ar& ar) { ar(name); }
};

struct customer_registered {
  static constexpr const char* type_name = "customer_registered";
  cairn::personal<std::string> name;
  cairn::personal<std::string> email;
  std::string tier; // not personal: kept after forget
  template <class Ar> void serialize(Ar& ar) {
    ar(cereal::make_nvp("name", name), cereal::make_nvp("email", email),
       cereal::make_nvp("tier", tier));
  }
};
struct customer_renamed {
  static constexpr const char* type_name = "customer_renamed";
  cairn::personal<std::string> name;
  template <class Ar> void serialize(Ar& ar) { ar(cereal::make_nvp("name", name)); }
};

struct customer {
  static constexpr const char* category = "customer";
  struct state {
    bool registered = false;
    cairn::personal<std::string> name; // absent once forgotten
    std::string tier;
    int renames = 0;
    template <class Ar> void serialize(Ar& ar) { ar(registered, name, tier, renames); }
  };
  using command = std::variant<register_customer, rename_customer>;
  using event = std::variant<customer_registered, customer_renamed>;

  static state initial() { return {}; }
  static cairn::decision<event> decide(const state& s, const register_customer& c) {
    if (s.registered)
      return cairn::reject("already_registered");
    return cairn::emit<event>(customer_registered{c.name, c.email, c.tier});
  }
  static cairn::decision<event> decide(const state& s, const rename_customer& c) {
    if (!s.registered)
      return cairn::reject("not_registered");
    return cairn::emit<event>(customer_renamed{c.name});
  }
  // The personal fields may be absent (forgotten): copy them as they are,
  // never dereference them unchecked.
  static state evolve(state s, const customer_registered& e) {
    s.registered = true;
    s.name = e.name;
    s.tier = e.tier;
    return s;
  }
  static state evolve(state s, const customer_renamed& e) {
    s.name = e.name;
    ++s.renames;
    return s;
  }
};

} // namespace crm
