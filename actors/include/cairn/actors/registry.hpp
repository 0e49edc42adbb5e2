#pragma once

/// The registry: one per node. It routes each command to the live actor of
/// its aggregate, activating it on demand (at most `max_activations` at
/// once), passivates idle ones and the least recently used beyond
/// `max_live`, and restarts failed ones with exponential backoff. Commands
/// that arrive while their aggregate passivates or waits to activate are
/// buffered and handed to the next incarnation: none is lost or answered twice.
/// Commands may also reach a live aggregate without it (router.hpp); the
/// aggregate then tells it now and then that it is in use.
///
///   (kind_atom, aggregate_kind)          registers an aggregate type
///   (command_atom, command_msg)          -> reply_msg (from the aggregate)
///   (touch_atom)                         from a live aggregate: it is in use
///   (failed_atom, stream, why)           from an aggregate whose user code threw: refuse
///                                        its commands for a while (docs/errors.md)
///   (live_atom)                          -> the streams not stopped yet (shutdown's log)
///   (stats_atom)                         -> registry_stats
///   (shutdown_atom)                      -> true once every aggregate has stopped

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>

#include <caf/actor.hpp>
#include <caf/actor_system.hpp>
#include <caf/allowed_unsafe_message_type.hpp>

#include "cairn/actors/metrics.hpp"

namespace cairn::actors {

/// How to spawn the actor of one aggregate type.
struct aggregate_kind {
  std::string category;
  /// Spawns from `parent` (the registry), so the new actor starts on the
  /// worker that spawns it rather than waking another (see scheduler.hpp).
  std::function<caf::actor(caf::local_actor& parent, const std::string& id)> spawn;
};

struct registry_options {
  std::chrono::milliseconds idle_timeout{120000}; ///< Default: 120 s.
  std::size_t max_live = 100000;                  ///< Default: 100 000.
  std::size_t max_activations = 64;               ///< Default: 64.
  std::size_t max_waiting = 4096;                 ///< Buffered commands per aggregate.
  /// In a cluster: why this node does not serve `stream` (its shard's owner
  /// was promoted away), or empty when it does. Such commands are answered
  /// `unavailable` with that text. Called on the registry's thread. Default:
  /// every stream is served.
  std::function<std::string(const std::string& stream)> refuses;
};

/// Spawns the registry, recording activations, passivations and the commands
/// it answers itself into `m`, which must outlive it.
[[nodiscard]] caf::actor spawn_registry(caf::actor_system& sys, registry_options opts, metrics& m);

} // namespace cairn::actors

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(cairn::actors::aggregate_kind)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(cairn::actors::registry_stats)
