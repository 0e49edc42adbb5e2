#pragma once

/// What a standby copies from its owner's store, and the epochs that tell two
/// copies of a log apart (docs/cluster.md#replica-store).
///
///   // on the owner (any thread)
///   auto frame = owner->read_frame(replica_last + 1, 256 << 10);
///   // on the standby (its writer thread)
///   auto last = replica->apply_frame(*frame); // idempotent by position
///
///   // rejoin: the old owner finds where it still agrees with the new one
///   auto common = common_position(leader_epochs, leader_last, my_epochs, my_last);
///   auto cut = me->truncate_after(common, "divergent-tail.jsonl");

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "cairn/model/error.hpp"
#include "cairn/persistence/types.hpp"

namespace cairn::persistence {

/// A data subject's data key as the `keys` table stores it: wrapped by the
/// owner's master key and sealed (docs/storage-format.md#keys).
struct subject_key {
  std::string subject;
  std::string wrapped; ///< The stored value, seal included.

  /// Bytes it adds to a frame (what read_frame counts against its budget).
  [[nodiscard]] std::size_t size() const { return subject.size() + wrapped.size(); }
};

/// A run of consecutive records of the global log, as stored (what a standby copies).
struct log_frame {
  std::uint64_t first_position = 0; ///< Position of records.front().
  std::vector<std::string> records; ///< Each record's stored bytes, in position order.
  /// The stored data key of every distinct subject of the records that had
  /// one when the frame was read (in the records' read transaction).
  /// apply_frame stores them in order after the records: of two entries of
  /// one subject (frames merged on the standby) the later wins.
  std::vector<subject_key> keys{}; // {}: frames written as {first, records} stay valid
  /// The owner's subscriber checkpoints that moved since it last sent them
  /// (names as on the owner, 1-255 bytes, none with
  /// replicated_checkpoint_prefix), each at most the last position sent.
  /// apply_frame stores them under replicated_checkpoint_name, so a standby
  /// promoted later resumes the owner's subscribers where they were
  /// (docs/cluster.md#what-is-copied). May come without records. (Its
  /// initializer keeps `log_frame{first, records}` free of warnings.)
  std::vector<checkpoint> checkpoints{};

  /// The position of records.back(); first_position - 1 when empty.
  [[nodiscard]] std::uint64_t last_position() const { return first_position + records.size() - 1; }
};

/// Names a standby gives the checkpoints it copies from its owner: this
/// prefix and the owner's name. A store refuses it in any other checkpoint
/// it writes, so the standby's own subscribers' checkpoints never collide.
inline constexpr std::string_view replicated_checkpoint_prefix = "$owner:";

/// The name under which a standby keeps its owner's checkpoint `name`.
[[nodiscard]] inline std::string replicated_checkpoint_name(std::string_view name) {
  std::string out{replicated_checkpoint_prefix};
  out.append(name);
  return out;
}

/// Whether `name` is one of the copies replicated_checkpoint_name makes.
[[nodiscard]] inline bool is_replicated_checkpoint_name(std::string_view name) noexcept {
  return name.substr(0, replicated_checkpoint_prefix.size()) == replicated_checkpoint_prefix;
}

/// Most checkpoints one frame carries; a source sends the rest with the next.
inline constexpr std::size_t max_frame_checkpoints = 1024;

/// Checks the checkpoints of a frame from another node (apply_frame does,
/// before it writes anything): at most max_frame_checkpoints, names of 1-255
/// bytes, none beginning with replicated_checkpoint_prefix.
/// `invalid_argument` naming the first that fails.
[[nodiscard]] inline result<void> check_frame_checkpoints(const log_frame& frame) {
  if (frame.checkpoints.size() > max_frame_checkpoints)
    return fail(errc::invalid_argument,
                "a frame carries at most " + std::to_string(max_frame_checkpoints)
                  + " checkpoints, this one " + std::to_string(frame.checkpoints.size()));
  for (const auto& cp : frame.checkpoints)
    if (cp.name.empty() || cp.name.size() > 255 || is_replicated_checkpoint_name(cp.name))
      return fail(errc::invalid_argument,
                  "a frame's checkpoint names are 1-255 bytes and never begin with "
                    + std::string{replicated_checkpoint_prefix},
                  cp.name.substr(0, 255));
  return {};
}

/// One epoch of a store's log: from which position which node owned it.
struct epoch_info {
  std::uint64_t epoch = 0;
  std::uint64_t position = 0; ///< Position of its epoch record in the log.
  std::string node;           ///< The node that began it.
  std::int64_t timestamp_ns = 0;

  friend bool operator==(const epoch_info& a, const epoch_info& b) {
    return a.epoch == b.epoch && a.position == b.position && a.node == b.node
           && a.timestamp_ns == b.timestamp_ns;
  }
};

/// A forget record of a store's log: which subject was forgotten, where and when.
struct forget_info {
  std::string subject;
  std::uint64_t position = 0; ///< Position of its forget record in the log.
  std::int64_t timestamp_ns = 0;
};

/// What truncate_after removed.
struct truncation {
  std::uint64_t first_removed = 0, last_removed = 0, records = 0;
  std::string saved_to; ///< The file holding the removed events; empty when none were removed.
  /// Checkpoints that stood past the cut, with the positions they had: each
  /// now stands at the cut. Their read models saw removed events.
  std::vector<checkpoint> lowered;
  std::uint64_t snapshots_dropped = 0;    ///< Snapshots of versions that no longer exist.
  std::uint64_t dead_letters_dropped = 0; ///< Dead letters of removed events.
};

/// Where a follower's log stops agreeing with the leader's, by KurrentDB's
/// rule: take the newest follower epoch the leader also has (the same
/// record: epoch number, position, node and time, so an owner that began
/// epoch 1 again on an empty store shares nothing with the log it was
/// replaced by). If it is the leader's newest epoch, the two
/// agree up to min(follower_last, leader_last); otherwise up to
/// min(follower_last, the position of the leader's next epoch - 1), since
/// the leader's log diverged from there. 0 when they share no epoch: the
/// follower must be emptied (truncated after 0) and copy everything. The
/// follower truncates after the returned position. Both epoch lists are
/// oldest first (event_store::epochs()).
[[nodiscard]] inline std::uint64_t common_position(const std::vector<epoch_info>& leader,
                                                   std::uint64_t leader_last,
                                                   const std::vector<epoch_info>& follower,
                                                   std::uint64_t follower_last) {
  for (auto f = follower.rbegin(); f != follower.rend(); ++f) {
    for (std::size_t i = 0; i < leader.size(); ++i) {
      if (!(leader[i] == *f))
        continue;
      std::uint64_t end = leader_last;
      if (i + 1 < leader.size())
        end = leader[i + 1].position - 1; // epoch positions ascend, and are >= 1
      end = end < follower_last ? end : follower_last;
      return end;
    }
  }
  return 0;
}

} // namespace cairn::persistence
