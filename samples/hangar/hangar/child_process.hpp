#pragma once

// A node as a child process, shared by the cluster demos, the benches and
// the tests that run nodes as processes: started with posix_spawn, its
// standard input held open (a node stops when it closes) and its standard
// output read line by line.
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "cairn/model/error.hpp"

extern char** environ;

namespace hangar {

class child_process {
public:
  child_process() = default;
  child_process(const child_process&) = delete;
  child_process& operator=(const child_process&) = delete;
  ~child_process() { kill(SIGKILL); }

  /// Starts `path` with `args`. Its standard error is appended to the file
  /// `log`, or shares ours when `log` is empty.
  cairn::result<void> start(const std::string& path, const std::vector<std::string>& args,
                            const std::string& log = {}) {
    kill(SIGKILL); // a restart: the last run's process and unread output go
    buffer_.clear();
    int in[2], out[2];
    if (::pipe(in) != 0)
      return cairn::fail(cairn::errc::unavailable, "pipe failed", path);
    if (::pipe(out) != 0) {
      ::close(in[0]);
      ::close(in[1]);
      return cairn::fail(cairn::errc::unavailable, "pipe failed", path);
    }
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, in[0], 0);
    posix_spawn_file_actions_adddup2(&fa, out[1], 1);
    if (!log.empty())
      posix_spawn_file_actions_addopen(&fa, 2, log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
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
      return cairn::fail(cairn::errc::unavailable, "cannot start it (posix_spawn failed)", path);
    }
    ::fcntl(in[1], F_SETFD, FD_CLOEXEC);
    ::fcntl(out[0], F_SETFD, FD_CLOEXEC);
    stdin_ = in[1];
    stdout_ = out[0];
    return {};
  }

  /// The next line of its output starting with `prefix` (every line read is
  /// kept in output()), or "" when none came within `limit`.
  std::string wait_line(const std::string& prefix, std::chrono::milliseconds limit) {
    auto deadline = std::chrono::steady_clock::now() + limit;
    for (;;) {
      for (auto nl = buffer_.find('\n'); nl != std::string::npos; nl = buffer_.find('\n')) {
        auto line = buffer_.substr(0, nl);
        buffer_.erase(0, nl + 1);
        output_ += line + "\n";
        if (line.compare(0, prefix.size(), prefix) == 0)
          return line;
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
        close_fd(stdout_);
        continue;
      }
      buffer_.append(buf, static_cast<std::size_t>(n));
    }
  }

  /// Writes `line` and a newline to its standard input; false when it
  /// cannot (the process is gone).
  bool write_line(const std::string& line) {
    static const bool no_sigpipe = (::signal(SIGPIPE, SIG_IGN), true); // a dead child: false
    (void)no_sigpipe;
    auto text = line + "\n";
    return stdin_ >= 0
           && ::write(stdin_, text.data(), text.size()) == static_cast<ssize_t>(text.size());
  }

  /// Closes its standard input (a node shuts down) and waits at most
  /// `limit` for it to exit; its exit code, or -1 (then it is killed).
  int stop(std::chrono::milliseconds limit) {
    if (pid_ <= 0)
      return -1;
    close_fd(stdin_);
    auto deadline = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < deadline) {
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        close_fd(stdout_);
        return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds{2});
    }
    kill(SIGKILL);
    return -1;
  }

  /// Sends `sig`. SIGSTOP returns once every thread of it has stopped: the
  /// signal alone only asks, and a thread already on a core runs on until
  /// the kernel gets to it. SIGKILL also reaps it and closes its pipes.
  void kill(int sig) {
    if (sig == SIGSTOP && pid_ > 0) {
      ::kill(pid_, SIGSTOP);
      int status = 0;
      pid_t rc;
      while ((rc = ::waitpid(pid_, &status, WUNTRACED)) < 0 && errno == EINTR) {
      }
      if (rc == pid_ && !WIFSTOPPED(status)) // it had exited: nothing left to stop
        forget();
      return;
    }
    if (sig != SIGKILL) {
      if (pid_ > 0)
        ::kill(pid_, sig);
      return;
    }
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      int status = 0;
      ::waitpid(pid_, &status, 0);
    }
    forget();
  }

  [[nodiscard]] pid_t pid() const { return pid_; }
  /// Every line wait_line() has read.
  [[nodiscard]] const std::string& output() const { return output_; }

private:
  /// After it was reaped: no process, no pipes.
  void forget() {
    pid_ = -1;
    close_fd(stdin_);
    close_fd(stdout_);
  }

  static void close_fd(int& fd) {
    if (fd >= 0)
      ::close(fd);
    fd = -1;
  }

  pid_t pid_ = -1;
  int stdin_ = -1;
  int stdout_ = -1;
  std::string buffer_, output_;
};

} // namespace hangar
