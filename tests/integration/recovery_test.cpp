// Recovery of aggregates from what the store holds: past a corrupted
// snapshot, and through upcasters from events an older build wrote.

#include <chrono>
#include <cstdint>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include <catch2/catch.hpp>
#include <cereal/types/string.hpp>
#include <cereal/types/variant.hpp>

#include "account.hpp"
#include "cairn/persistence/codec.hpp"
#include "cairn/persistence/event_store.hpp"
#include "cairn/runtime/runtime.hpp"
#include "runtime_support.hpp"
#include "support/temp_dir.hpp"

using bank::account;
using cairn::errc;
using cairn::test::await;
using cairn::test::describe;
using cairn::test::quick_options;
using cairn::test::register_ok;
using cairn::test::start_runtime;
using Catch::Matchers::Contains;
namespace persistence = cairn::persistence;

namespace {

/// Flips the low bit of the byte `at` bytes into every copy of `needle` in
/// the store's data.mdb (LMDB may keep stale copies in free pages); returns
/// how many copies there were. Everything must be closed.
std::size_t flip_in_data_file(const std::string& dir, const std::string& needle, std::size_t at) {
  const auto data_file = dir + "/data.mdb";
  std::string bytes;
  {
    std::ifstream in{data_file, std::ios::binary};
    REQUIRE(in);
    bytes.assign(std::istreambuf_iterator<char>{in}, std::istreambuf_iterator<char>{});
  }
  std::vector<std::size_t> hits;
  for (auto pos = bytes.find(needle); pos != std::string::npos; pos = bytes.find(needle, pos + 1))
    hits.push_back(pos);
  std::fstream io{data_file, std::ios::binary | std::ios::in | std::ios::out};
  REQUIRE(io);
  for (auto pos : hits) {
    char flipped = static_cast<char>(bytes[pos + at] ^ 0x01);
    io.seekp(static_cast<std::streamoff>(pos + at));
    io.write(&flipped, 1);
  }
  io.flush();
  REQUIRE(io);
  return hits.size();
}

} // namespace

// -- a test aggregate whose event type is at schema version 2 ------------------------------

namespace tally_test {

struct add {
  std::int64_t amount = 0;
  template <class Ar> void serialize(Ar& ar) { ar(amount); }
};

/// How an older build stored "tallied": a count, worth 10 each.
struct tallied_v1 {
  std::int32_t count = 0;
  template <class Ar> void serialize(Ar& ar) { ar(count); }
};

struct tallied {
  static constexpr const char* type_name = "tallied";
  std::int64_t amount = 0;
  std::string note;
  template <class Ar> void serialize(Ar& ar) { ar(amount, note); }
};

} // namespace tally_test

CEREAL_CLASS_VERSION(tally_test::tallied, 2)

namespace tally_test {

/// The current build's tally, unable to read v1 events.
struct tally_core {
  static constexpr const char* category = "tally";
  struct state {
    std::int64_t total = 0;
    std::int64_t events = 0;
    std::string last_note;
    template <class Ar> void serialize(Ar& ar) { ar(total, events, last_note); }
  };
  using command = std::variant<add>;
  using event = std::variant<tallied>;
  static state initial() { return {}; }
  static cairn::decision<event> decide(const state&, const command& c) {
    return cairn::emit<event>(tallied{std::get<add>(c).amount, "v2"});
  }
  static state evolve(state s, const event& e) {
    const auto& t = std::get<tallied>(e);
    s.total += t.amount;
    s.events += 1;
    s.last_note = t.note;
    return s;
  }
};

/// The same aggregate with the upcaster that reads v1.
struct tally : tally_core {
  static cairn::result<void> upcasters(persistence::event_registry& reg) {
    return reg.add_upcaster<tallied_v1, tallied>("tallied", 1, [](const tallied_v1& old) {
      return tallied{old.count * 10, "upcast from v1"};
    });
  }
};

/// Appends "tallied" events of `schema_version` with raw payloads, as another build would.
void append_raw(const std::string& dir, const std::string& stream, std::uint32_t schema_version,
                const std::vector<std::string>& payloads) {
  persistence::store_options so;
  so.durability = persistence::durability::no_sync;
  auto store = persistence::open_store(dir, so);
  INFO(describe(store));
  REQUIRE(store);
  persistence::append_request req;
  req.stream = stream;
  for (const auto& p : payloads) {
    persistence::event_data ev;
    ev.type = "tallied";
    ev.schema_version = schema_version;
    ev.payload = p;
    req.events.push_back(std::move(ev));
  }
  auto appended = (*store)->append(req);
  INFO(describe(appended));
  REQUIRE(appended);
}

template <class T> std::string encoded(const T& value) {
  std::string out;
  persistence::encode_payload(value, out);
  return out;
}

} // namespace tally_test

// -- snapshots ------------------------------------------------------------------------------

TEST_CASE("a corrupted latest snapshot is not used: the state is rebuilt by full replay",
          "[integration][runtime][recovery][snapshot]") {
  cairn::test::temp_dir dir;
  auto opts = quick_options(dir.path());
  opts.snapshot_interval = 5;
  // A unique owner makes the snapshot's bytes findable in data.mdb.
  const std::string owner = "owner-snapfallback-" + std::to_string(std::random_device{}());
  const std::string stream = "account-snap";
  std::int64_t balance = 0;
  {
    auto rt = start_runtime(opts);
    register_ok<account>(*rt);
    REQUIRE(await(rt->send<account>("snap", bank::open_account{owner})));
    for (int i = 1; i <= 23; ++i) { // one at a time: snapshots at versions 5, 10, 15, 20
      auto r = await(rt->send<account>("snap", bank::deposit{i}));
      REQUIRE(r);
      balance += i;
    }
  } // every actor stopped, the store closed

  persistence::snapshot latest;
  {
    auto store = persistence::open_store(dir.path());
    REQUIRE(store);
    auto snap = (*store)->load_snapshot(stream);
    INFO(describe(snap));
    REQUIRE(snap);
    REQUIRE(*snap);
    latest = **snap;
    CHECK(latest.version == 20);
    CHECK(latest.state_type == "account.state");
    auto older = (*store)->load_snapshot(stream, latest.version - 1);
    REQUIRE(older);
    REQUIRE(*older);
    CHECK((*older)->version == 15);
  }

  // Flip the low bit of the balance (the state's last 8 bytes) in the latest
  // snapshot. The body still decodes: only the checksum can tell.
  REQUIRE(latest.data.size() > 8);
  const auto needle = latest.state_type + latest.data;
  auto copies = flip_in_data_file(dir.path(), needle, needle.size() - 8);
  INFO("copies of the snapshot in data.mdb: " << copies);
  REQUIRE(copies > 0);

  {
    auto rt = start_runtime(opts);
    register_ok<account>(*rt);
    auto snap = rt->store().load_snapshot(stream);
    REQUIRE(!snap); // the corruption took
    CHECK(snap.error().code == errc::corrupted);
    auto s = rt->state<account>("snap");
    INFO(describe(s));
    REQUIRE(s);
    CHECK(s->balance == balance);
    CHECK(s->owner == owner);
    CHECK(s->open);
    auto r = await(rt->send<account>("snap", bank::deposit{100}));
    REQUIRE(r);
    CHECK(r->version == 25);
    s = rt->state<account>("snap");
    REQUIRE(s);
    CHECK(s->balance == balance + 100);
  }

  // The full replay left a fresh snapshot behind.
  auto store = persistence::open_store(dir.path());
  REQUIRE(store);
  auto snap = (*store)->load_snapshot(stream);
  INFO(describe(snap));
  REQUIRE(snap);
  REQUIRE(*snap);
  CHECK((*snap)->version == 24);
  auto state = persistence::decode_payload<account::state>((*snap)->data);
  REQUIRE(state);
  CHECK(state->balance == balance);
}

// -- upcasters -------------------------------------------------------------------------------

TEST_CASE("events stored at an old schema version are upcast on recovery and new ones are current",
          "[integration][runtime][recovery][upcast]") {
  using namespace tally_test;
  cairn::test::temp_dir dir;
  append_raw(dir.path(), "tally-t1", 1, {encoded(tallied_v1{3}), encoded(tallied_v1{4})});
  append_raw(dir.path(), "tally-t1", 1, {encoded(tallied_v1{5})});

  auto opts = quick_options(dir.path());
  {
    auto rt = start_runtime(opts);
    register_ok<tally>(*rt);
    auto s = rt->state<tally>("t1");
    INFO(describe(s));
    REQUIRE(s);
    CHECK(s->total == 120);
    CHECK(s->events == 3);
    CHECK(s->last_note == "upcast from v1");
    auto then = rt->state_at<tally>("t1", 1);
    REQUIRE(then);
    CHECK(then->total == 30);

    auto r = await(rt->send<tally>("t1", add{7}));
    INFO(describe(r));
    REQUIRE(r);
    CHECK(r->version == 4);
    REQUIRE(r->events.size() == 1);
    CHECK(std::get<tallied>(r->events[0]).note == "v2");

    auto stored = rt->store().read_stream("tally-t1", 1, 10);
    REQUIRE(stored);
    REQUIRE(stored->size() == 4);
    for (int i = 0; i < 3; ++i)
      CHECK((*stored)[i].schema_version == 1); // upcasting reads; it never rewrites
    CHECK((*stored)[3].type == "tallied");
    CHECK((*stored)[3].schema_version == 2);
    auto current = persistence::decode_payload<tallied>((*stored)[3].payload);
    REQUIRE(current);
    CHECK(current->amount == 7);
  }

  // A mixed stream of v1 and v2 events recovers after a restart too.
  auto rt = start_runtime(opts);
  register_ok<tally>(*rt);
  auto s = rt->state<tally>("t1");
  REQUIRE(s);
  CHECK(s->total == 127);
  CHECK(s->events == 4);
  CHECK(s->last_note == "v2");
}

TEST_CASE("registering an aggregate whose stored events it cannot read fails, naming the type",
          "[integration][runtime][recovery][upcast]") {
  using namespace tally_test;
  cairn::test::temp_dir dir;

  SECTION("an old version without an upcaster") {
    append_raw(dir.path(), "tally-t1", 1, {encoded(tallied_v1{3})});
    auto rt = start_runtime(quick_options(dir.path()));
    auto ok = rt->register_aggregate<tally_core>();
    REQUIRE(!ok);
    CHECK(ok.error().code == errc::invalid_argument);
    CHECK_THAT(ok.error().to_string(), Contains("tallied v1"));
    // The build that has the upcaster registers fine on the same runtime.
    register_ok<tally>(*rt);
    auto s = rt->state<tally>("t1");
    REQUIRE(s);
    CHECK(s->total == 30);
  }

  SECTION("a version newer than this build's") {
    append_raw(dir.path(), "tally-t9", 3, {encoded(tallied{1, "from the future"})});
    auto rt = start_runtime(quick_options(dir.path()));
    auto ok = rt->register_aggregate<tally>();
    REQUIRE(!ok);
    CHECK(ok.error().code == errc::invalid_argument);
    CHECK_THAT(ok.error().to_string(), Contains("tallied v3"));
  }
}

// -- corrupted events ------------------------------------------------------------------------

namespace {

/// An account "rot" whose first event is damaged, and a healthy one, "fine".
void make_rotten_account(const std::string& dir) {
  auto opts = quick_options(dir);
  opts.snapshot_interval = 0; // the owner's only copy is in the event log
  const std::string owner = "owner-rot-" + std::to_string(std::random_device{}());
  {
    auto rt = start_runtime(opts);
    register_ok<account>(*rt);
    REQUIRE(await(rt->send<account>("rot", bank::open_account{owner})));
    REQUIRE(await(rt->send<account>("rot", bank::deposit{5})));
    REQUIRE(await(rt->send<account>("fine", bank::open_account{"Fiona"})));
  }
  auto copies = flip_in_data_file(dir, owner, owner.size() - 1);
  INFO("copies of the owner in data.mdb: " << copies);
  REQUIRE(copies > 0);
}

} // namespace

TEST_CASE("an aggregate whose events are corrupted answers corrupted and the others keep working",
          "[integration][runtime][recovery]") {
  cairn::test::temp_dir dir;
  make_rotten_account(dir.path());
  auto rt = start_runtime(quick_options(dir.path()));
  register_ok<account>(*rt);

  auto r = await(rt->send<account>("rot", bank::deposit{1}));
  INFO(describe(r));
  REQUIRE(!r);
  CHECK(r.error().code == errc::corrupted);
  auto s = rt->state<account>("rot");
  REQUIRE(!s);
  CHECK(s.error().code == errc::corrupted);
  auto then = rt->state_at<account>("rot", 2);
  REQUIRE(!then);
  CHECK(then.error().code == errc::corrupted);

  auto ok = await(rt->send<account>("fine", bank::deposit{3}));
  INFO(describe(ok));
  REQUIRE(ok);
  CHECK(ok->version == 2);
  auto fine = rt->state<account>("fine");
  REQUIRE(fine);
  CHECK(fine->balance == 3);
  // Nothing was appended to the damaged stream.
  auto version = rt->store().stream_version("account-rot");
  REQUIRE(version);
  CHECK(*version == 2);
}

TEST_CASE("an aggregate that cannot recover is retried with a growing backoff",
          "[integration][runtime][recovery]") {
  cairn::test::temp_dir dir;
  make_rotten_account(dir.path());
  auto rt = start_runtime(quick_options(dir.path()));
  register_ok<account>(*rt);

  auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < 5; ++i) {
    auto r = await(rt->send<account>("rot", bank::deposit{1}));
    REQUIRE(!r);
    CHECK(r.error().code == errc::corrupted);
  }
  auto elapsed =
    std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start);
  auto stats = rt->registry_stats();
  INFO(elapsed.count() << " ms for five attempts; " << stats.activations << " activations, "
                       << stats.failures << " failures, " << stats.passivations << " passivations");
  CHECK(stats.failures == 5);
  CHECK(stats.passivations == 0); // a failed activation is no passivation
  // Backoffs of 20, 40, 80 and 160 ms separate the five attempts.
  CHECK(elapsed >= std::chrono::milliseconds{300});
}

// -- an append the store refuses ---------------------------------------------------------------

TEST_CASE("an append the store refuses fails its command and the aggregate reloads in place",
          "[integration][runtime][recovery]") {
  cairn::test::temp_dir dir;
  auto opts = quick_options(dir.path());
  opts.store.max_event_size = 100; // an owner of 500 bytes makes an event the store refuses
  auto rt = start_runtime(opts);
  register_ok<account>(*rt);

  // The deposit is decided against the pending open, so it fails with it
  // (unavailable), unless it arrives after the reload (then not_open).
  auto too_big = rt->send<account>("huge", bank::open_account{std::string(500, 'x')});
  auto dependent = rt->send<account>("huge", bank::deposit{5});
  auto refused = await(too_big);
  INFO(describe(refused));
  REQUIRE(!refused);
  CHECK(refused.error().code == errc::invalid_argument);
  auto after = await(dependent);
  INFO(describe(after));
  REQUIRE(!after);
  CHECK((after.error().code == errc::unavailable
         || (after.error().code == errc::rejected && after.error().message == "not_open")));

  // The aggregate reloaded what the store holds (nothing) and goes on.
  auto opened = await(rt->send<account>("huge", bank::open_account{"Hugo"}));
  INFO(describe(opened));
  REQUIRE(opened);
  CHECK(opened->version == 1);
  auto deposited = await(rt->send<account>("huge", bank::deposit{5}));
  REQUIRE(deposited);
  CHECK(deposited->version == 2);
  auto s = rt->state<account>("huge");
  REQUIRE(s);
  CHECK(s->owner == "Hugo");
  CHECK(s->balance == 5);
  auto stats = rt->registry_stats();
  CHECK(stats.failures == 0);
  CHECK(stats.activations == 1); // reloaded in place, not restarted
}
