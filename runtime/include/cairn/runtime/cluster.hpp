#pragma once

/// A cluster's configuration and status, without CAF: the file every node
/// reads, its parser and writer, and the status the gateway reports.
///
///   // cluster.conf, the same file on every node (docs/cluster.md):
///   //   map-version 1
///   //   shards 1024
///   //   node A 10.0.0.1 7101
///   //   node B 10.0.0.2 7101
///   //   owner 0-511 A
///   //   owner 512-1023 B
///   auto opts = cairn::load_cluster_config("cluster.conf", "A");
///   if (!opts) die(opts.error().to_string()); // "invalid_argument: line 6: ..."
///   opts->map.owner_of("account-alice");      // "A" or "B"
///
///   // or in code:
///   auto opts = cairn::make_cluster({{"A", "127.0.0.1", 7101}, {"B", "127.0.0.1", 7102}}, "A");
///   std::string text = cairn::to_config_text(opts); // the file form
///
/// Library cairn::cluster_config: it depends on cairn::model only, so the
/// `cairn` CLI (tools/, which never links the actors) reads the same files
/// and renders the same status as the runtime.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "cairn/model/cluster_status.hpp"
#include "cairn/model/error.hpp"
#include "cairn/model/shard_map.hpp"

namespace cairn {

/// One node of the cluster: where its gateway listens.
struct cluster_node {
  /// 1-64 bytes of [A-Za-z0-9._-]; the lower id dials a pair's connection.
  std::string id;
  /// A host name or an IP address, without spaces ("127.0.0.1", "::1").
  std::string host;
  /// The gateway's TCP port, 1-65535.
  std::uint16_t port = 0;
  /// The node that follows this node's log as its standby (docs/cluster.md#standby);
  /// empty for none. A standby owns no shards and follows exactly one node.
  std::string standby{};
};

/// When an owner with a standby acknowledges a command (docs/cluster.md#replication-modes).
enum class replication_mode : std::uint8_t {
  /// After the local commit. A failover loses what the standby had not
  /// acknowledged yet: at most replication_window bytes of log.
  async,
  /// After the local commit AND the standby's acknowledgement of it. A
  /// failover loses no acknowledged command; a standby that does not
  /// acknowledge within sync_timeout makes the owner answer `unavailable`.
  sync,
};

/// The cluster as one node sees it. Every node gets the same nodes, map and
/// options (the same file) and its own `node_id`.
struct cluster_options {
  /// This node's id; one of `nodes`.
  std::string node_id;
  /// Every node, this one included.
  std::vector<cluster_node> nodes;
  /// The owner of each shard. Default: version 1, no shards (make_cluster
  /// or a config file fills it).
  shard_map map;
  /// Interval of CAF's middleman heartbeat. Default: 1 s.
  std::chrono::milliseconds heartbeat_interval{1000};
  /// A connection silent for this long is closed (CAF's connection timeout);
  /// also the bound on an answer to the application ping. Default: 5 s.
  std::chrono::milliseconds heartbeat_timeout{5000};
  /// Interval of the application ping to each peer. Default: 1 s.
  std::chrono::milliseconds ping_interval{1000};
  /// Bound on one connection attempt to a peer. Default: 2 s.
  std::chrono::milliseconds connect_timeout{2000};
  /// Bound on a forwarded command or query sent without a timeout of its
  /// own; 0 = runtime_options::request_timeout. Default: 0.
  std::chrono::milliseconds remote_timeout{0};
  /// Commands forwarded to one peer and not yet answered, at most; beyond,
  /// a command is answered `overloaded`. Default: 4096.
  std::size_t max_in_flight_per_peer = 4096;
  /// CAF's `middleman.workers`; 0 = CAF's default. Default: 0.
  unsigned middleman_workers = 0;
  /// How owners with a standby acknowledge commands. Default: async.
  replication_mode replication = replication_mode::async;
  /// Bytes of log an owner sends its standby ahead of the standby's
  /// acknowledgement, at most (BASP has no back-pressure). Default: 8 MiB.
  std::size_t replication_window = std::size_t{8} << 20;
  /// In `sync` mode: a command whose commit the standby has not acknowledged
  /// after this long is answered `unavailable` (it is durable on the owner;
  /// retry it with its command id). Default: 2 s.
  std::chrono::milliseconds sync_timeout{2000};
};

/// "async" or "sync".
[[nodiscard]] constexpr std::string_view to_string(replication_mode m) noexcept {
  return m == replication_mode::sync ? "sync" : "async";
}

/// The node `node_id` is the standby of; nullptr when it is none's.
[[nodiscard]] const cluster_node* standby_owner(const cluster_options& opts,
                                                std::string_view node_id);

/// The node `node_id`; nullptr when it is not in the cluster.
[[nodiscard]] const cluster_node* find_node(const cluster_options& opts, std::string_view node_id);

/// Limits of a cluster config (and of what `validate` accepts).
struct cluster_limits {
  /// Shards in a map, at most.
  static constexpr std::uint32_t max_shards = 65536;
  /// Nodes in a cluster, at most.
  static constexpr std::size_t max_nodes = 1024;
  /// Bytes of a node id, at most.
  static constexpr std::size_t max_id_bytes = 64;
  /// Bytes of a host, at most (a DNS name's limit).
  static constexpr std::size_t max_host_bytes = 253;
  /// Each duration option, at most: one day.
  static constexpr std::chrono::milliseconds max_duration{86'400'000};
  /// middleman_workers, at most.
  static constexpr unsigned max_middleman_workers = 1024;
  /// replication_window, at least and at most.
  static constexpr std::size_t min_replication_window = std::size_t{64} << 10;
  static constexpr std::size_t max_replication_window = std::size_t{1} << 30;
  /// Bytes of a config file, at most.
  static constexpr std::size_t max_config_bytes = 16u << 20;
};

/// Checks `opts`; `invalid_argument` naming the first problem: no nodes or
/// more than max_nodes, a node id that is empty, too long, has other bytes
/// than [A-Za-z0-9._-] or is given twice, an empty host or one with spaces
/// or '#', port 0, two nodes on one host and port, a `node_id` that is not
/// among the nodes, no shards or more than max_shards, map version 0, a
/// shard whose owner is no node, heartbeat_interval, ping_interval or
/// connect_timeout of 0 or beyond max_duration, heartbeat_timeout not above
/// heartbeat_interval, remote_timeout beyond max_duration,
/// max_in_flight_per_peer 0 or beyond 2^32-1, middleman_workers beyond
/// max_middleman_workers, a standby that is no node, the node itself, owns
/// shards, has a standby of its own or follows two nodes, a
/// replication_window under 64 KiB or over 1 GiB, sync_timeout of 0 or
/// beyond max_duration.
[[nodiscard]] result<void> validate(const cluster_options& opts);

/// Parses the config file form (docs/cluster.md#configuration) and validates
/// the result for `node_id`. An empty `node_id` reads the file as an
/// outsider (the CLI): everything but membership is checked. Errors are
/// `invalid_argument` with "line N: ..." for a line that is wrong
/// (unknown key, bad number, wrong number of fields, a key given twice, an
/// owner range beyond the shards or overlapping another) and name the shards
/// that no owner line covers. The work is bounded by the text's length and
/// cluster_limits::max_shards.
[[nodiscard]] result<cluster_options> parse_cluster_config(std::string_view text,
                                                           const std::string& node_id);

/// Reads `path` (at most max_config_bytes) and parses it; the errors carry
/// the path as their context. `invalid_argument` for a file that cannot be read.
[[nodiscard]] result<cluster_options> load_cluster_config(const std::string& path,
                                                          const std::string& node_id);

/// A cluster of `nodes` with map version 1 and `shards` shards spread over
/// the nodes in contiguous ranges, in the order given: shard s belongs to
/// nodes[s * nodes.size() / shards] (1024 shards on 3 nodes: 0-341, 342-682,
/// 683-1023). The other options keep their defaults. Not validated: call
/// `validate` (no nodes gives owners that are empty ids, which it refuses).
[[nodiscard]] cluster_options make_cluster(std::vector<cluster_node> nodes, std::string node_id,
                                           std::uint32_t shards = shard_map::default_shards);

/// The config file form of `opts`, which parse_cluster_config reads back to
/// the same nodes, map and options: every key is written, the owners as
/// ranges. `node_id` is not part of the file (each node is told its id).
[[nodiscard]] std::string to_config_text(const cluster_options& opts);

/// A readable table: a header line about the node and the map, then one row
/// per peer (address, state and since when, counters, round trips, reason).
[[nodiscard]] std::string to_text(const cluster_status& status);

/// One JSON object, every field under its member name; `map_digest` as 16
/// hex digits (a JSON number loses 64-bit precision in many readers).
[[nodiscard]] std::string to_json(const cluster_status& status);

/// "0123456789abcdef": a digest as `cairn cluster` prints it.
[[nodiscard]] std::string digest_hex(std::uint64_t digest);

} // namespace cairn
