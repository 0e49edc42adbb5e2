#pragma once

/// Which node owns a stream: the cluster's versioned shard map.
///
///   cairn::shard_map map;
///   map.version = 3;
///   map.owners = {"A", "A", "B", "B"};       // 4 shards: 0-1 on A, 2-3 on B
///   map.shard_of("account-alice");           // FNV-1a 64 of the name mod 4
///   map.owner_of("account-alice");           // "A" or "B"
///   map.digest();                            // equal on nodes that agree
///
/// The hash is part of the cluster's contract: every node, and every version
/// of cairn, must put a stream in the same shard, so it is FNV-1a 64 over the
/// name's bytes (never std::hash, which differs between builds). Nodes compare
/// `version` and `digest()` and refuse a peer whose map differs
/// (docs/cluster.md).

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace cairn {

/// FNV-1a, 64 bits: the offset basis 14695981039346656037 and the prime
/// 1099511628211, one byte at a time. fnv1a_64("a") == 0xaf63dc4c8601ec8c.
[[nodiscard]] constexpr std::uint64_t
fnv1a_64(std::string_view bytes, std::uint64_t hash = 14695981039346656037ull) noexcept {
  for (char c : bytes) {
    hash ^= static_cast<unsigned char>(c);
    hash *= 1099511628211ull;
  }
  return hash;
}

/// N shards, each with one owner node. Plain data; `validate` of
/// cairn/runtime/cluster.hpp checks it against the cluster's nodes.
struct shard_map {
  /// Shards of a map that does not say. Default: 1024.
  static constexpr std::uint32_t default_shards = 1024;

  /// Bumped by the operator on every change of the owners. Default: 1.
  std::uint64_t version = 1;
  /// The owner node id of each shard; owners.size() is the shard count.
  std::vector<std::string> owners;

  /// The number of shards.
  [[nodiscard]] std::uint32_t shards() const noexcept {
    return static_cast<std::uint32_t>(owners.size());
  }

  /// The shard of `stream` (a whole stream name, "account-alice"): FNV-1a 64
  /// of its bytes mod the shard count. 0 for a map without shards.
  [[nodiscard]] std::uint32_t shard_of(std::string_view stream) const noexcept {
    if (owners.empty())
      return 0;
    return static_cast<std::uint32_t>(fnv1a_64(stream) % owners.size());
  }

  /// The owner node id of `stream`'s shard; an empty string for a map
  /// without shards.
  [[nodiscard]] const std::string& owner_of(std::string_view stream) const noexcept {
    static const std::string none;
    return owners.empty() ? none : owners[shard_of(stream)];
  }

  /// FNV-1a 64 over the canonical encoding "cairn.shard_map.1", the version
  /// (8 bytes, little-endian), the shard count (4 bytes) and each owner as
  /// its length (4 bytes) and bytes. Maps that differ in any of them differ
  /// here (up to hash collisions); the lengths keep {"AB","C"} apart from
  /// {"A","BC"}.
  [[nodiscard]] std::uint64_t digest() const noexcept {
    auto hash = fnv1a_64("cairn.shard_map.1");
    hash = mix(hash, version, 8);
    hash = mix(hash, owners.size(), 4);
    for (const auto& owner : owners) {
      hash = mix(hash, owner.size(), 4);
      hash = fnv1a_64(owner, hash);
    }
    return hash;
  }

private:
  /// `value`'s low `bytes` bytes, little-endian, into the hash.
  static constexpr std::uint64_t mix(std::uint64_t hash, std::uint64_t value, int bytes) noexcept {
    for (int i = 0; i < bytes; ++i) {
      hash ^= (value >> (8 * i)) & 0xffu;
      hash *= 1099511628211ull;
    }
    return hash;
  }
};

} // namespace cairn
