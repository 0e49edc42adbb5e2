// `cairn cluster status|map|locate`: a node's cluster status fetched from its
// metrics endpoint, and the shard map of a cluster config file.

#include <algorithm>
#include <chrono>
#include <iostream>
#include <map>
#include <string>
#include <vector>

#include <httplib.h>

#include "cairn/model/stream_name.hpp"
#include "cairn/runtime/cluster.hpp"
#include "cairn/tools/cli.hpp"
#include "cairn/tools/cluster_status.hpp"
#include "output.hpp"

namespace cairn::tools::detail {

namespace {

/// How long `cluster status` waits to connect, and then for each read.
constexpr std::chrono::seconds fetch_timeout{5};

struct http_address {
  std::string host;
  int port = 0;
};

/// "host:port" or "[v6]:port".
result<http_address> parse_address(const std::string& address) {
  auto bad = [&] {
    return fail(errc::invalid_argument,
                "not HOST:PORT (a node's metrics address, e.g. 127.0.0.1:9464)", address);
  };
  auto colon = address.rfind(':');
  if (colon == std::string::npos)
    return bad();
  http_address out;
  out.host = address.substr(0, colon);
  if (out.host.size() >= 2 && out.host.front() == '[' && out.host.back() == ']')
    out.host = out.host.substr(1, out.host.size() - 2);
  auto port = address.substr(colon + 1);
  if (out.host.empty() || port.empty() || port.size() > 5
      || port.find_first_not_of("0123456789") != std::string::npos)
    return bad();
  out.port = std::stoi(port);
  if (out.port == 0 || out.port > 65535)
    return bad();
  return out;
}

/// What went wrong, for a person: httplib's names are terse ("Connection").
std::string why(httplib::Error e) {
  switch (e) {
    case httplib::Error::Connection: return "cannot connect";
    case httplib::Error::ConnectionTimeout: return "no connection within the timeout";
    case httplib::Error::Read: return "reading the answer failed or timed out";
    case httplib::Error::Write: return "sending the request failed";
    default: return httplib::to_string(e);
  }
}

/// The body of GET /cluster at `address`, at most max_cluster_status_bytes.
result<std::string> fetch_status(const std::string& address) {
  auto where = parse_address(address);
  if (!where)
    return tl::unexpected(where.error());
  httplib::Client client{where->host, where->port};
  client.set_connection_timeout(fetch_timeout);
  client.set_read_timeout(fetch_timeout);
  client.set_write_timeout(fetch_timeout);
  std::string body;
  bool too_big = false;
  auto res = client.Get("/cluster", [&](const char* data, std::size_t n) {
    if (body.size() + n > max_cluster_status_bytes) {
      too_big = true;
      return false;
    }
    body.append(data, n);
    return true;
  });
  std::string url = "http://" + address + "/cluster";
  if (too_big)
    return fail(errc::unavailable,
                "the answer is larger than " + std::to_string(max_cluster_status_bytes >> 20)
                  + " MiB",
                url);
  if (!res)
    return fail(errc::unavailable, "cannot get the cluster status: " + why(res.error()), url);
  if (res->status == 404 && body == "not clustered\n")
    return fail(errc::rejected, "the node runs without a cluster", url);
  if (res->status != 200)
    return fail(errc::unavailable,
                "the node answered HTTP " + std::to_string(res->status)
                  + " (is this a cairn metrics address?)",
                url);
  return body;
}

/// POSTs to an operator path of the node at `address` (no body); the text
/// it answers, or its refusal.
result<std::string> post_action(const std::string& address, const std::string& path) {
  auto where = parse_address(address);
  if (!where)
    return tl::unexpected(where.error());
  httplib::Client client{where->host, where->port};
  client.set_connection_timeout(fetch_timeout);
  client.set_read_timeout(std::chrono::seconds{60}); // a promotion waits for the journal
  client.set_write_timeout(fetch_timeout);
  std::string url = "http://" + address + path;
  auto res = client.Post(path.c_str());
  if (!res)
    return fail(errc::unavailable, "cannot reach the node: " + why(res.error()), url);
  auto body = res->body.substr(0, 4096);
  while (!body.empty() && body.back() == '\n')
    body.pop_back();
  if (res->status == 404 || res->status == 405)
    return fail(errc::rejected,
                "the node does not take operator steps (runtime_options::cluster_admin is off)",
                url);
  if (res->status != 200)
    return fail(errc::rejected, body.empty() ? "HTTP " + std::to_string(res->status) : body, url);
  return body;
}

/// "0-511", "0-3,7,9-12": the shards `node` owns, as ranges.
std::vector<std::string> ranges_of(const shard_map& map, const std::string& node) {
  std::vector<std::string> out;
  const auto& owners = map.owners;
  for (std::size_t lo = 0; lo < owners.size(); ++lo) {
    if (owners[lo] != node)
      continue;
    auto hi = lo;
    while (hi + 1 < owners.size() && owners[hi + 1] == node)
      ++hi;
    out.push_back(lo == hi ? std::to_string(lo) : std::to_string(lo) + "-" + std::to_string(hi));
    lo = hi;
  }
  return out;
}

std::string joined(const std::vector<std::string>& parts, const char* sep) {
  std::string out;
  for (const auto& p : parts)
    out += (out.empty() ? "" : sep) + p;
  return out;
}

std::string address_of(const cluster_node& n) {
  return (n.host.find(':') != std::string::npos ? "[" + n.host + "]" : n.host) + ":"
         + std::to_string(n.port);
}

} // namespace

int cluster_status_cmd(const context& ctx, const std::string& address) {
  auto body = fetch_status(address);
  if (!body)
    return report(body.error());
  auto status = parse_cluster_status(*body);
  if (!status)
    return report(
      error{errc::unavailable, status.error().message, "http://" + address + "/cluster"});
  std::cout << (ctx.json ? to_json(*status) + "\n" : to_text(*status));
  return exit_ok;
}

int cluster_promote_cmd(const context& ctx, const std::string& address) {
  auto r = post_action(address, "/cluster/promote");
  if (!r)
    return report(r.error());
  std::cout << (ctx.json ? json_object{}.add("result", *r).str() : *r) << "\n";
  return exit_ok;
}

int cluster_replication_cmd(const context& ctx, const std::string& address,
                            const std::string& mode) {
  if (mode != "async" && mode != "sync")
    return report({errc::invalid_argument, "the mode is async or sync", mode});
  auto r = post_action(address, "/cluster/replication/" + mode);
  if (!r)
    return report(r.error());
  std::cout << (ctx.json ? json_object{}.add("result", *r).str() : *r) << "\n";
  return exit_ok;
}

int cluster_map_cmd(const context& ctx, const std::string& config) {
  auto opts = load_cluster_config(config, "");
  if (!opts)
    return report(opts.error());
  const auto& map = opts->map;
  std::map<std::string, std::size_t> owned;
  for (const auto& o : map.owners)
    ++owned[o];
  std::map<std::string, std::string> standby_of; // standby -> the node it follows
  for (const auto& n : opts->nodes)
    if (!n.standby.empty())
      standby_of[n.standby] = n.id;
  if (ctx.json) {
    json_object out;
    out.add("map_version", map.version).add("map_digest", digest_hex(map.digest()));
    out.add("shards", map.shards());
    std::string nodes = "[";
    for (const auto& n : opts->nodes) {
      std::string ranges = "[";
      for (const auto& r : ranges_of(map, n.id))
        ranges += (ranges.size() > 1 ? "," : "") + json_string(r);
      json_object node;
      node.add("id", n.id)
        .add("host", n.host)
        .add("port", std::uint64_t{n.port})
        .add("shards", std::uint64_t{owned[n.id]})
        .add_raw("ranges", ranges + "]");
      if (!n.standby.empty())
        node.add("standby", n.standby);
      if (standby_of.count(n.id) != 0)
        node.add("standby_of", standby_of[n.id]);
      nodes += (nodes.size() > 1 ? "," : "") + node.str();
    }
    out.add_raw("nodes", nodes + "]");
    std::cout << out.str() << "\n";
    return exit_ok;
  }
  std::cout << "map version " << map.version << ", digest " << digest_hex(map.digest()) << ", "
            << map.shards() << " shards, " << count_of(opts->nodes.size(), "node") << "\n";
  std::size_t id_w = 4, addr_w = 7;
  for (const auto& n : opts->nodes) {
    id_w = std::max(id_w, n.id.size());
    addr_w = std::max(addr_w, address_of(n).size());
  }
  auto pad = [](std::string s, std::size_t w) { return s + std::string(w - s.size(), ' '); };
  auto lpad = [](std::string s, std::size_t w) { return std::string(w - s.size(), ' ') + s; };
  // A pair column only for a config with standbys, so a plain map reads as before.
  std::vector<std::string> ranges, pairs;
  std::size_t ranges_w = 6;
  for (const auto& n : opts->nodes) {
    ranges.push_back(joined(ranges_of(map, n.id), ","));
    ranges_w = std::max(ranges_w, ranges.back().size());
    pairs.push_back(!n.standby.empty()            ? "standby " + n.standby
                    : standby_of.count(n.id) != 0 ? "standby of " + standby_of[n.id]
                                                  : std::string{});
  }
  const bool with_pairs = !standby_of.empty();
  std::cout << pad("node", id_w) << "  " << pad("address", addr_w) << "  shards  "
            << (with_pairs ? pad("ranges", ranges_w) + "  pair" : std::string{"ranges"}) << "\n";
  for (std::size_t i = 0; i < opts->nodes.size(); ++i) {
    const auto& n = opts->nodes[i];
    std::cout << pad(n.id, id_w) << "  " << pad(address_of(n), addr_w) << "  "
              << lpad(std::to_string(owned[n.id]), 6) << "  ";
    if (with_pairs && !pairs[i].empty())
      std::cout << pad(ranges[i], ranges_w) << "  " << pairs[i];
    else
      std::cout << ranges[i];
    std::cout << "\n";
  }
  return exit_ok;
}

int cluster_locate_cmd(const context& ctx, const std::string& config, const std::string& stream) {
  if (auto ok = validate_stream_name(stream); !ok)
    return report(ok.error());
  auto opts = load_cluster_config(config, "");
  if (!opts)
    return report(opts.error());
  auto shard = opts->map.shard_of(stream);
  const auto& owner = opts->map.owner_of(stream);
  const cluster_node* node = nullptr;
  for (const auto& n : opts->nodes)
    if (n.id == owner)
      node = &n;
  // A parsed config names only known nodes as owners.
  if (ctx.json) {
    json_object out;
    out.add("stream", stream)
      .add("shard", std::uint64_t{shard})
      .add("shards", opts->map.shards())
      .add("owner", owner)
      .add("host", node != nullptr ? node->host : std::string{})
      .add("port", std::uint64_t{node != nullptr ? node->port : 0u});
    if (node != nullptr && !node->standby.empty())
      out.add("standby", node->standby);
    out.add("map_version", opts->map.version);
    std::cout << out.str() << "\n";
    return exit_ok;
  }
  std::cout << stream << ": shard " << shard << " of " << opts->map.shards() << ", owner " << owner
            << (node != nullptr ? " (" + address_of(*node) + ")" : std::string{})
            << (node != nullptr && !node->standby.empty() ? ", standby " + node->standby
                                                          : std::string{})
            << ", map version " << opts->map.version << "\n";
  return exit_ok;
}

} // namespace cairn::tools::detail
