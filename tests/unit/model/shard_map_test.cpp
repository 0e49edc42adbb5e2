#include <catch2/catch.hpp>

#include "cairn/model/shard_map.hpp"

using cairn::fnv1a_64;
using cairn::shard_map;

namespace {

shard_map spread(std::uint32_t shards, std::vector<std::string> nodes, std::uint64_t version = 1) {
  shard_map m;
  m.version = version;
  for (std::uint32_t s = 0; s < shards; ++s)
    m.owners.push_back(nodes[s * nodes.size() / shards]);
  return m;
}

} // namespace

TEST_CASE("fnv1a_64 gives the published FNV-1a 64 values", "[unit][model][shard]") {
  // The offset basis for "", and the reference value for "a".
  CHECK(fnv1a_64("") == 0xcbf29ce484222325ull);
  CHECK(fnv1a_64("a") == 0xaf63dc4c8601ec8cull);
  static_assert(fnv1a_64("a") == 0xaf63dc4c8601ec8cull, "usable at compile time");
}

TEST_CASE("a stream's shard is pinned: a change of the hash moves every stream",
          "[unit][model][shard]") {
  // Golden values: nodes of different builds and versions must agree on them.
  auto m = spread(1024, {"A"});
  CHECK(fnv1a_64("account-alice") == 0x11b57a5e88ae9b05ull);
  CHECK(m.shard_of("account-alice") == 773);
  CHECK(m.shard_of("account-bob") == 66);
  CHECK(m.shard_of("account-1") == 598);
  CHECK(m.shard_of("provider-math") == 597);
  CHECK(m.shard_of("provider_group-tools") == 774);
  auto three = spread(3, {"A", "B", "C"});
  CHECK(three.shard_of("account-alice") == 2);
  CHECK(three.owner_of("account-alice") == "C");
  CHECK(three.shard_of("provider-math") == 1);
  CHECK(three.owner_of("provider-math") == "B");
}

TEST_CASE("owner_of names the owner of the stream's shard", "[unit][model][shard]") {
  auto m = spread(1024, {"A", "B"});
  CHECK(m.shards() == 1024);
  CHECK(m.owner_of("account-bob") == "A");   // shard 66 of 0-511
  CHECK(m.owner_of("account-alice") == "B"); // shard 773 of 512-1023
}

TEST_CASE("a map without shards puts every stream in shard 0 of nobody", "[unit][model][shard]") {
  shard_map m;
  CHECK(m.shards() == 0);
  CHECK(m.shard_of("account-1") == 0);
  CHECK(m.owner_of("account-1").empty());
}

TEST_CASE("the digest changes with the version, the count and any owner", "[unit][model][shard]") {
  auto base = spread(1024, {"A", "B"}, 3);
  auto same = spread(1024, {"A", "B"}, 3);
  CHECK(base.digest() == same.digest());

  auto bumped = base;
  bumped.version = 4;
  CHECK(bumped.digest() != base.digest());

  auto moved = base;
  moved.owners[100] = "B";
  CHECK(moved.digest() != base.digest());

  CHECK(spread(1023, {"A", "B"}, 3).digest() != base.digest());
  CHECK(spread(1024, {"B", "A"}, 3).digest() != base.digest());

  // Owner bytes are length-prefixed: shifting a byte between owners shows.
  shard_map ab_c{1, {"AB", "C"}};
  shard_map a_bc{1, {"A", "BC"}};
  CHECK(ab_c.digest() != a_bc.digest());
}
