#pragma once

/// The journal: the only writer of the event store. A detached actor (its own
/// thread, since commits block on fsync) that takes every append waiting in
/// its mailbox into one transaction — group commit — and replies to each
/// sender once that transaction is durable. Under `sync` a commit flushes its
/// pages only; the next commit's flush carries its meta page to disk, or,
/// when nothing follows, a flush of the journal's own.
///
///   (append_atom, journal_append)   -> journal_result, once the commit is durable
///   (snapshot_atom, journal_snapshot)  written with the next batch, no reply
///   (stats_atom)                    -> (batches, appends) committed so far
///   (write_atom, journal_write)     -> journal_written, once the commit that
///                                   holds it is durable (key-values, dead
///                                   letters, checkpoints)
///   (subscribe_atom, actor)         the actor gets (committed_atom, position) now;
///   (demand_atom, actor)            and once more as soon as the durable log has
///                                   moved past what it was last told, before the
///                                   commit's appenders hear of it. One message
///                                   in flight per watcher: a slow one never
///                                   accumulates a backlog in its mailbox.
///   (shutdown_atom)                 -> after everything queued is committed and flushed

#include <caf/actor.hpp>
#include <caf/actor_system.hpp>

#include "cairn/actors/metrics.hpp"
#include "cairn/actors/placement.hpp"
#include "cairn/persistence/event_store.hpp"

namespace cairn::actors {

/// Spawns the journal over `store`, recording commits into `m`; both must
/// outlive it. Detached unless `where` says otherwise (tests).
[[nodiscard]] caf::actor spawn_journal(caf::actor_system& sys, persistence::event_store& store,
                                       metrics& m, placement where = placement::detached);

} // namespace cairn::actors
