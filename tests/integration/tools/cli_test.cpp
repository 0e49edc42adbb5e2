// The `cairn` CLI run as a process on stores these tests build: what each
// subcommand prints, its --json parsed back, its errors and exit codes,
// corruption found by verify, export/import round trips and hot backups.

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "account.hpp"
#include "cairn/runtime/runtime.hpp"
#include "cairn/persistence/codec.hpp" // before rapidjson: cereal configures it
#include "cairn/persistence/event_store.hpp"
#include "support/cli_run.hpp"
#include "support/temp_dir.hpp"
#include "unit/persistence/helpers.hpp"

#include <rapidjson/document.h>

using namespace cairn::persistence;
using cairn::test::temp_dir;
using namespace cairn::test::cli;

namespace {

namespace fs = std::filesystem;

const event_registry& bank_types() {
  static const event_registry reg = [] {
    event_registry r;
    REQUIRE(r.add<bank::account_opened>(bank::account_opened::type_name));
    REQUIRE(r.add<bank::money_deposited>(bank::money_deposited::type_name));
    REQUIRE(r.add<bank::money_withdrawn>(bank::money_withdrawn::type_name));
    return r;
  }();
  return reg;
}

/// 2026-11-24T10:00:00Z plus `seconds`.
std::int64_t at_time(int seconds) { return (std::int64_t{1795514400} + seconds) * 1'000'000'000; }

event_data bank_event(const bank::account::event& e, std::int64_t ts) {
  auto data = bank_types().encode(e);
  REQUIRE(data);
  data->timestamp_ns = ts;
  return *data;
}

const std::string legacy_marker = "LEGACY-MARKER-9b2c";

/// account-alice: opened, +100 (command dep-1), -30; account-bob: opened,
/// +5; legacy-1: one unregistered event whose payload holds a marker.
/// Positions 1..6: alice 1, 2; bob 3; alice 4; legacy 5; bob 6. One checkpoint.
void build_bank_store(const std::string& dir) {
  auto store = cairn::test::open_ok(dir);
  metadata by_user;
  by_user.correlation_id = "corr-1";
  by_user.user = "teller";
  cairn::test::append_ok(*store, "account-alice",
                         {bank_event(bank::account_opened{"Alice"}, at_time(0))}, by_user);
  metadata once = by_user;
  once.command_id = "dep-1";
  cairn::test::append_ok(*store, "account-alice",
                         {bank_event(bank::money_deposited{100}, at_time(10))}, once);
  cairn::test::append_ok(*store, "account-bob",
                         {bank_event(bank::account_opened{"Bob"}, at_time(20))});
  cairn::test::append_ok(*store, "account-alice",
                         {bank_event(bank::money_withdrawn{30}, at_time(30))});
  auto legacy = cairn::test::event("legacy_note", "old " + legacy_marker + " bytes");
  legacy.timestamp_ns = at_time(40);
  cairn::test::append_ok(*store, "legacy-1", {legacy});
  cairn::test::append_ok(*store, "account-bob",
                         {bank_event(bank::money_deposited{5}, at_time(50))});
  REQUIRE(store->save_checkpoint(checkpoint{"projection-balances", 4}));
}

std::vector<recorded_event> whole_log(const std::string& dir) {
  store_options ro;
  ro.read_only = true;
  auto store = cairn::test::open_ok(dir, ro);
  auto page = store->read_all(1, no_limit);
  REQUIRE(page);
  return page->events;
}

/// The account state of every account stream, replayed from the store.
std::map<std::string, bank::account::state> replay_accounts(const std::string& dir) {
  std::map<std::string, bank::account::state> out;
  for (const auto& ev : whole_log(dir)) {
    if (ev.stream.rfind("account-", 0) != 0)
      continue;
    auto decoded = bank_types().decode<bank::account::event>(ev);
    REQUIRE(decoded);
    auto it = out.try_emplace(ev.stream, bank::account::initial()).first;
    it->second = cairn::evolve_with<bank::account>(it->second, *decoded);
  }
  return out;
}

} // namespace

TEST_CASE("streams lists names, versions and last timestamps, as text and JSON",
          "[integration][cli]") {
  temp_dir dir;
  build_bank_store(dir.path());

  auto text = cairn_cli({"streams", dir.path()});
  REQUIRE(text.code == 0);
  CHECK_THAT(text.out, Catch::Contains("account-alice  3") && Catch::Contains("3 streams"));
  CHECK_THAT(text.out, Catch::Contains("2026-11-24T10:00:30.000000000Z"));

  auto json = cairn_cli({"streams", dir.path(), "--prefix", "account-", "--json"});
  REQUIRE(json.code == 0);
  auto lines = lines_of(json.out);
  REQUIRE(lines.size() == 2);
  auto bob = parse_json(lines[1]);
  CHECK(std::string{bob["stream"].GetString()} == "account-bob");
  CHECK(bob["version"].GetUint64() == 2);
  CHECK(bob["last_timestamp_ns"].GetInt64() == at_time(50));
}

TEST_CASE("events shows metadata, decoded payloads and hex for unregistered types",
          "[integration][cli]") {
  temp_dir dir;
  build_bank_store(dir.path());

  auto text = cairn_cli({"events", dir.path(), "account-alice"});
  REQUIRE(text.code == 0);
  CHECK_THAT(text.out, Catch::Contains("v2 @2 2026-11-24T10:00:10.000000000Z money_deposited/1"));
  CHECK_THAT(text.out, Catch::Contains("correlation=corr-1 command=dep-1 user=teller"));
  CHECK_THAT(text.out, Catch::Contains("{\"value0\":100}"));

  auto json = cairn_cli({"events", dir.path(), "account-alice", "--json", "--from", "2"});
  REQUIRE(json.code == 0);
  auto lines = lines_of(json.out);
  REQUIRE(lines.size() == 2);
  auto dep = parse_json(lines[0]);
  CHECK(dep["version"].GetUint64() == 2);
  CHECK(dep["position"].GetUint64() == 2);
  CHECK(std::string{dep["command_id"].GetString()} == "dep-1");
  CHECK(std::string{dep["timestamp"].GetString()} == "2026-11-24T10:00:10.000000000Z");
  CHECK(dep["data"]["value0"].GetInt64() == 100);
  CHECK_FALSE(dep.HasMember("payload_hex"));
  auto original = whole_log(dir.path());
  CHECK(std::string{dep["id"].GetString()} == original[1].id.to_string());

  auto legacy = cairn_cli({"events", dir.path(), "legacy-1", "--json"});
  REQUIRE(legacy.code == 0);
  auto note = parse_json(lines_of(legacy.out).at(0));
  CHECK_FALSE(note.HasMember("data"));
  std::string hex;
  for (unsigned char c : std::string{"old " + legacy_marker + " bytes"}) {
    static const char* digits = "0123456789abcdef";
    hex += digits[c >> 4];
    hex += digits[c & 0xf];
  }
  CHECK(std::string{note["payload_hex"].GetString()} == hex);
}

TEST_CASE("events --as-of and --to show the stream as it stood", "[integration][cli]") {
  temp_dir dir;
  build_bank_store(dir.path());
  for (const auto& as_of :
       {std::string{"2026-11-24T10:00:15Z"}, std::string{"2026-11-24T11:00:15+01:00"},
        std::to_string(at_time(15))}) {
    INFO("--as-of " << as_of);
    auto r = cairn_cli({"events", dir.path(), "account-alice", "--json", "--as-of", as_of});
    REQUIRE(r.code == 0);
    CHECK(lines_of(r.out).size() == 2);
  }
  auto to = cairn_cli({"events", dir.path(), "account-alice", "--json", "--to", "1"});
  REQUIRE(to.code == 0);
  CHECK(lines_of(to.out).size() == 1);
}

TEST_CASE("events --last shows the newest events, newest first", "[integration][cli]") {
  temp_dir dir;
  build_bank_store(dir.path());
  auto versions = [&](std::vector<std::string> args) {
    auto r = cairn_cli(std::move(args));
    REQUIRE(r.code == 0);
    std::vector<std::uint64_t> out;
    for (const auto& line : lines_of(r.out))
      out.push_back(parse_json(line)["version"].GetUint64());
    return out;
  };
  CHECK(versions({"events", dir.path(), "account-alice", "--json", "--last", "2"})
        == std::vector<std::uint64_t>{3, 2});
  CHECK(versions({"events", dir.path(), "account-alice", "--json", "--last", "9"})
        == std::vector<std::uint64_t>{3, 2, 1});
  CHECK(versions({"events", dir.path(), "account-alice", "--json", "--last", "1", "--to", "2"})
        == std::vector<std::uint64_t>{2});
  auto zero = cairn_cli({"events", dir.path(), "account-alice", "--last", "0"});
  CHECK(zero.code == 2);
  CHECK_THAT(zero.err, Catch::Contains("--last must be at least 1"));
  auto both = cairn_cli({"events", dir.path(), "account-alice", "--last", "1", "--from", "2"});
  CHECK(both.code == 2);
}

TEST_CASE("tail prints the global log, filtered by category and type", "[integration][cli]") {
  temp_dir dir;
  build_bank_store(dir.path());
  auto all = cairn_cli({"tail", dir.path()});
  REQUIRE(all.code == 0);
  auto lines = lines_of(all.out);
  REQUIRE(lines.size() == 6);
  CHECK_THAT(lines[4], Catch::StartsWith("@5 legacy-1 v1 2026-11-24T10:00:40.000000000Z"));

  auto deposits =
    cairn_cli({"tail", dir.path(), "--category", "account", "--type", "money_deposited", "--json"});
  REQUIRE(deposits.code == 0);
  auto dl = lines_of(deposits.out);
  REQUIRE(dl.size() == 2);
  CHECK(parse_json(dl[0])["position"].GetUint64() == 2);
  CHECK(parse_json(dl[1])["position"].GetUint64() == 6);

  auto from = cairn_cli({"tail", dir.path(), "--from", "6", "--json"});
  REQUIRE(from.code == 0);
  CHECK(lines_of(from.out).size() == 1);
}

TEST_CASE("tail --follow prints events committed later and ends on SIGTERM", "[integration][cli]") {
  temp_dir dir;
  build_bank_store(dir.path());
  cli_process follow{{"tail", dir.path(), "--follow", "--from", "7", "--json"}};
  {
    auto store = cairn::test::open_ok(dir.path());
    cairn::test::append_ok(*store, "account-carol",
                           {bank_event(bank::account_opened{"Carol"}, at_time(60))});
  }
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (follow.out().find("account-carol") == std::string::npos
         && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  follow.signal(SIGTERM);
  auto r = follow.wait();
  CHECK(r.code == 0);
  auto lines = lines_of(r.out);
  REQUIRE(lines.size() == 1);
  auto carol = parse_json(lines[0]);
  CHECK(carol["position"].GetUint64() == 7);
  CHECK(std::string{carol["data"]["value0"].GetString()} == "Carol");
}

TEST_CASE("stats reports counts, sizes, the type catalogue and the oldest and newest events",
          "[integration][cli]") {
  temp_dir dir;
  build_bank_store(dir.path());
  auto text = cairn_cli({"stats", dir.path()});
  REQUIRE(text.code == 0);
  CHECK_THAT(text.out, Catch::Contains("events       6"));
  CHECK_THAT(text.out, Catch::Contains("legacy_note v1 (not registered"));
  CHECK_THAT(text.out, Catch::Contains("newest       @6 2026-11-24T10:00:50.000000000Z"));

  auto json = cairn_cli({"stats", dir.path(), "--json"});
  REQUIRE(json.code == 0);
  auto s = parse_json(json.out);
  CHECK(s["events"].GetUint64() == 6);
  CHECK(s["streams"].GetUint64() == 3);
  CHECK(s["checkpoints"].GetUint64() == 1);
  CHECK(s["oldest_position"].GetUint64() == 1);
  CHECK(s["newest_position"].GetUint64() == 6);
  CHECK(s["map_used"].GetUint64() > 0);
  CHECK(s["map_used"].GetUint64() <= s["map_size"].GetUint64());
  REQUIRE(s["types"].Size() == 4);
  CHECK(std::string{s["types"][1]["type"].GetString()} == "legacy_note");
  CHECK_FALSE(s["types"][1]["decodable"].GetBool());
  CHECK(s["types"][0]["decodable"].GetBool());
}

TEST_CASE("stats finds the newest event behind the epoch records that end a promoted log",
          "[integration][cli]") {
  temp_dir dir;
  build_bank_store(dir.path());
  {
    auto store = cairn::persistence::open_store(dir.path(), {});
    REQUIRE(store);
    REQUIRE((*store)->begin_epoch(1, "A"));
    REQUIRE((*store)->begin_epoch(2, "A2"));
    REQUIRE(*(*store)->last_position() == 8);
  }
  auto text = cairn_cli({"stats", dir.path()});
  INFO(text.err);
  REQUIRE(text.code == 0);
  CHECK_THAT(text.out, Catch::Contains("newest       @6 2026-11-24T10:00:50.000000000Z"));
  auto json = cairn_cli({"stats", dir.path(), "--json"});
  REQUIRE(json.code == 0);
  CHECK(parse_json(json.out)["newest_position"].GetUint64() == 6);
}

TEST_CASE("checkpoints lists names, positions and how far behind they are", "[integration][cli]") {
  temp_dir dir;
  build_bank_store(dir.path());
  auto text = cairn_cli({"checkpoints", dir.path()});
  REQUIRE(text.code == 0);
  CHECK_THAT(text.out, Catch::Contains("projection-balances  4           2"));
  auto json = cairn_cli({"checkpoints", dir.path(), "--json"});
  REQUIRE(json.code == 0);
  auto cp = parse_json(lines_of(json.out).at(0));
  CHECK(std::string{cp["name"].GetString()} == "projection-balances");
  CHECK(cp["position"].GetUint64() == 4);
  CHECK(cp["behind"].GetUint64() == 2);
}

TEST_CASE("bad input gives one line on stderr and exit code 2", "[integration][cli]") {
  temp_dir dir;
  build_bank_store(dir.sub("store"));
  fs::create_directories(dir.sub("other"));
  { std::ofstream{dir.sub("other") + "/notes.txt"} << "hello"; }

  struct bad_case {
    std::vector<std::string> args;
    std::string says;
  };
  std::vector<bad_case> cases;
  cases.push_back({{"stats", dir.sub("missing")}, "no such directory"});
  cases.push_back({{"streams", dir.sub("other")}, "not a cairn store"});
  cases.push_back({{"verify", dir.sub("other/notes.txt")}, "not a directory"});
  cases.push_back({{"events", dir.sub("store"), "no_dash"}, "invalid stream name"});
  cases.push_back({{"events", dir.sub("store"), "account-nobody"}, "no such stream"});
  cases.push_back({{"events", dir.sub("store"), "account-alice", "--from", "abc"}, "--from"});
  cases.push_back(
    {{"events", dir.sub("store"), "account-alice", "--as-of", "yesterday"}, "not a time"});
  cases.push_back({{"tail", dir.sub("store"), "--from", "-3"}, "--from"});
  cases.push_back(
    {{"events", dir.sub("store"), "account-alice", "--to", "99999999999999999999"}, "--to"});
  // Beyond what int64 nanoseconds reach: refused, never wrapped.
  cases.push_back({{"events", dir.sub("store"), "account-alice", "--as-of", "9999-12-31T23:59:59Z"},
                   "time out of range"});
  cases.push_back({{"events", dir.sub("store"), "account-alice", "--as-of", "0001-01-01T00:00:00Z"},
                   "time out of range"});
  cases.push_back(
    {{"events", dir.sub("store"), "account-alice", "--as-of", "2026-11-24T10:00:00.1234567890Z"},
     "not a time"});
  cases.push_back({{"events", dir.sub("store"), "account-alice", "--as-of", "2026-11-24T10:00:00+"},
                   "not a time"});
  cases.push_back({{"frobnicate", dir.sub("store")}, "frobnicate"});
  cases.push_back({{"streams"}, "DIR"});
  for (const auto& c : cases) {
    INFO("cairn " << c.args.front() << " ... expecting " << c.says);
    auto r = cairn_cli(c.args);
    CHECK(r.code == 2);
    CHECK(r.out.empty());
    CHECK(lines_of(r.err).size() == 1);
    CHECK_THAT(r.err, Catch::StartsWith("cairn: ") && Catch::Contains(c.says));
  }

  auto help = cairn_cli({"events", "--help"});
  CHECK(help.code == 0);
  CHECK_THAT(help.out, Catch::Contains("--as-of"));
}

TEST_CASE("verify passes a healthy store and warns about unregistered types",
          "[integration][cli]") {
  temp_dir dir;
  build_bank_store(dir.path());
  auto r = cairn_cli({"verify", dir.path()});
  CHECK(r.code == 0);
  CHECK_THAT(r.out, Catch::Contains("ok: 6 events, 3 streams, 1 checkpoint, 4 types checked; "
                                    "0 problems, 1 warning"));
  CHECK_THAT(r.out, Catch::Contains("warning: legacy_note v1 is not registered"));
}

TEST_CASE("verify reports a corrupted record by position, keeps going and exits 1",
          "[integration][cli]") {
  temp_dir dir;
  build_bank_store(dir.path());
  REQUIRE(cairn::test::flip_in_file(dir.path() + "/data.mdb", legacy_marker, 2) >= 1);

  auto r = cairn_cli({"verify", dir.path()});
  CHECK(r.code == 1);
  CHECK_THAT(r.out, Catch::Contains("problem: position 5: log record fails its checksum"));
  CHECK_THAT(r.out, Catch::Contains("FAILED: 6 events"));

  auto json = cairn_cli({"verify", dir.path(), "--json"});
  CHECK(json.code == 1);
  auto v = parse_json(json.out);
  CHECK_FALSE(v["ok"].GetBool());
  CHECK(v["events"].GetUint64() == 6);
  // One problem: the records after the bad one were read, so position 6 is no gap.
  REQUIRE(v["problems"].Size() == 1);
  REQUIRE(v["problems"][0].HasMember("position"));
  CHECK(v["problems"][0]["position"].GetUint64() == 5);
  CHECK(v["warnings"].Size() == 1);
}

TEST_CASE("export then import into a new directory gives the same log, checkpoints and states",
          "[integration][cli]") {
  temp_dir dir;
  build_bank_store(dir.sub("a"));
  {
    // A projection's read model and a dead letter travel with the checkpoints.
    auto store = cairn::test::open_ok(dir.sub("a"));
    write_batch side;
    side.kv.push_back({kv_op::kind::put, "projection-balances", "alice", std::string("\0\1", 2)});
    cairn::persistence::dead_letter dl;
    dl.subscriber = "mailer";
    dl.position = 2;
    dl.stream = "account-alice";
    dl.version = 2;
    dl.type = "money_deposited";
    dl.error = "smtp \"down\"";
    dl.attempts = 5;
    dl.first_failure_ns = 10;
    dl.last_failure_ns = 20;
    side.dead_letters.push_back(dl);
    REQUIRE(store->append_batch(side));
  }
  auto file = dir.sub("a.jsonl");
  auto exp = cairn_cli({"export", dir.sub("a"), file});
  REQUIRE(exp.code == 0);
  CHECK_THAT(exp.out, Catch::Contains("exported 6 events, 1 checkpoint, 1 read-model key and 1 "
                                      "dead letter"));
  auto lines = lines_of(slurp(file));
  REQUIRE(lines.size() == 10); // header, 6 events, 1 checkpoint, 1 key, 1 dead letter
  CHECK(parse_json(lines[2])["data"]["value0"].GetInt64() == 100);

  // legacy_note is not registered in the shipped cairn: refused unless asked.
  auto strict = cairn_cli({"import", dir.sub("strict"), file});
  CHECK(strict.code == 2);
  CHECK_THAT(strict.err, Catch::Contains("legacy_note v1 is unknown")
                           && Catch::Contains("--allow-unknown-types")
                           && Catch::Contains("a.jsonl line 6"));
  auto imp = cairn_cli({"import", dir.sub("b"), file, "--allow-unknown-types"});
  REQUIRE(imp.code == 0);
  CHECK_THAT(imp.out, Catch::Contains("imported 6 events in 3 streams, 1 checkpoint"));
  CHECK_THAT(imp.out, Catch::Contains("unchecked: 1 event of legacy_note v1"));
  {
    store_options ro;
    ro.read_only = true;
    auto sa = cairn::test::open_ok(dir.sub("a"), ro)->read_side_tables();
    auto sb = cairn::test::open_ok(dir.sub("b"), ro)->read_side_tables();
    REQUIRE(sa);
    REQUIRE(sb);
    REQUIRE(sb->kv.size() == 1);
    CHECK(sb->kv[0].space == "projection-balances");
    CHECK(sb->kv[0].value == sa->kv[0].value);
    REQUIRE(sb->dead_letters.size() == 1);
    CHECK(sb->dead_letters[0].error == "smtp \"down\"");
    CHECK(sb->dead_letters[0].attempts == 5);
    CHECK(sb->dead_letters[0].last_failure_ns == 20);
    REQUIRE(sb->checkpoints.size() == 1);
    CHECK(sb->checkpoints[0].position == sa->checkpoints[0].position);
  }

  auto a = whole_log(dir.sub("a"));
  auto b = whole_log(dir.sub("b"));
  REQUIRE(a.size() == b.size());
  for (std::size_t i = 0; i < a.size(); ++i) {
    INFO("position " << a[i].position);
    CHECK(b[i].position == a[i].position);
    CHECK(b[i].stream == a[i].stream);
    CHECK(b[i].version == a[i].version);
    CHECK(b[i].id == a[i].id);
    CHECK(b[i].timestamp_ns == a[i].timestamp_ns);
    CHECK(b[i].type == a[i].type);
    CHECK(b[i].schema_version == a[i].schema_version);
    CHECK(b[i].meta == a[i].meta);
    CHECK(b[i].payload == a[i].payload);
  }
  store_options ro;
  ro.read_only = true;
  auto imported = cairn::test::open_ok(dir.sub("b"), ro);
  auto cp = imported->load_checkpoint("projection-balances");
  REQUIRE(cp);
  CHECK(*cp == std::optional<std::uint64_t>{4});
  // The command id is recorded again, so a retried command stays idempotent.
  auto dup = imported->find_command("account-alice", "dep-1");
  REQUIRE(dup);
  REQUIRE(dup->has_value());
  CHECK((*dup)->first_position == 2);
  imported.reset(); // one store handle per process

  auto states = replay_accounts(dir.sub("b"));
  auto original_states = replay_accounts(dir.sub("a"));
  REQUIRE(states.size() == original_states.size());
  for (const auto& [stream, s] : original_states) {
    INFO(stream);
    CHECK(states.at(stream).open == s.open);
    CHECK(states.at(stream).owner == s.owner);
    CHECK(states.at(stream).balance == s.balance);
  }
  CHECK(states.at("account-alice").balance == 70);
  CHECK(cairn_cli({"verify", dir.sub("b")}).code == 0);
}

TEST_CASE("import refuses a store that holds events, and export never overwrites",
          "[integration][cli]") {
  temp_dir dir;
  build_bank_store(dir.sub("a"));
  auto file = dir.sub("a.jsonl");
  REQUIRE(cairn_cli({"export", dir.sub("a"), file}).code == 0);
  auto before = slurp(file);

  auto again = cairn_cli({"export", dir.sub("a"), file});
  CHECK(again.code == 2);
  CHECK_THAT(again.err, Catch::Contains("exists"));
  CHECK(slurp(file) == before);

  auto into_full = cairn_cli({"import", dir.sub("a"), file});
  CHECK(into_full.code == 2);
  CHECK_THAT(into_full.err, Catch::Contains("not empty"));
  CHECK(whole_log(dir.sub("a")).size() == 6);

  { std::ofstream{dir.sub("junk.jsonl")} << "{\"hello\":1}\n"; }
  auto junk = cairn_cli({"import", dir.sub("c"), dir.sub("junk.jsonl")});
  CHECK(junk.code == 2);
  CHECK_THAT(junk.err, Catch::Contains("not a cairn export"));
}

TEST_CASE("verify and a backup run while another thread appends; the backup verifies",
          "[integration][cli]") {
  temp_dir dir;
  auto store = cairn::test::open_ok(dir.sub("live"));
  std::atomic<bool> stop{false};
  std::atomic<std::uint64_t> appended{0};
  std::thread writer{[&] {
    for (int i = 0; !stop.load(); ++i) {
      std::vector<event_data> batch;
      for (int k = 0; k < 8; ++k)
        batch.push_back(
          bank_types().encode(bank::account::event{bank::money_deposited{k + 1}}).value());
      auto r = store->append(cairn::test::request("account-" + std::to_string(i % 50),
                                                  expected_version::any(), std::move(batch)));
      if (!r)
        break;
      appended += 8;
    }
  }};
  while (appended.load() < 2000)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  auto live_verify = cairn_cli({"verify", dir.sub("live")});
  CHECK(live_verify.code == 0);
  CHECK_THAT(live_verify.out, Catch::Contains("0 problems"));
  auto backup = cairn_cli({"backup", dir.sub("live"), dir.sub("copy")});
  auto at_backup_end = appended.load();
  stop = true;
  writer.join();
  REQUIRE(backup.code == 0);
  CHECK_THAT(backup.out, Catch::Contains("backed up"));

  auto copy = whole_log(dir.sub("copy"));
  REQUIRE(copy.size() >= 2000);
  // Whole appends only; at most one committed append was not counted yet.
  CHECK(copy.size() % 8 == 0);
  CHECK(copy.size() <= at_backup_end + 8);
  auto live = store->read_all(1, copy.size());
  REQUIRE(live);
  REQUIRE(live->events.size() == copy.size());
  for (std::size_t i = 0; i < copy.size(); ++i) {
    CHECK(copy[i].id == live->events[i].id);
    CHECK(copy[i].payload == live->events[i].payload);
  }
  auto verified = cairn_cli({"verify", dir.sub("copy")});
  CHECK(verified.code == 0);
  CHECK_THAT(verified.out, Catch::Contains("ok: " + std::to_string(copy.size()) + " events"));
  // A backup is a complete store: a runtime could append to it.
  auto reopened = cairn::test::open_ok(dir.sub("copy"));
  cairn::test::append_ok(*reopened, "account-new", {bank_event(bank::account_opened{"N"}, 1)});

  auto into_full = cairn_cli({"backup", dir.sub("live"), dir.sub("copy")});
  CHECK(into_full.code == 2);
  CHECK_THAT(into_full.err, Catch::Contains("not empty"));
}

TEST_CASE("dlq lists dead letters, marks them for replay at the next start, and discards them",
          "[integration][cli][subscriber]") {
  temp_dir dir;
  const std::string data = dir.sub("data");
  std::atomic<bool> broken{true};
  std::atomic<int> poison_calls{0};
  auto handler = [&](const cairn::envelope<bank::account::event>& e) -> cairn::result<void> {
    if (e.position == 3) {
      ++poison_calls;
      if (broken.load())
        return cairn::fail(cairn::errc::unavailable, "downstream is down");
    }
    return {};
  };
  cairn::subscription_options once;
  once.max_attempts = 1;
  auto start = [&] {
    cairn::runtime_options o;
    o.data_dir = data;
    o.durability = cairn::persistence::durability::no_sync;
    auto rt = cairn::runtime::start(o);
    REQUIRE(rt);
    REQUIRE((*rt)->register_aggregate<bank::account>());
    return std::move(*rt);
  };
  {
    auto rt = start();
    std::uint64_t last = 0;
    for (int i = 0; i < 5; ++i) {
      auto r = rt->send<bank::account>("d" + std::to_string(i), bank::open_account{"x"}).get();
      REQUIRE(r);
      last = r->last_position;
    }
    REQUIRE(rt->subscribe<bank::account::event>("mailer", {}, handler, once));
    REQUIRE(rt->wait_for("mailer", last, std::chrono::seconds{30}));
    REQUIRE(rt->dead_letters("mailer")->size() == 1);

    // Listing works next to the running service; changing needs it stopped.
    auto listed = cairn_cli({"dlq", data, "list", "--json"});
    REQUIRE(listed.code == 0);
    auto lines = lines_of(listed.out);
    REQUIRE(lines.size() == 1);
    auto dl = parse_json(lines[0]);
    CHECK(std::string{dl["subscriber"].GetString()} == "mailer");
    CHECK(dl["position"].GetUint64() == 3);
    CHECK(dl["attempts"].GetUint() == 1);
    CHECK(std::string{dl["error"].GetString()}.find("downstream is down") != std::string::npos);
    CHECK_FALSE(dl["replay_requested"].GetBool());
    auto busy = cairn_cli({"dlq", data, "replay", "--subscriber", "mailer"});
    CHECK(busy.code == 1);
    CHECK_THAT(busy.err, Catch::Contains("stop it first"));
  }
  auto missing = cairn_cli({"dlq", data, "replay"});
  CHECK(missing.code == 2);
  CHECK_THAT(missing.err, Catch::Contains("--subscriber is required"));
  auto none = cairn_cli({"dlq", data, "discard", "--subscriber", "mailer", "--position", "4"});
  CHECK(none.code == 2);
  CHECK_THAT(none.err, Catch::Contains("no such dead letter"));
  auto marked = cairn_cli({"dlq", data, "replay", "--subscriber", "mailer"});
  REQUIRE(marked.code == 0);
  CHECK_THAT(marked.out, Catch::Contains("marked for replay at the next start: 1 dead letter"));
  CHECK_THAT(cairn_cli({"dlq", data, "list"}).out, Catch::Contains("(replay requested)"));

  // Fixed and started again: the subscriber replays the marked dead letter.
  broken = false;
  {
    auto rt = start();
    REQUIRE(rt->subscribe<bank::account::event>("mailer", {}, handler, once));
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds{30};
    while (!rt->dead_letters("mailer")->empty() && std::chrono::steady_clock::now() < deadline)
      std::this_thread::sleep_for(std::chrono::milliseconds{5});
    CHECK(rt->dead_letters("mailer")->empty());
    CHECK(poison_calls.load() == 2);
  }
  CHECK_THAT(cairn_cli({"dlq", data, "list"}).out, Catch::Contains("0 dead letters"));

  // Discard, on a dead letter written straight into the store.
  {
    auto store = cairn::persistence::open_store(data, {});
    REQUIRE(store);
    cairn::persistence::write_batch b;
    cairn::persistence::dead_letter dl;
    dl.subscriber = "other";
    dl.position = 2;
    dl.error = "e";
    b.dead_letters.push_back(dl);
    REQUIRE((*store)->append_batch(b));
  }
  auto discarded = cairn_cli({"dlq", data, "discard", "--subscriber", "other"});
  REQUIRE(discarded.code == 0);
  CHECK_THAT(discarded.out, Catch::Contains("discarded 1 dead letter of other"));
  CHECK_THAT(cairn_cli({"dlq", data, "list", "--subscriber", "other"}).out,
             Catch::Contains("0 dead letters"));
}

// -- import validates what it writes --------------------------------------------------------

namespace {

/// One event line of an export, `payload_hex` as given.
std::string event_line(std::uint64_t position, const std::string& stream, std::uint64_t version,
                       const std::string& type, const std::string& payload_hex) {
  return "{\"position\":" + std::to_string(position) + ",\"stream\":\"" + stream
         + "\",\"version\":" + std::to_string(version)
         + ",\"id\":\"000102030405060708090a0b0c0d0e0f\",\"timestamp_ns\":1,\"type\":\"" + type
         + "\",\"schema_version\":1,\"payload_hex\":\"" + payload_hex + "\"}";
}

std::string hex_of(const std::string& bytes) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string out;
  for (unsigned char c : bytes) {
    out += digits[c >> 4];
    out += digits[c & 0xf];
  }
  return out;
}

std::string encoded_opened(const std::string& owner) {
  std::string out;
  encode_payload(bank::account_opened{owner}, out);
  return out;
}

/// Writes `lines` to `path`, one per line.
void write_lines(const std::string& path, const std::vector<std::string>& lines) {
  std::ofstream out(path, std::ios::binary);
  for (const auto& l : lines)
    out << l << '\n';
}

std::string header_line(std::uint64_t events) {
  return "{\"cairn_export\":1,\"events\":" + std::to_string(events) + "}";
}

} // namespace

TEST_CASE("import refuses a line nesting 200 000 JSON objects with an error, not a crash",
          "[integration][cli][import]") {
  temp_dir dir;
  std::string nested;
  nested.reserve(200'000 * 6 + 2);
  for (int i = 0; i < 200'000; ++i)
    nested += "{\"a\":";
  nested += "1";
  nested.append(200'000, '}');
  write_lines(dir.sub("nested.jsonl"), {header_line(1), nested});
  auto r = cairn_cli({"import", dir.sub("store"), dir.sub("nested.jsonl")});
  CHECK(r.code == 2); // not 128 + SIGSEGV
  CHECK(lines_of(r.err).size() == 1);
  CHECK_THAT(r.err, Catch::StartsWith("cairn: invalid_argument: ")
                      && Catch::Contains("nested.jsonl line 2"));

  // The same nesting as an array, and unbalanced: refused as well.
  std::string arrays(200'000, '[');
  write_lines(dir.sub("arrays.jsonl"), {header_line(1), arrays});
  auto a = cairn_cli({"import", dir.sub("store2"), dir.sub("arrays.jsonl")});
  CHECK(a.code == 2);
  CHECK_THAT(a.err, Catch::Contains("not JSON") && Catch::Contains("arrays.jsonl line 2"));
  // A header nested as deep.
  write_lines(dir.sub("deep-header.jsonl"), {nested});
  auto h = cairn_cli({"import", dir.sub("store3"), dir.sub("deep-header.jsonl")});
  CHECK(h.code == 2);
  CHECK_THAT(h.err, Catch::Contains("not a cairn export"));
}

TEST_CASE("import refuses a payload whose string length says 4 GiB, naming its line",
          "[integration][cli][import]") {
  temp_dir dir;
  // 8 bytes of length (2^32, little-endian) and 85 bytes: 93 bytes claiming 4 GiB.
  std::string hostile{"\x00\x00\x00\x00\x01\x00\x00\x00", 8};
  hostile += std::string(85, 'x');
  write_lines(dir.sub("hostile.jsonl"),
              {header_line(2),
               event_line(1, "account-alice", 1, "account_opened", hex_of(encoded_opened("Alice"))),
               event_line(2, "account-bob", 1, "account_opened", hex_of(hostile))});
  auto r = cairn_cli({"import", dir.sub("store"), dir.sub("hostile.jsonl")});
  CHECK(r.code == 2);
  CHECK_THAT(r.err, Catch::Contains("hostile.jsonl line 3")
                      && Catch::Contains("position 2 (account-bob version 1)")
                      && Catch::Contains("payload of account_opened (93 bytes) does not decode")
                      && Catch::Contains("a length of 4294967296"));

  // A truncated payload of a registered type is refused just the same, flag or not.
  write_lines(dir.sub("short.jsonl"),
              {header_line(1), event_line(1, "account-alice", 1, "account_opened", "0500")});
  auto t =
    cairn_cli({"import", dir.sub("store2"), dir.sub("short.jsonl"), "--allow-unknown-types"});
  CHECK(t.code == 2);
  CHECK_THAT(t.err, Catch::Contains("short.jsonl line 2") && Catch::Contains("does not decode"));

  // Bad hex is an error too.
  write_lines(dir.sub("hex.jsonl"),
              {header_line(1), event_line(1, "account-alice", 1, "account_opened", "0g")});
  auto x = cairn_cli({"import", dir.sub("store3"), dir.sub("hex.jsonl")});
  CHECK(x.code == 2);
  CHECK_THAT(x.err, Catch::Contains("\"payload_hex\": not a hex digit at offset 0")
                      && Catch::Contains("hex.jsonl line 2"));
}

TEST_CASE("import refuses a checkpoint or a dead letter beyond the imported log",
          "[integration][cli][import]") {
  temp_dir dir;
  auto ev = event_line(1, "account-alice", 1, "account_opened", hex_of(encoded_opened("Alice")));
  write_lines(dir.sub("cp.jsonl"),
              {header_line(1), ev, R"({"checkpoint":"projection-balances","position":1})",
               R"({"checkpoint":"projection-ahead","position":2})"});
  auto r = cairn_cli({"import", dir.sub("store"), dir.sub("cp.jsonl")});
  CHECK(r.code == 2);
  CHECK_THAT(r.err, Catch::Contains("cp.jsonl line 4")
                      && Catch::Contains("checkpoint projection-ahead at position 2 is beyond "
                                         "the imported log, which ends at 1"));

  write_lines(dir.sub("dl.jsonl"),
              {header_line(1), ev,
               R"({"dead_letter":"mailer","position":7,"stream":"account-alice","version":7,)"
               R"("type":"account_opened","error":"x","attempts":1,"first_failure_ns":1,)"
               R"("last_failure_ns":2})"});
  auto d = cairn_cli({"import", dir.sub("store2"), dir.sub("dl.jsonl")});
  CHECK(d.code == 2);
  CHECK_THAT(d.err, Catch::Contains("dl.jsonl line 3")
                      && Catch::Contains("dead letter of mailer at position 7 is beyond"));

  // Within the log, the same file imports.
  write_lines(dir.sub("ok.jsonl"),
              {header_line(1), ev, R"({"checkpoint":"projection-balances","position":1})"});
  auto ok = cairn_cli({"import", dir.sub("store3"), dir.sub("ok.jsonl")});
  CHECK(ok.code == 0);
  CHECK_THAT(ok.out, Catch::Contains("imported 1 event in 1 stream, 1 checkpoint"));
}

TEST_CASE("import refuses a line longer than 64 MiB without reading it whole",
          "[integration][cli][import]") {
  temp_dir dir;
  {
    std::ofstream out(dir.sub("long.jsonl"), std::ios::binary);
    out << header_line(1) << '\n';
    std::string chunk(1 << 20, ' ');
    for (int i = 0; i < 65; ++i)
      out << chunk;
  }
  auto r = cairn_cli({"import", dir.sub("store"), dir.sub("long.jsonl")});
  CHECK(r.code == 2);
  CHECK_THAT(r.err, Catch::Contains("the line is longer than 64 MiB")
                      && Catch::Contains("long.jsonl line 2"));
}

TEST_CASE("verify and events report a stored payload whose length says 4 GiB, without "
          "allocating it",
          "[integration][cli][bounded]") {
  temp_dir dir;
  build_bank_store(dir.path());
  {
    auto store = cairn::test::open_ok(dir.path());
    std::string hostile{"\x00\x00\x00\x00\x01\x00\x00\x00", 8};
    hostile += std::string(85, 'x');
    cairn::test::append_ok(*store, "account-carol",
                           {cairn::test::event("account_opened", hostile)});
  }
  auto v = cairn_cli({"verify", dir.path()});
  CHECK(v.code == 1);
  CHECK_THAT(v.out, Catch::Contains("position 7")
                      && Catch::Contains("payload of account_opened (93 bytes) does not decode")
                      && Catch::Contains("a length of 4294967296"));
  auto e = cairn_cli({"events", dir.path(), "account-carol", "--json"});
  CHECK(e.code == 0);
  CHECK_THAT(e.out, Catch::Contains("\"decode_error\"") && Catch::Contains("beyond the 85 bytes"));
  // Every CLI child of this process so far stayed far below the 4 GiB the length asks for.
  rusage children{};
  REQUIRE(::getrusage(RUSAGE_CHILDREN, &children) == 0);
  CHECK(children.ru_maxrss < 512 * 1024); // KiB
}

namespace {

metadata tenant_meta(std::string tenant) {
  metadata m;
  m.tenant = std::move(tenant);
  return m;
}

/// Positions 1..7: account-a1 (acme) 1, 2; account-g1 (globex) 3; account-a2
/// (acme) 4; account-n1 (no tenant) 5; account-g1 6; account-a1 7, appended
/// without a tenant (as a tool would), so the stream stays acme's.
void build_tenant_store(const std::string& dir) {
  auto store = cairn::test::open_ok(dir);
  using cairn::test::append_ok;
  append_ok(*store, "account-a1",
            {bank_event(bank::account_opened{"A1"}, at_time(0)),
             bank_event(bank::money_deposited{10}, at_time(1))},
            tenant_meta("acme"));
  append_ok(*store, "account-g1", {bank_event(bank::account_opened{"G1"}, at_time(2))},
            tenant_meta("globex"));
  append_ok(*store, "account-a2", {bank_event(bank::account_opened{"A2"}, at_time(3))},
            tenant_meta("acme"));
  append_ok(*store, "account-n1", {bank_event(bank::account_opened{"N1"}, at_time(4))});
  append_ok(*store, "account-g1", {bank_event(bank::money_deposited{5}, at_time(5))},
            tenant_meta("globex"));
  append_ok(*store, "account-a1", {bank_event(bank::money_deposited{1}, at_time(6))});
}

std::vector<std::uint64_t> json_positions(const std::string& out) {
  std::vector<std::uint64_t> p;
  for (const auto& line : lines_of(out))
    p.push_back(parse_json(line)["position"].GetUint64());
  return p;
}

} // namespace

TEST_CASE("tail, streams and events --tenant show only that tenant's events and streams",
          "[integration][cli][tenant]") {
  temp_dir dir;
  build_tenant_store(dir.path());
  using P = std::vector<std::uint64_t>;

  auto tail = cairn_cli({"tail", dir.path(), "--tenant", "acme", "--json"});
  REQUIRE(tail.code == 0);
  CHECK(json_positions(tail.out) == P{1, 2, 4});
  auto globex = cairn_cli({"tail", dir.path(), "--tenant", "globex", "--category", "account"});
  REQUIRE(globex.code == 0);
  auto lines = lines_of(globex.out);
  REQUIRE(lines.size() == 2);
  CHECK_THAT(lines[0], Catch::StartsWith("@3 account-g1 v1") && Catch::Contains("tenant=globex"));

  auto streams = cairn_cli({"streams", dir.path(), "--tenant", "acme"});
  REQUIRE(streams.code == 0);
  CHECK_THAT(streams.out, Catch::Contains("account-a1  3") && Catch::Contains("account-a2  1")
                            && Catch::Contains("2 streams"));
  CHECK_THAT(streams.out, !Catch::Contains("account-g1") && !Catch::Contains("account-n1"));
  auto none = cairn_cli({"streams", dir.path(), "--tenant", "initech", "--json"});
  REQUIRE(none.code == 0);
  CHECK(none.out.empty());

  auto events = cairn_cli({"events", dir.path(), "account-a1", "--tenant", "acme", "--json"});
  REQUIRE(events.code == 0);
  CHECK(json_positions(events.out) == P{1, 2}); // v3 names no tenant
  auto newest =
    cairn_cli({"events", dir.path(), "account-a1", "--tenant", "acme", "--last", "1", "--json"});
  REQUIRE(newest.code == 0);
  CHECK(json_positions(newest.out) == P{2});
  auto other = cairn_cli({"events", dir.path(), "account-g1", "--tenant", "acme"});
  REQUIRE(other.code == 0);
  CHECK(other.out == "no events\n");

  auto empty = cairn_cli({"tail", dir.path(), "--tenant", ""});
  CHECK(empty.code == 2);
  CHECK_THAT(empty.err, Catch::Contains("tenant"));
}

TEST_CASE("stats --tenants counts events and streams per tenant", "[integration][cli][tenant]") {
  temp_dir dir;
  build_tenant_store(dir.path());
  auto json = cairn_cli({"stats", dir.path(), "--tenants", "--json"});
  REQUIRE(json.code == 0);
  auto s = parse_json(json.out);
  REQUIRE(s["tenants"].Size() == 3);
  const auto& t = s["tenants"];
  CHECK(std::string{t[0]["tenant"].GetString()}.empty()); // no tenant: account-n1 and a1's v3
  CHECK(t[0]["events"].GetUint64() == 2);
  CHECK(t[0]["streams"].GetUint64() == 1);
  CHECK(std::string{t[1]["tenant"].GetString()} == "acme");
  CHECK(t[1]["events"].GetUint64() == 3);
  CHECK(t[1]["streams"].GetUint64() == 2);
  CHECK(std::string{t[2]["tenant"].GetString()} == "globex");
  CHECK(t[2]["events"].GetUint64() == 2);
  CHECK(t[2]["streams"].GetUint64() == 1);
  auto text = cairn_cli({"stats", dir.path(), "--tenants"});
  REQUIRE(text.code == 0);
  CHECK_THAT(text.out, Catch::Contains("tenants      (none)  2 events in 1 stream"));
  CHECK_THAT(text.out, Catch::Contains("             acme    3 events in 2 streams"));
  auto plain = cairn_cli({"stats", dir.path(), "--json"});
  REQUIRE(plain.code == 0);
  CHECK_FALSE(parse_json(plain.out).HasMember("tenants"));
}

TEST_CASE("export --tenant writes that tenant's events renumbered, and the file imports into a "
          "store of its own",
          "[integration][cli][tenant]") {
  temp_dir dir;
  build_tenant_store(dir.sub("all"));
  auto file = dir.sub("acme.jsonl");
  auto exp = cairn_cli({"export", dir.sub("all"), file, "--tenant", "acme"});
  REQUIRE(exp.code == 0);
  CHECK_THAT(exp.out, Catch::Contains("exported 3 events of tenant acme"));
  auto lines = lines_of(slurp(file));
  REQUIRE(lines.size() == 4); // header and 3 events: no checkpoints, read models, dead letters
  auto header = parse_json(lines[0]);
  CHECK(header["events"].GetUint64() == 3);
  CHECK(std::string{header["tenant"].GetString()} == "acme");
  auto third = parse_json(lines[3]);
  CHECK(third["position"].GetUint64() == 3);
  CHECK(std::string{third["stream"].GetString()} == "account-a2");

  auto imp = cairn_cli({"import", dir.sub("acme"), file});
  REQUIRE(imp.code == 0);
  auto log = whole_log(dir.sub("acme"));
  REQUIRE(log.size() == 3);
  auto source = whole_log(dir.sub("all"));
  CHECK(log[2].id == source[3].id);
  for (const auto& ev : log)
    CHECK(ev.meta.tenant == "acme");
}

TEST_CASE("epochs lists the store's epochs, which streams, tail, export and verify treat as the "
          "store's own",
          "[integration][cli][replication]") {
  temp_dir dir;
  build_bank_store(dir.path());
  {
    auto store = cairn::test::open_ok(dir.path());
    REQUIRE(store->begin_epoch(1, "node-a"));
    cairn::test::append_ok(*store, "account-bob",
                           {bank_event(bank::money_deposited{1}, at_time(60))});
    REQUIRE(store->begin_epoch(4, "node-b"));
  }
  auto text = cairn_cli({"epochs", dir.path()});
  REQUIRE(text.code == 0);
  CHECK_THAT(text.out, Catch::Contains("EPOCH"));
  CHECK_THAT(text.out, Catch::Contains("node-b"));
  CHECK_THAT(text.out, Catch::Contains("2 epochs, current epoch 4"));
  auto json = cairn_cli({"epochs", dir.path(), "--json"});
  REQUIRE(json.code == 0);
  auto lines = lines_of(json.out);
  REQUIRE(lines.size() == 2);
  auto second = parse_json(lines[1]);
  CHECK(second["epoch"].GetUint64() == 4);
  CHECK(second["position"].GetUint64() == 9);
  CHECK(std::string{second["node"].GetString()} == "node-b");

  CHECK_THAT(cairn_cli({"streams", dir.path()}).out, !Catch::Contains("$epoch"));
  CHECK(lines_of(cairn_cli({"tail", dir.path(), "--json"}).out).size() == 7);
  auto verify = cairn_cli({"verify", dir.path()});
  CHECK(verify.code == 0);
  auto exp = cairn_cli({"export", dir.path(), dir.sub("out.jsonl")});
  REQUIRE(exp.code == 0);
  CHECK_THAT(exp.out, Catch::Contains("exported 7 events"));

  auto at = cairn_cli({"digest", dir.path(), "--at", "7"});
  auto to = cairn_cli({"digest", dir.path(), "--to", "7"});
  REQUIRE(at.code == 0);
  CHECK(to.out == at.out);
  CHECK_THAT(to.out, Catch::StartsWith("7:"));
}
