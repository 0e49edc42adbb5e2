#pragma once

/// The journal: the only writer of the event store. A detached actor (its own
/// thread, since commits block on fsync) that takes every append waiting in
/// its mailbox into one transaction — group commit — and replies to each
/// sender once that transaction is durable.
///
///   (append_atom, journal_append)   -> journal_result, after the commit
///   (snapshot_atom, journal_snapshot)  written with the next batch, no reply
///   (stats_atom)                    -> (batches, appends) committed so far
///   (write_atom, journal_write)     -> journal_written, after the commit that
///                                   holds it (key-values, dead letters, checkpoints)
///   (subscribe_atom, actor)         the actor gets (committed_atom, position) now;
///   (demand_atom, actor)            and once more as soon as the log has moved
///                                   past what it was last told. One message in
///                                   flight per watcher: a slow one never
///                                   accumulates a backlog in its mailbox.
///   (shutdown_atom)                 -> after everything queued is committed

#include <caf/actor.hpp>
#include <caf/actor_system.hpp>

#include "cairn/actors/metrics.hpp"
#include "cairn/persistence/event_store.hpp"

namespace cairn::actors {

/// Spawns the journal over `store`, recording commits into `m`; both must
/// outlive it.
[[nodiscard]] caf::actor spawn_journal(caf::actor_system& sys, persistence::event_store& store,
                                       metrics& m);

} // namespace cairn::actors
