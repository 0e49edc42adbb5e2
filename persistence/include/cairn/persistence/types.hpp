#pragma once

/// Value types of the event store: what goes in (`append_request`), what comes
/// out (`recorded_event`), and the side records (snapshots, checkpoints).

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace cairn::persistence {

/// 128-bit event id; random unless the caller supplies one.
struct event_id {
  std::array<std::uint8_t, 16> bytes{};

  /// 32 lower-case hex digits.
  [[nodiscard]] std::string to_string() const;
  /// Parses 32 hex digits; nullopt on anything else.
  [[nodiscard]] static std::optional<event_id> parse(const std::string& hex);

  friend bool operator==(const event_id& a, const event_id& b) { return a.bytes == b.bytes; }
  friend bool operator!=(const event_id& a, const event_id& b) { return !(a == b); }
};

/// Who and what caused an append. Every field is optional (empty) and at most
/// 255 bytes. `command_id` makes the append idempotent per stream.
struct metadata {
  std::string correlation_id;
  std::string causation_id;
  std::string command_id;
  std::string tenant;
  std::string user;
  /// The data subject the events are about (GDPR): names the key that
  /// encrypts their `cairn::personal<T>` fields (personal.hpp), and what
  /// `forget` erases. Stored from format version 3 on.
  std::string subject;

  friend bool operator==(const metadata& a, const metadata& b) {
    return a.correlation_id == b.correlation_id && a.causation_id == b.causation_id
           && a.command_id == b.command_id && a.tenant == b.tenant && a.user == b.user
           && a.subject == b.subject;
  }
};

/// One event to append: a registered type name, its schema version and the
/// encoded payload (see codec.hpp).
struct event_data {
  std::string type;
  std::uint32_t schema_version = 1;
  std::string payload;
  std::optional<event_id> id;               ///< Default: a random id.
  std::optional<std::int64_t> timestamp_ns; ///< Default: the wall clock at append.
};

/// The optimistic-concurrency check of an append.
class expected_version {
public:
  enum class kind : std::uint8_t { any, no_stream, stream_exists, exact };

  [[nodiscard]] static constexpr expected_version any() { return {kind::any, 0}; }
  [[nodiscard]] static constexpr expected_version no_stream() { return {kind::no_stream, 0}; }
  [[nodiscard]] static constexpr expected_version stream_exists() {
    return {kind::stream_exists, 0};
  }
  /// The stream's current version must be `v` (0 means the stream must not exist).
  [[nodiscard]] static constexpr expected_version exact(std::uint64_t v) {
    return {kind::exact, v};
  }

  [[nodiscard]] constexpr kind type() const noexcept { return kind_; }
  [[nodiscard]] constexpr std::uint64_t value() const noexcept { return value_; }

  /// True when a stream at `current` (0 = none) satisfies this expectation.
  [[nodiscard]] constexpr bool admits(std::uint64_t current) const noexcept {
    switch (kind_) {
      case kind::any: return true;
      case kind::no_stream: return current == 0;
      case kind::stream_exists: return current > 0;
      case kind::exact: return current == value_;
    }
    return false;
  }

  /// "any", "no_stream", "stream_exists" or the number.
  [[nodiscard]] std::string to_string() const;

private:
  constexpr expected_version(kind k, std::uint64_t v) : kind_(k), value_(v) {}
  kind kind_;
  std::uint64_t value_;
};

/// One append: events to one stream, written atomically.
struct append_request {
  std::string stream;
  expected_version expected = expected_version::any();
  std::vector<event_data> events;
  metadata meta;
  /// The encoded command that decided `events` (none, one or several). When
  /// set, the append also records it, with its metadata, in the command log
  /// (docs/storage-format.md#command_log), for what-if replay; an append that
  /// is a duplicate of a recorded command id records nothing. At most
  /// store_options::max_event_size bytes. Default: none.
  std::optional<std::string> command;
};

/// What an append wrote. For an empty append, `first_version > last_version`
/// and the positions are 0. `duplicate` means the command id was already
/// recorded and this is the original result; nothing was written.
struct append_result {
  std::uint64_t first_version = 0;
  std::uint64_t last_version = 0; ///< The stream's version after the append.
  std::uint64_t first_position = 0;
  std::uint64_t last_position = 0;
  bool duplicate = false;
};

/// An event as stored.
struct recorded_event {
  std::string stream;
  std::uint64_t version = 0;  ///< 1, 2, 3 … within the stream.
  std::uint64_t position = 0; ///< 1, 2, 3 … in the global log.
  event_id id;
  std::int64_t timestamp_ns = 0;
  std::string type;
  std::uint32_t schema_version = 0;
  metadata meta;
  std::string payload;
};

/// A stored event seen in place, without copies: the views point into the
/// store's memory map and are valid only during the callback that receives it.
struct event_view {
  std::string_view stream;
  std::uint64_t version = 0;
  std::uint64_t position = 0;
  const std::uint8_t* id = nullptr; ///< 16 bytes.
  std::int64_t timestamp_ns = 0;
  std::string_view type;
  std::uint32_t schema_version = 0;
  std::string_view correlation_id, causation_id, command_id, tenant, user, subject;
  std::string_view payload;
};

/// One entry of the command log: a command an aggregate decided, recorded
/// with the events it emitted (append_request::command).
struct recorded_command {
  std::uint64_t sequence = 0; ///< 1, 2, 3 … in commit order, over every stream.
  std::string stream;
  std::uint64_t version_before = 0; ///< The stream's version the command was decided at.
  std::uint64_t first_position = 0; ///< Of its first event; 0 when it emitted none.
  std::uint32_t event_count = 0;    ///< Its events are versions version_before + 1 …
  std::int64_t timestamp_ns = 0;    ///< Wall clock at the append.
  metadata meta;
  std::string payload; ///< The encoded command (cereal), as the aggregate got it.
};

/// A page of the command log. `next_sequence` is where the next page starts;
/// it moves past entries the prefix skipped.
struct command_page {
  std::vector<recorded_command> commands;
  std::uint64_t next_sequence = 0;
};

/// A stored snapshot of one stream's state at `version`.
struct snapshot {
  std::string stream;
  std::uint64_t version = 0;
  std::string state_type;
  std::uint32_t schema_version = 0;
  std::string data;
};

/// A named durable position (a subscriber's progress).
struct checkpoint {
  std::string name;
  std::uint64_t position = 0;
};

/// Which events `read_all` returns. Empty lists (and an empty tenant) match
/// everything; the conditions that are set must all hold.
struct read_filter {
  std::vector<std::string> categories; ///< Stream name prefixes before the first '-'.
  std::vector<std::string> types;      ///< Event type names.
  /// Only events whose metadata names this tenant (events without a tenant
  /// never match a non-empty one). Default: empty, every tenant. (Its
  /// initializer keeps `read_filter{categories, types}` free of warnings.)
  std::string tenant{};
  /// Also the store's system records (streams whose names start with '$',
  /// such as the epoch records of replication.hpp), which no user stream can
  /// name. Default: false, so readers and subscribers never see them.
  bool include_system = false;
  /// Also the records retention kept below the log's cut (event_store::
  /// first_position): a read from below it returns the records that still
  /// exist there, in position order, stepping over the holes, instead of
  /// `truncated`. For audits and exports that must list every stored record
  /// (`cairn events|tail|export`); a reader that must not miss an event
  /// leaves it off and learns of the cut. Default: false.
  bool kept_below_cut = false;
};

/// A page of the global log. `next_position` is where the next page starts;
/// it moves past events the filter skipped, so a filtered reader still advances.
struct log_page {
  std::vector<recorded_event> events;
  std::uint64_t next_position = 0;
};

/// Summary of one stream for listings.
struct stream_info {
  std::string name;
  std::uint64_t version = 0;
  /// The first version the stream keeps: 1, or past what retention removed.
  std::uint64_t first_version = 1;
};

/// A change to a key-value space (a projection's read model). Spaces and
/// keys are 1-255 bytes without a 0 byte; values at most max_event_size.
struct kv_op {
  enum class kind : std::uint8_t {
    put,   ///< Sets `key` to `value`.
    erase, ///< Removes `key` (absent is fine).
    clear, ///< Removes every key of `space`; `key` and `value` unused.
  };
  kind op = kind::put;
  std::string space;
  std::string key;
  std::string value;
};

/// An event a subscriber gave up on after its last retry.
struct dead_letter {
  std::string subscriber;
  std::uint64_t position = 0; ///< The event's global position.
  std::string stream;
  std::uint64_t version = 0;
  std::string type;
  std::string error; ///< The handler's last error, as text.
  std::uint32_t attempts = 0;
  std::int64_t first_failure_ns = 0;
  std::int64_t last_failure_ns = 0;
  /// Set by an operator (`cairn dlq replay`) while the service is down: the
  /// subscriber replays it when it starts.
  bool replay_requested = false;
};

/// Names one dead letter.
struct dead_letter_key {
  std::string subscriber;
  std::uint64_t position = 0;
};

/// Everything one write transaction does; all of it commits or none. Within
/// the transaction: appends, snapshots, key-value changes in order, dead
/// letters stored, dead letters removed, then checkpoints.
struct write_batch {
  std::vector<append_request> appends;
  std::vector<checkpoint> checkpoints;
  std::vector<snapshot> snapshots;
  std::vector<kv_op> kv;
  std::vector<dead_letter> dead_letters;
  std::vector<dead_letter_key> dead_letter_removals;
  /// Data subjects to forget, last: each one's data key is deleted, and the
  /// snapshots of every stream with events about it (docs/audit.md).
  std::vector<std::string> forget;
};

} // namespace cairn::persistence
