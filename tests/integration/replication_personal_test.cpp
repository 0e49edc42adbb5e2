// Personal data across a failover, between two cairn-test-node processes on
// 127.0.0.1 (docs/cluster.md#what-is-copied): the standby copies the data
// keys of the subjects with the log and follows the owner's forgets, so the
// promoted node reads a personal field sent before the owner was killed, and
// still reads a forgotten one as absent.

#include <signal.h>

#include <chrono>
#include <fstream>
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

/// Owner A and its standby S; `key_files` names each node's master key file.
struct personal_pair {
  cairn::test::temp_dir dir, keys;
  std::uint16_t a_port = cairn::test::free_port();
  std::uint16_t s_port = cairn::test::free_port();

  /// A master key file outside both stores: 64 times `digit`.
  [[nodiscard]] std::string key_file(char digit) const {
    auto path = keys.sub(std::string{"key-"} + digit);
    std::ofstream{path} << std::string(64, digit) << '\n';
    return path;
  }

  void start(node_process& p, const std::string& id, const std::string& master_key) const {
    cairn::test::start_test_node(
      p,
      cairn::test::with(cairn::test::test_node_args(id, {{"A", a_port}, {"S", s_port}}, dir.sub(id),
                                                    cairn::test::standby_args("A", "S", "async")),
                        {"--master-key-file", master_key}));
  }
};

/// The answer line to `command` that starts with `prefix`.
std::string ask(node_process& p, const std::string& command, const std::string& prefix) {
  REQUIRE(p.write_line(command));
  return p.wait_line(prefix, 20s);
}

/// The owner's replication figures: committed and acknowledged positions.
std::pair<std::uint64_t, std::uint64_t> positions(node_process& owner) {
  std::istringstream in{ask(owner, "status", "replication")};
  std::string word;
  std::uint64_t committed = 0, acknowledged = 0;
  while (in >> word) {
    if (word.rfind("committed=", 0) == 0)
      committed = std::stoull(word.substr(10));
    else if (word.rfind("acknowledged=", 0) == 0)
      acknowledged = std::stoull(word.substr(13));
  }
  return {committed, acknowledged};
}

} // namespace

TEST_CASE("after a promotion the standby reads the personal data the owner had, and not what it "
          "forgot",
          "[integration][cluster][replication][personal][forget]") {
  personal_pair c;
  auto key = c.key_file('7');
  node_process a, s;
  c.start(s, "S", key); // first: an owner waits for its standby before it serves
  c.start(a, "A", key);
  CHECK(ask(a, "register ann Annabel", "registered") == "registered ok");
  CHECK(ask(a, "register bob Robert", "registered") == "registered ok");
  CHECK(ask(a, "forget bob", "forget") == "forget ok");
  CHECK(ask(a, "name bob", "name") == "name absent");
  CHECK(ask(s, "forget ann", "forget").rfind("forget failed unavailable", 0) == 0); // a standby
  // Three events and the forget record, all acknowledged by the standby.
  REQUIRE(cairn::test::eventually(
    [&] {
      auto [committed, acknowledged] = positions(a);
      return committed >= 4 && acknowledged == committed;
    },
    30s));
  a.kill(SIGKILL);
  REQUIRE(s.write_line("promote"));
  INFO(s.output());
  REQUIRE(s.wait_line("promoted", 30s) == "promoted epoch=2");
  CHECK(ask(s, "name ann", "name") == "name Annabel");
  CHECK(ask(s, "name bob", "name") == "name absent");
  // The promoted node writes under the subject's copied key, and forgets.
  CHECK(ask(s, "register carl Carl", "registered") == "registered ok");
  CHECK(ask(s, "forget ann", "forget") == "forget ok");
  CHECK(ask(s, "name ann", "name") == "name absent");
  CHECK(ask(s, "name carl", "name") == "name Carl");
}

TEST_CASE("a standby with another master key refuses the owner's frames and says so",
          "[integration][cluster][replication][personal]") {
  personal_pair c;
  node_process a, s;
  c.start(s, "S", c.key_file('8')); // first, as above
  c.start(a, "A", c.key_file('7'));
  CHECK(ask(a, "register ann Annabel", "registered") == "registered ok");
  // The standby's status names the problem (its log too), and it
  // acknowledges nothing from the record with a key on.
  CHECK(cairn::test::eventually(
    [&] {
      return ask(s, "problem", "problem").find("do not open with this replica's master key")
             != std::string::npos;
    },
    30s));
  auto [committed, acknowledged] = positions(a);
  CHECK(committed >= 2);
  CHECK(acknowledged < 2);
}
