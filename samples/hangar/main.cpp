// hangar demo [--seed N] [--data DIR] [--seconds S]   the scripted demo (scripts/demo)
// hangar demo --cluster N [--seed N] [--data DIR] [--seconds S]   the same service on N nodes
// hangar demo --cluster N --standby [--replication async|sync] ...  each node with a standby:
//                                                    kill an owner, promote its standby, rejoin
// hangar serve --data DIR                            line commands on stdin
// hangar what-if --data DIR [--threshold N]          a stricter breaker over the recorded groups
// hangar node --node ID --config FILE --data DIR [--metrics HOST:PORT]
//                                                    one node of `demo --cluster` (internal)
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <string>

#include "hangar/demo.hpp"
#include "hangar/what_if.hpp"

int main(int argc, char** argv) {
  auto usage = [] {
    std::fprintf(stderr, "usage: hangar demo [--cluster N [--standby [--replication async|sync]]]"
                         " [--seed N] [--data DIR] [--seconds S]\n"
                         "       hangar serve --data DIR\n"
                         "       hangar what-if --data DIR [--threshold N]\n");
    return 2;
  };
  if (argc < 2)
    return usage();
  std::string cmd = argv[1];
  hangar::demo_options demo;
  std::string data, node_id, config, metrics;
  int cluster = 0;
  bool standby = false, async_replication = false, replication_given = false;
  unsigned long threshold = 3;
  for (int i = 2; i < argc; ++i) {
    std::string flag = argv[i];
    if (cmd == "demo" && flag == "--standby") { // the one flag without a value
      standby = true;
      continue;
    }
    if (i + 1 >= argc)
      return usage();
    std::string value = argv[++i];
    char* end = nullptr;
    if (flag == "--data") {
      data = value;
    } else if (flag == "--seed") {
      demo.seed = std::strtoull(value.c_str(), &end, 10);
      if (*end != '\0')
        return usage();
    } else if (flag == "--threshold") {
      threshold = std::strtoul(value.c_str(), &end, 10);
      if (*end != '\0' || threshold == 0 || threshold > 1000)
        return usage();
    } else if (flag == "--seconds") {
      demo.seconds = std::strtod(value.c_str(), &end);
      if (*end != '\0' || demo.seconds <= 0)
        return usage();
    } else if (flag == "--cluster") {
      auto n = std::strtol(value.c_str(), &end, 10);
      if (*end != '\0' || n < 2 || n > 9) {
        std::fprintf(stderr, "hangar: --cluster takes 2 to 9 nodes\n");
        return 2;
      }
      cluster = static_cast<int>(n);
    } else if (cmd == "demo" && flag == "--replication") {
      if (value != "async" && value != "sync")
        return usage();
      async_replication = value == "async";
      replication_given = true;
    } else if (cmd == "node" && flag == "--node") {
      node_id = value;
    } else if (cmd == "node" && flag == "--config") {
      config = value;
    } else if (cmd == "node" && flag == "--metrics") {
      metrics = value;
    } else {
      return usage();
    }
  }
  if ((standby || replication_given) && cluster == 0) {
    std::fprintf(stderr, "hangar: --standby and --replication go with --cluster N\n");
    return 2;
  }
  if (replication_given && !standby) {
    std::fprintf(stderr, "hangar: --replication goes with --standby\n");
    return 2;
  }
  if (cmd == "demo" && cluster > 0) {
    ::setenv("SPDLOG_LEVEL", "warn", 0); // inherited by the nodes, whose logs go to files
    hangar::cluster_demo_options co;
    co.seed = demo.seed;
    co.seconds = demo.seconds;
    co.speed = demo.speed;
    co.nodes = cluster;
    co.standby = standby;
    co.async_replication = async_replication;
    if (!data.empty())
      co.data_dir = data;
    std::error_code ec;
    co.self_path = std::filesystem::read_symlink("/proc/self/exe", ec).string();
    if (ec)
      co.self_path = argv[0];
    auto r = hangar::run_cluster_demo(co, std::cout);
    if (!r) {
      std::fprintf(stderr, "hangar: %s\n", r.error().to_string().c_str());
      return 1;
    }
    if (standby) {
      // Under async a failover may lose what the standby had not acknowledged,
      // and those events are in the old owner's file of cut events.
      if (r->missing > (async_replication ? r->missing_in_cut : 0))
        return 3;
      if (!r->node_killed || !r->promoted || r->served_by_promoted == 0 || !r->rejoined
          || !r->digests_equal) {
        std::fprintf(stderr, "hangar: the scenario did not run to its end (see above)\n");
        return 4;
      }
      return 0;
    }
    if (r->missing > 0)
      return 3; // an acknowledged event is lost
    if (!r->node_killed || !r->unavailable_seen || !r->restarted) {
      std::fprintf(stderr, "hangar: the scenario did not run to its end (see above)\n");
      return 4;
    }
    return 0;
  }
  if (cmd == "demo") {
    ::setenv("SPDLOG_LEVEL", "warn", 0); // the demo's own output tells the story
    if (!data.empty())
      demo.data_dir = data;
    auto r = hangar::run_demo(demo, std::cout);
    if (!r) {
      std::fprintf(stderr, "hangar: %s\n", r.error().to_string().c_str());
      return 1;
    }
    return 0;
  }
  if (cmd == "what-if" && !data.empty())
    return hangar::what_if(data, static_cast<std::uint32_t>(threshold), std::cout);
  if (cmd == "serve" && !data.empty())
    return hangar::serve(data, std::cin, std::cout);
  if (cmd == "node" && !node_id.empty() && !config.empty() && !data.empty())
    return hangar::run_node(node_id, config, data, metrics, std::cin, std::cout);
  return usage();
}
