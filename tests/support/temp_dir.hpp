#pragma once

#include <string>

namespace cairn::test {

/// A fresh directory under $TMPDIR (or /tmp), removed with everything in it
/// when the object goes away. Set CAIRN_KEEP_TEST_DIRS=1 to keep it.
class temp_dir {
public:
  temp_dir();
  ~temp_dir();
  temp_dir(const temp_dir&) = delete;
  temp_dir& operator=(const temp_dir&) = delete;

  [[nodiscard]] const std::string& path() const { return path_; }
  /// path() + "/" + name
  [[nodiscard]] std::string sub(const std::string& name) const { return path_ + "/" + name; }

private:
  std::string path_;
};

} // namespace cairn::test
