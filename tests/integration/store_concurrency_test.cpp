// Readers on other threads while the writer appends and the map grows under
// them: every read sees whole committed batches, never a torn one.

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>

#include "cairn/persistence/event_store.hpp"
#include "support/temp_dir.hpp"

using namespace cairn::persistence;

namespace {

constexpr int stream_count = 16;
constexpr int events_per_append = 4;

std::string stream_name(int i) { return "conc-" + std::to_string(i); }

} // namespace

TEST_CASE("readers on other threads see whole batches while the writer grows the map",
          "[integration][store][concurrency]") {
  cairn::test::temp_dir dir;
  store_options opts;
  opts.durability = durability::no_sync;
  opts.initial_map_size = std::size_t{1} << 20; // forces several resizes mid-run
  opts.map_growth_step = std::size_t{1} << 20;
  opts.heads_flush_events = 50; // heads rewritten every few batches, under the readers
  auto opened = open_store(dir.path(), opts);
  REQUIRE(opened);
  auto& store = **opened;

  std::atomic<bool> done{false};
  std::atomic<int> failures{0};
  std::atomic<long> reads{0};
  std::vector<std::string> problems(3);

  auto reader = [&](int id) {
    std::uint64_t last_seen = 0;
    std::vector<std::size_t> seen_events(stream_count, 0);
    for (int round = 0; !done.load() || round < 5; ++round) {
      // Every stream's version is a multiple of events_per_append and its
      // events are dense: a torn batch would show as a version gap.
      auto s = stream_name(round % stream_count);
      auto events = store.read_stream(s, 1, 100000);
      if (!events) {
        problems[id] = events.error().to_string();
        ++failures;
        return;
      }
      if (events->size() % events_per_append != 0) {
        problems[id] = s + " has " + std::to_string(events->size()) + " events";
        ++failures;
        return;
      }
      for (std::size_t i = 0; i < events->size(); ++i)
        if ((*events)[i].version != i + 1) {
          problems[id] = s + " has a version gap";
          ++failures;
          return;
        }
      // A stream never loses events, across heads rewrites too.
      if (events->size() < seen_events[round % stream_count]) {
        problems[id] = s + " went back to " + std::to_string(events->size()) + " events";
        ++failures;
        return;
      }
      seen_events[round % stream_count] = events->size();
      // The global log only grows, and a page is dense.
      auto last = store.last_position();
      if (!last || *last < last_seen) {
        problems[id] = "last_position went backwards";
        ++failures;
        return;
      }
      last_seen = *last;
      auto from = last_seen > 200 ? last_seen - 200 : 1;
      auto page = store.read_all(from, 200);
      if (!page) {
        problems[id] = page.error().to_string();
        ++failures;
        return;
      }
      for (std::size_t i = 0; i < page->events.size(); ++i)
        if (page->events[i].position != from + i) {
          problems[id] = "read_all page has a gap";
          ++failures;
          return;
        }
      ++reads;
    }
  };

  std::thread r1{reader, 0}, r2{reader, 1};
  std::string payload(512, 'x');
  std::vector<std::uint64_t> versions(stream_count, 0);
  std::size_t start_map = (*store.stats()).map_size;
  for (int batch = 0; batch < 400 && failures.load() == 0; ++batch) {
    write_batch b;
    for (int s = 0; s < stream_count; ++s) {
      if ((batch + s) % 3 != 0)
        continue;
      append_request req;
      req.stream = stream_name(s);
      req.expected = expected_version::exact(versions[s]);
      for (int e = 0; e < events_per_append; ++e)
        req.events.push_back(event_data{"conc_event", 1, payload, {}, {}});
      b.appends.push_back(std::move(req));
    }
    auto res = store.append_batch(b);
    REQUIRE(res);
    for (std::size_t i = 0; i < res->size(); ++i) {
      REQUIRE((*res)[i]);
      versions[std::stoi(b.appends[i].stream.substr(5))] = (*res)[i]->last_version;
    }
  }
  done = true;
  r1.join();
  r2.join();
  INFO(problems[0] << " | " << problems[1]);
  CHECK(failures.load() == 0);
  CHECK(reads.load() > 0);
  CHECK((*store.stats()).map_size > start_map); // the map really grew during the run
  for (int s = 0; s < stream_count; ++s)
    CHECK(*store.stream_version(stream_name(s)) == versions[s]);
}
