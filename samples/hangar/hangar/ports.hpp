#pragma once

// A port for a node that is started a moment later, shared by the demos,
// the benches and the tests that run nodes as processes.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdint>
#include <fstream>
#include <mutex>
#include <random>
#include <vector>

#include "cairn/model/error.hpp"

namespace hangar {

/// A TCP port on 127.0.0.1 for a node to listen on. It is picked below the
/// kernel's ephemeral range (`ip_local_port_range`), where no outgoing
/// connection and no bind to port 0 can take it; a port of that range, the
/// way the kernel picks them, only when no port below it is free.
///
/// The port stays reserved until this process exits: bound, not listening,
/// with SO_REUSEADDR set after the bind. A node binds it all the same (the
/// gateway and the metrics server set SO_REUSEADDR and nothing listens on
/// it), but another process's free_port() cannot bind it, so concurrent
/// tests never pick the same port between a pick and the node's bind.
inline cairn::result<std::uint16_t> free_port() {
  auto bind_to = [](std::uint16_t port) -> std::uint16_t {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
      return 0;
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(port);
    socklen_t len = sizeof a;
    int yes = 1;
    // Without SO_REUSEADDR at the bind, which therefore fails on a port
    // another process reserved; with it afterwards, so a node can bind too.
    bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0
              && ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0
              && ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes) == 0;
    if (!ok) {
      ::close(fd);
      return 0;
    }
    static std::mutex reserved_lock;
    static std::vector<int> reserved; // released when the process exits
    std::lock_guard guard{reserved_lock};
    reserved.push_back(fd);
    return ntohs(a.sin_port);
  };
  unsigned low = 32768; // Linux's default
  std::ifstream{"/proc/sys/net/ipv4/ip_local_port_range"} >> low;
  if (low > 65535)
    low = 32768;
  constexpr unsigned lowest = 10000;
  if (low > lowest + 100) {
    std::random_device seed;
    std::minstd_rand rng{seed()};
    for (int attempt = 0; attempt < 64; ++attempt)
      if (auto port = bind_to(static_cast<std::uint16_t>(lowest + rng() % (low - lowest))))
        return port;
  }
  if (auto port = bind_to(0))
    return port;
  return cairn::fail(cairn::errc::unavailable, "no free port on 127.0.0.1");
}

} // namespace hangar
