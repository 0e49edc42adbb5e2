// The standby's sink on CAF's deterministic test coordinator, over a real
// journal and real LMDB stores: frames that arrive while one is with the
// journal are applied together, in one transaction, and acknowledged once
// (docs/cluster.md#the-protocol).

#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include <caf/all.hpp>
#include <catch2/catch.hpp>
#include <cereal/types/string.hpp>

#include "cairn/actors/journal.hpp"
#include "cairn/actors/messages.hpp"
#include "cairn/actors/metrics.hpp"
#include "cairn/actors/replication.hpp"
#include "cairn/persistence/codec.hpp"
#include "cairn/persistence/event_store.hpp"
#include "cairn/persistence/personal.hpp"
#include "support/temp_dir.hpp"

using namespace cairn::actors;
namespace cp = cairn::persistence;

namespace {

std::unique_ptr<cp::event_store> open_at(const std::string& dir) {
  cp::store_options o;
  o.durability = cp::durability::no_sync;
  o.initial_map_size = std::size_t{16} << 20;
  auto opened = cp::open_store(dir, o);
  REQUIRE(opened);
  return std::move(*opened);
}

/// The owner's log: `n` single-event appends to three streams, as one frame.
cp::log_frame owner_log(cp::event_store& owner, std::size_t n) {
  cp::write_batch b;
  for (std::size_t i = 0; i < n; ++i) {
    cp::append_request req;
    req.stream = "s-" + std::to_string(i % 3);
    req.events.push_back(cp::event_data{"happened", 1, "payload " + std::to_string(i), {}, {}});
    b.appends.push_back(std::move(req));
  }
  auto ok = owner.append_batch(b);
  REQUIRE(ok);
  auto frame = owner.read_frame(1, std::size_t{1} << 20);
  REQUIRE(frame);
  REQUIRE(frame->records.size() == n);
  return std::move(*frame);
}

/// Records [from, to] of `all` (1-based positions) as a frame of their own.
cp::log_frame slice(const cp::log_frame& all, std::uint64_t from, std::uint64_t to) {
  cp::log_frame f;
  f.first_position = from;
  f.records.assign(all.records.begin() + static_cast<std::ptrdiff_t>(from - 1),
                   all.records.begin() + static_cast<std::ptrdiff_t>(to));
  return f;
}

/// A deterministic actor system (CAF's test coordinator) with a scheduled
/// journal over `store`; the journal is killed and the system stopped at the end.
struct journal_node {
  explicit journal_node(cp::event_store& store) {
    cfg.set("scheduler.policy", caf::atom("testing"));
    sys = std::make_unique<caf::actor_system>(cfg);
    sched = &dynamic_cast<caf::scheduler::test_coordinator&>(sys->scheduler());
    journal = spawn_journal(*sys, store, m, placement::scheduled);
  }
  journal_node(const journal_node&) = delete;
  journal_node& operator=(const journal_node&) = delete;
  ~journal_node() {
    caf::anon_send_exit(journal, caf::exit_reason::kill);
    sched->run();
    sys.reset();
  }

  metrics m;
  caf::actor_system_config cfg;
  std::unique_ptr<caf::actor_system> sys;
  caf::scheduler::test_coordinator* sched = nullptr;
  caf::actor journal;
};

/// The sink config of standby S following owner A: its hellos go to
/// `gateway`, a cut tail is saved in `dir`.
sink_config standby_s(const caf::scoped_actor& gateway, const std::string& dir) {
  sink_config sc;
  sc.node_id = "S";
  sc.owner = "A";
  sc.gateway = caf::actor{gateway};
  sc.truncation_dir = dir;
  return sc;
}

} // namespace

TEST_CASE("frames that arrive while the replica applies one are applied together and "
          "acknowledged once",
          "[unit][actors][replication]") {
  cairn::test::temp_dir owner_dir, replica_dir;
  auto owner = open_at(owner_dir.path());
  auto replica = open_at(replica_dir.path());
  auto all = owner_log(*owner, 40);
  journal_node node{*replica};
  auto& sys = node.sys;
  auto& sched = *node.sched;
  auto& journal = node.journal;
  {
    caf::scoped_actor gateway{*sys}; // gets the sink's hellos
    caf::scoped_actor source{*sys};  // stands in for the owner's source: sends frames, gets acks
    auto sc = standby_s(gateway, replica_dir.path());
    auto sink = spawn_replication_sink(*sys, *replica, journal, sc, placement::scheduled);
    sched.run();
    CHECK(!gateway->mailbox().empty()); // its hello
    // The gateway passed the hello on to the owner, on this very node.
    gateway->send(sink, replica_atom::value, sys->node());
    sched.run();

    // The first frame goes to the journal; the three behind it in the
    // sink's mailbox arrive while it is applied (the second overlaps it).
    source->send(sink, frame_atom::value, std::uint64_t{0}, slice(all, 1, 10));
    source->send(sink, frame_atom::value, std::uint64_t{0}, slice(all, 5, 20));
    source->send(sink, frame_atom::value, std::uint64_t{0}, slice(all, 21, 30));
    source->send(sink, frame_atom::value, std::uint64_t{0}, slice(all, 31, 40));
    sched.run();

    std::vector<std::uint64_t> acks;
    while (!source->mailbox().empty())
      source->receive([&](ack_atom, std::uint64_t position) { acks.push_back(position); });
    CHECK(acks == std::vector<std::uint64_t>{10, 40});
    CHECK(*replica->last_position() == 40);
    auto a = owner->digest_at(40);
    auto b = replica->digest_at(40);
    REQUIRE(a);
    REQUIRE(b);
    CHECK(a->digest == b->digest);
    auto chain = replica->check_chain(cp::no_limit);
    REQUIRE(chain);
    CHECK(chain->first_broken == 0);

    cairn::replication_status st;
    source->send(sink, status_atom::value);
    sched.run();
    source->receive([&](cairn::replication_status& s) { st = s; });
    CHECK(st.frames == 2); // two transactions for four frames
    CHECK(st.acknowledged == 40);
    caf::anon_send_exit(sink, caf::exit_reason::kill);
    sched.run();
  }
}

TEST_CASE("a sink's hello names the replica's last position as the store has it, also after a "
          "commit the sink did not make",
          "[unit][actors][replication]") {
  cairn::test::temp_dir replica_dir;
  auto replica = open_at(replica_dir.path());
  journal_node node{*replica};
  auto& sys = node.sys;
  auto& sched = *node.sched;
  auto& journal = node.journal;
  {
    caf::scoped_actor gateway{*sys};
    auto sc = standby_s(gateway, replica_dir.path());
    auto sink = spawn_replication_sink(*sys, *replica, journal, sc, placement::scheduled);
    sched.run();
    auto hello = [&] {
      replica_hello out;
      bool got = false;
      while (!gateway->mailbox().empty())
        gateway->receive([&](replica_atom, std::string&, replica_hello& h, caf::actor&) {
          out = std::move(h);
          got = true;
        });
      REQUIRE(got);
      return out;
    };
    CHECK(hello().last_position == 0);
    // A commit under way when the node stepped down lands after the sink
    // started: the replica now holds a record no frame brought.
    cp::write_batch b;
    cp::append_request req;
    req.stream = "s-0";
    req.events.push_back(cp::event_data{"happened", 1, "payload", {}, {}});
    b.appends.push_back(std::move(req));
    REQUIRE(replica->append_batch(b));
    sched.advance_time(sc.retry); // no frame came: the sink says hello again
    sched.run();
    auto h = hello();
    CHECK(h.last_position == 1);
    CHECK(h.digest.size() == 32); // the digest there, for the owner to compare
    caf::anon_send_exit(sink, caf::exit_reason::kill);
    sched.run();
  }
}

namespace {

struct signed_up {
  static constexpr const char* type_name = "signed_up";
  cairn::personal<std::string> email;
  template <class A> void serialize(A& a) { a(email); }
};

std::unique_ptr<cp::event_store> open_with_master(const std::string& dir,
                                                  const std::string& key_file) {
  cp::store_options o;
  o.durability = cp::durability::no_sync;
  o.initial_map_size = std::size_t{16} << 20;
  o.master_key_file = key_file;
  auto opened = cp::open_store(dir, o);
  REQUIRE(opened);
  return std::move(*opened);
}

void sign_up(cp::event_store& s, const std::string& email) {
  cp::append_request req;
  req.stream = "customer-ann";
  req.meta.subject = "ann";
  std::string payload;
  {
    cp::personal_scope scope{s.personal_keys(), "ann"};
    cp::encode_payload(signed_up{email}, payload);
  }
  req.events.push_back(cp::event_data{"signed_up", 1, payload, {}, {}});
  cp::write_batch b;
  b.appends.push_back(std::move(req));
  REQUIRE(s.append_batch(b));
}

std::vector<std::string> emails(const cp::event_store& s) {
  std::vector<std::string> out;
  auto events = s.read_stream("customer-ann", 1, cp::no_limit);
  REQUIRE(events);
  for (const auto& ev : *events) {
    cp::personal_scope scope{s.personal_keys(), ev.meta.subject};
    auto back = cp::decode_payload<signed_up>(ev.payload);
    REQUIRE(back);
    out.push_back(back->email.value_or(""));
  }
  return out;
}

} // namespace

TEST_CASE("frames merged while the replica applies one keep their data keys, the later frame's "
          "winning",
          "[unit][actors][replication][personal]") {
  cairn::test::temp_dir key_dir, owner_dir, replica_dir;
  auto key_file = key_dir.path() + "/master.key";
  {
    std::ofstream out{key_file};
    out << std::string(64, 'c') << '\n';
  }
  auto owner = open_with_master(owner_dir.path(), key_file);
  auto replica = open_with_master(replica_dir.path(), key_file);
  sign_up(*owner, "first@mail.test");  // 1, under ann's first key
  sign_up(*owner, "second@mail.test"); // 2
  auto f1 = owner->read_frame(1, 1);
  auto f2 = owner->read_frame(2, 1); // carries the first key
  REQUIRE(f1);
  REQUIRE(f2);
  REQUIRE(f2->keys.size() == 1);
  cp::write_batch forget;
  forget.forget.push_back("ann");
  REQUIRE(owner->append_batch(forget)); // 3, the forget record
  sign_up(*owner, "new@mail.test");     // 4, under a new key
  auto f3 = owner->read_frame(3, std::size_t{1} << 20);
  REQUIRE(f3);
  REQUIRE(f3->records.size() == 2);
  REQUIRE(f3->keys.size() == 1);
  REQUIRE(f3->keys[0].wrapped != f2->keys[0].wrapped);

  journal_node node{*replica};
  auto& sys = node.sys;
  auto& sched = *node.sched;
  {
    caf::scoped_actor gateway{*sys};
    caf::scoped_actor source{*sys};
    auto sc = standby_s(gateway, replica_dir.path());
    auto sink = spawn_replication_sink(*sys, *replica, node.journal, sc, placement::scheduled);
    sched.run();
    gateway->send(sink, replica_atom::value, sys->node());
    sched.run();
    // f1 goes to the journal; f2 and f3 are merged behind it, both keys of
    // ann with them, f3's last.
    source->send(sink, frame_atom::value, std::uint64_t{0}, std::move(*f1));
    source->send(sink, frame_atom::value, std::uint64_t{0}, std::move(*f2));
    source->send(sink, frame_atom::value, std::uint64_t{0}, std::move(*f3));
    sched.run();
    std::vector<std::uint64_t> acks;
    while (!source->mailbox().empty())
      source->receive([&](ack_atom, std::uint64_t position) { acks.push_back(position); });
    CHECK(acks == std::vector<std::uint64_t>{1, 4});
    CHECK(emails(*replica) == std::vector<std::string>{"", "", "new@mail.test"});
    CHECK(emails(*owner) == emails(*replica));
    caf::anon_send_exit(sink, caf::exit_reason::kill);
    sched.run();
  }
}

TEST_CASE("the owner's checkpoints in frames merged while one is applied reach the replica, "
          "the later position of a name winning",
          "[unit][actors][replication][checkpoints]") {
  cairn::test::temp_dir owner_dir, replica_dir;
  auto owner = open_at(owner_dir.path());
  auto replica = open_at(replica_dir.path());
  auto all = owner_log(*owner, 20);
  journal_node node{*replica};
  auto& sys = node.sys;
  auto& sched = *node.sched;
  auto& journal = node.journal;
  auto owners = [&](const std::string& name) {
    auto cp = replica->load_checkpoint(cp::replicated_checkpoint_name(name));
    REQUIRE(cp);
    return cp->value_or(0);
  };
  {
    caf::scoped_actor gateway{*sys};
    caf::scoped_actor source{*sys};
    auto sink = spawn_replication_sink(*sys, *replica, journal,
                                       standby_s(gateway, replica_dir.path()),
                                       placement::scheduled);
    sched.run();
    gateway->send(sink, replica_atom::value, sys->node());
    sched.run();
    auto first = slice(all, 1, 10);
    first.checkpoints = {{"mailer", 5}};
    auto second = slice(all, 11, 20);
    second.checkpoints = {{"mailer", 15}, {"billing", 12}};
    cp::log_frame only; // checkpoints that moved while no record did
    only.first_position = 21;
    only.checkpoints = {{"billing", 18}};
    auto old = slice(all, 5, 10); // records the replica has: its checkpoint is new
    old.checkpoints = {{"audit", 9}};
    for (auto* f : {&first, &second, &only, &old})
      source->send(sink, frame_atom::value, std::uint64_t{0}, *f);
    sched.run();
    CHECK(*replica->last_position() == 20);
    CHECK(owners("mailer") == 15);
    CHECK(owners("billing") == 18);
    CHECK(owners("audit") == 9);
    CHECK_FALSE(*replica->load_checkpoint("mailer")); // the standby's own: untouched
    // Alone, with nothing being applied.
    only.checkpoints = {{"mailer", 20}};
    source->send(sink, frame_atom::value, std::uint64_t{0}, only);
    sched.run();
    CHECK(owners("mailer") == 20);
    CHECK(*replica->last_position() == 20);
    caf::anon_send_exit(sink, caf::exit_reason::kill);
    sched.run();
  }
}
