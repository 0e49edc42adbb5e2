#pragma once

// The HTTP endpoint of the metrics: GET /metrics answers the Prometheus text
// format; every other request gets 404. Its own threads (one listener, two
// workers: scrapes are rare) never touch the command path.

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "cairn/model/error.hpp"

namespace httplib {
class Server;
}

namespace cairn::detail {

/// "host:port" split and checked: invalid_argument names what is wrong.
struct listen_address {
  std::string host;
  int port = 0;
};
[[nodiscard]] result<listen_address> parse_listen_address(const std::string& address);

class metrics_server {
public:
  /// Binds `address` ("host:port", port 0 = any free one) and serves the text
  /// `render` returns. `invalid_argument` for an address that does not parse
  /// or resolve, `unavailable` when it cannot be bound (in use, not permitted).
  [[nodiscard]] static result<std::unique_ptr<metrics_server>>
  start(const std::string& address, std::function<std::string()> render);

  /// Stops listening and waits for the scrapes in progress.
  ~metrics_server();
  metrics_server(const metrics_server&) = delete;
  metrics_server& operator=(const metrics_server&) = delete;

  /// The bound "host:port", with the port the system picked for port 0.
  [[nodiscard]] const std::string& endpoint() const { return endpoint_; }

private:
  metrics_server() = default;

  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
  std::atomic<bool> finished_{false}; ///< The listener returned.
  std::string endpoint_;
};

} // namespace cairn::detail
