// The cluster's wire, between two processes: every message type survives the
// trip through CAF's serialization, and bad peers (garbage bytes, unknown
// types, commands without a hello, bad payloads) leave a node running.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <random>

#include <caf/all.hpp>
#include <caf/io/middleman.hpp>
#include <catch2/catch.hpp>
#include <httplib.h>

#include "cairn/actors/gateway.hpp"
#include "cairn/actors/system.hpp"
#include "cairn/persistence/codec.hpp"
#include "cairn/runtime/cluster.hpp"
#include "support/node_process.hpp"
#include "support/tally.hpp"
#include "support/temp_dir.hpp"

namespace {

using namespace std::chrono_literals;
using namespace cairn::actors;
using cairn::test::node_process;

/// A type only this process registers: the node cannot deserialize it.
struct unknown_to_nodes {
  std::string text;
};
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, unknown_to_nodes& x) {
  return f(caf::meta::type_name("cairn.test.unknown"), x.text);
}

struct peer_config : caf::actor_system_config {
  peer_config() {
    load<caf::io::middleman>();
    add_cluster_message_types(*this);
    add_message_type<unknown_to_nodes>("cairn.test.unknown");
  }
};

/// A bare CAF node that ends the way the runtime does (system.hpp says why).
struct peer_system {
  peer_config cfg;
  caf::actor_system sys{cfg};
  ~peer_system() { cairn::actors::stop_caf_internal_actors(sys, std::chrono::seconds{5}); }
};

command_msg full_command() {
  command_msg m;
  m.category = "tally";
  m.id = "id-1";
  m.payload = std::string{"\0\1\2payload\xff", 11};
  m.command_id = "c-1";
  m.correlation_id = "corr";
  m.causation_id = "cause";
  m.tenant = "t";
  m.user = "u";
  m.subject = "s";
  m.deadline_ns = -42;
  m.query = true;
  m.replay = true;
  m.to_version = 7;
  m.as_of_ns = 1234567890123;
  return m;
}

reply_msg full_reply() {
  reply_msg r;
  r.code = 3;
  r.message = "why";
  r.context = "where";
  r.first_version = 1;
  r.last_version = 2;
  r.first_position = 3;
  r.last_position = 4;
  r.duplicate = true;
  r.events = {{"a", 2, std::string{"\0x", 2}}, {"b", 1, ""}};
  r.state = "state bytes";
  return r;
}

hello_msg full_hello() {
  hello_msg h;
  h.protocol = cluster_protocol;
  h.node = "B";
  h.map_version = 9;
  h.map_digest = 0xfedcba9876543210ull;
  h.shards = 1024;
  h.refusal = "no";
  return h;
}

/// Writes `bytes` to a fresh TCP connection to 127.0.0.1:`port`, then closes it.
void send_raw(std::uint16_t port, const std::string& bytes) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  REQUIRE(fd >= 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(port);
  REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  CHECK(::write(fd, bytes.data(), bytes.size()) == static_cast<ssize_t>(bytes.size()));
  ::usleep(50000); // let the node read it before the close
  ::close(fd);
}

} // namespace

TEST_CASE("every cluster message type round-trips between two processes",
          "[integration][cluster]") {
  auto port = cairn::test::free_port();
  node_process echo;
  REQUIRE(echo.start(CAIRN_TEST_NODE_PATH, {"--echo", std::to_string(port)}));
  REQUIRE(echo.wait_line("ready", 20s) == "ready");
  {
    peer_system peer;
    auto& sys = peer.sys;
    auto remote = sys.middleman().remote_actor("127.0.0.1", port);
    REQUIRE(remote);
    caf::scoped_actor self{sys};
    auto cmd = full_command();
    auto reply = full_reply();
    auto hello = full_hello();
    // The messages as the gateways send them, each field set; a batch of
    // two items, the second with every field at its default.
    forward_batch commands;
    commands.items.push_back({77, 1500, cmd});
    commands.items.push_back({});
    reply_batch replies;
    replies.items.push_back({78, reply});
    replies.items.push_back({});
    self->send(*remote, hello_atom::value, hello);
    self->send(*remote, forward_atom::value, commands);
    self->send(*remote, forwarded_atom::value, replies);
    self->send(*remote, ping_atom::value, std::uint64_t{79});
    self->send(*remote, pong_atom::value, std::uint64_t{80});
    self->send(*remote, send_batches_atom::value);
    int got = 0;
    auto same = [](auto a, auto b) { return caf::deep_to_string(a) == caf::deep_to_string(b); };
    for (int i = 0; i < 6; ++i)
      self->receive(
        [&](hello_atom, hello_msg& h) {
          CHECK(same(h, hello));
          ++got;
        },
        [&](forward_atom, forward_batch& b) {
          REQUIRE(b.items.size() == 2);
          CHECK(b.items[0].request == 77);
          CHECK(b.items[0].bound_ms == 1500);
          const auto& m = b.items[0].command;
          CHECK(same(m, cmd));
          CHECK(m.payload == cmd.payload);
          CHECK(same(b.items[1], forward_item{}));
          CHECK(same(b, commands));
          ++got;
        },
        [&](forwarded_atom, reply_batch& b) {
          REQUIRE(b.items.size() == 2);
          CHECK(b.items[0].request == 78);
          const auto& r = b.items[0].reply;
          CHECK(same(r, reply));
          CHECK(r.events.at(0).payload == reply.events.at(0).payload);
          CHECK(same(b.items[1], reply_item{}));
          CHECK(same(b, replies));
          ++got;
        },
        [&](send_batches_atom) { ++got; },
        [&](ping_atom, std::uint64_t seq) {
          CHECK(seq == 79);
          ++got;
        },
        [&](pong_atom, std::uint64_t seq) {
          CHECK(seq == 80);
          ++got;
        },
        caf::after(5s) >> [] { FAIL("no echo within 5 s"); });
    CHECK(got == 6);
  }
  CHECK(echo.stop(20s) == 0);
}

TEST_CASE("garbage bytes, unknown types and bad payloads from a peer leave a node running",
          "[integration][cluster]") {
  cairn::test::temp_dir dir;
  std::vector<cairn::cluster_node> nodes{{"A", "127.0.0.1", cairn::test::free_port()},
                                         {"B", "127.0.0.1", cairn::test::free_port()}};
  auto metrics_port = cairn::test::free_port();
  std::string nodes_arg = "A=127.0.0.1:" + std::to_string(nodes[0].port)
                          + ",B=127.0.0.1:" + std::to_string(nodes[1].port);
  node_process a;
  REQUIRE(a.start(CAIRN_TEST_NODE_PATH,
                  {"--node", "A", "--nodes", nodes_arg, "--data", dir.sub("A"), "--shards", "64",
                   "--metrics", "127.0.0.1:" + std::to_string(metrics_port)}));
  REQUIRE(a.wait_line("ready", 20s) == "ready");
  auto map = cairn::make_cluster(nodes, "B", 64).map;
  std::string on_a;
  for (int i = 0; on_a.empty(); ++i)
    if (map.owner_of("tally-" + std::to_string(i)) == "A")
      on_a = std::to_string(i);

  // Raw TCP: random bytes, zeros, a header that announces a huge payload.
  std::mt19937 rng{42};
  std::string noise(4096, '\0');
  for (auto& ch : noise)
    ch = static_cast<char>(rng());
  send_raw(nodes[0].port, noise);
  send_raw(nodes[0].port, std::string(1024, '\0'));
  send_raw(nodes[0].port, std::string(64, '\xff'));

  httplib::Client http{"127.0.0.1", metrics_port};
  auto dropped = [&]() -> std::uint64_t {
    auto res = http.Get("/cluster");
    REQUIRE(res);
    REQUIRE(res->status == 200);
    auto at = res->body.find("\"dropped_messages\":");
    REQUIRE(at != std::string::npos);
    return std::stoull(res->body.substr(at + 19));
  };
  CHECK(dropped() == 0);

  {
    peer_system peer;
    auto& sys = peer.sys;
    auto gw = sys.middleman().remote_actor("127.0.0.1", nodes[0].port);
    REQUIRE(gw);
    caf::scoped_actor self{sys};
    auto command = [&](const std::string& payload) {
      command_msg m;
      m.category = "tally";
      m.id = on_a;
      m.payload = payload;
      return m;
    };
    std::string good;
    cairn::persistence::encode_payload(cairn::test::tally::command{cairn::test::note{"B", 1}},
                                       good);

    // Before any hello: a type the node does not know, a message of an
    // unexpected shape, and a command: all dropped, none answered.
    self->send(*gw, unknown_to_nodes{"boo"});
    self->send(*gw, caf::atom("bogus"), 42);
    auto one = [](std::uint64_t req, std::int64_t bound, command_msg m) {
      forward_batch b;
      b.items.push_back({req, bound, std::move(m)});
      return b;
    };
    self->send(*gw, forward_atom::value, one(1, 1000, command(good)));
    self->receive([&](forwarded_atom, reply_batch&) { FAIL("a reply to a stranger"); },
                  caf::after(500ms) >> [] {});
    CHECK(dropped() >= 2);
    auto before_control = dropped();

    // A hello as node B with the same map is accepted…
    hello_msg hello;
    hello.protocol = cluster_protocol;
    hello.node = "B";
    hello.map_version = map.version;
    hello.map_digest = map.digest();
    hello.shards = static_cast<std::uint32_t>(map.owners.size());
    self->request(*gw, 5s, hello_atom::value, hello)
      .receive([&](hello_msg& answer) { CHECK(answer.refusal.empty()); },
               [&](caf::error& e) { FAIL(sys.render(e)); });
    // …a bad payload is answered with an error that names it…
    self->send(*gw, forward_atom::value, one(2, 5000, command("not cereal")));
    self->receive(
      [&](forwarded_atom, reply_batch& b) {
        REQUIRE(b.items.size() == 1);
        CHECK(b.items[0].request == 2);
        CHECK(b.items[0].reply.code == static_cast<std::uint8_t>(cairn::errc::invalid_argument));
      },
      caf::after(5s) >> [] { FAIL("no answer to a bad payload"); });
    // Its control messages are not for peers: a shutdown, a tick and a
    // status request from the network are dropped.
    self->send(*gw, shutdown_atom::value);
    self->send(*gw, tick_atom::value);
    self->send(*gw, status_atom::value);
    self->send(*gw, send_batches_atom::value);
    // …and the node still serves a good one.
    self->send(*gw, forward_atom::value, one(3, 5000, command(good)));
    self->receive(
      [&](forwarded_atom, reply_batch& b) {
        REQUIRE(b.items.size() == 1);
        CHECK(b.items[0].request == 3);
        const auto& r = b.items[0].reply;
        CHECK(r.ok());
        CHECK(r.events.size() == 1);
      },
      caf::after(5s) >> [] { FAIL("no answer to a good command"); });
    CHECK(dropped() >= before_control + 4);
  }
  CHECK(a.stop(20s) == 0); // alive until asked, and stops cleanly
}

TEST_CASE("a batch of commands from a peer is served in order and answered in capped batches",
          "[integration][cluster]") {
  cairn::test::temp_dir dir;
  std::vector<cairn::cluster_node> nodes{{"A", "127.0.0.1", cairn::test::free_port()},
                                         {"B", "127.0.0.1", cairn::test::free_port()}};
  std::string nodes_arg = "A=127.0.0.1:" + std::to_string(nodes[0].port)
                          + ",B=127.0.0.1:" + std::to_string(nodes[1].port);
  node_process a;
  REQUIRE(a.start(CAIRN_TEST_NODE_PATH,
                  {"--node", "A", "--nodes", nodes_arg, "--data", dir.sub("A"), "--shards", "64"}));
  REQUIRE(a.wait_line("ready", 20s) == "ready");
  auto map = cairn::make_cluster(nodes, "B", 64).map;
  std::string on_a, on_b;
  for (int i = 0; on_a.empty() || on_b.empty(); ++i) {
    auto id = std::to_string(i);
    (map.owner_of("tally-" + id) == "A" ? on_a : on_b) = id;
  }
  {
    peer_system peer;
    auto& sys = peer.sys;
    auto gw = sys.middleman().remote_actor("127.0.0.1", nodes[0].port);
    REQUIRE(gw);
    caf::scoped_actor self{sys};
    hello_msg hello;
    hello.protocol = cluster_protocol;
    hello.node = "B";
    hello.map_version = map.version;
    hello.map_digest = map.digest();
    hello.shards = static_cast<std::uint32_t>(map.owners.size());
    self->request(*gw, 5s, hello_atom::value, hello)
      .receive([&](hello_msg& answer) { CHECK(answer.refusal.empty()); },
               [&](caf::error& e) { FAIL(sys.render(e)); });

    // 200 notes to one aggregate of A's, then one for a stream A does not own.
    constexpr std::uint64_t n = 200;
    forward_batch batch;
    for (std::uint64_t seq = 1; seq <= n; ++seq) {
      command_msg m;
      m.category = "tally";
      m.id = on_a;
      cairn::persistence::encode_payload(cairn::test::tally::command{cairn::test::note{"B", seq}},
                                         m.payload);
      batch.items.push_back({seq, 5000, std::move(m)});
    }
    command_msg elsewhere;
    elsewhere.category = "tally";
    elsewhere.id = on_b;
    batch.items.push_back({n + 1, 5000, elsewhere});
    self->send(*gw, forward_atom::value, batch);

    std::vector<std::uint64_t> order, versions;
    std::size_t batches = 0, largest = 0;
    bool refused = false;
    while (order.size() < n + 1) {
      bool timed_out = false;
      self->receive(
        [&](forwarded_atom, reply_batch& b) {
          ++batches;
          largest = std::max(largest, b.items.size());
          for (auto& item : b.items) {
            order.push_back(item.request);
            if (item.request == n + 1) {
              refused = item.reply.code == static_cast<std::uint8_t>(cairn::errc::unavailable)
                        && item.reply.message.find("does not serve") != std::string::npos;
              continue;
            }
            INFO(item.reply.message);
            CHECK(item.reply.ok());
            versions.push_back(item.reply.last_version);
          }
        },
        caf::after(10s) >> [&] { timed_out = true; });
      REQUIRE_FALSE(timed_out);
    }
    CHECK(refused);
    // Applied in batch order: the notes' versions are 1..n in request order.
    std::vector<std::uint64_t> notes;
    for (auto req : order)
      if (req != n + 1)
        notes.push_back(req);
    std::vector<std::uint64_t> expected(n);
    for (std::uint64_t i = 0; i < n; ++i)
      expected[i] = i + 1;
    CHECK(notes == expected);
    CHECK(versions == expected);
    // The default cap is 64 answers a batch: 200 need four at least.
    CHECK(largest <= 64);
    CHECK(batches >= 4);
    CHECK(batches < n); // batched, not one message per answer
  }
  CHECK(a.stop(20s) == 0);
}
