// The structural corruption campaign at length (the integration suite runs
// 20 copies): CAIRN_CORRUPT_COPIES copies, 300 by default.

#include <cstdlib>
#include <string>

#include <catch2/catch.hpp>

#include "integration/tools/corruption_campaign.hpp"

TEST_CASE("the structural corruption campaign: crashes and hangs of every reader",
          "[slow][corruption]") {
  int copies = 300;
  if (const char* env = std::getenv("CAIRN_CORRUPT_COPIES"); env != nullptr && *env != '\0')
    copies = std::atoi(env);
  auto seed = cairn::test::test_seed();
  auto r = cairn::test::campaign::run(copies, seed);
  WARN(cairn::test::campaign::describe(r, copies, seed));
  CHECK(r.verify.crashed == 0);
  CHECK(r.verify.hung == 0);
}
