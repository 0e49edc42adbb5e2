// GET /cluster of the metrics endpoint: the metrics server started on its
// own with a status source, and through a runtime that has no cluster.

#include <atomic>
#include <optional>
#include <stdexcept>
#include <string>

#include <catch2/catch.hpp>
#include <httplib.h>

#include "cairn/persistence/codec.hpp" // before rapidjson: cereal configures it
#include "cairn/runtime/cluster.hpp"
#include "cairn/runtime/runtime.hpp"
#include "metrics_server.hpp"
#include "runtime_support.hpp"
#include "support/temp_dir.hpp"

#include <rapidjson/document.h>

namespace {

cairn::cluster_status fixed_status() {
  cairn::cluster_status st;
  st.node_id = "A";
  st.map_version = 3;
  st.map_digest = 0xfedcba9876543210ull;
  st.shards = 1024;
  st.owned_shards = 512;
  cairn::peer_status b;
  b.id = "B";
  b.host = "127.0.0.1";
  b.port = 7102;
  b.state = "down";
  b.since_ns = 1'796'590'800'000'000'000;
  b.reason = "connection lost";
  b.failures = 4;
  st.peers.push_back(b);
  return st;
}

std::string no_metrics() { return ""; }

} // namespace

TEST_CASE("GET /cluster answers the JSON of the status the source returns",
          "[integration][metrics][cluster]") {
  std::atomic<int> calls{0};
  auto server = cairn::detail::metrics_server::start("127.0.0.1:0", no_metrics, [&] {
    ++calls;
    return std::optional<cairn::cluster_status>{fixed_status()};
  });
  REQUIRE(server);
  httplib::Client client{"http://" + (*server)->endpoint()};
  auto res = client.Get("/cluster");
  REQUIRE(res);
  CHECK(res->status == 200);
  CHECK(res->get_header_value("Content-Type") == "application/json");
  CHECK(res->body == cairn::to_json(fixed_status()) + "\n");
  rapidjson::Document d;
  d.Parse(res->body.c_str(), res->body.size());
  REQUIRE_FALSE(d.HasParseError());
  CHECK(std::string{d["node_id"].GetString()} == "A");
  CHECK(std::string{d["map_digest"].GetString()} == "fedcba9876543210");
  CHECK(std::string{d["peers"][0]["state"].GetString()} == "down");
  CHECK(calls == 1);

  // The status is asked for on every request: it is never cached.
  auto again = client.Get("/cluster");
  REQUIRE(again);
  CHECK(again->status == 200);
  CHECK(calls == 2);

  auto post = client.Post("/cluster", "x", "text/plain");
  REQUIRE(post);
  CHECK(post->status == 405);
  CHECK(calls == 2);
}

TEST_CASE("GET /cluster answers 404 'not clustered' without a cluster",
          "[integration][metrics][cluster]") {
  SECTION("no source") {
    auto server = cairn::detail::metrics_server::start("127.0.0.1:0", no_metrics, {});
    REQUIRE(server);
    httplib::Client client{"http://" + (*server)->endpoint()};
    auto res = client.Get("/cluster");
    REQUIRE(res);
    CHECK(res->status == 404);
    CHECK(res->body == "not clustered\n");
  }
  SECTION("a source that has no status") {
    auto server = cairn::detail::metrics_server::start("127.0.0.1:0", no_metrics, [] {
      return std::optional<cairn::cluster_status>{};
    });
    REQUIRE(server);
    httplib::Client client{"http://" + (*server)->endpoint()};
    auto res = client.Get("/cluster");
    REQUIRE(res);
    CHECK(res->status == 404);
    CHECK(res->body == "not clustered\n");
  }
  SECTION("a runtime started without a cluster") {
    cairn::test::temp_dir dir;
    auto opts = cairn::test::quick_options(dir.path());
    opts.metrics_address = "127.0.0.1:0";
    auto rt = cairn::test::start_runtime(opts);
    httplib::Client client{"http://" + rt->metrics_endpoint()};
    auto res = client.Get("/cluster");
    REQUIRE(res);
    CHECK(res->status == 404);
    CHECK(res->body == "not clustered\n");
    auto metrics = client.Get("/metrics");
    REQUIRE(metrics);
    CHECK(metrics->status == 200);
  }
}

TEST_CASE("a status source that throws gives 500 and the server keeps serving",
          "[integration][metrics][cluster]") {
  std::atomic<bool> fail{true};
  auto server = cairn::detail::metrics_server::start("127.0.0.1:0", no_metrics,
                                                     [&]() -> std::optional<cairn::cluster_status> {
                                                       if (fail)
                                                         throw std::runtime_error{"gateway gone"};
                                                       return fixed_status();
                                                     });
  REQUIRE(server);
  httplib::Client client{"http://" + (*server)->endpoint()};
  auto res = client.Get("/cluster");
  REQUIRE(res);
  CHECK(res->status == 500);
  fail = false;
  auto ok = client.Get("/cluster");
  REQUIRE(ok);
  CHECK(ok->status == 200);
}
