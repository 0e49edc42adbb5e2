#pragma once

// A child process of the cluster tests (cairn-test-node): started with
// posix_spawn, its standard input held open (closing it stops the node) and
// its standard output read line by line.

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "hangar/ports.hpp"

extern char** environ;

namespace cairn::test {

/// A TCP port on 127.0.0.1 that was free a moment ago (hangar/ports.hpp);
/// 0, which no node accepts, when there is none.
inline std::uint16_t free_port() {
  auto port = hangar::free_port();
  return port ? *port : 0;
}

class node_process {
public:
  node_process() = default;
  node_process(const node_process&) = delete;
  node_process& operator=(const node_process&) = delete;
  ~node_process() { kill(SIGKILL); }

  /// Starts `path` with `args`; false (and `error()`) when it cannot.
  bool start(const std::string& path, const std::vector<std::string>& args) {
    int in[2], out[2];
    if (::pipe(in) != 0 || ::pipe(out) != 0)
      return fail("pipe failed");
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, in[0], 0);
    posix_spawn_file_actions_adddup2(&fa, out[1], 1);
    posix_spawn_file_actions_addclose(&fa, in[1]);
    posix_spawn_file_actions_addclose(&fa, out[0]);
    std::vector<char*> argv;
    argv.push_back(const_cast<char*>(path.c_str()));
    for (const auto& a : args)
      argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    int rc = posix_spawn(&pid_, path.c_str(), &fa, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&fa);
    ::close(in[0]);
    ::close(out[1]);
    if (rc != 0) {
      ::close(in[1]);
      ::close(out[0]);
      pid_ = -1;
      return fail("posix_spawn failed");
    }
    ::fcntl(in[1], F_SETFD, FD_CLOEXEC);
    ::fcntl(out[0], F_SETFD, FD_CLOEXEC);
    stdin_ = in[1];
    stdout_ = out[0];
    return true;
  }

  /// The next line of output starting with `prefix` (earlier lines are kept
  /// in output()), or "" when none came within `limit`.
  std::string wait_line(const std::string& prefix, std::chrono::milliseconds limit) {
    auto deadline = std::chrono::steady_clock::now() + limit;
    for (;;) {
      auto nl = buffer_.find('\n');
      while (nl != std::string::npos) {
        auto line = buffer_.substr(0, nl);
        buffer_.erase(0, nl + 1);
        output_ += line + "\n";
        if (line.compare(0, prefix.size(), prefix) == 0)
          return line;
        nl = buffer_.find('\n');
      }
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0 || stdout_ < 0)
        return {};
      pollfd p{stdout_, POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(left.count())) <= 0)
        continue;
      char buf[4096];
      auto n = ::read(stdout_, buf, sizeof buf);
      if (n <= 0) {
        ::close(stdout_);
        stdout_ = -1;
        continue;
      }
      buffer_.append(buf, static_cast<std::size_t>(n));
    }
  }

  /// Writes `line` and a newline to its standard input (cairn-test-node
  /// reads commands there); false when it cannot.
  bool write_line(const std::string& line) {
    static const bool no_sigpipe = (::signal(SIGPIPE, SIG_IGN), true); // a dead node: false
    (void)no_sigpipe;
    auto text = line + "\n";
    return stdin_ >= 0
           && ::write(stdin_, text.data(), text.size()) == static_cast<ssize_t>(text.size());
  }

  /// Closes its standard input (the node shuts down) and waits at most
  /// `limit` for it to exit; its exit code, or -1 (then it is killed).
  int stop(std::chrono::milliseconds limit) {
    if (pid_ <= 0)
      return -1;
    if (stdin_ >= 0) {
      ::close(stdin_);
      stdin_ = -1;
    }
    auto deadline = std::chrono::steady_clock::now() + limit;
    int status = 0;
    while (std::chrono::steady_clock::now() < deadline) {
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        close_pipes();
        return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
      }
      ::usleep(2000);
    }
    kill(SIGKILL);
    return -1;
  }

  /// Sends `sig`; SIGKILL also reaps it.
  void kill(int sig) {
    if (pid_ <= 0)
      return;
    ::kill(pid_, sig);
    if (sig == SIGKILL) {
      int status = 0;
      ::waitpid(pid_, &status, 0);
      pid_ = -1;
      close_pipes();
    }
  }

  [[nodiscard]] pid_t pid() const { return pid_; }
  [[nodiscard]] const std::string& output() const { return output_; }
  [[nodiscard]] const std::string& error() const { return error_; }

private:
  bool fail(std::string what) {
    error_ = std::move(what);
    return false;
  }
  void close_pipes() {
    if (stdin_ >= 0)
      ::close(stdin_);
    if (stdout_ >= 0)
      ::close(stdout_);
    stdin_ = stdout_ = -1;
  }

  pid_t pid_ = -1;
  int stdin_ = -1;
  int stdout_ = -1;
  std::string buffer_, output_, error_;
};

} // namespace cairn::test
