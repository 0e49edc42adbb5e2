#pragma once

/// The messages cairn's actors exchange. Commands and replies are plain
/// inspectable structs with cereal payloads, so they can cross a network;
/// journal traffic stays in-process and carries store types directly.

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <caf/allowed_unsafe_message_type.hpp>
#include <caf/atom.hpp>
#include <caf/meta/type_name.hpp>

#include "cairn/actors/command.hpp"
#include "cairn/model/error.hpp"
#include "cairn/persistence/types.hpp"

namespace cairn::actors {

// Atoms hold at most 10 characters.
using command_atom = caf::atom_constant<caf::atom("cairn_cmd")>;
using append_atom = caf::atom_constant<caf::atom("cairn_app")>;
using snapshot_atom = caf::atom_constant<caf::atom("cairn_snap")>;
using flush_atom = caf::atom_constant<caf::atom("cairn_fl")>;
using sync_atom = caf::atom_constant<caf::atom("cairn_sync")>;
using stop_atom = caf::atom_constant<caf::atom("cairn_stop")>;
using activated_atom = caf::atom_constant<caf::atom("cairn_act")>;
using kind_atom = caf::atom_constant<caf::atom("cairn_kind")>;
using sweep_atom = caf::atom_constant<caf::atom("cairn_swp")>;
using retry_atom = caf::atom_constant<caf::atom("cairn_rtry")>;
using submit_atom = caf::atom_constant<caf::atom("cairn_sub")>;
using shutdown_atom = caf::atom_constant<caf::atom("cairn_down")>;
using stats_atom = caf::atom_constant<caf::atom("cairn_stat")>;
using subscribe_atom = caf::atom_constant<caf::atom("cairn_subs")>;
using committed_atom = caf::atom_constant<caf::atom("cairn_comm")>;
using demand_atom = caf::atom_constant<caf::atom("cairn_dmnd")>;
using write_atom = caf::atom_constant<caf::atom("cairn_wr")>;
using status_atom = caf::atom_constant<caf::atom("cairn_stus")>;
using wait_atom = caf::atom_constant<caf::atom("cairn_wait")>;
using rebuild_atom = caf::atom_constant<caf::atom("cairn_rbld")>;
using replay_atom = caf::atom_constant<caf::atom("cairn_rply")>;
using discard_atom = caf::atom_constant<caf::atom("cairn_dscd")>;
using pump_atom = caf::atom_constant<caf::atom("cairn_pump")>;
using tick_atom = caf::atom_constant<caf::atom("cairn_tick")>;
using touch_atom = caf::atom_constant<caf::atom("cairn_tch")>;
using failed_atom = caf::atom_constant<caf::atom("cairn_fail")>;
using live_atom = caf::atom_constant<caf::atom("cairn_live")>;
/// To a plain subscriber: (hold_atom, why) stops it handling events (this
/// node no longer serves its log: a standby); (unhold_atom) starts it again
/// from the owner's replicated checkpoint if that is further (subscriber.hpp).
using hold_atom = caf::atom_constant<caf::atom("cairn_hold")>;
using unhold_atom = caf::atom_constant<caf::atom("cairn_rels")>;
/// To the registry: passivate the live aggregates of these streams (a
/// forgotten subject's), so they recover from the store. Answers true.
using passivate_atom = caf::atom_constant<caf::atom("cairn_pasv")>;
/// To the journal: (replication_atom, sync, timeout, standby) sets how
/// commits wait for the standby; (replicated_atom, position): the standby
/// acknowledged the log up to there (docs/cluster.md#replication-modes).
using replication_atom = caf::atom_constant<caf::atom("cairn_repl")>;
using replicated_atom = caf::atom_constant<caf::atom("cairn_rpld")>;

// Commands and replies (command.hpp) as CAF messages.

template <class Inspector> typename Inspector::result_type inspect(Inspector& f, command_msg& x) {
  return f(caf::meta::type_name("cairn.command"), x.category, x.id, x.payload, x.command_id,
           x.correlation_id, x.causation_id, x.tenant, x.user, x.subject, x.deadline_ns, x.query,
           x.replay, x.to_version, x.as_of_ns);
}

template <class Inspector> typename Inspector::result_type inspect(Inspector& f, reply_event& x) {
  return f(caf::meta::type_name("cairn.reply_event"), x.type, x.schema_version, x.payload);
}

template <class Inspector> typename Inspector::result_type inspect(Inspector& f, reply_msg& x) {
  return f(caf::meta::type_name("cairn.reply"), x.code, x.message, x.context, x.first_version,
           x.last_version, x.first_position, x.last_position, x.duplicate, x.events, x.state);
}

/// One aggregate's appends, in command order, for the journal (in-process
/// only). An aggregate keeps one of these in flight and gathers the appends
/// of the commands it decides meanwhile into the next, so a hot aggregate
/// costs the journal one message per transaction, not one per command.
struct journal_append {
  std::vector<persistence::append_request> requests;
};

/// The journal's answer to a journal_append: one result per request, in order.
struct journal_result {
  std::vector<result<persistence::append_result>> values;
};

/// A snapshot for the journal to write in a later batch (in-process only).
struct journal_snapshot {
  persistence::snapshot value;
};

/// Side writes of a subscriber for the journal's next batch: key-values,
/// dead letters and checkpoints (its `appends` and `snapshots` are ignored).
struct journal_write {
  persistence::write_batch value;
};

/// The journal's answer to a journal_write: the commit's outcome.
struct journal_written {
  result<void> value;
};

/// A callback a bridge actor runs with the reply (in-process only).
struct reply_callback {
  std::function<void(reply_msg&&)> fn;
};

} // namespace cairn::actors

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(cairn::actors::journal_append)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(cairn::actors::journal_result)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(cairn::actors::journal_snapshot)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(cairn::actors::journal_write)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(cairn::actors::journal_written)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(cairn::actors::reply_callback)
