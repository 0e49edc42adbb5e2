// The text form of a retention policy (the CLI's --keep): parsing, printing.

#include <limits>
#include <set>

#include "cairn/model/stream_name.hpp"
#include "cairn/persistence/retention.hpp"

namespace cairn::persistence {

namespace {

error bad_rule(std::string_view text, const std::string& why) {
  // The rule is quoted as given, cut short: it may be anything.
  std::string shown{text.substr(0, 80)};
  if (text.size() > 80)
    shown += "...";
  return error{errc::invalid_argument,
               "retention rule '" + shown + "': " + why
                 + " (expected CATEGORY=AGE such as provider=30d, or CATEGORY=last:N)"};
}

/// A decimal u64 of 1-19 digits, nothing else; nullopt otherwise.
std::optional<std::uint64_t> digits(std::string_view s) {
  if (s.empty() || s.size() > 19)
    return std::nullopt;
  std::uint64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9')
      return std::nullopt;
    v = v * 10 + static_cast<std::uint64_t>(c - '0');
  }
  return v;
}

} // namespace

result<retention_rule> parse_retention_rule(std::string_view text) {
  auto eq = text.find('=');
  if (eq == std::string_view::npos)
    return tl::unexpected(bad_rule(text, "no '='"));
  auto category = text.substr(0, eq);
  auto limit = text.substr(eq + 1);
  if (category.empty())
    return tl::unexpected(bad_rule(text, "no category before '='"));
  // A category is the part of a stream name before its first '-'.
  std::string probe{category};
  probe += "-x";
  if (category.find('-') != std::string_view::npos || !validate_stream_name(probe))
    return tl::unexpected(
      bad_rule(text, "'" + std::string{category.substr(0, 80)} + "' is not a category"));
  retention_rule rule;
  rule.category.assign(category);
  constexpr std::string_view last = "last:";
  if (limit.substr(0, last.size()) == last) {
    auto n = digits(limit.substr(last.size()));
    if (!n)
      return tl::unexpected(bad_rule(text, "last:N needs N, a whole number"));
    if (*n == 0)
      return tl::unexpected(
        bad_rule(text, "last:0 keeps nothing; a stream keeps at least its newest event"));
    rule.keep_newest = *n;
    return rule;
  }
  if (limit.empty())
    return tl::unexpected(bad_rule(text, "no age after '='"));
  std::int64_t unit_s = 0;
  switch (limit.back()) {
    case 's': unit_s = 1; break;
    case 'm': unit_s = 60; break;
    case 'h': unit_s = 3600; break;
    case 'd': unit_s = 86400; break;
    case 'w': unit_s = 7 * 86400; break;
    default: return tl::unexpected(bad_rule(text, "an age ends in s, m, h, d or w"));
  }
  auto n = digits(limit.substr(0, limit.size() - 1));
  if (!n)
    return tl::unexpected(bad_rule(text, "an age is a whole number and a unit, such as 30d"));
  if (*n == 0)
    return tl::unexpected(bad_rule(text, "an age of 0 keeps nothing"));
  // Ages up to about 292 years fit in i64 nanoseconds.
  constexpr auto max_ns = std::numeric_limits<std::int64_t>::max();
  if (*n > static_cast<std::uint64_t>(max_ns / 1'000'000'000 / unit_s))
    return tl::unexpected(bad_rule(text, "the age is too long"));
  rule.max_age = std::chrono::seconds{static_cast<std::int64_t>(*n) * unit_s};
  return rule;
}

result<retention_policy> parse_retention_policy(const std::vector<std::string>& rules) {
  retention_policy policy;
  std::set<std::string> seen;
  for (const auto& text : rules) {
    auto rule = parse_retention_rule(text);
    if (!rule)
      return tl::unexpected(rule.error());
    if (!seen.insert(rule->category).second)
      return tl::unexpected(bad_rule(text, "category '" + rule->category + "' has a rule already"));
    policy.rules.push_back(std::move(*rule));
  }
  return policy;
}

std::string to_string(const retention_rule& rule) {
  std::string out = rule.category + "=";
  if (rule.keep_newest)
    return out + "last:" + std::to_string(*rule.keep_newest);
  if (!rule.max_age)
    return out;
  auto s = std::chrono::duration_cast<std::chrono::seconds>(*rule.max_age).count();
  for (auto [unit, len] :
       {std::pair{'w', std::int64_t{7 * 86400}}, std::pair{'d', std::int64_t{86400}},
        std::pair{'h', std::int64_t{3600}}, std::pair{'m', std::int64_t{60}}})
    if (s % len == 0)
      return out + std::to_string(s / len) + unit;
  return out + std::to_string(s) + "s";
}

std::string_view to_string(retention_hold h) noexcept {
  switch (h) {
    case retention_hold::none: return "none";
    case retention_hold::snapshot: return "snapshot";
    case retention_hold::checkpoint: return "checkpoint";
    case retention_hold::newest: return "newest";
    case retention_hold::tenant: return "tenant";
  }
  return "none";
}

} // namespace cairn::persistence
