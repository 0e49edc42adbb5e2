#include "support/sync_counter.hpp"

#include <atomic>
#include <cerrno>

#include <dlfcn.h>
#include <unistd.h>

namespace {

std::atomic<std::uint64_t> completed{0};

} // namespace

// The executable's definition comes first in symbol lookup, so liblmdb's
// calls land here. Linked only into test binaries that use the counter.
extern "C" int fdatasync(int fd) {
  using fn = int (*)(int);
  static const auto next = reinterpret_cast<fn>(dlsym(RTLD_NEXT, "fdatasync"));
  if (next == nullptr) {
    errno = ENOSYS;
    return -1;
  }
  int rc = next(fd);
  completed.fetch_add(1, std::memory_order_acq_rel);
  return rc;
}

namespace cairn::test {

std::uint64_t fdatasync_count() noexcept {
  return completed.load(std::memory_order_acquire);
}

} // namespace cairn::test
