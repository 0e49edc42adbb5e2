#pragma once

/// Subscribers: actors that hand the events of the global log, in position
/// order, to a handler — catch-up from a durable checkpoint, then live — with
/// retries, dead letters and, for a local projection, a read model committed
/// in the same transaction as the checkpoint.
///
/// How it cannot skip an event: a subscriber only ever reads the log from the
/// store, from its own position onwards. The journal is the one writer and
/// assigns positions inside its transaction, so every read sees a gap-free
/// prefix of the log; "live" only means the journal wakes the subscriber
/// (one notification in flight at most) instead of it polling. The
/// checkpoint it writes is the position of the last event it handled or
/// dead-lettered, written by the journal in the same transaction as that
/// event's dead letter or read-model changes.
///
///   (status_atom)                 -> subscriber_status
///   (wait_atom, position)         -> true once the checkpoint reached `position`
///   (rebuild_atom)                -> true once the read model and checkpoint are reset
///   (replay_atom, position)       -> replay_report; dead letters at `position` (0: all)
///   (discard_atom, position)      -> std::uint64_t removed; at `position` (0: all)
///   (stop_atom)                   -> true after the final checkpoint; then it quits
///   (hold_atom, why)              -> true; a plain subscriber saves its progress and
///                                    handles nothing until released (a projection
///                                    ignores it: it has no side effects)
///   (unhold_atom)                 -> true; a held subscriber starts again, each source
///                                    from max(its checkpoint, the owner's replicated
///                                    one: persistence::replicated_checkpoint_name)
///
/// Held, it reads nothing (no store reads, no feeds) and calls no handler:
/// on a standby, the owner's subscriber of the same name acts on those
/// events. Released on promotion, it resumes where the owner's was when
/// the replica last heard of it: the events after that position are
/// delivered again (at-least-once).

#include <caf/actor.hpp>
#include <caf/actor_system.hpp>
#include <caf/allowed_unsafe_message_type.hpp>

#include "cairn/actors/placement.hpp"
#include "cairn/actors/subscription.hpp"
#include "cairn/persistence/event_store.hpp"

namespace cairn::actors {

/// Spawns a subscriber on its own thread (a handler may block; `where`
/// says otherwise for tests), reading `store` and writing through `journal`.
/// `store` must outlive it. A cluster-wide subscriber (`spec.sources` not
/// empty) reads the remote sources through log feeds (log_feed.hpp) that it
/// asks `gateway` for; rebuild, replay and discard refuse it (for now).
[[nodiscard]] caf::actor spawn_subscriber(caf::actor_system& sys,
                                          const persistence::event_store& store, caf::actor journal,
                                          subscriber_spec spec,
                                          placement where = placement::detached,
                                          caf::actor gateway = {});

} // namespace cairn::actors

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(cairn::actors::subscriber_status)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(cairn::actors::replay_report)
