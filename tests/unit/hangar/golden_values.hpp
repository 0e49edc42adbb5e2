#pragma once

// The values behind tests/golden/hangar/*.bin and the frozen version-1 shape
// of the provider state. The files were written once from these values and
// are committed; never regenerate them to make a test pass: a mismatch means
// stored data would no longer read back.

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <cereal/cereal.hpp>

#include "hangar/provider.hpp"

namespace hangar_golden {

/// provider::state as schema version 1 stored it: no tags, no
/// last_state_change_ns. Frozen: never edit it.
struct provider_state_v1 {
  bool registered = false;
  std::string id;
  std::string source;
  hangar::provider_mode mode = hangar::provider_mode::subprocess;
  hangar::provider_config config;
  hangar::provider_options options;
  hangar::provider_state status = hangar::provider_state::cold;
  std::uint32_t tools_count = 0;
  std::uint32_t consecutive_failures = 0;
  std::uint64_t total_failures = 0;
  std::uint64_t total_invocations = 0;
  std::int64_t last_success_ns = 0;
  std::int64_t last_failure_ns = 0;
  std::int64_t last_used_ns = 0;
  std::string last_error;
  std::map<std::string, hangar::pending_invocation> pending;

  template <class Ar> void serialize(Ar& ar, std::uint32_t) {
    ar(registered, id, source, mode, config, options, status, tools_count, consecutive_failures,
       total_failures, total_invocations, last_success_ns, last_failure_ns, last_used_ns,
       last_error, pending);
  }
};

/// provider::state as schema version 2 stored it: v1 plus tags and
/// last_state_change_ns, no waiting calls. Frozen: never edit it.
struct provider_state_v2 {
  provider_state_v1 v1;
  std::vector<std::string> tags;
  std::int64_t last_state_change_ns = 0;

  template <class Ar> void serialize(Ar& ar, std::uint32_t) {
    ar(v1.registered, v1.id, v1.source, v1.mode, v1.config, v1.options, v1.status, v1.tools_count,
       v1.consecutive_failures, v1.total_failures, v1.total_invocations, v1.last_success_ns,
       v1.last_failure_ns, v1.last_used_ns, v1.last_error, v1.pending, tags, last_state_change_ns);
  }
};

inline constexpr std::int64_t t0 = 1'700'000'000'000'000'000;

/// A degraded provider with one call in flight, as version 1 stored it.
inline provider_state_v1 state_v1() {
  provider_state_v1 s;
  s.registered = true;
  s.id = "math";
  s.source = "config";
  s.mode = hangar::provider_mode::subprocess;
  s.config.command.push_back("mcp-math");
  s.config.command.push_back("--stdio");
  s.config.params["latency_ms"] = "5";
  s.options = hangar::provider_options{600, 30, 4};
  s.status = hangar::provider_state::degraded;
  s.tools_count = 7;
  s.consecutive_failures = 4;
  s.total_failures = 9;
  s.total_invocations = 120;
  s.last_success_ns = t0;
  s.last_failure_ns = t0 + 100;
  s.last_used_ns = t0 + 50;
  s.last_error = "no pong";
  s.pending["c9"] = hangar::pending_invocation{"add", 30000, t0 + 90};
  return s;
}

/// The same provider at schema version 2, with the fields v2 added.
inline provider_state_v2 state_v2() {
  provider_state_v2 s;
  s.v1 = state_v1();
  s.tags.push_back("math");
  s.last_state_change_ns = t0 + 95;
  return s;
}

/// The same provider at schema version 3 (current), with one call waiting
/// for a start: field values, not a state the aggregate would reach.
inline hangar::provider::state state_v3() {
  const provider_state_v1 o = state_v1();
  hangar::provider::state s;
  s.registered = o.registered;
  s.id = o.id;
  s.source = o.source;
  s.mode = o.mode;
  s.config = o.config;
  s.options = o.options;
  s.status = o.status;
  s.tools_count = o.tools_count;
  s.consecutive_failures = o.consecutive_failures;
  s.total_failures = o.total_failures;
  s.total_invocations = o.total_invocations;
  s.last_success_ns = o.last_success_ns;
  s.last_failure_ns = o.last_failure_ns;
  s.last_used_ns = o.last_used_ns;
  s.last_error = o.last_error;
  s.pending = o.pending;
  s.tags.push_back("math");
  s.last_state_change_ns = t0 + 95;
  s.waiting.push_back(hangar::waiting_invocation{"mul", "{\"a\":6,\"b\":7}", "c10", 5000, t0 + 97});
  return s;
}

inline hangar::provider_started_v1 started_v1() {
  return hangar::provider_started_v1{hangar::provider_mode::remote, 7, 1234};
}

inline hangar::provider_started started_v2() {
  hangar::provider_started e{hangar::provider_mode::remote, 7, 1234, {}};
  e.tags.push_back("math");
  e.tags.push_back("beta");
  return e;
}

} // namespace hangar_golden

CEREAL_CLASS_VERSION(hangar_golden::provider_state_v1, 1)
CEREAL_CLASS_VERSION(hangar_golden::provider_state_v2, 2)
