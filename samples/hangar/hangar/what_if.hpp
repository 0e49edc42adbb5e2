#pragma once

// What-if replay in the hangar sample (docs/hangar.md#hangar-what-if): a
// stricter circuit-breaker rule re-run over the group commands a store
// recorded, printing where circuits would have opened differently.

#include <cstdint>
#include <iosfwd>
#include <string>

#include "cairn/runtime/runtime.hpp"
#include "hangar/provider_group.hpp"

namespace hangar {

/// provider_group's decide with a lower circuit threshold: the breaker opens
/// after `threshold` consecutive failures when the group's own threshold is
/// higher. Everything else is the recorded rule.
struct stricter_breaker {
  std::uint32_t threshold = 3;

  [[nodiscard]] cairn::decision<provider_group::event>
  operator()(const provider_group::state& s, const provider_group::command& c) const {
    if (s.options.circuit_failure_threshold <= threshold)
      return provider_group::decide(s, c);
    auto strict = s;
    strict.options.circuit_failure_threshold = threshold;
    return provider_group::decide(strict, c);
  }
};

/// What print_what_if found.
struct what_if_summary {
  std::size_t groups = 0;    ///< Groups with recorded commands.
  std::size_t differing = 0; ///< Groups the stricter rule decided otherwise.
  /// Groups whose circuit the stricter rule opens at the first difference.
  std::size_t opened_earlier = 0;
};

/// Runs stricter_breaker{threshold} over every group `rt` recorded and
/// prints, per group, the first command it decides otherwise, with the
/// recorded events and the stricter rule's.
[[nodiscard]] cairn::result<what_if_summary>
print_what_if(cairn::runtime& rt, std::uint32_t threshold, std::ostream& out);

/// `hangar what-if --data DIR [--threshold N]`: a runtime on DIR without
/// handlers (it sends no command), then print_what_if. Returns the exit code.
int what_if(const std::string& data_dir, std::uint32_t threshold, std::ostream& out);

} // namespace hangar
