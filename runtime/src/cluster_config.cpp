#include "cairn/runtime/cluster.hpp"

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <map>
#include <optional>
#include <utility>

#include "cairn/model/json_text.hpp"

namespace cairn {

namespace {

using limits = cluster_limits;

bool is_id_byte(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.'
         || c == '_' || c == '-';
}

/// "" or why `id` is no node id.
std::string id_problem(std::string_view id) {
  if (id.empty())
    return "a node id is empty";
  if (id.size() > limits::max_id_bytes)
    return "node id '" + std::string{id.substr(0, limits::max_id_bytes)} + "...' is longer than "
           + std::to_string(limits::max_id_bytes) + " bytes";
  if (!std::all_of(id.begin(), id.end(), is_id_byte))
    return "node id '" + std::string{id} + "' has a byte other than A-Z a-z 0-9 . _ -";
  return {};
}

/// "" or why `host` cannot be a node's host.
std::string host_problem(std::string_view host) {
  if (host.empty())
    return "a host is empty";
  if (host.size() > limits::max_host_bytes)
    return "a host is longer than " + std::to_string(limits::max_host_bytes) + " bytes";
  for (char c : host) {
    auto b = static_cast<unsigned char>(c);
    if (b <= 0x20 || b == 0x7f || c == '#')
      return "host '" + std::string{host} + "' has a space, a control byte or '#'";
  }
  return {};
}

/// "[::1]:7101" for an IPv6 address, "host:7101" otherwise.
std::string address_of(std::string_view host, std::uint16_t port) {
  std::string out = host.find(':') != std::string_view::npos ? "[" + std::string{host} + "]"
                                                             : std::string{host};
  return out + ":" + std::to_string(port);
}

/// "shard 5" or "shards 5-9".
std::string shard_range(std::uint64_t lo, std::uint64_t hi) {
  return lo == hi ? "shard " + std::to_string(lo)
                  : "shards " + std::to_string(lo) + "-" + std::to_string(hi);
}

result<void> bad(std::string message) { return fail(errc::invalid_argument, std::move(message)); }

/// Each standby is another node that owns no shards, has no standby itself
/// and follows only one node.
result<void> validate_standbys(const cluster_options& opts,
                               const std::map<std::string_view, std::size_t>& ids) {
  std::map<std::string_view, std::string_view> followed; // standby -> owner
  for (const auto& n : opts.nodes) {
    if (n.standby.empty())
      continue;
    if (ids.count(n.standby) == 0)
      return bad("node " + n.id + "'s standby '" + n.standby + "' is no node");
    if (n.standby == n.id)
      return bad("node " + n.id + " cannot be its own standby");
    auto [at, fresh] = followed.emplace(n.standby, n.id);
    if (!fresh)
      return bad("node " + n.standby + " is the standby of both " + std::string{at->second}
                 + " and " + n.id + "; a standby follows one node");
  }
  for (const auto& n : opts.nodes)
    if (!n.standby.empty() && followed.count(n.id) != 0)
      return bad("node " + n.id + " is a standby and cannot have a standby (" + n.standby + ")");
  for (std::size_t s = 0; s < opts.map.owners.size(); ++s)
    if (auto it = followed.find(opts.map.owners[s]); it != followed.end())
      return bad("shard " + std::to_string(s) + "'s owner " + std::string{it->first}
                 + " is the standby of " + std::string{it->second}
                 + "; a standby owns no shards until it is promoted");
  return {};
}

/// Everything `validate` checks except that node_id is among the nodes.
result<void> validate_layout(const cluster_options& opts) {
  if (opts.nodes.empty())
    return bad("the cluster has no nodes");
  if (opts.nodes.size() > limits::max_nodes)
    return bad("the cluster has " + std::to_string(opts.nodes.size()) + " nodes; at most "
               + std::to_string(limits::max_nodes));
  std::map<std::string_view, std::size_t> ids;
  std::map<std::string, std::string_view> addresses;
  for (std::size_t i = 0; i < opts.nodes.size(); ++i) {
    const auto& n = opts.nodes[i];
    if (auto why = id_problem(n.id); !why.empty())
      return bad(why);
    if (!ids.emplace(n.id, i).second)
      return bad("node id '" + n.id + "' is given twice");
    if (auto why = host_problem(n.host); !why.empty())
      return bad("node " + n.id + ": " + why);
    if (n.port == 0)
      return bad("node " + n.id + ": port 0; the gateway needs a port from 1 to 65535");
    auto [at, fresh] = addresses.emplace(address_of(n.host, n.port), n.id);
    if (!fresh)
      return bad("nodes " + std::string{at->second} + " and " + n.id + " share the address "
                 + at->first);
  }
  const auto& owners = opts.map.owners;
  if (owners.empty())
    return bad("the shard map has no shards");
  if (owners.size() > limits::max_shards)
    return bad("the shard map has " + std::to_string(owners.size()) + " shards; at most "
               + std::to_string(limits::max_shards));
  if (opts.map.version == 0)
    return bad("the shard map's version is 0; versions start at 1");
  for (std::size_t s = 0; s < owners.size(); ++s) {
    if (ids.count(owners[s]) == 0)
      return bad("shard " + std::to_string(s) + "'s owner '" + owners[s] + "' is no node");
  }
  auto positive = [](const char* name, std::chrono::milliseconds v) -> result<void> {
    if (v.count() <= 0 || v > limits::max_duration)
      return bad(std::string{name} + " is " + std::to_string(v.count())
                 + " ms; it must be from 1 ms to one day");
    return {};
  };
  for (auto ok : {positive("heartbeat_interval", opts.heartbeat_interval),
                  positive("heartbeat_timeout", opts.heartbeat_timeout),
                  positive("ping_interval", opts.ping_interval),
                  positive("connect_timeout", opts.connect_timeout)})
    if (!ok)
      return ok;
  if (opts.heartbeat_timeout <= opts.heartbeat_interval)
    return bad("heartbeat_timeout (" + std::to_string(opts.heartbeat_timeout.count())
               + " ms) must be above heartbeat_interval ("
               + std::to_string(opts.heartbeat_interval.count())
               + " ms), or every quiet connection is closed");
  if (opts.remote_timeout.count() < 0 || opts.remote_timeout > limits::max_duration)
    return bad("remote_timeout is " + std::to_string(opts.remote_timeout.count())
               + " ms; it must be from 0 (the runtime's request_timeout) to one day");
  if (opts.max_in_flight_per_peer == 0)
    return bad("max_in_flight_per_peer is 0; no command could be forwarded");
  if (opts.max_in_flight_per_peer > std::numeric_limits<std::uint32_t>::max())
    return bad("max_in_flight_per_peer is " + std::to_string(opts.max_in_flight_per_peer)
               + "; at most 4294967295");
  if (opts.middleman_workers > limits::max_middleman_workers)
    return bad("middleman_workers is " + std::to_string(opts.middleman_workers) + "; at most "
               + std::to_string(limits::max_middleman_workers));
  if (auto ok = validate_standbys(opts, ids); !ok)
    return ok;
  if (opts.replication_window < limits::min_replication_window
      || opts.replication_window > limits::max_replication_window)
    return bad("replication_window is " + std::to_string(opts.replication_window)
               + " bytes; it must be from 64 KiB to 1 GiB");
  if (opts.sync_timeout.count() <= 0 || opts.sync_timeout > limits::max_duration)
    return bad("sync_timeout is " + std::to_string(opts.sync_timeout.count())
               + " ms; it must be from 1 ms to one day");
  return {};
}

// -- the file form ----------------------------------------------------------

/// The value of a run of decimal digits, if it fits 64 bits.
std::optional<std::uint64_t> parse_u64(std::string_view text) {
  if (text.empty() || text.size() > 20)
    return std::nullopt;
  std::uint64_t v = 0;
  for (char c : text) {
    if (c < '0' || c > '9')
      return std::nullopt;
    auto digit = static_cast<std::uint64_t>(c - '0');
    if (v > (std::numeric_limits<std::uint64_t>::max() - digit) / 10)
      return std::nullopt;
    v = v * 10 + digit;
  }
  return v;
}

/// The fields of a line up to a comment: runs of bytes other than space and tab.
std::vector<std::string_view> fields_of(std::string_view line) {
  std::vector<std::string_view> out;
  std::size_t i = 0;
  while (i < line.size()) {
    if (line[i] == ' ' || line[i] == '\t') {
      ++i;
      continue;
    }
    if (line[i] == '#')
      break;
    auto end = line.find_first_of(" \t", i);
    if (end == std::string_view::npos)
      end = line.size();
    out.push_back(line.substr(i, end - i));
    i = end;
  }
  return out;
}

/// The options with a single number, their file keys and their bounds.
struct number_key {
  const char* key;
  std::uint64_t min;
  std::uint64_t max;
  const char* unit; // for the error message
};

constexpr auto max_ms = static_cast<std::uint64_t>(limits::max_duration.count());

constexpr number_key number_keys[] = {
  {"map-version", 1, std::numeric_limits<std::uint64_t>::max(), ""},
  {"shards", 1, limits::max_shards, ""},
  {"heartbeat-interval-ms", 1, max_ms, " ms"},
  {"heartbeat-timeout-ms", 1, max_ms, " ms"},
  {"ping-interval-ms", 1, max_ms, " ms"},
  {"connect-timeout-ms", 1, max_ms, " ms"},
  {"remote-timeout-ms", 0, max_ms, " ms"},
  {"max-in-flight-per-peer", 1, std::numeric_limits<std::uint32_t>::max(), ""},
  {"middleman-workers", 0, limits::max_middleman_workers, ""},
  {"replication-window-bytes", limits::min_replication_window, limits::max_replication_window, ""},
  {"sync-timeout-ms", 1, max_ms, " ms"},
};

/// Sets the option `key` of `opts` to `v` (in range).
void set_number(cluster_options& opts, std::string_view key, std::uint64_t v) {
  auto ms = std::chrono::milliseconds{static_cast<std::int64_t>(v)};
  if (key == "map-version")
    opts.map.version = v;
  else if (key == "heartbeat-interval-ms")
    opts.heartbeat_interval = ms;
  else if (key == "heartbeat-timeout-ms")
    opts.heartbeat_timeout = ms;
  else if (key == "ping-interval-ms")
    opts.ping_interval = ms;
  else if (key == "connect-timeout-ms")
    opts.connect_timeout = ms;
  else if (key == "remote-timeout-ms")
    opts.remote_timeout = ms;
  else if (key == "max-in-flight-per-peer")
    opts.max_in_flight_per_peer = static_cast<std::size_t>(v);
  else if (key == "middleman-workers")
    opts.middleman_workers = static_cast<unsigned>(v);
  else if (key == "replication-window-bytes")
    opts.replication_window = static_cast<std::size_t>(v);
  else if (key == "sync-timeout-ms")
    opts.sync_timeout = ms;
  // "shards" is kept by the caller: the owner lines are checked against it.
}

std::string key_list() {
  std::string out = "node, owner, standby, replication";
  for (const auto& k : number_keys)
    out += std::string{", "} + k.key;
  return out;
}

/// One owner line: shards lo-hi to `node`.
struct owner_range {
  std::size_t line;
  std::uint64_t lo;
  std::uint64_t hi;
  std::string node;
};

class config_parser {
public:
  result<cluster_options> parse(std::string_view text) {
    std::size_t line_no = 0;
    while (!text.empty()) {
      ++line_no;
      auto nl = text.find('\n');
      auto line = text.substr(0, nl);
      text = nl == std::string_view::npos ? std::string_view{} : text.substr(nl + 1);
      if (!line.empty() && line.back() == '\r')
        line.remove_suffix(1);
      if (auto ok = parse_line(line_no, fields_of(line)); !ok)
        return tl::unexpected(ok.error());
    }
    if (opts_.nodes.empty())
      return fail(errc::invalid_argument, "no node lines: a cluster needs at least one node");
    if (auto ok = assign_owners(); !ok)
      return tl::unexpected(ok.error());
    if (auto ok = assign_standbys(); !ok)
      return tl::unexpected(ok.error());
    return std::move(opts_);
  }

private:
  static result<void> at(std::size_t line, std::string message) {
    return bad("line " + std::to_string(line) + ": " + std::move(message));
  }

  /// Remembers that `key` was given on `line`; an error if it was before.
  result<void> once(std::size_t line, std::string_view key) {
    auto [it, fresh] = seen_.emplace(std::string{key}, line);
    if (!fresh)
      return at(line, std::string{key} + " is given twice (first on line "
                        + std::to_string(it->second) + ")");
    return {};
  }

  result<void> parse_line(std::size_t line, const std::vector<std::string_view>& f) {
    if (f.empty())
      return {};
    auto key = f[0];
    if (key == "node")
      return parse_node(line, f);
    if (key == "owner")
      return parse_owner(line, f);
    if (key == "standby")
      return parse_standby(line, f);
    if (key == "replication")
      return parse_replication(line, f);
    for (const auto& k : number_keys) {
      if (key != k.key)
        continue;
      if (f.size() != 2)
        return at(line, std::string{k.key} + " wants one number, not "
                          + std::to_string(f.size() - 1) + " fields");
      if (auto ok = once(line, key); !ok)
        return ok;
      auto v = parse_u64(f[1]);
      if (!v || *v < k.min || *v > k.max)
        return at(line, std::string{k.key} + " '" + std::string{f[1]} + "' is not a number from "
                          + std::to_string(k.min) + " to " + std::to_string(k.max) + k.unit);
      if (key == "shards")
        shards_ = static_cast<std::uint32_t>(*v);
      else
        set_number(opts_, key, *v);
      return {};
    }
    return at(line, "unknown key '" + std::string{key} + "' (the keys: " + key_list() + ")");
  }

  result<void> parse_node(std::size_t line, const std::vector<std::string_view>& f) {
    if (f.size() != 4)
      return at(line, "node wants ID HOST PORT, not " + std::to_string(f.size() - 1) + " fields");
    if (opts_.nodes.size() == limits::max_nodes)
      return at(line, "more than " + std::to_string(limits::max_nodes) + " nodes");
    if (auto why = id_problem(f[1]); !why.empty())
      return at(line, why);
    if (auto why = host_problem(f[2]); !why.empty())
      return at(line, why);
    auto port = parse_u64(f[3]);
    if (!port || *port == 0 || *port > 65535)
      return at(line, "port '" + std::string{f[3]} + "' is not a number from 1 to 65535");
    cluster_node n{std::string{f[1]}, std::string{f[2]}, static_cast<std::uint16_t>(*port)};
    auto [id, fresh] = node_lines_.emplace(n.id, line);
    if (!fresh)
      return at(line, "node " + n.id + " is declared twice (first on line "
                        + std::to_string(id->second) + ")");
    auto [addr, unused] = address_nodes_.emplace(address_of(n.host, n.port), opts_.nodes.size());
    if (!unused) {
      const auto& other = opts_.nodes[addr->second].id;
      return at(line, "address " + addr->first + " is already node " + other + "'s (line "
                        + std::to_string(node_lines_[other]) + ")");
    }
    opts_.nodes.push_back(std::move(n));
    return {};
  }

  /// "standby OWNER STANDBY"; checked against the node lines once all are read.
  result<void> parse_standby(std::size_t line, const std::vector<std::string_view>& f) {
    if (f.size() != 3)
      return at(line, "standby wants OWNER STANDBY (two node ids), not "
                        + std::to_string(f.size() - 1) + " fields");
    for (auto id : {f[1], f[2]})
      if (auto why = id_problem(id); !why.empty())
        return at(line, why);
    auto [it, fresh] = standby_lines_.emplace(std::string{f[1]},
                                              std::make_pair(std::string{f[2]}, line));
    if (!fresh)
      return at(line, "node " + it->first + "'s standby is given twice (first on line "
                        + std::to_string(it->second.second) + ")");
    return {};
  }

  result<void> parse_replication(std::size_t line, const std::vector<std::string_view>& f) {
    if (f.size() != 2 || (f[1] != "async" && f[1] != "sync"))
      return at(line, "replication wants async or sync");
    if (auto ok = once(line, f[0]); !ok)
      return ok;
    opts_.replication = f[1] == "sync" ? replication_mode::sync : replication_mode::async;
    return {};
  }

  /// Gives each owner named by a standby line its standby.
  result<void> assign_standbys() {
    for (const auto& entry : standby_lines_) { // no structured binding: a lambda uses it
      const auto& owner = entry.first;
      const auto& standby = entry.second;
      auto it = std::find_if(opts_.nodes.begin(), opts_.nodes.end(),
                             [&](const cluster_node& n) { return n.id == owner; });
      if (it == opts_.nodes.end())
        return at(standby.second, "standby of " + owner + ": no node line declares " + owner);
      if (node_lines_.count(standby.first) == 0)
        return at(standby.second, "standby " + standby.first + " of " + owner
                                    + ": no node line declares " + standby.first);
      it->standby = standby.first;
    }
    return {};
  }

  result<void> parse_owner(std::size_t line, const std::vector<std::string_view>& f) {
    if (f.size() != 3)
      return at(line, "owner wants SHARDS NODE (SHARDS: N or N-M), not "
                        + std::to_string(f.size() - 1) + " fields");
    auto range = f[1];
    auto dash = range.find('-');
    auto lo = parse_u64(range.substr(0, dash));
    auto hi = dash == std::string_view::npos ? lo : parse_u64(range.substr(dash + 1));
    if (!lo || !hi)
      return at(line, "shards '" + std::string{range} + "' is not N or N-M");
    if (*hi < *lo)
      return at(line, "shards '" + std::string{range} + "' ends before it starts");
    if (auto why = id_problem(f[2]); !why.empty())
      return at(line, why);
    ranges_.push_back({line, *lo, *hi, std::string{f[2]}});
    return {};
  }

  /// Checks the owner lines against the shards and the nodes: each shard
  /// exactly once, each owner a node. Sorting keeps this O(lines log lines
  /// + shards) however the ranges overlap.
  result<void> assign_owners() {
    for (const auto& r : ranges_) {
      if (r.hi >= shards_)
        return at(r.line, shard_range(r.lo, r.hi) + ": the map has " + std::to_string(shards_)
                            + " shards, 0-" + std::to_string(shards_ - 1));
      if (node_lines_.count(r.node) == 0)
        return at(r.line, "owner " + r.node + " is no node (no node line declares it)");
    }
    std::stable_sort(ranges_.begin(), ranges_.end(),
                     [](const owner_range& a, const owner_range& b) { return a.lo < b.lo; });
    opts_.map.owners.assign(shards_, std::string{});
    std::uint64_t next = 0; // the first shard no range so far covers
    const owner_range* last = nullptr;
    for (const auto& r : ranges_) {
      if (last != nullptr && r.lo < next)
        return at(r.line, shard_range(r.lo, std::min(r.hi, next - 1)) + " already "
                            + (r.lo == std::min(r.hi, next - 1) ? "has" : "have") + " owner "
                            + last->node + " (line " + std::to_string(last->line) + ")");
      if (r.lo > next)
        return gap(next, r.lo - 1);
      std::fill(opts_.map.owners.begin() + static_cast<std::ptrdiff_t>(r.lo),
                opts_.map.owners.begin() + static_cast<std::ptrdiff_t>(r.hi) + 1, r.node);
      next = r.hi + 1;
      last = &r;
    }
    if (next < shards_)
      return gap(next, shards_ - 1);
    return {};
  }

  static result<void> gap(std::uint64_t lo, std::uint64_t hi) {
    return bad(shard_range(lo, hi) + (lo == hi ? " has" : " have")
               + " no owner: every shard needs exactly one owner line");
  }

  cluster_options opts_;
  std::uint32_t shards_ = shard_map::default_shards;
  std::map<std::string, std::size_t> seen_;          ///< single keys -> line
  std::map<std::string, std::size_t> node_lines_;    ///< node id -> line
  std::map<std::string, std::size_t> address_nodes_; ///< host:port -> index in opts_.nodes
  std::vector<owner_range> ranges_;
  /// owner -> (standby, line)
  std::map<std::string, std::pair<std::string, std::size_t>> standby_lines_;
};

// -- the status ---------------------------------------------------------------

/// "2026-12-06T21:00:00Z", or "-" for 0.
std::string utc_seconds(std::int64_t ns) {
  if (ns == 0)
    return "-";
  auto secs = static_cast<std::time_t>(ns / 1'000'000'000);
  if (ns < 0 && ns % 1'000'000'000 != 0)
    --secs; // floor, not truncation
  std::tm tm{};
  if (::gmtime_r(&secs, &tm) == nullptr)
    return std::to_string(ns) + " ns";
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

/// Appends `,"key":` (no comma for the first member of an object).
void json_key(std::string& out, std::string_view key) {
  if (out.back() != '{')
    out += ',';
  append_json_string(out, key);
  out += ':';
}

void json_member(std::string& out, std::string_view key, std::string_view value) {
  json_key(out, key);
  append_json_string(out, value);
}

template <class Int> void json_number(std::string& out, std::string_view key, Int value) {
  json_key(out, key);
  out += std::to_string(value);
}

void json_array(std::string& out, std::string_view key, const std::vector<std::uint64_t>& v) {
  json_key(out, key);
  out += '[';
  for (std::size_t i = 0; i < v.size(); ++i) {
    if (i > 0)
      out += ',';
    out += std::to_string(v[i]);
  }
  out += ']';
}

/// `s` with each control byte as a space, so a cell stays on its line.
std::string cell(std::string s) {
  for (auto& c : s)
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f)
      c = ' ';
  return s;
}

/// Pads each column to its widest cell; numbers right-aligned, the last
/// column not padded.
std::string table(const std::vector<std::vector<std::string>>& rows,
                  const std::vector<bool>& right) {
  std::vector<std::size_t> width(rows.front().size(), 0);
  for (const auto& row : rows)
    for (std::size_t c = 0; c < row.size(); ++c)
      width[c] = std::max(width[c], row[c].size());
  std::string out;
  for (const auto& row : rows) {
    std::string line;
    for (std::size_t c = 0; c < row.size(); ++c) {
      if (c > 0)
        line += "  ";
      auto pad = std::string(width[c] - row[c].size(), ' ');
      if (c + 1 == row.size() && !right[c])
        line += row[c];
      else
        line += right[c] ? pad + row[c] : row[c] + pad;
    }
    while (!line.empty() && line.back() == ' ')
      line.pop_back();
    out += line + '\n';
  }
  return out;
}

} // namespace

result<void> validate(const cluster_options& opts) {
  if (auto ok = validate_layout(opts); !ok)
    return ok;
  auto it = std::find_if(opts.nodes.begin(), opts.nodes.end(),
                         [&](const cluster_node& n) { return n.id == opts.node_id; });
  if (it == opts.nodes.end())
    return bad(opts.node_id.empty() ? std::string{"node_id is empty: which node is this?"}
                                    : "node_id '" + opts.node_id + "' is none of the nodes");
  return {};
}

result<cluster_options> parse_cluster_config(std::string_view text, const std::string& node_id) {
  auto opts = config_parser{}.parse(text);
  if (!opts)
    return opts;
  opts->node_id = node_id;
  auto ok = node_id.empty() ? validate_layout(*opts) : validate(*opts);
  if (!ok)
    return tl::unexpected(ok.error());
  return opts;
}

result<cluster_options> load_cluster_config(const std::string& path, const std::string& node_id) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec))
    return fail(errc::invalid_argument, "the cluster config is missing or not a file", path);
  std::ifstream in{path, std::ios::binary};
  if (!in)
    return fail(errc::invalid_argument, "cannot open the cluster config", path);
  std::string text;
  char buf[64 * 1024];
  while (in.read(buf, sizeof buf) || in.gcount() > 0) {
    text.append(buf, static_cast<std::size_t>(in.gcount()));
    if (text.size() > limits::max_config_bytes)
      return fail(errc::invalid_argument,
                  "the cluster config is larger than "
                    + std::to_string(limits::max_config_bytes >> 20) + " MiB",
                  path);
  }
  if (in.bad())
    return fail(errc::invalid_argument, "cannot read the cluster config", path);
  auto opts = parse_cluster_config(text, node_id);
  if (!opts)
    return fail(errc::invalid_argument, opts.error().message, path);
  return opts;
}

cluster_options make_cluster(std::vector<cluster_node> nodes, std::string node_id,
                             std::uint32_t shards) {
  cluster_options opts;
  opts.node_id = std::move(node_id);
  opts.map.version = 1;
  opts.map.owners.reserve(shards);
  for (std::uint32_t s = 0; s < shards; ++s)
    opts.map.owners.push_back(nodes.empty() ? std::string{}
                                            : nodes[std::uint64_t{s} * nodes.size() / shards].id);
  opts.nodes = std::move(nodes);
  return opts;
}

std::string to_config_text(const cluster_options& opts) {
  std::string out = "# cairn cluster: the same file on every node; each node is told its id.\n"
                    "# docs/cluster.md describes every key.\n";
  auto line = [&](std::string_view key, auto value) {
    out += std::string{key} + ' ' + std::to_string(value) + '\n';
  };
  line("map-version", opts.map.version);
  line("shards", opts.map.owners.size());
  for (const auto& n : opts.nodes)
    out += "node " + n.id + ' ' + n.host + ' ' + std::to_string(n.port) + '\n';
  const auto& owners = opts.map.owners;
  for (std::size_t lo = 0; lo < owners.size();) {
    auto hi = lo;
    while (hi + 1 < owners.size() && owners[hi + 1] == owners[lo])
      ++hi;
    out += "owner "
           + (lo == hi ? std::to_string(lo) : std::to_string(lo) + '-' + std::to_string(hi)) + ' '
           + owners[lo] + '\n';
    lo = hi + 1;
  }
  line("heartbeat-interval-ms", opts.heartbeat_interval.count());
  line("heartbeat-timeout-ms", opts.heartbeat_timeout.count());
  line("ping-interval-ms", opts.ping_interval.count());
  line("connect-timeout-ms", opts.connect_timeout.count());
  line("remote-timeout-ms", opts.remote_timeout.count());
  line("max-in-flight-per-peer", opts.max_in_flight_per_peer);
  line("middleman-workers", opts.middleman_workers);
  for (const auto& n : opts.nodes)
    if (!n.standby.empty())
      out += "standby " + n.id + ' ' + n.standby + '\n';
  out += "replication " + std::string{to_string(opts.replication)} + '\n';
  line("replication-window-bytes", opts.replication_window);
  line("sync-timeout-ms", opts.sync_timeout.count());
  return out;
}

const cluster_node* find_node(const cluster_options& opts, std::string_view node_id) {
  for (const auto& n : opts.nodes)
    if (n.id == node_id)
      return &n;
  return nullptr;
}

const cluster_node* standby_owner(const cluster_options& opts, std::string_view node_id) {
  for (const auto& n : opts.nodes)
    if (!n.standby.empty() && n.standby == node_id)
      return &n;
  return nullptr;
}

std::string digest_hex(std::uint64_t digest) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016" PRIx64, digest);
  return buf;
}

std::string to_text(const cluster_status& st) {
  std::string out = "node " + cell(st.node_id) + ": map version " + std::to_string(st.map_version)
                    + ", digest " + digest_hex(st.map_digest) + ", " + std::to_string(st.shards)
                    + " shards, " + std::to_string(st.owned_shards) + " owned here, "
                    + std::to_string(st.dropped_messages)
                    + " messages dropped from unknown senders\n";
  for (const auto& r : st.replication)
    out += (r.role == "owner" ? "serves, standby " : "standby, follows ") + cell(r.peer) + ": "
           + (r.connected ? "connected" : "not connected") + ", epoch " + std::to_string(r.epoch)
           + ", log end " + std::to_string(r.committed) + ", acknowledged "
           + std::to_string(r.acknowledged) + ", " + std::to_string(r.frames) + " frames, "
           + std::to_string(r.bytes) + " bytes"
           + (r.truncated > 0 ? ", " + std::to_string(r.truncated) + " records cut" : "")
           + (r.fenced ? ", fenced" : "") + (r.problem.empty() ? "" : " (" + cell(r.problem) + ")")
           + "\n";
  if (st.peers.empty())
    return out + "no peers\n";
  std::vector<std::vector<std::string>> rows{{"peer", "address", "state", "since", "in flight",
                                              "forwarded", "received", "failures", "dropped",
                                              "rtt p50 us", "rtt p99 us", "reason"}};
  for (const auto& p : st.peers)
    rows.push_back({cell(p.id), cell(address_of(p.host, p.port)), cell(p.state),
                    utc_seconds(p.since_ns), std::to_string(p.in_flight),
                    std::to_string(p.forwarded), std::to_string(p.received),
                    std::to_string(p.failures), std::to_string(p.dropped),
                    std::to_string(p.rtt_p50_us), std::to_string(p.rtt_p99_us), cell(p.reason)});
  return out
         + table(rows,
                 {false, false, false, false, true, true, true, true, true, true, true, false});
}

std::string to_json(const cluster_status& st) {
  std::string out = "{";
  json_member(out, "node_id", st.node_id);
  json_number(out, "map_version", st.map_version);
  json_member(out, "map_digest", digest_hex(st.map_digest));
  json_number(out, "shards", st.shards);
  json_number(out, "owned_shards", st.owned_shards);
  json_number(out, "dropped_messages", st.dropped_messages);
  json_key(out, "peers");
  out += '[';
  for (std::size_t i = 0; i < st.peers.size(); ++i) {
    const auto& p = st.peers[i];
    if (i > 0)
      out += ',';
    out += '{';
    json_member(out, "id", p.id);
    json_member(out, "host", p.host);
    json_number(out, "port", p.port);
    json_member(out, "state", p.state);
    json_number(out, "since_ns", p.since_ns);
    json_member(out, "reason", p.reason);
    json_number(out, "in_flight", p.in_flight);
    json_number(out, "forwarded", p.forwarded);
    json_number(out, "received", p.received);
    json_number(out, "failures", p.failures);
    json_number(out, "dropped", p.dropped);
    json_number(out, "rtt_p50_us", p.rtt_p50_us);
    json_number(out, "rtt_p99_us", p.rtt_p99_us);
    json_array(out, "rtt_us_bounds", p.rtt_us_bounds);
    json_array(out, "rtt_us_buckets", p.rtt_us_buckets);
    out += '}';
  }
  out += ']';
  json_key(out, "replication");
  out += '[';
  for (std::size_t i = 0; i < st.replication.size(); ++i) {
    const auto& r = st.replication[i];
    if (i > 0)
      out += ',';
    out += '{';
    json_member(out, "role", r.role);
    json_member(out, "peer", r.peer);
    json_key(out, "connected");
    out += r.connected ? "true" : "false";
    json_number(out, "epoch", r.epoch);
    json_number(out, "committed", r.committed);
    json_number(out, "acknowledged", r.acknowledged);
    json_number(out, "frames", r.frames);
    json_number(out, "bytes", r.bytes);
    json_number(out, "subscriptions", r.subscriptions);
    json_number(out, "truncated", r.truncated);
    json_key(out, "fenced");
    out += r.fenced ? "true" : "false";
    json_member(out, "problem", r.problem);
    out += '}';
  }
  out += "]}";
  return out;
}

} // namespace cairn
