#include "cairn/actors/journal.hpp"

#include <algorithm>
#include <chrono>
#include <iterator>
#include <utility>
#include <vector>

#include <caf/all.hpp>

#include "cairn/actors/log.hpp"
#include "cairn/actors/messages.hpp"

namespace cairn::actors {

namespace {

/// A watcher of the committed position and what it was last told.
struct watcher {
  caf::actor actor;
  std::uint64_t told = 0;
  bool wants = false; ///< Asked for the next position: send it on the next commit.
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
  std::uint64_t batches = 0;
  std::uint64_t appends = 0;
  std::uint64_t committed = 0; ///< Last position of the global log.
  std::vector<watcher> watchers;
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

void tell(journal_actor* self, watcher& w) {
  w.told = self->state.committed;
  w.wants = false;
  self->send(w.actor, committed_atom::value, w.told);
}

bool has_side_writes(const persistence::write_batch& b) {
  return !b.snapshots.empty() || !b.kv.empty() || !b.checkpoints.empty()
         || !b.dead_letters.empty() || !b.dead_letter_removals.empty();
}

void record(journal_state& st, std::chrono::steady_clock::time_point started,
            const result<std::vector<result<persistence::append_result>>>& results,
            std::size_t snapshots) {
  auto& m = *st.stats;
  m.commit_us.observe(static_cast<std::uint64_t>(
    std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now()
                                                          - started)
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
  m.snapshots_written.add(snapshots);
}

void flush(journal_actor* self) {
  auto& st = self->state;
  st.flush_queued = false;
  if (st.batch.appends.empty() && !has_side_writes(st.batch))
    return;
  auto started = std::chrono::steady_clock::now();
  auto snapshots = st.batch.snapshots.size();
  auto results = st.store->append_batch(st.batch);
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
    results = st.batch.appends.empty()
                ? result<std::vector<result<persistence::append_result>>>{}
                : st.store->append_batch(st.batch);
    if (!results) {
      st.stats->commit_failures.add();
      st.log->error("commit of {} appends alone failed too: {}", st.batch.appends.size(),
                    results.error().to_string());
    }
  } else if (!results) {
    side_written = tl::unexpected(results.error());
  }
  record(st, started, results, snapshots);
  for (auto& w : st.writers)
    w.deliver(journal_written{side_written});
  std::size_t next = 0;
  for (auto& w : st.waiting) {
    journal_result r;
    r.values.reserve(w.count);
    for (std::size_t i = 0; i < w.count; ++i, ++next)
      r.values.push_back(results ? std::move((*results)[next])
                                 : result<persistence::append_result>{
                                   tl::unexpected(results.error())});
    w.promise.deliver(std::move(r));
  }
  ++st.batches;
  st.appends += st.batch.appends.size();
  if (results) {
    auto before = st.committed;
    for (const auto& r : *results)
      if (r && !r->duplicate && r->last_position > st.committed)
        st.committed = r->last_position;
    if (st.committed != before)
      for (auto& w : st.watchers)
        if (w.wants)
          tell(self, w);
  }
  st.batch.appends.clear(); // clear, not reassign: the capacity is reused
  st.batch.snapshots.clear();
  st.batch.kv.clear();
  st.batch.checkpoints.clear();
  st.batch.dead_letters.clear();
  st.batch.dead_letter_removals.clear();
  st.waiting.clear();
  st.writers.clear();
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
      std::move(src.kv.begin(), src.kv.end(), std::back_inserter(b.kv));
      std::move(src.dead_letters.begin(), src.dead_letters.end(),
                std::back_inserter(b.dead_letters));
      std::move(src.dead_letter_removals.begin(), src.dead_letter_removals.end(),
                std::back_inserter(b.dead_letter_removals));
      std::move(src.checkpoints.begin(), src.checkpoints.end(), std::back_inserter(b.checkpoints));
      self->state.writers.push_back(self->make_response_promise());
      queue_flush(self);
      return self->state.writers.back();
    },
    [=](flush_atom) { flush(self); },
    [=](subscribe_atom, caf::actor& who) {
      auto& ws = self->state.watchers;
      auto it = std::find_if(ws.begin(), ws.end(), [&](const watcher& w) { return w.actor == who; });
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
    [=](stats_atom) {
      return caf::make_message(self->state.batches, self->state.appends);
    },
    [=](shutdown_atom) {
      flush(self);
      self->quit();
      return true;
    },
  };
}

} // namespace

caf::actor spawn_journal(caf::actor_system& sys, persistence::event_store& store,
                         metrics& m) {
  return sys.spawn<caf::detached>(journal, &store, &m);
}

} // namespace cairn::actors
