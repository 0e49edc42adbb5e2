#pragma once

// What the cluster benches share (cluster_bench.cpp, replication_bench.cpp):
// node processes of this binary, free ports on loopback, the options a bench
// node runs with, and a driver that keeps commands in flight.

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "account.hpp"
#include "bench.hpp"
#include "cairn/runtime/cluster.hpp"
#include "cairn/runtime/runtime.hpp"

extern char** environ;

namespace cairn::bench {

/// A TCP port on 127.0.0.1 that was free a moment ago.
std::uint16_t free_port();

/// A node process: this binary re-executed as `cluster-node`. Its standard
/// input is held open (closing it stops the node); its output is read for
/// "ready".
class child_node {
public:
  child_node() = default;
  child_node(const child_node&) = delete;
  child_node& operator=(const child_node&) = delete;
  ~child_node() { stop(); }

  void start(const std::vector<std::string>& args) {
    int in[2], out[2];
    if (::pipe(in) != 0)
      throw std::runtime_error("pipe failed");
    if (::pipe(out) != 0) {
      ::close(in[0]);
      ::close(in[1]);
      throw std::runtime_error("pipe failed");
    }
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, in[0], 0);
    posix_spawn_file_actions_adddup2(&fa, out[1], 1);
    posix_spawn_file_actions_addclose(&fa, in[1]);
    posix_spawn_file_actions_addclose(&fa, out[0]);
    std::string self = "/proc/self/exe";
    std::vector<char*> argv{self.data()};
    std::vector<std::string> copy = args;
    for (auto& a : copy)
      argv.push_back(a.data());
    argv.push_back(nullptr);
    int rc = posix_spawn(&pid_, self.c_str(), &fa, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&fa);
    ::close(in[0]);
    ::close(out[1]);
    stdin_ = in[1];
    stdout_ = out[0];
    ::fcntl(stdin_, F_SETFD, FD_CLOEXEC);
    ::fcntl(stdout_, F_SETFD, FD_CLOEXEC);
    if (rc != 0) {
      pid_ = -1;
      throw std::runtime_error("posix_spawn failed");
    }
  }

  /// Waits for its "ready" line; throws with what it printed instead.
  void wait_ready(std::chrono::seconds limit) {
    std::string text;
    auto deadline = clock::now() + limit;
    while (clock::now() < deadline) {
      pollfd p{stdout_, POLLIN, 0};
      if (::poll(&p, 1, 100) <= 0)
        continue;
      char buf[1024];
      auto n = ::read(stdout_, buf, sizeof buf);
      if (n <= 0)
        break;
      text.append(buf, static_cast<std::size_t>(n));
      if (text.find("ready\n") != std::string::npos)
        return;
    }
    throw std::runtime_error("node process not ready: " + text);
  }

  /// Closes its standard input and waits up to 15 s for it to exit, then kills it.
  void stop() {
    if (stdin_ >= 0)
      ::close(stdin_);
    stdin_ = -1;
    if (pid_ > 0) {
      int status = 0;
      auto deadline = clock::now() + std::chrono::seconds{15};
      while (::waitpid(pid_, &status, WNOHANG) == 0) {
        if (clock::now() > deadline) {
          ::kill(pid_, SIGKILL);
          ::waitpid(pid_, &status, 0);
          break;
        }
        ::usleep(5000);
      }
      pid_ = -1;
    }
    if (stdout_ >= 0)
      ::close(stdout_);
    stdout_ = -1;
  }

  [[nodiscard]] pid_t pid() const { return pid_; }

private:
  pid_t pid_ = -1;
  int stdin_ = -1, stdout_ = -1;
};

/// "A=127.0.0.1:7101,B=127.0.0.1:7102"
std::string nodes_text(const std::vector<cluster_node>& nodes);
std::vector<cluster_node> parse_nodes(const std::string& text);
/// "1,64,1024"
std::vector<std::size_t> parse_list(const std::string& text);

/// The options every node of a bench cluster runs with: --durability,
/// --threads and --middleman-workers from `a`; with --standby OWNER=STANDBY,
/// STANDBY owns no shards and follows OWNER, under --replication async|sync.
runtime_options node_options(const args& a, const std::string& dir,
                             const std::vector<cluster_node>& nodes, const std::string& me);

/// CPU time (user + system, every thread) process `pid` has used so far, in
/// µs; 0 when /proc does not say.
double cpu_us(pid_t pid);
double cpu_us(const std::vector<pid_t>& pids);

/// Whether every peer of `rt`'s cluster is up (false without peers).
bool peers_up(runtime& rt);

struct figures {
  std::size_t commands = 0;
  double commands_per_s = 0;
  double p50_us = 0, p95_us = 0, p99_us = 0;
  double cpu_us_per_command = 0; ///< Of every node process.
  std::uint64_t errors = 0;
  std::string first_error;
};

/// `f` as the JSON members every cluster case ends with, from "commands" to
/// "errors", without braces.
std::string figures_json(const figures& f);

/// Sends `cmd` to random ids of `ids` for `seconds`, keeping `window`
/// outstanding, then waits for the rest; each command's latency, and the
/// CPU time the processes `pids` used per command.
figures drive(runtime& rt, const std::vector<std::string>& ids, std::size_t window, double seconds,
              const bank::account::command& cmd, std::uint64_t seed,
              const std::vector<pid_t>& pids = {});

} // namespace cairn::bench
