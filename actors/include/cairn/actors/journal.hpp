#pragma once

/// The journal: the only writer of the event store. A detached actor (its own
/// thread, since commits block on fsync) that takes every append waiting in
/// its mailbox into one transaction — group commit — and replies to each
/// sender once that transaction is durable.
///
///   (append_atom, journal_append)   -> journal_result, after the commit
///   (snapshot_atom, journal_snapshot)  written with the next batch, no reply
///   (stats_atom)                    -> (batches, appends) committed so far
///   (subscribe_atom, actor)         the actor gets (committed_atom, position) now
///                                   and after every commit that moves the log
///   (shutdown_atom)                 -> after everything queued is committed

#include <caf/actor.hpp>
#include <caf/actor_system.hpp>

#include "cairn/persistence/event_store.hpp"

namespace cairn::actors {

/// Spawns the journal over `store`, which must outlive it.
[[nodiscard]] caf::actor spawn_journal(caf::actor_system& sys, persistence::event_store& store);

} // namespace cairn::actors
