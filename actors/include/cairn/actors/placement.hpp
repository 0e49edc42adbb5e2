#pragma once

/// Where an actor that may block runs.

#include <cstdint>

namespace cairn::actors {

/// `detached` gives the actor a thread of its own, so a blocking call (an
/// fsync, a slow handler) stalls no worker. `scheduled` runs it on the
/// scheduler like any other actor: what CAF's deterministic test coordinator
/// needs, since it steps only scheduled actors.
enum class placement : std::uint8_t {
  detached,  ///< Its own thread. The default.
  scheduled, ///< The actor system's scheduler (tests).
};

} // namespace cairn::actors
