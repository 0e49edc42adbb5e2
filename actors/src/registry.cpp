#include "cairn/actors/registry.hpp"

#include <algorithm>
#include <deque>
#include <list>
#include <unordered_map>
#include <utility>

#include <caf/all.hpp>

#include "cairn/actors/log.hpp"
#include "cairn/actors/messages.hpp"
#include "cairn/model/backoff.hpp"
#include "cairn/model/stream_name.hpp"

namespace cairn::actors {

namespace {

using clock = std::chrono::steady_clock;

struct entry {
  enum class phase : std::uint8_t { dormant, live, passivating };
  std::string category;
  std::string id;
  caf::actor actor;
  phase ph = phase::dormant;
  bool activated = false;
  bool in_lru = false;
  bool retry_scheduled = false;
  bool activation_failed = false; ///< This incarnation could not recover its state.
  /// User code of this aggregate threw (failed_atom): its commands are
  /// refused with `internal` until `refuse_until`, then it is tried again.
  bool user_failure = false;
  std::string failure_reason;
  clock::time_point refuse_until{};
  std::list<std::string>::iterator lru;
  clock::time_point last_used;
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
constexpr cairn::backoff out_of_service{std::chrono::milliseconds{1000},
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

void passivate(registry_actor* self, entry& e) {
  auto& st = self->state;
  if (e.in_lru) {
    st.lru.erase(e.lru);
    e.in_lru = false;
  }
  e.ph = entry::phase::passivating;
  self->send(e.actor, stop_atom::value);
}

void touch(registry_actor* self, entry& e, const std::string& stream) {
  auto& st = self->state;
  e.last_used = clock::now();
  if (e.in_lru)
    st.lru.splice(st.lru.begin(), st.lru, e.lru);
  else {
    st.lru.push_front(stream);
    e.lru = st.lru.begin();
    e.in_lru = true;
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
    return;
  }
  e.user_failure = false;
  self->monitor(e.actor);
  st.by_addr.emplace(e.actor.address(), stream);
  e.ph = entry::phase::live;
  e.activated = false;
  e.activation_failed = false;
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
  } else if (std::find(st.waiting.begin(), st.waiting.end(), stream) == st.waiting.end()) {
    st.waiting.push_back(stream);
  }
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
    if (e.ph == entry::phase::dormant && !e.buffer.empty())
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
  auto [it, fresh] = st.entries.try_emplace(stream);
  auto& e = it->second;
  if (fresh) {
    e.category = m.category;
    e.id = m.id;
  }
  if (e.ph == entry::phase::live) {
    touch(self, e, stream);
    promise.delegate(e.actor, command_atom::value, std::move(m));
    return;
  }
  if (e.ph == entry::phase::dormant && e.user_failure) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(e.refuse_until
                                                                      - clock::now());
    if (left.count() > 0) {
      refuse(self, m, promise,
             {errc::internal,
              e.failure_reason + " (out of service for another "
                + std::to_string(left.count()) + " ms)",
              stream});
      return;
    }
  }
  if (e.buffer.size() >= st.opts.max_waiting) {
    refuse(self, m, promise,
           {errc::overloaded,
            std::to_string(e.buffer.size()) + " commands already wait for this aggregate",
            stream});
    return;
  }
  e.buffer.emplace_back(std::move(m), std::move(promise));
  if (e.ph != entry::phase::dormant || e.retry_scheduled)
    return;
  if (e.failures > 0 && !e.user_failure) { // it keeps failing: give the store a moment
    e.retry_scheduled = true;
    self->delayed_send(self, restart_backoff.after(e.failures), retry_atom::value, stream);
  } else {
    activate_or_queue(self, stream);
  }
}

void on_down(registry_actor* self, const caf::down_msg& dm) {
  auto& st = self->state;
  auto addr = st.by_addr.find(dm.source);
  if (addr == st.by_addr.end())
    return;
  auto stream = std::move(addr->second);
  st.by_addr.erase(addr);
  auto& e = st.entries.at(stream);
  if (!e.activated)
    --st.activating;
  --st.live;
  st.m->live_aggregates.set(static_cast<std::int64_t>(st.live));
  if (e.in_lru) {
    st.lru.erase(e.lru);
    e.in_lru = false;
  }
  bool clean = e.ph == entry::phase::passivating && !dm.reason && e.activated
               && !e.activation_failed;
  if (clean) {
    ++st.stats.passivations;
    st.m->passivations.add();
    st.log->debug("passivated {}", stream);
    e.failures = 0;
  } else if (!e.activation_failed) { // a failed activation was counted already
    ++e.failures;
    ++st.stats.failures;
    st.m->activation_failures.add();
    if (dm.reason)
      st.log->warn("{} stopped: {}; failure {} in a row, restarts on its next command", stream,
                   self->system().render(dm.reason), e.failures);
    else
      st.log->warn("{} stopped before it was passivated; failure {} in a row", stream,
                   e.failures);
  }
  e.actor = nullptr;
  e.ph = entry::phase::dormant;
  if (st.shutting_down) {
    for (auto& [msg, promise] : e.buffer)
      refuse(self, msg, promise, {errc::unavailable, "the runtime is shutting down", stream});
    st.entries.erase(stream);
  } else if (e.user_failure) {
    // Refused at once until the backoff passes, rather than failing the same
    // way again on every command.
    e.refuse_until = clock::now() + out_of_service.after(e.failures);
    for (auto& [msg, promise] : e.buffer)
      refuse(self, msg, promise, {errc::internal, e.failure_reason, stream});
    e.buffer.clear();
  } else if (!e.buffer.empty()) {
    if (e.failures > 0) {
      e.retry_scheduled = true;
      self->delayed_send(self, restart_backoff.after(e.failures), retry_atom::value, stream);
    } else {
      activate_or_queue(self, stream);
    }
  } else if (e.failures == 0) {
    st.entries.erase(stream);
  }
  start_waiting(self);
  finish_shutdown_if_done(self);
}

caf::behavior registry(registry_actor* self, registry_options opts, metrics* stats) {
  self->state.opts = opts;
  self->state.m = stats;
  self->state.log = logger(registry_logger);
  self->set_down_handler([self](caf::down_msg& dm) { on_down(self, dm); });
  auto sweep_period = std::clamp<std::chrono::milliseconds>(
    opts.idle_timeout / 2, std::chrono::milliseconds{1}, std::chrono::milliseconds{1000});
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
      if (it == st.entries.end() || it->second.activated)
        return;
      it->second.activated = true;
      --st.activating;
      if (!ok) {
        // It answers what reached it with the failure, then stops; the next
        // command retries after a backoff.
        it->second.activation_failed = true;
        ++it->second.failures;
        ++st.stats.failures;
        st.m->activation_failures.add();
        // The aggregate logged why; the restart is logged when it happens.
        st.log->debug("activation of {} failed ({} in a row)", stream, it->second.failures);
        if (it->second.ph == entry::phase::live)
          passivate(self, it->second);
      }
      start_waiting(self);
    },
    [self, sweep_period](sweep_atom) {
      auto& st = self->state;
      auto cutoff = clock::now() - st.opts.idle_timeout;
      while (!st.lru.empty()) {
        auto& e = st.entries.at(st.lru.back());
        if (e.last_used > cutoff || !e.activated)
          break;
        passivate(self, e);
      }
      if (!st.shutting_down)
        self->delayed_send(self, sweep_period, sweep_atom::value);
    },
    [self](retry_atom, const std::string& stream) {
      auto& st = self->state;
      auto it = st.entries.find(stream);
      if (it == st.entries.end())
        return;
      it->second.retry_scheduled = false;
      if (it->second.ph != entry::phase::dormant)
        return;
      if (it->second.buffer.empty()) {
        st.entries.erase(it);
        return;
      }
      activate_or_queue(self, stream);
    },
    [self](failed_atom, const std::string& stream, const std::string& why) {
      auto it = self->state.entries.find(stream);
      if (it == self->state.entries.end())
        return;
      it->second.user_failure = true;
      it->second.failure_reason = why;
    },
    [self](live_atom) { // the aggregates not stopped yet, for shutdown's log
      std::vector<std::string> out;
      for (const auto& [stream, e] : self->state.entries)
        if (e.ph != entry::phase::dormant)
          out.push_back(stream);
      return out;
    },
    [self](touch_atom) { // a live aggregate reached without us is in use
      auto& st = self->state;
      auto it = st.by_addr.find(caf::actor_cast<caf::actor_addr>(self->current_sender()));
      if (it == st.by_addr.end())
        return;
      auto& e = st.entries.at(it->second);
      if (e.ph == entry::phase::live)
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
        if (e.ph == entry::phase::live)
          passivate(self, e);
        for (auto& [msg, promise] : e.buffer)
          refuse(self, msg, promise, {errc::unavailable, "the runtime is shutting down", stream});
        e.buffer.clear();
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
