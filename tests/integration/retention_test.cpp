// Retention end to end on small stores: plans by age and by count, what holds
// events back (a missing snapshot, a checkpoint, a stream's newest record),
// the `truncated` answers of readers below a cut, the digest chain's anchor
// (verify passes after retention and still finds an edited record after the
// cut), a reopen, and the CLI.

#include <lmdb.h>
#include <sys/wait.h>

#include <cstdio>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "cairn/persistence/event_store.hpp"
#include "cairn/persistence/format.hpp"
#include "cairn/persistence/retention.hpp"
#include "support/temp_dir.hpp"
#include "unit/persistence/helpers.hpp"

using namespace cairn::persistence;
using cairn::errc;
using cairn::test::open_ok;
using cairn::test::temp_dir;
using cairn::test::value_of;

namespace {

constexpr std::int64_t hour = 3600LL * 1'000'000'000LL;
constexpr std::int64_t t0 = 1'760'000'000LL * 1'000'000'000LL;

struct cli_result {
  int code = -1;
  std::string out; ///< stdout and stderr
};

cli_result cairn_cli(const std::string& args) {
  std::string cmd = std::string{CAIRN_CLI_PATH} + " " + args + " 2>&1";
  FILE* p = ::popen(cmd.c_str(), "r");
  REQUIRE(p != nullptr);
  cli_result r;
  char buf[4096];
  for (std::size_t n; (n = std::fread(buf, 1, sizeof buf, p)) > 0;)
    r.out.append(buf, n);
  int status = ::pclose(p);
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  INFO("cairn " << args << " exited " << r.code << ":\n" << r.out);
  return r;
}

bool contains(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}

/// Streams prov-1..prov-3 and acct-1, 10 events each, interleaved one event
/// per commit (round after round), event v of every stream at t0 + (v-1) h.
/// Positions: round r (0-based), stream i -> 4r + i + 1.
void build(event_store& store) {
  const char* streams[] = {"prov-1", "prov-2", "prov-3", "acct-1"};
  for (int round = 0; round < 10; ++round)
    for (const char* s : streams) {
      event_data e;
      e.type = "noted";
      e.payload = std::string{s} + " v" + std::to_string(round + 1);
      e.timestamp_ns = t0 + round * hour;
      REQUIRE(store.append(cairn::test::request(s, expected_version::any(), {e})));
    }
}

void snapshot_at(event_store& store, const std::string& stream, std::uint64_t version) {
  REQUIRE(
    store.save_snapshot(snapshot{stream, version, "state", 1, "s" + std::to_string(version)}));
}

retention_policy policy(const std::vector<std::string>& rules) {
  return value_of(parse_retention_policy(rules));
}

const retention_stream* planned(const retention_plan& plan, const std::string& stream) {
  for (const auto& s : plan.streams)
    if (s.stream == stream)
      return &s;
  return nullptr;
}

const retention_held_stream* held(const retention_plan& plan, const std::string& stream) {
  for (const auto& s : plan.held)
    if (s.stream == stream)
      return &s;
  return nullptr;
}

} // namespace

TEST_CASE("retention by count removes all but the newest N of each stream, and readers below "
          "the cut get truncated",
          "[integration][retention]") {
  temp_dir dir;
  auto store = open_ok(dir.path());
  build(*store);
  for (auto s : {"prov-1", "prov-2", "prov-3"})
    snapshot_at(*store, s, 10);
  CHECK(value_of(store->first_position()) == 1);

  auto plan = value_of(store->plan_retention(policy({"prov=last:3"}), t0 + 100 * hour));
  REQUIRE(plan.streams.size() == 3);
  CHECK(plan.events == 21);
  const auto* p1 = planned(plan, "prov-1");
  REQUIRE(p1 != nullptr);
  CHECK(p1->from_version == 1);
  CHECK(p1->to_version == 7);
  CHECK(p1->first_position == 1);
  CHECK(p1->last_position == 25); // round 6, stream 0
  CHECK(p1->next_position == 29);
  CHECK(planned(plan, "acct-1") == nullptr); // no rule for its category
  CHECK(plan.new_first_position == 28);      // after prov-3 v7 at position 27
  REQUIRE(plan.categories.size() == 1);
  CHECK(plan.categories[0].events == 21);
  CHECK(plan.categories[0].streams == 3);

  auto done = value_of(store->apply_retention(plan));
  CHECK(done.events == 21);
  CHECK(done.streams == 3);
  CHECK(done.skipped.empty());
  CHECK(done.first_position == 28);
  CHECK(value_of(store->first_position()) == 28);

  // A stream reads from its first kept version; below it: truncated, naming it.
  auto below = store->read_stream("prov-1", 1, 100);
  REQUIRE_FALSE(below);
  CHECK(below.error().code == errc::truncated);
  CHECK(contains(below.error().message, "reads from version 8"));
  auto kept = value_of(store->read_stream("prov-1", 8, 100));
  REQUIRE(kept.size() == 3);
  CHECK(kept.front().payload == "prov-1 v8");
  CHECK(value_of(store->stream_version("prov-1")) == 10);
  auto back = store->read_stream_backward("prov-1", no_limit, 5);
  REQUIRE_FALSE(back);
  CHECK(back.error().code == errc::truncated);
  CHECK(value_of(store->read_stream_backward("prov-1", no_limit, 3)).size() == 3);
  auto streams = value_of(store->list_streams("prov-1"));
  REQUIRE(streams.size() == 1);
  CHECK(streams[0].first_version == 8);

  // A stream without a rule keeps everything, below the log's cut too.
  auto acct = value_of(store->read_stream("acct-1", 1, 100));
  CHECK(acct.size() == 10);
  CHECK(acct.front().position == 4);

  // The log: complete from 28 on; below it, truncated naming 28.
  auto all = store->read_all(1, 100);
  REQUIRE_FALSE(all);
  CHECK(all.error().code == errc::truncated);
  CHECK(contains(all.error().message, "complete from position 28"));
  auto page = value_of(store->read_all(28, 100));
  REQUIRE_FALSE(page.events.empty());
  CHECK(page.events.front().position == 28);
  CHECK(page.events.back().position == 40);
  CHECK(page.events.size() == 13);

  // Nothing left to remove: a second plan is empty.
  auto again = value_of(store->plan_retention(policy({"prov=last:3"}), t0 + 100 * hour));
  CHECK(again.events == 0);
}

TEST_CASE("retention by age removes only the events older than the age",
          "[integration][retention]") {
  temp_dir dir;
  auto store = open_ok(dir.path());
  build(*store);
  for (auto s : {"prov-1", "prov-2", "prov-3"})
    snapshot_at(*store, s, 10);
  // Now is t0 + 10 h: with 5h, the events before t0 + 5 h go (v1..v5).
  auto plan = value_of(store->plan_retention(policy({"prov=5h"}), t0 + 10 * hour));
  REQUIRE(plan.streams.size() == 3);
  for (const auto& s : plan.streams) {
    CHECK(s.from_version == 1);
    CHECK(s.to_version == 5);
  }
  CHECK(plan.events == 15);
  auto done = value_of(store->apply_retention(plan));
  CHECK(done.events == 15);
  auto first = value_of(store->read_stream("prov-2", 6, 100));
  REQUIRE_FALSE(first.empty());
  CHECK(first.front().timestamp_ns == t0 + 5 * hour);
  // Everything is old: every stream still keeps its newest event.
  auto all_old = value_of(store->plan_retention(policy({"prov=1h"}), t0 + 1000 * hour));
  for (const auto& s : all_old.streams)
    CHECK(s.to_version == 9);
  const auto* h = held(all_old, "prov-1");
  REQUIRE(h != nullptr);
  CHECK(h->hold == retention_hold::newest);
  CHECK(h->events == 1);
}

TEST_CASE("a stream without a snapshot holds its events back, and an older snapshot bounds what "
          "goes",
          "[integration][retention]") {
  temp_dir dir;
  auto store = open_ok(dir.path());
  build(*store);
  snapshot_at(*store, "prov-1", 10);
  snapshot_at(*store, "prov-3", 4);
  auto plan = value_of(store->plan_retention(policy({"prov=last:2"}), t0));
  REQUIRE(planned(plan, "prov-1") != nullptr);
  CHECK(planned(plan, "prov-1")->to_version == 8);
  CHECK(planned(plan, "prov-2") == nullptr);
  const auto* h2 = held(plan, "prov-2");
  REQUIRE(h2 != nullptr);
  CHECK(h2->hold == retention_hold::snapshot);
  CHECK(h2->events == 8);
  REQUIRE(planned(plan, "prov-3") != nullptr);
  CHECK(planned(plan, "prov-3")->to_version == 4);
  const auto* h3 = held(plan, "prov-3");
  REQUIRE(h3 != nullptr);
  CHECK(h3->hold == retention_hold::snapshot);
  CHECK(h3->events == 4);
  CHECK(plan.categories[0].held == 12);
  auto done = value_of(store->apply_retention(plan));
  CHECK(done.events == 12);
  CHECK(value_of(store->read_stream("prov-2", 1, 100)).size() == 10);
}

TEST_CASE("a checkpoint holds back every event at or after its position",
          "[integration][retention]") {
  temp_dir dir;
  auto store = open_ok(dir.path());
  build(*store);
  for (auto s : {"prov-1", "prov-2", "prov-3"})
    snapshot_at(*store, s, 10);
  REQUIRE(store->save_checkpoint(checkpoint{"projection-a", 30}));
  REQUIRE(store->save_checkpoint(checkpoint{"projection-b", 13}));
  auto plan = value_of(store->plan_retention(policy({"prov=last:1"}), t0));
  REQUIRE(plan.limiting_checkpoint);
  CHECK(*plan.limiting_checkpoint == "projection-b");
  CHECK(plan.limiting_position == 13);
  // Below position 13 lie rounds 0-2: prov-1 at 1, 5, 9; prov-2 at 2, 6, 10; prov-3 at 3, 7, 11.
  for (const auto& s : plan.streams) {
    CHECK(s.last_position < 13);
    CHECK(s.to_version == 3);
    CHECK(s.hold == retention_hold::checkpoint);
  }
  CHECK(plan.events == 9);
  const auto* h = held(plan, "prov-1");
  REQUIRE(h != nullptr);
  CHECK(h->hold == retention_hold::checkpoint);
  CHECK(h->events == 6);
  auto done = value_of(store->apply_retention(plan));
  CHECK(done.events == 9);
  CHECK(value_of(store->first_position()) == 12);
  // The slowest consumer reads on from its checkpoint as if nothing happened.
  auto page = value_of(store->read_all(14, 100));
  CHECK(page.events.front().position == 14);
}

TEST_CASE("the store changed since the plan: a stream whose snapshot is gone is skipped",
          "[integration][retention]") {
  temp_dir dir;
  auto store = open_ok(dir.path());
  build(*store);
  snapshot_at(*store, "prov-1", 10);
  snapshot_at(*store, "prov-2", 10);
  auto plan = value_of(store->plan_retention(policy({"prov=last:2"}), t0));
  REQUIRE(plan.streams.size() == 2);
  // A checkpoint saved after the plan, below what it removes, holds prov-1 back.
  REQUIRE(store->save_checkpoint(checkpoint{"late", 2}));
  auto done = value_of(store->apply_retention(plan));
  CHECK(done.events == 0);
  CHECK(done.skipped.size() == 2);
  CHECK(value_of(store->read_stream("prov-1", 1, 100)).size() == 10);
}

TEST_CASE("the digest chain keeps an anchor at the cut: verify passes after retention, a "
          "published digest still matches, and an edited record after the cut is found",
          "[integration][retention][cli][tamper]") {
  temp_dir dir;
  auto path = dir.sub("s");
  std::string published;
  {
    auto store = open_ok(path);
    build(*store);
    for (auto s : {"prov-1", "prov-2", "prov-3"})
      snapshot_at(*store, s, 10);
    auto head = value_of(store->digest_at(no_limit));
    published = "40:" + format::to_hex(head.digest);
    auto at30 = value_of(store->digest_at(30));
    auto done = value_of(store->apply_retention(
      value_of(store->plan_retention(policy({"prov=last:3"}), t0 + 100 * hour))));
    REQUIRE(done.first_position == 28);
    // Digests from the anchor on are unchanged; before it: truncated.
    CHECK(value_of(store->digest_at(30)).digest == at30.digest);
    CHECK(value_of(store->digest_at(27)).position == 27);
    auto gone = store->digest_at(20);
    REQUIRE_FALSE(gone);
    CHECK(gone.error().code == errc::truncated);
    auto checked = value_of(store->check_chain(no_limit));
    CHECK(checked.first_broken == 0);
    CHECK(checked.from == 28);
    CHECK(checked.records == 13);
    REQUIRE(checked.at);
    CHECK(checked.at->digest == head.digest);
  }
  auto ok = cairn_cli("verify " + path + " --digest " + published);
  CHECK(ok.code == 0);
  CHECK(contains(ok.out, "published digest: matches"));
  CHECK(contains(ok.out, "the log is complete from position 28"));

  // One payload byte of position 33 changed, its checksum recomputed.
  {
    MDB_env* env = nullptr;
    REQUIRE(mdb_env_create(&env) == 0);
    REQUIRE(mdb_env_set_maxdbs(env, 32) == 0);
    REQUIRE(mdb_env_open(env, path.c_str(), MDB_NOSYNC, 0644) == 0);
    MDB_txn* txn = nullptr;
    REQUIRE(mdb_txn_begin(env, nullptr, 0, &txn) == 0);
    MDB_dbi log = 0;
    REQUIRE(mdb_dbi_open(txn, "log", 0, &log) == 0);
    auto key = format::be64_key(33);
    MDB_val k{key.size(), key.data()}, v;
    REQUIRE(mdb_get(txn, log, &k, &v) == 0);
    std::string rec{static_cast<const char*>(v.mv_data), v.mv_size};
    rec.back() = static_cast<char>(rec.back() ^ 0x01);
    auto* bytes = reinterpret_cast<unsigned char*>(rec.data());
    format::put_le<std::uint64_t>(bytes, format::record_checksum(bytes, rec.size(), 33));
    MDB_val nv{rec.size(), rec.data()};
    REQUIRE(mdb_put(txn, log, &k, &nv, 0) == 0);
    REQUIRE(mdb_txn_commit(txn) == 0);
    mdb_env_close(env);
  }
  auto bad = cairn_cli("verify " + path + " --digest " + published);
  CHECK(bad.code == 1);
  CHECK(contains(bad.out, "position 33"));
}

TEST_CASE("a reopen after retention sees the same state, and appends extend the chain from it",
          "[integration][retention]") {
  temp_dir dir;
  {
    auto store = open_ok(dir.path());
    build(*store);
    for (auto s : {"prov-1", "prov-2", "prov-3"})
      snapshot_at(*store, s, 10);
    REQUIRE(store->apply_retention(
      value_of(store->plan_retention(policy({"prov=last:3"}), t0 + 100 * hour))));
  }
  {
    auto store = open_ok(dir.path()); // writable: the writer's state is loaded again
    CHECK(value_of(store->first_position()) == 28);
    CHECK(value_of(store->read_stream("prov-1", 8, 100)).size() == 3);
    auto below = store->read_stream("prov-1", 7, 100);
    REQUIRE_FALSE(below);
    CHECK(below.error().code == errc::truncated);
    CHECK(value_of(store->stream_version("prov-1")) == 10);
    cairn::test::append_ok(*store, "prov-1", cairn::test::numbered(5));
    auto appended = value_of(store->read_stream("prov-1", 8, 100));
    REQUIRE(appended.size() == 8);
    CHECK(appended.back().version == 15);
    auto checked = value_of(store->check_chain(no_limit));
    CHECK(checked.first_broken == 0);
    CHECK(checked.records == 18);
  }
  store_options ro = cairn::test::fast_options();
  ro.read_only = true;
  auto store = open_ok(dir.path(), ro);
  CHECK(value_of(store->first_position()) == 28);
  auto all = store->read_all(27, 10);
  REQUIRE_FALSE(all);
  CHECK(all.error().code == errc::truncated);
  CHECK(value_of(store->check_chain(no_limit)).first_broken == 0);
  CHECK(value_of(store->read_stream("acct-1", 1, 100)).size() == 10);
}

TEST_CASE("cairn retention prints the plan and what holds it back, applies it, and names a bad "
          "rule",
          "[integration][retention][cli]") {
  temp_dir dir;
  auto path = dir.sub("s");
  {
    auto store = open_ok(path);
    build(*store);
    snapshot_at(*store, "prov-1", 10);
    snapshot_at(*store, "prov-3", 10);
    REQUIRE(store->save_checkpoint(checkpoint{"projection-a", 33}));
  }
  auto plan = cairn_cli("retention " + path + " --keep prov=last:3 --plan");
  CHECK(plan.code == 0);
  CHECK(contains(plan.out, "prov: 14 events of 2 streams go (positions 1-27)"));
  CHECK(contains(plan.out, "held back: prov-2, 7 events: no snapshot covers them"));
  CHECK(contains(plan.out, "checkpoint projection-a at position 33"));
  CHECK(contains(plan.out, "afterwards from 28"));
  auto json = cairn_cli("retention " + path + " --keep prov=last:3 --json");
  CHECK(json.code == 0);
  CHECK(contains(json.out, "\"events\":14"));
  CHECK(contains(json.out, "\"hold\":\"snapshot\""));
  // A plan removes nothing: the same plan again.
  CHECK(contains(cairn_cli("retention " + path + " --keep prov=last:3 --json").out,
                 "\"events\":14,\"streams\":2"));

  auto applied = cairn_cli("retention " + path + " --keep prov=last:3 --apply");
  CHECK(applied.code == 0);
  CHECK(contains(applied.out, "removed 14 events of 2 streams"));
  CHECK(contains(applied.out, "the log is complete from position 28"));
  auto verified = cairn_cli("verify " + path);
  CHECK(verified.code == 0);

  auto bad = cairn_cli("retention " + path + " --keep prov=3x --plan");
  CHECK(bad.code == 2);
  CHECK(contains(bad.out, "retention rule 'prov=3x'"));
  auto twice = cairn_cli("retention " + path + " --keep prov=3d --keep prov=last:1");
  CHECK(twice.code == 2);
  CHECK(contains(twice.out, "has a rule already"));
}
