// The cluster config file (parse, errors with line numbers, the round trip
// through to_config_text), validate, make_cluster and the status renderers.

#include <algorithm>
#include <fstream>
#include <string>

#include <catch2/catch.hpp>

#include "cairn/runtime/cluster.hpp"
#include "support/temp_dir.hpp"

#include "cairn/persistence/codec.hpp" // before rapidjson: cereal configures it
#include <rapidjson/document.h>

using namespace cairn;
using namespace std::chrono_literals;

namespace {

const char* const two_nodes = R"(# cairn cluster
map-version 3
shards 1024
node A 127.0.0.1 7101
node B 127.0.0.1 7102   # the second
owner 0-511 A
owner 512-1023 B
)";

/// The message of parsing `text` as node A, which must fail.
std::string error_of(const std::string& text, const std::string& node = "A") {
  auto r = parse_cluster_config(text, node);
  REQUIRE_FALSE(r);
  CHECK(r.error().code == errc::invalid_argument);
  return r.error().message;
}

/// two_nodes with `extra` appended.
std::string with(const std::string& extra) { return std::string{two_nodes} + extra; }

cluster_options valid() {
  return make_cluster({{"A", "127.0.0.1", 7101}, {"B", "127.0.0.1", 7102}}, "A");
}

} // namespace

TEST_CASE("a cluster config file parses into nodes, a map and the default options",
          "[unit][cluster]") {
  auto opts = parse_cluster_config(two_nodes, "B");
  REQUIRE(opts);
  CHECK(opts->node_id == "B");
  REQUIRE(opts->nodes.size() == 2);
  CHECK(opts->nodes[0].id == "A");
  CHECK(opts->nodes[0].host == "127.0.0.1");
  CHECK(opts->nodes[0].port == 7101);
  CHECK(opts->nodes[1].id == "B");
  CHECK(opts->nodes[1].port == 7102);
  CHECK(opts->map.version == 3);
  REQUIRE(opts->map.shards() == 1024);
  CHECK(opts->map.owners[0] == "A");
  CHECK(opts->map.owners[511] == "A");
  CHECK(opts->map.owners[512] == "B");
  CHECK(opts->map.owners[1023] == "B");
  CHECK(opts->map.owner_of("account-alice") == "B"); // shard 773
  cluster_options defaults;
  CHECK(opts->heartbeat_interval == defaults.heartbeat_interval);
  CHECK(opts->heartbeat_timeout == defaults.heartbeat_timeout);
  CHECK(opts->ping_interval == defaults.ping_interval);
  CHECK(opts->connect_timeout == defaults.connect_timeout);
  CHECK(opts->remote_timeout == defaults.remote_timeout);
  CHECK(opts->max_in_flight_per_peer == defaults.max_in_flight_per_peer);
  CHECK(opts->middleman_workers == defaults.middleman_workers);
}

TEST_CASE("every option of the file is read, in any order, with CRLF line ends",
          "[unit][cluster]") {
  std::string text = "middleman-workers 3\r\n"
                     "owner 1 B\r\n"
                     "heartbeat-interval-ms 200\r\n"
                     "\t owner 0 A # one shard\r\n"
                     "heartbeat-timeout-ms 900\r\n"
                     "ping-interval-ms 300\r\n"
                     "connect-timeout-ms 400\r\n"
                     "remote-timeout-ms 500\r\n"
                     "max-in-flight-per-peer 7\r\n"
                     "shards 2\r\n"
                     "node B ::1 7102\r\n"
                     "node A localhost 7101\r\n";
  auto opts = parse_cluster_config(text, "A");
  REQUIRE(opts);
  CHECK(opts->map.version == 1); // not given
  CHECK(opts->map.owners == std::vector<std::string>{"A", "B"});
  CHECK(opts->nodes[0].host == "::1");
  CHECK(opts->nodes[1].host == "localhost");
  CHECK(opts->heartbeat_interval == 200ms);
  CHECK(opts->heartbeat_timeout == 900ms);
  CHECK(opts->ping_interval == 300ms);
  CHECK(opts->connect_timeout == 400ms);
  CHECK(opts->remote_timeout == 500ms);
  CHECK(opts->max_in_flight_per_peer == 7);
  CHECK(opts->middleman_workers == 3);
}

TEST_CASE("a bad line is refused with its line number and what is wrong", "[unit][cluster]") {
  // two_nodes has 7 lines; what `with` adds is line 8.
  CHECK(error_of(with("heartbeat-ms 5\n")).rfind("line 8: unknown key 'heartbeat-ms'", 0) == 0);
  CHECK(error_of(with("shards 12\n")) == "line 8: shards is given twice (first on line 3)");
  CHECK(error_of(with("map-version 4\n"))
        == "line 8: map-version is given twice (first on line 2)");
  CHECK(error_of(with("ping-interval-ms\n"))
        == "line 8: ping-interval-ms wants one number, not 0 fields");
  CHECK(error_of(with("ping-interval-ms 1 2\n"))
        == "line 8: ping-interval-ms wants one number, not 2 fields");
  CHECK(error_of(with("ping-interval-ms -5\n"))
        == "line 8: ping-interval-ms '-5' is not a number from 1 to 86400000 ms");
  CHECK(error_of(with("ping-interval-ms 0\n"))
        == "line 8: ping-interval-ms '0' is not a number from 1 to 86400000 ms");
  CHECK(error_of(with("connect-timeout-ms 99999999999999999999999\n"))
        == "line 8: connect-timeout-ms '99999999999999999999999' is not a number from 1 to "
           "86400000 ms");
  CHECK(error_of(with("remote-timeout-ms 1e3\n"))
        == "line 8: remote-timeout-ms '1e3' is not a number from 0 to 86400000 ms");
  CHECK(error_of(with("max-in-flight-per-peer 0\n"))
        == "line 8: max-in-flight-per-peer '0' is not a number from 1 to 4294967295");
  CHECK(error_of(with("middleman-workers 5000\n"))
        == "line 8: middleman-workers '5000' is not a number from 0 to 1024");
  CHECK(error_of(with("node C 127.0.0.1\n")) == "line 8: node wants ID HOST PORT, not 2 fields");
  CHECK(error_of(with("node C 127.0.0.1 0\n"))
        == "line 8: port '0' is not a number from 1 to 65535");
  CHECK(error_of(with("node C 127.0.0.1 65536\n"))
        == "line 8: port '65536' is not a number from 1 to 65535");
  CHECK(error_of(with("node C/1 127.0.0.1 7103\n"))
        == "line 8: node id 'C/1' has a byte other than A-Z a-z 0-9 . _ -");
  CHECK(error_of(with("node " + std::string(65, 'x') + " h 1\n")).rfind("line 8: node id 'xxx", 0)
        == 0);
  CHECK(error_of(with("node A 127.0.0.2 7101\n"))
        == "line 8: node A is declared twice (first on line 4)");
  CHECK(error_of(with("node C 127.0.0.1 7102\n"))
        == "line 8: address 127.0.0.1:7102 is already node B's (line 5)");
  CHECK(error_of(with("owner 5\n"))
        == "line 8: owner wants SHARDS NODE (SHARDS: N or N-M), not 1 fields");
  CHECK(error_of(with("owner x-3 A\n")) == "line 8: shards 'x-3' is not N or N-M");
  CHECK(error_of(with("owner 3- A\n")) == "line 8: shards '3-' is not N or N-M");
  CHECK(error_of(with("owner 9-3 A\n")) == "line 8: shards '9-3' ends before it starts");
  CHECK(error_of("node A h 1\nowner 0-1023 A\nbogus\n").rfind("line 3: unknown key 'bogus'", 0)
        == 0);
}

TEST_CASE("a shard with two owners or none is refused, naming the shard", "[unit][cluster]") {
  std::string head = "shards 8\nnode A h 1\nnode B h 2\n"; // lines 1-3
  CHECK(error_of(head + "owner 0-4 A\nowner 4-7 B\n")
        == "line 5: shard 4 already has owner A (line 4)");
  CHECK(error_of(head + "owner 2-7 B\nowner 0-5 A\n")
        == "line 4: shards 2-5 already have owner A (line 5)");
  CHECK(error_of(head + "owner 0-3 A\nowner 5-7 B\n")
        == "shard 4 has no owner: every shard needs exactly one owner line");
  CHECK(error_of(head + "owner 0-3 A\n")
        == "shards 4-7 have no owner: every shard needs exactly one owner line");
  CHECK(error_of(head + "owner 1-7 A\n")
        == "shard 0 has no owner: every shard needs exactly one owner line");
  CHECK(error_of(head) == "shards 0-7 have no owner: every shard needs exactly one owner line");
  CHECK(error_of(head + "owner 0-8 A\n") == "line 4: shards 0-8: the map has 8 shards, 0-7");
  CHECK(error_of(head + "owner 0-7 C\n")
        == "line 4: owner C is no node (no node line declares it)");
  // Without a shards line the map has 1024.
  CHECK(error_of("node A h 1\nowner 0-1024 A\n")
        == "line 2: shards 0-1024: the map has 1024 shards, 0-1023");
}

TEST_CASE("a config without nodes, or without this node, is refused", "[unit][cluster]") {
  CHECK(error_of("") == "no node lines: a cluster needs at least one node");
  CHECK(error_of("# only a comment\n\n   \n")
        == "no node lines: a cluster needs at least one node");
  CHECK(error_of(two_nodes, "C") == "node_id 'C' is none of the nodes");
  CHECK(error_of("shards 0\n") == "line 1: shards '0' is not a number from 1 to 65536");
  CHECK(error_of("shards 65537\n") == "line 1: shards '65537' is not a number from 1 to 65536");
  CHECK(error_of("map-version 0\n").rfind("line 1: map-version '0' is not a number from 1", 0)
        == 0);
  // An empty node id reads the file as an outsider: all but membership is checked.
  auto outsider = parse_cluster_config(two_nodes, "");
  REQUIRE(outsider);
  CHECK(outsider->node_id.empty());
  CHECK(error_of(with("heartbeat-timeout-ms 1000\n"), "")
        == "heartbeat_timeout (1000 ms) must be above heartbeat_interval (1000 ms), or every "
           "quiet connection is closed");
}

TEST_CASE("to_config_text writes a file that parses back to the same cluster", "[unit][cluster]") {
  auto opts = make_cluster({{"n1", "10.0.0.1", 7101}, {"n2", "::1", 7102}, {"n3", "db.local", 9}},
                           "n2", 1000);
  opts.map.version = 17;
  opts.map.owners[5] = "n3"; // a single-shard run
  opts.heartbeat_interval = 250ms;
  opts.heartbeat_timeout = 2s;
  opts.ping_interval = 500ms;
  opts.connect_timeout = 750ms;
  opts.remote_timeout = 30s;
  opts.max_in_flight_per_peer = 99;
  opts.middleman_workers = 2;
  REQUIRE(validate(opts));
  auto text = to_config_text(opts);
  CHECK(text.find("owner 5 n3\n") != std::string::npos);
  CHECK(text.find("owner 0-4 n1\n") != std::string::npos);
  auto back = parse_cluster_config(text, "n2");
  REQUIRE(back);
  CHECK(back->node_id == "n2");
  REQUIRE(back->nodes.size() == 3);
  for (std::size_t i = 0; i < 3; ++i) {
    CHECK(back->nodes[i].id == opts.nodes[i].id);
    CHECK(back->nodes[i].host == opts.nodes[i].host);
    CHECK(back->nodes[i].port == opts.nodes[i].port);
  }
  CHECK(back->map.version == 17);
  CHECK(back->map.owners == opts.map.owners);
  CHECK(back->map.digest() == opts.map.digest());
  CHECK(back->heartbeat_interval == 250ms);
  CHECK(back->heartbeat_timeout == 2s);
  CHECK(back->ping_interval == 500ms);
  CHECK(back->connect_timeout == 750ms);
  CHECK(back->remote_timeout == 30s);
  CHECK(back->max_in_flight_per_peer == 99);
  CHECK(back->middleman_workers == 2);
  CHECK(to_config_text(*back) == text);
}

TEST_CASE("standby lines and the replication options parse, validate and round-trip",
          "[unit][cluster]") {
  auto text = with("node A2 127.0.0.1 7103\nstandby A A2\nreplication sync\n"
                   "replication-window-bytes 1048576\nsync-timeout-ms 750\n");
  auto opts = parse_cluster_config(text, "A2");
  REQUIRE(opts);
  REQUIRE(opts->nodes.size() == 3);
  CHECK(opts->nodes[0].standby == "A2");
  CHECK(opts->nodes[1].standby.empty());
  CHECK(opts->replication == replication_mode::sync);
  CHECK(opts->replication_window == 1048576);
  CHECK(opts->sync_timeout == 750ms);
  REQUIRE(standby_owner(*opts, "A2") != nullptr);
  CHECK(standby_owner(*opts, "A2")->id == "A");
  CHECK(standby_owner(*opts, "B") == nullptr);
  auto back = parse_cluster_config(to_config_text(*opts), "A2");
  REQUIRE(back);
  CHECK(back->nodes[0].standby == "A2");
  CHECK(back->replication == replication_mode::sync);
  CHECK(to_config_text(*back) == to_config_text(*opts));
  CHECK(parse_cluster_config(two_nodes, "A")->replication == replication_mode::async);
}

TEST_CASE("a standby that cannot follow its owner is refused, naming why", "[unit][cluster]") {
  CHECK(error_of(with("standby A Z\n")).find("no node line declares Z") != std::string::npos);
  CHECK(error_of(with("standby A B\n")).find("a standby owns no shards") != std::string::npos);
  CHECK(error_of(with("standby A A\n")).find("its own standby") != std::string::npos);
  CHECK(
    error_of(with("node C 127.0.0.1 7103\nstandby A C\nstandby B C\n")).find("the standby of both")
    != std::string::npos);
  CHECK(error_of(with("node C 127.0.0.1 7103\nnode D 127.0.0.1 7104\nstandby A C\n"
                      "standby C D\n"))
          .find("cannot have a standby")
        != std::string::npos);
  CHECK(error_of(with("standby A\n")).find("line 8: standby wants OWNER STANDBY")
        != std::string::npos);
  CHECK(error_of(with("replication maybe\n")).find("line 8: replication wants async or sync")
        != std::string::npos);
  CHECK(error_of(with("replication-window-bytes 10\n")).find("replication-window-bytes")
        != std::string::npos);
}

TEST_CASE("make_cluster spreads the shards over the nodes in contiguous ranges",
          "[unit][cluster]") {
  auto opts = make_cluster({{"A", "h", 1}, {"B", "h", 2}, {"C", "h", 3}}, "B");
  REQUIRE(validate(opts));
  CHECK(opts.node_id == "B");
  CHECK(opts.map.version == 1);
  REQUIRE(opts.map.shards() == 1024);
  CHECK(opts.map.owners[0] == "A");
  CHECK(opts.map.owners[341] == "A");
  CHECK(opts.map.owners[342] == "B");
  CHECK(opts.map.owners[682] == "B");
  CHECK(opts.map.owners[683] == "C");
  CHECK(opts.map.owners[1023] == "C");
  auto one = make_cluster({{"A", "h", 1}}, "A", 1);
  REQUIRE(validate(one));
  CHECK(one.map.owners == std::vector<std::string>{"A"});
  CHECK_FALSE(validate(make_cluster({}, "A")));
}

TEST_CASE("validate names what is wrong with a cluster", "[unit][cluster]") {
  auto problem = [](auto change) {
    auto opts = valid();
    change(opts);
    auto ok = validate(opts);
    REQUIRE_FALSE(ok);
    CHECK(ok.error().code == errc::invalid_argument);
    return ok.error().message;
  };
  REQUIRE(validate(valid()));
  CHECK(problem([](cluster_options& o) { o.nodes.clear(); }) == "the cluster has no nodes");
  CHECK(problem([](cluster_options& o) { o.nodes[1].id = "A"; }) == "node id 'A' is given twice");
  CHECK(problem([](cluster_options& o) { o.nodes[1].id = ""; }) == "a node id is empty");
  CHECK(problem([](cluster_options& o) { o.nodes[1].id = "B C"; })
        == "node id 'B C' has a byte other than A-Z a-z 0-9 . _ -");
  CHECK(problem([](cluster_options& o) { o.nodes[1].host = ""; }) == "node B: a host is empty");
  CHECK(problem([](cluster_options& o) { o.nodes[1].host = "a b"; })
        == "node B: host 'a b' has a space, a control byte or '#'");
  CHECK(problem([](cluster_options& o) { o.nodes[1].port = 0; })
        == "node B: port 0; the gateway needs a port from 1 to 65535");
  CHECK(problem([](cluster_options& o) { o.nodes[1].port = 7101; })
        == "nodes A and B share the address 127.0.0.1:7101");
  CHECK(problem([](cluster_options& o) { o.node_id = "C"; }) == "node_id 'C' is none of the nodes");
  CHECK(problem([](cluster_options& o) { o.node_id.clear(); })
        == "node_id is empty: which node is this?");
  CHECK(problem([](cluster_options& o) { o.map.owners.clear(); }) == "the shard map has no shards");
  CHECK(problem([](cluster_options& o) { o.map.owners.resize(70000, "A"); })
        == "the shard map has 70000 shards; at most 65536");
  CHECK(problem([](cluster_options& o) { o.map.version = 0; })
        == "the shard map's version is 0; versions start at 1");
  CHECK(problem([](cluster_options& o) { o.map.owners[700] = "C"; })
        == "shard 700's owner 'C' is no node");
  CHECK(problem([](cluster_options& o) { o.heartbeat_interval = 0ms; })
        == "heartbeat_interval is 0 ms; it must be from 1 ms to one day");
  CHECK(problem([](cluster_options& o) { o.ping_interval = -1ms; })
        == "ping_interval is -1 ms; it must be from 1 ms to one day");
  CHECK(problem([](cluster_options& o) { o.connect_timeout = 25h; })
        == "connect_timeout is 90000000 ms; it must be from 1 ms to one day");
  CHECK(problem([](cluster_options& o) { o.heartbeat_timeout = 500ms; })
        == "heartbeat_timeout (500 ms) must be above heartbeat_interval (1000 ms), or every "
           "quiet connection is closed");
  CHECK(problem([](cluster_options& o) { o.remote_timeout = -1ms; })
        == "remote_timeout is -1 ms; it must be from 0 (the runtime's request_timeout) to one day");
  CHECK(problem([](cluster_options& o) { o.max_in_flight_per_peer = 0; })
        == "max_in_flight_per_peer is 0; no command could be forwarded");
  CHECK(problem([](cluster_options& o) { o.max_in_flight_per_peer = std::size_t{1} << 32; })
        == "max_in_flight_per_peer is 4294967296; at most 4294967295");
  CHECK(problem([](cluster_options& o) { o.middleman_workers = 2000; })
        == "middleman_workers is 2000; at most 1024");
}

TEST_CASE("load_cluster_config reads a file and names it in its errors", "[unit][cluster]") {
  test::temp_dir dir;
  auto path = dir.sub("cluster.conf");
  {
    std::ofstream out{path};
    out << two_nodes;
  }
  auto opts = load_cluster_config(path, "A");
  REQUIRE(opts);
  CHECK(opts->map.version == 3);

  auto missing = load_cluster_config(dir.sub("nope.conf"), "A");
  REQUIRE_FALSE(missing);
  CHECK(missing.error().code == errc::invalid_argument);
  CHECK(missing.error().context == dir.sub("nope.conf"));

  auto a_dir = load_cluster_config(dir.path(), "A");
  REQUIRE_FALSE(a_dir);
  CHECK(a_dir.error().message == "the cluster config is missing or not a file");

  {
    std::ofstream out{path};
    out << two_nodes << "frobnicate 1\n";
  }
  auto bad = load_cluster_config(path, "A");
  REQUIRE_FALSE(bad);
  CHECK(bad.error().message.rfind("line 8: unknown key 'frobnicate'", 0) == 0);
  CHECK(bad.error().context == path);
}

namespace {

cluster_status sample_status() {
  cluster_status st;
  st.node_id = "A";
  st.map_version = 3;
  st.map_digest = 0x0123456789abcdefull;
  st.shards = 1024;
  st.owned_shards = 512;
  st.dropped_messages = 2;
  peer_status b;
  b.id = "B";
  b.host = "127.0.0.1";
  b.port = 7102;
  b.state = "up";
  b.since_ns = 1'796'590'800'000'000'000; // 2026-12-06T21:00:00Z
  b.in_flight = 3;
  b.forwarded = 120;
  b.received = 118;
  b.failures = 1;
  b.rtt_us_bounds = {100, 1000};
  b.rtt_us_buckets = {5, 110, 5};
  b.rtt_p50_us = 180;
  b.rtt_p99_us = 950;
  peer_status c;
  c.id = "C";
  c.host = "::1";
  c.port = 7103;
  c.state = "refused";
  c.reason = "map version 3 here, 4 there \"C\"\n";
  c.dropped = 7;
  st.peers = {b, c};
  return st;
}

} // namespace

TEST_CASE("the status table shows the node, the map and one row per peer", "[unit][cluster]") {
  auto text = to_text(sample_status());
  INFO(text);
  CHECK(text.rfind("node A: map version 3, digest 0123456789abcdef, 1024 shards, 512 owned here, "
                   "2 messages dropped from unknown senders\n",
                   0)
        == 0);
  CHECK(text.find("peer  address ") != std::string::npos);
  CHECK(text.find("B     127.0.0.1:7102  up       2026-12-06T21:00:00Z") != std::string::npos);
  CHECK(text.find("C     [::1]:7103      refused  -") != std::string::npos);
  CHECK(text.find("map version 3 here") != std::string::npos);
  CHECK(std::count(text.begin(), text.end(), '\n') == 4); // the reason's newline is a space

  cluster_status alone;
  alone.node_id = "solo";
  CHECK(to_text(alone).find("no peers\n") != std::string::npos);
}

TEST_CASE("the status JSON is one object with every field", "[unit][cluster]") {
  auto st = sample_status();
  auto json = to_json(st);
  rapidjson::Document d;
  d.Parse(json.c_str(), json.size());
  REQUIRE_FALSE(d.HasParseError());
  REQUIRE(d.IsObject());
  CHECK(std::string{d["node_id"].GetString()} == "A");
  CHECK(d["map_version"].GetUint64() == 3);
  CHECK(std::string{d["map_digest"].GetString()} == "0123456789abcdef");
  CHECK(d["shards"].GetUint() == 1024);
  CHECK(d["owned_shards"].GetUint() == 512);
  CHECK(d["dropped_messages"].GetUint64() == 2);
  const auto& peers = d["peers"];
  REQUIRE(peers.Size() == 2);
  CHECK(std::string{peers[0]["id"].GetString()} == "B");
  CHECK(peers[0]["port"].GetUint() == 7102);
  CHECK(peers[0]["since_ns"].GetInt64() == st.peers[0].since_ns);
  CHECK(peers[0]["forwarded"].GetUint64() == 120);
  CHECK(peers[0]["rtt_us_buckets"].Size() == 3);
  CHECK(peers[0]["rtt_us_buckets"][1].GetUint64() == 110);
  CHECK(peers[0]["rtt_us_bounds"][1].GetUint64() == 1000);
  CHECK(peers[0]["rtt_p99_us"].GetUint64() == 950);
  CHECK(std::string{peers[1]["reason"].GetString()} == st.peers[1].reason);
  CHECK(peers[1]["dropped"].GetUint64() == 7);
}
