// Inputs the fuzz targets (tests/fuzz/) found: each must now be refused with
// an error, never decoded into undefined behaviour.

#include <string>

#include <catch2/catch.hpp>

#include "cairn/persistence/codec.hpp"
#include "hangar/provider_group.hpp"

using cairn::persistence::decode_payload;

TEST_CASE("a bool stored as a byte other than 0 or 1 is refused", "[unit][codec][fuzz]") {
  // tests/fuzz/payload.cpp, selector 35 (member_result_recorded): an empty
  // member, then ok = 7. Read as a bool, 7 is undefined behaviour (UBSan:
  // "load of value 7, which is not a valid value for type 'bool'").
  const std::string crash{"\0\0\0\0\0\0\0\0\x07\0\0\0\0\0\xff\xff\0\0", 18};
  auto ev = decode_payload<hangar::member_result_recorded>(crash);
  REQUIRE(!ev);
  CHECK(ev.error().code == cairn::errc::corrupted);
  CHECK_THAT(ev.error().message, Catch::Contains("a bool of 7 at byte 8"));

  CHECK(!decode_payload<bool>(std::string(1, '\x02')));
  CHECK(decode_payload<bool>(std::string(1, '\x01')) == true);
  CHECK(decode_payload<bool>(std::string(1, '\x00')) == false);
}
