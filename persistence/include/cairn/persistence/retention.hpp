#pragma once

/// Retention: which old events a store may remove (docs/audit.md#retention).
///
///   auto policy = cairn::persistence::parse_retention_policy({"provider=30d", "account=last:1000"});
///   auto plan = store->plan_retention(*policy, cairn::wall_now_ns());
///   // plan->events events would go; plan->holds says what keeps the others
///   auto done = store->apply_retention(*plan);   // the writer's thread
///
/// An event goes only when ALL of these hold:
///   - its stream's category has a rule, and the rule lets it go (older than
///     `max_age`, or not among the newest `keep_newest` of its stream);
///   - a snapshot of its stream covers it (snapshot version >= its version);
///   - it lies behind every checkpoint (position < the least checkpoint);
///   - it is not its stream's newest record, nor the newest one naming the
///     stream's tenant (the store learns heads and tenants from them).
/// Within a stream only a prefix of versions goes, so a stream always reads
/// from one version on (errc::truncated below it).
/// The global log then has holes below its cut (first_position): a reader
/// asking for a removed position gets errc::truncated naming the cut, and a
/// reader that must list every record still stored (an audit, an export)
/// reads across the holes with read_filter::kept_below_cut and says what
/// lies below the cut with event_store::extent().

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "cairn/model/error.hpp"

namespace cairn::persistence {

/// The rule of one category. At least one limit is set; with both, an event
/// goes only when both let it go.
struct retention_rule {
  std::string category;
  /// Keep events younger than this (by their timestamps). Default: no limit.
  std::optional<std::chrono::nanoseconds> max_age;
  /// Keep the newest N events of each stream (N >= 1). Default: no limit.
  std::optional<std::uint64_t> keep_newest;
};

/// One rule per category; categories without a rule keep everything.
struct retention_policy {
  std::vector<retention_rule> rules;
};

/// Parses `CATEGORY=AGE` or `CATEGORY=last:N` (the CLI's --keep). AGE is a
/// positive integer with a unit: s, m, h, d or w (`30d`, `12h`). Fails with
/// `invalid_argument` naming the rule and what is wrong with it. Bounded by
/// its input.
[[nodiscard]] result<retention_rule> parse_retention_rule(std::string_view text);

/// Parses every rule; a category named twice is `invalid_argument`.
[[nodiscard]] result<retention_policy>
parse_retention_policy(const std::vector<std::string>& rules);

/// The text form of a rule, which parse_retention_rule reads back.
[[nodiscard]] std::string to_string(const retention_rule& rule);

/// Why a stream keeps events that its rule would let go.
enum class retention_hold : std::uint8_t {
  none,       ///< Nothing: the rule itself keeps the rest.
  snapshot,   ///< No snapshot, or none recent enough, covers them.
  checkpoint, ///< A checkpoint has not passed them.
  newest,     ///< The stream's newest record stays (its head and version).
  tenant,     ///< The newest record naming the stream's tenant stays.
};

/// Stable lower-case name, e.g. "snapshot".
[[nodiscard]] std::string_view to_string(retention_hold h) noexcept;

/// What a plan removes from one stream: versions [from_version, to_version],
/// a prefix of what the stream keeps now.
struct retention_stream {
  std::string stream;
  std::uint64_t from_version = 0;   ///< The stream's first kept version now.
  std::uint64_t to_version = 0;     ///< The last version to go (>= from_version).
  std::uint64_t first_position = 0; ///< Position of from_version.
  std::uint64_t last_position = 0;  ///< Position of to_version.
  std::uint64_t next_position = 0;  ///< Position of to_version + 1 (its first kept after).
  /// Events the rule lets go beyond to_version, held back by `hold`.
  std::uint64_t held = 0;
  retention_hold hold = retention_hold::none;
  [[nodiscard]] std::uint64_t events() const { return to_version - from_version + 1; }
};

/// A stream whose rule would remove events that something holds back.
struct retention_held_stream {
  std::string stream;
  std::uint64_t events = 0; ///< Events held back.
  retention_hold hold = retention_hold::none;
};

/// Totals of one category.
struct retention_category {
  std::string category;
  std::uint64_t streams = 0;        ///< Streams of the category that lose events.
  std::uint64_t events = 0;         ///< Events that go.
  std::uint64_t held = 0;           ///< Events its rule lets go that stay.
  std::uint64_t first_position = 0; ///< Least position that goes (0: none).
  std::uint64_t last_position = 0;  ///< Greatest position that goes (0: none).
};

/// What plan_retention found; apply_retention carries it out.
struct retention_plan {
  retention_policy policy;
  std::int64_t now_ns = 0;
  /// The log is complete from this position on (event_store::first_position).
  std::uint64_t first_position = 1;
  /// first_position once the plan is applied: one past the greatest position
  /// that goes (the log below it is no longer complete).
  std::uint64_t new_first_position = 1;
  std::uint64_t events = 0;                   ///< Events that go, over every stream.
  std::vector<retention_stream> streams;      ///< Streams that lose events, by name.
  std::vector<retention_category> categories; ///< One per rule, in rule order.
  std::vector<retention_held_stream> held;    ///< Streams held back, by name.
  /// The checkpoint with the least position, which bounds what may go (every
  /// event that goes lies below it); nullopt when the store has none. Of a
  /// checkpoint and its owner's copy on a standby ("$owner:<name>",
  /// replication.hpp) only the further counts: a subscriber resumes there.
  std::optional<std::string> limiting_checkpoint;
  std::uint64_t limiting_position = 0; ///< Its position.
};

/// What apply_retention did.
struct retention_result {
  std::uint64_t events = 0;       ///< Records removed.
  std::uint64_t streams = 0;      ///< Streams cut.
  std::uint64_t transactions = 0; ///< Write transactions committed.
  /// Streams of the plan skipped because the store changed since the plan
  /// (a snapshot forgotten, a checkpoint moved back, the stream cut already).
  std::vector<std::string> skipped;
  std::uint64_t first_position = 1; ///< The store's first_position afterwards.
};

/// The global log's bounds after retention, read in one transaction
/// (event_store::extent): where it is complete from, where it ends, and how
/// many records it holds, so a reader can say what lies below the cut.
struct log_extent {
  /// The log is complete from this position on (event_store::first_position):
  /// 1 for a store never cut.
  std::uint64_t first_position = 1;
  std::uint64_t last_position = 0; ///< The newest record's position; 0: the log is empty.
  /// Records stored, the store's own (epoch records) included.
  std::uint64_t records = 0;

  /// True once retention removed records.
  [[nodiscard]] bool cut() const { return first_position > 1; }
  /// Records retention kept below first_position (a stream's newest, streams
  /// of categories without a rule, ...); every other position below it is a
  /// hole.
  [[nodiscard]] std::uint64_t kept_below() const {
    auto whole = last_position >= first_position ? last_position - first_position + 1 : 0;
    return records > whole ? records - whole : 0;
  }
};

} // namespace cairn::persistence
