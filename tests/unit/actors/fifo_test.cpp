#include <catch2/catch.hpp>

#include <deque>
#include <memory>
#include <string>
#include <utility>

#include "cairn/actors/fifo.hpp"

using cairn::actors::fifo;

TEST_CASE("fifo keeps first-in first-out order through growth and reuse", "[unit][fifo]") {
  fifo<std::string> q;
  std::deque<std::string> model;
  std::size_t next = 0;
  // Uneven pushes and pops so the queue grows, empties and reclaims slots.
  for (int round = 0; round < 200; ++round) {
    auto pushes = static_cast<std::size_t>(round % 7 + 1);
    auto pops = static_cast<std::size_t>((round * 5) % 9);
    for (std::size_t i = 0; i < pushes; ++i) {
      auto value = "value number " + std::to_string(next++); // longer than SSO
      model.push_back(value);
      q.push_back(std::move(value));
    }
    for (std::size_t i = 0; i < pops && !model.empty(); ++i) {
      REQUIRE(q.front() == model.front());
      q.pop_front();
      model.pop_front();
    }
    REQUIRE(q.size() == model.size());
    REQUIRE(q.empty() == model.empty());
    REQUIRE(std::equal(q.begin(), q.end(), model.begin(), model.end()));
  }
  while (!model.empty()) {
    REQUIRE(q.front() == model.front());
    q.pop_front();
    model.pop_front();
  }
  REQUIRE(q.empty());
  REQUIRE(q.begin() == q.end());
}

TEST_CASE("fifo releases what it pops at once", "[unit][fifo]") {
  fifo<std::shared_ptr<int>> q;
  auto first = std::make_shared<int>(1);
  auto second = std::make_shared<int>(2);
  q.push_back(std::shared_ptr<int>(first));
  q.push_back(std::shared_ptr<int>(second));
  REQUIRE(first.use_count() == 2);
  q.pop_front();
  REQUIRE(first.use_count() == 1); // not kept in the popped slot
  REQUIRE(*q.front() == 2);
  q.pop_front();
  REQUIRE(second.use_count() == 1);
  REQUIRE(q.empty());
}
