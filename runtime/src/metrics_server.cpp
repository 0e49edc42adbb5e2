#include "metrics_server.hpp"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <optional>
#include <system_error>

#include <httplib.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

namespace cairn::detail {

using clock = std::chrono::steady_clock;

result<listen_address> parse_listen_address(const std::string& address) {
  auto bad = [&](const char* why) {
    return fail(errc::invalid_argument,
                std::string{"metrics_address must be host:port ("} + why + ")", address);
  };
  auto colon = address.rfind(':');
  if (colon == std::string::npos)
    return bad("no port");
  listen_address out;
  out.host = address.substr(0, colon);
  auto port = address.substr(colon + 1);
  if (out.host.size() >= 2 && out.host.front() == '[' && out.host.back() == ']')
    out.host = out.host.substr(1, out.host.size() - 2); // [::1]:9464
  if (out.host.empty())
    return bad("no host");
  if (port.empty() || port.size() > 5 || port.find_first_not_of("0123456789") != std::string::npos
      || std::stoi(port) > 65535)
    return bad("the port is not a number from 0 to 65535");
  out.port = std::stoi(port);
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  if (int rc = ::getaddrinfo(out.host.c_str(), nullptr, &hints, &found); rc != 0)
    return fail(errc::invalid_argument,
                "metrics_address: cannot resolve host: " + std::string{::gai_strerror(rc)},
                address);
  ::freeaddrinfo(found);
  return out;
}

namespace {

/// Waits until `fd` has `events` or `deadline` passes; false on the deadline
/// or once `stop_fd` is readable (the server is stopping).
bool wait_for(int fd, short events, int stop_fd, clock::time_point deadline) {
  for (;;) {
    auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - clock::now()).count();
    if (left <= 0)
      return false;
    pollfd p[2] = {{fd, events, 0}, {stop_fd, POLLIN, 0}};
    int rc = ::poll(p, 2, static_cast<int>(std::min<std::int64_t>(left, 60'000)));
    if (rc < 0 && errno != EINTR)
      return false;
    if (rc <= 0)
      continue; // EINTR, or a slice of a long wait
    if (p[1].revents != 0)
      return false;
    if (p[0].revents != 0)
      return true; // ready, or an error/hangup that the next call reports
  }
}

/// httplib's view of one connection: reads stop at the request deadline and
/// the header budget, writes at the response deadline, both at once on stop.
/// Reads are buffered, since httplib reads the header lines byte by byte.
class bounded_stream final : public httplib::Stream {
public:
  bounded_stream(int fd, int stop_fd, clock::time_point read_deadline)
      : fd_(fd), stop_fd_(stop_fd), read_deadline_(read_deadline) {}

  bool is_readable() const override {
    return pos_ < len_ || wait_for(fd_, POLLIN, stop_fd_, read_deadline_);
  }

  bool is_writable() const override {
    if (!write_deadline_)
      write_deadline_ = clock::now() + metrics_server::response_timeout;
    return wait_for(fd_, POLLOUT, stop_fd_, *write_deadline_);
  }

  ssize_t read(char* ptr, size_t size) override {
    if (pos_ == len_) {
      if (read_total_ >= metrics_server::max_request_bytes)
        return -1; // the request is larger than anything we serve
      auto want = std::min(sizeof buf_, metrics_server::max_request_bytes - read_total_);
      ssize_t n = -1;
      do {
        if (!wait_for(fd_, POLLIN, stop_fd_, read_deadline_))
          return -1;
        n = ::recv(fd_, buf_, want, MSG_DONTWAIT);
      } while (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR));
      if (n <= 0)
        return n == 0 ? 0 : -1;
      read_total_ += static_cast<std::size_t>(n);
      pos_ = 0;
      len_ = static_cast<std::size_t>(n);
    }
    auto n = std::min(size, len_ - pos_);
    std::memcpy(ptr, buf_ + pos_, n);
    pos_ += n;
    return static_cast<ssize_t>(n);
  }

  ssize_t write(const char* ptr, size_t size) override {
    if (!is_writable())
      return -1;
    auto n = ::send(fd_, ptr, size, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
      return 0; // httplib calls again; is_writable waits
    return n;
  }

  void get_remote_ip_and_port(std::string& ip, int& port) const override {
    address_of(::getpeername, ip, port);
  }
  void get_local_ip_and_port(std::string& ip, int& port) const override {
    address_of(::getsockname, ip, port);
  }
  socket_t socket() const override { return fd_; }

private:
  template <class F> void address_of(F get, std::string& ip, int& port) const {
    sockaddr_storage addr{};
    socklen_t len = sizeof addr;
    if (get(fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0)
      return;
    char host[NI_MAXHOST];
    char serv[NI_MAXSERV];
    if (::getnameinfo(reinterpret_cast<sockaddr*>(&addr), len, host, sizeof host, serv, sizeof serv,
                      NI_NUMERICHOST | NI_NUMERICSERV)
        == 0) {
      ip = host;
      port = std::atoi(serv);
    }
  }

  int fd_;
  int stop_fd_;
  clock::time_point read_deadline_;
  mutable std::optional<clock::time_point> write_deadline_;
  char buf_[4096];
  std::size_t pos_ = 0;
  std::size_t len_ = 0;
  std::size_t read_total_ = 0;
};

/// The status a request is refused with, 0 if it is served. Decided on the
/// request line and headers alone, so no body is ever read.
int refusal(const httplib::Request& req, bool admin) {
  bool action = admin
                && (req.path == "/cluster/promote" || req.path == "/cluster/replication/async"
                    || req.path == "/cluster/replication/sync");
  if (!action && req.path != "/metrics" && req.path != "/health" && req.path != "/cluster")
    return 404;
  if (action ? req.method != "POST" : req.method != "GET" && req.method != "HEAD")
    return 405;
  auto length = req.get_header_value("Content-Length");
  if (req.has_header("Transfer-Encoding") || (!length.empty() && length != "0"))
    return 413;
  return 0;
}

void refuse(httplib::Response& res, int status) {
  res.status = status;
  if (status == 405)
    res.set_header("Allow", "GET, HEAD");
  const char* text = status == 404   ? "not found: only GET /metrics, /health and /cluster\n"
                     : status == 405 ? "method not allowed: only GET\n"
                                     : "request bodies are not accepted\n";
  res.set_content(text, "text/plain; charset=utf-8");
}

} // namespace

/// httplib parses and routes; the listening and the limits are ours, since
/// httplib 0.11's own loop queues connections without bound and times out
/// each read separately.
class metrics_http final : public httplib::Server {
public:
  /// One request, answered with "Connection: close".
  void serve(httplib::Stream& stream) {
    bool closed = false;
    (void)process_request(stream, true, closed, nullptr); // false: nothing more to do
  }
};

metrics_server::metrics_server() = default;

result<std::unique_ptr<metrics_server>>
metrics_server::start(const std::string& address, std::function<std::string()> render,
                      std::function<std::optional<cluster_status>()> cluster,
                      std::function<result<std::string>(const std::string&)> admin) {
  auto parsed = parse_listen_address(address);
  if (!parsed)
    return tl::unexpected(parsed.error());
  std::unique_ptr<metrics_server> self{new metrics_server};
  self->http_ = std::make_unique<metrics_http>();
  auto& svr = *self->http_;
  svr.set_payload_max_length(max_payload_bytes);
  bool with_admin = static_cast<bool>(admin);
  svr.set_pre_routing_handler([with_admin](const httplib::Request& req, httplib::Response& res) {
    int status = refusal(req, with_admin);
    if (status == 0)
      return httplib::Server::HandlerResponse::Unhandled;
    refuse(res, status);
    return httplib::Server::HandlerResponse::Handled;
  });
  // "Expect: 100-continue": refuse before the client sends the body.
  svr.set_expect_100_continue_handler(
    [with_admin](const httplib::Request& req, httplib::Response& res) {
      int status = refusal(req, with_admin);
      if (status == 0)
        return 100;
      refuse(res, status);
      return status;
    });
  svr.set_exception_handler(
    [](const httplib::Request&, httplib::Response& res, std::exception_ptr) {
      res.status = 500;
      res.set_content("internal error\n", "text/plain; charset=utf-8");
    });
  svr.Get("/metrics",
          [render = std::move(render)](const httplib::Request&, httplib::Response& res) {
            res.set_content(render(), "text/plain; version=0.0.4; charset=utf-8");
          });
  svr.Get("/cluster",
          [cluster = std::move(cluster)](const httplib::Request&, httplib::Response& res) {
            auto status = cluster ? cluster() : std::nullopt;
            if (!status) {
              res.status = 404;
              res.set_content("not clustered\n", "text/plain; charset=utf-8");
              return;
            }
            res.set_content(to_json(*status) + "\n", "application/json");
          });
  if (with_admin) {
    auto act = [admin = std::move(admin)](const std::string& action, httplib::Response& res) {
      auto r = admin(action);
      res.status = r ? 200 : 409;
      res.set_content((r ? *r : r.error().to_string()) + "\n", "text/plain; charset=utf-8");
    };
    svr.Post("/cluster/promote",
             [act](const httplib::Request&, httplib::Response& res) { act("promote", res); });
    svr.Post("/cluster/replication/async",
             [act](const httplib::Request&, httplib::Response& res) { act("async", res); });
    svr.Post("/cluster/replication/sync",
             [act](const httplib::Request&, httplib::Response& res) { act("sync", res); });
  }
  // Liveness: answers while the listener and a worker run; asks no actor.
  svr.Get("/health", [](const httplib::Request&, httplib::Response& res) {
    res.set_content("ok\n", "text/plain; charset=utf-8");
  });

  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* found = nullptr;
  auto port_text = std::to_string(parsed->port);
  if (int rc = ::getaddrinfo(parsed->host.c_str(), port_text.c_str(), &hints, &found); rc != 0)
    return fail(errc::invalid_argument,
                "metrics_address: cannot resolve host: " + std::string{::gai_strerror(rc)},
                address);
  int bind_errno = 0;
  for (auto* ai = found; ai != nullptr && self->listen_fd_ < 0; ai = ai->ai_next) {
    int fd = ::socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0) {
      bind_errno = errno;
      continue;
    }
    // Not SO_REUSEPORT: a second server must fail on a port in use.
    int yes = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
    if (::bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && ::listen(fd, 16) == 0) {
      self->listen_fd_ = fd;
    } else {
      bind_errno = errno;
      ::close(fd);
    }
  }
  ::freeaddrinfo(found);
  if (self->listen_fd_ < 0)
    return fail(errc::unavailable,
                std::string{"cannot listen for metrics (address in use or not permitted): "}
                  + std::strerror(bind_errno),
                address);
  sockaddr_storage bound{};
  socklen_t bound_len = sizeof bound;
  int port = parsed->port;
  if (::getsockname(self->listen_fd_, reinterpret_cast<sockaddr*>(&bound), &bound_len) == 0)
    port = ntohs(bound.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port
                                             : reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
  self->endpoint_ = (parsed->host.find(':') != std::string::npos ? "[" + parsed->host + "]"
                                                                 : parsed->host)
                    + ":" + std::to_string(port);
  self->stop_fd_ = ::eventfd(0, EFD_CLOEXEC);
  if (self->stop_fd_ < 0)
    return fail(errc::unavailable,
                std::string{"cannot start the metrics server: eventfd: "} + std::strerror(errno),
                address);
  try {
    for (std::size_t i = 0; i < max_connections; ++i)
      self->workers_.emplace_back([s = self.get()] { s->work_loop(); });
    self->listener_ = std::thread{[s = self.get()] { s->listen_loop(); }};
  } catch (const std::system_error& e) {
    return fail(errc::unavailable,
                std::string{"cannot start the metrics server's threads: "} + e.what(), address);
  }
  return self;
}

metrics_server::~metrics_server() {
  if (stop_fd_ >= 0) {
    std::uint64_t one = 1;
    (void)!::write(stop_fd_, &one, sizeof one); // an eventfd write of 1 cannot fail here
  }
  {
    std::lock_guard lock{mutex_};
    stopping_ = true;
  }
  ready_.notify_all();
  if (listener_.joinable())
    listener_.join();
  for (auto& w : workers_)
    w.join();
  for (int fd : accepted_)
    ::close(fd);
  if (listen_fd_ >= 0)
    ::close(listen_fd_);
  if (stop_fd_ >= 0)
    ::close(stop_fd_);
}

void metrics_server::listen_loop() {
  static constexpr char busy[] = "HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\n"
                                 "Content-Length: 0\r\n\r\n";
  for (;;) {
    pollfd p[2] = {{listen_fd_, POLLIN, 0}, {stop_fd_, POLLIN, 0}};
    int rc = ::poll(p, 2, -1);
    if (rc < 0 && errno != EINTR)
      return;
    if (rc <= 0)
      continue;
    if (p[1].revents != 0)
      return;
    int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
        // Out of descriptors or memory: back off instead of spinning.
        pollfd stop{stop_fd_, POLLIN, 0};
        ::poll(&stop, 1, 50);
      }
      continue; // and EAGAIN, ECONNABORTED, EINTR, ...
    }
    bool taken = false;
    {
      std::lock_guard lock{mutex_};
      if (!stopping_ && open_ < max_connections) {
        ++open_;
        accepted_.push_back(fd);
        taken = true;
      }
    }
    if (taken) {
      ready_.notify_one();
      continue;
    }
    // Full: tell the client (best effort, never blocks) and close now.
    (void)!::send(fd, busy, sizeof busy - 1, MSG_NOSIGNAL | MSG_DONTWAIT);
    ::close(fd);
  }
}

void metrics_server::work_loop() {
  for (;;) {
    int fd = -1;
    {
      std::unique_lock lock{mutex_};
      ready_.wait(lock, [&] { return stopping_ || !accepted_.empty(); });
      if (stopping_)
        return; // the destructor closes what is still queued
      fd = accepted_.front();
      accepted_.pop_front();
    }
    serve(fd);
    std::lock_guard lock{mutex_};
    --open_;
  }
}

void metrics_server::serve(int fd) {
  bounded_stream stream{fd, stop_fd_, clock::now() + request_timeout};
  try {
    http_->serve(stream);
  } catch (...) {
    // httplib catches what a handler throws; this is its own parsing running
    // out of memory. The worker must live on: drop the connection.
  }
  // Lingering close: end our side, then read (and drop) a little of what the
  // client still sends, so it sees the answer rather than a reset. Bounded
  // in bytes and time; a client that keeps sending gets the reset.
  ::shutdown(fd, SHUT_WR);
  auto until = clock::now() + std::chrono::milliseconds{200};
  std::size_t drained = 0;
  char sink[4096];
  while (drained < 64 * 1024 && wait_for(fd, POLLIN, stop_fd_, until)) {
    auto n = ::recv(fd, sink, sizeof sink, MSG_DONTWAIT);
    if (n <= 0)
      break;
    drained += static_cast<std::size_t>(n);
  }
  ::close(fd);
}

} // namespace cairn::detail
