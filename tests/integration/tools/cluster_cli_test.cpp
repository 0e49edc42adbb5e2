// `cairn cluster status|map|locate` run as a process: status against a
// metrics server of this test serving a fixed cluster status, map and locate
// on config files written here.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fstream>
#include <optional>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "cairn/runtime/cluster.hpp"
#include "metrics_server.hpp"
#include "support/cli_run.hpp"
#include "support/temp_dir.hpp"

namespace {

using cairn::test::cli::cairn_cli;
using cairn::test::cli::parse_json;

cairn::cluster_status fixed_status() {
  cairn::cluster_status st;
  st.node_id = "A";
  st.map_version = 3;
  st.map_digest = 0x00ff00ff00ff00ffull;
  st.shards = 1024;
  st.owned_shards = 342;
  st.dropped_messages = 5;
  cairn::peer_status b;
  b.id = "B";
  b.host = "127.0.0.1";
  b.port = 7102;
  b.state = "up";
  b.since_ns = 1'796'590'800'000'000'000; // 2026-12-06T21:00:00Z
  b.in_flight = 2;
  b.forwarded = 1000;
  b.received = 999;
  b.rtt_us_bounds = {100, 1000};
  b.rtt_us_buckets = {10, 900, 90};
  b.rtt_p50_us = 240;
  b.rtt_p99_us = 1200;
  cairn::peer_status c;
  c.id = "C";
  c.host = "127.0.0.1";
  c.port = 7103;
  c.state = "refused";
  c.reason = "map version 3 here, 4 there";
  st.peers = {b, c};
  return st;
}

std::string write_config(const cairn::test::temp_dir& dir, const std::string& text) {
  auto path = dir.sub("cluster.conf");
  std::ofstream{path} << text;
  return path;
}

const char* const three_nodes = "map-version 7\n"
                                "shards 12\n"
                                "node A 127.0.0.1 7101\n"
                                "node B 127.0.0.1 7102\n"
                                "node C ::1 7103\n"
                                "owner 0-3 A\n"
                                "owner 4-5 B\n"
                                "owner 6 C\n"
                                "owner 7 B\n"
                                "owner 8-11 C\n";

} // namespace

TEST_CASE("cluster status prints a node's status as a table and as JSON",
          "[integration][cli][cluster]") {
  auto server = cairn::detail::metrics_server::start(
    "127.0.0.1:0", [] { return std::string{}; },
    [] { return std::optional<cairn::cluster_status>{fixed_status()}; });
  REQUIRE(server);
  auto address = (*server)->endpoint();

  auto text = cairn_cli({"cluster", "status", address});
  INFO(text.err);
  REQUIRE(text.code == 0);
  CHECK(text.out == cairn::to_text(fixed_status()));
  CHECK(text.out.find("node A: map version 3, digest 00ff00ff00ff00ff") == 0);
  CHECK(text.out.find("2026-12-06T21:00:00Z") != std::string::npos);
  CHECK(text.out.find("map version 3 here, 4 there") != std::string::npos);

  auto json = cairn_cli({"cluster", "status", address, "--json"});
  REQUIRE(json.code == 0);
  CHECK(json.out == cairn::to_json(fixed_status()) + "\n");
  auto d = parse_json(json.out);
  CHECK(d["peers"][0]["rtt_p99_us"].GetUint64() == 1200);
}

TEST_CASE("cluster status of a node without a cluster, or of no node, fails with a reason",
          "[integration][cli][cluster]") {
  auto plain = cairn::detail::metrics_server::start("127.0.0.1:0", [] { return std::string{}; },
                                                    {});
  REQUIRE(plain);
  auto r = cairn_cli({"cluster", "status", (*plain)->endpoint()});
  CHECK(r.code == 1);
  CHECK(r.out.empty());
  CHECK(r.err.find("rejected: the node runs without a cluster") != std::string::npos);

  // A port bound but not listening: connecting is refused, and no other
  // process can take the port meanwhile.
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  REQUIRE(fd >= 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  socklen_t len = sizeof addr;
  REQUIRE(::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0);
  auto gone = "127.0.0.1:" + std::to_string(ntohs(addr.sin_port));
  auto refused = cairn_cli({"cluster", "status", gone});
  CHECK(refused.code == 1);
  CHECK(refused.err.find("unavailable: cannot get the cluster status: cannot connect")
        != std::string::npos);
  ::close(fd);

  auto bad = cairn_cli({"cluster", "status", "localhost"});
  CHECK(bad.code == 2);
  CHECK(bad.err.find("not HOST:PORT") != std::string::npos);
  auto port0 = cairn_cli({"cluster", "status", "127.0.0.1:0"});
  CHECK(port0.code == 2);
}

TEST_CASE("cluster map prints the version, digest and each node's shards",
          "[integration][cli][cluster]") {
  cairn::test::temp_dir dir;
  auto path = write_config(dir, three_nodes);
  auto opts = cairn::load_cluster_config(path, "");
  REQUIRE(opts);
  auto digest = cairn::digest_hex(opts->map.digest());

  auto text = cairn_cli({"cluster", "map", path});
  INFO(text.err);
  REQUIRE(text.code == 0);
  CHECK(text.out
        == "map version 7, digest " + digest
             + ", 12 shards, 3 nodes\n"
               "node  address         shards  ranges\n"
               "A     127.0.0.1:7101       4  0-3\n"
               "B     127.0.0.1:7102       3  4-5,7\n"
               "C     [::1]:7103           5  6,8-11\n");

  auto json = cairn_cli({"cluster", "map", path, "--json"});
  REQUIRE(json.code == 0);
  auto d = parse_json(json.out);
  CHECK(d["map_version"].GetUint64() == 7);
  CHECK(std::string{d["map_digest"].GetString()} == digest);
  CHECK(d["shards"].GetUint() == 12);
  REQUIRE(d["nodes"].Size() == 3);
  CHECK(std::string{d["nodes"][1]["id"].GetString()} == "B");
  CHECK(d["nodes"][1]["shards"].GetUint() == 3);
  CHECK(std::string{d["nodes"][1]["ranges"][1].GetString()} == "7");
  CHECK(std::string{d["nodes"][2]["host"].GetString()} == "::1");
}

TEST_CASE("cluster locate prints a stream's shard and owner", "[integration][cli][cluster]") {
  cairn::test::temp_dir dir;
  auto path = write_config(dir, three_nodes);
  auto opts = cairn::load_cluster_config(path, "");
  REQUIRE(opts);
  // FNV-1a 64 of "account-alice" mod 12 is 5; of "provider-math", 1.
  REQUIRE(opts->map.shard_of("account-alice") == 5);
  REQUIRE(opts->map.shard_of("provider-math") == 1);

  auto alice = cairn_cli({"cluster", "locate", path, "account-alice"});
  INFO(alice.err);
  REQUIRE(alice.code == 0);
  CHECK(alice.out == "account-alice: shard 5 of 12, owner B (127.0.0.1:7102), map version 7\n");
  auto math = cairn_cli({"cluster", "locate", path, "provider-math", "--json"});
  REQUIRE(math.code == 0);
  CHECK(math.out
        == "{\"stream\":\"provider-math\",\"shard\":1,\"shards\":12,\"owner\":\"A\","
           "\"host\":\"127.0.0.1\",\"port\":7101,\"map_version\":7}\n");

  auto bad_stream = cairn_cli({"cluster", "locate", path, "nodash"});
  CHECK(bad_stream.code == 2);
  CHECK(bad_stream.err.find("invalid stream name") != std::string::npos);
}

TEST_CASE("cluster map and locate show each owner's standby", "[integration][cli][cluster]") {
  cairn::test::temp_dir dir;
  auto path = write_config(dir, "map-version 2\n"
                                "shards 12\n"
                                "node A 127.0.0.1 7101\n"
                                "node B 127.0.0.1 7102\n"
                                "node B2 127.0.0.1 7103\n"
                                "owner 0-5 A\n"
                                "owner 6-11 B\n"
                                "standby B B2\n");
  auto opts = cairn::load_cluster_config(path, "");
  REQUIRE(opts);
  auto digest = cairn::digest_hex(opts->map.digest());

  auto text = cairn_cli({"cluster", "map", path});
  INFO(text.err);
  REQUIRE(text.code == 0);
  CHECK(text.out
        == "map version 2, digest " + digest
             + ", 12 shards, 3 nodes\n"
               "node  address         shards  ranges  pair\n"
               "A     127.0.0.1:7101       6  0-5\n"
               "B     127.0.0.1:7102       6  6-11    standby B2\n"
               "B2    127.0.0.1:7103       0          standby of B\n");
  auto json = cairn_cli({"cluster", "map", path, "--json"});
  REQUIRE(json.code == 0);
  auto d = parse_json(json.out);
  REQUIRE(d["nodes"].Size() == 3);
  CHECK_FALSE(d["nodes"][0].HasMember("standby"));
  CHECK(std::string{d["nodes"][1]["standby"].GetString()} == "B2");
  CHECK(std::string{d["nodes"][2]["standby_of"].GetString()} == "B");
  CHECK(d["nodes"][2]["shards"].GetUint() == 0);

  // FNV-1a 64 of "account-alice" mod 12 is 5 (A); of "account-bob", B's.
  auto alice = cairn_cli({"cluster", "locate", path, "account-alice"});
  REQUIRE(alice.code == 0);
  CHECK(alice.out == "account-alice: shard 5 of 12, owner A (127.0.0.1:7101), map version 2\n");
  std::string on_b;
  for (int i = 0; on_b.empty() && i < 100; ++i)
    if (opts->map.owner_of("account-" + std::to_string(i)) == "B")
      on_b = "account-" + std::to_string(i);
  REQUIRE_FALSE(on_b.empty());
  auto shard = std::to_string(opts->map.shard_of(on_b));
  auto b = cairn_cli({"cluster", "locate", path, on_b});
  REQUIRE(b.code == 0);
  CHECK(b.out
        == on_b + ": shard " + shard
             + " of 12, owner B (127.0.0.1:7102), standby B2, map version 2\n");
  auto bj = cairn_cli({"cluster", "locate", path, on_b, "--json"});
  REQUIRE(bj.code == 0);
  CHECK(bj.out.find("\"owner\":\"B\",\"host\":\"127.0.0.1\",\"port\":7102,\"standby\":\"B2\"")
        != std::string::npos);
}

TEST_CASE("cluster map and locate refuse a bad config with its line",
          "[integration][cli][cluster]") {
  cairn::test::temp_dir dir;
  auto path = write_config(dir, std::string{three_nodes} + "owner 5 C\n");
  auto r = cairn_cli({"cluster", "map", path});
  CHECK(r.code == 2);
  CHECK(r.out.empty());
  CHECK(r.err
        == "cairn: invalid_argument: line 11: shard 5 already has owner B (line 7) [" + path
             + "]\n");
  auto missing = cairn_cli({"cluster", "locate", dir.sub("none.conf"), "account-1"});
  CHECK(missing.code == 2);
  CHECK(missing.err.find("the cluster config is missing or not a file") != std::string::npos);
}
