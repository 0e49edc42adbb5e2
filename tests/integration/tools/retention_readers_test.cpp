// The readers that list every record still stored (`cairn events`, `tail`,
// `export`, `export --subject`) on a store that retention cut: they read the
// records kept below the cut and those after it, in position order, say once
// where the cut is, and an export of a cut store is refused by import with
// the reason (docs/audit.md#retention).

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "cairn/persistence/codec.hpp" // before rapidjson: cereal configures it
#include "cairn/persistence/event_store.hpp"
#include "cairn/persistence/retention.hpp"
#include "support/cli_run.hpp"
#include "support/temp_dir.hpp"
#include "unit/persistence/helpers.hpp"

using namespace cairn::persistence;
using cairn::test::open_ok;
using cairn::test::temp_dir;
using cairn::test::value_of;
using namespace cairn::test::cli;

namespace {

namespace fs = std::filesystem;

constexpr std::int64_t hour = 3600LL * 1'000'000'000LL;
constexpr std::int64_t t0 = 1'760'000'000LL * 1'000'000'000LL;

bool contains(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}

/// Streams prov-1..prov-3 and acct-1, 10 events each, one event per commit
/// round after round: round r (0-based), stream i -> position 4r + i + 1.
/// acct-1's events name data subject "alice" and tenant "acme". Then `prov=last:3` removes
/// prov v1..v7 (positions up to 27): the log is complete from 28, and the
/// six acct-1 events at 4, 8, ..., 24 are kept below the cut (acct has no rule).
void build_cut_store(const std::string& dir) {
  auto store = open_ok(dir);
  const char* streams[] = {"prov-1", "prov-2", "prov-3", "acct-1"};
  for (int round = 0; round < 10; ++round)
    for (const char* s : streams) {
      event_data e;
      e.type = "noted";
      e.payload = std::string{s} + " v" + std::to_string(round + 1);
      e.timestamp_ns = t0 + round * hour;
      metadata meta;
      if (std::string{s} == "acct-1") {
        meta.subject = "alice";
        meta.tenant = "acme";
      }
      REQUIRE(store->append(cairn::test::request(s, expected_version::any(), {e}, meta)));
    }
  for (auto s : {"prov-1", "prov-2", "prov-3"})
    REQUIRE(store->save_snapshot(snapshot{s, 10, "state", 1, "s10"}));
  auto plan =
    value_of(store->plan_retention(value_of(parse_retention_policy({"prov=last:3"})), t0));
  REQUIRE(plan.new_first_position == 28);
  auto done = value_of(store->apply_retention(plan));
  REQUIRE(done.events == 21);
}

/// The positions every kept record has: 4, 8, ..., 24 below the cut, 28-40 after it.
std::vector<std::uint64_t> kept_positions() {
  std::vector<std::uint64_t> out;
  for (std::uint64_t p = 4; p < 28; p += 4)
    out.push_back(p);
  for (std::uint64_t p = 28; p <= 40; ++p)
    out.push_back(p);
  return out;
}

const std::string cut_note = "retention removed events before position 28 (the log is complete "
                             "from there); 6 kept events lie below it";

} // namespace

TEST_CASE("tail on a cut store prints the kept records below the cut and after it, and says "
          "where the cut is once",
          "[integration][cli][retention]") {
  temp_dir dir;
  build_cut_store(dir.path());

  auto r = cairn_cli_line("tail " + dir.path() + " --json");
  REQUIRE(r.code == 0);
  CHECK(r.err == "cairn: " + cut_note + "\n");
  std::vector<std::uint64_t> positions;
  for (const auto& line : lines_of(r.out))
    positions.push_back(parse_json(line)["position"].GetUint64());
  CHECK(positions == kept_positions());

  // Text form: the first line is acct-1 v1 at position 4.
  auto text = cairn_cli_line("tail " + dir.path());
  REQUIRE(text.code == 0);
  REQUIRE_FALSE(lines_of(text.out).empty());
  CHECK(lines_of(text.out).front().rfind("@4 acct-1 v1 ", 0) == 0);
  CHECK(lines_of(text.out).size() == kept_positions().size());
  CHECK(contains(text.err, cut_note));

  // From the cut on the log is whole: nothing to say.
  auto from_cut = cairn_cli_line("tail " + dir.path() + " --from 28");
  REQUIRE(from_cut.code == 0);
  CHECK(from_cut.err.empty());
  CHECK(lines_of(from_cut.out).size() == 13);

  // A filter applies below the cut too.
  auto prov = cairn_cli_line("tail " + dir.path() + " --category prov --json");
  REQUIRE(prov.code == 0);
  auto prov_lines = lines_of(prov.out);
  REQUIRE(prov_lines.size() == 9);
  CHECK(parse_json(prov_lines.front())["position"].GetUint64() == 29);
}

TEST_CASE("events of a cut stream shows its kept versions and names the versions retention "
          "removed",
          "[integration][cli][retention]") {
  temp_dir dir;
  build_cut_store(dir.path());

  auto r = cairn_cli_line("events " + dir.path() + " prov-1 --json");
  REQUIRE(r.code == 0);
  CHECK(r.err
        == "cairn: retention removed versions 1-7 of prov-1; it is complete from version 8\n");
  auto lines = lines_of(r.out);
  REQUIRE(lines.size() == 3);
  CHECK(parse_json(lines[0])["version"].GetUint64() == 8);
  CHECK(parse_json(lines[0])["position"].GetUint64() == 29);
  CHECK(parse_json(lines[2])["version"].GetUint64() == 10);

  // --last reaching below the cut shows what is kept, newest first.
  auto last = cairn_cli_line("events " + dir.path() + " prov-1 --last 5 --json");
  REQUIRE(last.code == 0);
  auto last_lines = lines_of(last.out);
  REQUIRE(last_lines.size() == 3);
  CHECK(parse_json(last_lines[0])["version"].GetUint64() == 10);
  CHECK(parse_json(last_lines[2])["version"].GetUint64() == 8);
  CHECK(contains(last.err, "removed versions 1-7 of prov-1"));

  // A range wholly inside what was removed: nothing shown, and said why.
  auto gone = cairn_cli_line("events " + dir.path() + " prov-1 --to 5");
  REQUIRE(gone.code == 0);
  CHECK(gone.out == "no events\n");
  CHECK(contains(gone.err, "complete from version 8"));

  // A range from the first kept version on, or a stream never cut: nothing to say.
  auto kept = cairn_cli_line("events " + dir.path() + " prov-1 --from 8");
  REQUIRE(kept.code == 0);
  CHECK(kept.err.empty());
  auto acct = cairn_cli_line("events " + dir.path() + " acct-1 --json");
  REQUIRE(acct.code == 0);
  CHECK(acct.err.empty());
  auto acct_lines = lines_of(acct.out);
  REQUIRE(acct_lines.size() == 10);
  CHECK(parse_json(acct_lines[0])["position"].GetUint64() == 4);
}

TEST_CASE("export of a cut store writes every kept record and the cut in its header; import "
          "refuses the file naming why",
          "[integration][cli][retention][export]") {
  temp_dir dir, out, dest;
  build_cut_store(dir.path());
  auto file = out.sub("cut.jsonl");

  auto r = cairn_cli_line("export " + dir.path() + " " + file);
  REQUIRE(r.code == 0);
  CHECK(r.err == "cairn: " + cut_note + "\n");
  CHECK(contains(r.out, "exported 19 events"));
  auto lines = lines_of(slurp(file));
  REQUIRE(lines.size() == 1 + 19);
  auto header = parse_json(lines[0]);
  CHECK(header["events"].GetUint64() == 19);
  CHECK(header["first_position"].GetUint64() == 28);
  CHECK(header["kept_below"].GetUint64() == 6);
  std::vector<std::uint64_t> positions;
  for (std::size_t i = 1; i < lines.size(); ++i) {
    auto ev = parse_json(lines[i]);
    REQUIRE(ev.HasMember("payload_hex"));
    positions.push_back(ev["position"].GetUint64());
  }
  CHECK(positions == kept_positions());

  // The holes cannot be written again, nor the cut streams' state without
  // their snapshots: import refuses before it creates anything.
  auto target = dest.sub("imported");
  auto imp = cairn_cli_line("import " + target + " " + file);
  CHECK(imp.code == 2);
  CHECK(contains(imp.err, "retention cut before position 28"));
  CHECK(contains(imp.err, "cairn backup"));
  CHECK_FALSE(fs::exists(fs::path(target) / "data.mdb"));

  // A backup of the cut store is the way: it reads as the source does.
  auto backup = cairn_cli_line("backup " + dir.path() + " " + target);
  REQUIRE(backup.code == 0);
  auto copied = cairn_cli_line("tail " + target + " --json");
  REQUIRE(copied.code == 0);
  CHECK(lines_of(copied.out).size() == kept_positions().size());
  CHECK(contains(copied.err, cut_note));
}

TEST_CASE("export --tenant of a cut store renumbers the tenant's kept events, names the cut, and "
          "import refuses it",
          "[integration][cli][retention][export][tenant]") {
  temp_dir dir, out, dest;
  build_cut_store(dir.path());
  auto file = out.sub("acme.jsonl");
  auto r = cairn_cli_line("export " + dir.path() + " " + file + " --tenant acme");
  REQUIRE(r.code == 0);
  CHECK(r.err == "cairn: " + cut_note + "\n");
  auto lines = lines_of(slurp(file));
  REQUIRE(lines.size() == 1 + 10);
  auto header = parse_json(lines[0]);
  CHECK(header["events"].GetUint64() == 10);
  CHECK(header["first_position"].GetUint64() == 28);
  CHECK(parse_json(lines[1])["position"].GetUint64() == 1);
  CHECK(parse_json(lines[10])["position"].GetUint64() == 10);
  auto imp = cairn_cli_line("import " + dest.sub("acme") + " " + file);
  CHECK(imp.code == 2);
  CHECK(contains(imp.err, "retention cut before position 28"));
}

TEST_CASE("export of a store never cut keeps its header as it was and round trips",
          "[integration][cli][retention][export]") {
  temp_dir dir, out, dest;
  {
    auto store = open_ok(dir.path());
    cairn::test::append_ok(*store, "acct-1", cairn::test::numbered(3));
  }
  auto file = out.sub("whole.jsonl");
  auto r = cairn_cli_line("export " + dir.path() + " " + file);
  REQUIRE(r.code == 0);
  CHECK(r.err.empty());
  auto lines = lines_of(slurp(file));
  REQUIRE_FALSE(lines.empty());
  CHECK(lines[0] == R"({"cairn_export":1,"events":3,"checkpoints":0})");
  auto imp = cairn_cli_line("import " + dest.sub("copy") + " " + file + " --allow-unknown-types");
  CHECK(imp.code == 0);
}

TEST_CASE("export --subject of a cut store lists the subject's events below and after the cut",
          "[integration][cli][retention][subject]") {
  temp_dir dir, out;
  build_cut_store(dir.path());
  auto file = out.sub("alice.jsonl");

  auto r = cairn_cli_line("export " + dir.path() + " " + file + " --subject alice");
  REQUIRE(r.code == 0);
  CHECK(r.err == "cairn: " + cut_note + "\n");
  CHECK(contains(r.out, "exported 10 events about alice"));
  auto lines = lines_of(slurp(file));
  REQUIRE(lines.size() == 1 + 10);
  auto header = parse_json(lines[0]);
  CHECK(header["first_position"].GetUint64() == 28);
  CHECK(header["kept_below"].GetUint64() == 6);
  std::vector<std::uint64_t> positions;
  for (std::size_t i = 1; i < lines.size(); ++i) {
    auto ev = parse_json(lines[i]);
    CHECK(std::string{ev["subject"].GetString()} == "alice");
    positions.push_back(ev["position"].GetUint64());
  }
  CHECK(positions == std::vector<std::uint64_t>{4, 8, 12, 16, 20, 24, 28, 32, 36, 40});
}
