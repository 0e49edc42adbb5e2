#include "cairn/actors/replication.hpp"

#include <algorithm>
#include <chrono>
#include <ctime>
#include <deque>
#include <map>
#include <utility>

#include <caf/all.hpp>

#include "cairn/actors/log.hpp"
#include "cairn/actors/messages.hpp"
#include "cairn/model/clock.hpp"

namespace cairn::actors {

void add_replication_message_types(caf::actor_system_config& cfg) {
  cfg.add_message_type<persistence::log_frame>("cairn.log_frame");
  cfg.add_message_type<persistence::epoch_info>("cairn.epoch_info");
  cfg.add_message_type<replica_hello>("cairn.replica_hello");
}

namespace {

std::string digest_bytes(const persistence::log_digest& d) {
  return std::string{reinterpret_cast<const char*>(d.digest.data()), d.digest.size()};
}

// -- the owner's source -------------------------------------------------------

struct in_flight_frame {
  std::uint64_t last_position = 0;
  std::size_t bytes = 0;
};

struct source_state {
  const persistence::event_store* store = nullptr;
  caf::actor journal;
  source_config cfg;
  caf::actor sink;             ///< The subscribed standby's sink; null while none.
  std::uint64_t next = 1;      ///< The next position to send.
  std::uint64_t committed = 0; ///< The durable end of the log, from the journal.
  std::uint64_t epoch = 0;
  std::deque<in_flight_frame> unacked;
  std::size_t unacked_bytes = 0;
  bool waiting_for_commit = false; ///< Asked the journal for the next commit.
  /// The checkpoints the sink was sent since it subscribed, as sent.
  std::map<std::string, std::uint64_t, std::less<>> sent_checkpoints;
  replication_status status;
  std::shared_ptr<spdlog::logger> log = logger(cluster_logger);
  static inline const char* name = "cairn.replication_source";
};

using source_actor = caf::stateful_actor<source_state>;

void drop_sink(source_actor* self, std::string why) {
  auto& st = self->state;
  if (st.sink) {
    self->demonitor(st.sink);
    st.log->warn("standby {} unsubscribed: {}", st.cfg.standby, why);
  }
  st.sink = nullptr;
  st.unacked.clear();
  st.unacked_bytes = 0;
  st.status.connected = false;
  st.status.problem = std::move(why);
}

/// This node's checkpoints that moved since they were last sent, each at
/// most `upto` (the last position the sink gets with them: a subscriber may
/// stand past the frame being sent), at most max_frame_checkpoints; marked
/// as sent. Not the copies this node holds of another owner's checkpoints
/// (from a time it was a standby itself).
std::vector<persistence::checkpoint> moved_checkpoints(source_actor* self, std::uint64_t upto) {
  auto& st = self->state;
  std::vector<persistence::checkpoint> out;
  auto all = st.store->list_checkpoints();
  if (!all) {
    st.log->warn("reading the checkpoints for standby {} failed: {}", st.cfg.standby,
                 all.error().to_string());
    return out;
  }
  for (auto& cp : *all) {
    if (out.size() == persistence::max_frame_checkpoints)
      break; // the rest go with the next frame
    if (persistence::is_replicated_checkpoint_name(cp.name) || cp.name.empty()
        || cp.name.size() > 255)
      continue;
    cp.position = std::min(cp.position, upto);
    auto it = st.sent_checkpoints.find(cp.name);
    if (it != st.sent_checkpoints.end() && it->second == cp.position)
      continue;
    st.sent_checkpoints[cp.name] = cp.position;
    out.push_back(std::move(cp));
  }
  return out;
}

/// Sends frames while the window has room and the durable log has more.
void pump(source_actor* self) {
  auto& st = self->state;
  if (st.status.fenced)
    return;
  while (st.sink && st.next <= st.committed && st.unacked_bytes < st.cfg.window) {
    auto room = std::min(st.cfg.frame_bytes, st.cfg.window - st.unacked_bytes);
    auto frame = st.store->read_frame(st.next, room);
    if (!frame) {
      st.log->error("reading the log at {} for standby {} failed: {}", st.next, st.cfg.standby,
                    frame.error().to_string());
      st.status.problem = frame.error().to_string();
      drop_sink(self, "the log could not be read at " + std::to_string(st.next));
      return;
    }
    // Only what the journal reported durable: a commit the owner may still
    // lose to a power cut is never on the standby alone.
    auto& recs = frame->records;
    if (frame->first_position + recs.size() - 1 > st.committed)
      recs.resize(static_cast<std::size_t>(st.committed - frame->first_position + 1));
    if (recs.empty())
      break;
    // The data keys count like records (the window bounds what is in
    // flight). Keys of subjects only in the records cut off above stay:
    // they are the owner's keys all the same (read_frame).
    std::size_t bytes = 0;
    for (const auto& r : recs)
      bytes += r.size();
    for (const auto& k : frame->keys)
      bytes += k.size();
    auto last = frame->first_position + recs.size() - 1;
    st.unacked.push_back({last, bytes});
    st.unacked_bytes += bytes;
    st.next = last + 1;
    ++st.status.frames;
    st.status.bytes += bytes;
    self->send(st.sink, frame_atom::value, st.epoch, std::move(*frame));
  }
  // Without a standby too: the log end in the status (and the lag it shows
  // an operator deciding on a promotion) follows the log.
  if ((st.next > st.committed || !st.sink) && !st.waiting_for_commit) {
    st.waiting_for_commit = true;
    self->send(st.journal, demand_atom::value, caf::actor_cast<caf::actor>(self));
  }
}

/// Where to start for a standby whose replica is `h`: the position after
/// the last one the two logs share, or a truncation the sink must make first.
void subscribe(source_actor* self, replica_hello& h, caf::actor sink) {
  auto& st = self->state;
  auto my_last = st.store->last_position();
  if (!my_last) {
    st.status.problem = my_last.error().to_string();
    return;
  }
  std::uint64_t shared = 0;
  bool prefix = false;
  if (h.last_position == 0) {
    prefix = true;
  } else if (h.last_position <= *my_last) {
    auto mine = st.store->digest_at(h.last_position);
    prefix = mine && digest_bytes(*mine) == h.digest;
  }
  if (prefix) {
    shared = h.last_position;
  } else {
    auto epochs = st.store->epochs();
    if (!epochs) {
      st.status.problem = epochs.error().to_string();
      return;
    }
    shared = persistence::common_position(*epochs, *my_last, h.epochs, h.last_position);
    if (shared >= h.last_position) {
      // The epochs say the replica is a prefix, but the digests differ:
      // someone edited one of the two logs. Never copy over it.
      st.status.problem = "standby " + h.node + "'s replica differs from this log at or before "
                          + std::to_string(h.last_position)
                          + " although they share the epochs: run cairn verify on both";
      st.log->error("{}", st.status.problem);
      return;
    }
    st.log->warn("standby {}'s replica diverges after position {} (it ends at {}): it truncates "
                 "its tail",
                 h.node, shared, h.last_position);
    self->send(sink, truncate_atom::value, shared);
    return;
  }
  if (st.sink && st.sink != sink)
    drop_sink(self, "a new subscription replaced it");
  if (st.sink != sink) {
    st.sink = sink;
    self->monitor(st.sink);
  }
  st.unacked.clear();
  st.unacked_bytes = 0;
  st.sent_checkpoints.clear(); // a new sink, or one that restarted: all of them again
  st.next = shared + 1;
  st.status.acknowledged = shared;
  st.status.connected = true;
  st.status.problem.clear();
  ++st.status.subscriptions;
  st.log->info("standby {} subscribed from position {}", h.node, st.next);
  self->send(st.journal, replicated_atom::value, shared);
  pump(self);
}

caf::behavior replication_source(source_actor* self, const persistence::event_store* store,
                                 caf::actor journal, source_config cfg) {
  auto& init = self->state;
  init.store = store;
  init.journal = std::move(journal);
  init.cfg = std::move(cfg);
  init.status.role = "owner";
  init.status.peer = init.cfg.standby;
  if (auto e = store->current_epoch())
    init.epoch = *e;
  init.status.epoch = init.epoch;
  self->send(init.journal, subscribe_atom::value, caf::actor_cast<caf::actor>(self));
  self->set_down_handler([self](caf::down_msg& dm) {
    if (self->state.sink && dm.source == self->state.sink.address())
      drop_sink(self, "its connection was lost");
  });
  self->delayed_send(self, init.cfg.checkpoint_interval, tick_atom::value);
  return {
    [self](tick_atom) {
      // The checkpoints that moved, in a frame of their own: with every
      // frame of records they would be read once per commit of the live
      // log, for positions a promotion only needs roughly.
      auto& st = self->state;
      if (st.sink && !st.status.fenced && st.next > 1) {
        persistence::log_frame frame;
        frame.first_position = st.next;
        frame.checkpoints = moved_checkpoints(self, st.next - 1);
        if (!frame.checkpoints.empty())
          self->send(st.sink, frame_atom::value, st.epoch, std::move(frame));
      }
      self->delayed_send(self, st.cfg.checkpoint_interval, tick_atom::value);
    },
    [self](committed_atom, std::uint64_t position) {
      auto& st = self->state;
      st.waiting_for_commit = false;
      st.committed = std::max(st.committed, position);
      st.status.committed = st.committed;
      pump(self);
    },
    [self](replica_atom, replica_hello& h, caf::actor& sink) {
      // Only the gateway hands hellos over, after checking the sender.
      if (h.node != self->state.cfg.standby || !sink)
        return;
      subscribe(self, h, std::move(sink));
    },
    [self](ack_atom, std::uint64_t position) {
      auto& st = self->state;
      if (!st.sink || self->current_sender() != st.sink.address())
        return;
      while (!st.unacked.empty() && st.unacked.front().last_position <= position) {
        st.unacked_bytes -= st.unacked.front().bytes;
        st.unacked.pop_front();
      }
      if (position > st.status.acknowledged) {
        st.status.acknowledged = position;
        self->send(st.journal, replicated_atom::value, position); // sync replication waits for it
      }
      pump(self);
    },
    [self](fenced_atom, std::uint64_t epoch) {
      auto& st = self->state;
      if (!st.sink || self->current_sender() != st.sink.address() || epoch <= st.epoch)
        return;
      st.status.fenced = true;
      st.status.problem = "standby " + st.cfg.standby + " follows epoch " + std::to_string(epoch)
                          + ", newer than this node's " + std::to_string(st.epoch)
                          + ": another node was promoted";
      st.log->error("{}; this node stops serving its shards", st.status.problem);
      drop_sink(self, st.status.problem);
      if (st.cfg.on_fenced)
        st.cfg.on_fenced(epoch);
    },
    [self](status_atom) -> replication_status {
      auto s = self->state.status;
      s.connected = static_cast<bool>(self->state.sink);
      return s;
    },
  };
}

// -- the standby's sink -------------------------------------------------------

struct sink_state {
  const persistence::event_store* store = nullptr;
  caf::actor journal;
  sink_config cfg;
  caf::actor source;          ///< The owner's source, once a frame came from it.
  caf::node_id owner_node;    ///< The owner's CAF node, as the gateway knows it.
  std::uint64_t applied = 0;  ///< The replica's durable last position.
  std::uint64_t expected = 1; ///< The first position of the next frame to accept.
  std::uint64_t epoch = 0;
  bool hello_due = false; ///< A retry tick is queued.
  bool truncating = false;
  /// One frame at a time is with the journal; what arrives meanwhile is
  /// merged into `pending` and applied next, in one transaction and one
  /// flush. Otherwise a live owner's many small frames each cost the
  /// replica a flush of its own, the standby falls behind by the whole
  /// window, and under sync every command waits for that.
  bool applying = false;
  persistence::log_frame pending; ///< Consecutive records after the one being applied.
  std::size_t pending_bytes = 0;
  std::uint64_t generation = 0; ///< Of the subscription; stale journal answers are ignored.
  replication_status status;
  std::shared_ptr<spdlog::logger> log = logger(cluster_logger);
  static inline const char* name = "cairn.replication_sink";
};

using sink_actor = caf::stateful_actor<sink_state>;

void say_hello(sink_actor* self) {
  auto& st = self->state;
  if (st.truncating)
    return;
  // The store, not what this sink applied, says where the replica ends: its
  // journal may have committed after the sink started (a commit under way
  // when this node stepped down). A stale hello would have the owner send
  // from a position the replica holds another record at, again and again,
  // instead of telling it to cut its tail.
  if (!st.applying) {
    if (auto last = st.store->last_position(); last && *last != st.applied) {
      st.applied = *last;
      st.expected = st.applied + 1;
      st.status.acknowledged = st.applied;
    }
  }
  replica_hello h;
  h.node = st.cfg.node_id;
  h.last_position = st.applied;
  if (st.applied > 0) {
    auto d = st.store->digest_at(st.applied);
    if (!d) {
      st.status.problem = "cannot take the replica's digest at " + std::to_string(st.applied) + ": "
                          + d.error().to_string();
      st.log->error("{}", st.status.problem);
      return;
    }
    h.digest = digest_bytes(*d);
  }
  if (auto e = st.store->epochs())
    h.epochs = std::move(*e);
  ++st.status.subscriptions;
  self->send(st.cfg.gateway, replica_atom::value, st.cfg.owner, std::move(h),
             caf::actor_cast<caf::actor>(self));
}

/// Forgets the source and says hello again after `retry`.
void resubscribe(sink_actor* self, std::string why) {
  auto& st = self->state;
  if (st.source)
    self->demonitor(st.source);
  st.source = nullptr;
  ++st.generation;
  st.expected = st.applied + 1;
  st.applying = false; // an answer of the old generation is ignored
  st.pending = {};
  st.pending_bytes = 0;
  st.status.connected = false;
  if (!why.empty()) {
    st.status.problem = why;
    st.log->warn("following {}: {}", st.cfg.owner, why);
  }
  if (!st.hello_due) {
    st.hello_due = true;
    self->delayed_send(self, st.cfg.retry, tick_atom::value);
  }
}

std::string utc_stamp() {
  auto t = std::time(nullptr);
  std::tm tm{};
  ::gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y%m%dT%H%M%SZ", &tm);
  return buf;
}

/// Hands `frame` to the journal; once it is durable, acknowledges it and
/// hands over what was merged meanwhile.
void apply(sink_actor* self, persistence::log_frame frame, std::size_t bytes) {
  auto& st = self->state;
  st.applying = true;
  auto gen = st.generation;
  self->request(st.journal, caf::infinite, replicate_atom::value, std::move(frame))
    .then(
      [self, gen, bytes](journal_applied& r) {
        auto& cur = self->state;
        if (gen != cur.generation)
          return;
        cur.applying = false;
        if (!r.value) {
          cur.log->error("applying a frame from {} failed: {}", cur.cfg.owner,
                         r.value.error().to_string());
          resubscribe(self, "applying a frame failed: " + r.value.error().to_string());
          return;
        }
        cur.applied = *r.value;
        cur.status.acknowledged = cur.applied;
        cur.status.committed = std::max(cur.status.committed, cur.applied);
        ++cur.status.frames;
        cur.status.bytes += bytes;
        if (cur.source)
          self->send(cur.source, ack_atom::value, cur.applied);
        if (!cur.pending.records.empty() || !cur.pending.checkpoints.empty()) {
          auto next = std::move(cur.pending);
          auto next_bytes = cur.pending_bytes;
          cur.pending = {};
          cur.pending_bytes = 0;
          apply(self, std::move(next), next_bytes);
        }
      },
      [self, gen](caf::error& e) {
        if (gen == self->state.generation)
          resubscribe(self, "the journal did not answer: " + self->system().render(e));
      });
}

caf::behavior replication_sink(sink_actor* self, const persistence::event_store* store,
                               caf::actor journal, sink_config cfg) {
  auto& init = self->state;
  init.store = store;
  init.journal = std::move(journal);
  init.cfg = std::move(cfg);
  init.status.role = "standby";
  init.status.peer = init.cfg.owner;
  if (auto last = store->last_position())
    init.applied = *last;
  init.expected = init.applied + 1;
  init.status.acknowledged = init.applied;
  if (auto e = store->current_epoch())
    init.epoch = *e;
  init.status.epoch = init.epoch;
  self->set_down_handler([self](caf::down_msg& dm) {
    if (self->state.source && dm.source == self->state.source.address())
      resubscribe(self, "the owner's connection was lost");
  });
  say_hello(self);
  resubscribe(self, {}); // until a frame arrives, hello again every `retry`
  return {
    [self](tick_atom) {
      auto& st = self->state;
      st.hello_due = false;
      if (st.source)
        return; // frames flow
      say_hello(self);
      st.hello_due = true;
      self->delayed_send(self, st.cfg.retry, tick_atom::value);
    },
    [self](frame_atom, std::uint64_t epoch, persistence::log_frame& frame) {
      auto& st = self->state;
      const auto& sender = self->current_sender();
      if (!sender || st.truncating || sender->node() != st.owner_node)
        return; // frames come from the owner's node only
      if (epoch < st.epoch) {
        self->send(caf::actor_cast<caf::actor>(sender), fenced_atom::value, st.epoch);
        return;
      }
      if (!st.source) {
        st.source = caf::actor_cast<caf::actor>(sender);
        self->monitor(st.source);
        st.status.connected = true;
        st.status.problem.clear();
      } else if (sender != st.source.address()) {
        return; // a frame from an earlier subscription's source
      }
      if (frame.records.empty() && frame.checkpoints.empty())
        return;
      // A frame may overlap what the replica holds (a resent one after a
      // new hello): applying is idempotent by position. A gap is not.
      if (frame.first_position > st.expected) {
        resubscribe(self, "a frame starts at " + std::to_string(frame.first_position)
                            + ", expected " + std::to_string(st.expected));
        return;
      }
      if (frame.last_position() < st.expected) {
        if (frame.checkpoints.empty())
          return;
        frame.records.clear(); // held already: only the owner's checkpoints are new
        frame.keys.clear();    // and keys of records it holds are stored already
        frame.first_position = st.expected;
      }
      st.epoch = std::max(st.epoch, epoch);
      st.status.epoch = st.epoch;
      if (st.applying) {
        // Only what follows the records already on their way to the journal.
        auto skip = static_cast<std::size_t>(st.expected - frame.first_position);
        if (st.pending.records.empty())
          st.pending.first_position = st.expected;
        for (auto i = skip; i < frame.records.size(); ++i) {
          st.pending_bytes += frame.records[i].size();
          st.pending.records.push_back(std::move(frame.records[i]));
        }
        // A later frame was read later: apply_frame stores the keys in
        // order, so its key of a subject replaces one merged before.
        for (auto& k : frame.keys) {
          st.pending_bytes += k.size();
          st.pending.keys.push_back(std::move(k));
        }
        // A name sent again supersedes its earlier position.
        for (auto& cp : frame.checkpoints) {
          auto& mine = st.pending.checkpoints;
          auto it = std::find_if(mine.begin(), mine.end(), [&](const persistence::checkpoint& x) {
            return x.name == cp.name;
          });
          if (it != mine.end())
            it->position = cp.position;
          else if (mine.size() < persistence::max_frame_checkpoints)
            mine.push_back(std::move(cp));
        }
        st.expected = std::max(st.expected, frame.last_position() + 1);
        return;
      }
      st.expected = frame.last_position() + 1;
      std::size_t bytes = 0;
      for (const auto& r : frame.records)
        bytes += r.size();
      for (const auto& k : frame.keys)
        bytes += k.size();
      apply(self, std::move(frame), bytes);
    },
    [self](replica_atom, caf::node_id& owner) {
      // The gateway passed the hello on: the answer comes from this node.
      const auto& sender = self->current_sender();
      if (sender && sender->node() == self->home_system().node())
        self->state.owner_node = owner;
    },
    [self](truncate_atom, std::uint64_t position) {
      auto& st = self->state;
      const auto& sender = self->current_sender();
      if (!sender || sender->node() != st.owner_node || st.truncating || position >= st.applied)
        return;
      st.truncating = true;
      auto file = st.cfg.truncation_dir + "/truncated-after-" + std::to_string(position) + "-"
                  + utc_stamp() + ".jsonl";
      st.log->warn("the replica's log diverges from {}'s after position {}: cutting {} records "
                   "into {}",
                   st.cfg.owner, position, st.applied - position, file);
      self->request(st.journal, caf::infinite, truncate_atom::value, position, file)
        .then(
          [self](journal_truncated& r) {
            auto& cur = self->state;
            cur.truncating = false;
            if (!r.value) {
              cur.status.problem = "truncating the divergent tail failed: "
                                   + r.value.error().to_string();
              cur.log->error("{}", cur.status.problem);
              return; // no hello: an operator must look at it
            }
            cur.status.truncated += r.value->records;
            if (auto last = cur.store->last_position())
              cur.applied = *last;
            cur.status.acknowledged = cur.applied;
            resubscribe(self, {});
            say_hello(self);
          },
          [self](caf::error& e) {
            self->state.truncating = false;
            self->state.status.problem = "the journal did not truncate: "
                                         + self->system().render(e);
          });
    },
    [self](status_atom) -> replication_status { return self->state.status; },
  };
}

} // namespace

caf::actor spawn_replication_source(caf::actor_system& sys, const persistence::event_store& store,
                                    caf::actor journal, source_config cfg, placement where) {
  if (where == placement::detached)
    return sys.spawn<caf::detached>(replication_source, &store, std::move(journal), std::move(cfg));
  return sys.spawn(replication_source, &store, std::move(journal), std::move(cfg));
}

caf::actor spawn_replication_sink(caf::actor_system& sys, const persistence::event_store& store,
                                  caf::actor journal, sink_config cfg, placement where) {
  if (where == placement::detached)
    return sys.spawn<caf::detached>(replication_sink, &store, std::move(journal), std::move(cfg));
  return sys.spawn(replication_sink, &store, std::move(journal), std::move(cfg));
}

} // namespace cairn::actors
