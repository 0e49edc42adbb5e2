#pragma once

// Plumbing for tests that fork a child, read its reports from a pipe and
// kill it: plain code, safe to call in the child after fork.

#include <dirent.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

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

/// The names of this process's threads (/proc/self/task/*/comm).
inline std::vector<std::string> thread_names() {
  std::vector<std::string> names;
  if (DIR* tasks = ::opendir("/proc/self/task")) {
    while (const dirent* e = ::readdir(tasks)) {
      if (e->d_name[0] == '.')
        continue;
      char comm[64] = {};
      auto path = std::string{"/proc/self/task/"} + e->d_name + "/comm";
      if (FILE* f = std::fopen(path.c_str(), "r")) {
        if (std::fgets(comm, sizeof comm, f) != nullptr)
          comm[std::strcspn(comm, "\n")] = '\0';
        std::fclose(f);
      }
      names.emplace_back(comm);
    }
    ::closedir(tasks);
  }
  return names;
}

/// Threads a process keeps besides its own: ThreadSanitizer starts one at
/// the first pthread_create and keeps it (it does not count it as a thread
/// of the program when it checks a fork).
#if defined(__SANITIZE_THREAD__)
inline constexpr std::size_t sanitizer_threads = 1;
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
inline constexpr std::size_t sanitizer_threads = 1;
#else
inline constexpr std::size_t sanitizer_threads = 0;
#endif
#else
inline constexpr std::size_t sanitizer_threads = 0;
#endif

/// Waits up to 10 s until only the calling thread is left (besides the
/// sanitizer's); returns "" or what went wrong. Call it before fork(): a
/// runtime that just stopped may still have threads on their way out (CAF
/// counts a detached actor's thread as gone before it returns), and a child
/// forked then can inherit a lock such a thread held (ThreadSanitizer
/// refuses to start threads in it).
inline std::string await_quiet_threads() {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds{10};
  for (;;) {
    auto names = thread_names();
    if (names.size() <= 1 + sanitizer_threads)
      return {};
    if (std::chrono::steady_clock::now() > deadline) {
      std::string list;
      for (const auto& n : names)
        list += (list.empty() ? "" : ", ") + n;
      return std::to_string(names.size()) + " threads still running before fork (" + list + ")";
    }
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
