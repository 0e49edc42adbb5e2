// `hangar demo --cluster N` and `hangar node`: the hangar service on a cluster
// of N nodes on 127.0.0.1 (docs/hangar.md#running-as-a-cluster).
//
// Node A runs in this process and drives the load: every tool invocation goes
// through A's runtime, which serves A's providers itself and forwards the
// others to their owner's gateway. Nodes B, C, ... are child processes of the
// hangar binary (`hangar node ...`). Membership is static (the config file),
// so the driver is a member, not a client outside the cluster.
#include <chrono>
#include <iomanip>
#include <istream>
#include <map>
#include <ostream>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "cairn/runtime/cluster.hpp"
#include "cluster_support.hpp"
#include "hangar/demo.hpp"
#include "hangar/serve_line.hpp"
#include "hangar/service.hpp"

namespace hangar {

using namespace detail;

int run_node(const std::string& node_id, const std::string& config, const std::string& data_dir,
             const std::string& metrics_address, std::istream& in, std::ostream& out) {
  auto cluster = cairn::load_cluster_config(config, node_id);
  if (!cluster) {
    out << "error " << cluster.error().to_string() << std::endl;
    return 1;
  }
  service_options so;
  so.data_dir = data_dir;
  so.speed = 10;
  so.metrics_address = metrics_address;
  so.cluster = *cluster;
  so.cluster_admin = true;
  auto svc = service::start(so);
  if (!svc) {
    out << "error " << svc.error().to_string() << std::endl;
    return 1;
  }
  out << "ready " << (*svc)->runtime().metrics_endpoint() << std::endl;
  for (std::string line; std::getline(in, line);) {
    if (line == "replication") {
      out << replication_line((*svc)->runtime()) << std::endl;
      continue;
    }
    auto req = parse_serve_line(line);
    if (!req)
      out << "error " << req.error().to_string() << std::endl;
    else if (*req && (*req)->what == serve_request::kind::quit)
      break;
    else if (*req)
      out << serve_answer(**svc, **req) << std::endl;
  }
  (void)(*svc)->settle(10s);
  (*svc)->shutdown();
  return 0;
}

cairn::result<cluster_demo_report> run_cluster_demo(const cluster_demo_options& opts,
                                                    std::ostream& out) {
  if (opts.nodes < 2 || opts.nodes > 9)
    return cairn::fail(cairn::errc::invalid_argument, "--cluster takes 2 to 9 nodes");
  if (opts.standby)
    return run_standby_demo(opts, out);
  if (auto ok = fresh_data_dir(opts.data_dir); !ok)
    return tl::unexpected(ok.error());

  // The nodes: ids A, B, ..., a gateway port and a metrics port each.
  std::vector<cairn::cluster_node> nodes;
  std::map<std::string, std::string> metrics;
  for (int i = 0; i < opts.nodes; ++i)
    if (auto ok = add_local_node(nodes, metrics, std::string(1, static_cast<char>('A' + i))); !ok)
      return tl::unexpected(ok.error());
  auto cluster = cairn::make_cluster(nodes, "A");
  auto config = write_cluster_config(cluster, opts.data_dir);
  if (!config)
    return tl::unexpected(config.error());
  demo_nodes processes{opts, *config, metrics};
  auto node_dir = [&](const std::string& id) { return processes.dir(id); };
  out << "hangar demo --cluster " << opts.nodes << ": seed " << opts.seed << ", data in "
      << opts.data_dir << "\ncluster config: " << *config << "  (try: cairn cluster map " << *config
      << ")\n";
  for (const auto& n : nodes)
    out << "  node " << n.id << "  gateway " << n.host << ':' << n.port << "  metrics "
        << metrics[n.id] << "  data " << node_dir(n.id)
        << (n.id == "A" ? "  (this process: drives the load)" : "") << '\n';

  // Nodes B, C, ...: child processes; A: here.
  auto started = processes.start(cluster);
  if (!started)
    return tl::unexpected(started.error());
  auto& svc = **started;
  auto elapsed = [&] { return processes.elapsed(); };
  out << "all " << opts.nodes << " nodes up after " << std::fixed << std::setprecision(2)
      << elapsed() << " s (cairn cluster status " << metrics["A"] << ")\n";

  // The providers: three per node, picked by the shard map so every node
  // owns some (the names are the single-node demo's families).
  auto providers = start_providers(svc, cluster, opts.nodes);
  if (!providers)
    return tl::unexpected(providers.error());
  auto& tallies = *providers;
  out << "\nproviders by owner (stream provider-<id>, shard of " << cluster.map.owners.size()
      << "):\n";
  for (const auto& n : nodes) {
    out << "  node " << n.id << ":";
    for (const auto& [id, t] : tallies)
      if (t.owner == n.id)
        out << "  " << id << " (shard " << t.shard << ")";
    out << '\n';
  }
  out << "no provider groups in cluster mode: the group bridge reads the node-local status "
         "projection (docs/hangar.md#running-as-a-cluster)\n\n";

  cluster_demo_report report;
  const std::string victim = nodes[1].id;
  bool restart_done = false;
  double next_line = 1;
  auto summary = [&](double t) {
    out << "t=" << std::setw(4) << std::setprecision(1) << t << " s  acknowledged";
    for (const auto& n : nodes) {
      std::uint64_t acked = 0, unavailable = 0;
      for (const auto& [id, ta] : tallies)
        if (ta.owner == n.id) {
          acked += ta.acknowledged;
          unavailable += ta.unavailable;
        }
      out << "  " << n.id << ' ' << std::setw(5) << acked;
      if (unavailable > 0)
        out << " (" << unavailable << " unavailable)";
    }
    out << '\n';
  };
  std::uint64_t round = 0, summarized = 0;
  while (elapsed() < opts.seconds) {
    auto t = elapsed();
    if (!report.node_killed && t >= opts.seconds * 0.3) {
      out << ">>> SIGKILL node " << victim << " (pid " << processes.child(victim)->pid() << ")\n";
      processes.child(victim)->kill(SIGKILL);
      report.node_killed = true;
      for (auto& [id, ta] : tallies)
        ta.error_printed = false;
    }
    if (report.node_killed && !restart_done && t >= opts.seconds * 0.55) {
      out << ">>> restarting node " << victim << " on the same port " << nodes[1].port << '\n';
      auto r0 = clock_type::now();
      if (auto ok = processes.spawn(victim); !ok)
        return tl::unexpected(ok.error());
      if (!wait_up(svc.runtime(), {victim}, 20s))
        return cairn::fail(cairn::errc::unavailable,
                           "node " + victim + " did not reconnect within 20 s of its restart");
      out << ">>> node " << victim << " is up again after "
          << std::chrono::duration<double>(clock_type::now() - r0).count() << " s\n";
      restart_done = true;
    }
    ++round;
    for (auto& [id, ta] : tallies) {
      auto r = invoke_counted(svc, id, round, ta);
      if (r) {
        if (restart_done && ta.owner == victim)
          report.restarted = true;
        continue;
      }
      bool unavailable = r.error().code == cairn::errc::unavailable;
      report.unavailable_seen |= unavailable && ta.owner == victim;
      if (!ta.error_printed) {
        out << "    " << id << " (node " << ta.owner << "): " << r.error().to_string() << '\n';
        ta.error_printed = true;
      }
    }
    if (elapsed() >= next_line) {
      summary(elapsed());
      summarized = round;
      next_line += 1;
    }
    std::this_thread::sleep_for(40ms);
  }
  if (summarized != round)
    summary(elapsed());
  if (auto status = svc.runtime().cluster())
    out << "\nnode A's view of the cluster (cairn cluster status " << metrics["A"] << "):\n"
        << cairn::to_text(*status);

  out << "\n>>> stopping the nodes\n";
  processes.stop_all(out);
  (void)svc.settle(10s);
  started->reset();

  out << "\nacknowledged invocations against the owner's store (opened read-only):\n"
      << "  provider   owner  acknowledged  unavailable  in the store  missing\n";
  for (const auto& [id, ta] : tallies) {
    auto stored = stored_correlations(node_dir(ta.owner), id);
    if (!stored)
      return cairn::fail(stored.error().code,
                         "open " + node_dir(ta.owner) + ": " + stored.error().to_string());
    std::uint64_t found = 0;
    for (const auto& c : ta.correlations)
      found += stored->count(c);
    std::uint64_t missing = ta.acknowledged - found;
    report.acknowledged += ta.acknowledged;
    report.missing += missing;
    out << "  " << std::left << std::setw(10) << id << ' ' << std::setw(6) << ta.owner << std::right
        << std::setw(13) << ta.acknowledged << std::setw(13) << ta.unavailable << std::setw(14)
        << found << std::setw(9) << missing << (missing > 0 ? "  LOST" : "") << '\n';
  }
  out << "\nkey moments: node " << victim << " killed " << (report.node_killed ? "yes" : "no")
      << ", its providers answered unavailable " << (report.unavailable_seen ? "yes" : "no")
      << ", restarted and served again " << (report.restarted ? "yes" : "no") << '\n';
  if (report.missing == 0)
    out << "every acknowledged event is there: " << report.acknowledged
        << " acknowledged invocations, each in its owner's store\n";
  else
    out << "LOSS: " << report.missing << " of " << report.acknowledged
        << " acknowledged invocations are missing from their owner's store\n";
  return report;
}

} // namespace hangar
