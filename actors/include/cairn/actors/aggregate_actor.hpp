#pragma once

/// aggregate_actor<A>: one live aggregate. It recovers its state from the
/// latest usable snapshot plus the trailing events, then handles commands in
/// mailbox order: decide against the pending state, append through the
/// journal, reply once the append is durable, evolve the confirmed state.
///
/// Pipelining: commands that arrive while appends are in flight are decided
/// against the pending state (which includes those appends); their appends
/// wait in one message for the journal until the message in flight is
/// answered, so one aggregate has at most one request at the journal. Each
/// append expects the exact version the previous one ends at, so if one
/// fails every later one fails too. The replies keep command order.
///
/// User code (initial, decide, evolve, serialize, upcasters) runs guarded. A
/// throwing decide rejects its command with `internal`. A throwing evolve
/// (or initial, or an upcaster during recovery) puts the aggregate out of
/// service: the command that hit it gets `internal`, appends already at the
/// journal get their real outcome, every other command waiting for it gets
/// `internal` naming the exception, the registry is told (it refuses the
/// aggregate's commands until its backoff lets it try again), and the actor
/// stops. No promise is ever dropped unanswered.

#include <chrono>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include <caf/all.hpp>
#include <cereal/types/variant.hpp>

#include "cairn/actors/fifo.hpp"
#include "cairn/actors/log.hpp"
#include "cairn/actors/messages.hpp"
#include "cairn/actors/metrics.hpp"
#include "cairn/model/aggregate.hpp"
#include "cairn/model/clock.hpp"
#include "cairn/model/stream_name.hpp"
#include "cairn/persistence/codec.hpp"
#include "cairn/persistence/event_store.hpp"

namespace cairn::actors {

/// What every aggregate actor of one runtime shares; read-only once running.
struct aggregate_env {
  persistence::event_store* store = nullptr;
  const persistence::event_registry* registry = nullptr;
  caf::actor journal;
  caf::actor registry_actor;
  std::uint64_t snapshot_interval = 50; ///< Events between snapshots; 0 = never.
  std::size_t max_waiting = 4096;       ///< Commands in flight before `overloaded`.
  /// How often a live aggregate tells the registry it is in use: commands
  /// sent straight to it (router.hpp) do not pass the registry's LRU.
  std::chrono::nanoseconds touch_every{std::chrono::seconds{1}};
  /// Bound on each append request to the journal.
  std::chrono::milliseconds request_timeout{std::chrono::seconds{60}};
  metrics* stats = nullptr;             ///< Outcomes and activation times; required.
  std::shared_ptr<spdlog::logger> log;  ///< "cairn.aggregate"; required.
};

/// Name under which A's state is snapshotted.
template <class A>
std::string state_type_name() {
  return std::string{A::category} + ".state";
}

namespace detail {

/// The error for the exception user code threw; call it inside a catch block.
inline cairn::error user_code_error(const std::string& what, const std::string& where) {
  try {
    throw;
  } catch (const std::exception& e) {
    return {errc::internal, what + " threw: " + e.what(), where};
  } catch (...) {
    return {errc::internal, what + " threw an exception that is not a std::exception", where};
  }
}

/// A::initial(), guarded.
template <class A>
result<typename A::state> initial_state(const std::string& stream) {
  try {
    return A::initial();
  } catch (...) {
    return tl::unexpected(user_code_error("initial", stream));
  }
}

/// Rebuilds A's state of `stream` from the store: the latest snapshot when it
/// is usable (checksum, state type, schema version), else full replay.
/// `replayed` counts the events applied after the snapshot.
template <class A>
result<std::pair<typename A::state, std::uint64_t>>
recover(const aggregate_env& env, const std::string& stream, std::uint64_t& replayed) try {
  using state_t = typename A::state;
  auto initial = initial_state<A>(stream);
  if (!initial)
    return tl::unexpected(initial.error());
  state_t state = std::move(*initial);
  std::uint64_t version = 0;
  auto snap = env.store->load_snapshot(stream);
  if (snap && *snap && (*snap)->state_type == state_type_name<A>()
      && (*snap)->schema_version == persistence::schema_version_of<state_t>()) {
    if (auto decoded = persistence::decode_payload<state_t>((*snap)->data)) {
      state = std::move(*decoded);
      version = (*snap)->version;
    }
  } else if (!snap && snap.error().code != errc::corrupted) {
    return tl::unexpected(snap.error()); // unreadable store, not a bad snapshot
  }
  replayed = 0;
  constexpr std::size_t page = 4096;
  for (;;) {
    std::optional<cairn::error> failure;
    auto visited = env.store->visit_stream(
      stream, version + 1, page, [&](const persistence::event_view& ev) {
        auto where = stream + " v" + std::to_string(ev.version);
        // Decoding and upcasting turn what user code throws into errors themselves.
        auto event = env.registry->decode<typename A::event>(ev.type, ev.schema_version,
                                                             ev.payload);
        if (!event) {
          failure = event.error();
          failure->context = where;
          return false;
        }
        try {
          state = A::evolve(std::move(state), *event);
        } catch (...) {
          failure = user_code_error("evolve of " + std::string{ev.type}, where);
          return false;
        }
        version = ev.version;
        return true;
      });
    if (!visited)
      return tl::unexpected(visited.error());
    if (failure)
      return tl::unexpected(*failure);
    replayed += *visited;
    if (*visited < page)
      break;
  }
  return std::make_pair(std::move(state), version);
} catch (...) {
  return tl::unexpected(user_code_error("recovery", stream));
}

} // namespace detail

template <class A>
struct aggregate_state {
  struct entry {
    caf::response_promise promise;
    bool appended = false; ///< Waits for the journal; else completes in order.
    reply_msg reply;       ///< Prepared answer (events, rejection, duplicate …).
    std::vector<typename A::event> events;
    std::string command_id;
    std::string duplicate_of; ///< An in-flight command id this one repeats.
    bool query = false;
  };

  std::shared_ptr<const aggregate_env> env;
  std::string id;
  std::string stream;
  // Set by recovery, inside the actor: no user code runs while its spawner
  // (the registry) constructs it.
  std::optional<typename A::state> confirmed;
  std::optional<typename A::state> pending;
  std::uint64_t confirmed_version = 0;
  std::uint64_t pending_version = 0;
  std::uint64_t snapshot_version = 0;
  fifo<entry> in_flight;
  journal_append unsent;  ///< Appends decided while `appending`, for the next request.
  bool appending = false; ///< A journal_append is in flight.
  // The bound on the append in flight, checked by one coarse timer rather
  // than a CAF request timeout: that registers a timer per request and wakes
  // the clock's thread each time, which halved throughput at 1024 in flight.
  std::uint64_t append_gen = 0;     ///< Numbers the appends; a late answer is ignored.
  std::size_t append_count = 0;     ///< Requests in the append in flight.
  std::chrono::steady_clock::time_point append_sent{};
  bool append_watched = false;      ///< A check of the bound is scheduled.
  std::optional<cairn::error> failure; ///< First failed append; later ones fail with it.
  bool store_failed = false; ///< The failure was the store's: stop rather than reload.
  std::deque<std::pair<command_msg, caf::response_promise>> held; ///< During a reload.
  std::unordered_map<std::string, reply_msg> recent; ///< Completed command ids, for in-flight repeats.
  bool stopping = false;
  /// Why the aggregate is out of service (user code threw); it answers
  /// everything with it and stops once its appends are answered.
  std::optional<cairn::error> broken;
  std::chrono::steady_clock::time_point touched{}; ///< Last told the registry it is in use.
  static inline const char* name = "cairn.aggregate";

  aggregate_state() = default;
  aggregate_state(const aggregate_state&) = delete;
  aggregate_state& operator=(const aggregate_state&) = delete;
  /// CAF drops a promise unanswered when its actor stops: answer whatever is
  /// still waiting here, so no caller waits forever.
  ~aggregate_state() {
    auto err = broken ? *broken
                      : cairn::error{errc::unavailable,
                                     "the aggregate stopped before it answered; retry with "
                                     "the same command id",
                                     stream};
    fail_waiting(err);
  }

  /// Answers every command in flight or held with `err`.
  void fail_waiting(const cairn::error& err) {
    while (!in_flight.empty()) {
      auto& e = in_flight.front();
      if (e.promise.pending()) {
        if (!e.query && env)
          env->stats->command(static_cast<std::uint8_t>(err.code), false);
        e.promise.deliver(error_reply(err));
      }
      in_flight.pop_front();
    }
    for (auto& [msg, p] : held) {
      if (!p.pending())
        continue;
      if (!msg.query && env)
        env->stats->command(static_cast<std::uint8_t>(err.code), false);
      p.deliver(error_reply(err));
    }
    held.clear();
  }
};

template <class A>
using aggregate_actor_t = caf::stateful_actor<aggregate_state<A>>;

namespace detail {

template <class A>
void send_snapshot_if_due(aggregate_actor_t<A>* self, bool force = false) {
  auto& st = self->state;
  auto interval = st.env->snapshot_interval;
  if (interval == 0 || st.confirmed_version == 0 || st.confirmed_version == st.snapshot_version)
    return;
  if (!force && st.confirmed_version - st.snapshot_version < interval)
    return;
  journal_snapshot snap;
  snap.value.stream = st.stream;
  snap.value.version = st.confirmed_version;
  snap.value.state_type = state_type_name<A>();
  snap.value.schema_version = persistence::schema_version_of<typename A::state>();
  st.snapshot_version = st.confirmed_version; // also when it fails: no retry per event
  try {
    persistence::encode_payload(*st.confirmed, snap.value.data);
  } catch (...) {
    st.env->log->warn("no snapshot of {}: {}", st.stream,
                      user_code_error("serializing the state", st.stream).to_string());
    return;
  }
  self->send(st.env->journal, snapshot_atom::value, std::move(snap));
}

template <class A>
result<void> reload(aggregate_actor_t<A>* self) {
  auto& st = self->state;
  std::uint64_t replayed = 0;
  auto recovered = recover<A>(*st.env, st.stream, replayed);
  if (!recovered)
    return tl::unexpected(recovered.error());
  st.confirmed = std::move(recovered->first);
  st.confirmed_version = recovered->second;
  try {
    st.pending = st.confirmed;
  } catch (...) {
    return tl::unexpected(user_code_error("copying the state", st.stream));
  }
  st.pending_version = st.confirmed_version;
  if (st.snapshot_version == 0)
    st.snapshot_version = st.confirmed_version - std::min(st.confirmed_version, replayed);
  if (replayed > st.env->snapshot_interval)
    send_snapshot_if_due(self, true);
  return {};
}

template <class A>
void handle(aggregate_actor_t<A>* self, const command_msg& m, caf::response_promise promise);

/// Delivers `r`, counting its outcome unless it answers a query.
inline void answer(const aggregate_env& env, caf::response_promise& promise, reply_msg r,
                   bool query = false) {
  if (!query)
    env.stats->command(r.code, r.duplicate);
  promise.deliver(std::move(r));
}

/// Puts the aggregate out of service: commands held for a reload get `err`
/// now, later ones at once; the registry is told, and the actor stops once
/// the appends at the journal are answered (drain).
template <class A>
void break_down(aggregate_actor_t<A>* self, const cairn::error& err) {
  auto& st = self->state;
  if (st.broken)
    return;
  st.env->log->error("{} is out of service: {}", st.stream, err.to_string());
  st.broken = err;
  for (auto& [msg, p] : st.held)
    answer(*st.env, p, error_reply(err), msg.query);
  st.held.clear();
  self->send(st.env->registry_actor, failed_atom::value, st.stream, err.message);
}

/// Completes the replies at the front that no longer wait for the journal.
template <class A>
void drain(aggregate_actor_t<A>* self) {
  auto& st = self->state;
  while (!st.in_flight.empty() && !st.in_flight.front().appended) {
    auto& e = st.in_flight.front();
    if (st.failure && !e.query) {
      answer(*st.env, e.promise, error_reply(*st.failure));
    } else if (!e.duplicate_of.empty()) {
      auto it = st.recent.find(e.duplicate_of);
      if (it != st.recent.end()) {
        auto reply = it->second;
        reply.duplicate = true;
        answer(*st.env, e.promise, std::move(reply));
      } else {
        answer(*st.env, e.promise,
               error_reply({errc::unavailable, "the original command failed; retry", st.stream}));
      }
    } else {
      if (e.query && st.broken) {
        e.reply = error_reply(*st.broken);
      } else if (e.query) {
        e.reply.last_version = st.confirmed_version;
        try {
          persistence::encode_payload(*st.confirmed, e.reply.state);
        } catch (...) {
          e.reply = error_reply(user_code_error("serializing the state", st.stream));
        }
      }
      answer(*st.env, e.promise, std::move(e.reply), e.query);
    }
    st.in_flight.pop_front();
  }
  if (!st.in_flight.empty())
    return;
  if (st.broken) {
    self->quit(caf::make_error(caf::sec::runtime_error, st.broken->to_string()));
    return;
  }
  if (st.failure) {
    // Everything that depended on the failed append has been answered: start
    // over from what the store holds, or stop when the store itself failed.
    auto code = st.failure->code;
    bool store_failed = st.store_failed;
    st.failure.reset();
    st.store_failed = false;
    st.recent.clear();
    auto reloaded = store_failed ? result<void>{} : reload(self);
    if (store_failed || !reloaded) {
      auto err = reloaded ? cairn::error{code, "the store failed; the aggregate stopped",
                                         st.stream}
                          : reloaded.error();
      for (auto& [msg, p] : st.held)
        answer(*st.env, p, error_reply(err), msg.query);
      st.held.clear();
      if (err.code == errc::internal) // user code threw while recovering
        self->send(st.env->registry_actor, failed_atom::value, st.stream, err.message);
      self->quit(caf::make_error(caf::sec::runtime_error, err.to_string()));
      return;
    }
    auto held = std::move(st.held);
    st.held.clear();
    for (auto& [msg, p] : held)
      handle(self, msg, std::move(p));
    return;
  }
  if (st.recent.size() > 1024)
    st.recent.clear();
  if (st.stopping)
    self->quit();
}

template <class A>
void on_appended(aggregate_actor_t<A>* self, result<persistence::append_result> r) {
  auto& st = self->state;
  auto& e = st.in_flight.front(); // journal replies come back in request order
  if (r && !st.failure) {
    std::optional<cairn::error> threw;
    try {
      if (!st.broken) // else the state is lost already: only the outcome matters
        for (const auto& ev : e.events)
          st.confirmed = A::evolve(std::move(*st.confirmed), ev);
    } catch (...) {
      // The events are durable: the command gets its outcome, the aggregate
      // whose state is now unknown goes out of service.
      threw = user_code_error("evolve", st.stream);
    }
    st.confirmed_version = r->last_version;
    e.reply.first_version = r->first_version;
    e.reply.last_version = r->last_version;
    e.reply.first_position = r->first_position;
    e.reply.last_position = r->last_position;
    e.reply.duplicate = r->duplicate;
    if (!e.command_id.empty())
      st.recent.emplace(e.command_id, e.reply);
    answer(*st.env, e.promise, std::move(e.reply));
    if (threw)
      break_down(self, *threw);
    else if (!st.broken)
      send_snapshot_if_due(self);
  } else if (!st.failure) {
    // The first failure: this command gets the store's answer; the ones
    // decided after it depended on it and fail as unavailable.
    answer(*st.env, e.promise, error_reply(r.error()));
    auto code = r.error().code;
    // A conflict or a bad command leaves the store sound: reload and go on.
    // The store's own failures stop the actor; the next command restarts it.
    st.store_failed = code == errc::unavailable || code == errc::corrupted
                      || code == errc::internal;
    st.failure = cairn::error{st.store_failed ? code : errc::unavailable,
                              "an earlier command of this aggregate failed to append ("
                                + r.error().to_string() + "); retry",
                              st.stream};
  } else {
    answer(*st.env, e.promise, error_reply(*st.failure));
  }
  st.in_flight.pop_front();
  drain(self);
}

/// Sends the gathered appends unless a request is at the journal already;
/// its answer sends the next.
template <class A>
void send_appends(aggregate_actor_t<A>* self);

/// Fails the append in flight: its answer, if one comes, is ignored.
template <class A>
void append_failed(aggregate_actor_t<A>* self, const std::string& why) {
  auto& st = self->state;
  ++st.append_gen;
  for (std::size_t i = 0; i < st.append_count; ++i)
    on_appended<A>(self, fail(errc::unavailable, why));
  st.appending = false;
  send_appends(self);
}

/// Checks the bound of the append in flight now and then (tick_atom).
template <class A>
void watch_append(aggregate_actor_t<A>* self) {
  auto& st = self->state;
  if (!st.appending || st.append_watched)
    return;
  st.append_watched = true;
  self->delayed_send(self, st.env->request_timeout, tick_atom::value);
}

template <class A>
void check_append_bound(aggregate_actor_t<A>* self) {
  auto& st = self->state;
  st.append_watched = false;
  if (!st.appending)
    return;
  auto late = std::chrono::steady_clock::now() - st.append_sent;
  if (late >= st.env->request_timeout)
    append_failed(self, "the journal did not answer within "
                          + std::to_string(st.env->request_timeout.count())
                          + " ms; the outcome is unknown: retry with the same command id");
  watch_append(self);
}

template <class A>
void send_appends(aggregate_actor_t<A>* self) {
  auto& st = self->state;
  if (st.appending || st.unsent.requests.empty())
    return;
  st.appending = true;
  st.append_count = st.unsent.requests.size();
  st.append_sent = std::chrono::steady_clock::now();
  auto gen = ++st.append_gen;
  self->request(st.env->journal, caf::infinite, append_atom::value, std::move(st.unsent))
    .then(
      [self, gen](journal_result& r) {
        if (gen != self->state.append_gen)
          return; // failed by the bound already
        for (auto& v : r.values)
          on_appended<A>(self, std::move(v));
        self->state.appending = false;
        send_appends(self);
      },
      [self, gen](caf::error& err) {
        if (gen != self->state.append_gen)
          return;
        append_failed(self, "journal unreachable: " + self->system().render(err));
      });
  st.unsent.requests.clear(); // moved from: empty it for sure
  watch_append(self);
}

/// Builds the reply of a command id the store already recorded.
template <class A>
result<reply_msg> stored_outcome(const aggregate_env& env, const std::string& stream,
                                 const persistence::append_result& r) {
  reply_msg reply;
  reply.first_version = r.first_version;
  reply.last_version = r.last_version;
  reply.first_position = r.first_position;
  reply.last_position = r.last_position;
  reply.duplicate = true;
  auto visited = env.store->visit_stream(
    stream, r.first_version, static_cast<std::size_t>(r.last_version - r.first_version + 1),
    [&](const persistence::event_view& ev) {
      reply.events.push_back({std::string{ev.type}, ev.schema_version, std::string{ev.payload}});
      return true;
    });
  if (!visited)
    return tl::unexpected(visited.error());
  return reply;
}

template <class A>
void handle(aggregate_actor_t<A>* self, const command_msg& m, caf::response_promise promise) {
  auto& st = self->state;
  if (st.broken) {
    answer(*st.env, promise, error_reply(*st.broken), m.query);
    return;
  }
  if (st.failure) { // reloading once the in-flight appends are answered
    st.held.emplace_back(m, std::move(promise));
    return;
  }
  if (st.in_flight.size() >= st.env->max_waiting) {
    answer(*st.env, promise,
           error_reply({errc::overloaded,
                        std::to_string(st.in_flight.size())
                          + " commands already wait for this aggregate",
                        st.stream}),
           m.query);
    return;
  }
  if (m.deadline_ns != 0 && steady_now_ns() > m.deadline_ns) {
    answer(*st.env, promise,
           error_reply({errc::unavailable, "deadline passed before the command ran", st.stream}),
           m.query);
    return;
  }
  typename aggregate_state<A>::entry e;
  e.promise = std::move(promise);
  if (m.query) {
    e.query = true;
    st.in_flight.push_back(std::move(e));
    drain(self);
    return;
  }
  if (!m.command_id.empty()) {
    e.command_id = m.command_id;
    bool repeats_in_flight = st.recent.count(m.command_id) != 0;
    for (const auto& f : st.in_flight)
      repeats_in_flight = repeats_in_flight || f.command_id == m.command_id;
    if (repeats_in_flight) {
      e.duplicate_of = m.command_id;
      e.command_id.clear();
      st.in_flight.push_back(std::move(e));
      drain(self);
      return;
    }
    auto found = st.env->store->find_command(st.stream, m.command_id);
    if (!found || *found) {
      auto reply = found ? stored_outcome<A>(*st.env, st.stream, **found)
                         : result<reply_msg>{tl::unexpected(found.error())};
      e.reply = reply ? std::move(*reply) : error_reply(reply.error());
      st.in_flight.push_back(std::move(e));
      drain(self);
      return;
    }
  }
  auto command = persistence::decode_payload<typename A::command>(m.payload);
  if (!command) {
    answer(*st.env, e.promise,
           error_reply({errc::invalid_argument,
                        "command does not decode: " + command.error().message, st.stream}));
    return;
  }
  decision<typename A::event> d;
  try {
    d = A::decide(*st.pending, *command);
  } catch (...) {
    answer(*st.env, e.promise, error_reply(user_code_error("decide", st.stream)));
    return;
  }
  if (!d) {
    e.reply = error_reply({errc::rejected, d.error().reason, st.stream});
    st.in_flight.push_back(std::move(e));
    drain(self);
    return;
  }
  if (d->empty()) {
    e.reply.first_version = st.pending_version + 1;
    e.reply.last_version = st.pending_version;
    st.in_flight.push_back(std::move(e));
    drain(self);
    return;
  }
  persistence::append_request req;
  req.stream = st.stream;
  req.expected = persistence::expected_version::exact(st.pending_version);
  req.meta = persistence::metadata{m.correlation_id, m.causation_id, m.command_id,
                                   m.tenant, m.user};
  req.events.reserve(d->size());
  e.reply.events.reserve(d->size());
  for (const auto& ev : *d) {
    result<persistence::event_data> data = fail(errc::internal, "not encoded");
    try {
      data = st.env->registry->encode(ev);
    } catch (...) {
      data = tl::unexpected(user_code_error("serializing an event", st.stream));
    }
    if (!data) {
      answer(*st.env, e.promise, error_reply(data.error()));
      return;
    }
    e.reply.events.push_back({data->type, data->schema_version, data->payload});
    req.events.push_back(std::move(*data));
  }
  try {
    for (const auto& ev : *d)
      st.pending = A::evolve(std::move(*st.pending), ev);
  } catch (...) {
    auto err = user_code_error("evolve", st.stream);
    answer(*st.env, e.promise,
           error_reply({err.code, err.message + "; nothing of this command was appended",
                        err.context}));
    break_down(self, err);
    drain(self);
    return;
  }
  st.pending_version += d->size();
  e.events = std::move(*d);
  e.appended = true;
  st.in_flight.push_back(std::move(e));
  st.unsent.requests.push_back(std::move(req));
  send_appends(self);
}

} // namespace detail

/// The behavior of aggregate_actor<A> for aggregate `id`.
template <class A>
caf::behavior aggregate_actor(aggregate_actor_t<A>* self, std::string id,
                              std::shared_ptr<const aggregate_env> env) {
  auto& st = self->state;
  st.env = std::move(env);
  st.id = std::move(id);
  st.stream = stream_name_of(A::category, st.id);
  // A throw that escapes a handler anyway: answer everyone, tell the registry.
  self->set_exception_handler([self](caf::scheduled_actor*, std::exception_ptr& x) {
    auto& s = self->state;
    cairn::error err{errc::internal, "unknown", s.stream};
    try {
      std::rethrow_exception(x);
    } catch (...) {
      err = detail::user_code_error("a handler of the aggregate", s.stream);
    }
    s.env->log->error("{} stopped: {}", s.stream, err.to_string());
    s.broken = err;
    s.fail_waiting(err);
    self->send(s.env->registry_actor, failed_atom::value, s.stream, err.message);
    return caf::make_error(caf::sec::runtime_error, err.to_string());
  });
  auto started = std::chrono::steady_clock::now();
  auto recovered = detail::reload(self);
  if (!recovered && recovered.error().code == errc::internal) // user code threw
    self->send(st.env->registry_actor, failed_atom::value, st.stream, recovered.error().message);
  self->send(st.env->registry_actor, activated_atom::value, st.stream,
             static_cast<bool>(recovered));
  if (!recovered) {
    // Answer what already reached us with the reason; the registry stops us
    // and retries with backoff on the next command.
    auto err = recovered.error();
    st.env->log->error("cannot recover {}: {}", st.stream, err.to_string());
    return {
      [self, err](command_atom, const command_msg& m) {
        auto reply = error_reply(err);
        if (!m.query)
          self->state.env->stats->command(reply.code, false);
        return reply;
      },
      [self](stop_atom) { self->quit(); },
    };
  }
  st.env->stats->activation_us.observe(static_cast<std::uint64_t>(
    std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now()
                                                          - started)
      .count()));
  return {
    // A const message: a router shares it with its own copy (for a bounce),
    // and a mutable one would make CAF copy it.
    [self](command_atom, const command_msg& m) -> caf::result<reply_msg> {
      auto& s = self->state;
      auto promise = self->make_response_promise();
      if (s.stopping) {
        // Sent straight here (router.hpp) while we passivate: the registry
        // buffers it for the next incarnation.
        promise.delegate(s.env->registry_actor, command_atom::value, m);
        return promise;
      }
      if (auto now = std::chrono::steady_clock::now(); now - s.touched >= s.env->touch_every) {
        s.touched = now;
        self->send(s.env->registry_actor, touch_atom::value);
      }
      detail::handle<A>(self, m, promise);
      return promise;
    },
    [self](tick_atom) { detail::check_append_bound<A>(self); },
    [self](stop_atom) {
      self->state.stopping = true;
      if (self->state.in_flight.empty())
        self->quit();
    },
  };
}

} // namespace cairn::actors
