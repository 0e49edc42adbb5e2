#include "cairn/actors/aggregate_actor.hpp"

#include <algorithm>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include <caf/all.hpp>
#include <spdlog/logger.h>

#include "cairn/actors/error.hpp"
#include "cairn/actors/fifo.hpp"
#include "cairn/actors/messages.hpp"
#include "cairn/model/clock.hpp"
#include "cairn/model/stream_name.hpp"

namespace cairn::actors {

namespace {

/// What the aggregate does with a command that reaches it.
enum class phase : std::uint8_t {
  serving,     ///< Decides it.
  stopping,    ///< Passivating: hands it back to the registry; stops once
               ///< nothing is in flight.
  broken,      ///< User code threw: answers it with `why`; stops once the
               ///< journal has answered what it holds.
  unrecovered, ///< Recovery failed: answers it with `why` until the registry stops it.
};

/// A command in flight. Replies complete in this order.
struct entry {
  caf::response_promise promise;
  bool appended = false; ///< Waits for the journal; else completes in order.
  reply_msg reply;       ///< Prepared answer (events, rejection, duplicate …).
  std::unique_ptr<events_box> events;
  std::string command_id;
  std::string duplicate_of; ///< An in-flight command id this one repeats.
  bool query = false;
};

/// The first append that failed; every later one fails with `later`. It
/// lives only while the handler that saw it answers what depended on it.
struct append_failure {
  cairn::error later;
  bool store_failed = false; ///< The store's own failure: stop rather than reload.
};

/// The one append request at the journal. Its bound is checked by one coarse
/// timer (tick_atom) rather than a CAF request timeout per request (see
/// docs/decisions/request-bounds.md).
struct journal_request {
  bool in_flight = false;
  std::uint64_t gen = 0; ///< Numbers the requests; a late answer is ignored.
  std::size_t count = 0; ///< Appends in the request.
  caf::actor_clock::time_point sent{};
  bool watched = false; ///< A check of the bound is scheduled.
};

struct aggregate_state {
  std::shared_ptr<const aggregate_type> type;
  std::shared_ptr<const aggregate_env> env;
  std::string stream;
  phase mode = phase::serving;
  cairn::error why; ///< In `broken` and `unrecovered`: the answer to everything.
  // Built by recovery inside the actor: no user code runs while its spawner
  // (the registry) constructs it.
  std::unique_ptr<state_box> confirmed;
  std::unique_ptr<state_box> pending;
  std::uint64_t confirmed_version = 0;
  std::uint64_t pending_version = 0;
  std::uint64_t snapshot_version = 0;
  /// The stream's tenant ("" none known): every command must name it.
  std::string tenant;
  fifo<entry> in_flight;
  journal_append unsent; ///< Appends decided while a request is at the journal.
  journal_request journal;
  std::optional<append_failure> failure;
  std::unordered_map<std::string, reply_msg> recent; ///< Completed ids, for in-flight repeats.
  caf::actor_clock::time_point touched{};            ///< Last told the registry it is in use.
  static inline const char* name = "cairn.aggregate";

  aggregate_state() = default;
  aggregate_state(const aggregate_state&) = delete;
  aggregate_state& operator=(const aggregate_state&) = delete;
  /// CAF drops a promise unanswered when its actor stops: answer whatever is
  /// still waiting here, so no caller waits forever.
  ~aggregate_state() {
    auto err = mode == phase::broken
                 ? why
                 : cairn::error{errc::unavailable,
                                "the aggregate stopped before it answered; retry with the same "
                                "command id",
                                stream};
    fail_waiting(err);
  }

  /// Delivers `r`, counting its outcome unless it answers a query.
  void answer(caf::response_promise& promise, reply_msg r, bool query = false) const {
    if (!query && env)
      env->stats->command(r.code, r.duplicate);
    promise.deliver(std::move(r));
  }

  /// Answers every command in flight with `err`.
  void fail_waiting(const cairn::error& err) {
    for (; !in_flight.empty(); in_flight.pop_front())
      if (auto& e = in_flight.front(); e.promise.pending())
        answer(e.promise, error_reply(err), e.query);
  }
};

using aggregate_actor_t = caf::stateful_actor<aggregate_state>;

void send_appends(aggregate_actor_t* self);

void tell_failed(aggregate_actor_t* self, const cairn::error& err) {
  self->send(self->state.env->registry_actor, failed_atom::value, self->state.stream, err.message);
}

void send_snapshot_if_due(aggregate_actor_t* self, bool force = false) {
  auto& st = self->state;
  auto interval = st.env->snapshot_interval;
  if (interval == 0 || st.confirmed_version == 0 || st.confirmed_version == st.snapshot_version)
    return;
  if (!force && st.confirmed_version - st.snapshot_version < interval)
    return;
  journal_snapshot snap;
  snap.value.stream = st.stream;
  snap.value.version = st.confirmed_version;
  snap.value.state_type = st.type->state_type();
  snap.value.schema_version = st.type->state_schema();
  st.snapshot_version = st.confirmed_version; // also when it fails: no retry per event
  if (auto ok = st.type->encode_state(*st.confirmed, snap.value.data, st.stream); !ok) {
    st.env->log->warn("no snapshot of {}: {}", st.stream, ok.error().to_string());
    return;
  }
  self->send(st.env->journal, snapshot_atom::value, std::move(snap));
}

/// Rebuilds the confirmed and pending state from the store.
result<void> reload(aggregate_actor_t* self) {
  auto& st = self->state;
  auto recovered = recover(*st.env->store, *st.type, st.stream);
  if (!recovered)
    return tl::unexpected(recovered.error());
  auto pending = st.type->copy(*recovered->state, st.stream);
  if (!pending)
    return tl::unexpected(pending.error());
  st.confirmed = std::move(recovered->state);
  st.pending = std::move(*pending);
  st.confirmed_version = recovered->version;
  st.pending_version = recovered->version;
  st.tenant = std::move(recovered->tenant);
  if (st.snapshot_version == 0)
    st.snapshot_version = recovered->version - recovered->replayed;
  if (recovered->replayed > st.env->snapshot_interval)
    send_snapshot_if_due(self, true);
  return {};
}

/// Puts the aggregate out of service: later commands get `err` at once; the
/// registry is told, and the actor stops once the appends at the journal
/// are answered (drain).
void break_down(aggregate_actor_t* self, const cairn::error& err) {
  auto& st = self->state;
  if (st.mode == phase::broken)
    return;
  st.env->log->error("{} is out of service: {}", st.stream, err.to_string());
  st.mode = phase::broken;
  st.why = err;
  tell_failed(self, err);
}

/// The answer of an entry that does not wait for the journal.
reply_msg settle(aggregate_actor_t* self, entry& e) {
  auto& st = self->state;
  if (st.failure && !e.query)
    return error_reply(st.failure->later);
  if (!e.duplicate_of.empty()) {
    auto it = st.recent.find(e.duplicate_of);
    if (it == st.recent.end())
      return error_reply({errc::unavailable, "the original command failed; retry", st.stream});
    auto reply = it->second;
    reply.duplicate = true;
    return reply;
  }
  if (e.query && st.mode == phase::broken)
    return error_reply(st.why);
  if (e.query) {
    e.reply.last_version = st.confirmed_version;
    if (auto ok = st.type->encode_state(*st.confirmed, e.reply.state, st.stream); !ok)
      return error_reply(ok.error());
  }
  return std::move(e.reply);
}

/// Everything that depended on the failed append has been answered: start
/// over from what the store holds, or stop when the store itself failed.
void recover_from_failure(aggregate_actor_t* self) {
  auto& st = self->state;
  auto failure = std::move(*st.failure);
  st.failure.reset();
  st.recent.clear();
  if (failure.store_failed) {
    self->quit(to_caf_error(failure.later));
    return;
  }
  if (auto reloaded = reload(self); !reloaded) {
    if (reloaded.error().code == errc::internal) // user code threw while recovering
      tell_failed(self, reloaded.error());
    self->quit(to_caf_error(reloaded.error()));
  }
}

/// Completes the replies at the front that no longer wait for the journal,
/// then acts on the phase once nothing is in flight.
void drain(aggregate_actor_t* self) {
  auto& st = self->state;
  while (!st.in_flight.empty() && !st.in_flight.front().appended) {
    auto& e = st.in_flight.front();
    st.answer(e.promise, settle(self, e), e.query);
    st.in_flight.pop_front();
  }
  if (!st.in_flight.empty())
    return;
  switch (st.mode) {
    case phase::broken: self->quit(to_caf_error(st.why)); return;
    case phase::stopping: // the next incarnation reads the store anyway
      self->quit();
      return;
    case phase::serving:
    case phase::unrecovered:
      if (st.failure)
        recover_from_failure(self);
      else if (st.recent.size() > 1024)
        st.recent.clear();
      return;
  }
}

/// The journal's answer to the append at the front.
void on_appended(aggregate_actor_t* self, result<persistence::append_result> r) {
  auto& st = self->state;
  auto& e = st.in_flight.front(); // journal replies come back in request order
  if (r && !st.failure) {
    std::optional<cairn::error> threw;
    if (st.mode != phase::broken) // else the state is lost already: only the outcome matters
      if (auto ok = st.type->evolve(*st.confirmed, *e.events, st.stream); !ok)
        threw = ok.error(); // the events are durable: the command gets its outcome
    st.confirmed_version = r->last_version;
    e.reply.first_version = r->first_version;
    e.reply.last_version = r->last_version;
    e.reply.first_position = r->first_position;
    e.reply.last_position = r->last_position;
    e.reply.duplicate = r->duplicate;
    if (!e.command_id.empty())
      st.recent.emplace(e.command_id, e.reply);
    st.answer(e.promise, std::move(e.reply));
    if (threw)
      break_down(self, *threw);
    else if (st.mode != phase::broken)
      send_snapshot_if_due(self);
  } else if (!st.failure) {
    // The first failure: this command gets the store's answer; the ones
    // decided after it depended on it and fail as unavailable. A conflict or
    // a bad command leaves the store sound: reload and go on. The store's
    // own failures stop the actor; the next command restarts it.
    st.answer(e.promise, error_reply(r.error()));
    auto code = r.error().code;
    bool store_failed = code == errc::unavailable || code == errc::corrupted
                        || code == errc::internal;
    st.failure = append_failure{{store_failed ? code : errc::unavailable,
                                 "an earlier command of this aggregate failed to append ("
                                   + r.error().to_string() + "); retry",
                                 st.stream},
                                store_failed};
  } else {
    st.answer(e.promise, error_reply(st.failure->later));
  }
  st.in_flight.pop_front();
  drain(self);
}

/// Fails the append in flight: its answer, if one comes, is ignored.
void append_failed(aggregate_actor_t* self, const std::string& why) {
  auto& st = self->state;
  ++st.journal.gen;
  for (std::size_t i = 0; i < st.journal.count; ++i)
    on_appended(self, fail(errc::unavailable, why));
  st.journal.in_flight = false;
  send_appends(self);
}

void watch_append(aggregate_actor_t* self) {
  auto& j = self->state.journal;
  if (!j.in_flight || j.watched)
    return;
  j.watched = true;
  self->delayed_send(self, self->state.env->request_timeout, tick_atom::value);
}

void check_append_bound(aggregate_actor_t* self) {
  auto& st = self->state;
  st.journal.watched = false;
  if (!st.journal.in_flight)
    return;
  if (self->clock().now() - st.journal.sent >= st.env->request_timeout)
    append_failed(self, "the journal did not answer within "
                          + std::to_string(st.env->request_timeout.count())
                          + " ms; the outcome is unknown: retry with the same command id");
  watch_append(self);
}

/// Sends the gathered appends unless a request is at the journal already;
/// its answer sends the next.
void send_appends(aggregate_actor_t* self) {
  auto& st = self->state;
  if (st.journal.in_flight || st.unsent.requests.empty())
    return;
  if (st.failure) {
    // Decided on top of an append that failed: never let them reach the
    // store, where a foreign write could make their expected version true.
    auto count = st.unsent.requests.size();
    st.unsent.requests.clear();
    for (std::size_t i = 0; i < count; ++i)
      on_appended(self, tl::unexpected(st.failure->later));
    return;
  }
  st.journal.in_flight = true;
  st.journal.count = st.unsent.requests.size();
  st.journal.sent = self->clock().now();
  auto gen = ++st.journal.gen;
  self->request(st.env->journal, caf::infinite, append_atom::value, std::move(st.unsent))
    .then(
      [self, gen](journal_result& r) {
        if (gen != self->state.journal.gen)
          return; // failed by the bound already
        for (auto& v : r.values)
          on_appended(self, std::move(v));
        self->state.journal.in_flight = false;
        send_appends(self);
      },
      [self, gen](caf::error& err) {
        if (gen != self->state.journal.gen)
          return;
        append_failed(self, "journal unreachable: " + self->system().render(err));
      });
  st.unsent.requests.clear(); // moved from: empty it for sure
  watch_append(self);
}

/// The reply of a command id the store recorded already.
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

/// Queues an entry that completes in order without the journal.
void complete_in_order(aggregate_actor_t* self, entry e) {
  self->state.in_flight.push_back(std::move(e));
  drain(self);
}

/// True when `command_id` repeats a command in flight or just completed.
bool repeats_in_flight(const aggregate_state& st, const std::string& command_id) {
  if (st.recent.count(command_id) != 0)
    return true;
  return std::any_of(st.in_flight.begin(), st.in_flight.end(),
                     [&](const entry& f) { return f.command_id == command_id; });
}

/// Decides a command in `serving`.
void decide(aggregate_actor_t* self, const command_msg& m, entry e) {
  auto& st = self->state;
  if (!st.tenant.empty() && m.tenant != st.tenant) { // before decide; the store checks too
    st.answer(e.promise,
              error_reply({errc::invalid_argument,
                           "tenant '" + m.tenant + "' does not match tenant '" + st.tenant
                             + "' of stream " + st.stream + " (a stream never mixes tenants)",
                           st.stream}));
    return;
  }
  if (!m.command_id.empty()) {
    e.command_id = m.command_id;
    if (repeats_in_flight(st, m.command_id)) {
      e.duplicate_of = m.command_id;
      e.command_id.clear();
      complete_in_order(self, std::move(e));
      return;
    }
    auto found = st.env->store->find_command(st.stream, m.command_id);
    if (!found || *found) {
      auto reply = found ? stored_outcome(*st.env, st.stream, **found)
                         : result<reply_msg>{tl::unexpected(found.error())};
      e.reply = reply ? std::move(*reply) : error_reply(reply.error());
      complete_in_order(self, std::move(e));
      return;
    }
  }
  auto d = [&] {
    // Personal data of the events is encrypted under the command's subject's key.
    persistence::personal_scope scope{st.env->store->personal_keys(), m.subject};
    return st.type->decide(*st.pending, m.payload, st.stream);
  }();
  if (!d) {
    if (d.error().code == errc::rejected) { // the domain's answer, in order
      e.reply = error_reply(d.error());
      complete_in_order(self, std::move(e));
    } else {
      st.answer(e.promise, error_reply(d.error()));
    }
    return;
  }
  if (d->encoded.empty() && !st.env->record_commands) {
    e.reply.first_version = st.pending_version + 1;
    e.reply.last_version = st.pending_version;
    complete_in_order(self, std::move(e));
    return;
  }
  if (auto ok = st.type->evolve(*st.pending, *d->events, st.stream); !ok) {
    auto err = ok.error();
    st.answer(e.promise,
              error_reply(
                {err.code, err.message + "; nothing of this command was appended", err.context}));
    break_down(self, err);
    drain(self);
    return;
  }
  persistence::append_request req;
  req.stream = st.stream;
  req.expected = persistence::expected_version::exact(st.pending_version);
  req.meta = persistence::metadata{m.correlation_id, m.causation_id, m.command_id,
                                   m.tenant,         m.user,         m.subject};
  if (st.env->record_commands)
    req.command = m.payload;
  e.reply.events.reserve(d->encoded.size());
  for (const auto& ev : d->encoded)
    e.reply.events.push_back({ev.type, ev.schema_version, ev.payload});
  req.events = std::move(d->encoded);
  st.pending_version += req.events.size();
  if (st.tenant.empty())
    st.tenant = m.tenant; // a failed append reloads it from the store
  e.events = std::move(d->events);
  e.appended = true;
  st.in_flight.push_back(std::move(e));
  st.unsent.requests.push_back(std::move(req));
  send_appends(self);
}

void handle(aggregate_actor_t* self, const command_msg& m, caf::response_promise promise) {
  auto& st = self->state;
  switch (st.mode) {
    case phase::broken:
    case phase::unrecovered: st.answer(promise, error_reply(st.why), m.query); return;
    case phase::stopping:
      // Sent straight here (router.hpp) while we passivate: the registry
      // buffers it for the next incarnation.
      promise.delegate(st.env->registry_actor, command_atom::value, m);
      return;
    case phase::serving: break;
  }
  if (st.in_flight.size() >= st.env->max_waiting) {
    st.answer(promise,
              error_reply(
                {errc::overloaded,
                 std::to_string(st.in_flight.size()) + " commands already wait for this aggregate",
                 st.stream}),
              m.query);
    return;
  }
  if (m.deadline_ns != 0 && steady_now_ns() > m.deadline_ns) {
    st.answer(promise,
              error_reply({errc::unavailable, "deadline passed before the command ran", st.stream}),
              m.query);
    return;
  }
  entry e;
  e.promise = std::move(promise);
  if (m.query) {
    e.query = true;
    complete_in_order(self, std::move(e));
    return;
  }
  decide(self, m, std::move(e));
}

/// Passivation: stop once the appends in flight are answered.
void stop(aggregate_actor_t* self) {
  auto& st = self->state;
  switch (st.mode) {
    case phase::broken: // stops once drained anyway
      return;
    case phase::unrecovered: self->quit(); return;
    case phase::serving:
    case phase::stopping: break;
  }
  st.mode = phase::stopping;
  if (st.in_flight.empty())
    self->quit();
}

/// Tells the registry now and then that the aggregate is in use.
void touch(aggregate_actor_t* self) {
  auto& st = self->state;
  if (auto now = self->clock().now(); now - st.touched >= st.env->touch_every) {
    st.touched = now;
    self->send(st.env->registry_actor, touch_atom::value);
  }
}

caf::behavior aggregate_behavior(aggregate_actor_t* self, std::string id,
                                 std::shared_ptr<const aggregate_type> type,
                                 std::shared_ptr<const aggregate_env> env) {
  auto& st = self->state;
  st.type = std::move(type);
  st.env = std::move(env);
  st.stream = stream_name_of(st.type->category(), id);
  // A throw that escapes a handler anyway: answer everyone, tell the registry.
  self->set_exception_handler([self](caf::scheduled_actor*, std::exception_ptr& x) {
    auto& s = self->state;
    cairn::error err;
    try {
      std::rethrow_exception(x);
    } catch (...) {
      err = thrown_error("a handler of the aggregate", s.stream);
    }
    s.env->log->error("{} stopped: {}", s.stream, err.to_string());
    s.mode = phase::broken;
    s.why = err;
    s.fail_waiting(err);
    tell_failed(self, err);
    return to_caf_error(err);
  });
  auto started = std::chrono::steady_clock::now();
  auto recovered = reload(self);
  if (!recovered && recovered.error().code == errc::internal) // user code threw
    tell_failed(self, recovered.error());
  self->send(st.env->registry_actor, activated_atom::value, st.stream,
             static_cast<bool>(recovered));
  if (recovered) {
    st.env->stats->activation_us.observe(
      static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::microseconds>(
                                   std::chrono::steady_clock::now() - started)
                                   .count()));
  } else {
    // Answer what reaches us with the reason; the registry stops us and
    // retries with backoff on the next command.
    st.mode = phase::unrecovered;
    st.why = recovered.error();
    st.env->log->error("cannot recover {}: {}", st.stream, st.why.to_string());
  }
  return {
    // A const message: a router shares it with its own copy (for a bounce),
    // and a mutable one would make CAF copy it.
    [self](command_atom, const command_msg& m) -> caf::result<reply_msg> {
      auto promise = self->make_response_promise();
      if (auto mode = self->state.mode; mode != phase::stopping && mode != phase::unrecovered)
        touch(self);
      handle(self, m, promise);
      return promise;
    },
    [self](tick_atom) { check_append_bound(self); },
    [self](stop_atom) { stop(self); },
  };
}

} // namespace

caf::actor spawn_aggregate(caf::local_actor& parent, std::string id,
                           std::shared_ptr<const aggregate_type> type,
                           std::shared_ptr<const aggregate_env> env) {
  return parent.spawn(aggregate_behavior, std::move(id), std::move(type), std::move(env));
}

caf::actor spawn_aggregate(caf::actor_system& sys, std::string id,
                           std::shared_ptr<const aggregate_type> type,
                           std::shared_ptr<const aggregate_env> env) {
  return sys.spawn(aggregate_behavior, std::move(id), std::move(type), std::move(env));
}

aggregate_kind kind_of(std::shared_ptr<const aggregate_type> type,
                       std::shared_ptr<const aggregate_env> env) {
  aggregate_kind kind;
  kind.category = type->category();
  kind.spawn = [type = std::move(type), env = std::move(env)](caf::local_actor& parent,
                                                              const std::string& id) {
    return spawn_aggregate(parent, id, type, env);
  };
  return kind;
}

} // namespace cairn::actors
