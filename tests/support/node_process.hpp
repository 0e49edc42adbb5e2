#pragma once

// The child processes of the cluster tests (cairn-test-node) and their ports.

#include <cstdint>

#include "hangar/child_process.hpp"
#include "hangar/ports.hpp"

namespace cairn::test {

/// A TCP port on 127.0.0.1 that was free a moment ago (hangar/ports.hpp);
/// 0, which no node accepts, when there is none.
inline std::uint16_t free_port() {
  auto port = hangar::free_port();
  return port ? *port : 0;
}

/// A cairn-test-node process (hangar/child_process.hpp).
using node_process = hangar::child_process;

} // namespace cairn::test
