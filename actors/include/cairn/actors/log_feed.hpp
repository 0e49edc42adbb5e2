#pragma once

/// The log feed of cluster-wide subscribers (docs/cluster.md#cluster-wide-subscribers):
/// a read-only copy of a node's global log, as events, for a subscriber on
/// another node.
///
///   subscribing node                                 serving node
///   subscriber ──(feed_atom, owner, feed_hello)──▶ gateway ──▶ gateway ──▶ spawns a feed
///              ◀────(feed_atom, feed_page)──────────────────────────────── feed
///              ────(feed_ack_atom, generation, position)─────────────────▶
///
/// The subscriber says hello through the gateways with the position after
/// which it wants the log of `owner` (its checkpoint for that source), its
/// filter, and a generation number. The serving gateway accepts it only from
/// a configured member that completed the cluster hello, and only when this
/// node serves `owner`'s log (the owner itself, or its promoted standby: the
/// positions are the same on a replica). The feed reads pages in short read
/// transactions, at most `page_bytes` of events each, sends them while fewer
/// than `window` bytes are unacknowledged, and when it has sent everything
/// durable it asks the journal for the next commit: catching up and
/// following live are one loop, as for the standby (replication.hpp). It
/// quits when the subscriber goes down or sends `stop_atom`.
///
/// What a page carries is decoded by CAF from a peer's bytes: the subscriber
/// checks it (check_feed_page) before any event reaches its handler.

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include <caf/actor.hpp>
#include <caf/actor_system.hpp>
#include <caf/atom.hpp>
#include <caf/fwd.hpp>
#include <caf/meta/type_name.hpp>

#include "cairn/model/error.hpp"
#include "cairn/persistence/types.hpp"

namespace cairn::persistence {
class event_store;
} // namespace cairn::persistence

namespace cairn::actors {

/// (feed_atom, owner, feed_hello, subscriber) to the local gateway; it passes
/// (feed_atom, feed_hello, subscriber) to the gateway of the node serving
/// `owner`'s log and tells the subscriber (feed_atom, owner, node_id) where it
/// went. Feed → subscriber: (feed_atom, feed_page).
using feed_atom = caf::atom_constant<caf::atom("cairn_feed")>;
/// Subscriber → feed: (feed_ack_atom, generation, position): it has handled
/// the log up to `position`, so that much is no longer in flight.
using feed_ack_atom = caf::atom_constant<caf::atom("cairn_fack")>;

/// A subscription to another node's log.
struct feed_hello {
  std::string node;             ///< The subscribing node's id.
  std::string owner;            ///< Whose log: an owner of shards in the map.
  std::string name;             ///< The subscriber's name (for logs and status).
  std::uint64_t after = 0;      ///< Send the events after this position.
  std::uint64_t generation = 0; ///< Echoed in every page; a newer hello supersedes.
  std::vector<std::string> categories, types;
  std::string tenant;
};

template <class Inspector> typename Inspector::result_type inspect(Inspector& f, feed_hello& x) {
  return f(caf::meta::type_name("cairn.feed_hello"), x.node, x.owner, x.name, x.after, x.generation,
           x.categories, x.types, x.tenant);
}

/// One event on the wire (persistence::recorded_event, flattened).
struct feed_event {
  std::string stream;
  std::uint64_t version = 0;
  std::uint64_t position = 0;
  std::string id; ///< 16 bytes.
  std::int64_t timestamp_ns = 0;
  std::string type;
  std::uint32_t schema_version = 0;
  std::string correlation_id, causation_id, command_id, tenant, user, subject;
  std::string payload;
};

template <class Inspector> typename Inspector::result_type inspect(Inspector& f, feed_event& x) {
  return f(caf::meta::type_name("cairn.feed_event"), x.stream, x.version, x.position, x.id,
           x.timestamp_ns, x.type, x.schema_version, x.correlation_id, x.causation_id, x.command_id,
           x.tenant, x.user, x.subject, x.payload);
}

/// Events of the serving node's log after `after`, in position order.
struct feed_page {
  std::uint64_t generation = 0;
  std::uint64_t after = 0;         ///< The page covers the log after this position...
  std::uint64_t next_position = 0; ///< ...up to before this one (the filter may skip some).
  std::uint64_t committed = 0;     ///< The serving node's durable end of the log.
  std::vector<feed_event> events;
};

template <class Inspector> typename Inspector::result_type inspect(Inspector& f, feed_page& x) {
  return f(caf::meta::type_name("cairn.feed_page"), x.generation, x.after, x.next_position,
           x.committed, x.events);
}

/// The wire form of `ev`.
[[nodiscard]] feed_event to_feed_event(const persistence::recorded_event& ev);

/// Checks a page a peer sent, for a subscriber that has the log up to
/// `position`: the page starts there, its events' positions ascend strictly
/// inside (after, next_position), each id is 16 bytes and each stream name
/// and type is 1-255 bytes. On success, the events in store form; `corrupted`
/// naming the first fault otherwise. Pure: any thread.
[[nodiscard]] result<std::vector<persistence::recorded_event>>
check_feed_page(const feed_page& page, std::uint64_t position);

struct feed_config {
  std::size_t window = std::size_t{4} << 20;       ///< Unacknowledged bytes at most.
  std::size_t page_bytes = std::size_t{256} << 10; ///< Per page, about.
  std::size_t page_events = 1000;                  ///< Per page at most.
};

/// Spawns a feed of `store`'s log for the subscriber `sink`, woken by
/// `journal`'s commits (subscribe_atom). Detached: it reads the store.
[[nodiscard]] caf::actor spawn_log_feed(caf::actor_system& sys,
                                        const persistence::event_store& store, caf::actor journal,
                                        feed_hello hello, caf::actor sink, feed_config cfg = {});

/// Registers the feed messages with CAF (add_cluster_message_types calls it).
void add_feed_message_types(caf::actor_system_config& cfg);

} // namespace cairn::actors
