#pragma once

/// The actor of one live aggregate, for every aggregate type (the type's
/// functions come in an aggregate_type). It recovers its state from the
/// latest usable snapshot plus the trailing events, then handles commands in
/// mailbox order: decide against the pending state, append through the
/// journal, reply once the append is durable, evolve the confirmed state.
///
/// Pipelining: commands that arrive while appends are in flight are decided
/// against the pending state (which includes those appends); their appends
/// wait in one message for the journal until the message in flight is
/// answered, so one aggregate has at most one request at the journal. Each
/// append expects the exact version the previous one ends at, so if one
/// fails every later one fails too, without reaching the store; the
/// aggregate then reloads its state from the store before its next command.
/// The replies keep command order.
///
/// User code runs guarded (aggregate_type.hpp). A throwing decide rejects its
/// command with `internal`. A throwing evolve (or initial, or an upcaster
/// during recovery) puts the aggregate out of service: the command that hit
/// it gets `internal`, appends already at the journal get their real
/// outcome, every other command waiting for it gets `internal` naming the
/// exception, the registry is told (it refuses the aggregate's commands
/// until its backoff lets it try again), and the actor stops. No promise is
/// ever dropped unanswered.
///
///   (command_atom, command_msg)  -> reply_msg
///   (stop_atom)                  passivate: stop once the appends in flight
///                                are answered; later commands go back to
///                                the registry for the next incarnation
/// To the registry: (activated_atom, stream, ok), (touch_atom) now and then
/// while in use, (failed_atom, stream, why) when user code threw.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include <caf/actor.hpp>
#include <caf/actor_system.hpp>
#include <caf/fwd.hpp>

#include "cairn/actors/aggregate_type.hpp"
#include "cairn/actors/metrics.hpp"
#include "cairn/actors/registry.hpp"
#include "cairn/persistence/event_store.hpp"

namespace spdlog {
class logger;
}

namespace cairn::actors {

/// What every aggregate actor of one runtime shares; read-only once running.
struct aggregate_env {
  persistence::event_store* store = nullptr;
  caf::actor journal;
  caf::actor registry_actor;
  std::uint64_t snapshot_interval = 50; ///< Events between snapshots; 0 = never.
  /// Record each accepted command with its events (append_request::command),
  /// also one that emitted none: it then goes through the journal too.
  bool record_commands = false;
  std::size_t max_waiting = 4096; ///< Commands in flight before `overloaded`.
  /// How often a live aggregate tells the registry it is in use: commands
  /// sent straight to it (router.hpp) do not pass the registry's LRU.
  std::chrono::nanoseconds touch_every{std::chrono::seconds{1}};
  /// Bound on each append request to the journal.
  std::chrono::milliseconds request_timeout{std::chrono::seconds{60}};
  metrics* stats = nullptr;            ///< Outcomes and activation times; required.
  std::shared_ptr<spdlog::logger> log; ///< "cairn.aggregate"; required.
};

/// Spawns the actor of aggregate `id` of `type` from `parent` (the
/// registry), so it starts on the worker that spawns it (scheduler.hpp).
[[nodiscard]] caf::actor spawn_aggregate(caf::local_actor& parent, std::string id,
                                         std::shared_ptr<const aggregate_type> type,
                                         std::shared_ptr<const aggregate_env> env);

/// The same from outside any actor (tests).
[[nodiscard]] caf::actor spawn_aggregate(caf::actor_system& sys, std::string id,
                                         std::shared_ptr<const aggregate_type> type,
                                         std::shared_ptr<const aggregate_env> env);

/// What the registry needs to spawn `type`'s actors.
[[nodiscard]] aggregate_kind kind_of(std::shared_ptr<const aggregate_type> type,
                                     std::shared_ptr<const aggregate_env> env);

} // namespace cairn::actors
