// A replication frame (cairn/persistence/replication.hpp) as CAF's
// deserializer reads it from the owner's BASP payload, then the check of its
// checkpoints (check_frame_checkpoints) that apply_frame makes before it
// stores them on the standby. Reading is bounded by the input; checkpoints
// the check accepts are few enough and named so that their copies
// ("$owner:<name>") never collide with a subscriber's own.

#include <cstddef>
#include <cstdint>

#include <caf/binary_deserializer.hpp>

#include "cairn/actors/replication.hpp"
#include "fuzz_check.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  cairn::persistence::log_frame frame;
  caf::binary_deserializer source{nullptr, reinterpret_cast<const char*>(data), size};
  if (source(frame))
    return 0; // refused: an error, not a crash or an allocation of what was claimed
  if (!cairn::persistence::check_frame_checkpoints(frame))
    return 0;
  CAIRN_FUZZ_CHECK(frame.checkpoints.size() <= cairn::persistence::max_frame_checkpoints,
                   "an accepted frame carries a bounded number of checkpoints");
  for (const auto& cp : frame.checkpoints) {
    CAIRN_FUZZ_CHECK(!cp.name.empty() && cp.name.size() <= 255, "accepted names are 1-255 bytes");
    auto copy = cairn::persistence::replicated_checkpoint_name(cp.name);
    CAIRN_FUZZ_CHECK(cairn::persistence::is_replicated_checkpoint_name(copy)
                       && !cairn::persistence::is_replicated_checkpoint_name(cp.name),
                     "a copy's name is reserved and the owner's is not");
  }
  return 0;
}
