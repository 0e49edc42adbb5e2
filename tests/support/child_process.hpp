#pragma once

// Plumbing for tests that fork a child, read its reports from a pipe and
// kill it: plain code, safe to call in the child after fork.

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>

namespace cairn::test {

/// Writes all `size` bytes, retrying on EINTR; false when the pipe is gone.
inline bool write_all(int fd, const void* data, std::size_t size) {
  const auto* p = static_cast<const char*>(data);
  while (size > 0) {
    ssize_t n = ::write(fd, p, size);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      return false;
    p += n;
    size -= static_cast<std::size_t>(n);
  }
  return true;
}

/// Milliseconds until `deadline` for poll(), between 0 and 1000.
inline int ms_until(std::chrono::steady_clock::time_point deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                deadline - std::chrono::steady_clock::now())
                .count();
  return static_cast<int>(std::clamp<long long>(left, 0, 1000));
}

/// "exited by itself with code 10", "died of signal Killed", …
inline std::string describe_status(int status) {
  if (WIFEXITED(status))
    return "exited by itself with code " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status))
    return std::string{"died of signal "} + strsignal(WTERMSIG(status));
  return "status " + std::to_string(status);
}

/// Sends SIGKILL to `pid` (fine for a child that already exited and is not
/// yet reaped) and reaps it into `status`, waiting at most 20 s. Returns ""
/// or what went wrong.
inline std::string kill_and_reap(pid_t pid, int& status) {
  ::kill(pid, SIGKILL);
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds{20};
  for (;;) {
    pid_t r = ::waitpid(pid, &status, WNOHANG);
    if (r == pid)
      return {};
    if (r < 0 && errno != EINTR)
      return std::string{"waitpid: "} + std::strerror(errno);
    if (std::chrono::steady_clock::now() > deadline)
      return "the child did not die within 20 s of SIGKILL";
    ::usleep(1000);
  }
}

/// CAIRN_CRASH_SEED when set (to rerun a failure), else a random seed.
inline std::uint64_t test_seed() {
  if (const char* env = std::getenv("CAIRN_CRASH_SEED"); env != nullptr && *env != '\0')
    return std::strtoull(env, nullptr, 10);
  std::random_device rd;
  return (std::uint64_t{rd()} << 32) ^ rd();
}

} // namespace cairn::test
