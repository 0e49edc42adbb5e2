#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <spdlog/common.h>

#include "cairn/persistence/options.hpp"
#include "cairn/runtime/cluster.hpp"

namespace cairn {

/// How log lines are written.
enum class log_encoding : std::uint8_t {
  /// `[2026-11-25 10:31:02.117] [info] [cairn.runtime] started …`
  text,
  /// One JSON object per line: time (UTC, µs), level, logger, thread, message.
  json,
};

/// Options of `runtime::start`. The defaults suit a service.
struct runtime_options {
  /// Where the event store lives. Default: "./cairn-data".
  std::string data_dir = "./cairn-data";
  /// Default: `sync` (nothing acknowledged is lost, even on power loss).
  persistence::durability durability = persistence::durability::sync;
  /// Actor worker threads; 0 means one per core. The journal has its own thread. Default: 0.
  unsigned worker_threads = 0;
  /// An aggregate with no command for this long is passivated. Default: 120 s.
  std::chrono::milliseconds idle_timeout{120000};
  /// Live aggregates at most; the least recently used is passivated first. Default: 100 000.
  std::size_t max_live_aggregates = 100000;
  /// Aggregates recovering at the same time at most. Default: 64.
  std::size_t max_concurrent_activations = 64;
  /// Commands waiting for one aggregate before it answers `overloaded`. Default: 4096.
  std::size_t max_waiting_commands = 4096;
  /// Events between snapshots of an aggregate; 0 = never. Default: 50
  /// (per aggregate type through aggregate_options).
  std::uint64_t snapshot_interval = 50;
  /// Record every accepted command with the events it emitted, in the same
  /// transaction, for what-if replay (runtime::what_if, docs/audit.md). A
  /// command that emits no event then costs a commit too; rejected commands
  /// are never recorded. Per aggregate type through aggregate_options.
  /// Default: false.
  bool record_commands = false;
  /// Bound on every request between the runtime's own actors, and on a
  /// command or state read sent without a timeout of its own: past it the
  /// caller gets `unavailable` (a command's outcome is then unknown: retry
  /// it with the same command id). Default: 60 s.
  std::chrono::milliseconds request_timeout{60000};
  /// shutdown() returns within this even when user code blocks an actor; it
  /// logs what it abandoned and leaves those threads (and the store they
  /// use) to the process's exit. Default: 10 s.
  std::chrono::milliseconds shutdown_timeout{10000};
  /// Map sizes, event size limit … of the store; `durability` above wins.
  persistence::store_options store;
  /// Serve metrics over HTTP (GET /metrics, Prometheus text format; GET
  /// /health, "ok") at "host:port", e.g. "127.0.0.1:9464"; port 0 picks a free
  /// port (runtime::metrics_endpoint() tells which). No authentication: bind
  /// to loopback or a private interface. Fixed limits (4 connections, 3 s for
  /// the request, no body) in docs/operations.md. Empty: no server. Default: empty.
  std::string metrics_address;
  /// In a cluster: the metrics endpoint also takes the operator's steps
  /// POST /cluster/promote and POST /cluster/replication/{async,sync}
  /// (`cairn cluster promote|replication`, docs/cluster.md#promotion). Anyone
  /// who reaches the endpoint can then promote this node: bind it to
  /// loopback. Default: false.
  bool cluster_admin = false;
  /// Log lines as text or as JSON objects. Default: text.
  /// Logging is process-wide: the runtime started last sets format and sinks.
  log_encoding log_format = log_encoding::text;
  /// Where log lines go; empty means stderr. Levels come from the environment
  /// variable SPDLOG_LEVEL (e.g. "warn" or "info,cairn.journal=debug"),
  /// default info. Default: empty.
  std::vector<spdlog::sink_ptr> log_sinks;
  /// Run as one node of a cluster (docs/cluster.md): commands for streams
  /// other nodes own are forwarded to them. Empty: a single process. Default: empty.
  std::optional<cluster_options> cluster;
};

/// Per aggregate type.
struct aggregate_options {
  /// Overrides runtime_options::snapshot_interval for this type.
  std::optional<std::uint64_t> snapshot_interval;
  /// Overrides runtime_options::record_commands for this type.
  std::optional<bool> record_commands;
};

/// Metadata and limits of one command.
struct command_options {
  std::string command_id;     ///< Makes the command idempotent per aggregate.
  std::string correlation_id; ///< Stored with the events.
  std::string causation_id;
  std::string tenant;
  std::string user;
  /// The data subject the events are about (at most 255 bytes): its key
  /// encrypts their `cairn::personal<T>` fields, and `runtime::forget`
  /// erases them. Default: none.
  std::string subject;
  /// Give up (`unavailable`) when no answer came within this; 0 = wait up to
  /// runtime_options::request_timeout. Default: 0.
  std::chrono::milliseconds timeout{0};
};

} // namespace cairn
