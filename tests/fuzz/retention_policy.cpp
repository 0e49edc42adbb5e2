// The retention rule parser (cairn retention --keep). Input: the rule's text.
// A parsed rule names a category and exactly one limit, and prints as text
// that parses back to the same rule.

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "fuzz_check.hpp"
#include "cairn/persistence/retention.hpp"

using cairn::persistence::parse_retention_rule;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  auto rule = parse_retention_rule(std::string_view{reinterpret_cast<const char*>(data), size});
  if (!rule) {
    CAIRN_FUZZ_CHECK(!rule.error().message.empty(), "a refusal says why");
    return 0;
  }
  CAIRN_FUZZ_CHECK(!rule->category.empty(), "a rule names its category");
  CAIRN_FUZZ_CHECK(rule->max_age.has_value() != rule->keep_newest.has_value(),
                   "a parsed rule has exactly one limit");
  CAIRN_FUZZ_CHECK(!rule->max_age || rule->max_age->count() > 0, "an age is positive");
  CAIRN_FUZZ_CHECK(!rule->keep_newest || *rule->keep_newest > 0, "a count is positive");
  auto back = parse_retention_rule(cairn::persistence::to_string(*rule));
  CAIRN_FUZZ_CHECK(back && back->category == rule->category && back->max_age == rule->max_age
                     && back->keep_newest == rule->keep_newest,
                   "a rule prints as text that parses back to itself");
  return 0;
}
