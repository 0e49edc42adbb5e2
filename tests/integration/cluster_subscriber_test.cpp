// Cluster-wide projections over three cairn-test-node processes on 127.0.0.1
// (docs/cluster.md#cluster-wide-subscribers): node A projects every node's
// log into one read model, with one checkpoint per source node; the model
// equals the sum of the aggregates' states, across a restart of A in the
// middle of the stream and across a source node killed and restarted.

#include <signal.h>

#include <chrono>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "support/eventually.hpp"
#include "support/node_process.hpp"
#include "support/temp_dir.hpp"
#include "support/test_cluster.hpp"

namespace {

using namespace std::chrono_literals;
using cairn::test::node_process;

constexpr std::size_t ids = 60; ///< Tally ids 0..59, spread over the three nodes' shards.

struct three_nodes {
  cairn::test::temp_dir dir;
  std::uint16_t a_port = cairn::test::free_port();
  std::uint16_t b_port = cairn::test::free_port();
  std::uint16_t c_port = cairn::test::free_port();

  [[nodiscard]] std::vector<std::string> args(const std::string& id,
                                              std::vector<std::string> extra = {}) const {
    return cairn::test::test_node_args(id, {{"A", a_port}, {"B", b_port}, {"C", c_port}},
                                       dir.sub(id), std::move(extra));
  }

  void start(node_process& p, const std::string& id, std::vector<std::string> extra = {}) const {
    cairn::test::start_test_node(p, args(id, std::move(extra)));
  }
};

/// "key=value" words of a line after its first word.
std::map<std::string, std::string> fields(const std::string& line) {
  std::map<std::string, std::string> out;
  std::istringstream in{line};
  std::string word;
  in >> word;
  while (in >> word)
    if (auto eq = word.find('='); eq != std::string::npos)
      out[word.substr(0, eq)] = word.substr(eq + 1);
  return out;
}

std::uint64_t number(const std::map<std::string, std::string>& f, const std::string& key) {
  auto it = f.find(key);
  return it == f.end() || it->second.empty() ? 0 : std::stoull(it->second);
}

struct projected {
  std::uint64_t total = 0, dup = 0;
  std::map<std::string, bool> connected; ///< Per source node.
  std::string line;
};

projected projection_of(node_process& p) {
  projected r;
  if (!p.write_line("projected"))
    return r;
  r.line = p.wait_line("projected", 5s);
  auto f = fields(r.line);
  r.total = number(f, "total");
  r.dup = number(f, "dup");
  std::istringstream sources{f["sources"]};
  std::string item;
  while (std::getline(sources, item, ',')) // NODE:CONNECTED:POSITION:CHECKPOINT
    if (auto colon = item.find(':'); colon != std::string::npos)
      r.connected[item.substr(0, colon)] = item.substr(colon + 1, 1) == "1";
  return r;
}

struct states {
  std::uint64_t sum = 0, model = 0, mismatched = 0, failed = 0;
  std::string line;
};

states states_of(node_process& p) {
  states r;
  if (!p.write_line("states " + std::to_string(ids)))
    return r;
  r.line = p.wait_line("states", 30s);
  auto f = fields(r.line);
  r.sum = number(f, "sum");
  r.model = number(f, "model");
  r.mismatched = number(f, "mismatched");
  r.failed = number(f, "failed");
  return r;
}

/// Waits until A's read model equals the sum of the aggregates' states,
/// per stream, with no event counted twice.
void require_model_matches(node_process& a, std::uint64_t at_least) {
  states last;
  bool ok = cairn::test::eventually(
    [&] {
      last = states_of(a);
      return last.failed == 0 && last.sum >= at_least && last.mismatched == 0
             && last.model == last.sum;
    },
    60s);
  INFO(last.line);
  INFO(a.output());
  REQUIRE(ok);
  auto p = projection_of(a);
  INFO(p.line);
  CHECK(p.dup == 0);
  CHECK(p.total == last.sum);
}

std::uint64_t driven_ok(node_process& p) {
  auto line = p.wait_line("driven", 120s);
  INFO(p.output());
  REQUIRE(!line.empty());
  return number(fields(line), "ok");
}

} // namespace

TEST_CASE("a cluster-wide projection over three nodes equals the sum of the aggregates' states",
          "[integration][cluster][subscriber]") {
  three_nodes c;
  node_process a, b, n3;
  c.start(a, "A");
  REQUIRE(a.write_line("project"));
  REQUIRE(a.wait_line("project", 5s) == "project ok");
  c.start(b, "B", {"--drive", std::to_string(ids), "--rounds", "4"});
  c.start(n3, "C", {"--drive", std::to_string(ids), "--rounds", "4"});
  auto acked = driven_ok(b) + driven_ok(n3);
  CHECK(acked == 2 * ids * 4);
  require_model_matches(a, acked);
  auto p = projection_of(a);
  INFO(p.line);
  CHECK(p.connected.size() == 3);
  CHECK(p.connected["A"]);
  CHECK(p.connected["B"]);
  CHECK(p.connected["C"]);
}

TEST_CASE("a projecting node killed mid-stream resumes each source from its checkpoint",
          "[integration][cluster][subscriber]") {
  three_nodes c;
  node_process a, b, n3;
  c.start(a, "A");
  REQUIRE(a.write_line("project"));
  REQUIRE(a.wait_line("project", 5s) == "project ok");
  c.start(b, "B", {"--drive", std::to_string(ids), "--rounds", "30"});
  c.start(n3, "C", {"--drive", std::to_string(ids), "--rounds", "30"});
  // Killed once some, not all, of the stream is in its read model.
  std::uint64_t before = 0;
  REQUIRE(cairn::test::eventually(
    [&] {
      before = projection_of(a).total;
      return before > 50;
    },
    60s));
  a.kill(SIGKILL);
  node_process a2;
  c.start(a2, "A");
  REQUIRE(a2.write_line("project"));
  REQUIRE(a2.wait_line("project", 5s) == "project ok");
  driven_ok(b);
  driven_ok(n3);
  // States are the truth: a command in flight to A when it died may be
  // applied without its sender hearing so.
  require_model_matches(a2, before + 1);
  // Every source is back; dup == 0 above shows that none was read again from its start.
  auto p = projection_of(a2);
  INFO(p.line);
  CHECK(p.connected.size() == 3);
}

TEST_CASE("a source node killed and restarted is reported disconnected, then caught up",
          "[integration][cluster][subscriber]") {
  three_nodes c;
  node_process a, b, n3;
  c.start(a, "A");
  c.start(b, "B");
  c.start(n3, "C", {"--drive", std::to_string(ids), "--rounds", "2"});
  driven_ok(n3);
  REQUIRE(a.write_line("project"));
  REQUIRE(a.wait_line("project", 5s) == "project ok");
  require_model_matches(a, 2 * ids);
  n3.kill(SIGKILL);
  REQUIRE(cairn::test::eventually([&] { return !projection_of(a).connected["C"]; }, 20s));
  // The others go on: commands to A's and B's shards still reach the model.
  for (std::size_t id = 0; id < ids; ++id) {
    REQUIRE(b.write_line("send " + std::to_string(id) + " 100"));
    (void)b.wait_line("sent", 10s);
  }
  node_process c2;
  c.start(c2, "C");
  REQUIRE(cairn::test::eventually([&] { return projection_of(a).connected["C"]; }, 30s));
  require_model_matches(a, 2 * ids);
}

TEST_CASE("after a promotion the feed of the replaced owner's log follows the promoted standby",
          "[integration][cluster][subscriber]") {
  cairn::test::temp_dir dir;
  auto a_port = cairn::test::free_port(), b_port = cairn::test::free_port(),
       s_port = cairn::test::free_port();
  auto start = [&](node_process& p, const std::string& id, std::vector<std::string> extra = {}) {
    cairn::test::start_test_node(
      p, cairn::test::test_node_args(id, {{"A", a_port}, {"B", b_port}, {"S", s_port}}, dir.sub(id),
                                     cairn::test::with(cairn::test::standby_args("A", "S", "sync"),
                                                       extra)));
  };
  node_process a, b, s;
  start(s, "S");
  start(a, "A");
  start(b, "B", {"--drive", std::to_string(ids), "--rounds", "2"});
  REQUIRE(driven_ok(b) == 2 * ids);
  REQUIRE(b.write_line("project"));
  REQUIRE(b.wait_line("project", 5s) == "project ok");
  require_model_matches(b, 2 * ids);
  a.kill(SIGKILL);
  REQUIRE(s.write_line("promote"));
  auto promoted = s.wait_line("promote", 20s);
  INFO(promoted);
  REQUIRE(promoted.rfind("promoted", 0) == 0);
  // Without its standby, the promoted node acknowledges only in async mode.
  REQUIRE(s.write_line("async"));
  REQUIRE(s.wait_line("mode", 5s) == "mode ok");
  // New events for A's shards are on S now; the projection reads them there.
  for (std::size_t id = 0; id < ids; ++id)
    REQUIRE(cairn::test::eventually(
      [&] {
        return b.write_line("send " + std::to_string(id) + " 7")
               && b.wait_line("sent", 10s) == "sent ok";
      },
      30s));
  require_model_matches(b, 3 * ids);
  REQUIRE(cairn::test::eventually([&] { return projection_of(b).connected["A"]; }, 20s));
}
