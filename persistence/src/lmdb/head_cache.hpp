#pragma once

// The writer's stream heads, cached by stream name (heads.cpp reads and
// writes the stored ones).

#include <cstddef>
#include <cstdint>
#include <deque>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace cairn::persistence::detail {

struct head_state {
  std::uint64_t stream_no = 0; ///< 0: the stream does not exist (yet).
  std::uint64_t version = 0;
  std::uint64_t last_position = 0;
  bool dirty = false; ///< Staged only: this transaction appended to the stream.
  /// Writer only: the stream's tenant, an entry of the writer's tenant set
  /// ("": none yet); null until the writer needs it and learns it.
  const std::string* tenant = nullptr;
};

/// (stream number, position of its last event) pairs: a head-log entry, or heads to write.
using head_pairs = std::vector<std::pair<std::uint64_t, std::uint64_t>>;

/// The writer's knowledge of one stream: its committed head, and what the
/// current write transaction staged on top of it. One map serves both, so an
/// append costs one lookup; `staged` is meaningful only while `staged_in` is
/// the running transaction's serial, so an aborted transaction leaves nothing
/// to undo.
struct cached_head {
  head_state committed;
  head_state staged;
  std::uint64_t staged_in = 0;
};

/// The writer's heads by stream name. An append looks its stream up here
/// first, so this is on the hot path: an open-addressing index of hashes
/// over entries that never move (staging keeps pointers to them) costs one
/// index probe and one entry per lookup, where std::unordered_map chases a
/// bucket, a node and often a chain.
class head_cache {
public:
  using entry = std::pair<const std::string, cached_head>;

  /// The entry of `name`, inserted with a default head if absent.
  [[nodiscard]] std::pair<entry*, bool> find_or_insert(std::string_view name);

  /// Undoes the find_or_insert that just inserted `e` (its head could not be read).
  void erase_inserted(const entry* e);

  [[nodiscard]] std::size_t size() const { return entries_.size(); }
  void clear() {
    entries_.clear();
    slots_.clear();
  }

private:
  struct slot {
    std::uint64_t hash = 0;
    std::size_t index = 0; ///< 1-based into entries_; 0 = empty.
  };

  void grow();

  std::vector<slot> slots_; ///< A power of two, at most half full.
  std::deque<entry> entries_;
};

} // namespace cairn::persistence::detail
