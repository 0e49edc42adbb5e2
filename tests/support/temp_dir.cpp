#include "support/temp_dir.hpp"

#include <cstdlib>
#include <filesystem>
#include <stdexcept>

namespace cairn::test {

temp_dir::temp_dir() {
  const char* base = std::getenv("TMPDIR");
  std::string tmpl = std::string{base != nullptr && *base != '\0' ? base : "/tmp"}
                     + "/cairn-test-XXXXXX";
  if (::mkdtemp(tmpl.data()) == nullptr)
    throw std::runtime_error("mkdtemp failed for " + tmpl);
  path_ = tmpl;
}

temp_dir::~temp_dir() {
  const char* keep = std::getenv("CAIRN_KEEP_TEST_DIRS");
  if (keep != nullptr && *keep == '1')
    return;
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

} // namespace cairn::test
