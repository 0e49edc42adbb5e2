#include <atomic>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>

#include "cairn/persistence/event_store.hpp"
#include "support/temp_dir.hpp"

#include "helpers.hpp"

using namespace cairn::persistence;
using cairn::test::event;
using cairn::test::fast_options;
using cairn::test::open_ok;
using cairn::test::request;
using cairn::test::temp_dir;
using cairn::test::value_of;

TEST_CASE("readers on other threads see only whole appends while the writer grows the map",
          "[unit][store][threads]") {
  // Catch assertions are not thread-safe: readers collect problems, the test
  // thread checks them after the join.
  temp_dir dir;
  auto o = fast_options();
  o.initial_map_size = std::size_t{1} << 20;
  o.map_growth_step = std::size_t{1} << 20;
  auto store = open_ok(dir.sub("s"), o);
  const std::size_t per_append = 10;
  auto payload = [](std::uint64_t version) {
    return std::to_string(version) + std::string(500, 'r');
  };

  std::atomic<bool> stop{false};
  std::atomic<long> reads{0};
  std::mutex mu;
  std::vector<std::string> problems;
  auto report = [&](std::string what) {
    std::lock_guard<std::mutex> lock{mu};
    if (problems.size() < 10)
      problems.push_back(std::move(what));
  };
  auto reader = [&] {
    while (!stop.load()) {
      auto last = store->last_position();
      auto version = store->stream_version("load-1");
      if (!last || !version) {
        report("position or version failed");
        continue;
      }
      if (*last % per_append != 0)
        report("last position " + std::to_string(*last) + " splits an append");
      if (*version >= 20) {
        auto tail = store->read_stream("load-1", *version - 19, no_limit);
        if (!tail) {
          report("read_stream: " + tail.error().to_string());
          continue;
        }
        if (tail->size() % per_append != 0)
          report("read_stream saw " + std::to_string(tail->size()) + " events");
        auto v = *version - 19;
        for (const auto& e : *tail)
          if (e.version != v++ || e.payload != payload(e.version))
            report("read_stream: wrong event at v" + std::to_string(e.version));
      }
      auto page = store->read_all(*last > 30 ? *last - 29 : 1, no_limit);
      if (!page) {
        report("read_all: " + page.error().to_string());
        continue;
      }
      if (page->events.size() % per_append != 0)
        report("read_all saw " + std::to_string(page->events.size()) + " events");
      ++reads;
    }
  };
  std::vector<std::thread> readers;
  for (int i = 0; i < 2; ++i)
    readers.emplace_back(reader);

  std::uint64_t version = 0;
  std::size_t first_map = value_of(store->stats()).map_size;
  bool failed = false;
  for (int i = 0; i < 600 && !failed; ++i) {
    std::vector<event_data> evs;
    for (std::size_t j = 1; j <= per_append; ++j)
      evs.push_back(event("loaded", payload(version + j)));
    auto r = store->append(request("load-1", expected_version::exact(version), std::move(evs)));
    failed = !r;
    if (r)
      version = r->last_version;
  }
  while (reads.load() < 10 && problems.empty())
    std::this_thread::yield();
  stop = true;
  for (auto& t : readers)
    t.join();

  CHECK_FALSE(failed);
  CHECK(version == 6000);
  CHECK(value_of(store->stats()).map_size > first_map);
  for (const auto& p : problems)
    FAIL_CHECK(p);
  CHECK(reads.load() >= 10);
}
