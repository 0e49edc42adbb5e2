// The store side of standby replication (docs/cluster.md#replica-store):
// frames of the log copied to a replica, epochs, and truncating a divergent
// tail for rejoin.

#include <algorithm>
#include <map>
#include <set>
#include <sstream>

#include <catch2/catch.hpp>

#include "cairn/persistence/format.hpp"
#include "cairn/persistence/replication.hpp"
#include "support/temp_dir.hpp"
#include "unit/persistence/helpers.hpp"

using namespace cairn;
using namespace cairn::test;
namespace fmt = cairn::persistence::format;

namespace {

constexpr std::size_t frame_bytes = 64 << 10;

/// A request whose events carry fixed ids and timestamps, so two stores that
/// append it at the same place hold the same bytes.
cp::append_request fixed_request(const std::string& stream, std::size_t n, std::uint64_t seed,
                                 cp::metadata meta = {}) {
  cp::append_request r;
  r.stream = stream;
  r.meta = std::move(meta);
  for (std::size_t i = 0; i < n; ++i) {
    auto& e = r.events.emplace_back();
    e.type = i % 3 == 0 ? "opened" : "noted";
    e.schema_version = i % 2 == 0 ? 1 : 2;
    e.payload = std::string(40 + (seed + i) % 90, static_cast<char>('a' + (seed + i) % 26));
    cp::event_id id;
    for (std::size_t b = 0; b < 16; ++b)
      id.bytes[b] = static_cast<std::uint8_t>((seed * 31 + i * 7 + b) & 0xff);
    e.id = id;
    e.timestamp_ns = static_cast<std::int64_t>(1'700'000'000'000'000'000 + seed * 1000 + i);
  }
  return r;
}

/// A store of a few thousand events over several streams, with command ids,
/// tenants, data subjects and a snapshot.
void fill_source(cp::event_store& s, std::size_t rounds = 300) {
  for (std::size_t i = 0; i < rounds; ++i) {
    cp::write_batch b;
    for (std::size_t k = 0; k < 4; ++k) {
      auto stream = "acct-" + std::to_string((i * 4 + k) % 23);
      cp::metadata m;
      if (k % 2 == 0)
        m.command_id = "cmd-" + std::to_string(i) + "-" + std::to_string(k);
      m.tenant = "tenant-" + std::to_string(((i * 4 + k) % 23) % 3);
      if (k == 3)
        m.subject = "person-" + std::to_string(i % 5);
      m.correlation_id = "corr-" + std::to_string(i);
      b.appends.push_back(fixed_request(stream, 1 + (i + k) % 4, i * 10 + k, m));
    }
    auto out = s.append_batch(b);
    REQUIRE(out);
    for (const auto& slot : *out)
      REQUIRE(slot);
  }
  auto at = std::min<std::uint64_t>(10, value_of(s.stream_version("acct-3")));
  REQUIRE(s.save_snapshot(cp::snapshot{"acct-3", at, "account_state", 1, "a state"}));
}

/// Copies `src` into `dst` by frames of frame_bytes, checking the digests at
/// every frame boundary; returns how many frames it took.
std::size_t copy_by_frames(const cp::event_store& src, cp::event_store& dst) {
  std::size_t frames = 0;
  for (;;) {
    auto last = value_of(dst.last_position());
    auto frame = value_of(src.read_frame(last + 1, frame_bytes));
    if (frame.records.empty())
      return frames;
    ++frames;
    CHECK(frame.first_position == last + 1);
    auto applied = dst.apply_frame(frame);
    REQUIRE(applied);
    CHECK(*applied == frame.last_position());
    auto a = value_of(src.digest_at(*applied));
    auto b = value_of(dst.digest_at(*applied));
    CHECK(a.digest == b.digest);
  }
}

std::vector<std::string> stream_names(const cp::event_store& s) {
  std::vector<std::string> out;
  for (const auto& info : value_of(s.list_streams("")))
    out.push_back(info.name + " v" + std::to_string(info.version));
  return out;
}

/// Every stream reads the same on both stores, event for event.
void require_same_streams(const cp::event_store& a, const cp::event_store& b) {
  REQUIRE(stream_names(a) == stream_names(b));
  for (const auto& info : value_of(a.list_streams(""))) {
    auto ea = value_of(a.read_stream(info.name, 1, cp::no_limit));
    auto eb = value_of(b.read_stream(info.name, 1, cp::no_limit));
    REQUIRE(ea.size() == eb.size());
    for (std::size_t i = 0; i < ea.size(); ++i) {
      CHECK(ea[i].position == eb[i].position);
      CHECK(ea[i].version == eb[i].version);
      CHECK(ea[i].id == eb[i].id);
      CHECK(ea[i].payload == eb[i].payload);
      CHECK(ea[i].meta == eb[i].meta);
    }
    CHECK(value_of(a.stream_version(info.name)) == value_of(b.stream_version(info.name)));
  }
}

std::uint64_t index_problems(const cp::event_store& s) {
  std::uint64_t problems = 0;
  auto checked = s.check_indexes([&](std::uint64_t, std::string) { ++problems; });
  REQUIRE(checked);
  return problems;
}

} // namespace

TEST_CASE("a replica copied by frames of 64 KiB reads, verifies and digests as its source",
          "[integration][replication]") {
  temp_dir dir;
  auto src = open_ok(dir.sub("source"));
  auto dst = open_ok(dir.sub("replica"));
  fill_source(*src);
  auto last = value_of(src->last_position());
  REQUIRE(last > 2000);
  CHECK(copy_by_frames(*src, *dst) > 3);
  CHECK(value_of(dst->last_position()) == last);
  CHECK(value_of(dst->digest_at(cp::no_limit)).digest
        == value_of(src->digest_at(cp::no_limit)).digest);
  require_same_streams(*src, *dst);
  for (std::size_t i = 0; i < 300; i += 7) {
    auto stream = "acct-" + std::to_string((i * 4) % 23);
    auto id = "cmd-" + std::to_string(i) + "-0";
    auto a = value_of(src->find_command(stream, id));
    auto b = value_of(dst->find_command(stream, id));
    REQUIRE(a);
    REQUIRE(b);
    CHECK(a->first_position == b->first_position);
    CHECK(a->last_position == b->last_position);
    CHECK(a->first_version == b->first_version);
    CHECK(a->last_version == b->last_version);
  }
  CHECK(value_of(src->type_catalogue()) == value_of(dst->type_catalogue()));
  CHECK(value_of(src->subject_streams("person-2")) == value_of(dst->subject_streams("person-2")));
  CHECK_FALSE(value_of(dst->subject_streams("person-2")).empty());
  auto chain = value_of(dst->check_chain(cp::no_limit));
  CHECK(chain.first_broken == 0);
  CHECK(chain.records == last);
  CHECK(index_problems(*dst) == 0);
  // Snapshots are not part of the log: the replica has none.
  CHECK_FALSE(value_of(dst->load_snapshot("acct-3")));

  SECTION("appends continue on the replica where they would on the source") {
    cp::metadata m;
    m.command_id = "after-promotion";
    m.tenant = "tenant-" + std::to_string(5 % 3);
    auto req = fixed_request("acct-5", 3, 99'999, m);
    auto a = value_of(src->append(req));
    auto b = value_of(dst->append(req));
    CHECK(a.first_position == b.first_position);
    CHECK(a.first_version == b.first_version);
    CHECK(value_of(dst->digest_at(cp::no_limit)).digest
          == value_of(src->digest_at(cp::no_limit)).digest);
    // The tenant was learned from the copied records: a mixed one is refused.
    cp::metadata other;
    other.tenant = "tenant-x";
    auto mixed = dst->append(fixed_request("acct-5", 1, 1, other));
    REQUIRE_FALSE(mixed);
    CHECK(mixed.error().code == errc::invalid_argument);
    // A retried command id is a duplicate on the replica too.
    auto again = value_of(dst->append(req));
    CHECK(again.duplicate);
    auto fresh = value_of(dst->append(fixed_request("fresh-1", 2, 7)));
    CHECK(fresh.first_version == 1);
  }

  SECTION("the replica survives a reopen") {
    dst.reset();
    auto reopened = open_ok(dir.sub("replica"));
    require_same_streams(*src, *reopened);
    CHECK(value_of(reopened->check_chain(cp::no_limit)).first_broken == 0);
    auto b = value_of(reopened->append(fixed_request("acct-1", 1, 5)));
    auto a = value_of(src->append(fixed_request("acct-1", 1, 5)));
    CHECK(a.first_position == b.first_position);
    CHECK(a.last_version == b.last_version);
  }
}

TEST_CASE("re-applying frames the replica has is a no-op", "[integration][replication]") {
  temp_dir dir;
  auto src = open_ok(dir.sub("source"));
  auto dst = open_ok(dir.sub("replica"));
  fill_source(*src, 60);
  copy_by_frames(*src, *dst);
  auto last = value_of(dst->last_position());
  auto digest = value_of(dst->digest_at(cp::no_limit)).digest;
  auto commits = dst->commits().last;
  for (std::uint64_t from : {std::uint64_t{1}, last / 2, last}) {
    auto frame = value_of(src->read_frame(from, frame_bytes));
    CHECK(value_of(dst->apply_frame(frame)) == last);
  }
  CHECK(value_of(dst->last_position()) == last);
  CHECK(value_of(dst->digest_at(cp::no_limit)).digest == digest);
  CHECK(dst->commits().last == commits); // nothing was written
  // A frame that overlaps the end adds only what is new.
  src->append(fixed_request("acct-1", 2, 4242)).value();
  auto frame = value_of(src->read_frame(last - 3, frame_bytes));
  CHECK(frame.records.size() == 6);
  CHECK(value_of(dst->apply_frame(frame)) == last + 2);
  CHECK(value_of(dst->digest_at(cp::no_limit)).digest
        == value_of(src->digest_at(cp::no_limit)).digest);
}

TEST_CASE("read_frame returns the first record even when it exceeds the budget",
          "[integration][replication]") {
  temp_dir dir;
  auto src = open_ok(dir.sub("source"));
  fill_source(*src, 10);
  auto last = value_of(src->last_position());
  auto one = value_of(src->read_frame(1, 1));
  CHECK(one.first_position == 1);
  CHECK(one.records.size() == 1);
  auto empty = value_of(src->read_frame(last + 1, frame_bytes));
  CHECK(empty.records.empty());
  CHECK(empty.first_position == last + 1);
  auto zero = src->read_frame(0, frame_bytes);
  REQUIRE_FALSE(zero);
  CHECK(zero.error().code == errc::invalid_argument);
  auto all = value_of(src->read_frame(1, std::size_t{1} << 30));
  CHECK(all.records.size() == last);
}

TEST_CASE("a frame past the replica's end is refused as a gap naming both positions",
          "[integration][replication]") {
  temp_dir dir;
  auto src = open_ok(dir.sub("source"));
  auto dst = open_ok(dir.sub("replica"));
  fill_source(*src, 20);
  auto first = value_of(src->read_frame(1, 2000));
  REQUIRE(value_of(dst->apply_frame(first)) == first.last_position());
  auto later = value_of(src->read_frame(first.last_position() + 3, 2000));
  auto refused = dst->apply_frame(later);
  REQUIRE_FALSE(refused);
  CHECK(refused.error().code == errc::invalid_argument);
  CHECK(contains(refused.error().message, std::to_string(later.first_position)));
  CHECK(contains(refused.error().message, std::to_string(first.last_position())));
  CHECK(value_of(dst->last_position()) == first.last_position());
}

TEST_CASE("a record that differs from the replica's at the same position is a conflict naming it",
          "[integration][replication]") {
  temp_dir dir;
  auto src = open_ok(dir.sub("source"));
  auto other = open_ok(dir.sub("other"));
  auto dst = open_ok(dir.sub("replica"));
  fill_source(*src, 20);
  copy_by_frames(*src, *dst);
  auto last = value_of(dst->last_position());
  // Same history up to `last`, then each appends something else.
  copy_by_frames(*src, *other);
  src->append(fixed_request("acct-1", 3, 1)).value();
  other->append(fixed_request("acct-1", 3, 2)).value();
  REQUIRE(value_of(dst->apply_frame(value_of(src->read_frame(last + 1, frame_bytes)))) == last + 3);
  auto divergent = value_of(other->read_frame(last + 1, frame_bytes));
  auto refused = dst->apply_frame(divergent);
  REQUIRE_FALSE(refused);
  CHECK(refused.error().code == errc::conflict);
  CHECK(refused.error().context == "position " + std::to_string(last + 1));
  CHECK(value_of(dst->digest_at(cp::no_limit)).digest
        == value_of(src->digest_at(cp::no_limit)).digest);
}

TEST_CASE("a copied record with a flipped byte is refused as corrupted and nothing is written",
          "[integration][replication]") {
  temp_dir dir;
  auto src = open_ok(dir.sub("source"));
  auto dst = open_ok(dir.sub("replica"));
  fill_source(*src, 20);
  auto frame = value_of(src->read_frame(1, frame_bytes));
  REQUIRE(frame.records.size() > 5);
  for (std::size_t at : {std::size_t{0}, std::size_t{9}, std::size_t{30}, std::size_t{70}}) {
    auto bad = frame;
    bad.records[4][at] = static_cast<char>(bad.records[4][at] ^ 0x20);
    auto refused = dst->apply_frame(bad);
    REQUIRE_FALSE(refused);
    CHECK(refused.error().code == errc::corrupted);
    CHECK(refused.error().context == "position 5");
    CHECK(value_of(dst->last_position()) == 0);
  }
  // A record moved to another position fails its position-seeded checksum.
  auto moved = frame;
  std::swap(moved.records[1], moved.records[2]);
  auto refused = dst->apply_frame(moved);
  REQUIRE_FALSE(refused);
  CHECK(refused.error().code == errc::corrupted);
  CHECK(value_of(dst->apply_frame(frame)) == frame.last_position());
}

TEST_CASE("a record that does not continue its stream's head is refused as corrupted",
          "[integration][replication]") {
  temp_dir dir;
  auto dst = open_ok(dir.sub("replica"));
  auto src = open_ok(dir.sub("source"));
  src->append(fixed_request("acct-1", 3, 1)).value();
  REQUIRE(value_of(dst->apply_frame(value_of(src->read_frame(1, frame_bytes)))) == 3);
  auto forge = [](std::uint64_t position, std::uint64_t version, std::uint64_t prev) {
    auto req = fixed_request("acct-1", 1, 77);
    std::string rec(fmt::record_size(req.stream, req.events[0], req.meta), '\0');
    fmt::record_fields f;
    f.version = version;
    f.prev_position = prev;
    fmt::encode_record(reinterpret_cast<unsigned char*>(rec.data()), position, req.stream,
                       req.events[0], req.meta, f);
    return cp::log_frame{position, {rec}};
  };
  for (auto [version, prev] : {std::pair{std::uint64_t{5}, std::uint64_t{3}},
                               std::pair{std::uint64_t{4}, std::uint64_t{2}},
                               std::pair{std::uint64_t{1}, std::uint64_t{0}}}) {
    auto refused = dst->apply_frame(forge(4, version, prev));
    REQUIRE_FALSE(refused);
    CHECK(refused.error().code == errc::corrupted);
    CHECK(refused.error().context == "position 4");
  }
  CHECK(value_of(dst->apply_frame(forge(4, 4, 3))) == 4);
  CHECK(value_of(dst->stream_version("acct-1")) == 4);
}

TEST_CASE("epochs are recorded in the log and the header, and copied with it",
          "[integration][replication][epoch]") {
  temp_dir dir;
  auto src = open_ok(dir.sub("source"));
  CHECK(value_of(src->epochs()).empty());
  CHECK(value_of(src->current_epoch()) == 0);
  fill_source(*src, 10);
  auto users = value_of(src->last_position());
  auto first = value_of(src->begin_epoch(1, "node-a"));
  CHECK(first.epoch == 1);
  CHECK(first.position == users + 1);
  CHECK(first.node == "node-a");
  auto stale = src->begin_epoch(1, "node-b");
  REQUIRE_FALSE(stale);
  CHECK(stale.error().code == errc::conflict);
  CHECK_FALSE(src->begin_epoch(3, ""));
  src->append(fixed_request("acct-1", 2, 1)).value();
  auto third = value_of(src->begin_epoch(3, "node-b"));
  CHECK(third.position == users + 4);
  auto history = value_of(src->epochs());
  REQUIRE(history.size() == 2);
  CHECK(history[0] == first);
  CHECK(history[1] == third);
  CHECK(value_of(src->current_epoch()) == 3);

  // Invisible to users: read_all, list_streams, stats, the type catalogue.
  auto page = value_of(src->read_all(1, cp::no_limit));
  CHECK(page.events.size() == users + 2);
  CHECK(page.next_position == users + 5);
  for (const auto& ev : page.events)
    CHECK(ev.stream != "$epoch");
  cp::read_filter system;
  system.include_system = true;
  CHECK(value_of(src->read_all(1, cp::no_limit, system)).events.size() == users + 4);
  for (const auto& info : value_of(src->list_streams("")))
    CHECK(info.name != "$epoch");
  CHECK(value_of(src->stats()).streams == value_of(src->list_streams("")).size());
  for (const auto& [type, version] : value_of(src->type_catalogue()))
    CHECK(type != "$epoch");
  CHECK_FALSE(src->stream_version("$epoch"));
  CHECK_FALSE(src->append(fixed_request("$epoch", 1, 3)));
  CHECK(value_of(src->check_chain(cp::no_limit)).first_broken == 0);
  CHECK(index_problems(*src) == 0);

  // A replica copies the history and its header follows it.
  auto dst = open_ok(dir.sub("replica"));
  copy_by_frames(*src, *dst);
  CHECK(value_of(dst->epochs()) == history);
  CHECK(value_of(dst->current_epoch()) == 3);
  CHECK_FALSE(dst->begin_epoch(3, "node-c"));
  // ... and keeps both across a reopen, then goes on from there.
  src.reset();
  dst.reset();
  auto reopened = open_ok(dir.sub("replica"));
  CHECK(value_of(reopened->current_epoch()) == 3);
  CHECK(value_of(reopened->epochs()) == history);
  auto fourth = value_of(reopened->begin_epoch(4, "node-c"));
  CHECK(fourth.position == users + 5);
  CHECK(value_of(reopened->epochs()).size() == 3);
}

TEST_CASE("an epoch record that does not move the epoch forward is refused when copied",
          "[integration][replication][epoch]") {
  temp_dir dir;
  auto src = open_ok(dir.sub("source"));
  auto dst = open_ok(dir.sub("replica"));
  src->begin_epoch(5, "node-a").value();
  copy_by_frames(*src, *dst);
  auto forge = [](std::uint64_t epoch) {
    cp::event_data ev;
    ev.type = "$epoch";
    ev.payload = fmt::encode_epoch_payload(fmt::epoch_payload{epoch, 1, "node-b"});
    std::string rec(fmt::record_size("$epoch", ev, {}), '\0');
    fmt::record_fields f;
    f.version = 2;
    f.prev_position = 1;
    fmt::encode_record(reinterpret_cast<unsigned char*>(rec.data()), 2, "$epoch", ev, {}, f);
    return cp::log_frame{2, {rec}};
  };
  for (std::uint64_t epoch : {3, 5}) {
    auto refused = dst->apply_frame(forge(epoch));
    REQUIRE_FALSE(refused);
    CHECK(refused.error().code == errc::corrupted);
    CHECK(refused.error().context == "position 2");
  }
  CHECK(value_of(dst->apply_frame(forge(6))) == 2);
  CHECK(value_of(dst->current_epoch()) == 6);
  // A system record of an unknown system stream is refused too.
  cp::event_data ev;
  ev.type = "$other";
  ev.payload = "x";
  std::string rec(fmt::record_size("$other", ev, {}), '\0');
  fmt::record_fields f;
  f.version = 1;
  fmt::encode_record(reinterpret_cast<unsigned char*>(rec.data()), 3, "$other", ev, {}, f);
  auto unknown = dst->apply_frame(cp::log_frame{3, {rec}});
  REQUIRE_FALSE(unknown);
  CHECK(unknown.error().code == errc::corrupted);
}

namespace {

std::vector<std::string> lines_of(const std::string& path) {
  std::vector<std::string> out;
  std::istringstream in{read_file(path)};
  for (std::string line; std::getline(in, line);)
    out.push_back(line);
  return out;
}

} // namespace

TEST_CASE("truncating a divergent tail leaves the store as one that never had it",
          "[integration][replication][truncate]") {
  temp_dir dir;
  auto leader = open_ok(dir.sub("leader"));
  auto old = open_ok(dir.sub("old-owner"));
  fill_source(*leader, 60);
  leader->append(fixed_request("long-1", 100, 500)).value();
  leader->begin_epoch(1, "node-a").value();
  copy_by_frames(*leader, *old);
  const auto common = value_of(leader->last_position());
  auto kept_snapshot = value_of(old->stream_version("acct-1"));
  REQUIRE(old->save_snapshot(cp::snapshot{"acct-1", kept_snapshot, "s", 1, "kept"}));
  REQUIRE(old->save_checkpoint(cp::checkpoint{"early", 5}));

  // The tail the old owner committed and no standby acknowledged.
  cp::metadata cmd;
  cmd.command_id = "tail-cmd-1";
  cmd.tenant = "tenant-" + std::to_string(1 % 3);
  old->append(fixed_request("acct-1", 3, 700, cmd)).value();
  cp::metadata fresh;
  fresh.command_id = "tail-cmd-2";
  fresh.subject = "person-tail";
  old->append(fixed_request("tailonly-1", 2, 701, fresh)).value();
  cp::metadata about;
  about.subject = "person-9";
  about.tenant = "tenant-" + std::to_string(2 % 3);
  old->append(fixed_request("acct-2", 1, 702, about)).value();
  old->begin_epoch(2, "node-b").value();
  old->append(fixed_request("long-1", 40, 703)).value(); // crosses version 128
  auto tail_version = value_of(old->stream_version("acct-1"));
  REQUIRE(old->save_snapshot(cp::snapshot{"acct-1", tail_version, "s", 1, "from the tail"}));
  const auto old_last = value_of(old->last_position());
  REQUIRE(old->save_checkpoint(cp::checkpoint{"projection", old_last}));
  cp::write_batch letters;
  letters.dead_letters.push_back(
    cp::dead_letter{"subscriber", old_last, "long-1", 140, "noted", "boom", 3, 1, 2, false});
  letters.dead_letters.push_back(
    cp::dead_letter{"subscriber", 3, "acct-3", 1, "noted", "boom", 3, 1, 2, false});
  REQUIRE(old->append_batch(letters));
  REQUIRE(value_of(old->subject_streams("person-tail")) == std::vector<std::string>{"tailonly-1"});

  auto saved = dir.sub("tail.jsonl");
  auto cut = value_of(old->truncate_after(common, saved));
  CHECK(cut.first_removed == common + 1);
  CHECK(cut.last_removed == old_last);
  CHECK(cut.records == old_last - common);
  CHECK(cut.saved_to == saved);
  REQUIRE(cut.lowered.size() == 1);
  CHECK(cut.lowered[0].name == "projection");
  CHECK(cut.lowered[0].position == old_last);
  CHECK(cut.snapshots_dropped == 1);
  CHECK(cut.dead_letters_dropped == 1);

  auto same_as_leader = [&](const cp::event_store& s) {
    CHECK(value_of(s.last_position()) == common);
    CHECK(value_of(s.digest_at(cp::no_limit)).digest
          == value_of(leader->digest_at(cp::no_limit)).digest);
    require_same_streams(*leader, s);
    CHECK(value_of(s.stream_version("tailonly-1")) == 0);
    CHECK_FALSE(value_of(s.find_command("acct-1", "tail-cmd-1")));
    CHECK_FALSE(value_of(s.find_command("tailonly-1", "tail-cmd-2")));
    CHECK(value_of(s.find_command("acct-0", "cmd-0-0")));
    CHECK(value_of(s.subject_streams("person-tail")).empty());
    CHECK(value_of(s.subject_streams("person-9")) == value_of(leader->subject_streams("person-9")));
    CHECK(value_of(s.epochs()) == value_of(leader->epochs()));
    CHECK(value_of(s.current_epoch()) == 1);
    auto chain = value_of(s.check_chain(cp::no_limit));
    CHECK(chain.first_broken == 0);
    CHECK(chain.records == common);
    CHECK(chain.chained_to == common);
    CHECK(index_problems(s) == 0);
    auto snap = value_of(s.load_snapshot("acct-1"));
    REQUIRE(snap);
    CHECK(snap->data == "kept");
    CHECK(value_of(s.load_checkpoint("projection")) == common);
    CHECK(value_of(s.load_checkpoint("early")) == 5);
    CHECK(value_of(s.count_dead_letters("subscriber")) == 1);
    CHECK(value_of(s.stats()).streams == value_of(leader->stats()).streams);
  };
  same_as_leader(*old);

  // The removed events are in the file, as cairn export writes them.
  auto lines = lines_of(saved);
  REQUIRE(lines.size() == 1 + cut.records);
  CHECK(contains(lines[0], "\"cairn_export\":1"));
  CHECK(contains(lines[0], "\"truncated_after\":" + std::to_string(common)));
  CHECK(contains(lines[1], "\"position\":" + std::to_string(common + 1)));
  CHECK(contains(lines[1], "\"command_id\":\"tail-cmd-1\""));
  CHECK(contains(lines[1], "\"payload_hex\":\""));
  CHECK(contains(lines.back(), "\"position\":" + std::to_string(old_last)));
  std::size_t epochs_saved = 0;
  for (const auto& line : lines)
    epochs_saved += contains(line, "\"stream\":\"$epoch\"") ? 1 : 0;
  CHECK(epochs_saved == 1);

  // Appends continue with the positions and versions the leader gives.
  auto follows = [&](cp::event_store& s, std::uint64_t seed) {
    auto req = fixed_request("tailonly-1", 2, seed, fresh);
    auto a = value_of(leader->append(req));
    auto b = value_of(s.append(req));
    CHECK(a.first_position == b.first_position);
    CHECK(b.first_version == 1);
    auto req2 = fixed_request("acct-1", 1, seed + 1, cmd);
    CHECK(value_of(leader->append(req2)).first_version == value_of(s.append(req2)).first_version);
    CHECK(value_of(s.digest_at(cp::no_limit)).digest
          == value_of(leader->digest_at(cp::no_limit)).digest);
    CHECK(value_of(s.check_chain(cp::no_limit)).first_broken == 0);
    CHECK(value_of(s.subject_streams("person-tail")) == std::vector<std::string>{"tailonly-1"});
  };
  SECTION("on the store as it is") { follows(*old, 900); }
  SECTION("after a reopen") {
    old.reset();
    auto reopened = open_ok(dir.sub("old-owner"));
    follows(*reopened, 901);
    CHECK(index_problems(*reopened) == 0);
  }
  SECTION("as the leader's standby") {
    leader->append(fixed_request("acct-7", 5, 902)).value();
    leader->begin_epoch(2, "node-a").value();
    copy_by_frames(*leader, *old);
    CHECK(value_of(old->epochs()) == value_of(leader->epochs()));
    CHECK(value_of(old->current_epoch()) == 2);
    require_same_streams(*leader, *old);
  }
}

TEST_CASE("a cut inside an append keeps the front of its command record",
          "[integration][replication][truncate]") {
  temp_dir dir;
  auto full = open_ok(dir.sub("full"));
  auto partial = open_ok(dir.sub("partial"));
  full->append(fixed_request("acct-1", 2, 1)).value();
  cp::metadata m;
  m.command_id = "split";
  auto whole = value_of(full->append(fixed_request("acct-1", 4, 2, m)));
  REQUIRE(whole.first_position == 3);
  // The standby got only the first two of its four records.
  auto frame = value_of(full->read_frame(1, frame_bytes));
  frame.records.resize(4);
  REQUIRE(value_of(partial->apply_frame(frame)) == 4);
  auto copied = value_of(partial->find_command("acct-1", "split"));
  REQUIRE(copied);
  CHECK(copied->first_position == 3);
  CHECK(copied->last_position == 4);
  CHECK(copied->last_version == 4);

  auto cut = value_of(full->truncate_after(4, dir.sub("tail.jsonl")));
  CHECK(cut.records == 2);
  auto kept = value_of(full->find_command("acct-1", "split"));
  REQUIRE(kept);
  CHECK(kept->first_position == 3);
  CHECK(kept->last_position == 4);
  CHECK(kept->first_version == 3);
  CHECK(kept->last_version == 4);
  CHECK(index_problems(*full) == 0);
  CHECK(value_of(full->digest_at(cp::no_limit)).digest
        == value_of(partial->digest_at(cp::no_limit)).digest);
  // Then the next frame continues the record on the standby as on the source.
  auto more = value_of(full->append(fixed_request("acct-1", 1, 3)));
  CHECK(more.first_position == 5);
  REQUIRE(value_of(partial->apply_frame(value_of(full->read_frame(5, frame_bytes)))) == 5);
  CHECK(value_of(partial->digest_at(cp::no_limit)).digest
        == value_of(full->digest_at(cp::no_limit)).digest);
}

TEST_CASE("truncating after position 0 empties the store, which then starts over",
          "[integration][replication][truncate]") {
  temp_dir dir;
  auto s = open_ok(dir.sub("store"));
  fill_source(*s, 20);
  s->begin_epoch(4, "node-a").value();
  auto last = value_of(s->last_position());
  auto cut = value_of(s->truncate_after(0, dir.sub("all.jsonl")));
  CHECK(cut.records == last);
  CHECK(value_of(s->last_position()) == 0);
  CHECK(value_of(s->list_streams("")).empty());
  CHECK(value_of(s->epochs()).empty());
  CHECK(value_of(s->current_epoch()) == 0);
  CHECK(value_of(s->check_chain(cp::no_limit)).first_broken == 0);
  auto again = value_of(s->append(fixed_request("acct-3", 2, 1)));
  CHECK(again.first_position == 1);
  CHECK(again.first_version == 1);
  auto fresh = open_ok(dir.sub("fresh"));
  fresh->append(fixed_request("acct-3", 2, 1)).value();
  CHECK(value_of(s->digest_at(cp::no_limit)).digest
        == value_of(fresh->digest_at(cp::no_limit)).digest);
  CHECK(lines_of(dir.sub("all.jsonl")).size() == 1 + last);
}

TEST_CASE("truncate_after never overwrites a file and removes nothing when it cannot save",
          "[integration][replication][truncate]") {
  temp_dir dir;
  auto s = open_ok(dir.sub("store"));
  fill_source(*s, 5);
  auto last = value_of(s->last_position());
  write_file(dir.sub("exists.jsonl"), "keep me\n");
  auto refused = s->truncate_after(3, dir.sub("exists.jsonl"));
  REQUIRE_FALSE(refused);
  CHECK(refused.error().code == errc::invalid_argument);
  CHECK(read_file(dir.sub("exists.jsonl")) == "keep me\n");
  CHECK(value_of(s->last_position()) == last);
  // Nothing past the end: nothing written, no file.
  auto none = value_of(s->truncate_after(last, dir.sub("none.jsonl")));
  CHECK(none.records == 0);
  CHECK_FALSE(std::ifstream{dir.sub("none.jsonl")}.good());
}

TEST_CASE("streams that began in a removed tail give back their numbers, across a reopen",
          "[integration][replication][truncate]") {
  temp_dir dir;
  auto leader = open_ok(dir.sub("leader"));
  auto old = open_ok(dir.sub("old-owner"));
  for (int i = 0; i < 130; ++i) // stream numbers 1-130: two heads buckets
    leader->append(fixed_request("early-" + std::to_string(i), 1, static_cast<std::uint64_t>(i)))
      .value();
  copy_by_frames(*leader, *old);
  const auto common = value_of(leader->last_position());
  for (int i = 0; i < 200; ++i) // numbers 131-330, into a third bucket
    old->append(fixed_request("late-" + std::to_string(i), 1, static_cast<std::uint64_t>(i)))
      .value();
  old->append(fixed_request("early-3", 2, 5)).value();
  REQUIRE(value_of(old->truncate_after(common, dir.sub("tail.jsonl"))).records == 202);
  old.reset();
  auto reopened = open_ok(dir.sub("old-owner"));
  require_same_streams(*leader, *reopened);
  auto req = fixed_request("after-1", 2, 77);
  auto a = value_of(leader->append(req));
  auto b = value_of(reopened->append(req));
  CHECK(a.first_position == b.first_position);
  CHECK(b.first_version == 1);
  require_same_streams(*leader, *reopened);
  CHECK(value_of(reopened->digest_at(cp::no_limit)).digest
        == value_of(leader->digest_at(cp::no_limit)).digest);
  CHECK(index_problems(*reopened) == 0);
}
