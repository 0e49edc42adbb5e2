#include "metrics_server.hpp"

#include <chrono>
#include <cstring>

#include <httplib.h>
#include <netdb.h>
#include <sys/socket.h>

namespace cairn::detail {

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

result<std::unique_ptr<metrics_server>>
metrics_server::start(const std::string& address, std::function<std::string()> render) {
  auto parsed = parse_listen_address(address);
  if (!parsed)
    return tl::unexpected(parsed.error());
  std::unique_ptr<metrics_server> self{new metrics_server};
  self->server_ = std::make_unique<httplib::Server>();
  auto& svr = *self->server_;
  svr.new_task_queue = [] { return new httplib::ThreadPool(2); };
  // httplib's default may set SO_REUSEPORT, which would let a second server
  // share a port in use instead of failing.
  svr.set_socket_options([](socket_t sock) {
    int yes = 1;
    ::setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
  });
  // Short keep-alive: shutdown waits for idle connections at most this long.
  svr.set_keep_alive_timeout(1);
  svr.Get("/metrics", [render = std::move(render)](const httplib::Request&,
                                                   httplib::Response& res) {
    res.set_content(render(), "text/plain; version=0.0.4; charset=utf-8");
  });
  int port = parsed->port;
  if (port == 0)
    port = svr.bind_to_any_port(parsed->host);
  else if (!svr.bind_to_port(parsed->host, port))
    port = -1;
  if (port < 0)
    return fail(errc::unavailable,
                "cannot listen for metrics (address in use or not permitted)", address);
  self->endpoint_ = (parsed->host.find(':') != std::string::npos ? "[" + parsed->host + "]"
                                                                   : parsed->host)
                    + ":" + std::to_string(port);
  auto* finished = &self->finished_;
  self->thread_ = std::thread{[&svr, finished] {
    svr.listen_after_bind();
    finished->store(true);
  }};
  // stop() only reaches a server that is already running.
  while (!svr.is_running() && !finished->load())
    std::this_thread::sleep_for(std::chrono::milliseconds{1});
  return self;
}

metrics_server::~metrics_server() {
  if (!thread_.joinable())
    return; // never listened: bind failed
  server_->stop();
  thread_.join();
}

} // namespace cairn::detail
