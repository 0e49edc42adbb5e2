#include "cairn/actors/journal.hpp"

#include <algorithm>
#include <utility>
#include <vector>

#include <caf/all.hpp>

#include "cairn/actors/messages.hpp"

namespace cairn::actors {

namespace {

struct journal_state {
  persistence::event_store* store = nullptr;
  persistence::write_batch batch;
  std::vector<caf::response_promise> waiting; // one per entry of batch.appends
  bool flush_queued = false;
  std::uint64_t batches = 0;
  std::uint64_t appends = 0;
  std::uint64_t committed = 0; ///< Last position of the global log.
  std::vector<caf::actor> watchers;
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

void flush(journal_actor* self) {
  auto& st = self->state;
  st.flush_queued = false;
  if (st.batch.appends.empty() && st.batch.snapshots.empty())
    return;
  auto results = st.store->append_batch(st.batch);
  if (!results && !st.batch.snapshots.empty()) {
    // Snapshots are an optimisation: one that fails must not fail the appends.
    st.batch.snapshots.clear();
    results = st.store->append_batch(st.batch);
  }
  for (std::size_t i = 0; i < st.waiting.size(); ++i) {
    journal_result r;
    r.value = results ? std::move((*results)[i])
                      : result<persistence::append_result>{tl::unexpected(results.error())};
    st.waiting[i].deliver(std::move(r));
  }
  ++st.batches;
  st.appends += st.waiting.size();
  if (results) {
    auto before = st.committed;
    for (const auto& r : *results)
      if (r && !r->duplicate && r->last_position > st.committed)
        st.committed = r->last_position;
    if (st.committed != before)
      for (const auto& w : st.watchers)
        self->send(w, committed_atom::value, st.committed);
  }
  st.batch.appends.clear();
  st.batch.snapshots.clear();
  st.waiting.clear();
}

caf::behavior journal(journal_actor* self, persistence::event_store* store) {
  self->state.store = store;
  if (auto last = store->last_position())
    self->state.committed = *last;
  self->set_down_handler([=](caf::down_msg& dm) {
    auto& ws = self->state.watchers;
    ws.erase(std::remove_if(ws.begin(), ws.end(),
                            [&](const caf::actor& w) { return w.address() == dm.source; }),
             ws.end());
  });
  return {
    [=](append_atom, journal_append& a) -> caf::result<journal_result> {
      self->state.batch.appends.push_back(std::move(a.request));
      self->state.waiting.push_back(self->make_response_promise());
      queue_flush(self);
      return self->state.waiting.back();
    },
    [=](snapshot_atom, journal_snapshot& s) {
      self->state.batch.snapshots.push_back(std::move(s.value));
      queue_flush(self);
    },
    [=](flush_atom) { flush(self); },
    [=](subscribe_atom, caf::actor& watcher) {
      auto& ws = self->state.watchers;
      self->send(watcher, committed_atom::value, self->state.committed);
      if (std::find(ws.begin(), ws.end(), watcher) == ws.end()) {
        self->monitor(watcher);
        ws.push_back(std::move(watcher));
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

caf::actor spawn_journal(caf::actor_system& sys, persistence::event_store& store) {
  return sys.spawn<caf::detached>(journal, &store);
}

} // namespace cairn::actors
