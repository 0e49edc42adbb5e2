#pragma once

/// What a node's gateway reports about its cluster (cairn::runtime::cluster(),
/// GET /cluster, `cairn cluster status`). Vocabulary shared by the gateway
/// (actors) and the renderers (runtime/include/cairn/runtime/cluster.hpp).

#include <cstdint>
#include <string>
#include <vector>

namespace cairn {

/// One peer as this node's gateway sees it.
struct peer_status {
  std::string id;
  std::string host;
  std::uint16_t port = 0;
  /// "connecting", "up", "down", "refused" (its map differs) or "suspect"
  /// (connected, but the application ping is late).
  std::string state;
  /// Wall-clock ns since the epoch of the last change of `state`; 0 = unknown.
  std::int64_t since_ns = 0;
  /// Why it is not up ("map version 3 here, 4 there"); empty when up.
  std::string reason;
  std::uint64_t in_flight = 0; ///< Forwarded commands awaiting an answer now.
  std::uint64_t forwarded = 0; ///< Commands and queries sent to it, ever.
  std::uint64_t received = 0;  ///< Requests it sent to this node, ever.
  std::uint64_t failures = 0;  ///< Forwarded requests that failed (timeout, down).
  std::uint64_t dropped = 0;   ///< Messages from it dropped (bad type or payload).
  /// Round trips per bucket, not cumulative: rtt_us_buckets[i] fell in
  /// (rtt_us_bounds[i-1], rtt_us_bounds[i]]; one more entry holds those above
  /// every bound (as histogram_snapshot in cairn/actors/metrics.hpp).
  std::vector<std::uint64_t> rtt_us_buckets;
  std::uint64_t rtt_us_sum = 0; ///< Of every round trip.
  std::uint64_t rtt_p50_us = 0;
  std::uint64_t rtt_p99_us = 0;
  /// Inclusive upper bounds of rtt_us_buckets, µs, ascending.
  std::vector<std::uint64_t> rtt_us_bounds;
};

/// Standby replication as one side sees it (docs/cluster.md#standby).
struct replication_status {
  std::string role;                ///< "owner" (it has a standby) or "standby".
  std::string peer;                ///< The standby, or the owner followed.
  bool connected = false;          ///< Frames flow (a subscription is live).
  std::uint64_t epoch = 0;         ///< The newest epoch this side knows.
  std::uint64_t committed = 0;     ///< The owner's durable log end (as last heard, on a standby).
  std::uint64_t acknowledged = 0;  ///< The replica holds the log up to here durably.
  std::uint64_t frames = 0;        ///< Frames sent (owner) or applied (standby).
  std::uint64_t bytes = 0;         ///< Record bytes sent or applied.
  std::uint64_t subscriptions = 0; ///< Hellos accepted (owner) or sent (standby).
  std::uint64_t truncated = 0;     ///< Records cut from a divergent tail (standby).
  bool fenced = false;             ///< Owner: its standby follows a newer epoch.
  std::string problem;             ///< The last thing that went wrong; empty when none.
};

/// A node's view of the cluster: what `cairn cluster status` prints and
/// GET /cluster of the metrics endpoint serves.
struct cluster_status {
  std::string node_id;
  std::uint64_t map_version = 0;
  std::uint64_t map_digest = 0;
  std::uint32_t shards = 0;
  std::uint32_t owned_shards = 0; ///< Of `shards`, those this node owns.
  std::vector<peer_status> peers;
  /// Messages dropped from no known peer (unknown node, garbage).
  std::uint64_t dropped_messages = 0;
  /// The node's replication: one entry on an owner with a standby and on a
  /// standby, none otherwise.
  std::vector<replication_status> replication;
};

} // namespace cairn
