#pragma once

/// Runtime metrics: counters, gauges and fixed-bucket histograms over relaxed
/// atomics, so the journal, the registry and the aggregate actors can record
/// from any thread without a lock. The runtime owns one `metrics` and hands
/// it out by pointer; readers take a `metrics_snapshot`.
///
///   cairn::actors::metrics m;
///   m.events_appended.add(3);
///   m.commit_us.observe(420);
///   auto s = m.snapshot();                  // s.events_appended == 3
///   std::string text = to_prometheus(s);    // text format 0.0.4
///
/// Relaxed ordering: each value is exact on its own, but a snapshot taken
/// while others record is not one instant (a histogram's sum may be ahead of
/// its buckets by an observation). Monitoring needs no more.

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "cairn/model/error.hpp"

namespace cairn::actors {

/// A monotonic count.
class counter {
public:
  void add(std::uint64_t n = 1) noexcept { value_.fetch_add(n, std::memory_order_relaxed); }
  [[nodiscard]] std::uint64_t value() const noexcept {
    return value_.load(std::memory_order_relaxed);
  }

private:
  std::atomic<std::uint64_t> value_{0};
};

/// A value that goes up and down.
class gauge {
public:
  void set(std::int64_t v) noexcept { value_.store(v, std::memory_order_relaxed); }
  [[nodiscard]] std::int64_t value() const noexcept {
    return value_.load(std::memory_order_relaxed);
  }

private:
  std::atomic<std::int64_t> value_{0};
};

/// A histogram's values at one moment.
struct histogram_snapshot {
  std::vector<std::uint64_t> bounds; ///< Inclusive upper bounds, ascending.
  /// Observations per bucket, not cumulative: counts[i] fell in
  /// (bounds[i-1], bounds[i]]; the last entry (counts.size() == bounds.size() + 1)
  /// holds those above every bound.
  std::vector<std::uint64_t> counts;
  std::uint64_t sum = 0;   ///< Of every observed value.
  std::uint64_t count = 0; ///< Observations: the total of `counts`.
};

/// Counts observations of non-negative integers (µs, sizes) in fixed buckets.
class histogram {
public:
  /// `bounds`: inclusive upper bounds, strictly ascending.
  explicit histogram(std::initializer_list<std::uint64_t> bounds);

  void observe(std::uint64_t v) noexcept {
    std::size_t i = 0;
    while (i < bounds_.size() && v > bounds_[i])
      ++i;
    counts_[i].fetch_add(1, std::memory_order_relaxed);
    sum_.fetch_add(v, std::memory_order_relaxed);
  }

  [[nodiscard]] histogram_snapshot snapshot() const;

private:
  std::vector<std::uint64_t> bounds_;
  std::unique_ptr<std::atomic<std::uint64_t>[]> counts_; // bounds_.size() + 1
  std::atomic<std::uint64_t> sum_{0};
};

/// How a command ended, as its reply says.
enum class command_outcome : std::uint8_t {
  ok,
  duplicate, ///< Its command id was applied before; the reply repeats that outcome.
  rejected,
  conflict,
  unavailable,
  overloaded,
  invalid_argument,
  corrupted,
  internal,
  truncated, ///< A read the command needed was removed by retention.
};

inline constexpr std::size_t command_outcome_count = 10;

/// Stable lower-case name, e.g. "invalid_argument".
[[nodiscard]] std::string_view to_string(command_outcome o) noexcept;

/// A reply's outcome: `code` 0 is ok (or duplicate), else a cairn::errc.
[[nodiscard]] command_outcome outcome_of(std::uint8_t code, bool duplicate) noexcept;

/// One subscriber, from its status at the time of the snapshot.
struct subscriber_metrics {
  std::string name;
  std::uint64_t lag = 0;          ///< Events of the log past its position.
  std::int64_t lag_ms = 0;        ///< Age of the oldest event past its position.
  std::uint64_t dead_letters = 0; ///< Stored and not yet written.
  std::uint64_t handled = 0;      ///< Handler calls that succeeded since it started.
  bool held = false;              ///< Held on a standby until it is promoted.
};

/// Every metric's value at one moment (see docs/operations.md#metrics).
struct metrics_snapshot {
  /// Commands answered, indexed by command_outcome. Queries (state()) are not counted.
  std::array<std::uint64_t, command_outcome_count> commands{};
  std::uint64_t events_appended = 0; ///< Events committed to the log (duplicates excluded).
  histogram_snapshot batch_appends;  ///< Appends per journal transaction.
  histogram_snapshot commit_us;      ///< Duration of each journal transaction, µs.
  std::uint64_t commit_failures = 0; ///< Journal transactions that failed.
  /// Flushes the journal made alone, when no commit came to carry the
  /// previous one's meta page to disk.
  std::uint64_t journal_syncs = 0;
  /// Commands answered `unavailable` because the standby did not acknowledge
  /// their commit within sync_timeout (sync replication).
  std::uint64_t replication_sync_timeouts = 0;
  /// 1 once a failed flush made the store refuse every write: restart the runtime.
  std::int64_t store_refusing_writes = 0;
  /// Reader slots of dead processes the store cleared (a reader killed
  /// inside a read transaction would otherwise make the file grow forever).
  std::int64_t store_stale_readers_cleared = 0;
  std::uint64_t snapshots_written = 0;         ///< Aggregate snapshots committed.
  std::uint64_t activations = 0;               ///< Aggregate actors spawned.
  std::uint64_t activation_failures = 0;       ///< Failed recoveries and abnormal stops.
  std::uint64_t passivations = 0;              ///< Clean stops of aggregate actors.
  std::int64_t live_aggregates = 0;            ///< Aggregate actors running now.
  histogram_snapshot activation_us;            ///< Recovery time of an aggregate, µs.
  std::vector<subscriber_metrics> subscribers; ///< By name; filled by the runtime.

  [[nodiscard]] std::uint64_t commands_of(command_outcome o) const {
    return commands[static_cast<std::size_t>(o)];
  }
};

/// The registry's figures (registry.hpp).
struct registry_stats {
  std::uint64_t live = 0;
  std::uint64_t activations = 0;
  std::uint64_t passivations = 0;
  std::uint64_t failures = 0;
};

/// The instruments the actors record into. Thread-safe; never locks.
class metrics {
public:
  metrics();

  /// Counts one answered command.
  void command(std::uint8_t code, bool duplicate) noexcept {
    commands_[static_cast<std::size_t>(outcome_of(code, duplicate))].add();
  }

  counter events_appended;
  histogram batch_appends;
  histogram commit_us;
  counter commit_failures;
  counter journal_syncs;
  counter replication_sync_timeouts;
  gauge store_refusing_writes;
  gauge store_stale_readers_cleared; ///< Copied from the store after each commit.
  counter snapshots_written;
  counter activations;
  counter activation_failures;
  counter passivations;
  gauge live_aggregates;
  histogram activation_us;

  /// Everything but `subscribers`, which live in the subscribers' status.
  [[nodiscard]] metrics_snapshot snapshot() const;

private:
  std::array<counter, command_outcome_count> commands_;
};

/// Renders `s` in the Prometheus text exposition format, version 0.0.4:
/// names prefixed `cairn_`, counters ending in `_total`, durations in seconds.
[[nodiscard]] std::string to_prometheus(const metrics_snapshot& s);

} // namespace cairn::actors
