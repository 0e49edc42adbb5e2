#pragma once

/// Standby replication (docs/cluster.md#standby): an owner's log, copied to
/// its standby node byte for byte, at the same positions.
///
///   owner                                   standby
///   source ──(frame_atom, epoch, log_frame)──▶ sink ──(replicate_atom)──▶ journal
///          ◀──────(ack_atom, position)──────        ◀── durable last position
///
/// The sink says hello through the gateways (`replica_hello`: its last
/// position, the digest there and its epochs); the source starts at the
/// first position the two logs do not share, or tells the sink to truncate a
/// divergent tail first (`truncate_atom`). The source sends frames of at most
/// `frame_bytes` while fewer than `window` bytes are unacknowledged (BASP has
/// no back-pressure), and is woken by the journal's commits, so catching up
/// and following live are one loop. A frame of an older epoch than the sink
/// knows is refused (`fenced_atom`): a stale owner never gets an
/// acknowledgement.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <caf/actor.hpp>
#include <caf/actor_system.hpp>
#include <caf/allowed_unsafe_message_type.hpp>
#include <caf/atom.hpp>
#include <caf/meta/type_name.hpp>

#include "cairn/actors/placement.hpp"
#include "cairn/model/cluster_status.hpp"
#include "cairn/persistence/event_store.hpp"
#include "cairn/persistence/replication.hpp"

namespace cairn::persistence {

template <class Inspector> typename Inspector::result_type inspect(Inspector& f, subject_key& x) {
  return f(caf::meta::type_name("cairn.subject_key"), x.subject, x.wrapped);
}

template <class Inspector> typename Inspector::result_type inspect(Inspector& f, checkpoint& x) {
  return f(caf::meta::type_name("cairn.checkpoint"), x.name, x.position);
}

template <class Inspector> typename Inspector::result_type inspect(Inspector& f, log_frame& x) {
  return f(caf::meta::type_name("cairn.log_frame"), x.first_position, x.records, x.keys,
           x.checkpoints);
}

template <class Inspector> typename Inspector::result_type inspect(Inspector& f, epoch_info& x) {
  return f(caf::meta::type_name("cairn.epoch_info"), x.epoch, x.position, x.node, x.timestamp_ns);
}

} // namespace cairn::persistence

namespace cairn::actors {

/// A standby's subscription: where its replica stands.
struct replica_hello {
  std::string node;                ///< The standby's node id.
  std::uint64_t last_position = 0; ///< Its replica holds the log up to here.
  std::string digest;              ///< 32 bytes: its chain digest there; empty at 0.
  std::vector<persistence::epoch_info> epochs;
};

template <class Inspector> typename Inspector::result_type inspect(Inspector& f, replica_hello& x) {
  return f(caf::meta::type_name("cairn.replica_hello"), x.node, x.last_position, x.digest,
           x.epochs);
}

/// (replica_atom, owner, replica_hello, sink) to the local gateway, which
/// passes (replica_atom, replica_hello, sink) to the owner's gateway, which
/// gives it to the owner's source when `node` is its standby.
using replica_atom = caf::atom_constant<caf::atom("cairn_rhel")>;
/// Source → sink: (frame_atom, epoch, log_frame).
using frame_atom = caf::atom_constant<caf::atom("cairn_rfrm")>;
/// Sink → source: (ack_atom, position): the replica holds the log up to
/// there durably.
using ack_atom = caf::atom_constant<caf::atom("cairn_rack")>;
/// Sink → source: (fenced_atom, epoch): the sink knows a newer epoch.
using fenced_atom = caf::atom_constant<caf::atom("cairn_rfnc")>;
/// Source → sink: (truncate_atom, position): the logs agree up to there
/// only; cut the replica's tail and say hello again.
using truncate_atom = caf::atom_constant<caf::atom("cairn_rtrn")>;
/// To the journal: (replicate_atom, log_frame) → journal_applied, once
/// durable; (truncate_atom, position, file) → journal_truncated.
using replicate_atom = caf::atom_constant<caf::atom("cairn_rapl")>;

/// To the journal: (epoch_atom, epoch, node) → journal_epoch: begin an epoch
/// (a promotion, or an owner's first start); (fenced_atom, why): this node
/// serves none of its pair's shards (a standby, or an owner that stepped
/// down): refuse appends with `why`, acknowledge no commit under way, and
/// fail every reply that waits for the standby (such commits are cut when
/// it rejoins); (fenced_atom, "") lifts it (the node serves).
using epoch_atom = caf::atom_constant<caf::atom("cairn_epch")>;

/// The journal's answer to epoch_atom.
struct journal_epoch {
  result<persistence::epoch_info> value;
};

/// The journal's answer to replicate_atom: the replica's new last position.
struct journal_applied {
  result<std::uint64_t> value;
};

/// The journal's answer to truncate_atom.
struct journal_truncated {
  result<persistence::truncation> value;
};

using cairn::replication_status;

struct source_config {
  std::string node_id; ///< This node, the owner.
  std::string standby; ///< The only node whose hello is accepted.
  std::size_t window = std::size_t{8} << 20;
  std::size_t frame_bytes = std::size_t{256} << 10;
  /// How often the source looks for checkpoints of this node's subscribers
  /// that moved while no frame went out, and sends them alone. Default: 100 ms.
  std::chrono::milliseconds checkpoint_interval{100};
  /// Called on the source's thread when the standby refuses this node's
  /// epoch: another node was promoted; stop serving at once.
  std::function<void(std::uint64_t newer_epoch)> on_fenced;
};

/// Spawns the owner's source over `store` (reads only), woken by `journal`
/// (subscribe_atom). Send it `(status_atom)` for a replication_status.
[[nodiscard]] caf::actor spawn_replication_source(caf::actor_system& sys,
                                                  const persistence::event_store& store,
                                                  caf::actor journal, source_config cfg,
                                                  placement where = placement::scheduled);

struct sink_config {
  std::string node_id; ///< This node, the standby.
  std::string owner;   ///< The node whose log it follows.
  caf::actor gateway;  ///< This node's gateway, which carries the hello.
  /// A hello without an answer is sent again after this long.
  std::chrono::milliseconds retry{500};
  /// Where truncated tails are saved ("<dir>/truncated-<position>-<time>.jsonl").
  std::string truncation_dir;
};

/// Spawns the standby's sink: it applies frames through `journal` (the
/// store's only writer) and reads `store` for its hello. Send it
/// `(status_atom)` for a replication_status.
[[nodiscard]] caf::actor spawn_replication_sink(caf::actor_system& sys,
                                                const persistence::event_store& store,
                                                caf::actor journal, sink_config cfg,
                                                placement where = placement::scheduled);

/// Registers the replication messages with CAF (add_cluster_message_types calls it).
void add_replication_message_types(caf::actor_system_config& cfg);

} // namespace cairn::actors

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(cairn::actors::journal_applied)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(cairn::actors::journal_truncated)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(cairn::actors::journal_epoch)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(cairn::replication_status)
