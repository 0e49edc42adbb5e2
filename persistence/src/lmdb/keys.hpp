#pragma once

// The data keys of subjects, wrapped by the operator's master key, as the
// LMDB store keeps them (docs/audit.md#forgetting-a-data-subject). The ring
// caches unwrapped keys; a key made for a subject without one stays pending
// until the writer stores it with the first append about that subject.

#include <array>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

#include "cairn/persistence/options.hpp"
#include "cairn/persistence/personal.hpp"

namespace cairn::persistence::detail {

/// A 32-byte master key.
using master_key = std::array<unsigned char, 32>;

/// The master key named by `options` (a key file or an environment variable,
/// 64 hex digits); nullopt when neither is set. `invalid_argument` when both
/// are set, the source is missing or malformed, or the key file lies inside
/// `store_dir`.
[[nodiscard]] result<std::optional<master_key>> load_master_key(const store_options& options,
                                                                const std::string& store_dir);

class lmdb_key_ring final : public key_ring {
public:
  /// Reads the stored (sealed, wrapped) value of a subject's key; nullopt when none.
  using loader = std::function<result<std::optional<std::string>>(std::string_view subject)>;

  lmdb_key_ring(const master_key& master, loader load);
  ~lmdb_key_ring() override;

  result<data_key> key_for_write(std::string_view subject) const override;
  result<std::optional<data_key>> key_for_read(std::string_view subject) const override;

  // -- the writer's side ------------------------------------------------------

  /// The value to store for the pending key of `subject` and its id; nullopt
  /// when its key is not pending.
  [[nodiscard]] std::optional<std::pair<std::string, std::array<unsigned char, 8>>>
  pending(std::string_view subject) const;
  /// After the commit that stored it: the key `id` of `subject` is durable.
  void stored(std::string_view subject, const std::array<unsigned char, 8>& id);
  /// Before a transaction deletes the subject's key: reads see none, and a
  /// write makes a new pending key.
  void forgetting(std::string_view subject);
  /// After that transaction, committed or not: the cache forgets the subject
  /// (the next read asks the table), unless a new key is pending.
  void forgotten(std::string_view subject);

  /// The wrapped, sealed `keys` value of `k` for `subject`.
  [[nodiscard]] std::string wrap(std::string_view subject, const data_key& k) const;
  /// The key in a `keys` value; `invalid_argument` when the master key does not open it.
  [[nodiscard]] result<data_key> unwrap(std::string_view subject, std::string_view value) const;
  /// Whether the master key opens a `keys` value (a replica's check of the
  /// keys it is sent); the key it opened is wiped.
  [[nodiscard]] bool opens(std::string_view subject, std::string_view value) const;

private:
  enum class state : std::uint8_t { durable, pending, forgetting };
  struct entry {
    data_key key;
    state st = state::durable;
  };
  /// The stored key of `subject`, unwrapped; nullopt when none.
  result<std::optional<data_key>> load(std::string_view subject) const;

  master_key master_;
  loader load_;
  mutable std::mutex mu_;
  mutable std::map<std::string, entry, std::less<>> cache_;
  /// Counts forgettings: a key loaded before one began is not cached.
  mutable std::uint64_t generation_ = 0;
};

} // namespace cairn::persistence::detail
