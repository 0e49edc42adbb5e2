// The pure parts of replication: where two logs stop agreeing (KurrentDB's
// epoch rule), and the bytes of an epoch record and of the header's epoch.

#include <catch2/catch.hpp>

#include "cairn/persistence/format.hpp"
#include "cairn/persistence/replication.hpp"

using namespace cairn;
using cairn::persistence::common_position;
using cairn::persistence::epoch_info;
namespace fmt = cairn::persistence::format;

namespace {

epoch_info ep(std::uint64_t epoch, std::uint64_t position, std::string node = "n") {
  return epoch_info{epoch, position, std::move(node), 0};
}

} // namespace

TEST_CASE("a follower with the leader's history agrees up to the shorter log",
          "[unit][replication]") {
  std::vector<epoch_info> history{ep(1, 1), ep(2, 100), ep(3, 250)};
  CHECK(common_position(history, 400, history, 400) == 400);
  // Behind: it has all it has.
  CHECK(common_position(history, 400, history, 300) == 300);
  CHECK(common_position(history, 400, {ep(1, 1), ep(2, 100)}, 180) == 180);
  // Ahead in the same epoch (the leader has not copied everything yet).
  CHECK(common_position(history, 400, history, 450) == 400);
}

TEST_CASE("a follower that went on in an epoch the leader replaced agrees up to the leader's next "
          "epoch",
          "[unit][replication]") {
  // The follower owned epoch 2 and wrote up to 260; the leader copied it up
  // to 199, began epoch 3 at 200 and went on.
  std::vector<epoch_info> leader{ep(1, 1, "a"), ep(2, 100, "b"), ep(3, 200, "a")};
  std::vector<epoch_info> follower{ep(1, 1, "a"), ep(2, 100, "b")};
  CHECK(common_position(leader, 500, follower, 260) == 199);
  // A follower that had fewer records than the leader copied keeps them all.
  CHECK(common_position(leader, 500, follower, 150) == 150);
  // A follower that began an epoch of its own the leader never saw: the
  // newest shared one decides.
  std::vector<epoch_info> rogue{ep(1, 1, "a"), ep(2, 100, "b"), ep(3, 220, "b")};
  CHECK(common_position(leader, 500, rogue, 300) == 199);
}

TEST_CASE("an epoch with the same number at another position is not shared",
          "[unit][replication]") {
  std::vector<epoch_info> leader{ep(1, 1), ep(2, 100)};
  std::vector<epoch_info> follower{ep(1, 1), ep(2, 120)};
  CHECK(common_position(leader, 300, follower, 200) == 99);
}

TEST_CASE("logs that share no epoch agree on nothing: the follower is emptied",
          "[unit][replication]") {
  CHECK(common_position({ep(1, 1, "a")}, 50, {ep(1, 3, "b")}, 70) == 0);
  // An owner that began epoch 1 again on an empty store: same number and
  // position, another record.
  CHECK(common_position({ep(1, 1, "a")}, 50, {epoch_info{1, 1, "a", 42}}, 70) == 0);
  CHECK(common_position({ep(1, 1)}, 50, {}, 70) == 0);
  CHECK(common_position({}, 50, {ep(1, 1)}, 70) == 0);
}

TEST_CASE("an epoch record's payload round trips and its decoder refuses bad layouts",
          "[unit][replication][format]") {
  auto bytes = fmt::encode_epoch_payload(fmt::epoch_payload{7, 4096, "node-b"});
  REQUIRE(bytes.size() == fmt::epoch_payload_header_size + 6);
  auto e = fmt::decode_epoch_payload(bytes);
  REQUIRE(e);
  CHECK(e->epoch == 7);
  CHECK(e->previous_position == 4096);
  CHECK(e->node == "node-b");
  auto refused = [](std::string b) {
    auto d = fmt::decode_epoch_payload(b);
    return !d && d.error().code == errc::corrupted;
  };
  CHECK(refused(bytes.substr(0, 18)));               // shorter than its header
  CHECK(refused(bytes.substr(0, bytes.size() - 1))); // node length past the end
  CHECK(refused(bytes + "x"));                       // bytes after the node
  auto layout = bytes;
  layout[0] = 2;
  CHECK(refused(layout));
  CHECK(refused(fmt::encode_epoch_payload(fmt::epoch_payload{0, 0, "a"}))); // epoch 0
  CHECK(refused(fmt::encode_epoch_payload(fmt::epoch_payload{1, 0, ""})));  // no node
}

TEST_CASE("the header's epoch is sealed under its key", "[unit][replication][format]") {
  auto value = fmt::seal(fmt::epoch_key, fmt::encode_epoch_header(3, 77));
  auto h = fmt::decode_epoch_header(value);
  REQUIRE(h);
  CHECK(h->first == 3);
  CHECK(h->second == 77);
  value.back() = static_cast<char>(value.back() ^ 1);
  CHECK_FALSE(fmt::decode_epoch_header(value));
  CHECK_FALSE(fmt::decode_epoch_header(fmt::seal(fmt::epoch_key, "short")));
  CHECK(fmt::is_system_stream("$epoch"));
  CHECK_FALSE(fmt::is_system_stream("acct-1"));
}

TEST_CASE("a forget record's payload names one subject of 1-255 bytes",
          "[unit][replication][format][forget]") {
  auto bytes = fmt::encode_forget_payload("c-7");
  CHECK(bytes == std::string{"\x01\x03"} + "c-7");
  auto subject = fmt::decode_forget_payload(bytes);
  REQUIRE(subject);
  CHECK(*subject == "c-7");
  auto longest = std::string(255, 's');
  CHECK(fmt::decode_forget_payload(fmt::encode_forget_payload(longest)).value() == longest);
  auto refused = [](std::string b) {
    auto r = fmt::decode_forget_payload(b);
    return !r && r.error().code == errc::corrupted;
  };
  CHECK(refused(""));
  CHECK(refused("\x01"));
  CHECK(refused(std::string{"\x02\x03"} + "c-7")); // unknown layout
  CHECK(refused(std::string{"\x01\x00", 2}));      // no subject
  CHECK(refused(std::string{"\x01\x04"} + "c-7")); // shorter than it says
  CHECK(refused(bytes + "x"));                     // longer
  CHECK(fmt::is_system_stream(fmt::forget_stream));
  CHECK(fmt::is_system_type(fmt::forget_type));
  CHECK(fmt::is_known_system_record(fmt::forget_stream, fmt::forget_type, bytes));
  CHECK_FALSE(fmt::is_known_system_record(fmt::forget_stream, fmt::forget_type, "\x01"));
  CHECK_FALSE(fmt::is_known_system_record(fmt::forget_stream, fmt::epoch_type, bytes));
  CHECK_FALSE(fmt::is_known_system_record("$other", fmt::forget_type, bytes));
  CHECK(fmt::is_known_system_record(fmt::epoch_stream, fmt::epoch_type,
                                    fmt::encode_epoch_payload(fmt::epoch_payload{1, 0, "a"})));
}
