#pragma once

/// cairn::runtime: aggregates as actors over the embedded event store.
///
///   cairn::runtime_options opts;
///   opts.data_dir = "./data";
///   auto rt = cairn::runtime::start(opts);                     // result<unique_ptr<runtime>>
///   (*rt)->register_aggregate<account>();
///   cairn::command_options once;
///   once.command_id = "c-1";                                   // idempotent per aggregate
///   auto done = (*rt)->send<account>("42", deposit{100}, once);
///   cairn::result<cairn::outcome<account>> r = done.get();    // after the append is durable
///   auto now = (*rt)->state<account>("42");                    // through the live actor
///   auto then = (*rt)->state_at<account>("42", 3);             // replayed from the store
///   auto m = (*rt)->metrics(); // m.commands_of(cairn::command_outcome::ok) …
///
/// Threads: register every aggregate type first, from one thread, before the
/// first command. After that every call may come from any thread. Commands
/// one thread sends to one aggregate are applied in the order sent. After
/// shutdown() only the destructor may be called. Nothing throws.

#include <atomic>
#include <cstdint>
#include <functional>
#include <future>
#include <memory>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "cairn/actors/aggregate_type.hpp"
#include "cairn/actors/command.hpp"
#include "cairn/actors/metrics.hpp"
#include "cairn/actors/subscription.hpp"
#include "cairn/model/aggregate.hpp"
#include "cairn/model/clock.hpp"
#include "cairn/model/error.hpp"
#include "cairn/model/stream_name.hpp"
#include "cairn/persistence/codec.hpp"
#include "cairn/persistence/event_store.hpp"
#include "cairn/persistence/personal.hpp"
#include "cairn/runtime/options.hpp"
#include "cairn/runtime/what_if.hpp"

namespace caf { // the CAF-native form: runtime_caf.hpp
class actor;
class actor_system;
} // namespace caf

namespace cairn {

/// What a command did, once it is durable.
template <class A> struct outcome {
  std::uint64_t version = 0;        ///< The aggregate's version after the command.
  std::uint64_t first_position = 0; ///< Global positions of the events (consecutive);
  std::uint64_t last_position = 0;  ///< both 0 when the command emitted none.
  std::vector<typename A::event> events;
  bool duplicate = false; ///< The command id was applied before: this is that outcome.

  /// The global position of each event.
  [[nodiscard]] std::vector<std::uint64_t> positions() const {
    std::vector<std::uint64_t> out;
    for (auto p = first_position; p != 0 && p <= last_position; ++p)
      out.push_back(p);
    return out;
  }
};

/// Metrics (docs/operations.md#metrics).
using metrics_snapshot = actors::metrics_snapshot;
using actors::command_outcome;
using actors::histogram_snapshot;
using actors::subscriber_metrics;
using actors::to_prometheus;

/// Reacting to events (docs/reacting-to-events.md).
using subscription_options = actors::subscription_options;
using subscription_status = actors::subscriber_status;
using subscription_state = actors::subscriber_state;
using actors::after_last_retry;
using actors::read_model;
using actors::replay_report;
using actors::start_position;
/// Categories and event types a subscription receives; empty lists match all.
using subscription_filter = persistence::read_filter;

/// One event as a handler receives it. Valid during the call only.
template <class Event> struct envelope {
  std::string_view stream;
  std::uint64_t version = 0;  ///< In the stream.
  std::uint64_t position = 0; ///< In the global log.
  std::int64_t timestamp_ns = 0;
  std::string_view type;
  const persistence::event_id& id;
  const persistence::metadata& meta;
  const Event& event;
};

namespace detail {

template <class A, class = void> struct has_upcasters : std::false_type {};
template <class A>
struct has_upcasters<
  A, std::void_t<decltype(A::upcasters(std::declval<persistence::event_registry&>()))>>
    : std::true_type {};

/// Calls A::upcasters; one returning result<void> can report a bad chain.
template <class A> result<void> add_upcasters(persistence::event_registry& reg) {
  if constexpr (std::is_same_v<decltype(A::upcasters(reg)), result<void>>) {
    return A::upcasters(reg);
  } else {
    A::upcasters(reg);
    return {};
  }
}

} // namespace detail

class runtime {
public:
  /// Opens the store in `opts.data_dir` and starts the actors.
  [[nodiscard]] static result<std::unique_ptr<runtime>> start(runtime_options opts = {});

  /// Drains in-flight appends, stops every actor, closes the store.
  ~runtime();
  runtime(const runtime&) = delete;
  runtime& operator=(const runtime&) = delete;

  /// Registers aggregate type A: its event types (with A::upcasters(registry)
  /// when A has one; returning result<void> lets it report a bad chain) and
  /// its actor. Fails when the store holds an event of A that cannot be
  /// decoded, or after the first command was sent.
  template <class A> [[nodiscard]] result<void> register_aggregate(aggregate_options opts = {}) {
    if (commands_started_.load())
      return fail(errc::invalid_argument, "register aggregates before the first command",
                  A::category);
    if (auto ok = persistence::register_event_types<typename A::event>(*registry_); !ok)
      return ok;
    if constexpr (detail::has_upcasters<A>::value)
      if (auto ok = detail::add_upcasters<A>(*registry_); !ok)
        return ok;
    if (auto ok = check_catalogue(); !ok)
      return ok;
    add_aggregate(std::make_shared<actors::typed_aggregate<A>>(registry_), opts);
    return {};
  }

  /// Sends `cmd` to aggregate A `id`; `done` runs (on an actor thread: keep it
  /// short) with the outcome once the events are durable, or with the error.
  /// It runs exactly once, within opts.timeout (or runtime_options::
  /// request_timeout); what it throws is logged and ignored.
  template <class A>
  void send(const std::string& id, const typename A::command& cmd, command_options opts,
            std::function<void(result<outcome<A>>)> done) {
    auto msg = make_command<A>(id, cmd, opts);
    auto reg = registry_;
    submit(std::move(msg), opts,
           [reg, keys = personal_keys(), subject = opts.subject, done = std::move(done)](
             actors::reply_msg&& r) { done(to_outcome<A>(*reg, r, keys, subject)); });
  }

  /// Like the callback form; the future holds the outcome or the error.
  template <class A>
  [[nodiscard]] std::future<result<outcome<A>>>
  send(const std::string& id, const typename A::command& cmd, command_options opts = {}) {
    auto promise = std::make_shared<std::promise<result<outcome<A>>>>();
    auto future = promise->get_future();
    send<A>(id, cmd, std::move(opts),
            [promise](result<outcome<A>> r) { promise->set_value(std::move(r)); });
    return future;
  }

  /// The confirmed state of A `id`, read through its live actor (activating it).
  template <class A> [[nodiscard]] result<typename A::state> state(const std::string& id) {
    actors::command_msg msg;
    msg.category = A::category;
    msg.id = id;
    msg.query = true;
    auto promise = std::make_shared<std::promise<actors::reply_msg>>();
    auto future = promise->get_future();
    submit(std::move(msg), {}, [promise](actors::reply_msg&& r) { promise->set_value(r); });
    auto reply = future.get();
    if (!reply.ok())
      return tl::unexpected(reply.error());
    return persistence::decode_payload<typename A::state>(reply.state);
  }

  /// Time travel: A `id` as it stood at `version`, replayed from the store.
  template <class A>
  [[nodiscard]] result<typename A::state> state_at(const std::string& id, std::uint64_t version) {
    if (stopped())
      return fail(errc::unavailable, "the runtime is stopped");
    if (auto remote = replay_remotely(A::category, id, version, 0))
      return decode_state<A>(*remote);
    return replay<A>(id, version, {});
  }

  /// Time travel: A `id` with the events recorded at or before `timestamp_ns`.
  template <class A>
  [[nodiscard]] result<typename A::state> state_as_of(const std::string& id,
                                                      std::int64_t timestamp_ns) {
    if (stopped())
      return fail(errc::unavailable, "the runtime is stopped");
    if (auto remote = replay_remotely(A::category, id, persistence::no_limit, timestamp_ns))
      return decode_state<A>(*remote);
    return replay<A>(id, persistence::no_limit, [timestamp_ns](const persistence::event_view& e) {
      return e.timestamp_ns <= timestamp_ns;
    });
  }

  /// What-if replay (docs/audit.md#what-if-replay): re-runs `alternative`, a
  /// decide of A's signature (`decision<event>(const state&, const command&)`),
  /// over the commands of A's streams that match `filter`, as the store
  /// recorded them (record_commands), from each stream's first recorded
  /// command, evolving the state with the alternative's own events. Reports
  /// per stream the first command where the alternative's events differ from
  /// the recorded ones (or it rejects), with both. Reads only: the store is
  /// not touched. `invalid_argument` when A is not registered, an id is not
  /// a valid aggregate id, or the store holds no recorded command of A;
  /// `corrupted` when recorded bytes fail their checks or a recorded command
  /// does not decode; `internal` naming what threw when the alternative or
  /// evolve does. Any thread; it runs on the caller's.
  template <class A, class Decide>
  [[nodiscard]] result<what_if_report<A>> what_if(Decide alternative,
                                                  const what_if_filter& filter = {}) {
    if (auto ok = check_what_if(A::category, filter); !ok)
      return tl::unexpected(ok.error());
    return detail::run_what_if<A>(store(), registry_, alternative, filter);
  }

  // -- reacting to events (docs/reacting-to-events.md) -------------------------

  /// Starts subscriber `name`: `handler` gets every event of the log that
  /// matches `filter`, decoded as `Event` (an event struct or a std::variant
  /// of them), in position order, on the subscriber's own thread. It resumes
  /// after its checkpoint; a new one starts where `opts.start` says. With no
  /// types in the filter it receives the types of `Event`. An error (or an
  /// exception) is retried with backoff, then dead-lettered or stops it.
  /// Counts as sending: register aggregates first.
  template <class Event>
  [[nodiscard]] result<void> subscribe(const std::string& name, subscription_filter filter,
                                       std::function<result<void>(const envelope<Event>&)> handler,
                                       subscription_options opts = {}) {
    if (!handler)
      return fail(errc::invalid_argument, "a subscriber needs a handler", name);
    auto reg = registry_;
    return add_subscriber(name, with_types<Event>(std::move(filter)), opts, false,
                          [reg, keys = personal_keys(),
                           handler = std::move(handler)](const persistence::recorded_event& ev,
                                                         read_model*) -> result<void> {
                            persistence::personal_scope scope{keys, ev.meta.subject};
                            auto event = reg->decode<Event>(ev.type, ev.schema_version, ev.payload);
                            if (!event)
                              return tl::unexpected(event.error());
                            return handler(envelope<Event>{ev.stream, ev.version, ev.position,
                                                           ev.timestamp_ns, ev.type, ev.id, ev.meta,
                                                           *event});
                          });
  }

  /// Starts local projection `name`: like subscribe, and `handler` also gets
  /// the projection's read model, a key-value space committed in the same
  /// transaction as the checkpoint, so each event changes it exactly once,
  /// even across crashes. Read it from any thread with query().
  template <class Event>
  [[nodiscard]] result<void>
  project(const std::string& name, subscription_filter filter,
          std::function<result<void>(const envelope<Event>&, read_model&)> handler,
          subscription_options opts = {}) {
    if (!handler)
      return fail(errc::invalid_argument, "a projection needs a handler", name);
    auto reg = registry_;
    return add_subscriber(name, with_types<Event>(std::move(filter)), opts, true,
                          [reg, keys = personal_keys(),
                           handler = std::move(handler)](const persistence::recorded_event& ev,
                                                         read_model* model) -> result<void> {
                            persistence::personal_scope scope{keys, ev.meta.subject};
                            auto event = reg->decode<Event>(ev.type, ev.schema_version, ev.payload);
                            if (!event)
                              return tl::unexpected(event.error());
                            return handler(envelope<Event>{ev.stream, ev.version, ev.position,
                                                           ev.timestamp_ns, ev.type, ev.id, ev.meta,
                                                           *event},
                                           *model);
                          });
  }

  /// The committed value of `key` in projection `projection`'s read model.
  template <class T>
  [[nodiscard]] result<std::optional<T>> query(const std::string& projection,
                                               const std::string& key) {
    return persistence::decode_optional<T>(store().kv_get(projection, key));
  }

  /// Committed entries of a read model whose keys start with `prefix`, in key
  /// order, after key `after`, at most `max`.
  template <class T>
  [[nodiscard]] result<std::vector<std::pair<std::string, T>>>
  query_range(const std::string& projection, const std::string& prefix = {},
              const std::string& after = {}, std::size_t max = persistence::no_limit) {
    auto raw = store().kv_scan(projection, prefix, after, max);
    if (!raw)
      return tl::unexpected(raw.error());
    std::vector<std::pair<std::string, T>> out;
    for (auto& [key, bytes] : *raw) {
      auto v = persistence::decode_payload<T>(bytes);
      if (!v)
        return tl::unexpected(v.error());
      out.emplace_back(std::move(key), std::move(*v));
    }
    return out;
  }

  /// Stops subscriber `name` after a final checkpoint.
  [[nodiscard]] result<void> unsubscribe(const std::string& name);
  /// Clears projection `name`'s read model, checkpoint and dead letters, then
  /// replays it from position 1 while commands go on. Answers once reset.
  [[nodiscard]] result<void> rebuild(const std::string& name);
  /// Waits until subscriber `name` has checkpointed `position` (for a
  /// projection: its read model shows every event up to it), at most `timeout`.
  /// A subscriber held on a standby answers `unavailable` at once for what it
  /// has not handled: it handles nothing until promoted (docs/cluster.md).
  [[nodiscard]] result<void> wait_for(const std::string& name, std::uint64_t position,
                                      std::chrono::milliseconds timeout);
  [[nodiscard]] result<subscription_status> subscription(const std::string& name);
  /// Every running subscriber, by name.
  [[nodiscard]] std::vector<subscription_status> subscriptions();
  /// The dead letters of `name` (also of a subscriber not running now).
  [[nodiscard]] result<std::vector<persistence::dead_letter>> dead_letters(const std::string& name);
  /// Hands dead letters of running subscriber `name` to its handler again,
  /// once each: the one at `position`, or all with 0.
  [[nodiscard]] result<replay_report> replay_dead_letters(const std::string& name,
                                                          std::uint64_t position = 0);
  /// Deletes dead letters of running subscriber `name`: the one at `position`,
  /// or all with 0. Returns how many.
  [[nodiscard]] result<std::uint64_t> discard_dead_letters(const std::string& name,
                                                           std::uint64_t position = 0);

  // -- data subjects (docs/audit.md#forgetting-a-data-subject) -----------------

  /// Forgets data subject `subject` (GDPR erasure): deletes its data key, so
  /// every later read of its events (recovery, state_at, subscribers, the
  /// CLI) sees their `personal<T>` fields as absent, and deletes the
  /// snapshots of every stream with events about it; live aggregates of
  /// those streams are stopped so they recover without the data. Durable
  /// when it returns. Read models built from the data are not touched:
  /// rebuild() them. `invalid_argument` for an empty or over-long subject.
  [[nodiscard]] result<void> forget(const std::string& subject);

  /// Encodes a command for the CAF-native form (runtime_caf.hpp).
  template <class A>
  [[nodiscard]] actors::command_msg make_command(const std::string& id,
                                                 const typename A::command& cmd,
                                                 const command_options& opts = {}) const {
    actors::command_msg msg;
    msg.category = A::category;
    msg.id = id;
    persistence::encode_payload(cmd, msg.payload);
    msg.command_id = opts.command_id;
    msg.correlation_id = opts.correlation_id;
    msg.causation_id = opts.causation_id;
    msg.tenant = opts.tenant;
    msg.user = opts.user;
    msg.subject = opts.subject;
    if (opts.timeout.count() > 0)
      msg.deadline_ns = steady_now_ns() + std::chrono::nanoseconds{opts.timeout}.count();
    return msg;
  }

  /// Decodes a reply of the CAF-native form; `subject` is the command's
  /// (command_msg::subject), whose key decrypts the events' personal data.
  template <class A>
  [[nodiscard]] result<outcome<A>> decode_reply(const actors::reply_msg& r,
                                                const std::string& subject = {}) const {
    return to_outcome<A>(*registry_, r, personal_keys(), subject);
  }

  // The CAF-native form; include cairn/runtime/runtime_caf.hpp to call these.
  /// The registry actor (see make_command). Counts as sending:
  /// register_aggregate is refused afterwards.
  [[nodiscard]] caf::actor handle();
  /// The journal actor: after `(subscribe_atom, actor)` that actor gets the
  /// committed position of the global log as `(committed_atom, position)`,
  /// then one more each time it sends `(demand_atom, actor)` (journal.hpp).
  [[nodiscard]] caf::actor journal() const;
  [[nodiscard]] caf::actor_system& system();
  [[nodiscard]] persistence::event_store& store();
  [[nodiscard]] const persistence::event_registry& registry() const { return *registry_; }
  /// Group-commit figures of the journal: transactions and appends committed.
  [[nodiscard]] std::pair<std::uint64_t, std::uint64_t> journal_stats();
  [[nodiscard]] actors::registry_stats registry_stats();

  /// Every metric now (docs/operations.md#metrics): commands by outcome,
  /// journal, aggregates, and each running subscriber's lag and dead letters
  /// (a subscriber that does not answer its status within 1 s is left out).
  /// The same figures GET /metrics serves. After shutdown() the counters
  /// stay readable; subscribers are left out.
  [[nodiscard]] metrics_snapshot metrics();
  /// The "host:port" the metrics endpoint listens on (the real port when
  /// `metrics_address` asked for port 0); empty without a metrics_address
  /// and after shutdown().
  [[nodiscard]] std::string metrics_endpoint() const;

  /// This node's view of its cluster: members, connectivity, map version,
  /// owned shards and per-peer figures. `invalid_argument` when the runtime
  /// runs without runtime_options::cluster.
  [[nodiscard]] result<cluster_status> cluster() const;

  /// Promotes this node, a standby, to serve its owner's shards
  /// (docs/cluster.md#promotion): it stops following, seals its replica at
  /// its last position, begins the next epoch, tells every peer, and
  /// replicates to the old owner once that one rejoins as its standby.
  /// Returns the new epoch. `invalid_argument` when this node is no standby
  /// or already serves; what the store says when the epoch cannot begin.
  [[nodiscard]] result<std::uint64_t> promote();

  /// Switches how this node, serving shards with a standby, acknowledges
  /// commands (an operator's step when the standby is lost under `sync`:
  /// docs/cluster.md#replication-modes). Logged; `invalid_argument` without
  /// a standby.
  [[nodiscard]] result<void> set_replication(replication_mode mode);

  /// Stops accepting commands, answers or drains everything in flight, stops
  /// the actors and closes the store. Called by the destructor.
  void shutdown();

  /// True once shutdown() began.
  [[nodiscard]] bool stopped() const;

private:
  struct impl;
  explicit runtime(std::unique_ptr<impl> p);

  void add_aggregate(std::shared_ptr<const actors::aggregate_type> type,
                     const aggregate_options& opts);
  result<void> add_subscriber(const std::string& name, subscription_filter filter,
                              const subscription_options& opts, bool projection,
                              actors::subscriber_handler handle);

  template <class Event> static subscription_filter with_types(subscription_filter filter) {
    if (filter.types.empty())
      filter.types = persistence::event_type_names<Event>();
    return filter;
  }
  result<void> check_catalogue() const;
  /// The runtime runs, A's category is registered and the filter's ids are valid.
  result<void> check_what_if(const std::string& category, const what_if_filter& filter) const;
  /// The store's data keys; null without a master key.
  [[nodiscard]] const persistence::key_ring* personal_keys() const;
  void submit(actors::command_msg msg, const command_options& opts,
              std::function<void(actors::reply_msg&&)> done);

  template <class A>
  static result<outcome<A>>
  to_outcome(const persistence::event_registry& reg, const actors::reply_msg& r,
             const persistence::key_ring* keys, const std::string& subject) {
    if (!r.ok())
      return tl::unexpected(r.error());
    persistence::personal_scope scope{keys, subject};
    outcome<A> out;
    out.version = r.last_version;
    out.first_position = r.first_position;
    out.last_position = r.last_position;
    out.duplicate = r.duplicate;
    for (const auto& encoded : r.events) {
      auto ev = reg.decode<typename A::event>(encoded.type, encoded.schema_version,
                                              encoded.payload);
      if (!ev)
        return tl::unexpected(ev.error());
      out.events.push_back(std::move(*ev));
    }
    return out;
  }

  /// In a cluster, when another node owns A `id`'s stream: the state it
  /// replayed (cereal bytes) or the error. Nothing when this node owns it.
  std::optional<result<std::string>> replay_remotely(const std::string& category,
                                                     const std::string& id,
                                                     std::uint64_t to_version,
                                                     std::int64_t as_of_ns);
  template <class A>
  static result<typename A::state> decode_state(const result<std::string>& bytes) {
    if (!bytes)
      return tl::unexpected(bytes.error());
    return persistence::decode_payload<typename A::state>(*bytes);
  }

  /// A `id` replayed from the store up to `max_version`, before the first
  /// event `keep` refuses.
  template <class A>
  result<typename A::state>
  replay(const std::string& id, std::uint64_t max_version,
         const std::function<bool(const persistence::event_view&)>& keep) {
    actors::typed_aggregate<A> type{registry_};
    auto state = replay(type, id, max_version, keep);
    if (!state)
      return tl::unexpected(state.error());
    return std::move(actors::typed_aggregate<A>::get(**state));
  }
  /// Serves a peer's replay query for a stream this node owns.
  actors::reply_msg replay_here(const actors::command_msg& q);
  result<std::unique_ptr<actors::state_box>>
  replay(const actors::aggregate_type& type, const std::string& id, std::uint64_t max_version,
         const std::function<bool(const persistence::event_view&)>& keep);

  std::unique_ptr<impl> impl_;
  std::shared_ptr<persistence::event_registry> registry_;
  std::atomic<bool> commands_started_{false};
};

} // namespace cairn
