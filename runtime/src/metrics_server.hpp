#pragma once

// The HTTP endpoint of the metrics: GET /metrics answers the Prometheus text
// format, GET /health a constant "ok", GET /cluster the cluster status as
// JSON (404 "not clustered" without a cluster); with an admin callback, POST
// /cluster/promote and /cluster/replication/{async,sync}. Anything else is refused
// without reading a body. Its own threads (one listener, `max_connections` workers)
// never touch the command path. It has no authentication: bind it to
// loopback or a private interface.
//
// Bounds, so a client cannot make it hold memory, threads or shutdown:
// - one request per connection, answered with "Connection: close";
// - at most `max_connections` connections at once; the listener closes the
//   ones beyond at once (after a best-effort 503), nothing queues;
// - the request line and headers must arrive within `request_timeout` of
//   the accept (a whole-request deadline, not a per-read one, so one byte
//   every 100 ms does not keep it open) and fit `max_request_bytes`;
// - no route takes a body: 404 for an unknown path, 405 for a method other
//   than GET or HEAD, 413 for a GET that declares one, each answered before
//   any body byte is read (httplib's payload limit is set too, as a backstop);
// - the response must be sent within `response_timeout`;
// - stopping interrupts every connection's wait at once; it only waits for a
//   /metrics render already running.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "cairn/model/error.hpp"
#include "cairn/runtime/cluster.hpp"

namespace cairn::detail {

/// "host:port" split and checked: invalid_argument names what is wrong.
struct listen_address {
  std::string host;
  int port = 0;
};
[[nodiscard]] result<listen_address> parse_listen_address(const std::string& address);

class metrics_http; // the httplib server that parses and routes, in the .cpp

class metrics_server {
public:
  /// Connections served at once (one worker thread each).
  static constexpr std::size_t max_connections = 4;
  /// From the accept to the end of the request headers.
  static constexpr std::chrono::milliseconds request_timeout{3000};
  /// From the first byte of the response to its last.
  static constexpr std::chrono::milliseconds response_timeout{5000};
  /// Request line plus headers.
  static constexpr std::size_t max_request_bytes = 8 * 1024;
  /// Largest body httplib would read (no route reads one).
  static constexpr std::size_t max_payload_bytes = 4 * 1024;

  /// Binds `address` ("host:port", port 0 = any free one) and serves the text
  /// `render` returns at /metrics, and the JSON of what `cluster` returns at
  /// /cluster (404 "not clustered" when `cluster` is empty or returns
  /// nothing). Both are called on the server's worker threads.
  /// `invalid_argument` for an address that does not parse or resolve,
  /// `unavailable` when it cannot be bound (in use, not permitted) or its
  /// threads cannot start.
  ///
  /// With `admin`, POST /cluster/promote and POST /cluster/replication/async
  /// (or /sync) call it with "promote", "async" or "sync" (no body), and
  /// answer 200 with the text it returns or 409 with its error.
  [[nodiscard]] static result<std::unique_ptr<metrics_server>>
  start(const std::string& address, std::function<std::string()> render,
        std::function<std::optional<cluster_status>()> cluster,
        std::function<result<std::string>(const std::string& action)> admin = {});

  /// Stops listening, cuts every open connection and waits for the threads
  /// (a /metrics or /cluster render in progress finishes first).
  ~metrics_server();
  metrics_server(const metrics_server&) = delete;
  metrics_server& operator=(const metrics_server&) = delete;

  /// The bound "host:port", with the port the system picked for port 0.
  [[nodiscard]] const std::string& endpoint() const { return endpoint_; }

private:
  metrics_server();

  void listen_loop();
  void work_loop();
  void serve(int fd);

  std::unique_ptr<metrics_http> http_;
  int listen_fd_ = -1;
  int stop_fd_ = -1; ///< eventfd: readable once stopping, wakes every poll.
  std::string endpoint_;

  std::mutex mutex_;
  std::condition_variable ready_;
  std::deque<int> accepted_; ///< Handed to a worker; at most max_connections.
  std::size_t open_ = 0;     ///< Accepted and not yet closed (queued or served).
  bool stopping_ = false;

  std::thread listener_;
  std::vector<std::thread> workers_;
};

} // namespace cairn::detail
