#include "cairn/tools/cluster_status.hpp"

#include <exception>
#include <limits>
#include <string>

#include "cairn/model/hex.hpp"
#include "cairn/tools/text.hpp" // includes codec.hpp first: cereal's JSON archive configures rapidjson

#include <rapidjson/document.h>

namespace cairn::tools {

namespace {

/// Reads the members of one JSON object; errors name the member and `where`.
class object_reader {
public:
  object_reader(std::string where, const rapidjson::Value& v) : where_(std::move(where)), v_(v) {}

  [[nodiscard]] result<std::string> str(const char* key) const {
    auto it = v_.FindMember(key);
    if (it == v_.MemberEnd())
      return missing(key);
    if (!it->value.IsString())
      return wrong(key, "a string");
    return std::string{it->value.GetString(), it->value.GetStringLength()};
  }

  [[nodiscard]] result<std::uint64_t>
  u64(const char* key, std::uint64_t max = std::numeric_limits<std::uint64_t>::max()) const {
    auto it = v_.FindMember(key);
    if (it == v_.MemberEnd())
      return missing(key);
    if (!it->value.IsUint64() || it->value.GetUint64() > max)
      return wrong(key, ("an integer from 0 to " + std::to_string(max)).c_str());
    return it->value.GetUint64();
  }

  [[nodiscard]] result<bool> boolean(const char* key) const {
    auto it = v_.FindMember(key);
    if (it == v_.MemberEnd())
      return missing(key);
    if (!it->value.IsBool())
      return wrong(key, "true or false");
    return it->value.GetBool();
  }

  /// Whether the object has `key` at all (for members newer nodes add).
  [[nodiscard]] bool has(const char* key) const { return v_.FindMember(key) != v_.MemberEnd(); }

  [[nodiscard]] result<std::int64_t> i64(const char* key) const {
    auto it = v_.FindMember(key);
    if (it == v_.MemberEnd())
      return missing(key);
    if (!it->value.IsInt64())
      return wrong(key, "a 64-bit integer");
    return it->value.GetInt64();
  }

  [[nodiscard]] result<std::vector<std::uint64_t>> u64_array(const char* key) const {
    auto it = v_.FindMember(key);
    if (it == v_.MemberEnd())
      return missing(key);
    if (!it->value.IsArray())
      return wrong(key, "an array");
    std::vector<std::uint64_t> out;
    out.reserve(it->value.Size());
    for (const auto& e : it->value.GetArray()) {
      if (!e.IsUint64())
        return wrong(key, "an array of non-negative integers");
      out.push_back(e.GetUint64());
    }
    return out;
  }

  /// The array `key`, whose elements the caller checks.
  [[nodiscard]] result<const rapidjson::Value*> array(const char* key) const {
    auto it = v_.FindMember(key);
    if (it == v_.MemberEnd())
      return missing(key);
    if (!it->value.IsArray())
      return wrong(key, "an array");
    return &it->value;
  }

  [[nodiscard]] tl::unexpected<error> bad(const std::string& why) const {
    return fail(errc::invalid_argument, "cluster status: " + where_ + why);
  }

private:
  tl::unexpected<error> missing(const char* key) const {
    return bad(std::string{"no \""} + key + "\" member");
  }
  tl::unexpected<error> wrong(const char* key, const char* what) const {
    return bad(std::string{"\""} + key + "\" is not " + what);
  }

  std::string where_; ///< "" or "peer 3: "
  const rapidjson::Value& v_;
};

/// The first error among `results`, if any.
template <class... Rs> const error* first_error(const Rs&... results) {
  const error* out = nullptr;
  ((out = out != nullptr || results ? out : &results.error()), ...);
  return out;
}

result<std::uint64_t> parse_digest(const object_reader& r) {
  auto text = r.str("map_digest");
  if (!text)
    return tl::unexpected(text.error());
  if (text->size() != 16)
    return r.bad("\"map_digest\" is not 16 hex digits");
  std::uint64_t v = 0;
  for (char c : *text) {
    int d = hex_digit_value(c);
    if (d < 0)
      return r.bad("\"map_digest\" is not 16 hex digits");
    v = v << 4 | static_cast<std::uint64_t>(d);
  }
  return v;
}

result<peer_status> parse_peer(const rapidjson::Value& v, std::size_t index) {
  object_reader r{"peer " + std::to_string(index) + ": ", v};
  if (!v.IsObject())
    return r.bad("not an object");
  auto id = r.str("id");
  auto host = r.str("host");
  auto port = r.u64("port", std::numeric_limits<std::uint16_t>::max());
  auto state = r.str("state");
  auto since = r.i64("since_ns");
  auto reason = r.str("reason");
  auto in_flight = r.u64("in_flight");
  auto forwarded = r.u64("forwarded");
  auto received = r.u64("received");
  auto failures = r.u64("failures");
  auto dropped = r.u64("dropped");
  auto p50 = r.u64("rtt_p50_us");
  auto p99 = r.u64("rtt_p99_us");
  auto bounds = r.u64_array("rtt_us_bounds");
  auto buckets = r.u64_array("rtt_us_buckets");
  if (const auto* err = first_error(id, host, port, state, since, reason, in_flight, forwarded,
                                    received, failures, dropped, p50, p99, bounds, buckets))
    return tl::unexpected(*err);
  peer_status p;
  p.id = std::move(*id);
  p.host = std::move(*host);
  p.port = static_cast<std::uint16_t>(*port);
  p.state = std::move(*state);
  p.since_ns = *since;
  p.reason = std::move(*reason);
  p.in_flight = *in_flight;
  p.forwarded = *forwarded;
  p.received = *received;
  p.failures = *failures;
  p.dropped = *dropped;
  p.rtt_p50_us = *p50;
  p.rtt_p99_us = *p99;
  p.rtt_us_bounds = std::move(*bounds);
  p.rtt_us_buckets = std::move(*buckets);
  return p;
}

result<replication_status> parse_replication(const rapidjson::Value& v, std::size_t index) {
  object_reader r{"replication " + std::to_string(index) + ": ", v};
  if (!v.IsObject())
    return r.bad("not an object");
  auto role = r.str("role");
  auto peer = r.str("peer");
  auto connected = r.boolean("connected");
  auto epoch = r.u64("epoch");
  auto committed = r.u64("committed");
  auto acknowledged = r.u64("acknowledged");
  auto frames = r.u64("frames");
  auto bytes = r.u64("bytes");
  auto subscriptions = r.u64("subscriptions");
  auto truncated = r.u64("truncated");
  auto fenced = r.boolean("fenced");
  auto problem = r.str("problem");
  if (const auto* err = first_error(role, peer, connected, epoch, committed, acknowledged, frames,
                                    bytes, subscriptions, truncated, fenced, problem))
    return tl::unexpected(*err);
  replication_status x;
  x.role = std::move(*role);
  x.peer = std::move(*peer);
  x.connected = *connected;
  x.epoch = *epoch;
  x.committed = *committed;
  x.acknowledged = *acknowledged;
  x.frames = *frames;
  x.bytes = *bytes;
  x.subscriptions = *subscriptions;
  x.truncated = *truncated;
  x.fenced = *fenced;
  x.problem = std::move(*problem);
  return x;
}

} // namespace

result<cluster_status> parse_cluster_status(std::string_view json) {
  if (json.size() > max_cluster_status_bytes)
    return fail(errc::invalid_argument, "cluster status: longer than "
                                          + std::to_string(max_cluster_status_bytes >> 20)
                                          + " MiB");
  try {
    rapidjson::Document doc;
    // Iterative: no recursion however deep the nesting.
    doc.Parse<rapidjson::kParseIterativeFlag>(json.data(), json.size());
    if (doc.HasParseError())
      return fail(errc::invalid_argument, "cluster status: not JSON (error at byte "
                                            + std::to_string(doc.GetErrorOffset()) + ")");
    if (!doc.IsObject())
      return fail(errc::invalid_argument, "cluster status: not a JSON object");
    object_reader r{"", doc};
    auto node = r.str("node_id");
    auto version = r.u64("map_version");
    auto digest = parse_digest(r);
    auto shards = r.u64("shards", std::numeric_limits<std::uint32_t>::max());
    auto owned = r.u64("owned_shards", std::numeric_limits<std::uint32_t>::max());
    auto dropped = r.u64("dropped_messages");
    auto peers = r.array("peers");
    if (const auto* err = first_error(node, version, digest, shards, owned, dropped, peers))
      return tl::unexpected(*err);
    cluster_status st;
    st.node_id = std::move(*node);
    st.map_version = *version;
    st.map_digest = *digest;
    st.shards = static_cast<std::uint32_t>(*shards);
    st.owned_shards = static_cast<std::uint32_t>(*owned);
    st.dropped_messages = *dropped;
    st.peers.reserve((*peers)->Size());
    std::size_t i = 0;
    for (const auto& v : (*peers)->GetArray()) {
      auto p = parse_peer(v, i++);
      if (!p)
        return tl::unexpected(p.error());
      st.peers.push_back(std::move(*p));
    }
    if (r.has("replication")) { // absent from nodes before standby replication
      auto repl = r.array("replication");
      if (!repl)
        return tl::unexpected(repl.error());
      i = 0;
      for (const auto& v : (*repl)->GetArray()) {
        auto x = parse_replication(v, i++);
        if (!x)
          return tl::unexpected(x.error());
        st.replication.push_back(std::move(*x));
      }
    }
    return st;
  } catch (const std::exception& e) {
    // rapidjson's assertions throw (cereal configures them), and memory may run out.
    return fail(errc::invalid_argument, std::string{"cluster status: unreadable: "} + e.what());
  }
}

} // namespace cairn::tools
