#pragma once

/// What every process that ends a caf::actor_system with remote peers must
/// do first: the runtime's shutdown, and the tests' bare CAF peers.

#include <caf/fwd.hpp>

#include <chrono>

namespace cairn::actors {

/// Stops CAF's own actors (SpawnServ, ConfigServ) and waits for each, at
/// most `limit`. ~actor_system sends them an exit and stops the middleman
/// without waiting: when a remote node has seen them, the BASP broker
/// monitors them, and a down message that reaches the broker while the
/// middleman stops it stays in its mailbox and keeps it alive (a leak
/// LeakSanitizer reported in about one of 30 promotion rounds under load).
/// Stopped here, their down messages reach a broker that still runs. Other
/// races of that kind stay inside CAF: the sanitizer builds' tests suppress
/// them (tests/lsan.supp).
void stop_caf_internal_actors(caf::actor_system& sys, std::chrono::milliseconds limit);

} // namespace cairn::actors
