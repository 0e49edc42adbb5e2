#pragma once

// Clusters of cairn-test-node processes on 127.0.0.1 for the integration
// tests: the arguments every member gets, and starting one until it is ready.

#include <chrono>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include <catch2/catch.hpp>

#include "support/node_process.hpp"

namespace cairn::test {

/// A member of a test cluster on 127.0.0.1.
struct test_member {
  std::string id;
  std::uint16_t port = 0;
};

/// cairn-test-node's arguments for member `id` of `members`, its data in
/// `data_dir`: 64 shards and quick failure detection (heartbeat and ping
/// 200 ms, timeout 1 s), then `extra`.
[[nodiscard]] inline std::vector<std::string>
test_node_args(const std::string& id, const std::vector<test_member>& members,
               const std::string& data_dir, std::vector<std::string> extra = {}) {
  std::string nodes;
  for (const auto& m : members)
    nodes += (nodes.empty() ? "" : ",") + m.id + "=127.0.0.1:" + std::to_string(m.port);
  std::vector<std::string> a{"--node",    id,   "--nodes",        nodes, "--data",       data_dir,
                             "--shards",  "64", "--heartbeat-ms", "200", "--timeout-ms", "1000",
                             "--ping-ms", "200"};
  a.insert(a.end(), std::make_move_iterator(extra.begin()), std::make_move_iterator(extra.end()));
  return a;
}

/// The arguments that make `standby` follow `owner` under `mode` (async or
/// sync, with a sync timeout of 1 s).
[[nodiscard]] inline std::vector<std::string>
standby_args(const std::string& owner, const std::string& standby, const std::string& mode) {
  return {"--standby", owner + "=" + standby, "--replication", mode, "--sync-timeout-ms", "1000"};
}

/// Appends `more` to `args`.
[[nodiscard]] inline std::vector<std::string> with(std::vector<std::string> args,
                                                   const std::vector<std::string>& more) {
  args.insert(args.end(), more.begin(), more.end());
  return args;
}

/// Starts cairn-test-node as `p` with `args` and waits until it is ready.
inline void start_test_node(node_process& p, const std::vector<std::string>& args) {
  REQUIRE(p.start(CAIRN_TEST_NODE_PATH, args));
  INFO(p.output());
  REQUIRE(p.wait_line("ready", std::chrono::seconds{20}) == "ready");
}

} // namespace cairn::test
