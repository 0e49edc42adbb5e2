#include "cairn/actors/registry.hpp"

#include <algorithm>
#include <deque>
#include <list>
#include <optional>
#include <unordered_map>
#include <utility>

#include <caf/all.hpp>

#include "cairn/actors/log.hpp"
#include "cairn/actors/messages.hpp"
#include "cairn/model/backoff.hpp"
#include "cairn/model/stream_name.hpp"

namespace cairn::actors {

namespace {

using time_point = caf::actor_clock::time_point;

/// Where one aggregate is in its life. Every change goes through `enter`;
/// the transitions:
///
///   idle, queued, out_of_service -> activating   spawned (an activation slot is free)
///   idle, out_of_service -> queued     a command, no slot free (its stream in `waiting`)
///   idle -> backing_off                a command after failures in a row: restart later
///   backing_off -> idle -> activating, queued   the backoff passed (retry_atom) with
///                                      commands waiting
///   activating -> live | failing       it reported its recovery (activated_atom)
///   activating -> cancelled            told to stop (LRU) before it reported
///   cancelled -> passivating | failing it reported its recovery
///   live -> passivating                idle, LRU, shutdown
///   activating, live, cancelled, passivating, failing
///     -> idle, queued, backing_off, out_of_service   its actor is down (on_down)
///   queued -> idle                     shutdown refused its commands
///
/// An idle entry without failures is erased, and so is a backing_off one whose
/// backoff passed without commands.
enum class phase : std::uint8_t {
  idle,           ///< No actor, no commands; kept to remember failures in a row.
  queued,         ///< No actor; commands wait for an activation slot.
  backing_off,    ///< No actor; it failed, and restarts once the backoff passes.
  out_of_service, ///< No actor; its user code threw: commands refused until `refuse_until`.
  activating,     ///< Spawned, recovering its state; holds an activation slot.
  live,           ///< Recovered.
  cancelled,      ///< Told to stop while activating; still holds its slot.
  passivating,    ///< Told to stop after it recovered.
  failing,        ///< It could not recover: answers what reached it, then stops.
};

/// Whether the aggregate has an actor (spawned and not down yet).
bool has_actor(phase p) { return p >= phase::activating; }

/// Whether commands go to the actor (else they are buffered or refused).
bool takes_commands(phase p) { return p == phase::activating || p == phase::live; }

/// Whether the actor holds an activation slot (it has not reported yet).
bool holds_slot(phase p) { return p == phase::activating || p == phase::cancelled; }

bool allowed(phase from, phase to) {
  switch (to) {
    case phase::activating: return !has_actor(from);
    case phase::queued: return !has_actor(from) && from != phase::queued;
    case phase::backing_off: return from == phase::idle || has_actor(from);
    case phase::idle: return from == phase::queued || from == phase::backing_off || has_actor(from);
    case phase::out_of_service: return has_actor(from);
    case phase::live:
    case phase::cancelled: return from == phase::activating;
    case phase::passivating: return from == phase::live || from == phase::cancelled;
    case phase::failing: return holds_slot(from);
  }
  return false;
}

struct entry {
  std::string category;
  std::string id;
  caf::actor actor;
  phase ph = phase::idle;
  /// Why its user code threw, as this incarnation reported it (failed_atom):
  /// once it is down, its commands are refused with `internal` until
  /// `refuse_until`, then it is tried again.
  std::optional<std::string> user_failure;
  std::string failure_reason; ///< While out_of_service.
  time_point refuse_until{};
  /// Its place in the LRU list while activating or live.
  std::optional<std::list<std::string>::iterator> lru;
  time_point last_used{};
  unsigned failures = 0;
  std::deque<std::pair<command_msg, caf::response_promise>> buffer;
};

struct registry_state {
  registry_options opts;
  std::unordered_map<std::string, aggregate_kind> kinds;
  std::unordered_map<std::string, entry> entries; // by stream name
  std::list<std::string> lru;                     // live aggregates, most recent first
  std::unordered_map<caf::actor_addr, std::string> by_addr;
  std::vector<std::string> waiting; // dormant streams with commands, waiting for a slot
  std::size_t live = 0;
  std::size_t activating = 0;
  registry_stats stats;
  metrics* m = nullptr;
  std::shared_ptr<spdlog::logger> log;
  bool shutting_down = false;
  caf::response_promise shutdown_done;
  static inline const char* name = "cairn.registry";
};

using registry_actor = caf::stateful_actor<registry_state>;

/// Restarts after a failure (the store, most likely): 20 ms, doubling per
/// failure in a row, at most 5 s.
constexpr cairn::backoff restart_backoff{std::chrono::milliseconds{20},
                                         std::chrono::milliseconds{5000}};

/// How long an aggregate whose user code threw is refused: 1 s, doubling per
/// failure in a row, at most 32 s. Longer than a store's backoff, since the
/// same code will most likely throw again.
constexpr cairn::backoff refusal_backoff{std::chrono::milliseconds{1000},
                                         std::chrono::milliseconds{32000}};

/// Answers a command the registry refuses itself (queries are not counted).
void refuse(registry_actor* self, const command_msg& m, caf::response_promise& promise,
            const cairn::error& err) {
  auto reply = error_reply(err);
  if (!m.query)
    self->state.m->command(reply.code, false);
  promise.deliver(std::move(reply));
}

void finish_shutdown_if_done(registry_actor* self) {
  auto& st = self->state;
  if (st.shutting_down && st.live == 0) {
    st.shutdown_done.deliver(true);
    self->quit();
  }
}

/// The one place an entry's phase changes.
void enter(registry_actor* self, entry& e, phase next) {
  if (!allowed(e.ph, next))
    self->state.log->error("bug: {}-{}: phase {} -> {}", e.category, e.id, static_cast<int>(e.ph),
                           static_cast<int>(next));
  e.ph = next;
}

void leave_lru(registry_state& st, entry& e) {
  if (e.lru) {
    st.lru.erase(*e.lru);
    e.lru.reset();
  }
}

/// Tells the actor to stop; what arrives meanwhile waits for the next incarnation.
void passivate(registry_actor* self, entry& e) {
  leave_lru(self->state, e);
  enter(self, e, e.ph == phase::activating ? phase::cancelled : phase::passivating);
  self->send(e.actor, stop_atom::value);
}

void touch(registry_actor* self, entry& e, const std::string& stream) {
  auto& st = self->state;
  e.last_used = self->clock().now();
  if (e.lru)
    st.lru.splice(st.lru.begin(), st.lru, *e.lru);
  else {
    st.lru.push_front(stream);
    e.lru = st.lru.begin();
  }
}

void spawn_aggregate(registry_actor* self, const std::string& stream) {
  auto& st = self->state;
  auto& e = st.entries.at(stream);
  if (e.failures > 0)
    st.log->info("restarting {} after {} failures in a row", stream, e.failures);
  try {
    e.actor = st.kinds.at(e.category).spawn(*self, e.id);
  } catch (const std::exception& ex) { // never user code: out of memory, say
    st.log->error("cannot spawn {}: {}", stream, ex.what());
    for (auto& [msg, promise] : e.buffer)
      refuse(self, msg, promise,
             {errc::internal, std::string{"cannot start the aggregate: "} + ex.what(), stream});
    e.buffer.clear();
    if (e.ph == phase::queued)
      enter(self, e, phase::idle);
    return;
  }
  e.user_failure.reset();
  self->monitor(e.actor);
  st.by_addr.emplace(e.actor.address(), stream);
  enter(self, e, phase::activating);
  ++st.activating;
  ++st.live;
  ++st.stats.activations;
  st.m->activations.add();
  st.m->live_aggregates.set(static_cast<std::int64_t>(st.live));
  touch(self, e, stream);
  // Mailbox order keeps the buffered commands ahead of anything routed later.
  for (auto& [msg, promise] : e.buffer)
    promise.delegate(e.actor, command_atom::value, std::move(msg));
  e.buffer.clear();
  // The LRU list holds the live aggregates that are not already stopping.
  while (st.lru.size() > st.opts.max_live && st.lru.size() > 1) {
    auto& victim = st.entries.at(st.lru.back());
    passivate(self, victim);
  }
}

void activate_or_queue(registry_actor* self, const std::string& stream) {
  auto& st = self->state;
  if (st.activating < st.opts.max_activations) {
    spawn_aggregate(self, stream);
  } else {
    if (std::find(st.waiting.begin(), st.waiting.end(), stream) == st.waiting.end())
      st.waiting.push_back(stream);
    if (auto& e = st.entries.at(stream); e.ph != phase::queued)
      enter(self, e, phase::queued);
  }
}

/// Restarts after the backoff of its failures in a row.
void back_off(registry_actor* self, entry& e, const std::string& stream) {
  enter(self, e, phase::backing_off);
  self->delayed_send(self, restart_backoff.after(e.failures), retry_atom::value, stream);
}

/// Fills free activation slots, the aggregates with the most waiting commands first.
void start_waiting(registry_actor* self) {
  auto& st = self->state;
  while (st.activating < st.opts.max_activations && !st.waiting.empty()) {
    auto best = std::max_element(st.waiting.begin(), st.waiting.end(),
                                 [&](const std::string& a, const std::string& b) {
                                   return st.entries.at(a).buffer.size()
                                          < st.entries.at(b).buffer.size();
                                 });
    auto stream = std::move(*best);
    st.waiting.erase(best);
    auto& e = st.entries.at(stream);
    if (e.ph == phase::queued && !e.buffer.empty())
      spawn_aggregate(self, stream);
  }
}

void route(registry_actor* self, command_msg& m, caf::response_promise promise) {
  auto& st = self->state;
  if (st.shutting_down) {
    refuse(self, m, promise, {errc::unavailable, "the runtime is shutting down"});
    return;
  }
  if (st.kinds.count(m.category) == 0) {
    refuse(self, m, promise,
           {errc::invalid_argument, "unknown aggregate type '" + m.category + "'"});
    return;
  }
  auto checked = aggregate_stream(m.category, m.id);
  if (!checked) {
    refuse(self, m, promise, checked.error());
    return;
  }
  auto& stream = *checked;
  if (st.opts.refuses)
    if (auto why = st.opts.refuses(stream); !why.empty()) {
      refuse(self, m, promise, {errc::unavailable, std::move(why), stream});
      return;
    }
  auto [it, fresh] = st.entries.try_emplace(stream);
  auto& e = it->second;
  if (fresh) {
    e.category = m.category;
    e.id = m.id;
  }
  if (takes_commands(e.ph)) {
    touch(self, e, stream);
    promise.delegate(e.actor, command_atom::value, std::move(m));
    return;
  }
  if (e.ph == phase::out_of_service) {
    auto left =
      std::chrono::duration_cast<std::chrono::milliseconds>(e.refuse_until - self->clock().now());
    if (left.count() > 0) {
      refuse(self, m, promise,
             {errc::internal,
              e.failure_reason + " (out of service for another " + std::to_string(left.count())
                + " ms)",
              stream});
      return;
    }
  }
  if (e.buffer.size() >= st.opts.max_waiting) {
    refuse(self, m, promise,
           {errc::overloaded,
            std::to_string(e.buffer.size()) + " commands already wait for this aggregate", stream});
    return;
  }
  e.buffer.emplace_back(std::move(m), std::move(promise));
  if (e.ph == phase::idle && e.failures > 0) // it keeps failing: give the store a moment
    back_off(self, e, stream);
  else if (e.ph == phase::idle || e.ph == phase::queued || e.ph == phase::out_of_service)
    activate_or_queue(self, stream); // out of service: the refusal window has passed
}

void on_down(registry_actor* self, const caf::down_msg& dm) {
  auto& st = self->state;
  auto addr = st.by_addr.find(dm.source);
  if (addr == st.by_addr.end())
    return;
  auto stream = std::move(addr->second);
  st.by_addr.erase(addr);
  auto& e = st.entries.at(stream);
  if (holds_slot(e.ph))
    --st.activating;
  --st.live;
  st.m->live_aggregates.set(static_cast<std::int64_t>(st.live));
  leave_lru(st, e);
  if (e.ph == phase::passivating && !dm.reason) {
    ++st.stats.passivations;
    st.m->passivations.add();
    st.log->debug("passivated {}", stream);
    e.failures = 0;
  } else if (e.ph != phase::failing) { // a failed activation was counted already
    ++e.failures;
    ++st.stats.failures;
    st.m->activation_failures.add();
    if (dm.reason)
      st.log->warn("{} stopped: {}; failure {} in a row, restarts on its next command", stream,
                   self->system().render(dm.reason), e.failures);
    else
      st.log->warn("{} stopped before it was passivated; failure {} in a row", stream, e.failures);
  }
  e.actor = nullptr;
  if (st.shutting_down) {
    for (auto& [msg, promise] : e.buffer)
      refuse(self, msg, promise, {errc::unavailable, "the runtime is shutting down", stream});
    st.entries.erase(stream);
  } else if (e.user_failure) {
    // Refused at once until the backoff passes, rather than failing the same
    // way again on every command.
    enter(self, e, phase::out_of_service);
    e.failure_reason = std::move(*e.user_failure);
    e.user_failure.reset();
    e.refuse_until = self->clock().now() + refusal_backoff.after(e.failures);
    for (auto& [msg, promise] : e.buffer)
      refuse(self, msg, promise, {errc::internal, e.failure_reason, stream});
    e.buffer.clear();
  } else if (!e.buffer.empty()) {
    if (e.failures > 0) {
      back_off(self, e, stream);
    } else {
      enter(self, e, phase::idle);
      activate_or_queue(self, stream);
    }
  } else if (e.failures == 0) {
    st.entries.erase(stream);
  } else {
    enter(self, e, phase::idle);
  }
  start_waiting(self);
  finish_shutdown_if_done(self);
}

caf::behavior registry(registry_actor* self, registry_options opts, metrics* stats) {
  self->state.opts = opts;
  self->state.m = stats;
  self->state.log = logger(registry_logger);
  self->set_down_handler([self](caf::down_msg& dm) { on_down(self, dm); });
  auto sweep_period = std::clamp<std::chrono::milliseconds>(opts.idle_timeout / 2,
                                                            std::chrono::milliseconds{1},
                                                            std::chrono::milliseconds{1000});
  self->delayed_send(self, sweep_period, sweep_atom::value);
  return {
    [self](kind_atom, aggregate_kind& k) {
      auto category = k.category;
      self->state.kinds.insert_or_assign(std::move(category), std::move(k));
    },
    [self](command_atom, command_msg& m) -> caf::result<reply_msg> {
      auto promise = self->make_response_promise();
      route(self, m, promise);
      return promise;
    },
    [self](activated_atom, const std::string& stream, bool ok) {
      auto& st = self->state;
      auto it = st.entries.find(stream);
      if (it == st.entries.end() || !holds_slot(it->second.ph))
        return;
      auto& e = it->second;
      --st.activating;
      if (ok) {
        enter(self, e, e.ph == phase::activating ? phase::live : phase::passivating);
      } else {
        // It answers what reached it with the failure, then stops; the next
        // command retries after a backoff.
        bool told = e.ph == phase::cancelled; // told to stop already
        enter(self, e, phase::failing);
        ++e.failures;
        ++st.stats.failures;
        st.m->activation_failures.add();
        // The aggregate logged why; the restart is logged when it happens.
        st.log->debug("activation of {} failed ({} in a row)", stream, e.failures);
        if (!told) {
          leave_lru(st, e);
          self->send(e.actor, stop_atom::value);
        }
      }
      start_waiting(self);
    },
    [self, sweep_period](sweep_atom) {
      auto& st = self->state;
      auto cutoff = self->clock().now() - st.opts.idle_timeout;
      while (!st.lru.empty()) {
        auto& e = st.entries.at(st.lru.back());
        if (e.last_used > cutoff || e.ph != phase::live)
          break;
        passivate(self, e);
      }
      if (!st.shutting_down)
        self->delayed_send(self, sweep_period, sweep_atom::value);
    },
    [self](retry_atom, const std::string& stream) {
      auto& st = self->state;
      auto it = st.entries.find(stream);
      if (it == st.entries.end() || it->second.ph != phase::backing_off)
        return;
      if (it->second.buffer.empty()) {
        st.entries.erase(it);
        return;
      }
      enter(self, it->second, phase::idle);
      activate_or_queue(self, stream);
    },
    [self](failed_atom, const std::string& stream, const std::string& why) {
      auto it = self->state.entries.find(stream);
      if (it == self->state.entries.end() || !has_actor(it->second.ph))
        return;
      it->second.user_failure = why;
    },
    [self](passivate_atom, const std::vector<std::string>& streams) {
      auto& st = self->state;
      for (const auto& stream : streams)
        if (auto it = st.entries.find(stream);
            it != st.entries.end() && it->second.ph == phase::live)
          passivate(self, it->second);
      return true;
    },
    [self](live_atom) { // the aggregates not stopped yet, for shutdown's log
      std::vector<std::string> out;
      for (const auto& [stream, e] : self->state.entries)
        if (has_actor(e.ph))
          out.push_back(stream);
      return out;
    },
    [self](touch_atom) { // a live aggregate reached without us is in use
      auto& st = self->state;
      auto it = st.by_addr.find(caf::actor_cast<caf::actor_addr>(self->current_sender()));
      if (it == st.by_addr.end())
        return;
      auto& e = st.entries.at(it->second);
      if (takes_commands(e.ph))
        touch(self, e, it->second);
    },
    [self](stats_atom) {
      auto s = self->state.stats;
      s.live = self->state.live;
      return s;
    },
    [self](shutdown_atom) -> caf::result<bool> {
      auto& st = self->state;
      st.shutting_down = true;
      st.shutdown_done = self->make_response_promise();
      st.log->debug("shutting down: passivating {} live aggregates", st.live);
      for (auto& [stream, e] : st.entries) {
        if (takes_commands(e.ph))
          passivate(self, e);
        for (auto& [msg, promise] : e.buffer)
          refuse(self, msg, promise, {errc::unavailable, "the runtime is shutting down", stream});
        e.buffer.clear();
        if (e.ph == phase::queued)
          enter(self, e, phase::idle);
      }
      auto promise = st.shutdown_done;
      finish_shutdown_if_done(self);
      return promise;
    },
  };
}

} // namespace

caf::actor spawn_registry(caf::actor_system& sys, registry_options opts, metrics& m) {
  return sys.spawn(registry, opts, &m);
}

} // namespace cairn::actors
