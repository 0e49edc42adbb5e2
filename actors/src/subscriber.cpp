#include "cairn/actors/subscriber.hpp"

#include <algorithm>
#include <deque>
#include <exception>
#include <map>
#include <set>
#include <utility>
#include <vector>

#include <caf/all.hpp>

#include "cairn/actors/error.hpp"
#include "cairn/actors/log.hpp"
#include "cairn/actors/log_feed.hpp"
#include "cairn/actors/messages.hpp"
#include "cairn/model/backoff.hpp"
#include "cairn/model/clock.hpp"
#include "cairn/persistence/replication.hpp"

namespace cairn::actors {

namespace {

using persistence::dead_letter;
using persistence::dead_letter_key;
using persistence::recorded_event;

/// A pump message handles events for at most this long, so status requests
/// and stops are answered promptly even under a long backlog.
constexpr std::chrono::milliseconds pump_slice{5};
/// Longest error text kept in a dead letter (the store's limit).
constexpr std::size_t max_error_text = 4096;

using write_callback = std::function<void(const result<void>&)>;

/// What the subscriber is doing. Every change goes through `enter`, which
/// holds the transitions:
///
///   catching_up <-> live          the pump reaches the end of the log / reads a full batch
///   catching_up, live -> backing_off   a handler call, a read or a checkpoint write
///                                 failed: a retry is scheduled (again from backing_off:
///                                 the newer retry supersedes the older)
///   backing_off -> catching_up    the retry is due
///   catching_up, live, backing_off -> halted   the last attempt failed under
///                                 after_last_retry::stop, or the checkpoint did not load
///   all but stopping -> rebuilding     rebuild_atom: waits for the write in flight,
///                                 then clears the read model and the checkpoint
///   rebuilding -> catching_up     cleared; else back to the phase it left
///   all -> stopping               stop_atom: the final checkpoint, then it quits
///   catching_up, live, backing_off -> held   hold_atom (a plain subscriber on a
///                                 standby), or from the start
///   held -> catching_up           unhold_atom: this node serves the log now
///
/// Events are handled in catching_up and live only.
enum class phase : std::uint8_t {
  catching_up,
  live,
  backing_off,
  halted,
  rebuilding,
  stopping,
  held
};

/// The write to the journal in flight, if any: at most one at a time.
enum class writer : std::uint8_t {
  idle,
  checkpoint, ///< Progress, dead letters and read-model changes (do_write).
  clearing,   ///< The rebuild's clearing write (start_rebuild).
};

/// One log the subscriber follows: this node's (through the store and the
/// journal's notifications) or, for a cluster-wide subscriber, another
/// node's (through a log feed, log_feed.hpp). Positions are per log.
struct source {
  std::string node;       ///< The owner of the log; empty for a local-only subscriber.
  std::string checkpoint; ///< Its checkpoint's name, and its dead letters' subscriber.
  bool local = true;

  std::uint64_t position = 0;  ///< Last event handled, dead-lettered or filtered out.
  std::uint64_t durable = 0;   ///< Position of the last committed checkpoint.
  std::uint64_t committed = 0; ///< End of the log, as the journal (or the feed) last said.
  std::uint64_t write_target = 0;
  /// The position it last jumped to because retention had removed the
  /// events after `position` (0: never); status shows it.
  std::uint64_t started_at_cut = 0;

  persistence::log_page page; ///< Read; events [next, end) still to handle.
  std::size_t next = 0;
  std::uint32_t read_failures = 0;
  bool idle = false;           ///< Read to its end: waits for a commit or a page.
  bool demand_pending = false; ///< Local: the journal owes a notification.

  // -- remote: the feed -------------------------------------------------------
  std::deque<recorded_event> buffer; ///< Received, not read into `page` yet.
  std::uint64_t received = 0;        ///< The pages received cover the log up to here.
  std::uint64_t generation = 0;      ///< Of the current hello; pages of others are dropped.
  caf::actor feed;                   ///< The feed delivering, once a page came.
  caf::node_id feed_node;            ///< Where the gateway sent the hello.
  std::string problem;
};

struct subscriber_data {
  const persistence::event_store* store = nullptr;
  caf::actor journal;
  caf::actor gateway; ///< Cluster-wide: carries the feed hellos.
  subscriber_spec spec;
  std::optional<read_model> model;
  std::shared_ptr<spdlog::logger> log;

  std::vector<source> sources; ///< Never empty; the local one first.
  std::size_t cur = 0;         ///< The source whose page is being handled.
  std::uint64_t generations = 0;
  bool hello_due = false; ///< The hello retry timer is on its way.
  std::uint64_t since_write = 0;
  std::uint64_t handled = 0;

  std::uint32_t attempts = 0; ///< Failed calls for the event at `next` of `cur`.
  std::int64_t first_failure_ns = 0;

  [[nodiscard]] source& src() { return sources[cur]; }
  [[nodiscard]] bool cluster_wide() const { return !spec.sources.empty(); }
  std::string last_error;
  phase ph = phase::catching_up;
  /// In rebuilding and stopping: the phase left, which status reports and a
  /// failed rebuild returns to.
  phase resume = phase::catching_up;
  /// Numbers the retries scheduled: only the latest ends a backoff.
  std::uint64_t retry_epoch = 0;
  std::string held_reason; ///< Why it is held, in phase held.

  // Messages on their way, each sent once: a pump to ourselves, the
  // checkpoint timer, the journal's notification (it owes us one).
  bool pump_queued = false;
  bool tick_pending = false;

  writer wr = writer::idle;
  bool write_again = false; ///< Write again as soon as the one in flight is done.
  std::uint64_t write_target = 0;

  std::vector<dead_letter> new_dead_letters;
  std::vector<dead_letter_key> removals;
  // The dead-letter count, kept so that a status request (every metrics
  // scrape) never scans the table: counted once at start, then moved by
  // every letter added or removed. Committed, in the write in flight, and
  // not yet sent.
  std::uint64_t dead_letters_stored = 0;
  std::int64_t dead_letters_in_flight = 0;
  std::int64_t dead_letters_unsent = 0;
  std::vector<write_callback> next_write_callbacks, in_flight_callbacks;
  std::vector<std::pair<std::uint64_t, caf::response_promise>> waiters;

  caf::response_promise stop_promise;
  caf::response_promise rebuild_promise;

  static inline const char* name = "cairn.subscriber";
};

using subscriber_actor = caf::stateful_actor<subscriber_data>;

/// Whether `to` may follow `from` (the table above).
bool allowed(phase from, phase to) {
  switch (to) {
    case phase::catching_up: return from != phase::halted && from != phase::stopping;
    case phase::live:
      return from == phase::catching_up || from == phase::live || from == phase::rebuilding;
    case phase::backing_off:
    case phase::halted:
      return from != phase::halted && from != phase::stopping && from != phase::held;
    case phase::rebuilding:
      return from != phase::rebuilding && from != phase::stopping && from != phase::held;
    case phase::stopping: return from != phase::stopping;
    case phase::held:
      return from == phase::catching_up || from == phase::live || from == phase::backing_off;
  }
  return false;
}

/// The one place the phase changes; `wait` is the backoff when entering
/// backing_off.
void enter(subscriber_actor* self, phase next, std::chrono::milliseconds wait = {}) {
  auto& st = self->state;
  if (!allowed(st.ph, next))
    st.log->error("{}: bug: phase {} -> {}", st.spec.name, static_cast<int>(st.ph),
                  static_cast<int>(next));
  // Back from a rebuild to a backoff, its retry is still on its way.
  if (next == phase::backing_off && st.ph != phase::rebuilding)
    self->delayed_send(self, wait, retry_atom::value, ++st.retry_epoch);
  if ((next == phase::rebuilding || next == phase::stopping) && st.ph != phase::rebuilding)
    st.resume = st.ph;
  st.ph = next;
}

/// The retry numbered `epoch` is due: ends the backoff if it is the latest.
void retry_due(subscriber_actor* self, std::uint64_t epoch) {
  auto& st = self->state;
  if (epoch != st.retry_epoch)
    return; // superseded by a later failure's retry
  if (st.ph == phase::backing_off)
    enter(self, phase::catching_up);
  else if (st.resume == phase::backing_off)
    st.resume = phase::catching_up; // due while rebuilding or stopping
}

/// What status reports for the phase.
subscriber_state shown(const subscriber_data& st) {
  auto ph = st.ph == phase::rebuilding || st.ph == phase::stopping ? st.resume : st.ph;
  switch (ph) {
    case phase::live: return subscriber_state::live;
    case phase::backing_off: return subscriber_state::retrying;
    case phase::halted: return subscriber_state::stopped;
    case phase::held: return subscriber_state::held;
    default: return subscriber_state::catching_up;
  }
}

/// Whether events are handled now.
bool busy(const subscriber_data& st) { return st.ph != phase::catching_up && st.ph != phase::live; }

bool has_unsaved(const subscriber_data& st) {
  return std::any_of(st.sources.begin(), st.sources.end(),
                     [](const source& s) { return s.position > s.durable; })
         || !st.new_dead_letters.empty() || !st.removals.empty()
         || (st.model && st.model->has_unsaved());
}

/// The retry schedule of `o`.
cairn::backoff retry_backoff(const subscription_options& o) {
  return cairn::backoff{o.initial_backoff, o.max_backoff, o.backoff_multiplier};
}

/// `base + delta`, never below 0.
std::uint64_t add_count(std::uint64_t base, std::int64_t delta) {
  if (delta >= 0)
    return base + static_cast<std::uint64_t>(delta);
  auto down = static_cast<std::uint64_t>(-delta);
  return down > base ? 0 : base - down;
}

void schedule_pump(subscriber_actor* self) {
  auto& st = self->state;
  if (!st.pump_queued && !busy(st)) {
    st.pump_queued = true;
    self->send(self, pump_atom::value);
  }
}

void arm_tick(subscriber_actor* self) {
  auto& st = self->state;
  if (!st.tick_pending && has_unsaved(st)) {
    st.tick_pending = true;
    self->delayed_send(self, st.spec.options.checkpoint_interval, tick_atom::value);
  }
}

void finish_stop(subscriber_actor* self);
void quit_now(subscriber_actor* self);
void resubscribe(subscriber_actor* self, std::size_t index, std::string why);
void start_rebuild(subscriber_actor* self);
void write_finished(subscriber_actor* self, result<void> outcome);

/// Sends everything unsaved to the journal, with a checkpoint at `position`.
void do_write(subscriber_actor* self) {
  auto& st = self->state;
  st.wr = writer::checkpoint;
  st.write_again = false;
  st.since_write = 0;
  st.in_flight_callbacks = std::move(st.next_write_callbacks);
  st.next_write_callbacks.clear();
  journal_write w;
  for (auto& src : st.sources) {
    src.write_target = src.position;
    w.value.checkpoints.push_back({src.checkpoint, src.position});
  }
  if (st.model) {
    auto changes = st.model->take_unsaved();
    for (const auto& [key, value] : changes)
      w.value.kv.push_back(
        value ? persistence::kv_op{persistence::kv_op::kind::put, st.spec.name, key, *value}
              : persistence::kv_op{persistence::kv_op::kind::erase, st.spec.name, key, {}});
    st.model->write_started(std::move(changes));
  }
  w.value.dead_letters = std::move(st.new_dead_letters);
  w.value.dead_letter_removals = std::move(st.removals);
  st.new_dead_letters.clear();
  st.removals.clear();
  st.dead_letters_in_flight = st.dead_letters_unsent;
  st.dead_letters_unsent = 0;
  self->request(st.journal, st.spec.request_timeout, write_atom::value, std::move(w))
    .then([self](journal_written& r) { write_finished(self, std::move(r.value)); },
          [self](caf::error& e) {
            write_finished(self, fail(errc::unavailable,
                                      "the journal did not answer: " + self->system().render(e)));
          });
}

/// Writes when something is unsaved and a reason says so.
void maybe_write(subscriber_actor* self, bool force) {
  auto& st = self->state;
  if (!has_unsaved(st) && st.next_write_callbacks.empty())
    return;
  bool waiter_ready = std::any_of(st.waiters.begin(), st.waiters.end(), [&](const auto& w) {
    return w.first <= st.sources.front().position;
  });
  bool due = force || st.write_again || waiter_ready
             || st.since_write >= st.spec.options.checkpoint_every;
  if (!due)
    return;
  if (st.wr != writer::idle) {
    st.write_again = true;
    return;
  }
  do_write(self);
}

void write_finished(subscriber_actor* self, result<void> outcome) {
  auto& st = self->state;
  st.wr = writer::idle;
  auto callbacks = std::move(st.in_flight_callbacks);
  st.in_flight_callbacks.clear();
  if (outcome) {
    for (auto& src : st.sources)
      src.durable = src.write_target;
    auto durable = st.sources.front().durable;
    st.dead_letters_stored = add_count(st.dead_letters_stored, st.dead_letters_in_flight);
    st.dead_letters_in_flight = 0;
    if (st.model)
      st.model->write_done();
    auto& ws = st.waiters;
    for (auto& w : ws)
      if (w.first <= durable)
        w.second.deliver(true);
    ws.erase(std::remove_if(ws.begin(), ws.end(),
                            [&](const auto& w) { return w.first <= durable; }),
             ws.end());
  } else {
    // Nothing of the write landed, and everything after it built on it:
    // forget it all and handle again from the last checkpoint.
    st.last_error = outcome.error().to_string();
    st.log->warn("{}: writing checkpoint {} failed: {}; handling again from {}", st.spec.name,
                 st.sources.front().write_target, st.last_error, st.sources.front().durable);
    if (st.model)
      st.model->reset();
    for (std::size_t i = 0; i < st.sources.size(); ++i) {
      auto& src = st.sources[i];
      src.position = src.durable;
      src.page = {};
      src.next = 0;
      src.idle = false;
      if (!src.local)
        resubscribe(self, i, {});
    }
    st.attempts = 0;
    st.new_dead_letters.clear();
    st.removals.clear();
    st.dead_letters_in_flight = st.dead_letters_unsent = 0;
    st.write_again = false;
    if (!busy(st) || st.ph == phase::backing_off)
      enter(self, phase::backing_off, retry_backoff(st.spec.options).after(1));
  }
  for (auto& cb : callbacks)
    cb(outcome);
  if (st.ph == phase::stopping) {
    if (!outcome) {
      // Stopping anyway: a restart resumes from the last checkpoint.
      for (auto& cb : st.next_write_callbacks)
        cb(outcome);
      st.next_write_callbacks.clear();
      quit_now(self);
      return;
    }
    finish_stop(self);
    return;
  }
  if (st.ph == phase::rebuilding) {
    start_rebuild(self);
    return;
  }
  maybe_write(self, false);
  arm_tick(self);
}

void quit_now(subscriber_actor* self) {
  auto& st = self->state;
  st.log->info("{}: stopped at checkpoint {}", st.spec.name, st.sources.front().durable);
  st.stop_promise.deliver(true);
  for (auto& w : st.waiters)
    w.second.deliver(caf::make_error(caf::sec::request_receiver_down));
  st.waiters.clear();
  self->quit();
}

void finish_stop(subscriber_actor* self) {
  auto& st = self->state;
  if (st.wr != writer::idle)
    return; // write_finished or the rebuild comes back here
  if (has_unsaved(st) || !st.next_write_callbacks.empty()) {
    do_write(self);
    return;
  }
  quit_now(self);
}

void start_rebuild(subscriber_actor* self) {
  auto& st = self->state;
  if (st.wr != writer::idle)
    return; // write_finished comes back here
  st.model->reset();
  st.src().page = {};
  st.src().next = 0;
  st.attempts = 0;
  st.new_dead_letters.clear();
  st.dead_letters_unsent = 0;
  journal_write w;
  w.value.kv.push_back({persistence::kv_op::kind::clear, st.spec.name, {}, {}});
  w.value.checkpoints.push_back({st.spec.name, 0});
  // The dead letters stand for events missing from the model; replayed from
  // the start, those events are tried again.
  if (auto letters = st.store->list_dead_letters(st.spec.name); letters)
    for (const auto& dl : *letters)
      w.value.dead_letter_removals.push_back({dl.subscriber, dl.position});
  w.value.dead_letter_removals.insert(w.value.dead_letter_removals.end(), st.removals.begin(),
                                      st.removals.end());
  st.removals.clear();
  st.wr = writer::clearing;
  auto done = [self](result<void> outcome) {
    auto& now = self->state;
    now.wr = writer::idle;
    if (outcome) {
      // None is left in the store; the letters a replay re-added meanwhile
      // are written with the next checkpoint, its removals find nothing.
      now.dead_letters_stored = 0;
      now.dead_letters_unsent = static_cast<std::int64_t>(now.new_dead_letters.size());
      now.log->info("{}: read model cleared; rebuilding from the start of the log", now.spec.name);
      now.src().position = now.src().durable = 0;
      now.src().idle = false;
      now.resume = phase::catching_up; // from the start, whatever it did before
      now.last_error.clear();
      now.rebuild_promise.deliver(true);
    } else {
      now.rebuild_promise.deliver(to_caf_error(outcome.error()));
      now.src().position = now.src().durable; // unchanged store: carry on where it was
    }
    if (now.ph == phase::stopping) {
      finish_stop(self);
      return;
    }
    enter(self, now.resume);
    schedule_pump(self);
  };
  self->request(st.journal, st.spec.request_timeout, write_atom::value, std::move(w))
    .then([done](journal_written& r) { done(std::move(r.value)); },
          [self, done](caf::error& e) {
            done(
              fail(errc::unavailable, "the journal did not answer: " + self->system().render(e)));
          });
}

/// Calls the handler once; exceptions become errors.
result<void> call_handler(subscriber_data& st, const recorded_event& ev) {
  read_model* model = st.model ? &*st.model : nullptr;
  if (model)
    model->begin_event();
  result<void> r;
  try {
    r = st.spec.handle(ev, model);
  } catch (...) {
    r = tl::unexpected(thrown_error("the handler", {}));
  }
  if (r && model)
    model->keep_event();
  return r;
}

dead_letter make_dead_letter(const std::string& subscriber, const recorded_event& ev,
                             std::uint32_t attempts, std::int64_t first, const std::string& err) {
  dead_letter dl;
  dl.subscriber = subscriber;
  dl.position = ev.position;
  dl.stream = ev.stream;
  dl.version = ev.version;
  dl.type = ev.type;
  dl.error = err.substr(0, max_error_text);
  dl.attempts = attempts;
  dl.first_failure_ns = first;
  dl.last_failure_ns = wall_now_ns();
  return dl;
}

enum class verdict { next, wait };

/// Handles the event at `next`: retries are scheduled, the last failure
/// dead-letters it (or stops the subscriber).
verdict handle_next(subscriber_actor* self) {
  auto& st = self->state;
  const auto& ev = st.src().page.events[st.src().next];
  auto r = call_handler(st, ev);
  if (r) {
    ++st.handled;
    st.attempts = 0;
    return verdict::next;
  }
  if (st.attempts++ == 0)
    st.first_failure_ns = wall_now_ns();
  st.last_error = r.error().to_string();
  const auto& o = st.spec.options;
  if (st.attempts < o.max_attempts) {
    auto wait = retry_backoff(o).after(st.attempts);
    st.log->warn("{}: handler failed at position {} (attempt {} of {}): {}; retry in {} ms",
                 st.spec.name, ev.position, st.attempts, o.max_attempts, st.last_error,
                 wait.count());
    enter(self, phase::backing_off, wait);
    return verdict::wait;
  }
  if (o.on_failure == after_last_retry::stop) {
    st.log->error("{}: stopped at position {} ({} v{}) after {} attempts: {}", st.spec.name,
                  ev.position, ev.stream, ev.version, st.attempts, st.last_error);
    enter(self, phase::halted);
    maybe_write(self, true); // keep the progress made before this event
    return verdict::wait;
  }
  st.log->error("{}: dead-lettered position {} ({} v{}, {}) after {} attempts: {}", st.spec.name,
                ev.position, ev.stream, ev.version, ev.type, st.attempts, st.last_error);
  st.new_dead_letters.push_back(
    make_dead_letter(st.src().checkpoint, ev, st.attempts, st.first_failure_ns, st.last_error));
  ++st.dead_letters_unsent;
  st.attempts = 0;
  return verdict::next;
}

/// When retention removed the events after `position` (docs/audit.md#retention),
/// moves to just before the first position kept and says so; false when
/// there was nothing to skip (or the store cannot tell).
bool skip_to_cut(subscriber_data& st, source& src) {
  if (!src.local)
    return false; // a feed skips the cut itself
  auto first = st.store->first_position();
  if (!first || src.position + 1 >= *first)
    return false;
  st.log->warn("{}: the events after position {} up to {} were removed by retention; "
               "starting at position {}, the first one kept",
               st.spec.name, src.position, *first - 1, *first);
  src.position = *first - 1;
  src.started_at_cut = *first;
  src.page = persistence::log_page{};
  src.next = 0;
  return true;
}

/// The next page of `src`: from the store, or from what its feed delivered.
result<persistence::log_page> read_page(subscriber_actor* self, source& src) {
  auto& st = self->state;
  if (src.local)
    return st.store->read_all(src.position + 1, st.spec.options.batch_size, st.spec.filter);
  persistence::log_page page;
  while (!src.buffer.empty() && page.events.size() < st.spec.options.batch_size) {
    page.events.push_back(std::move(src.buffer.front()));
    src.buffer.pop_front();
  }
  // The filter ran on the serving node: what the pages skipped is covered.
  page.next_position = src.buffer.empty() ? std::max(src.received, src.position) + 1
                                          : page.events.back().position + 1;
  if (src.feed && page.next_position > src.position + 1)
    self->send(src.feed, feed_ack_atom::value, src.generation, page.next_position - 1);
  return page;
}

/// Asks the gateway for a feed of remote source `index` from where it stands.
void say_hello(subscriber_actor* self, std::size_t index) {
  auto& st = self->state;
  auto& src = st.sources[index];
  feed_hello h;
  h.node = st.spec.node_id;
  h.owner = src.node;
  h.name = st.spec.name;
  h.after = src.received;
  h.generation = src.generation;
  h.categories = st.spec.filter.categories;
  h.types = st.spec.filter.types;
  h.tenant = st.spec.filter.tenant;
  self->send(st.gateway, feed_atom::value, src.node, std::move(h),
             caf::actor_cast<caf::actor>(self));
}

/// Plans the next round of hellos for the sources without a feed.
void arm_hello(subscriber_actor* self) {
  auto& st = self->state;
  if (!st.hello_due) {
    st.hello_due = true;
    self->delayed_send(self, std::chrono::milliseconds{500}, feed_atom::value);
  }
}

/// Drops remote source `index`'s feed and what it delivered beyond the page
/// in hand, and says hello again from there.
void resubscribe(subscriber_actor* self, std::size_t index, std::string why) {
  auto& st = self->state;
  auto& src = st.sources[index];
  if (src.feed) {
    self->demonitor(src.feed);
    self->send(src.feed, stop_atom::value);
  }
  src.feed = nullptr;
  src.feed_node = caf::node_id{};
  src.buffer.clear();
  src.received = src.position;
  if (src.page.next_position > 0) // the page in hand is handled to its end
    src.received = std::max(src.received, src.page.next_position - 1);
  src.generation = ++st.generations;
  if (!why.empty()) {
    src.problem = std::move(why);
    st.log->warn("{}: the feed of node {}'s log: {}", st.spec.name, src.node, src.problem);
  }
  if (st.ph == phase::held)
    return; // released, it says hello
  if (st.gateway)
    say_hello(self, index);
  arm_hello(self);
}

/// True for a message from this node: a cluster-wide subscriber's handle
/// travels to other nodes in its hellos, and only pages may come from there.
bool from_here(subscriber_actor* self) {
  const auto& sender = self->current_sender();
  return !sender || sender->node() == self->home_system().node();
}

/// A page from a remote source's feed.
void on_page(subscriber_actor* self, feed_page& page) {
  auto& st = self->state;
  const auto& sender = self->current_sender();
  auto it = std::find_if(st.sources.begin(), st.sources.end(), [&](const source& x) {
    return !x.local && x.generation == page.generation;
  });
  if (!sender || it == st.sources.end() || sender->node() != it->feed_node) {
    // An earlier subscription's feed, or no feed at all: stop it.
    if (sender && it == st.sources.end())
      self->send(caf::actor_cast<caf::actor>(sender), stop_atom::value);
    return;
  }
  auto index = static_cast<std::size_t>(it - st.sources.begin());
  auto& src = *it;
  if (!src.feed) {
    src.feed = caf::actor_cast<caf::actor>(sender);
    self->monitor(src.feed);
    src.problem.clear();
    st.log->info("{}: following node {}'s log after position {}", st.spec.name, src.node,
                 src.received);
  } else if (sender != src.feed.address()) {
    self->send(caf::actor_cast<caf::actor>(sender), stop_atom::value);
    return;
  }
  auto events = check_feed_page(page, src.received);
  if (!events) {
    st.log->error("{}: refused a page of node {}'s log: {}", st.spec.name, src.node,
                  events.error().to_string());
    resubscribe(self, index, events.error().to_string());
    return;
  }
  for (auto& ev : *events)
    src.buffer.push_back(std::move(ev));
  src.received = page.next_position - 1;
  src.committed = std::max(src.committed, page.committed);
  src.idle = false;
  schedule_pump(self);
}

void pump(subscriber_actor* self) {
  auto& st = self->state;
  st.pump_queued = false;
  if (busy(st))
    return;
  // A CPU budget, not a timer: the steady clock, since the actor clock does
  // not move inside one message under the deterministic test coordinator.
  auto deadline = std::chrono::steady_clock::now() + pump_slice;
  // The clock is read every 32 events: at a million events a second it shows.
  for (std::uint32_t n = 1; (n % 32 != 0) || std::chrono::steady_clock::now() < deadline; ++n) {
    auto& src = st.src();
    if (src.next == src.page.events.size()) {
      // Everything read is done; the filter may have skipped a tail.
      src.position = std::max(src.position, src.page.next_position > 0 ? src.page.next_position - 1
                                                                       : std::uint64_t{0});
      bool finished_page = !src.page.events.empty();
      src.page = {};
      src.next = 0;
      if (src.idle || (finished_page && st.sources.size() > 1)) {
        // Its turn is over: the next source with something to read.
        std::size_t k = 1;
        while (k <= st.sources.size() && st.sources[(st.cur + k) % st.sources.size()].idle)
          ++k;
        if (k > st.sources.size()) {
          // Every source is read to its end.
          enter(self, phase::live);
          for (auto& s : st.sources)
            if (s.local && !s.demand_pending) {
              s.demand_pending = true;
              self->send(st.journal, demand_atom::value, caf::actor_cast<caf::actor>(self));
            }
          maybe_write(self, false);
          arm_tick(self);
          return;
        }
        st.cur = (st.cur + k) % st.sources.size();
        continue;
      }
      auto page = read_page(self, src);
      if (!page && page.error().code == errc::truncated && skip_to_cut(st, src))
        continue;
      if (!page) {
        st.last_error = page.error().to_string();
        auto wait = retry_backoff(st.spec.options).after(++src.read_failures);
        st.log->warn("{}: reading the log after position {} failed: {}; retry in {} ms",
                     st.spec.name, src.position, st.last_error, wait.count());
        enter(self, phase::backing_off, wait);
        return;
      }
      src.read_failures = 0;
      src.page = std::move(*page);
      src.next = 0;
      if (src.page.events.empty()) {
        if (src.page.next_position - 1 > src.position)
          continue; // the filter skipped a whole scan window: read on
        src.idle = true;
        continue;
      }
      if (src.page.events.size() == st.spec.options.batch_size)
        enter(self, phase::catching_up);
    }
    if (handle_next(self) == verdict::wait) {
      arm_tick(self);
      return;
    }
    src.position = src.page.events[src.next].position;
    ++src.next;
    ++st.since_write;
    maybe_write(self, false);
  }
  arm_tick(self);
  schedule_pump(self);
}

subscriber_status status_of(subscriber_actor* self) {
  auto& st = self->state;
  subscriber_status s;
  s.name = st.spec.name;
  s.projection = st.spec.projection;
  s.state = shown(st);
  const auto& first = st.sources.front();
  s.checkpoint = first.durable;
  s.position = first.position;
  for (const auto& src : st.sources) {
    std::uint64_t last = src.committed;
    if (src.local) {
      auto end = st.store->last_position();
      last = std::max(last, end ? *end : 0);
    }
    auto lag = last > src.position ? last - src.position : 0;
    s.lag += lag;
    if (src.local && lag > 0 && s.lag_ms == 0)
      if (auto next = st.store->read_all(src.position + 1, 1); next && !next->events.empty())
        s.lag_ms =
          std::max<std::int64_t>(0, (wall_now_ns() - next->events.front().timestamp_ns) / 1000000);
    if (st.cluster_wide()) {
      subscriber_source_status ss;
      ss.node = src.node;
      ss.local = src.local;
      ss.connected = src.local || static_cast<bool>(src.feed);
      ss.checkpoint = src.durable;
      ss.position = src.position;
      ss.lag = lag;
      ss.problem = ss.connected ? std::string{} : src.problem;
      s.sources.push_back(std::move(ss));
    }
  }
  s.dead_letters = add_count(st.dead_letters_stored,
                             st.dead_letters_in_flight + st.dead_letters_unsent);
  s.handled = st.handled;
  s.started_at_cut = first.started_at_cut;
  if (s.state == subscriber_state::retrying || s.state == subscriber_state::stopped)
    s.last_error = st.last_error;
  if (s.state == subscriber_state::held)
    s.last_error = st.held_reason;
  return s;
}

/// Tries each dead letter at `position` (0: all; with `requested_only`, the
/// ones an operator marked) once; removes the ones that succeed, updates the
/// others. Answers `rp` (if valid) once that is committed.
void replay(subscriber_actor* self, std::uint64_t position, caf::response_promise rp,
            bool requested_only = false) {
  auto& st = self->state;
  auto stored = st.store->list_dead_letters(st.spec.name);
  if (!stored) {
    rp.deliver(to_caf_error(stored.error()));
    return;
  }
  // Dead letters not yet written count too; one not yet written that
  // updates a stored one (a failed replay) stands in for it, so each
  // position is tried once.
  std::vector<dead_letter> letters = std::move(*stored);
  const std::size_t in_store = letters.size();
  std::map<std::uint64_t, std::size_t> index;
  for (std::size_t i = 0; i < letters.size(); ++i)
    index.emplace(letters[i].position, i);
  for (auto& dl : st.new_dead_letters)
    if (auto it = index.find(dl.position); it != index.end())
      letters[it->second] = dl;
    else
      letters.push_back(dl);
  auto report = std::make_shared<replay_report>();
  for (std::size_t i = 0; i < letters.size(); ++i) {
    auto& dl = letters[i];
    if ((position != 0 && dl.position != position) || (requested_only && !dl.replay_requested))
      continue;
    dl.replay_requested = false;
    auto page = st.store->read_all(dl.position, 1);
    result<void> r;
    if (!page)
      r = tl::unexpected(page.error());
    else if (page->events.empty() || page->events.front().position != dl.position)
      r = fail(errc::internal, "the event of this dead letter is not in the log",
               std::to_string(dl.position));
    else
      r = call_handler(st, page->events.front());
    auto pending = std::find_if(st.new_dead_letters.begin(), st.new_dead_letters.end(),
                                [&](const dead_letter& d) { return d.position == dl.position; });
    if (r) {
      ++report->succeeded;
      --st.dead_letters_unsent;
      if (pending != st.new_dead_letters.end())
        st.new_dead_letters.erase(pending);
      if (i < in_store)
        st.removals.push_back({dl.subscriber, dl.position});
    } else {
      ++report->failed;
      dl.attempts += 1;
      dl.last_failure_ns = wall_now_ns();
      dl.error = r.error().to_string().substr(0, max_error_text);
      if (pending != st.new_dead_letters.end())
        *pending = dl;
      else
        st.new_dead_letters.push_back(dl);
    }
  }
  if (rp.pending())
    st.next_write_callbacks.push_back([rp, report](const result<void>& r) mutable {
      if (r)
        rp.deliver(*report);
      else
        rp.deliver(to_caf_error(r.error()));
    });
  maybe_write(self, true);
}

void discard(subscriber_actor* self, std::uint64_t position, caf::response_promise rp) {
  auto& st = self->state;
  auto stored = st.store->list_dead_letters(st.spec.name);
  if (!stored) {
    rp.deliver(to_caf_error(stored.error()));
    return;
  }
  std::uint64_t removed = 0;
  std::set<std::uint64_t> in_store;
  for (const auto& dl : *stored)
    if (position == 0 || dl.position == position) {
      st.removals.push_back({dl.subscriber, dl.position});
      in_store.insert(dl.position);
      ++removed;
    }
  // A letter not yet written is counted once, even when it updates a stored one.
  auto& fresh = st.new_dead_letters;
  auto kept = std::remove_if(fresh.begin(), fresh.end(), [&](const dead_letter& dl) {
    bool match = position == 0 || dl.position == position;
    if (match && in_store.count(dl.position) == 0)
      ++removed;
    return match;
  });
  fresh.erase(kept, fresh.end());
  st.dead_letters_unsent -= static_cast<std::int64_t>(removed);
  st.next_write_callbacks.push_back([rp, removed](const result<void>& r) mutable {
    if (r)
      rp.deliver(removed);
    else
      rp.deliver(to_caf_error(r.error()));
  });
  maybe_write(self, true);
}

/// Enters `held` for `why`: every source idle, a remote one's problem says why.
void enter_held(subscriber_actor* self, std::string why) {
  auto& st = self->state;
  enter(self, phase::held);
  st.held_reason = std::move(why);
  for (auto& src : st.sources) {
    src.idle = true;
    if (!src.local)
      src.problem = st.held_reason;
  }
}

/// Replays the dead letters an operator marked for replay, if there are any.
/// A cluster-wide subscriber's cannot be replayed yet.
void replay_requested(subscriber_actor* self) {
  auto& st = self->state;
  if (st.cluster_wide())
    return;
  if (auto letters = st.store->list_dead_letters(st.spec.name);
      letters && std::any_of(letters->begin(), letters->end(), [](const dead_letter& dl) {
        return dl.replay_requested;
      }))
    replay(self, 0, caf::response_promise{}, true);
}

/// What a held subscriber answers for what only handling events would give.
error not_handled_here(const subscriber_data& st) {
  return {errc::unavailable, st.held_reason + ": its handler is not called here", st.spec.name};
}

/// Stops handling events for `why` (this node is a standby): drops what it
/// read and its feeds, and saves its progress. A projection is never held.
void hold(subscriber_actor* self, std::string why) {
  auto& st = self->state;
  if (st.spec.projection)
    return;
  if (st.ph == phase::held) {
    st.held_reason = std::move(why);
    return;
  }
  if (!allowed(st.ph, phase::held))
    return; // halted, rebuilding or stopping: it handles nothing anyway
  enter_held(self, std::move(why));
  st.attempts = 0;
  for (std::size_t i = 0; i < st.sources.size(); ++i) {
    auto& src = st.sources[i];
    src.page = {};
    src.next = 0;
    if (!src.local)
      resubscribe(self, i, {}); // stops the feed; no hello while held
  }
  st.log->warn("{}: {}; it handles nothing until this node is promoted", st.spec.name,
               st.held_reason);
  // Waiters for what it has handled get the write below; the others would
  // wait for a promotion.
  auto handled = st.sources.front().position;
  auto& ws = st.waiters;
  for (auto& w : ws)
    if (w.first > handled)
      w.second.deliver(to_caf_error(not_handled_here(st)));
  ws.erase(std::remove_if(ws.begin(), ws.end(), [&](const auto& w) { return w.first > handled; }),
           ws.end());
  maybe_write(self, true);
}

/// Starts a held subscriber again: each source from the further of its own
/// checkpoint and the owner's replicated one.
void release(subscriber_actor* self) {
  auto& st = self->state;
  if (st.ph != phase::held)
    return;
  for (auto& src : st.sources) {
    auto owners =
      st.store->load_checkpoint(persistence::replicated_checkpoint_name(src.checkpoint));
    std::uint64_t theirs = owners && *owners ? **owners : 0;
    if (!owners)
      st.log->warn("{}: cannot load the owner's checkpoint {}: {}; starting from its own",
                   st.spec.name, src.checkpoint, owners.error().to_string());
    auto mine = src.position;
    src.position = std::max(mine, theirs);
    src.received = src.position;
    src.page = {};
    src.next = 0;
    src.idle = false;
    (void)skip_to_cut(st, src);
    st.log->info("{}: released, this node serves the log now: starting after position {}{} (its "
                 "own checkpoint {}, the owner's {}); the owner's events after that are handled "
                 "again",
                 st.spec.name, src.position,
                 src.node.empty() ? std::string{} : " of node " + src.node + "'s log", mine,
                 owners && *owners ? std::to_string(theirs) : std::string{"none"});
  }
  st.held_reason.clear();
  enter(self, phase::catching_up);
  for (std::size_t i = 0; i < st.sources.size(); ++i)
    if (!st.sources[i].local) {
      st.sources[i].idle = true; // until its feed delivers
      resubscribe(self, i, "no feed yet");
    }
  schedule_pump(self);
  arm_tick(self);
}

caf::behavior subscriber(subscriber_actor* self, const persistence::event_store* store,
                         caf::actor journal, subscriber_spec spec, caf::actor gateway) {
  auto& init = self->state;
  init.store = store;
  init.journal = std::move(journal);
  init.gateway = std::move(gateway);
  init.spec = std::move(spec);
  init.log = logger(subscriber_logger);
  if (init.spec.projection)
    init.model.emplace(*store, init.spec.name);
  if (init.spec.sources.empty()) {
    init.sources.emplace_back();
    init.sources.back().checkpoint = init.spec.name;
  }
  for (const auto& s : init.spec.sources) {
    source src;
    src.node = s.node;
    src.local = s.local;
    src.checkpoint = init.spec.name + "@" + s.node;
    // This node's log first: the one `wait_for` and the top of status follow.
    if (src.local)
      init.sources.insert(init.sources.begin(), std::move(src));
    else
      init.sources.push_back(std::move(src));
  }
  for (auto& src : init.sources) {
    if (init.ph == phase::halted)
      break;
    auto saved = store->load_checkpoint(src.checkpoint);
    if (saved && *saved) {
      src.position = src.durable = **saved;
    } else if (saved && init.spec.options.start == start_position::end && src.local) {
      auto last = store->last_position();
      src.position = last ? *last : 0; // saved by the first checkpoint
    } else if (!saved) {
      init.last_error = saved.error().to_string();
      enter(self, phase::halted);
      init.log->error("{}: cannot load its checkpoint {}: {}; not started", init.spec.name,
                      src.checkpoint, init.last_error);
      break;
    }
    src.received = src.position;
    // A new subscriber, or one whose checkpoint retention passed.
    (void)skip_to_cut(init, src);
    // The one scan of the dead-letter table; counts are kept from here on.
    if (auto stored = store->count_dead_letters(src.checkpoint); stored)
      init.dead_letters_stored += *stored;
    else
      init.log->warn("{}: cannot count its dead letters: {}; counting from 0", src.checkpoint,
                     stored.error().to_string());
    if (init.ph != phase::halted)
      init.log->info("{}: started after position {}{}", init.spec.name, src.position,
                     src.node.empty() ? std::string{} : " of node " + src.node + "'s log");
  }
  for (auto& src : init.sources)
    src.demand_pending = src.local;
  self->send(init.journal, subscribe_atom::value, caf::actor_cast<caf::actor>(self));
  if (!init.spec.held.empty() && init.ph != phase::halted && !init.spec.projection) {
    enter_held(self, init.spec.held);
    init.log->info("{}: {}; it handles nothing until this node is promoted", init.spec.name,
                   init.held_reason);
  }
  if (init.ph != phase::halted && init.ph != phase::held)
    for (std::size_t i = 0; i < init.sources.size(); ++i)
      if (!init.sources[i].local) {
        init.sources[i].idle = true; // until its feed delivers
        resubscribe(self, i, "no feed yet");
      }
  self->set_down_handler([self](caf::down_msg& dm) {
    auto& st = self->state;
    for (std::size_t i = 0; i < st.sources.size(); ++i)
      if (st.sources[i].feed && st.sources[i].feed.address() == dm.source)
        resubscribe(self, i, "the feed was lost: " + self->system().render(dm.reason));
  });
  schedule_pump(self);
  // Dead letters an operator marked for replay while the service was down
  // (a held subscriber replays them once released).
  if (init.ph != phase::held)
    replay_requested(self);
  return {
    [=](pump_atom) { pump(self); },
    [=](committed_atom, std::uint64_t position) {
      auto& st = self->state;
      for (auto& src : st.sources)
        if (src.local) {
          src.demand_pending = false;
          src.committed = std::max(src.committed, position);
          src.idle = false;
        }
      schedule_pump(self);
    },
    // -- cluster-wide: the feeds of other nodes' logs ---------------------------
    [=](feed_atom, std::string& owner, caf::node_id& node) {
      // The gateway sent the hello for `owner`'s log to `node`.
      auto& st = self->state;
      const auto& sender = self->current_sender();
      if (!sender || sender->node() != self->home_system().node())
        return;
      for (auto& src : st.sources)
        if (!src.local && src.node == owner && !src.feed)
          src.feed_node = node;
    },
    [=](feed_atom, feed_page& page) { on_page(self, page); },
    [=](feed_atom) {
      // The hello retry timer: again for each source without a feed.
      auto& st = self->state;
      st.hello_due = false;
      if (st.ph == phase::held)
        return;
      bool waiting = false;
      for (std::size_t i = 0; i < st.sources.size(); ++i)
        if (!st.sources[i].local && !st.sources[i].feed) {
          waiting = true;
          if (st.gateway)
            say_hello(self, i);
        }
      if (waiting && st.ph != phase::stopping)
        arm_hello(self);
    },
    [=](retry_atom, std::uint64_t epoch) {
      retry_due(self, epoch);
      schedule_pump(self);
    },
    [=](tick_atom) {
      self->state.tick_pending = false;
      maybe_write(self, true);
      arm_tick(self);
    },
    [=](status_atom) { return status_of(self); },
    [=](wait_atom, std::uint64_t position) -> caf::result<bool> {
      auto& st = self->state;
      if (st.sources.front().durable >= position)
        return true;
      // Held, it reaches what it handled with its next write, and the rest
      // only after a promotion: no silent wait for that.
      if (st.ph == phase::held && position > st.sources.front().position)
        return to_caf_error(not_handled_here(st));
      auto rp = self->make_response_promise();
      st.waiters.emplace_back(position, rp);
      maybe_write(self, false);
      return rp;
    },
    [=](rebuild_atom) -> caf::result<bool> {
      if (!from_here(self))
        return caf::sec::unexpected_message;
      auto& st = self->state;
      if (st.cluster_wide())
        return to_caf_error({errc::invalid_argument,
                             "a cluster-wide projection cannot be rebuilt yet "
                             "(docs/cluster.md#cluster-wide-subscribers)",
                             st.spec.name});
      if (!st.model)
        return to_caf_error(
          {errc::invalid_argument, "only a projection can be rebuilt", st.spec.name});
      if (st.ph == phase::rebuilding)
        return to_caf_error({errc::invalid_argument, "a rebuild is already running", st.spec.name});
      if (st.ph == phase::stopping)
        return to_caf_error({errc::invalid_argument, "already stopping", st.spec.name});
      enter(self, phase::rebuilding);
      st.rebuild_promise = self->make_response_promise();
      start_rebuild(self);
      return st.rebuild_promise;
    },
    [=](hold_atom, std::string& why) -> caf::result<bool> {
      if (!from_here(self))
        return caf::sec::unexpected_message;
      hold(self, std::move(why));
      return true;
    },
    [=](unhold_atom) -> caf::result<bool> {
      if (!from_here(self))
        return caf::sec::unexpected_message;
      bool was_held = self->state.ph == phase::held;
      release(self);
      if (was_held)
        replay_requested(self);
      return true;
    },
    [=](replay_atom, std::uint64_t position) -> caf::result<replay_report> {
      if (!from_here(self))
        return caf::sec::unexpected_message;
      if (self->state.ph == phase::held)
        return to_caf_error(not_handled_here(self->state));
      if (self->state.cluster_wide())
        return to_caf_error({errc::invalid_argument,
                             "dead letters of a cluster-wide subscriber cannot be replayed yet",
                             self->state.spec.name});
      auto rp = self->make_response_promise();
      replay(self, position, rp);
      return rp;
    },
    [=](discard_atom, std::uint64_t position) -> caf::result<std::uint64_t> {
      if (!from_here(self))
        return caf::sec::unexpected_message;
      if (self->state.cluster_wide())
        return to_caf_error({errc::invalid_argument,
                             "dead letters of a cluster-wide subscriber cannot be discarded "
                             "through it yet",
                             self->state.spec.name});
      auto rp = self->make_response_promise();
      discard(self, position, rp);
      return rp;
    },
    [=](stop_atom) -> caf::result<bool> {
      if (!from_here(self))
        return caf::sec::unexpected_message;
      auto& st = self->state;
      if (st.ph == phase::stopping)
        return to_caf_error({errc::invalid_argument, "already stopping", st.spec.name});
      if (st.ph == phase::rebuilding && st.wr != writer::clearing)
        st.rebuild_promise.deliver(
          to_caf_error({errc::unavailable, "stopped before the rebuild started", st.spec.name}));
      enter(self, phase::stopping);
      st.stop_promise = self->make_response_promise();
      finish_stop(self);
      return st.stop_promise;
    },
  };
}

} // namespace

const char* to_string(subscriber_state s) {
  switch (s) {
    case subscriber_state::catching_up: return "catching_up";
    case subscriber_state::live: return "live";
    case subscriber_state::retrying: return "retrying";
    case subscriber_state::stopped: return "stopped";
    case subscriber_state::held: return "held";
  }
  return "unknown";
}

// -- read_model ----------------------------------------------------------------

read_model::read_model(const persistence::event_store& store, std::string space)
    : store_(&store), space_(std::move(space)) {}

result<std::optional<std::string>> read_model::get(std::string_view key) const {
  for (auto it = staged_.rbegin(); it != staged_.rend(); ++it)
    if (it->first == key)
      return it->second;
  for (const changes* layer : {&unsaved_, &in_flight_})
    if (auto it = layer->find(key); it != layer->end())
      return it->second;
  return store_->kv_get(space_, key);
}

result<void> read_model::put(std::string key, std::string value) {
  if (key.empty() || key.size() > 255)
    return fail(errc::invalid_argument, "read model keys are 1-255 bytes", space_ + "/" + key);
  staged_.emplace_back(std::move(key), std::move(value));
  return {};
}

result<void> read_model::erase(std::string key) {
  if (key.empty() || key.size() > 255)
    return fail(errc::invalid_argument, "read model keys are 1-255 bytes", space_ + "/" + key);
  staged_.emplace_back(std::move(key), std::nullopt);
  return {};
}

void read_model::keep_event() {
  for (auto& [key, value] : staged_) {
    if (auto it = unsaved_.find(key); it != unsaved_.end())
      it->second = std::move(value);
    else
      unsaved_.emplace(std::move(key), std::move(value));
  }
  staged_.clear();
}

read_model::changes read_model::take_unsaved() {
  changes out = std::move(unsaved_);
  unsaved_.clear();
  return out;
}

void read_model::reset() {
  staged_.clear();
  unsaved_.clear();
  in_flight_.clear();
}

// -- spawning --------------------------------------------------------------------

result<void> validate_subscriber(const subscriber_spec& spec) {
  if (!persistence::is_valid_type_name(spec.name))
    return fail(errc::invalid_argument, "subscriber names are 1-255 printable bytes without spaces",
                spec.name);
  if (persistence::is_replicated_checkpoint_name(spec.name))
    return fail(errc::invalid_argument,
                "subscriber names beginning with "
                  + std::string{persistence::replicated_checkpoint_prefix}
                  + " are reserved for the checkpoints a standby copies from its owner",
                spec.name);
  const auto& o = spec.options;
  if (o.checkpoint_every == 0 || o.checkpoint_interval.count() <= 0)
    return fail(errc::invalid_argument, "checkpoint_every and checkpoint_interval must be positive",
                spec.name);
  if (o.max_attempts == 0)
    return fail(errc::invalid_argument, "max_attempts must be at least 1", spec.name);
  if (o.initial_backoff.count() < 0 || o.max_backoff < o.initial_backoff
      || !(o.backoff_multiplier >= 1.0))
    return fail(errc::invalid_argument,
                "backoffs must satisfy 0 <= initial_backoff <= max_backoff and a multiplier >= 1",
                spec.name);
  if (o.batch_size == 0)
    return fail(errc::invalid_argument, "batch_size must be positive", spec.name);
  if (o.cluster_wide && o.start != start_position::beginning)
    return fail(errc::invalid_argument, "a cluster-wide subscriber starts at the beginning",
                spec.name);
  if (o.cluster_wide && spec.name.size() + 1 + 64 > 255)
    return fail(errc::invalid_argument,
                "a cluster-wide subscriber's name leaves room for \"@<node>\" in 255 bytes",
                spec.name);
  if (!spec.handle)
    return fail(errc::invalid_argument, "a subscriber needs a handler", spec.name);
  return {};
}

caf::actor spawn_subscriber(caf::actor_system& sys, const persistence::event_store& store,
                            caf::actor journal, subscriber_spec spec, placement where,
                            caf::actor gateway) {
  if (where == placement::scheduled)
    return sys.spawn(subscriber, &store, std::move(journal), std::move(spec), std::move(gateway));
  return sys.spawn<caf::detached>(subscriber, &store, std::move(journal), std::move(spec),
                                  std::move(gateway));
}

} // namespace cairn::actors
