#pragma once

/// What a subscription is, without the actor (subscriber.hpp): its options,
/// status, handler and read model. No CAF in here.

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "cairn/model/error.hpp"
#include "cairn/persistence/codec.hpp"
#include "cairn/persistence/event_store.hpp"

namespace cairn::actors {

/// Where a subscription without a checkpoint starts.
enum class start_position : std::uint8_t { beginning, end };

/// What happens to an event whose last retry failed.
enum class after_last_retry : std::uint8_t {
  dead_letter, ///< Store it as a dead letter and go on with the next event.
  stop,        ///< Stop the subscriber; the checkpoint stays before the event.
};

/// Options of one subscription. The defaults suit a service.
struct subscription_options {
  /// Where a new subscription (no checkpoint yet) starts. Default: beginning.
  start_position start = start_position::beginning;
  /// Checkpoint after this many events of progress… Default: 1000.
  std::uint64_t checkpoint_every = 1000;
  /// …or this long after the first unsaved progress (and always on stop). Default: 100 ms.
  std::chrono::milliseconds checkpoint_interval{100};
  /// Calls of the handler per event, the first included. Default: 5.
  std::uint32_t max_attempts = 5;
  /// Wait before the second attempt. Default: 100 ms.
  std::chrono::milliseconds initial_backoff{100};
  /// The wait grows by `backoff_multiplier` per attempt up to this. Default: 10 s.
  std::chrono::milliseconds max_backoff{10000};
  /// Default: 2 (exponential). 1 gives a constant backoff.
  double backoff_multiplier = 2.0;
  /// Default: dead_letter.
  after_last_retry on_failure = after_last_retry::dead_letter;
  /// Events read from the store per read during catch-up. Default: 1000.
  std::size_t batch_size = 1000;
  /// In a cluster: follow the log of every node that owns shards, not only
  /// this node's, with one checkpoint per source node ("<name>@<node>";
  /// docs/cluster.md#cluster-wide-subscribers). Order and delivery
  /// guarantees hold per source node; there is no order across them.
  /// Needs `start == beginning`. Default: false.
  bool cluster_wide = false;
};

/// What a subscriber is doing. `held`: a plain subscriber on a node that
/// does not serve its log (a standby) reads and handles nothing until the
/// node is promoted (docs/cluster.md#what-is-copied).
enum class subscriber_state : std::uint8_t { catching_up, live, retrying, stopped, held };

[[nodiscard]] const char* to_string(subscriber_state s);

/// One source log of a cluster-wide subscriber, as seen from outside.
struct subscriber_source_status {
  std::string node;             ///< The owner whose log it is.
  bool local = false;           ///< Read from this node's store.
  bool connected = false;       ///< Local, or a remote feed is delivering.
  std::uint64_t checkpoint = 0; ///< Durable, under the name "<name>@<node>".
  std::uint64_t position = 0;   ///< Last event of this log handled or filtered out.
  std::uint64_t lag = 0;        ///< Events of this log past `position`, as last heard.
  std::string problem;          ///< Why it is not connected.
};

/// A subscriber as seen from outside.
struct subscriber_status {
  std::string name;
  bool projection = false;
  subscriber_state state = subscriber_state::catching_up;
  std::uint64_t checkpoint = 0; ///< Durable: a restart resumes after it.
  std::uint64_t position = 0;   ///< Last event handled, dead-lettered or filtered out.
  std::uint64_t lag = 0;        ///< Events of the log past `position`.
  std::int64_t lag_ms = 0;      ///< Age of the oldest event past `position`; 0 when none.
  std::uint64_t dead_letters = 0;
  std::uint64_t handled = 0; ///< Handler calls that succeeded in this run.
  /// Non-zero when retention had removed the events after its checkpoint (or,
  /// for a new subscriber, the log's start): the first position it read from
  /// instead (docs/audit.md#retention).
  std::uint64_t started_at_cut = 0;
  /// The handler's or the store's, while retrying or stopped; why, while
  /// held ("held: this node is the standby of A").
  std::string last_error;
  /// A cluster-wide subscriber's sources, this node's log first; empty
  /// otherwise. Then `checkpoint`, `position` and `lag` above are the first
  /// source's, and `lag` the sum of all of them.
  std::vector<subscriber_source_status> sources;
};

/// Outcome of replaying dead letters: each one is tried once.
struct replay_report {
  std::uint64_t succeeded = 0; ///< Handled now, and removed from the dead letters.
  std::uint64_t failed = 0;    ///< Failed again; kept, with attempts and error updated.
};

/// A projection's read model as its handler sees it: a key-value space in the
/// store, with the handler's writes not yet committed on top. Everything
/// written while handling one event commits together with the checkpoint
/// that passes that event, or not at all. Keys are 1-255 bytes.
class read_model {
public:
  read_model(const persistence::event_store& store, std::string space);

  [[nodiscard]] const std::string& name() const { return space_; }

  /// The value of `key`, including this handler's uncommitted writes.
  [[nodiscard]] result<std::optional<std::string>> get(std::string_view key) const;
  [[nodiscard]] result<void> put(std::string key, std::string value);
  [[nodiscard]] result<void> erase(std::string key);

  /// Typed forms: values are cereal-encoded (codec.hpp).
  template <class T> [[nodiscard]] result<std::optional<T>> get_as(std::string_view key) const {
    return persistence::decode_optional<T>(get(key));
  }
  template <class T> [[nodiscard]] result<void> put_as(std::string key, const T& value) {
    std::string bytes;
    persistence::encode_payload(value, bytes);
    return put(std::move(key), std::move(bytes));
  }

  // -- used by the subscriber ------------------------------------------------
  using changes = std::map<std::string, std::optional<std::string>, std::less<>>;
  void begin_event() { staged_.clear(); }
  /// Moves the current event's writes into the unsaved changes.
  void keep_event();
  /// The unsaved changes, handed over for a write; `in_flight` stays readable
  /// until `write_done`.
  [[nodiscard]] changes take_unsaved();
  void write_started(changes in_flight) { in_flight_ = std::move(in_flight); }
  void write_done() { in_flight_.clear(); }
  /// Forgets everything not committed (after a failed write or a rebuild).
  void reset();
  [[nodiscard]] bool has_unsaved() const { return !unsaved_.empty(); }

private:
  const persistence::event_store* store_;
  std::string space_;
  /// The current event's writes, in order: usually one or two, so a vector
  /// (no node allocation per event); read newest first.
  std::vector<std::pair<std::string, std::optional<std::string>>> staged_;
  changes unsaved_, in_flight_;
};

/// A subscriber's handler: `model` is the read model of a projection and
/// nullptr otherwise. Thrown exceptions count as errors.
using subscriber_handler =
  std::function<result<void>(const persistence::recorded_event&, read_model* model)>;

/// One log a cluster-wide subscriber follows.
struct subscriber_source {
  std::string node;   ///< The owner of shards whose log it is.
  bool local = false; ///< This node serves that log: read the store.
};

struct subscriber_spec {
  std::string name; ///< Checkpoint name, and the read model's key-value space.
  persistence::read_filter filter;
  subscription_options options;
  subscriber_handler handle;
  bool projection = false;
  /// Cluster-wide: the logs it follows (set by the runtime from the shard
  /// map) and this node's id; empty: this node's log, checkpoint `name`.
  std::vector<subscriber_source> sources;
  std::string node_id;
  /// Non-empty: start held, for this reason ("held: this node is the
  /// standby of A"); a projection ignores it. Set by the runtime.
  std::string held;
  /// Bound on each write request to the journal.
  std::chrono::milliseconds request_timeout{std::chrono::seconds{60}};
};

/// Checks a subscriber's name and options; the error names what is wrong.
[[nodiscard]] result<void> validate_subscriber(const subscriber_spec& spec);

} // namespace cairn::actors
