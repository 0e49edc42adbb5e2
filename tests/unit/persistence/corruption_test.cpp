#include <cstring>
#include <string>

#include <catch2/catch.hpp>

#include "cairn/persistence/event_store.hpp"
#include "cairn/persistence/format.hpp"
#include "support/temp_dir.hpp"

#include "helpers.hpp"

using namespace cairn::persistence;
using cairn::errc;
using cairn::test::append_ok;
using cairn::test::event;
using cairn::test::numbered;
using cairn::test::open_ok;
using cairn::test::temp_dir;
using cairn::test::value_of;

namespace {

const std::string marker = "PAYLOAD-MARKER-5e1d22";

/// Writes acct-1, acct-2 and acct-3 interleaved (3 events each, positions
/// 1..9); acct-2 v2 at position 5 carries the marker. Returns that position.
std::uint64_t write_three_streams(const std::string& dir) {
  auto store = open_ok(dir);
  append_ok(*store, "acct-1", numbered(2, "a"));                                // 1, 2
  append_ok(*store, "acct-2", numbered(1, "b"));                                // 3
  append_ok(*store, "acct-3", numbered(1, "c"));                                // 4
  append_ok(*store, "acct-2", {event("noted", "before " + marker + " after")}); // 5
  append_ok(*store, "acct-1", numbered(1, "a", 3));                             // 6
  append_ok(*store, "acct-3", numbered(2, "c", 2));                             // 7, 8
  append_ok(*store, "acct-2", numbered(1, "b", 3));                             // 9
  return 5;
}

void check_reads_around(const event_store& store, std::uint64_t bad) {
  auto before = store.read_all(1, static_cast<std::size_t>(bad - 1));
  REQUIRE(before);
  CHECK(before->events.size() == bad - 1);
  CHECK(before->next_position == bad);
  auto after = store.read_all(bad + 1, no_limit);
  REQUIRE(after);
  CHECK(after->events.size() == 9 - bad);
  CHECK(after->events.front().position == bad + 1);
  auto one = store.read_stream("acct-1", 1, no_limit);
  REQUIRE(one);
  CHECK(one->size() == 3);
  auto three = store.read_stream("acct-3", 1, no_limit);
  REQUIRE(three);
  CHECK(three->size() == 3);
}

} // namespace

TEST_CASE("a flipped byte in an event's payload is reported as corrupted naming its position",
          "[unit][store][corruption]") {
  temp_dir dir;
  auto bad = write_three_streams(dir.sub("s"));
  REQUIRE(cairn::test::flip_in_file(dir.sub("s") + "/data.mdb", marker, 4) >= 1);

  auto store = open_ok(dir.sub("s"));
  auto stream = store->read_stream("acct-2", 1, no_limit);
  REQUIRE_FALSE(stream);
  CHECK(stream.error().code == errc::corrupted);
  CHECK_THAT(stream.error().message, Catch::Contains("checksum"));
  CHECK(stream.error().context == "position 5");

  auto all = store->read_all(1, no_limit);
  REQUIRE_FALSE(all);
  CHECK(all.error().code == errc::corrupted);
  CHECK(all.error().context == "position 5");
  auto exact = store->read_all(bad, 1);
  REQUIRE_FALSE(exact);
  CHECK(exact.error().code == errc::corrupted);
  CHECK_THAT(exact.error().to_string(), Catch::Contains("position 5"));

  auto backward = store->read_stream_backward("acct-2", no_limit, no_limit);
  REQUIRE_FALSE(backward);
  CHECK(backward.error().code == errc::corrupted);

  check_reads_around(*store, bad);

  // The intact newer event of the same stream still reads, and the stream
  // still takes appends.
  auto newest = store->read_stream("acct-2", 3, 1);
  REQUIRE(newest);
  REQUIRE(newest->size() == 1);
  CHECK(newest->front().payload == "b3");
  auto more =
    store->append(cairn::test::request("acct-2", expected_version::exact(3), numbered(1, "b", 4)));
  REQUIRE(more);
  CHECK(more->first_position == 10);
}

TEST_CASE("a back-pointer that leads to another stream's event is reported as corrupted",
          "[unit][store][corruption]") {
  // Rewrite acct-2 v2 (position 5) so its back-pointer names position 4
  // (acct-3 v1), with a valid checksum: only the chain check can catch it.
  temp_dir dir;
  auto bad = write_three_streams(dir.sub("s"));
  auto path = dir.sub("s") + "/data.mdb";
  auto bytes = cairn::test::read_file(path);
  const std::size_t payload_offset = format::record_header_size + std::string{"acct-2"}.size()
                                     + std::string{"noted"}.size();
  const std::size_t size = payload_offset + std::string{"before " + marker + " after"}.size();
  std::size_t rewritten = 0;
  for (auto at = bytes.find(marker); at != std::string::npos; at = bytes.find(marker, at + 1)) {
    auto start = at - std::string{"before "}.size() - payload_offset;
    auto* rec = reinterpret_cast<unsigned char*>(bytes.data() + start);
    REQUIRE(format::decode_record(rec, size, bad)); // found the whole record
    format::put_le<std::uint64_t>(rec + 24, 4);
    format::put_le<std::uint64_t>(rec, format::record_checksum(rec, size, bad));
    REQUIRE(format::decode_record(rec, size, bad));
    ++rewritten;
  }
  REQUIRE(rewritten >= 1);
  cairn::test::write_file(path, bytes);

  auto store = open_ok(dir.sub("s"));
  auto stream = store->read_stream("acct-2", 1, no_limit);
  REQUIRE_FALSE(stream);
  CHECK(stream.error().code == errc::corrupted);
  CHECK_THAT(stream.error().message, Catch::Contains("acct-3"));
  CHECK_THAT(stream.error().message, Catch::Contains("acct-2"));
  // read_all does not follow chains: the record itself is intact.
  auto all = store->read_all(1, no_limit);
  REQUIRE(all);
  CHECK(all->events.size() == 9);
  check_reads_around(*store, bad);
}

TEST_CASE("a corrupted last event of a stream fails that stream only",
          "[unit][store][corruption]") {
  temp_dir dir;
  const std::string last_marker = "LAST-EVENT-MARKER-91b0";
  {
    auto store = open_ok(dir.sub("s"));
    append_ok(*store, "acct-1", numbered(2, "a"));              // 1, 2
    append_ok(*store, "acct-2", numbered(2, "b"));              // 3, 4
    append_ok(*store, "acct-2", {event("noted", last_marker)}); // 5
    append_ok(*store, "acct-3", numbered(2, "c"));              // 6, 7
  }
  REQUIRE(cairn::test::flip_in_file(dir.sub("s") + "/data.mdb", last_marker, 1) >= 1);
  auto store = open_ok(dir.sub("s"));

  auto stream = store->read_stream("acct-2", 1, no_limit);
  REQUIRE_FALSE(stream);
  CHECK(stream.error().code == errc::corrupted);
  CHECK_THAT(stream.error().to_string(), Catch::Contains("position 5"));
  auto version = store->stream_version("acct-2");
  CHECK(((!version && version.error().code == errc::corrupted) || (version && *version == 3)));
  auto all = store->read_all(5, 1);
  REQUIRE_FALSE(all);
  CHECK(all.error().code == errc::corrupted);

  auto before = store->read_all(1, 4);
  REQUIRE(before);
  CHECK(before->events.size() == 4);
  auto after = store->read_all(6, no_limit);
  REQUIRE(after);
  CHECK(after->events.size() == 2);
  CHECK(value_of(store->read_stream("acct-1", 1, no_limit)).size() == 2);
  CHECK(value_of(store->read_stream("acct-3", 1, no_limit)).size() == 2);
  // Other streams still take appends, and nothing is ever returned for the bad record.
  auto more =
    store->append(cairn::test::request("acct-3", expected_version::exact(2), numbered(1, "c", 3)));
  REQUIRE(more);
  CHECK(more->first_position == 8);
  CHECK(value_of(store->read_stream("acct-3", 1, no_limit)).size() == 3);
}
