#pragma once

/// gateway: one per clustered node, published on the node's cluster port with
/// CAF's io middleman. It forwards commands for streams other nodes own to
/// their gateways and serves the commands they forward here through the local
/// registry (docs/cluster.md).
///
/// Connections: of two nodes, the one with the lower id dials the other
/// (`connect_atom` on the middleman actor, bounded and retried with backoff)
/// and introduces itself with a hello that carries its shard map's version
/// and digest; a peer with another map is refused, and both say why. Each
/// side monitors the other's gateway: a lost connection is a down message.
/// An application ping every `ping_interval` marks a peer that stops
/// answering for `heartbeat_timeout` as suspect (a stopped process keeps
/// its TCP connection open).
///
/// Forwarding: the wire carries our own request ids, not CAF requests, so
/// the gateway decides when a command has failed: its owner is not up, its
/// bound passed, the connection dropped, or the peer has `max_in_flight`
/// commands of ours already (`overloaded`; BASP has no back-pressure).
/// Each answer runs the caller's callback exactly once, on the gateway.
///
/// Batching: the commands bound for one peer travel as one forward_batch
/// and the answers to one peer as one reply_batch, so CAF's per-message
/// costs (serialization, the BASP header, a write, a wake-up) are paid per
/// batch. A batch is sent when it reaches `batch_items` or `batch_bytes`, or
/// when a flush message the gateway sends itself on queueing a batch's first
/// item comes up: it lands behind what was already in the mailbox, so a
/// burst goes out together and a lone command waits only for its turn.
/// Answers come back from many aggregates in a stream that the gateway
/// drains faster than it fills, so an answer batch that the answers still
/// being served here could fill waits for them, up to `answer_wait`.
///
/// Untrusted peers: a forwarded command from a node that did not complete a
/// hello, or any message of an unexpected shape, is dropped, logged and
/// counted; CAF itself drops bytes it cannot deserialize.

#include <chrono>
#include <functional>
#include <cstdint>
#include <string>
#include <vector>

#include <caf/actor.hpp>
#include <caf/allowed_unsafe_message_type.hpp>
#include <caf/fwd.hpp>

#include "cairn/actors/log_feed.hpp"
#include "cairn/actors/messages.hpp"
#include "cairn/model/cluster_status.hpp"
#include "cairn/model/shard_map.hpp"

namespace cairn::actors {

using hello_atom = caf::atom_constant<caf::atom("cairn_helo")>;
using forward_atom = caf::atom_constant<caf::atom("cairn_fwd")>;
using forwarded_atom = caf::atom_constant<caf::atom("cairn_fwdd")>;
using ping_atom = caf::atom_constant<caf::atom("cairn_ping")>;
using pong_atom = caf::atom_constant<caf::atom("cairn_pong")>;
/// The gateway to itself: send the batches queued so far.
using send_batches_atom = caf::atom_constant<caf::atom("cairn_bsnd")>;

/// What a node says about itself when it connects, and the answer.
/// Which node of an owner/standby pair serves the owner's shards, as of
/// which epoch (docs/cluster.md#promotion). A higher epoch wins.
struct placement_msg {
  std::string owner;  ///< The node that owns the shards in the map.
  std::string active; ///< The owner itself, or its standby once promoted.
  std::uint64_t epoch = 0;
};

template <class Inspector> typename Inspector::result_type inspect(Inspector& f, placement_msg& x) {
  return f(caf::meta::type_name("cairn.placement"), x.owner, x.active, x.epoch);
}

struct hello_msg {
  std::uint32_t protocol = 0; ///< cluster_protocol of the sender.
  std::string node;           ///< The sender's node id.
  std::uint64_t map_version = 0;
  std::uint64_t map_digest = 0;
  std::uint32_t shards = 0;
  std::string refusal; ///< In an answer: why the peer refuses (empty: accepted).
  /// The sender's view of every owner/standby pair.
  std::vector<placement_msg> placements;
};

/// Bumped when the messages between gateways change shape (2: batches,
/// placements and standby replication).
inline constexpr std::uint32_t cluster_protocol = 2;

template <class Inspector> typename Inspector::result_type inspect(Inspector& f, hello_msg& x) {
  return f(caf::meta::type_name("cairn.hello"), x.protocol, x.node, x.map_version, x.map_digest,
           x.shards, x.refusal, x.placements);
}

/// (placement_atom, placement_msg): from the runtime, this node's pair
/// changed (a promotion, a step-down): adopt it and tell every peer; from a
/// peer, adopt it when its epoch is higher.
using placement_atom = caf::atom_constant<caf::atom("cairn_plc")>;

/// One command a node forwards to the owner of its stream.
struct forward_item {
  std::uint64_t request = 0; ///< The sender's id for it; the answer carries it back.
  /// How long the sender waits, in ms (0: no bound). The sender's deadline
  /// is on its own clock, so the bound travels instead.
  std::int64_t bound_ms = 0;
  command_msg command;
};

template <class Inspector> typename Inspector::result_type inspect(Inspector& f, forward_item& x) {
  return f(caf::meta::type_name("cairn.forward_item"), x.request, x.bound_ms, x.command);
}

/// Commands for one peer, in the order they were forwarded: `(forward_atom,
/// forward_batch)`.
struct forward_batch {
  std::vector<forward_item> items;
};

template <class Inspector> typename Inspector::result_type inspect(Inspector& f, forward_batch& x) {
  return f(caf::meta::type_name("cairn.forward_batch"), x.items);
}

/// The answer to one forwarded command.
struct reply_item {
  std::uint64_t request = 0; ///< The forward_item's.
  reply_msg reply;
};

template <class Inspector> typename Inspector::result_type inspect(Inspector& f, reply_item& x) {
  return f(caf::meta::type_name("cairn.reply_item"), x.request, x.reply);
}

/// Answers for one peer, in the order they came: `(forwarded_atom, reply_batch)`.
struct reply_batch {
  std::vector<reply_item> items;
};

template <class Inspector> typename Inspector::result_type inspect(Inspector& f, reply_batch& x) {
  return f(caf::meta::type_name("cairn.reply_batch"), x.items);
}

/// A cluster member's address.
struct gateway_node {
  std::string id;
  std::string host;
  std::uint16_t port = 0;
};

struct gateway_config {
  std::string node_id;             ///< This node.
  std::vector<gateway_node> nodes; ///< Every member, this node included.
  shard_map map;
  std::chrono::milliseconds ping_interval{1000};
  std::chrono::milliseconds heartbeat_timeout{5000};
  std::chrono::milliseconds connect_timeout{2000};
  /// Bound of a forwarded command sent without a timeout of its own.
  std::chrono::milliseconds remote_timeout{60000};
  std::size_t max_in_flight = 4096; ///< Per peer.
  /// A batch for one peer is sent once it holds this many commands (or
  /// answers). 1 sends each at once. Default: 64.
  std::size_t batch_items = 64;
  /// ... or about this many bytes of strings (payloads, ids, events).
  /// Default: 256 KiB.
  std::size_t batch_bytes = 256 * 1024;
  /// An answer batch waits up to this long for more answers while enough
  /// to fill it are still being served here. Default: 500 µs.
  std::chrono::microseconds answer_wait{500};
  /// Answers a `replay` query for a stream this node owns. It reads the
  /// store, so it runs on a thread of its own, never on the gateway's.
  std::function<reply_msg(const command_msg&)> replay;
  /// This node's standby, whose hellos go to `replication_source`
  /// (replication.hpp); empty when it has none.
  std::string standby;
  caf::actor replication_source;
  /// Every owner/standby pair as this node knows it at the start.
  std::vector<placement_msg> placements;
  /// Called on the gateway's thread when a placement with a higher epoch is
  /// adopted (from a peer or from this node's runtime).
  std::function<void(const placement_msg&)> on_placement;
  /// Starts a log feed (log_feed.hpp) of this node's log for `sink`, a
  /// subscriber on another node; called on the gateway's thread after the
  /// hello was checked. Empty: feeds are refused.
  std::function<void(feed_hello&, caf::actor sink)> serve_feed;
};

/// Registers the messages that cross between nodes with CAF, under the same
/// names on every node: a type CAF does not know is dropped on the wire.
void add_cluster_message_types(caf::actor_system_config& cfg);

/// Spawns the gateway; `registry` serves the commands this node owns. Send
/// it `(submit_atom, command_msg, timeout_ms, reply_callback)` for a stream
/// another node owns, `(status_atom)` for a cluster_status, and
/// `(placement_atom, placement_msg)` when this node's pair changes,
/// `(replica_atom, standby, source)` when this node's standby or source
/// changes, `(feed_atom, owner, feed_hello, subscriber)` to subscribe a
/// cluster-wide subscriber to the log `owner`'s shards are served from,
/// `(shutdown_atom)` to stop: it fails what it forwarded, answers what it
/// serves, then answers true.
[[nodiscard]] caf::actor spawn_gateway(caf::actor_system& sys, gateway_config config,
                                       caf::actor registry);

} // namespace cairn::actors

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(cairn::cluster_status)
