// The setup both cluster demos run (cluster_support.hpp).
#include "cluster_support.hpp"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <utility>

namespace hangar::detail {

cairn::result<void> fresh_data_dir(const std::string& dir) {
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::remove_all(dir, ec);
  fs::create_directories(dir, ec);
  if (ec)
    return cairn::fail(cairn::errc::unavailable, "cannot create " + dir);
  return {};
}

cairn::result<void> add_local_node(std::vector<cairn::cluster_node>& to,
                                   std::map<std::string, std::string>& metrics,
                                   const std::string& id) {
  auto port = free_port();
  auto mport = free_port();
  if (!port || !mport)
    return tl::unexpected(!port ? port.error() : mport.error());
  to.push_back({id, "127.0.0.1", *port});
  metrics[id] = "127.0.0.1:" + std::to_string(*mport);
  return {};
}

cairn::result<std::string> write_cluster_config(const cairn::cluster_options& cluster,
                                                const std::string& data_dir) {
  if (auto ok = cairn::validate(cluster); !ok)
    return tl::unexpected(ok.error());
  const std::string config = data_dir + "/cluster.conf";
  std::ofstream f{config};
  f << cairn::to_config_text(cluster);
  if (!f)
    return cairn::fail(cairn::errc::unavailable, "cannot write " + config);
  return config;
}

demo_nodes::demo_nodes(const cluster_demo_options& opts, std::string config,
                       std::map<std::string, std::string> metrics)
    : opts_(opts), config_(std::move(config)), metrics_(std::move(metrics)) {
  // nop
}

std::string demo_nodes::dir(const std::string& id) const { return opts_.data_dir + "/node-" + id; }

cairn::result<void> demo_nodes::spawn(const std::string& id) {
  auto& c = children_[id];
  c = std::make_unique<child_process>();
  const auto log = opts_.data_dir + "/node-" + id + ".log";
  if (auto ok = c->start(opts_.self_path,
                         {"node", "--node", id, "--config", config_, "--data", dir(id), "--metrics",
                          metrics_[id]},
                         log);
      !ok)
    return ok;
  if (c->wait_line("ready", 20s).empty())
    return cairn::fail(cairn::errc::unavailable, "node " + id + " did not start; see " + log);
  return {};
}

cairn::result<std::unique_ptr<service>> demo_nodes::start(const cairn::cluster_options& cluster) {
  // Standbys first: an owner does not serve before it has heard its standby
  // (docs/cluster.md#epochs-and-fencing), so it would wait for one not yet started.
  std::vector<std::string> others;
  for (bool standbys : {true, false})
    for (const auto& n : cluster.nodes) {
      bool is_standby = std::any_of(cluster.nodes.begin(), cluster.nodes.end(),
                                    [&](const auto& o) { return o.standby == n.id; });
      if (n.id != "A" && is_standby == standbys)
        others.push_back(n.id);
    }
  for (const auto& id : others)
    if (auto ok = spawn(id); !ok)
      return tl::unexpected(ok.error());
  service_options so;
  so.data_dir = dir("A");
  so.seed = opts_.seed;
  so.speed = opts_.speed;
  so.metrics_address = metrics_["A"];
  so.cluster = cluster;
  auto started = service::start(so);
  if (!started)
    return started;
  started_at_ = clock_type::now();
  if (!wait_up((*started)->runtime(), others, 20s))
    return cairn::fail(cairn::errc::unavailable, "the nodes did not connect within 20 s");
  return started;
}

child_process* demo_nodes::child(const std::string& id) {
  auto i = children_.find(id);
  return i == children_.end() ? nullptr : i->second.get();
}

void demo_nodes::stop(const std::string& id, std::ostream& out) {
  auto* c = child(id);
  if (c == nullptr || c->pid() <= 0)
    return;
  if (auto rc = c->stop(20s); rc != 0)
    out << "    node " << id << " exited with " << rc << '\n';
}

void demo_nodes::stop_all(std::ostream& out) {
  for (const auto& [id, c] : children_)
    stop(id, out);
}

cairn::result<void> invoke_counted(service& svc, const std::string& id, std::uint64_t round,
                                   tally& ta) {
  auto r = svc.invoke(id, "call", "{\"n\":" + std::to_string(round) + "}");
  if (!r) {
    ++(r.error().code == cairn::errc::unavailable ? ta.unavailable : ta.other_errors);
    return tl::unexpected(r.error());
  }
  ++ta.acknowledged;
  ta.correlations.push_back(*r);
  return {};
}

cairn::result<std::map<std::string, tally>>
start_providers(service& svc, const cairn::cluster_options& cluster, int owners) {
  std::map<std::string, tally> tallies;
  std::map<std::string, int> per_node;
  const char* families[] = {"search-", "math-", "docs-", "files-"};
  for (int i = 1; i <= 64 && tallies.size() < static_cast<std::size_t>(3 * owners); ++i)
    for (const char* f : families) {
      std::string id = f + std::to_string(i);
      const auto& owner = cluster.map.owner_of("provider-" + id);
      if (per_node[owner] >= 3)
        continue;
      ++per_node[owner];
      auto& t = tallies[id];
      t.owner = owner;
      t.shard = cluster.map.shard_of("provider-" + id);
    }
  provider_options po;
  po.health_check_interval_s = 10;
  for (const auto& [id, t] : tallies) {
    if (auto ok = svc.register_provider(id, provider_mode::remote,
                                        {{}, "https://" + id + ".example/mcp", {}}, po);
        !ok)
      return cairn::fail(ok.error().code, "register " + id + ": " + ok.error().to_string());
    if (auto ok = svc.start_provider(id); !ok)
      return cairn::fail(ok.error().code, "start " + id + ": " + ok.error().to_string());
  }
  return tallies;
}

} // namespace hangar::detail
