// The cluster config parser (cairn/runtime/cluster.hpp), as an outsider and
// as node "A": a bad file is invalid_argument; a file that parses is valid,
// and to_config_text writes it back to a file that parses to the same
// cluster and is written the same again.

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "cairn/runtime/cluster.hpp"
#include "fuzz_check.hpp"

using namespace cairn;

namespace {

bool same(const cluster_options& a, const cluster_options& b) {
  if (a.node_id != b.node_id || a.nodes.size() != b.nodes.size() || a.map.version != b.map.version
      || a.map.owners != b.map.owners || a.heartbeat_interval != b.heartbeat_interval
      || a.heartbeat_timeout != b.heartbeat_timeout || a.ping_interval != b.ping_interval
      || a.connect_timeout != b.connect_timeout || a.remote_timeout != b.remote_timeout
      || a.max_in_flight_per_peer != b.max_in_flight_per_peer
      || a.middleman_workers != b.middleman_workers)
    return false;
  for (std::size_t i = 0; i < a.nodes.size(); ++i)
    if (a.nodes[i].id != b.nodes[i].id || a.nodes[i].host != b.nodes[i].host
        || a.nodes[i].port != b.nodes[i].port)
      return false;
  return true;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view text{reinterpret_cast<const char*>(data), size};
  for (const std::string node : {"", "A"}) {
    auto opts = parse_cluster_config(text, node);
    if (!opts) {
      CAIRN_FUZZ_CHECK(opts.error().code == errc::invalid_argument,
                       "a bad cluster config is invalid_argument");
      continue;
    }
    CAIRN_FUZZ_CHECK(opts->node_id == node, "the node id is the one asked for");
    if (!node.empty())
      CAIRN_FUZZ_CHECK(validate(*opts).has_value(), "a parsed config is valid");
    CAIRN_FUZZ_CHECK(opts->map.shards() >= 1 && opts->map.shards() <= cluster_limits::max_shards,
                     "a parsed map has from 1 to max_shards shards");
    auto written = to_config_text(*opts);
    auto back = parse_cluster_config(written, node);
    CAIRN_FUZZ_CHECK(back.has_value(), "a written config parses");
    CAIRN_FUZZ_CHECK(same(*opts, *back), "a written config parses to the same cluster");
    CAIRN_FUZZ_CHECK(back->map.digest() == opts->map.digest(), "and the same map digest");
    CAIRN_FUZZ_CHECK(to_config_text(*back) == written, "and is written the same again");
  }
  return 0;
}
