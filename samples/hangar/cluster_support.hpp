#pragma once

// What `hangar demo --cluster N` (cluster_demo.cpp) and its standby variant
// (standby_demo.cpp) share: node child processes, ports, the cluster's setup
// (cluster_support.cpp), the driver's tallies and a look into a store.
// Private to the sample.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <iosfwd>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <memory>
#include <ostream>

#include "cairn/persistence/event_store.hpp"
#include "cairn/runtime/cluster.hpp"
#include "cairn/runtime/runtime.hpp"
#include "hangar/demo.hpp"
#include "hangar/node_lines.hpp"
#include "hangar/ports.hpp"
#include "hangar/service.hpp"

extern char** environ;

namespace hangar::detail {

using namespace std::chrono_literals;
using clock_type = std::chrono::steady_clock;

/// A node as a child process: its standard input held open (closing it stops
/// the node), its standard output read for "ready", its log in a file.
class child_node {
public:
  child_node() = default;
  child_node(const child_node&) = delete;
  child_node& operator=(const child_node&) = delete;
  ~child_node() { kill_now(); }

  cairn::result<void> start(const std::string& path, const std::vector<std::string>& args,
                            const std::string& log) {
    int in[2], out[2];
    if (::pipe(in) != 0)
      return cairn::fail(cairn::errc::unavailable, "pipe failed");
    if (::pipe(out) != 0) {
      ::close(in[0]);
      ::close(in[1]);
      return cairn::fail(cairn::errc::unavailable, "pipe failed");
    }
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, in[0], 0);
    posix_spawn_file_actions_adddup2(&fa, out[1], 1);
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
      return cairn::fail(cairn::errc::unavailable, "cannot start " + path);
    }
    ::fcntl(in[1], F_SETFD, FD_CLOEXEC);
    ::fcntl(out[0], F_SETFD, FD_CLOEXEC);
    stdin_ = in[1];
    stdout_ = out[0];
    return {};
  }

  /// Waits at most `limit` for a line starting with `prefix`; "" if none came.
  std::string wait_line(const std::string& prefix, std::chrono::milliseconds limit) {
    auto deadline = clock_type::now() + limit;
    for (;;) {
      for (auto nl = buffer_.find('\n'); nl != std::string::npos; nl = buffer_.find('\n')) {
        auto line = buffer_.substr(0, nl);
        buffer_.erase(0, nl + 1);
        if (line.compare(0, prefix.size(), prefix) == 0)
          return line;
      }
      auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - clock_type::now());
      if (left.count() <= 0 || stdout_ < 0)
        return {};
      pollfd p{stdout_, POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(left.count())) <= 0)
        continue;
      char buf[1024];
      auto n = ::read(stdout_, buf, sizeof buf);
      if (n <= 0) {
        ::close(stdout_);
        stdout_ = -1;
        continue;
      }
      buffer_.append(buf, static_cast<std::size_t>(n));
    }
  }

  /// Closes its standard input and waits at most `limit`; its exit code, or
  /// -1 (then it is killed).
  int stop(std::chrono::milliseconds limit) {
    if (pid_ <= 0)
      return -1;
    close_fd(stdin_);
    auto deadline = clock_type::now() + limit;
    while (clock_type::now() < deadline) {
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        close_fd(stdout_);
        return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
      }
      std::this_thread::sleep_for(5ms);
    }
    kill_now();
    return -1;
  }

  /// SIGKILL, and reaps it.
  void kill_now() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      int status = 0;
      ::waitpid(pid_, &status, 0);
      pid_ = -1;
    }
    close_fd(stdin_);
    close_fd(stdout_);
    buffer_.clear();
  }

  /// Writes `line` and a newline to its standard input; false if it is gone.
  bool write_line(const std::string& line) {
    if (stdin_ < 0)
      return false;
    auto text = line + "\n";
    return ::write(stdin_, text.data(), text.size()) == static_cast<ssize_t>(text.size());
  }

  [[nodiscard]] pid_t pid() const { return pid_; }

private:
  static void close_fd(int& fd) {
    if (fd >= 0)
      ::close(fd);
    fd = -1;
  }
  pid_t pid_ = -1;
  int stdin_ = -1;
  int stdout_ = -1;
  std::string buffer_;
};

/// What A's runtime says of peer `id` ("up", "down", ...).
inline std::string peer_state(cairn::runtime& rt, const std::string& id) {
  auto s = rt.cluster();
  if (!s)
    return "?";
  for (const auto& p : s->peers)
    if (p.id == id)
      return p.state;
  return "?";
}

inline bool wait_up(cairn::runtime& rt, const std::vector<std::string>& ids,
                    std::chrono::milliseconds limit) {
  auto deadline = clock_type::now() + limit;
  for (;;) {
    bool all = true;
    for (const auto& id : ids)
      all = all && peer_state(rt, id) == "up";
    if (all)
      return true;
    if (clock_type::now() >= deadline)
      return false;
    std::this_thread::sleep_for(20ms);
  }
}

/// One provider's tally, as the driver saw it.
struct tally {
  std::string owner;
  std::uint32_t shard = 0;
  std::uint64_t acknowledged = 0;
  std::uint64_t unavailable = 0;
  std::uint64_t other_errors = 0;
  std::vector<std::string> correlations; ///< Of the acknowledged invocations.
  bool error_printed = false;            ///< During the current outage.
};

/// The correlation ids of provider `id`'s events in the store at `dir`.
inline cairn::result<std::set<std::string>> stored_correlations(const std::string& dir,
                                                                const std::string& id) {
  cairn::persistence::store_options so;
  so.read_only = true;
  auto store = cairn::persistence::open_store(dir, so);
  if (!store)
    return tl::unexpected(store.error());
  std::set<std::string> out;
  std::uint64_t from = 1;
  for (;;) {
    auto events = (*store)->read_stream("provider-" + id, from, 4096);
    if (!events)
      return tl::unexpected(events.error());
    if (events->empty())
      return out;
    for (const auto& e : *events)
      out.insert(e.meta.correlation_id);
    from = events->back().version + 1;
  }
}

/// This node's replication status as `hangar node` answers `replication`.
inline std::string replication_line(cairn::runtime& rt) {
  auto s = rt.cluster();
  return hangar::replication_line(s && !s->replication.empty() ? &s->replication.front() : nullptr);
}

/// Empties the demo's data directory `dir` and creates it again.
[[nodiscard]] cairn::result<void> fresh_data_dir(const std::string& dir);

/// Node `id` on 127.0.0.1 with a free gateway port, appended to `to`, and a
/// free metrics port, its address stored as `metrics[id]`.
[[nodiscard]] cairn::result<void> add_local_node(std::vector<cairn::cluster_node>& to,
                                                 std::map<std::string, std::string>& metrics,
                                                 const std::string& id);

/// Validates `cluster` and writes it as `data_dir`/cluster.conf; the file's path.
[[nodiscard]] cairn::result<std::string> write_cluster_config(const cairn::cluster_options& cluster,
                                                              const std::string& data_dir);

/// A demo's nodes: every node but A as a child process (`hangar node`, its
/// log in the data directory), A as the service in this process. Destroying
/// it kills the children still running.
class demo_nodes {
public:
  /// `config` is the cluster config file, `metrics` each node's metrics address.
  demo_nodes(const cluster_demo_options& opts, std::string config,
             std::map<std::string, std::string> metrics);

  /// Node `id`'s data directory.
  [[nodiscard]] std::string dir(const std::string& id) const;

  /// Starts node `id` as a child process (again, after a kill) and waits at
  /// most 20 s for its "ready".
  [[nodiscard]] cairn::result<void> spawn(const std::string& id);

  /// Spawns every node of `cluster` but A, then starts A's service here and
  /// waits at most 20 s for every peer to be up; A's service.
  [[nodiscard]] cairn::result<std::unique_ptr<service>>
  start(const cairn::cluster_options& cluster);

  /// Seconds since A's service started (the demo's t=0).
  [[nodiscard]] double elapsed() const {
    return std::chrono::duration<double>(clock_type::now() - started_at_).count();
  }

  /// Child node `id`; nullptr if it was never spawned.
  [[nodiscard]] child_node* child(const std::string& id);

  /// Stops every child node (at most 20 s each), printing the exit codes that are not 0.
  void stop_all(std::ostream& out);

private:
  const cluster_demo_options& opts_;
  std::string config_;
  std::map<std::string, std::string> metrics_;
  std::map<std::string, std::unique_ptr<child_node>> children_;
  clock_type::time_point started_at_;
};

/// Invokes provider `id`'s tool once (call number `round`) and counts the
/// outcome in `ta`: an acknowledged one with its correlation id, a failure as
/// unavailable or other; the failure's error.
[[nodiscard]] cairn::result<void> invoke_counted(service& svc, const std::string& id,
                                                 std::uint64_t round, tally& ta);

/// Three providers per owner of `cluster` (of which there are `owners`),
/// picked by the shard map so every owner has some (the names are the
/// single-node demo's families), registered and started on `svc`; their
/// tallies, owner and shard filled in.
[[nodiscard]] cairn::result<std::map<std::string, tally>>
start_providers(service& svc, const cairn::cluster_options& cluster, int owners);

/// `hangar demo --cluster N --standby` (standby_demo.cpp).
[[nodiscard]] cairn::result<cluster_demo_report> run_standby_demo(const cluster_demo_options& opts,
                                                                  std::ostream& out);

} // namespace hangar::detail
