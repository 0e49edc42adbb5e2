// Cluster-wide subscribers (docs/cluster.md#cluster-wide-subscribers) on
// CAF's deterministic test coordinator: this node's log through the real
// journal, and another node's log through pages the test hands over as that
// node's feed would, with the test standing in for the gateway. Also the
// checks on a page a peer sent (check_feed_page).

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include <caf/all.hpp>
#include <catch2/catch.hpp>

#include "cairn/actors/error.hpp"
#include "cairn/actors/journal.hpp"
#include "cairn/actors/log_feed.hpp"
#include "cairn/actors/messages.hpp"
#include "cairn/actors/metrics.hpp"
#include "cairn/actors/subscriber.hpp"
#include "cairn/persistence/event_store.hpp"
#include "support/journal_fixture.hpp"

using namespace std::chrono_literals;
using namespace cairn::actors;
using cairn::errc;
namespace cp = cairn::persistence;

namespace {

feed_event event_at(std::uint64_t position, std::string stream = "s-9", std::uint64_t version = 1) {
  feed_event e;
  e.stream = std::move(stream);
  e.version = version;
  e.position = position;
  e.id.assign(16, 'x');
  e.type = "happened";
  e.payload = "p";
  return e;
}

feed_page page_of(std::uint64_t after, std::uint64_t next, std::vector<feed_event> events,
                  std::uint64_t generation = 1) {
  feed_page p;
  p.generation = generation;
  p.after = after;
  p.next_position = next;
  p.committed = next - 1;
  p.events = std::move(events);
  return p;
}

struct fixture : cairn::test::journal_fixture {
  caf::actor sub;

  /// A projection over this node's log ("A") and node B's, counting events
  /// per stream in its read model.
  void spawn(const caf::actor& gateway) {
    subscriber_spec spec;
    spec.name = "counts";
    spec.projection = true;
    spec.node_id = "A";
    spec.options.cluster_wide = true;
    spec.options.checkpoint_interval = std::chrono::hours{1};
    spec.options.checkpoint_every = 1;
    spec.sources = {{"B", false}, {"A", true}};
    spec.handle = [](const cp::recorded_event& ev, read_model* model) -> cairn::result<void> {
      auto n = model->get_as<std::uint64_t>(ev.stream);
      if (!n)
        return tl::unexpected(n.error());
      return model->put_as(ev.stream, n->value_or(0) + 1);
    };
    REQUIRE(validate_subscriber(spec));
    sub = spawn_subscriber(*sys, *store, journal, std::move(spec), placement::scheduled, gateway);
    subscribers.push_back(sub); // killed before the journal
    sched->run();
  }

  std::uint64_t count(const std::string& stream) {
    auto v = store->kv_get("counts", stream);
    REQUIRE(v);
    if (!*v)
      return 0;
    auto n = cp::decode_payload<std::uint64_t>(**v);
    REQUIRE(n);
    return *n;
  }

  std::uint64_t checkpoint(const std::string& name) {
    auto c = store->load_checkpoint(name);
    REQUIRE(c);
    return c->value_or(0);
  }

  subscriber_status status() {
    caf::scoped_actor self{*sys};
    auto h = self->request(sub, caf::infinite, status_atom::value);
    sched->run();
    subscriber_status out;
    h.receive([&](subscriber_status& s) { out = std::move(s); }, [](caf::error&) {});
    return out;
  }
};

/// The hello the subscriber sent to the test's gateway stand-in.
feed_hello next_hello(caf::scoped_actor& gw) {
  feed_hello out;
  bool got = false;
  gw->receive([&](feed_atom, std::string&, feed_hello& h, caf::actor&) {
    out = std::move(h);
    got = true;
  });
  REQUIRE(got);
  return out;
}

} // namespace

TEST_CASE("a feed page that starts where the subscriber stands is accepted in store form",
          "[unit][actors][feed]") {
  auto ok = check_feed_page(page_of(4, 9, {event_at(5), event_at(7, "s-2", 3)}), 4);
  REQUIRE(ok);
  REQUIRE(ok->size() == 2);
  CHECK((*ok)[1].position == 7);
  CHECK((*ok)[1].stream == "s-2");
  CHECK((*ok)[1].version == 3);
  CHECK((*ok)[1].id.bytes[0] == static_cast<std::uint8_t>('x'));
  CHECK(check_feed_page(page_of(4, 5, {}), 4)); // the filter skipped everything
}

TEST_CASE("a feed page with a gap, disorder, or bytes out of bounds is refused as corrupted",
          "[unit][actors][feed]") {
  auto refused = [](const feed_page& p, std::uint64_t at) {
    auto r = check_feed_page(p, at);
    return !r && r.error().code == errc::corrupted;
  };
  CHECK(refused(page_of(3, 9, {event_at(5)}), 4));              // starts elsewhere
  CHECK(refused(page_of(4, 4, {}), 4));                         // ends before it starts
  CHECK(refused(page_of(4, 9, {event_at(6), event_at(6)}), 4)); // not ascending
  CHECK(refused(page_of(4, 9, {event_at(4)}), 4));              // at or before the start
  CHECK(refused(page_of(4, 9, {event_at(9)}), 4));              // past its end
  auto short_id = event_at(5);
  short_id.id = "abc";
  CHECK(refused(page_of(4, 9, {short_id}), 4));
  CHECK(refused(page_of(4, 9, {event_at(5, "")}), 4));
  CHECK(refused(page_of(4, 9, {event_at(5, std::string(256, 's'))}), 4));
  CHECK(refused(page_of(4, 9, {event_at(5, "s-1", 0)}), 4));
}

TEST_CASE("a cluster-wide projection counts both logs, with one checkpoint per source node",
          "[unit][actors][feed]") {
  fixture f;
  f.append_through_journal(3);
  caf::scoped_actor gw{*f.sys};
  f.spawn(gw);
  auto h = next_hello(gw);
  CHECK(h.owner == "B");
  CHECK(h.node == "A");
  CHECK(h.after == 0);
  // The gateway says where the hello went; this test is node B's feed.
  gw->send(f.sub, feed_atom::value, std::string{"B"}, f.sys->node());
  f.sched->run();
  auto s = f.status();
  REQUIRE(s.sources.size() == 2);
  CHECK(s.sources[0].node == "A"); // this node's log first
  CHECK(s.sources[0].connected);
  CHECK_FALSE(s.sources[1].connected); // no page from B yet
  gw->send(f.sub, feed_atom::value,
           page_of(0, 6, {event_at(2), event_at(3, "s-9", 2), event_at(5, "s-9", 3)},
                   h.generation));
  f.sched->run();
  f.sched->advance_time(1s);
  f.sched->run();
  CHECK(f.count("s-1") == 3);
  CHECK(f.count("s-9") == 3);
  CHECK(f.checkpoint("counts@A") == 3);
  CHECK(f.checkpoint("counts@B") == 5);
  s = f.status();
  CHECK(s.sources[1].connected);
  CHECK(s.sources[1].position == 5);
  // The feed was acknowledged up to what the subscriber read.
  bool acked = false;
  gw->receive([&](feed_ack_atom, std::uint64_t g, std::uint64_t pos) {
    acked = g == h.generation && pos == 5;
  });
  CHECK(acked);

  SECTION("a page with a gap is refused: nothing of it is counted, and it says hello again") {
    gw->send(f.sub, feed_atom::value, page_of(7, 9, {event_at(8)}, h.generation));
    f.sched->run();
    CHECK(f.count("s-9") == 3);
    bool stopped = false;
    gw->receive([&](stop_atom) { stopped = true; }); // the refused feed is stopped
    CHECK(stopped);
    auto again = next_hello(gw);
    CHECK(again.after == 5);
    CHECK(again.generation != h.generation);
    // A page of the old subscription is no longer taken.
    gw->send(f.sub, feed_atom::value, page_of(5, 7, {event_at(6)}, h.generation));
    f.sched->run();
    CHECK(f.count("s-9") == 3);
    CHECK_FALSE(f.status().sources[1].connected);
  }

  SECTION("a restarted projection resumes each source after its own checkpoint") {
    caf::anon_send_exit(f.sub, caf::exit_reason::kill);
    f.sched->run();
    f.append_through_journal(2);
    caf::scoped_actor gw2{*f.sys};
    f.spawn(gw2);
    auto h2 = next_hello(gw2);
    CHECK(h2.after == 5);
    gw2->send(f.sub, feed_atom::value, std::string{"B"}, f.sys->node());
    gw2->send(f.sub, feed_atom::value, page_of(5, 8, {event_at(7, "s-9", 4)}, h2.generation));
    f.sched->run();
    f.sched->advance_time(1s);
    f.sched->run();
    CHECK(f.count("s-1") == 5);
    CHECK(f.count("s-9") == 4);
    CHECK(f.checkpoint("counts@A") == 5);
    CHECK(f.checkpoint("counts@B") == 7);
  }
}
