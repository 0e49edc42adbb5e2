// cairn/version.hpp, generated from project()'s version: the string and its
// parts agree, so a consumer may test either.

#include <string>

#include <catch2/catch.hpp>

#include "cairn/version.hpp"

TEST_CASE("CAIRN_VERSION is its major, minor and patch joined by dots", "[unit][version]") {
  const std::string joined = std::to_string(CAIRN_VERSION_MAJOR) + "."
                             + std::to_string(CAIRN_VERSION_MINOR) + "."
                             + std::to_string(CAIRN_VERSION_PATCH);
  CHECK(joined == CAIRN_VERSION);
  // At 1.0, cmake/install.cmake switches from SameMinorVersion to SameMajorVersion
  // (docs/packaging.md) and this check goes.
  CHECK(CAIRN_VERSION_MAJOR == 0);
}
