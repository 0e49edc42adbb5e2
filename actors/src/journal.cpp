#include "cairn/actors/journal.hpp"

#include <algorithm>
#include <chrono>
#include <deque>
#include <iterator>
#include <utility>
#include <vector>

#include <caf/all.hpp>

#include "cairn/actors/log.hpp"
#include "cairn/actors/messages.hpp"
#include "cairn/actors/replication.hpp"

namespace cairn::actors {

namespace {

/// A watcher of the committed position and what it was last told.
struct watcher {
  caf::actor actor;
  std::uint64_t told = 0;
  bool wants = false; ///< Asked for the next position: send it once a commit is durable.
};

/// A committed batch's replies, held until the store says its commit is durable.
struct unsynced_batch {
  std::uint64_t commit = 0; ///< The store's number of the commit.
  std::vector<std::pair<caf::response_promise, journal_result>> appenders;
  std::vector<caf::response_promise> writers; ///< Their writes succeeded.
  std::uint64_t last_position = 0;            ///< The log's end after the commit.
};

/// Durable commits' replies that wait for the standby (sync replication).
struct awaiting_standby {
  std::uint64_t position = 0; ///< The log's end after the commit.
  caf::actor_clock::time_point deadline;
  std::vector<std::pair<caf::response_promise, journal_result>> appenders;
};

struct journal_state {
  persistence::event_store* store = nullptr;
  metrics* stats = nullptr;
  std::shared_ptr<spdlog::logger> log;
  /// A journal_append in the batch: its requests are `count` entries of
  /// batch.appends, following those of the sender before it.
  struct sender {
    caf::response_promise promise;
    std::size_t count = 0;
  };
  persistence::write_batch batch;
  std::vector<sender> waiting;
  std::vector<caf::response_promise> writers; // one per journal_write in the batch
  bool flush_queued = false;
  std::deque<unsynced_batch> unsynced; ///< Oldest first.
  bool sync_queued = false;
  std::uint64_t batches = 0;
  std::uint64_t appends = 0;
  std::uint64_t committed = 0; ///< Last durable position of the global log.
  std::vector<watcher> watchers;
  // Sync replication (docs/cluster.md#replication-modes): replies wait until
  // the standby has acknowledged their commit, at most sync_timeout.
  bool sync_replication = false;
  caf::timespan sync_timeout{};
  std::string standby;
  std::uint64_t replicated = 0;          ///< The standby acknowledged the log up to here.
  std::deque<awaiting_standby> awaiting; ///< Oldest first.
  bool expiry_queued = false;
  /// Non-empty while this node serves no shards of its pair (a standby, or
  /// an owner that stepped down): appends are refused with it, and a commit
  /// that was under way is not acknowledged (it is cut when the node rejoins).
  std::string fenced;
  static inline const char* name = "cairn.journal";
};

using journal_actor = caf::stateful_actor<journal_state>;

// Appends queue up; a flush message sent to ourselves lands behind everything
// already in the mailbox, so when it arrives the batch holds all of it.
void queue_flush(journal_actor* self) {
  if (!self->state.flush_queued) {
    self->state.flush_queued = true;
    self->send(self, flush_atom::value);
  }
}

// Once every message already queued has been handled, something must make
// the unsynced commits durable: the commit of whatever those messages brought,
// or a flush of its own.
void queue_sync(journal_actor* self) {
  if (!self->state.sync_queued) {
    self->state.sync_queued = true;
    self->send(self, sync_atom::value);
  }
}

void tell(journal_actor* self, watcher& w) {
  w.told = self->state.committed;
  w.wants = false;
  self->send(w.actor, committed_atom::value, w.told);
}

bool has_side_writes(const persistence::write_batch& b) {
  return !b.snapshots.empty() || !b.kv.empty() || !b.checkpoints.empty() || !b.dead_letters.empty()
         || !b.dead_letter_removals.empty() || !b.forget.empty();
}

void record(journal_state& st, std::chrono::steady_clock::time_point started,
            const result<std::vector<result<persistence::append_result>>>& results,
            std::size_t snapshots) {
  auto& m = *st.stats;
  m.commit_us.observe(
    static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::microseconds>(
                                 std::chrono::steady_clock::now() - started)
                                 .count()));
  if (!st.batch.appends.empty())
    m.batch_appends.observe(st.batch.appends.size());
  if (!results)
    return;
  std::uint64_t events = 0;
  for (const auto& r : *results)
    if (r && !r->duplicate && r->first_position != 0)
      events += r->last_position - r->first_position + 1;
  m.events_appended.add(events);
  m.store_stale_readers_cleared.set(static_cast<std::int64_t>(st.store->stale_readers_cleared()));
  m.snapshots_written.add(snapshots);
}

/// After a failure: whether the store now refuses every write.
void note_store_state(journal_state& st) {
  if (st.store->refuses_writes()) {
    if (st.stats->store_refusing_writes.value() == 0)
      st.log->error("the store refuses every write until it is reopened: restart the runtime");
    st.stats->store_refusing_writes.set(1);
  }
}

void answer(std::vector<std::pair<caf::response_promise, journal_result>>& appenders) {
  for (auto& [promise, r] : appenders)
    promise.deliver(std::move(r));
}

/// Answers the replies the standby's acknowledgement now covers.
void release_replicated(journal_state& st) {
  while (!st.awaiting.empty() && st.awaiting.front().position <= st.replicated) {
    answer(st.awaiting.front().appenders);
    st.awaiting.pop_front();
  }
}

/// Checks the oldest reply that waits for the standby once its deadline passed.
void queue_expiry(journal_actor* self) {
  auto& st = self->state;
  if (st.expiry_queued || st.awaiting.empty())
    return;
  st.expiry_queued = true;
  auto wait = st.awaiting.front().deadline - self->clock().now();
  self->delayed_send(self, std::max(wait, caf::timespan{0}), tick_atom::value);
}

/// Fails the replies the standby did not acknowledge in time: their commits
/// are durable here, so a retry with the command id is answered as a duplicate.
void expire_awaiting(journal_actor* self) {
  auto& st = self->state;
  st.expiry_queued = false;
  auto now = self->clock().now();
  while (!st.awaiting.empty() && st.awaiting.front().deadline <= now) {
    auto& a = st.awaiting.front();
    cairn::error why{
      errc::unavailable,
      "standby " + st.standby + " has not acknowledged position " + std::to_string(a.position)
        + " within "
        + std::to_string(
          std::chrono::duration_cast<std::chrono::milliseconds>(st.sync_timeout).count())
        + " ms (sync replication); the commit is durable on this node: retry "
          "with the same command id",
      ""};
    for (auto& [promise, r] : a.appenders) {
      for (auto& v : r.values)
        if (v)
          v = tl::unexpected(why);
      promise.deliver(std::move(r));
    }
    st.stats->replication_sync_timeouts.add();
    st.awaiting.pop_front();
  }
  queue_expiry(self);
}

/// Answers every held batch whose commit is now durable (in sync
/// replication, once the standby acknowledged it too), and tells the
/// watchers how far the log is durable.
void release(journal_actor* self, std::uint64_t durable) {
  auto& st = self->state;
  // The watchers hear first. An answer travels on (to a caller, to another
  // node, to an operator who then asks a watcher for its status) while this
  // thread may be preempted before its next send: told after the answers, a
  // watcher could report a log end behind what a caller was already told.
  auto before = st.committed;
  for (const auto& u : st.unsynced) {
    if (u.commit > durable)
      break;
    st.committed = std::max(st.committed, u.last_position);
  }
  if (st.committed != before)
    for (auto& w : st.watchers)
      if (w.wants)
        tell(self, w);
  auto position = before;
  while (!st.unsynced.empty() && st.unsynced.front().commit <= durable) {
    auto& u = st.unsynced.front();
    for (auto& w : u.writers)
      w.deliver(journal_written{});
    position = std::max(position, u.last_position);
    if (!st.fenced.empty())
      for (auto& [promise, r] : u.appenders)
        for (auto& v : r.values)
          if (v)
            v = fail(errc::unavailable, st.fenced);
    if (st.sync_replication && !u.appenders.empty()
        && (position > st.replicated || !st.awaiting.empty())) {
      st.awaiting.push_back(
        {position, self->clock().now() + st.sync_timeout, std::move(u.appenders)});
    } else {
      answer(u.appenders);
    }
    st.unsynced.pop_front();
  }
  queue_expiry(self);
}

/// Flushes the held batches' commits and answers them: with their results,
/// or, when the flush fails, with its error (their outcome is then unknown).
void settle(journal_actor* self) {
  auto& st = self->state;
  if (st.unsynced.empty())
    return;
  auto marks = st.store->commits();
  if (marks.durable != marks.last)
    st.stats->journal_syncs.add();
  auto ok = st.store->sync();
  if (ok) {
    release(self, st.store->commits().durable);
    return;
  }
  st.log->error("flushing {} commits to disk failed: {}", st.unsynced.size(),
                ok.error().to_string());
  note_store_state(st);
  for (auto& u : st.unsynced) {
    for (auto& w : u.writers)
      w.deliver(journal_written{tl::unexpected(ok.error())});
    for (auto& [promise, r] : u.appenders) {
      for (auto& v : r.values)
        if (v)
          v = tl::unexpected(ok.error());
      promise.deliver(std::move(r));
    }
  }
  st.unsynced.clear();
}

void flush(journal_actor* self) {
  auto& st = self->state;
  st.flush_queued = false;
  if (st.batch.appends.empty() && !has_side_writes(st.batch))
    return;
  auto started = std::chrono::steady_clock::now();
  auto snapshots = st.batch.snapshots.size();
  auto results = st.store->append_batch_deferred(st.batch);
  result<void> side_written;
  if (!results) {
    st.stats->commit_failures.add();
    st.log->error("commit of {} appends, {} snapshots and {} subscriber writes failed: {}",
                  st.batch.appends.size(), snapshots, st.writers.size(),
                  results.error().to_string());
  }
  if (!results && has_side_writes(st.batch)) {
    // A subscriber's write or a snapshot that fails must not fail the
    // commands: retry the appends alone; the writers get the error.
    side_written = tl::unexpected(results.error());
    snapshots = 0;
    st.batch.snapshots.clear();
    st.batch.kv.clear();
    st.batch.checkpoints.clear();
    st.batch.dead_letters.clear();
    st.batch.dead_letter_removals.clear();
    st.batch.forget.clear();
    results = st.batch.appends.empty() ? result<std::vector<result<persistence::append_result>>>{}
                                       : st.store->append_batch_deferred(st.batch);
    if (!results) {
      st.stats->commit_failures.add();
      st.log->error("commit of {} appends alone failed too: {}", st.batch.appends.size(),
                    results.error().to_string());
    }
  } else if (!results) {
    side_written = tl::unexpected(results.error());
  }
  record(st, started, results, snapshots);
  if (!results)
    note_store_state(st);
  // Some of this batch failed: answer the held batches first, so that each
  // sender hears about its requests in the order it sent them.
  if (!results || !side_written)
    settle(self);
  unsynced_batch held;
  held.commit = st.store->commits().last;
  for (auto& w : st.writers)
    if (side_written)
      held.writers.push_back(std::move(w));
    else
      w.deliver(journal_written{side_written});
  std::size_t next = 0;
  for (auto& w : st.waiting) {
    journal_result r;
    r.values.reserve(w.count);
    for (std::size_t i = 0; i < w.count; ++i, ++next)
      r.values.push_back(results
                           ? std::move((*results)[next])
                           : result<persistence::append_result>{tl::unexpected(results.error())});
    if (results)
      held.appenders.emplace_back(std::move(w.promise), std::move(r));
    else
      w.promise.deliver(std::move(r));
  }
  if (results)
    for (const auto& r : *results)
      if (r && !r->duplicate && r->last_position > held.last_position)
        held.last_position = r->last_position;
  if (results && side_written && !st.batch.forget.empty()) // forget records follow the appends
    if (auto last = st.store->last_position(); last && *last > held.last_position)
      held.last_position = *last;
  ++st.batches;
  st.appends += st.batch.appends.size();
  st.batch.appends.clear(); // clear, not reassign: the capacity is reused
  st.batch.snapshots.clear();
  st.batch.kv.clear();
  st.batch.checkpoints.clear();
  st.batch.dead_letters.clear();
  st.batch.dead_letter_removals.clear();
  st.batch.forget.clear();
  st.waiting.clear();
  st.writers.clear();
  if (results)
    st.unsynced.push_back(std::move(held));
  release(self, st.store->commits().durable);
  if (!st.unsynced.empty())
    queue_sync(self);
}

caf::behavior journal(journal_actor* self, persistence::event_store* store, metrics* m) {
  self->state.store = store;
  self->state.stats = m;
  self->state.log = logger(journal_logger);
  if (auto last = store->last_position())
    self->state.committed = *last;
  self->set_down_handler([=](caf::down_msg& dm) {
    auto& ws = self->state.watchers;
    ws.erase(std::remove_if(ws.begin(), ws.end(),
                            [&](const watcher& w) { return w.actor.address() == dm.source; }),
             ws.end());
  });
  return {
    [=](append_atom, journal_append& a) -> caf::result<journal_result> {
      if (!self->state.fenced.empty()) {
        journal_result refused;
        for (std::size_t i = 0; i < a.requests.size(); ++i)
          refused.values.push_back(fail(errc::unavailable, self->state.fenced));
        return refused;
      }
      auto count = a.requests.size();
      auto& appends = self->state.batch.appends;
      std::move(a.requests.begin(), a.requests.end(), std::back_inserter(appends));
      self->state.waiting.push_back({self->make_response_promise(), count});
      queue_flush(self);
      return self->state.waiting.back().promise;
    },
    [=](snapshot_atom, journal_snapshot& s) {
      self->state.batch.snapshots.push_back(std::move(s.value));
      queue_flush(self);
    },
    [=](write_atom, journal_write& w) -> caf::result<journal_written> {
      auto& b = self->state.batch;
      auto& src = w.value;
      // A forget writes a record to the log: on a standby that would be a
      // record its owner never wrote, and the owner's forget reaches the
      // replica through the log anyway.
      if (!self->state.fenced.empty() && !src.forget.empty())
        return journal_written{fail(errc::unavailable, "forget on the owner: " + self->state.fenced,
                                    src.forget.front())};
      std::move(src.kv.begin(), src.kv.end(), std::back_inserter(b.kv));
      std::move(src.dead_letters.begin(), src.dead_letters.end(),
                std::back_inserter(b.dead_letters));
      std::move(src.dead_letter_removals.begin(), src.dead_letter_removals.end(),
                std::back_inserter(b.dead_letter_removals));
      std::move(src.checkpoints.begin(), src.checkpoints.end(), std::back_inserter(b.checkpoints));
      std::move(src.forget.begin(), src.forget.end(), std::back_inserter(b.forget));
      self->state.writers.push_back(self->make_response_promise());
      queue_flush(self);
      return self->state.writers.back();
    },
    [=](flush_atom) { flush(self); },
    [=](sync_atom) {
      self->state.sync_queued = false;
      if (self->state.unsynced.empty())
        return;
      // A flush is queued for what came in meanwhile: its commit carries the
      // held meta page to disk.
      if (self->state.flush_queued)
        return;
      settle(self);
    },
    [=](subscribe_atom, caf::actor& who) {
      auto& ws = self->state.watchers;
      auto it = std::find_if(ws.begin(), ws.end(),
                             [&](const watcher& w) { return w.actor == who; });
      if (it == ws.end()) {
        self->monitor(who);
        ws.push_back(watcher{std::move(who), 0, false});
        it = std::prev(ws.end());
      }
      tell(self, *it);
    },
    [=](demand_atom, caf::actor& who) {
      for (auto& w : self->state.watchers)
        if (w.actor == who) {
          if (self->state.committed > w.told)
            tell(self, w);
          else
            w.wants = true;
        }
    },
    [=](stats_atom) { return caf::make_message(self->state.batches, self->state.appends); },
    [=](replication_atom, bool sync, caf::timespan timeout, std::string& standby) {
      auto& st = self->state;
      st.sync_replication = sync;
      st.sync_timeout = timeout;
      if (standby != st.standby) // another standby: only its own acknowledgements count
        st.replicated = 0;
      st.standby = std::move(standby);
      if (!sync) { // what waited is durable here: async acknowledges it
        for (auto& a : st.awaiting)
          answer(a.appenders);
        st.awaiting.clear();
      }
    },
    [=](replicated_atom, std::uint64_t position) {
      auto& st = self->state;
      st.replicated = std::max(st.replicated, position);
      release_replicated(st);
    },
    [=](tick_atom) { expire_awaiting(self); },
    // A standby's writes: frames of its owner's log, and the cut of a
    // divergent tail. Whatever is queued is committed first.
    [=](replicate_atom, persistence::log_frame& frame) -> journal_applied {
      flush(self);
      settle(self);
      auto& st = self->state;
      auto last = st.store->apply_frame(frame);
      if (!last) {
        note_store_state(st);
        return {tl::unexpected(last.error())};
      }
      if (auto ok = st.store->sync(); !ok) {
        note_store_state(st);
        return {tl::unexpected(ok.error())};
      }
      if (*last > st.committed) {
        st.committed = *last;
        for (auto& w : st.watchers)
          if (w.wants)
            tell(self, w);
      }
      return {*last};
    },
    [=](epoch_atom, std::uint64_t epoch, std::string& node) -> journal_epoch {
      flush(self);
      settle(self);
      auto& st = self->state;
      auto began = st.store->begin_epoch(epoch, node);
      if (!began) {
        note_store_state(st);
        return {tl::unexpected(began.error())};
      }
      if (auto ok = st.store->sync(); !ok) {
        note_store_state(st);
        return {tl::unexpected(ok.error())};
      }
      if (began->position > st.committed) {
        st.committed = began->position;
        for (auto& w : st.watchers)
          if (w.wants)
            tell(self, w);
      }
      return {std::move(*began)};
    },
    [=](fenced_atom, std::string& why) {
      auto& st = self->state;
      st.fenced = why;
      if (why.empty()) // serving again
        return;
      for (auto& a : st.awaiting)
        for (auto& [promise, r] : a.appenders) {
          for (auto& v : r.values)
            if (v)
              v = fail(errc::unavailable, why);
          promise.deliver(std::move(r));
        }
      st.awaiting.clear();
    },
    [=](truncate_atom, std::uint64_t position, std::string& file) -> journal_truncated {
      flush(self);
      settle(self);
      auto& st = self->state;
      auto cut = st.store->truncate_after(position, file);
      if (!cut) {
        note_store_state(st);
        return {tl::unexpected(cut.error())};
      }
      st.committed = std::min(st.committed, position);
      st.replicated = std::min(st.replicated, position);
      for (auto& w : st.watchers) // a watcher past the cut starts again from it
        w.told = std::min(w.told, position);
      return {std::move(*cut)};
    },
    [=](shutdown_atom) {
      flush(self);
      settle(self);
      for (auto& a : self->state.awaiting) // durable here; the standby may never answer
        for (auto& [promise, r] : a.appenders) {
          for (auto& v : r.values)
            if (v)
              v = fail(errc::unavailable, "the node stopped before its standby acknowledged "
                                          "the commit; retry with the same command id");
          promise.deliver(std::move(r));
        }
      self->state.awaiting.clear();
      self->quit();
      return true;
    },
  };
}

} // namespace

caf::actor spawn_journal(caf::actor_system& sys, persistence::event_store& store, metrics& m,
                         placement where) {
  if (where == placement::scheduled)
    return sys.spawn(journal, &store, &m);
  return sys.spawn<caf::detached>(journal, &store, &m);
}

} // namespace cairn::actors
