#include <chrono>
#include <cstdint>
#include <limits>

#include <catch2/catch.hpp>

#include "cairn/model/backoff.hpp"

using namespace std::chrono_literals;

TEST_CASE("a backoff starts at its base and doubles per failure in a row", "[unit][backoff]") {
  cairn::backoff b{1000ms, 32000ms};
  CHECK(b.after(1) == 1000ms);
  CHECK(b.after(2) == 2000ms);
  CHECK(b.after(3) == 4000ms);
  CHECK(b.after(6) == 32000ms);
}

TEST_CASE("a backoff never waits longer than its cap", "[unit][backoff]") {
  cairn::backoff b{20ms, 5000ms};
  CHECK(b.after(8) == 2560ms);
  CHECK(b.after(9) == 5000ms); // 5120 ms capped
  CHECK(b.after(1000) == 5000ms);
  CHECK(b.after(std::numeric_limits<std::uint64_t>::max()) == 5000ms);
}

TEST_CASE("a backoff counts no failure as the first", "[unit][backoff]") {
  cairn::backoff b{100ms, 10000ms};
  CHECK(b.after(0) == b.after(1));
  CHECK(b.after(0) == 100ms);
}

TEST_CASE("a backoff multiplier of 1 waits the same every time", "[unit][backoff]") {
  cairn::backoff b{250ms, 10000ms, 1.0};
  for (std::uint64_t n = 1; n < 20; ++n)
    CHECK(b.after(n) == 250ms);
}

TEST_CASE("a backoff with a fractional multiplier truncates to milliseconds", "[unit][backoff]") {
  cairn::backoff b{100ms, 10000ms, 1.5};
  CHECK(b.after(2) == 150ms);
  CHECK(b.after(3) == 225ms);
  CHECK(b.after(4) == 337ms); // 337.5
}

TEST_CASE("a zero base never waits", "[unit][backoff]") {
  cairn::backoff b{0ms, 0ms};
  CHECK(b.after(5) == 0ms);
}
