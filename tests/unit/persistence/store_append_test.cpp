#include <chrono>
#include <set>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "cairn/persistence/codec.hpp"
#include "cairn/persistence/event_store.hpp"
#include "support/temp_dir.hpp"

#include "helpers.hpp"

using namespace cairn::persistence;
using cairn::errc;
using cairn::test::append_ok;
using cairn::test::event;
using cairn::test::fast_options;
using cairn::test::numbered;
using cairn::test::open_ok;
using cairn::test::request;
using cairn::test::temp_dir;
using cairn::test::value_of;

namespace {

std::int64_t wall_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
           std::chrono::system_clock::now().time_since_epoch())
    .count();
}

/// Asserts that `r` failed with `code` and returns its error.
template <class T> cairn::error failure(const cairn::result<T>& r, errc code) {
  REQUIRE_FALSE(r.has_value());
  INFO(r.error().to_string());
  CHECK(r.error().code == code);
  return r.error();
}

/// What a failed append must leave unchanged.
struct store_shape {
  std::uint64_t last_position;
  std::uint64_t events;
  std::uint64_t streams;
  bool operator==(const store_shape& o) const {
    return last_position == o.last_position && events == o.events && streams == o.streams;
  }
};

store_shape shape_of(const event_store& s) {
  auto last = s.last_position();
  auto st = s.stats();
  REQUIRE(last);
  REQUIRE(st);
  return {*last, st->events, st->streams};
}

} // namespace

// -- expected version --------------------------------------------------------------

TEST_CASE("expected version any admits a new and an existing stream", "[unit][store][append]") {
  temp_dir dir;
  auto store = open_ok(dir.sub("s"));
  auto a = store->append(request("acct-1", expected_version::any(), numbered(2)));
  REQUIRE(a);
  CHECK(a->last_version == 2);
  auto b = store->append(request("acct-1", expected_version::any(), numbered(1)));
  REQUIRE(b);
  CHECK(b->first_version == 3);
  CHECK(b->last_version == 3);
}

TEST_CASE("expected version no_stream admits only a stream that does not exist",
          "[unit][store][append]") {
  temp_dir dir;
  auto store = open_ok(dir.sub("s"));
  REQUIRE(store->append(request("acct-1", expected_version::no_stream(), numbered(2))));
  auto again = store->append(request("acct-1", expected_version::no_stream(), numbered(1)));
  auto err = failure(again, errc::conflict);
  CHECK_THAT(err.message, Catch::Contains("no_stream"));
  CHECK_THAT(err.message, Catch::Contains("actual 2"));
  CHECK(err.context == "acct-1");
  CHECK(value_of(store->stream_version("acct-1")) == 2);
}

TEST_CASE("expected version stream_exists refuses a new stream", "[unit][store][append]") {
  temp_dir dir;
  auto store = open_ok(dir.sub("s"));
  auto r = store->append(request("acct-1", expected_version::stream_exists(), numbered(1)));
  auto err = failure(r, errc::conflict);
  CHECK_THAT(err.message, Catch::Contains("stream_exists"));
  CHECK_THAT(err.message, Catch::Contains("actual 0"));
  CHECK(value_of(store->stream_version("acct-1")) == 0);
  append_ok(*store, "acct-1", numbered(1));
  auto ok = store->append(request("acct-1", expected_version::stream_exists(), numbered(1)));
  REQUIRE(ok);
  CHECK(ok->last_version == 2);
}

TEST_CASE("expected version exact admits the current version and names both on a mismatch",
          "[unit][store][append]") {
  temp_dir dir;
  auto store = open_ok(dir.sub("s"));
  SECTION("exact 0 means the stream must not exist") {
    REQUIRE(store->append(request("acct-1", expected_version::exact(0), numbered(1))));
    failure(store->append(request("acct-1", expected_version::exact(0), numbered(1))),
            errc::conflict);
  }
  SECTION("a match appends, a mismatch is a conflict naming expected and actual") {
    append_ok(*store, "acct-1", numbered(5));
    auto ok = store->append(request("acct-1", expected_version::exact(5), numbered(1)));
    REQUIRE(ok);
    CHECK(ok->first_version == 6);
    auto stale = store->append(request("acct-1", expected_version::exact(3), numbered(1)));
    auto err = failure(stale, errc::conflict);
    CHECK_THAT(err.message, Catch::Contains("expected version 3"));
    CHECK_THAT(err.message, Catch::Contains("actual 6"));
    CHECK(err.context == "acct-1");
    auto ahead = store->append(request("acct-1", expected_version::exact(9), numbered(1)));
    CHECK_THAT(failure(ahead, errc::conflict).message, Catch::Contains("actual 6"));
    CHECK(value_of(store->stream_version("acct-1")) == 6);
  }
}

// -- versions, positions, ids, timestamps, metadata ----------------------------------

TEST_CASE("the events of an append get gap-free versions and consecutive positions",
          "[unit][store][append]") {
  temp_dir dir;
  auto store = open_ok(dir.sub("s"));
  auto a = append_ok(*store, "acct-1", numbered(3, "a"));
  auto b = append_ok(*store, "acct-2", numbered(4, "b"));
  auto c = append_ok(*store, "acct-1", numbered(2, "a", 4));
  CHECK(a.first_version == 1);
  CHECK(a.last_version == 3);
  CHECK(a.first_position == 1);
  CHECK(a.last_position == 3);
  CHECK(b.first_version == 1);
  CHECK(b.last_version == 4);
  CHECK(b.first_position == 4);
  CHECK(b.last_position == 7);
  CHECK(c.first_version == 4);
  CHECK(c.last_version == 5);
  CHECK(c.first_position == 8);
  CHECK(c.last_position == 9);
  CHECK_FALSE(c.duplicate);

  auto events = store->read_stream("acct-1", 1, no_limit);
  REQUIRE(events);
  REQUIRE(events->size() == 5);
  std::vector<std::uint64_t> positions;
  for (std::size_t i = 0; i < events->size(); ++i) {
    CHECK((*events)[i].version == i + 1);
    CHECK((*events)[i].stream == "acct-1");
    CHECK((*events)[i].payload == "a" + std::to_string(i + 1));
    positions.push_back((*events)[i].position);
  }
  CHECK(positions == std::vector<std::uint64_t>{1, 2, 3, 8, 9});
  CHECK(value_of(store->last_position()) == 9);
}

TEST_CASE("event ids are random unless given, and given ids are kept", "[unit][store][append]") {
  temp_dir dir;
  auto store = open_ok(dir.sub("s"));
  auto given = event_id::parse("00112233445566778899aabbccddeeff");
  REQUIRE(given);
  auto evs = numbered(20);
  evs[7].id = *given;
  append_ok(*store, "acct-1", evs);
  append_ok(*store, "acct-2", numbered(20));
  std::set<std::string> ids;
  for (const char* s : {"acct-1", "acct-2"}) {
    auto read = store->read_stream(s, 1, no_limit);
    REQUIRE(read);
    for (const auto& e : *read)
      ids.insert(e.id.to_string());
  }
  CHECK(ids.size() == 40);
  CHECK(ids.count(std::string(32, '0')) == 0);
  auto eighth = store->read_stream("acct-1", 8, 1);
  REQUIRE(eighth);
  REQUIRE(eighth->size() == 1);
  CHECK(eighth->front().id == *given);
  CHECK(eighth->front().id.to_string() == "00112233445566778899aabbccddeeff");
}

TEST_CASE("timestamps are taken at append unless given", "[unit][store][append]") {
  temp_dir dir;
  auto store = open_ok(dir.sub("s"));
  auto evs = numbered(3);
  evs[1].timestamp_ns = 1'234'567'890'123'456'789;
  evs[2].timestamp_ns = -5; // before the epoch is allowed
  auto before = wall_ns();
  append_ok(*store, "acct-1", evs);
  auto after = wall_ns();
  auto read = store->read_stream("acct-1", 1, no_limit);
  REQUIRE(read);
  REQUIRE(read->size() == 3);
  CHECK((*read)[0].timestamp_ns >= before);
  CHECK((*read)[0].timestamp_ns <= after);
  CHECK((*read)[1].timestamp_ns == 1'234'567'890'123'456'789);
  CHECK((*read)[2].timestamp_ns == -5);
}

TEST_CASE("metadata, type and schema version round-trip through read_stream",
          "[unit][store][append]") {
  temp_dir dir;
  auto store = open_ok(dir.sub("s"));
  metadata m;
  m.correlation_id = "corr-1";
  m.causation_id = "cause-2";
  m.command_id = "cmd-3";
  m.tenant = "tenant-4";
  m.user = std::string(255, 'u');
  auto e1 = event("deposited", std::string("\0binary\xff", 8));
  e1.schema_version = 7;
  auto e2 = event("withdrawn", "");
  append_ok(*store, "acct-1", {e1, e2}, m);
  append_ok(*store, "acct-1", numbered(1)); // no metadata
  auto read = store->read_stream("acct-1", 1, no_limit);
  REQUIRE(read);
  REQUIRE(read->size() == 3);
  CHECK((*read)[0].meta == m);
  CHECK((*read)[1].meta == m);
  CHECK((*read)[2].meta == metadata{});
  CHECK((*read)[0].type == "deposited");
  CHECK((*read)[0].schema_version == 7);
  CHECK((*read)[0].payload == std::string("\0binary\xff", 8));
  CHECK((*read)[1].type == "withdrawn");
  CHECK((*read)[1].schema_version == 1);
  CHECK((*read)[1].payload.empty());
}

TEST_CASE("an empty append writes nothing and reports the next version", "[unit][store][append]") {
  temp_dir dir;
  auto store = open_ok(dir.sub("s"));
  SECTION("on a new stream it does not create the stream") {
    auto r = store->append(request("acct-1", expected_version::no_stream(), {}));
    REQUIRE(r);
    CHECK(r->first_version == 1);
    CHECK(r->last_version == 0);
    CHECK(r->first_position == 0);
    CHECK(r->last_position == 0);
    CHECK(value_of(store->stream_version("acct-1")) == 0);
    CHECK(value_of(store->list_streams("")).empty());
    CHECK(value_of(store->last_position()) == 0);
    // The stream number it did not take is not wasted or shared.
    append_ok(*store, "acct-2", numbered(1, "two"));
    append_ok(*store, "acct-1", numbered(1, "one"));
    CHECK(value_of(store->read_stream("acct-1", 1, 9)).front().payload == "one1");
    CHECK(value_of(store->read_stream("acct-2", 1, 9)).front().payload == "two1");
  }
  SECTION("on an existing stream it still checks the expected version") {
    append_ok(*store, "acct-1", numbered(3));
    auto r = store->append(request("acct-1", expected_version::exact(3), {}));
    REQUIRE(r);
    CHECK(r->first_version == 4);
    CHECK(r->last_version == 3);
    CHECK(r->first_position == 0);
    failure(store->append(request("acct-1", expected_version::exact(2), {})), errc::conflict);
    CHECK(value_of(store->last_position()) == 3);
  }
}

// -- invalid input ---------------------------------------------------------------------

TEST_CASE("an event larger than max_event_size is invalid, one at the limit is not",
          "[unit][store][append][limits]") {
  temp_dir dir;
  auto opts = fast_options();
  opts.max_event_size = 1000;
  auto store = open_ok(dir.sub("s"), opts);
  append_ok(*store, "acct-1", {event("big", std::string(1000, 'x'))});
  auto r = store->append(request("acct-1", expected_version::any(),
                                 {event("ok", "small"), event("big", std::string(1001, 'x'))}));
  auto err = failure(r, errc::invalid_argument);
  CHECK_THAT(err.message, Catch::Contains("1001"));
  CHECK_THAT(err.message, Catch::Contains("max_event_size"));
  CHECK_THAT(err.context, Catch::Contains("event 1"));
  CHECK(value_of(store->stream_version("acct-1"))
        == 1); // the valid first event is not written either
}

namespace {
struct known_event {
  int x = 0;
  template <class A> void serialize(A& a) { a(x); }
};
} // namespace

TEST_CASE("an event type missing from the registry is invalid", "[unit][store][append]") {
  event_registry reg;
  REQUIRE(reg.add<known_event>("known"));
  temp_dir dir;
  auto opts = fast_options();
  opts.registry = &reg;
  auto store = open_ok(dir.sub("s"), opts);
  auto good = reg.encode(known_event{1});
  REQUIRE(good);
  REQUIRE(store->append(request("acct-1", expected_version::any(), {*good})));
  SECTION("an unknown name") {
    auto err =
      failure(store->append(request("acct-1", expected_version::any(), {event("mystery", "x")})),
              errc::invalid_argument);
    CHECK_THAT(err.message, Catch::Contains("mystery"));
    CHECK_THAT(err.message, Catch::Contains("registry"));
  }
  SECTION("a known name at a version it cannot decode") {
    auto newer = *good;
    newer.schema_version = 2;
    auto err = failure(store->append(request("acct-1", expected_version::any(), {newer})),
                       errc::invalid_argument);
    CHECK_THAT(err.message, Catch::Contains("known v2"));
  }
  CHECK(value_of(store->stream_version("acct-1")) == 1);
}

TEST_CASE("a metadata field longer than 255 bytes is invalid", "[unit][store][append]") {
  temp_dir dir;
  auto store = open_ok(dir.sub("s"));
  auto fields = {&metadata::correlation_id, &metadata::causation_id, &metadata::command_id,
                 &metadata::tenant, &metadata::user};
  for (auto field : fields) {
    metadata m;
    m.*field = std::string(256, 'm');
    auto err = failure(store->append(request("acct-1", expected_version::any(), numbered(1), m)),
                       errc::invalid_argument);
    CHECK_THAT(err.message, Catch::Contains("255"));
    metadata at_limit;
    at_limit.*field = std::string(255, 'm');
    CHECK(store->append(request("acct-1", expected_version::any(), numbered(1), at_limit)));
  }
  CHECK(value_of(store->stream_version("acct-1")) == 5);
}

TEST_CASE("a bad event type name or schema version is invalid", "[unit][store][append]") {
  temp_dir dir;
  auto store = open_ok(dir.sub("s"));
  for (const std::string& type :
       std::vector<std::string>{"", "with space", std::string(256, 't'), "tab\there", "nl\n",
                                "del\x7f", "caf\xc3\xa9", std::string("nul\0", 4)}) {
    INFO("type '" << type << "'");
    auto err =
      failure(store->append(request("acct-1", expected_version::any(), {event(type, "x")})),
              errc::invalid_argument);
    CHECK_THAT(err.message, Catch::Contains("type"));
  }
  auto zero = event("ok", "x");
  zero.schema_version = 0;
  failure(store->append(request("acct-1", expected_version::any(), {zero})),
          errc::invalid_argument);
  CHECK(store->append(request("acct-1", expected_version::any(),
                              {event(std::string(255, 't'), "x"), event("a.b:c/d_e-f", "y")})));
}

TEST_CASE("an append to a badly named stream is invalid", "[unit][store][append]") {
  temp_dir dir;
  auto store = open_ok(dir.sub("s"));
  for (const char* name : {"", "nodash", "-id", "cat-", "sp ace-1"}) {
    INFO("stream '" << name << "'");
    auto err = failure(store->append(request(name, expected_version::any(), numbered(1))),
                       errc::invalid_argument);
    CHECK_THAT(err.message, Catch::Contains("stream name"));
  }
  CHECK(value_of(store->last_position()) == 0);
}

TEST_CASE("a failed append writes nothing and positions do not advance", "[unit][store][append]") {
  temp_dir dir;
  auto opts = fast_options();
  opts.max_event_size = 100;
  auto store = open_ok(dir.sub("s"), opts);
  append_ok(*store, "acct-1", numbered(2));
  auto before = shape_of(*store);
  CHECK(before == store_shape{2, 2, 1});

  failure(store->append(request("acct-1", expected_version::exact(1), numbered(3))),
          errc::conflict);
  failure(store->append(request("acct-new", expected_version::exact(4), numbered(3))),
          errc::conflict);
  failure(store->append(request("acct-new", expected_version::stream_exists(), numbered(3))),
          errc::conflict);
  failure(store->append(request("acct-1", expected_version::any(),
                                {event("ok", "x"), event("big", std::string(101, 'x'))})),
          errc::invalid_argument);
  failure(store->append(request("acct-new", expected_version::any(),
                                {event("ok", "x"), event("bad type", "x")})),
          errc::invalid_argument);
  CHECK(shape_of(*store) == before);
  CHECK(value_of(store->stream_version("acct-new")) == 0);
  auto listed = store->list_streams("");
  REQUIRE(listed);
  REQUIRE(listed->size() == 1);
  CHECK(listed->front().name == "acct-1");
  auto page = store->read_all(1, no_limit);
  REQUIRE(page);
  CHECK(page->events.size() == 2);

  auto next = append_ok(*store, "acct-new", numbered(1, "new"));
  CHECK(next.first_position == 3);
  CHECK(next.first_version == 1);
  CHECK(value_of(store->read_stream("acct-new", 1, 9)).front().payload == "new1");
  CHECK(value_of(store->read_stream("acct-1", 1, 9)).size() == 2);
}

TEST_CASE("a read-only store refuses writes", "[unit][store][append]") {
  temp_dir dir;
  {
    auto store = open_ok(dir.sub("s"));
    append_ok(*store, "acct-1", numbered(1));
  }
  auto opts = fast_options();
  opts.read_only = true;
  auto ro = open_ok(dir.sub("s"), opts);
  failure(ro->append(request("acct-1", expected_version::any(), numbered(1))),
          errc::invalid_argument);
  failure(ro->save_checkpoint({"cp", 1}), errc::invalid_argument);
  CHECK(value_of(ro->read_stream("acct-1", 1, 9)).size() == 1);
}

// -- append_batch --------------------------------------------------------------------

TEST_CASE("a batch appends many requests to many streams in one call", "[unit][store][batch]") {
  temp_dir dir;
  auto store = open_ok(dir.sub("s"));
  write_batch batch;
  for (int i = 0; i < 60; ++i)
    batch.appends.push_back(
      request("acct-" + std::to_string(i % 12), expected_version::any(),
              numbered(static_cast<std::size_t>(1 + i % 3), "r" + std::to_string(i) + "-")));
  auto out = store->append_batch(batch);
  REQUIRE(out);
  REQUIRE(out->size() == 60);
  std::uint64_t expect_pos = 1;
  std::vector<std::uint64_t> versions(12, 0);
  for (int i = 0; i < 60; ++i) {
    const auto& r = (*out)[static_cast<std::size_t>(i)];
    REQUIRE(r);
    auto n = static_cast<std::uint64_t>(1 + i % 3);
    auto& v = versions[static_cast<std::size_t>(i % 12)];
    CHECK(r->first_version == v + 1);
    CHECK(r->last_version == v + n);
    CHECK(r->first_position == expect_pos);
    CHECK(r->last_position == expect_pos + n - 1);
    v += n;
    expect_pos += n;
  }
  auto page = store->read_all(1, no_limit);
  REQUIRE(page);
  REQUIRE(page->events.size() == expect_pos - 1);
  for (std::size_t i = 0; i < page->events.size(); ++i)
    CHECK(page->events[i].position == i + 1);
  for (int s = 0; s < 12; ++s) {
    auto name = "acct-" + std::to_string(s);
    CHECK(value_of(store->stream_version(name)) == versions[static_cast<std::size_t>(s)]);
    auto evs = store->read_stream(name, 1, no_limit);
    REQUIRE(evs);
    REQUIRE(evs->size() == versions[static_cast<std::size_t>(s)]);
    CHECK(evs->front().payload == "r" + std::to_string(s) + "-1");
  }
}

TEST_CASE("a conflict in a batch fails only its own request and positions stay gap-free",
          "[unit][store][batch]") {
  temp_dir dir;
  auto store = open_ok(dir.sub("s"));
  append_ok(*store, "acct-old", numbered(2, "old"));
  write_batch batch;
  batch.appends.push_back(request("acct-a", expected_version::no_stream(), numbered(2, "a")));
  batch.appends.push_back(request("acct-b", expected_version::exact(5), numbered(3, "b")));
  batch.appends.push_back(request("acct-old", expected_version::exact(1), numbered(1, "x")));
  batch.appends.push_back(request("acct-c", expected_version::no_stream(), numbered(2, "c")));
  batch.appends.push_back(request("acct-bad", expected_version::any(), {event("", "x")}));
  batch.appends.push_back(request("acct-old", expected_version::exact(2), numbered(1, "old", 3)));
  auto out = store->append_batch(batch);
  REQUIRE(out);
  REQUIRE(out->size() == 6);
  REQUIRE((*out)[0]);
  CHECK((*out)[0]->first_position == 3);
  CHECK((*out)[0]->last_position == 4);
  REQUIRE_FALSE((*out)[1]);
  CHECK((*out)[1].error().code == errc::conflict);
  CHECK((*out)[1].error().context == "acct-b");
  REQUIRE_FALSE((*out)[2]);
  CHECK((*out)[2].error().code == errc::conflict);
  REQUIRE((*out)[3]);
  CHECK((*out)[3]->first_position == 5);
  CHECK((*out)[3]->last_position == 6);
  REQUIRE_FALSE((*out)[4]);
  CHECK((*out)[4].error().code == errc::invalid_argument);
  REQUIRE((*out)[5]);
  CHECK((*out)[5]->first_version == 3);
  CHECK((*out)[5]->first_position == 7);

  auto page = store->read_all(1, no_limit);
  REQUIRE(page);
  REQUIRE(page->events.size() == 7);
  for (std::size_t i = 0; i < 7; ++i)
    CHECK(page->events[i].position == i + 1);
  CHECK(value_of(store->stream_version("acct-b")) == 0);
  CHECK(value_of(store->stream_version("acct-bad")) == 0);
  auto names = store->list_streams("");
  REQUIRE(names);
  REQUIRE(names->size() == 3);
  CHECK((*names)[0].name == "acct-a");
  CHECK((*names)[1].name == "acct-c");
  CHECK((*names)[2].name == "acct-old");

  // Streams created later do not collide with the ones written in the batch.
  append_ok(*store, "acct-b", numbered(1, "b-later"));
  append_ok(*store, "acct-d", numbered(1, "d-later"));
  CHECK(value_of(store->read_stream("acct-a", 1, 9)).back().payload == "a2");
  CHECK(value_of(store->read_stream("acct-b", 1, 9)).back().payload == "b-later1");
  CHECK(value_of(store->read_stream("acct-c", 1, 9)).back().payload == "c2");
  CHECK(value_of(store->read_stream("acct-d", 1, 9)).back().payload == "d-later1");
  CHECK(value_of(store->read_stream("acct-old", 1, 9)).back().payload == "old3");
}

TEST_CASE("requests of a batch see the earlier requests of the same batch",
          "[unit][store][batch]") {
  temp_dir dir;
  auto store = open_ok(dir.sub("s"));
  write_batch batch;
  batch.appends.push_back(request("acct-1", expected_version::no_stream(), numbered(2)));
  batch.appends.push_back(request("acct-1", expected_version::exact(2), numbered(1, "p", 3)));
  batch.appends.push_back(request("acct-1", expected_version::no_stream(), numbered(1)));
  batch.appends.push_back(request("acct-1", expected_version::stream_exists(), {}));
  auto out = store->append_batch(batch);
  REQUIRE(out);
  REQUIRE((*out)[0]);
  REQUIRE((*out)[1]);
  CHECK((*out)[1]->first_version == 3);
  REQUIRE_FALSE((*out)[2]);
  CHECK((*out)[2].error().code == errc::conflict);
  REQUIRE((*out)[3]);
  CHECK((*out)[3]->first_version == 4);
  CHECK((*out)[3]->last_version == 3);
  CHECK(value_of(store->stream_version("acct-1")) == 3);
}

TEST_CASE("checkpoints in a batch are written with its appends", "[unit][store][batch]") {
  temp_dir dir;
  auto store = open_ok(dir.sub("s"));
  write_batch batch;
  batch.appends.push_back(request("acct-1", expected_version::any(), numbered(3)));
  batch.checkpoints.push_back({"projector", 3});
  batch.checkpoints.push_back({"mailer", 1});
  auto out = store->append_batch(batch);
  REQUIRE(out);
  REQUIRE(out->front());
  CHECK(value_of(store->load_checkpoint("projector")) == std::optional<std::uint64_t>{3});
  CHECK(value_of(store->load_checkpoint("mailer")) == std::optional<std::uint64_t>{1});
  CHECK(value_of(store->stream_version("acct-1")) == 3);
  auto cps = store->list_checkpoints();
  REQUIRE(cps);
  REQUIRE(cps->size() == 2);
  CHECK((*cps)[0].name == "mailer");
  CHECK((*cps)[1].name == "projector");
}

TEST_CASE("a snapshot in a batch may cover events appended in the same batch",
          "[unit][store][batch][snapshot]") {
  temp_dir dir;
  auto store = open_ok(dir.sub("s"));
  write_batch batch;
  batch.appends.push_back(request("acct-1", expected_version::no_stream(), numbered(4)));
  batch.snapshots.push_back({"acct-1", 4, "account_state", 2, "state@4"});
  batch.appends.push_back(request("acct-2", expected_version::no_stream(), numbered(1)));
  batch.snapshots.push_back({"acct-2", 1, "account_state", 2, "state2@1"});
  auto out = store->append_batch(batch);
  REQUIRE(out);
  auto s1 = store->load_snapshot("acct-1");
  REQUIRE(s1);
  REQUIRE(s1->has_value());
  CHECK((*s1)->version == 4);
  CHECK((*s1)->data == "state@4");
  CHECK((*s1)->state_type == "account_state");
  CHECK((*s1)->schema_version == 2);
  auto s2 = store->load_snapshot("acct-2");
  REQUIRE(s2);
  REQUIRE(s2->has_value());
  CHECK((*s2)->data == "state2@1");
}

TEST_CASE("a batch that fails as a whole writes none of its parts", "[unit][store][batch]") {
  temp_dir dir;
  auto store = open_ok(dir.sub("s"));
  append_ok(*store, "acct-1", numbered(1));
  write_batch batch;
  batch.appends.push_back(request("acct-1", expected_version::any(), numbered(2)));
  batch.checkpoints.push_back({"projector", 3});
  SECTION("a snapshot past its stream's version") {
    batch.snapshots.push_back({"acct-1", 9, "state", 1, "x"});
  }
  SECTION("a snapshot of a stream that does not exist") {
    batch.snapshots.push_back({"acct-none", 1, "state", 1, "x"});
  }
  SECTION("a checkpoint with an empty name") { batch.checkpoints.push_back({"", 1}); }
  auto out = store->append_batch(batch);
  REQUIRE_FALSE(out);
  CHECK(out.error().code == errc::invalid_argument);
  CHECK(value_of(store->stream_version("acct-1")) == 1);
  CHECK(value_of(store->last_position()) == 1);
  CHECK_FALSE(value_of(store->load_checkpoint("projector")).has_value());
  CHECK(value_of(store->stream_version("acct-none")) == 0);
}

TEST_CASE("an empty batch succeeds with no results", "[unit][store][batch]") {
  temp_dir dir;
  auto store = open_ok(dir.sub("s"));
  auto out = store->append_batch({});
  REQUIRE(out);
  CHECK(out->empty());
}
