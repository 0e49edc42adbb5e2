// A service includes runtime.hpp, and a test of a pure aggregate includes
// testkit.hpp: neither may pull CAF into the user's translation unit (the
// CAF-native form is runtime_caf.hpp). This file fails to compile if one does.

#include "cairn/runtime/runtime.hpp"
#include "cairn/runtime/testkit.hpp"

#ifdef CAF_VERSION
#error "cairn/runtime/runtime.hpp or cairn/runtime/testkit.hpp includes a CAF header"
#endif

#include <catch2/catch.hpp>

#include "account.hpp"

TEST_CASE("an outcome lists the global position of each of its events", "[unit][headers]") {
  cairn::outcome<bank::account> o;
  CHECK(o.positions().empty());
  o.first_position = 3;
  o.last_position = 5;
  CHECK(o.positions() == std::vector<std::uint64_t>{3, 4, 5});
}
