#include "hangar/transport.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace hangar {

namespace {

using steady = std::chrono::steady_clock;

std::int64_t ms_since(steady::time_point t0) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(steady::now() - t0).count();
}

call_outcome failed(std::string error, std::string type, steady::time_point t0) {
  call_outcome out;
  out.error = std::move(error);
  out.error_type = std::move(type);
  out.duration_ms = ms_since(t0);
  return out;
}

} // namespace

// -- simulated -----------------------------------------------------------------

simulated_transport::simulated_transport(simulated_options o)
    : opts_(std::move(o)), rng_(opts_.seed) {}

start_outcome simulated_transport::start() {
  std::lock_guard lock{mutex_};
  start_outcome out;
  auto t0 = steady::now();
  if (opts_.latency.count() > 0)
    std::this_thread::sleep_for(opts_.latency);
  ++calls_;
  for (const auto& o : opts_.outages)
    if (calls_ - 1 >= o.from_call && calls_ - 1 < o.to_call) {
      out.error = "simulated outage: the provider does not start";
      out.duration_ms = ms_since(t0);
      return out;
    }
  running_ = true;
  out.ok = true;
  out.tools_count = opts_.tools;
  out.duration_ms = ms_since(t0);
  return out;
}

call_outcome simulated_transport::call(std::uint64_t bytes) {
  std::lock_guard lock{mutex_};
  auto t0 = steady::now();
  if (opts_.latency.count() > 0)
    std::this_thread::sleep_for(opts_.latency);
  auto n = calls_++;
  if (!running_)
    return failed("the provider is not running", "transport", t0);
  for (const auto& o : opts_.outages)
    if (n >= o.from_call && n < o.to_call)
      return failed("simulated outage", "transport", t0);
  std::uniform_real_distribution<double> u{0, 1};
  auto draw = u(rng_);
  if (draw < opts_.failure_rate)
    return failed("simulated transport failure", "transport", t0);
  if (draw < opts_.failure_rate + opts_.error_rate)
    return failed("simulated tool error", "application", t0);
  call_outcome out;
  out.ok = true;
  out.result_bytes = bytes;
  out.duration_ms = ms_since(t0);
  return out;
}

call_outcome simulated_transport::invoke(const std::string& tool, const std::string& args,
                                         std::chrono::milliseconds) {
  return call(tool.size() + args.size() + 16);
}

call_outcome simulated_transport::probe() { return call(0); }

void simulated_transport::stop() {
  std::lock_guard lock{mutex_};
  running_ = false;
}

bool simulated_transport::running() const {
  std::lock_guard lock{mutex_};
  return running_;
}

void simulated_transport::fail_next(std::uint64_t calls) {
  std::lock_guard lock{mutex_};
  opts_.outages.push_back({calls_, calls_ + calls});
}

// -- subprocess ----------------------------------------------------------------

subprocess_transport::subprocess_transport(std::vector<std::string> argv,
                                           std::function<void(int status)> on_exit)
    : argv_(std::move(argv)), on_exit_(std::move(on_exit)) {}

subprocess_transport::~subprocess_transport() { stop(); }

start_outcome subprocess_transport::start() {
  auto t0 = steady::now();
  start_outcome out;
  if (argv_.empty()) {
    out.error = "no command configured";
    return out;
  }
  {
    std::lock_guard lock{mutex_};
    if (pid_ > 0) {
      out.error = "already running";
      return out;
    }
  }
  if (watcher_.joinable())
    watcher_.join(); // the previous child's watcher has finished
  // Sockets, not pipes: send() with MSG_NOSIGNAL survives a dead child
  // without a SIGPIPE for the whole process.
  int in[2], outp[2], exec_err[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, in) != 0) {
    out.error = std::string{"socketpair: "} + std::strerror(errno);
    return out;
  }
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, outp) != 0) {
    out.error = std::string{"socketpair: "} + std::strerror(errno);
    ::close(in[0]);
    ::close(in[1]);
    return out;
  }
  if (::pipe2(exec_err, O_CLOEXEC) != 0) {
    out.error = std::string{"pipe2: "} + std::strerror(errno);
    for (int fd : {in[0], in[1], outp[0], outp[1]})
      ::close(fd);
    return out;
  }
  std::vector<char*> args;
  for (auto& a : argv_)
    args.push_back(a.data());
  args.push_back(nullptr);
  pid_t child = ::fork();
  if (child == 0) {
    ::dup2(in[1], STDIN_FILENO);
    ::dup2(outp[1], STDOUT_FILENO);
    ::execvp(args[0], args.data());
    int e = errno;
    (void)!::write(exec_err[1], &e, sizeof e);
    ::_exit(127);
  }
  ::close(in[1]);
  ::close(outp[1]);
  ::close(exec_err[1]);
  if (child < 0) {
    out.error = std::string{"fork: "} + std::strerror(errno);
    for (int fd : {in[0], outp[0], exec_err[0]})
      ::close(fd);
    return out;
  }
  int exec_errno = 0;
  bool exec_failed = ::read(exec_err[0], &exec_errno, sizeof exec_errno) == sizeof exec_errno;
  ::close(exec_err[0]);
  if (exec_failed) {
    ::waitpid(child, nullptr, 0);
    ::close(in[0]);
    ::close(outp[0]);
    out.error = "cannot run " + argv_[0] + ": " + std::strerror(exec_errno);
    out.duration_ms = ms_since(t0);
    return out;
  }
  {
    std::lock_guard lock{mutex_};
    pid_ = child;
    to_child_ = in[0];
    from_child_ = outp[0];
    stopping_ = false;
    pending_.clear();
  }
  watcher_ = std::thread([this, child] { watch(child); });
  auto hello = round_trip("tools", std::chrono::seconds{5});
  out.duration_ms = ms_since(t0);
  if (!hello.ok) {
    out.error = "the provider did not answer: " + hello.error;
    stop();
    return out;
  }
  out.ok = true;
  out.tools_count = static_cast<std::uint32_t>(hello.result_bytes);
  return out;
}

call_outcome subprocess_transport::round_trip(const std::string& line,
                                              std::chrono::milliseconds timeout) {
  auto t0 = steady::now();
  std::lock_guard lock{mutex_};
  if (pid_ <= 0)
    return failed("the provider process is not running", "transport", t0);
  // Replies carry the request's id: a late answer to a call that timed out
  // is recognised and dropped instead of answering the next call.
  auto id = std::to_string(++next_id_);
  auto msg = id + " " + line + "\n";
  for (std::size_t sent = 0; sent < msg.size();) {
    ssize_t n = ::send(to_child_, msg.data() + sent, msg.size() - sent, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      return failed(std::string{"write to the provider: "} + std::strerror(errno), "transport", t0);
    sent += static_cast<std::size_t>(n);
  }
  auto deadline = t0 + timeout;
  for (;;) {
    if (auto nl = pending_.find('\n'); nl != std::string::npos) {
      auto reply = pending_.substr(0, nl);
      pending_.erase(0, nl + 1);
      if (reply.compare(0, id.size() + 1, id + " ") != 0)
        continue; // an answer to an earlier call
      reply.erase(0, id.size() + 1);
      call_outcome out;
      out.duration_ms = ms_since(t0);
      if (reply.rfind("error", 0) == 0) {
        out.error = reply.size() > 6 ? reply.substr(6) : "the tool failed";
        out.error_type = "application";
        return out;
      }
      out.ok = true;
      auto payload = reply.rfind("ok ", 0) == 0 ? reply.substr(3) : reply;
      // "tools" answers a count; every other call reports the payload size.
      out.result_bytes = line == "tools" ? std::strtoull(payload.c_str(), nullptr, 10)
                                         : payload.size();
      return out;
    }
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - steady::now());
    if (left.count() <= 0)
      return failed("no answer within " + std::to_string(timeout.count()) + " ms", "timeout", t0);
    pollfd p{from_child_, POLLIN, 0};
    int r = ::poll(&p, 1, static_cast<int>(left.count()));
    if (r < 0 && errno == EINTR)
      continue;
    if (r <= 0)
      continue;
    char buf[4096];
    ssize_t n = ::recv(from_child_, buf, sizeof buf, 0);
    if (n <= 0)
      return failed("the provider closed its output", "transport", t0);
    pending_.append(buf, static_cast<std::size_t>(n));
  }
}

call_outcome subprocess_transport::invoke(const std::string& tool, const std::string& args,
                                          std::chrono::milliseconds timeout) {
  return round_trip(tool + " " + args, timeout);
}

call_outcome subprocess_transport::probe() { return round_trip("ping", std::chrono::seconds{5}); }

void subprocess_transport::watch(pid_t child) {
  int status = 0;
  while (::waitpid(child, &status, 0) < 0 && errno == EINTR) {
  }
  bool report = false;
  {
    std::lock_guard lock{mutex_};
    report = !stopping_;
    pid_ = -1;
    ::close(to_child_);
    ::close(from_child_);
    to_child_ = from_child_ = -1;
  }
  if (report && on_exit_)
    on_exit_(status);
}

void subprocess_transport::stop() {
  {
    std::lock_guard lock{mutex_};
    if (pid_ > 0) {
      stopping_ = true;
      ::kill(pid_, SIGKILL);
    }
  }
  if (watcher_.joinable() && watcher_.get_id() != std::this_thread::get_id())
    watcher_.join();
}

bool subprocess_transport::running() const {
  std::lock_guard lock{mutex_};
  return pid_ > 0;
}

pid_t subprocess_transport::pid() const {
  std::lock_guard lock{mutex_};
  return pid_;
}

} // namespace hangar
