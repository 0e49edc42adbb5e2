// `cairn cluster status`'s parser of what a node's GET /cluster answers
// (cairn/tools/cluster_status.hpp): bytes from the network. A bad answer is
// invalid_argument; one that parses is written by cairn::to_json to JSON
// that parses to the same status, and renders as a table.

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "cairn/tools/cluster_status.hpp"
#include "fuzz_check.hpp"

using namespace cairn;

namespace {

bool same(const peer_status& a, const peer_status& b) {
  return a.id == b.id && a.host == b.host && a.port == b.port && a.state == b.state
         && a.since_ns == b.since_ns && a.reason == b.reason && a.in_flight == b.in_flight
         && a.forwarded == b.forwarded && a.received == b.received && a.failures == b.failures
         && a.dropped == b.dropped && a.rtt_us_buckets == b.rtt_us_buckets
         && a.rtt_p50_us == b.rtt_p50_us && a.rtt_p99_us == b.rtt_p99_us
         && a.rtt_us_bounds == b.rtt_us_bounds;
}

bool same(const cluster_status& a, const cluster_status& b) {
  if (a.node_id != b.node_id || a.map_version != b.map_version || a.map_digest != b.map_digest
      || a.shards != b.shards || a.owned_shards != b.owned_shards
      || a.dropped_messages != b.dropped_messages || a.peers.size() != b.peers.size())
    return false;
  for (std::size_t i = 0; i < a.peers.size(); ++i)
    if (!same(a.peers[i], b.peers[i]))
      return false;
  return true;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view json{reinterpret_cast<const char*>(data), size};
  auto status = tools::parse_cluster_status(json);
  if (!status) {
    CAIRN_FUZZ_CHECK(status.error().code == errc::invalid_argument,
                     "a bad cluster status is invalid_argument");
    return 0;
  }
  auto written = to_json(*status);
  auto back = tools::parse_cluster_status(written);
  CAIRN_FUZZ_CHECK(back.has_value(), "a written cluster status parses");
  CAIRN_FUZZ_CHECK(same(*status, *back), "a written cluster status parses to the same status");
  CAIRN_FUZZ_CHECK(to_json(*back) == written, "and is written the same again");
  CAIRN_FUZZ_CHECK(!to_text(*status).empty(), "it renders as a table");
  return 0;
}
