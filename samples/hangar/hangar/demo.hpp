#pragma once

// The hangar demo (what `scripts/demo` runs) and the line-command server.

#include <cstdint>
#include <iosfwd>
#include <string>

#include "cairn/model/error.hpp"

namespace hangar {

struct demo_options {
  std::uint64_t seed = 42;
  std::string data_dir = "./cairn-data/hangar"; ///< Wiped at the start: the demo starts fresh.
  double seconds = 20;                          ///< Wall-clock length of the traffic phase.
  double speed = 10;                            ///< Service clock speed-up.
  std::string metrics_address = "127.0.0.1:0";
};

/// The key moments the demo observed, for its end-to-end test.
struct demo_report {
  bool circuit_opened = false;
  bool circuit_half_opened = false;
  bool circuit_closed_again = false;
  bool idle_stopped = false;
  /// The late burst to `math` after its providers went idle: all served,
  /// the cold providers started again on demand.
  bool restarted_on_demand = false;
  bool subprocess_death_detected = false;
  bool restart_restored_everything = false;
  /// What-if with a circuit threshold of 3: groups decided otherwise, and
  /// those whose circuit it opens at that command.
  std::size_t what_if_differing = 0;
  std::size_t what_if_opened_earlier = 0;
  std::uint64_t invocations = 0;
};

/// Runs the scenario of docs/hangar.md, printing to `out`.
[[nodiscard]] cairn::result<demo_report> run_demo(const demo_options& opts, std::ostream& out);

/// Serves line commands from `in`, one answer line each on `out`, until EOF
/// or "quit"; returns the exit code.
int serve(const std::string& data_dir, std::istream& in, std::ostream& out);

} // namespace hangar
