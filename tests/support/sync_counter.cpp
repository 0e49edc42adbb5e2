#include "support/sync_counter.hpp"

#include <atomic>
#include <cerrno>

#include <dlfcn.h>
#include <unistd.h>

namespace {

std::atomic<std::uint64_t> calls{0};
std::atomic<std::uint64_t> completed{0};
std::atomic<std::uint64_t> failing_call{0}; // 1-based number of the call to fail; 0: none
std::atomic<int> failing_errno{0};

} // namespace

// The executable's definition comes first in symbol lookup, so liblmdb's
// calls land here. Linked only into test binaries that use these hooks.
extern "C" int fdatasync(int fd) {
  using fn = int (*)(int);
  static const auto next = reinterpret_cast<fn>(dlsym(RTLD_NEXT, "fdatasync"));
  auto call = calls.fetch_add(1, std::memory_order_acq_rel) + 1;
  int rc = 0;
  if (call == failing_call.load(std::memory_order_acquire)) {
    errno = failing_errno.load(std::memory_order_relaxed);
    rc = -1;
  } else if (next == nullptr) {
    errno = ENOSYS;
    rc = -1;
  } else {
    rc = next(fd);
  }
  completed.fetch_add(1, std::memory_order_acq_rel);
  return rc;
}

namespace cairn::test {

std::uint64_t fdatasync_count() noexcept { return completed.load(std::memory_order_acquire); }

void fail_fdatasync(std::uint64_t calls_from_now, int err) noexcept {
  failing_errno.store(err, std::memory_order_relaxed);
  failing_call.store(calls.load(std::memory_order_acquire) + calls_from_now + 1,
                     std::memory_order_release);
}

} // namespace cairn::test
