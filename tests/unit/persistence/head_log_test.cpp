// Heads written behind the log: between heads-table rewrites, the writer, a
// read-only reader and a reopened store find every stream's head through the
// head log, and a damaged head-log entry is rebuilt from the log records.

#include <map>
#include <random>
#include <string>

#include <catch2/catch.hpp>

#include "cairn/persistence/event_store.hpp"
#include "cairn/persistence/format.hpp"
#include "support/temp_dir.hpp"

#include "helpers.hpp"

using namespace cairn::persistence;
using cairn::test::append_ok;
using cairn::test::count_in_file;
using cairn::test::fast_options;
using cairn::test::flip_in_file;
using cairn::test::numbered;
using cairn::test::open_ok;
using cairn::test::request;
using cairn::test::temp_dir;
using cairn::test::value_of;

namespace {

using model = std::map<std::string, std::uint64_t>; // stream -> version

/// Every stream of `m` has exactly its version in `store`, its events are
/// dense, and its last payload names that version.
void check_streams(const event_store& store, const model& m, const char* who) {
  for (const auto& [stream, version] : m) {
    INFO(who << ": " << stream);
    CHECK(value_of(store.stream_version(stream)) == version);
    auto events = value_of(store.read_stream(stream, 1, no_limit));
    REQUIRE(events.size() == version);
    CHECK(events.back().version == version);
    CHECK(events.back().payload == stream + "/" + std::to_string(version));
    auto backward = value_of(store.read_stream_backward(stream, no_limit, 1));
    REQUIRE(backward.size() == 1);
    CHECK(backward.front().version == version);
  }
}

} // namespace

TEST_CASE("heads changed since the last heads rewrite are found by the writer, a reader and "
          "after reopening",
          "[unit][store][heads]") {
  auto every = GENERATE(as<std::uint64_t>{}, 0, 7, 65536); // rewrite: each commit, often, never
  INFO("heads_flush_events = " << every);
  temp_dir dir;
  auto o = fast_options();
  o.heads_flush_events = every;
  auto store = open_ok(dir.sub("s"), o);
  auto ro_opts = o;
  ro_opts.read_only = true;

  std::mt19937 rng{7};
  model m;
  for (int step = 1; step <= 240; ++step) {
    write_batch b;
    auto requests = 1 + rng() % 4;
    for (std::uint32_t r = 0; r < requests; ++r) {
      auto stream = "heads-" + std::to_string(rng() % 25); // new streams keep appearing
      auto n = 1 + rng() % 3;
      std::vector<event_data> events;
      auto& version = m[stream];
      for (std::uint32_t e = 0; e < n; ++e)
        events.push_back(cairn::test::event("noted", stream + "/" + std::to_string(++version)));
      b.appends.push_back(request(stream, expected_version::any(), std::move(events)));
    }
    auto res = value_of(store->append_batch(b));
    for (const auto& r : res)
      REQUIRE(r);
    if (step % 20 == 0) // the writer's reads go through the head log, as a reader's do
      check_streams(*store, m, "writer");
    if (step % 80 == 0) { // a restart rebuilds the writer's heads from the head log
      store.reset();
      store = open_ok(dir.sub("s"), o);
      check_streams(*store, m, "reopened");
    }
  }
  // A read-only process (one store handle per process: the writer closes
  // first), and appends that continue each stream.
  store.reset();
  {
    auto reader = open_ok(dir.sub("s"), ro_opts);
    check_streams(*reader, m, "read-only");
  }
  store = open_ok(dir.sub("s"), o);
  for (auto& [stream, version] : m) {
    auto r = value_of(store->append(
      request(stream, expected_version::exact(version),
              {cairn::test::event("noted", stream + "/" + std::to_string(version + 1))})));
    CHECK(r.first_version == ++version);
  }
  check_streams(*store, m, "writer after the last appends");
  CHECK(value_of(store->stats()).streams == m.size());
  store.reset();
  check_streams(*open_ok(dir.sub("s"), ro_opts), m, "read-only after the last appends");
}

TEST_CASE("a damaged head-log entry is rebuilt from the log records it covers",
          "[unit][store][heads][corruption]") {
  temp_dir dir;
  auto path = dir.sub("s");
  {
    auto store = open_ok(path); // default interval: everything stays in the head log
    append_ok(*store, "acct-1", numbered(3, "a")); // stream 1, positions 1..3
    append_ok(*store, "acct-2", numbered(2, "b")); // stream 2, positions 4..5
  }
  // The entry of the second commit: stream 2 ended at position 5.
  std::string pair(format::head_log_pair_size, '\0');
  format::put_le(reinterpret_cast<unsigned char*>(pair.data()), std::uint64_t{2});
  format::put_le(reinterpret_cast<unsigned char*>(pair.data()) + 8, std::uint64_t{5});
  auto data = path + "/data.mdb";
  REQUIRE(count_in_file(data, pair) >= 1);
  flip_in_file(data, pair, 8); // now it claims position 4, but fails its checksum

  auto ro = fast_options();
  ro.read_only = true;
  {
    auto reader = open_ok(path, ro);
    CHECK(value_of(reader->stream_version("acct-2")) == 2);
    CHECK(value_of(reader->read_stream("acct-2", 1, no_limit)).back().payload == "b2");
    CHECK(value_of(reader->stream_version("acct-1")) == 3);
  }

  auto store = open_ok(path);
  CHECK(value_of(store->stream_version("acct-2")) == 2);
  auto next =
    value_of(store->append(request("acct-2", expected_version::exact(2), numbered(1, "b", 3))));
  CHECK(next.first_version == 3);
  CHECK(value_of(store->stream_version("acct-2")) == 3);
}
