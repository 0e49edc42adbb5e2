// The owner's subscriber checkpoints, carried by replication frames to the
// standby's store (docs/cluster.md#what-is-copied): kept under a reserved
// prefix, never past what the replica holds.

#include <string>

#include <catch2/catch.hpp>

#include "cairn/persistence/replication.hpp"
#include "support/temp_dir.hpp"
#include "unit/persistence/helpers.hpp"

using namespace cairn;
using namespace cairn::test;

namespace {

/// An owner's store of 20 events, and a replica holding none of them.
struct pair_of_stores {
  temp_dir dir;
  std::unique_ptr<cp::event_store> owner = open_ok(dir.sub("owner"));
  std::unique_ptr<cp::event_store> replica = open_ok(dir.sub("replica"));
  pair_of_stores() {
    append_ok(*owner, "acct-1", numbered(10));
    append_ok(*owner, "acct-2", numbered(10));
  }
};

std::optional<std::uint64_t> checkpoint_of(const cp::event_store& s, const std::string& name) {
  return value_of(s.load_checkpoint(name));
}

} // namespace

TEST_CASE("a frame's checkpoints are kept under the reserved prefix, never past the frame",
          "[integration][replication][checkpoints]") {
  pair_of_stores p;
  auto frame = value_of(p.owner->read_frame(1, 1 << 20));
  frame.records.resize(12); // the replica holds 1-12 after it
  frame.checkpoints = {{"mailer", 7}, {"billing", 19}, {"report@A", 12}};
  REQUIRE(value_of(p.replica->apply_frame(frame)) == 12);
  CHECK(checkpoint_of(*p.replica, "$owner:mailer") == std::uint64_t{7});
  CHECK(checkpoint_of(*p.replica, "$owner:billing") == std::uint64_t{12}); // clamped
  CHECK(checkpoint_of(*p.replica, "$owner:report@A") == std::uint64_t{12});
  // The standby's own subscribers of the same names have checkpoints of their own.
  CHECK_FALSE(checkpoint_of(*p.replica, "mailer"));
  CHECK_FALSE(checkpoint_of(*p.replica, "billing"));
  // The next frame moves them on; one it does not name stays.
  auto rest = value_of(p.owner->read_frame(13, 1 << 20));
  rest.checkpoints = {{"billing", 19}};
  REQUIRE(value_of(p.replica->apply_frame(rest)) == 20);
  CHECK(checkpoint_of(*p.replica, "$owner:billing") == std::uint64_t{19});
  CHECK(checkpoint_of(*p.replica, "$owner:mailer") == std::uint64_t{7});
}

TEST_CASE("a frame of checkpoints only writes them at most at the replica's end and no record",
          "[integration][replication][checkpoints]") {
  pair_of_stores p;
  auto frame = value_of(p.owner->read_frame(1, 1 << 20));
  REQUIRE(value_of(p.replica->apply_frame(frame)) == 20);
  auto digest = value_of(p.replica->digest_at(cp::no_limit)).digest;
  cp::log_frame only;
  only.first_position = 21;
  only.checkpoints = {{"mailer", 20}, {"billing", 25}};
  CHECK(value_of(p.replica->apply_frame(only)) == 20);
  CHECK(checkpoint_of(*p.replica, "$owner:mailer") == std::uint64_t{20});
  CHECK(checkpoint_of(*p.replica, "$owner:billing") == std::uint64_t{20});
  CHECK(value_of(p.replica->last_position()) == 20);
  CHECK(value_of(p.replica->digest_at(cp::no_limit)).digest == digest);
  // A checkpoint that moves back (a rebuilt subscriber) is copied as it is.
  only.checkpoints = {{"mailer", 3}};
  CHECK(value_of(p.replica->apply_frame(only)) == 20);
  CHECK(checkpoint_of(*p.replica, "$owner:mailer") == std::uint64_t{3});
}

TEST_CASE("a frame whose checkpoint names are reserved, empty or too long is refused whole",
          "[integration][replication][checkpoints]") {
  pair_of_stores p;
  auto frame = value_of(p.owner->read_frame(1, 1 << 20));
  for (const auto& bad : {std::string{"$owner:mailer"}, std::string{}, std::string(256, 'n')}) {
    INFO("name of " << bad.size() << " bytes");
    auto f = frame;
    f.checkpoints = {{"fine", 3}, {bad, 4}};
    auto refused = p.replica->apply_frame(f);
    REQUIRE_FALSE(refused);
    CHECK(refused.error().code == errc::invalid_argument);
    CHECK(value_of(p.replica->last_position()) == 0); // no record either
    CHECK_FALSE(checkpoint_of(*p.replica, "$owner:fine"));
  }
  auto many = frame;
  many.checkpoints.assign(cp::max_frame_checkpoints + 1, cp::checkpoint{"x", 1});
  auto refused = p.replica->apply_frame(many);
  REQUIRE_FALSE(refused);
  CHECK(refused.error().code == errc::invalid_argument);
  CHECK(value_of(p.replica->last_position()) == 0);
}

TEST_CASE("no checkpoint of a subscriber may be written under the reserved prefix",
          "[integration][replication][checkpoints]") {
  pair_of_stores p;
  auto refused = p.owner->save_checkpoint({"$owner:mailer", 3});
  REQUIRE_FALSE(refused);
  CHECK(refused.error().code == errc::invalid_argument);
  cp::write_batch b;
  b.checkpoints = {{"mailer", 3}, {"$owner:mailer", 3}};
  REQUIRE_FALSE(p.owner->append_batch(b));
  CHECK_FALSE(checkpoint_of(*p.owner, "mailer"));
  // The longest owner's name, with the prefix on top, is stored and read back.
  auto longest = std::string(255, 'n');
  auto frame = value_of(p.owner->read_frame(1, 1 << 20));
  frame.checkpoints = {{longest, 5}};
  REQUIRE(value_of(p.replica->apply_frame(frame)) == 20);
  CHECK(checkpoint_of(*p.replica, cp::replicated_checkpoint_name(longest)) == std::uint64_t{5});
}

TEST_CASE("retention is held by the further of a checkpoint and its owner's copy, where the "
          "subscriber resumes",
          "[integration][replication][checkpoints][retention]") {
  pair_of_stores p;
  auto frame = value_of(p.owner->read_frame(1, 1 << 20));
  frame.checkpoints = {{"mailer", 6}, {"billing", 15}};
  REQUIRE(value_of(p.replica->apply_frame(frame)) == 20);
  REQUIRE(p.replica->save_checkpoint({"mailer", 12})); // resumes after 12, not 6
  REQUIRE(p.replica->save_checkpoint({"audit", 9}));
  cp::retention_policy policy;
  auto plan = value_of(p.replica->plan_retention(policy, 0));
  REQUIRE(plan.limiting_checkpoint);
  CHECK(*plan.limiting_checkpoint == "audit");
  CHECK(plan.limiting_position == 9);
  REQUIRE(p.replica->save_checkpoint({"audit", 19}));
  plan = value_of(p.replica->plan_retention(policy, 0));
  REQUIRE(plan.limiting_checkpoint);
  CHECK(*plan.limiting_checkpoint == "mailer");
  CHECK(plan.limiting_position == 12);
  // A copy without a checkpoint of its own holds as itself.
  REQUIRE(p.replica->save_checkpoint({"mailer", 18}));
  plan = value_of(p.replica->plan_retention(policy, 0));
  REQUIRE(plan.limiting_checkpoint);
  CHECK(*plan.limiting_checkpoint == "$owner:billing");
  CHECK(plan.limiting_position == 15);
}
