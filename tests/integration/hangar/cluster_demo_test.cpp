// `hangar demo --cluster 3` end to end, as a user runs it: the hangar binary
// as a process (it starts its own node processes), its exit code and the
// lines that tell the story.

#include <chrono>
#include <fstream>
#include <string>

#include <catch2/catch.hpp>

#include "cairn/runtime/cluster.hpp"
#include "support/node_process.hpp"
#include "support/temp_dir.hpp"

using namespace std::chrono_literals;

TEST_CASE("hangar demo --cluster 3 kills a node, sees unavailable, restarts it and loses no "
          "acknowledged event",
          "[integration][hangar][cluster]") {
  cairn::test::temp_dir dir;
  const auto data = dir.sub("hangar-cluster");
  cairn::test::node_process demo;
  REQUIRE(demo.start(HANGAR_PATH, {"demo", "--cluster", "3", "--seconds", "6", "--data", data}));
  // The last line of a successful run; the whole run is bounded well below 60 s.
  auto last = demo.wait_line("every acknowledged event is there", 50s);
  // Drain what follows (nothing on success) and get the exit code.
  (void)demo.wait_line("\x01", 2s);
  const auto& out = demo.output();
  INFO(out);
  REQUIRE_FALSE(last.empty());
  CHECK(demo.stop(10s) == 0);

  CHECK(out.find("all 3 nodes up") != std::string::npos);
  CHECK(out.find(">>> SIGKILL node B") != std::string::npos);
  CHECK(out.find("(node B): unavailable: owner node B unreachable") != std::string::npos);
  CHECK(out.find(">>> restarting node B on the same port") != std::string::npos);
  CHECK(out.find(">>> node B is up again") != std::string::npos);
  CHECK(out.find("killed yes, its providers answered unavailable yes, restarted and served "
                 "again yes")
        != std::string::npos);
  CHECK(out.find("LOST") == std::string::npos);
  // No provider of A or C failed: only B's shards were affected.
  CHECK(out.find("(node A): ") == std::string::npos);
  CHECK(out.find("(node C): ") == std::string::npos);

  // The config the demo wrote is a valid cluster file of three nodes.
  auto conf = cairn::load_cluster_config(data + "/cluster.conf", "");
  REQUIRE(conf);
  CHECK(conf->nodes.size() == 3);
  CHECK(conf->map.owners.size() == 1024);
}
