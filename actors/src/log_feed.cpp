#include "cairn/actors/log_feed.hpp"

#include <algorithm>
#include <cstring>
#include <deque>
#include <utility>

#include <caf/all.hpp>

#include "cairn/actors/log.hpp"
#include "cairn/actors/messages.hpp"
#include "cairn/persistence/event_store.hpp"

namespace cairn::actors {

void add_feed_message_types(caf::actor_system_config& cfg) {
  cfg.add_message_type<feed_hello>("cairn.feed_hello");
  cfg.add_message_type<feed_event>("cairn.feed_event");
  cfg.add_message_type<std::vector<feed_event>>("cairn.feed_events");
  cfg.add_message_type<feed_page>("cairn.feed_page");
}

feed_event to_feed_event(const persistence::recorded_event& ev) {
  feed_event out;
  out.stream = ev.stream;
  out.version = ev.version;
  out.position = ev.position;
  out.id.assign(reinterpret_cast<const char*>(ev.id.bytes.data()), ev.id.bytes.size());
  out.timestamp_ns = ev.timestamp_ns;
  out.type = ev.type;
  out.schema_version = ev.schema_version;
  out.correlation_id = ev.meta.correlation_id;
  out.causation_id = ev.meta.causation_id;
  out.command_id = ev.meta.command_id;
  out.tenant = ev.meta.tenant;
  out.user = ev.meta.user;
  out.subject = ev.meta.subject;
  out.payload = ev.payload;
  return out;
}

result<std::vector<persistence::recorded_event>> check_feed_page(const feed_page& page,
                                                                 std::uint64_t position) {
  auto bad = [&](const std::string& what) {
    return fail(errc::corrupted, "a log feed page " + what, "after " + std::to_string(page.after));
  };
  if (page.after != position)
    return bad("does not start at " + std::to_string(position));
  if (page.next_position <= page.after)
    return bad("ends before it starts (next position " + std::to_string(page.next_position) + ")");
  std::vector<persistence::recorded_event> out;
  out.reserve(page.events.size());
  std::uint64_t last = page.after;
  for (const auto& e : page.events) {
    if (e.position <= last || e.position >= page.next_position)
      return bad("holds position " + std::to_string(e.position) + " out of order or range");
    if (e.id.size() != 16)
      return bad("holds an event id of " + std::to_string(e.id.size()) + " bytes");
    if (e.stream.empty() || e.stream.size() > 255 || e.type.empty() || e.type.size() > 255)
      return bad("holds a stream name or type outside 1-255 bytes at position "
                 + std::to_string(e.position));
    if (e.version == 0)
      return bad("holds version 0 at position " + std::to_string(e.position));
    last = e.position;
    persistence::recorded_event ev;
    ev.stream = e.stream;
    ev.version = e.version;
    ev.position = e.position;
    std::memcpy(ev.id.bytes.data(), e.id.data(), 16);
    ev.timestamp_ns = e.timestamp_ns;
    ev.type = e.type;
    ev.schema_version = e.schema_version;
    ev.meta.correlation_id = e.correlation_id;
    ev.meta.causation_id = e.causation_id;
    ev.meta.command_id = e.command_id;
    ev.meta.tenant = e.tenant;
    ev.meta.user = e.user;
    ev.meta.subject = e.subject;
    ev.payload = e.payload;
    out.push_back(std::move(ev));
  }
  return out;
}

namespace {

struct in_flight_page {
  std::uint64_t last = 0; ///< The page's next_position - 1.
  std::size_t bytes = 0;
};

struct feed_state {
  const persistence::event_store* store = nullptr;
  caf::actor journal;
  caf::actor sink;
  feed_hello hello;
  feed_config cfg;
  persistence::read_filter filter;
  std::uint64_t next = 1;      ///< The next position to read.
  std::uint64_t committed = 0; ///< The durable end of the log, from the journal.
  std::deque<in_flight_page> unacked;
  std::size_t unacked_bytes = 0;
  bool waiting_for_commit = false;
  bool greeted = false; ///< A page went out: the subscriber knows this feed.
  std::shared_ptr<spdlog::logger> log = logger(cluster_logger);
  static inline const char* name = "cairn.log_feed";
};

using feed_actor = caf::stateful_actor<feed_state>;

std::size_t event_bytes(const feed_event& e) {
  return e.stream.size() + e.type.size() + e.payload.size() + e.correlation_id.size()
         + e.causation_id.size() + e.command_id.size() + e.tenant.size() + e.user.size()
         + e.subject.size() + 64;
}

/// Sends pages while the window has room and the durable log has more.
void pump(feed_actor* self) {
  auto& st = self->state;
  while (st.next <= st.committed && st.unacked_bytes < st.cfg.window) {
    auto read = st.store->read_all(st.next, st.cfg.page_events, st.filter);
    if (!read && read.error().code == errc::truncated) {
      // Retention removed what the subscriber has not seen: it starts at
      // the first position kept, and its status says where.
      auto first = st.store->first_position();
      if (first && *first > st.next) {
        st.log->warn("feed of {} for {}: positions {}-{} were removed by retention", st.hello.owner,
                     st.hello.node, st.next, *first - 1);
        st.next = *first;
        continue;
      }
    }
    if (!read) {
      st.log->error("feed of {} for {} at {}: {}; it stops (the subscriber says hello again)",
                    st.hello.owner, st.hello.node, st.next, read.error().to_string());
      self->quit();
      return;
    }
    feed_page page;
    page.generation = st.hello.generation;
    page.after = st.next - 1;
    page.committed = st.committed;
    std::size_t bytes = 0;
    std::uint64_t end = read->next_position;
    for (auto& ev : read->events) {
      if (ev.position > st.committed) { // only what the journal reported durable
        end = ev.position;
        break;
      }
      auto fe = to_feed_event(ev);
      bytes += event_bytes(fe);
      page.events.push_back(std::move(fe));
      if (bytes >= st.cfg.page_bytes) {
        end = ev.position + 1;
        break;
      }
    }
    end = std::min(end, st.committed + 1);
    if (end <= st.next)
      break;
    page.next_position = end;
    st.unacked.push_back({end - 1, bytes + 64});
    st.unacked_bytes += bytes + 64;
    st.next = end;
    st.greeted = true;
    self->send(st.sink, feed_atom::value, std::move(page));
  }
  if (!st.greeted) {
    // An empty page, so that a subscriber that is up to date learns at once
    // that this feed serves it (it says hello again until a page comes).
    feed_page page;
    page.generation = st.hello.generation;
    page.after = st.next - 1;
    page.next_position = st.next;
    page.committed = st.committed;
    self->send(st.sink, feed_atom::value, std::move(page));
  }
  st.greeted = true;
  if (st.next > st.committed && !st.waiting_for_commit) {
    st.waiting_for_commit = true;
    self->send(st.journal, demand_atom::value, caf::actor_cast<caf::actor>(self));
  }
}

caf::behavior log_feed(feed_actor* self, const persistence::event_store* store, caf::actor journal,
                       feed_hello hello, caf::actor sink, feed_config cfg) {
  auto& init = self->state;
  init.store = store;
  init.journal = std::move(journal);
  init.sink = std::move(sink);
  init.cfg = cfg;
  init.filter.categories = hello.categories;
  init.filter.types = hello.types;
  init.filter.tenant = hello.tenant;
  init.next = hello.after + 1;
  init.hello = std::move(hello);
  init.log->info("feed of {}'s log for subscriber {} on node {} from position {}", init.hello.owner,
                 init.hello.name, init.hello.node, init.next);
  self->monitor(init.sink);
  self->set_down_handler([self](caf::down_msg& dm) {
    if (dm.source == self->state.sink.address())
      self->quit();
  });
  self->send(init.journal, subscribe_atom::value, caf::actor_cast<caf::actor>(self));
  return {
    [self](committed_atom, std::uint64_t position) {
      auto& st = self->state;
      st.waiting_for_commit = false;
      st.committed = std::max(st.committed, position);
      pump(self);
    },
    [self](feed_ack_atom, std::uint64_t generation, std::uint64_t position) {
      auto& st = self->state;
      if (self->current_sender() != st.sink.address() || generation != st.hello.generation)
        return;
      while (!st.unacked.empty() && st.unacked.front().last <= position) {
        st.unacked_bytes -= st.unacked.front().bytes;
        st.unacked.pop_front();
      }
      pump(self);
    },
    [self](stop_atom) {
      if (self->current_sender() == self->state.sink.address())
        self->quit();
    },
  };
}

} // namespace

caf::actor spawn_log_feed(caf::actor_system& sys, const persistence::event_store& store,
                          caf::actor journal, feed_hello hello, caf::actor sink, feed_config cfg) {
  return sys.spawn<caf::detached>(log_feed, &store, std::move(journal), std::move(hello),
                                  std::move(sink), cfg);
}

} // namespace cairn::actors
