#include <cstdint>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "cairn/persistence/event_store.hpp"
#include "cairn/persistence/format.hpp"
#include "support/temp_dir.hpp"

#include "helpers.hpp"

using namespace cairn::persistence;
using cairn::errc;
using cairn::test::append_ok;
using cairn::test::event;
using cairn::test::open_ok;
using cairn::test::request;
using cairn::test::temp_dir;
using cairn::test::value_of;

namespace {

std::vector<unsigned char> encoded(const metadata& m, std::uint64_t position = 9) {
  event_data ev = event("noted", "payload");
  format::record_fields f;
  f.version = 1;
  std::vector<unsigned char> out(format::record_size("note-1", ev, m));
  format::encode_record(out.data(), position, "note-1", ev, m, f);
  return out;
}

} // namespace

TEST_CASE("a record's subject is stored after the user, its length in byte 63",
          "[unit][format][subject]") {
  metadata m;
  m.user = "u";
  m.subject = "person-7";
  auto rec = encoded(m);
  CHECK(rec[63] == 8);
  CHECK(rec.size() == format::record_header_size + 6 + 5 + 1 + 8 + 7);
  const char* fields = reinterpret_cast<const char*>(rec.data()) + format::record_header_size;
  CHECK(std::string(fields + 6 + 5 + 1, 8) == "person-7");
  auto v = format::decode_record(rec.data(), rec.size(), 9);
  REQUIRE(v);
  CHECK(v->user == "u");
  CHECK(v->subject == "person-7");
  CHECK(v->payload == "payload");
  recorded_event e;
  format::to_event(*v, 9, e);
  CHECK(e.meta.subject == "person-7");
  CHECK(e.meta == m);
}

TEST_CASE("a record whose byte 63 is 0, as every record before format 3, has no subject",
          "[unit][format][subject]") {
  metadata m;
  m.user = "u";
  auto rec = encoded(m);
  CHECK(rec[63] == 0);
  auto v = format::decode_record(rec.data(), rec.size(), 9);
  REQUIRE(v);
  CHECK(v->subject.empty());
  CHECK(v->user == "u");
  CHECK(v->payload == "payload");
}

TEST_CASE("a subject length that runs past the record is refused as corrupted",
          "[unit][format][subject]") {
  metadata m;
  auto rec = encoded(m);
  rec[63] = 3; // claims 3 subject bytes the record does not have
  format::put_le<std::uint64_t>(rec.data(), format::record_checksum(rec.data(), rec.size(), 9));
  auto v = format::decode_record(rec.data(), rec.size(), 9);
  REQUIRE_FALSE(v);
  CHECK(v.error().code == errc::corrupted);
}

TEST_CASE("the store keeps an event's subject and every read returns it",
          "[unit][persistence][subject]") {
  temp_dir dir;
  auto store = open_ok(dir.path());
  metadata m;
  m.subject = "alice@example.org";
  append_ok(*store, "note-1", {event("noted", "a")}, m);
  append_ok(*store, "note-1", {event("noted", "b")});
  auto events = value_of(store->read_stream("note-1", 1, 10));
  REQUIRE(events.size() == 2);
  CHECK(events[0].meta.subject == "alice@example.org");
  CHECK(events[1].meta.subject.empty());
  auto page = value_of(store->read_all(1, 10));
  REQUIRE(page.events.size() == 2);
  CHECK(page.events[0].meta.subject == "alice@example.org");
  std::vector<std::string> seen;
  (void)value_of(store->visit_stream("note-1", 1, 10, [&](const event_view& v) {
    seen.emplace_back(v.subject);
    return true;
  }));
  CHECK(seen == std::vector<std::string>{"alice@example.org", ""});
  auto back = value_of(store->read_stream_backward("note-1", no_limit, 10));
  REQUIRE(back.size() == 2);
  CHECK(back[1].meta.subject == "alice@example.org");
}

TEST_CASE("a subject longer than 255 bytes is refused with invalid_argument",
          "[unit][persistence][subject]") {
  temp_dir dir;
  auto store = open_ok(dir.path());
  metadata m;
  m.subject = std::string(256, 's');
  auto r = store->append(request("note-1", expected_version::any(), {event("noted", "a")}, m));
  REQUIRE_FALSE(r);
  CHECK(r.error().code == errc::invalid_argument);
  CHECK(r.error().message.find("subject is at most 255 bytes") != std::string::npos);
  m.subject = std::string(255, 's');
  append_ok(*store, "note-1", {event("noted", "a")}, m);
  CHECK(value_of(store->read_stream("note-1", 1, 1))[0].meta.subject == m.subject);
}
