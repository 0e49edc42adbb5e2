// The data keys of subjects and their forgetting on a replica
// (docs/cluster.md#what-is-copied): frames carry the wrapped keys of their
// records' subjects, a forget is a record of the log, and a replica opened
// with the owner's master key reads personal fields as the owner does.

#include <fstream>
#include <string>
#include <vector>

#include <catch2/catch.hpp>
#include <cereal/types/string.hpp>

#include "cairn/persistence/codec.hpp"
#include "cairn/persistence/format.hpp"
#include "cairn/persistence/personal.hpp"
#include "cairn/persistence/replication.hpp"
#include "support/temp_dir.hpp"
#include "unit/persistence/helpers.hpp"

using namespace cairn;
using namespace cairn::test;
namespace fmt = cairn::persistence::format;

namespace {

constexpr std::size_t big = 1 << 20;

struct signed_up {
  static constexpr const char* type_name = "signed_up";
  std::string customer_no;
  personal<std::string> email;
  template <class A> void serialize(A& a) { a(customer_no, email); }
};

/// A master key file outside any store's directory.
std::string write_master_key(const std::string& dir, char digit) {
  auto path = dir + "/master.key";
  std::ofstream{path} << std::string(64, digit) << '\n';
  return path;
}

cp::store_options with_master(const std::string& key_file) {
  auto o = fast_options();
  o.master_key_file = key_file;
  return o;
}

/// Appends a signed_up about `subject` with its email encrypted under the
/// subject's key (made by the store's ring when it has none).
void sign_up(cp::event_store& s, const std::string& stream, const std::string& subject,
             const std::string& email) {
  std::string payload;
  {
    cp::personal_scope scope{s.personal_keys(), subject};
    cp::encode_payload(signed_up{stream, email}, payload);
  }
  cp::metadata m;
  m.subject = subject;
  append_ok(s, stream, {event("signed_up", payload)}, m);
}

void forget(cp::event_store& s, const std::string& subject) {
  cp::write_batch b;
  b.forget.push_back(subject);
  REQUIRE(s.append_batch(b));
}

/// The email of every event of `stream` as `s` reads it; "" when absent.
std::vector<std::string> emails(const cp::event_store& s, const std::string& stream) {
  std::vector<std::string> out;
  for (const auto& ev : value_of(s.read_stream(stream, 1, cp::no_limit))) {
    cp::personal_scope scope{s.personal_keys(), ev.meta.subject};
    auto back = cp::decode_payload<signed_up>(ev.payload);
    REQUIRE(back);
    out.push_back(back->email.value_or(""));
  }
  return out;
}

/// Copies what `dst` lacks of `src` by frames of at most `bytes`.
void copy_all(const cp::event_store& src, cp::event_store& dst, std::size_t bytes = big) {
  for (;;) {
    auto last = value_of(dst.last_position());
    auto frame = value_of(src.read_frame(last + 1, bytes));
    if (frame.records.empty())
      return;
    REQUIRE(value_of(dst.apply_frame(frame)) == frame.last_position());
  }
}

std::vector<std::string> key_subjects(const cp::log_frame& f) {
  std::vector<std::string> out;
  for (const auto& k : f.keys)
    out.push_back(k.subject);
  return out;
}

bool has_key(const cp::event_store& s, const std::string& subject) {
  return value_of(s.personal_keys()->key_for_read(subject)).has_value();
}

} // namespace

TEST_CASE("a frame carries the stored data key of each subject of its records",
          "[integration][replica][personal]") {
  temp_dir keydir, dir;
  auto key_file = write_master_key(keydir.path(), 'a');
  auto owner = open_ok(dir.path(), with_master(key_file));
  sign_up(*owner, "customer-1", "ann", "ann@mail.test");
  sign_up(*owner, "customer-2", "bob", "bob@mail.test");
  sign_up(*owner, "customer-1", "ann", "ann2@mail.test");
  append_ok(*owner, "other-1", {event("noted", "x")});

  auto frame = value_of(owner->read_frame(1, big));
  REQUIRE(frame.records.size() == 4);
  CHECK(key_subjects(frame) == std::vector<std::string>{"ann", "bob"});
  for (const auto& k : frame.keys) {
    CHECK(k.wrapped.size() == fmt::seal_size + fmt::wrapped_key_size);
    CHECK(fmt::decode_wrapped_key(k.subject, k.wrapped));
  }
  SECTION("a frame of records without subjects carries none") {
    CHECK(value_of(owner->read_frame(4, big)).keys.empty());
  }
  SECTION("the keys count against the frame's bytes") {
    auto r1 = frame.records[0].size(), r2 = frame.records[1].size();
    auto k1 = frame.keys[0].size(), k2 = frame.keys[1].size();
    // Room for both records but not for both keys: the second record, which
    // brings bob's key, waits for the next frame.
    auto one = value_of(owner->read_frame(1, r1 + k1 + r2 + k2 - 1));
    CHECK(one.records.size() == 1);
    CHECK(key_subjects(one) == std::vector<std::string>{"ann"});
    auto two = value_of(owner->read_frame(1, r1 + k1 + r2 + k2));
    CHECK(two.records.size() == 2);
    // The first record comes with its key even when they exceed the budget.
    auto first = value_of(owner->read_frame(1, 1));
    CHECK(first.records.size() == 1);
    CHECK(key_subjects(first) == std::vector<std::string>{"ann"});
  }
}

TEST_CASE("a replica with the owner's master key reads personal fields as the owner does",
          "[integration][replica][personal]") {
  temp_dir keydir, dir, rdir;
  auto key_file = write_master_key(keydir.path(), 'a');
  auto owner = open_ok(dir.path(), with_master(key_file));
  sign_up(*owner, "customer-1", "ann", "ann@mail.test");
  sign_up(*owner, "customer-2", "bob", "bob@mail.test");
  {
    auto replica = open_ok(rdir.path(), with_master(key_file));
    copy_all(*owner, *replica, 1); // a frame per record
    CHECK(emails(*replica, "customer-1") == std::vector<std::string>{"ann@mail.test"});
    CHECK(emails(*replica, "customer-2") == std::vector<std::string>{"bob@mail.test"});
  }
  // Promoted: reopened, it writes with the owner's key of the subject.
  auto replica = open_ok(rdir.path(), with_master(key_file));
  CHECK(emails(*replica, "customer-1") == std::vector<std::string>{"ann@mail.test"});
  sign_up(*replica, "customer-1", "ann", "new@mail.test");
  CHECK(emails(*replica, "customer-1")
        == std::vector<std::string>{"ann@mail.test", "new@mail.test"});
  CHECK(value_of(owner->personal_keys()->key_for_read("ann"))->id
        == value_of(replica->personal_keys()->key_for_read("ann"))->id);
}

TEST_CASE("a forget is a record of the log, and a replica that copies it forgets too",
          "[integration][replica][personal][forget]") {
  temp_dir keydir, dir, rdir;
  auto key_file = write_master_key(keydir.path(), 'a');
  auto owner = open_ok(dir.path(), with_master(key_file));
  auto replica = open_ok(rdir.path(), with_master(key_file));
  sign_up(*owner, "customer-1", "ann", "ann@mail.test");
  sign_up(*owner, "customer-2", "bob", "bob@mail.test");
  copy_all(*owner, *replica);
  REQUIRE(emails(*replica, "customer-1") == std::vector<std::string>{"ann@mail.test"});
  REQUIRE(replica->save_snapshot(cp::snapshot{"customer-1", 1, "customer.state", 1, "ann"}));

  forget(*owner, "ann");
  CHECK(value_of(owner->last_position()) == 3);
  cp::read_filter every;
  every.include_system = true;
  auto log = value_of(owner->read_all(3, 10, every)).events;
  REQUIRE(log.size() == 1);
  CHECK(log[0].stream == fmt::forget_stream);
  CHECK(log[0].type == fmt::forget_type);
  CHECK(value_of(fmt::decode_forget_payload(log[0].payload)) == "ann");
  CHECK(value_of(owner->read_all(1, 10)).events.size() == 2); // hidden from readers
  auto forgets = value_of(owner->forgets());
  REQUIRE(forgets.size() == 1);
  CHECK(forgets[0].subject == "ann");
  CHECK(forgets[0].position == 3);
  CHECK(forgets[0].timestamp_ns == log[0].timestamp_ns);
  for (const auto& s : value_of(owner->list_streams("")))
    CHECK_FALSE(fmt::is_system_stream(s.name));

  copy_all(*owner, *replica);
  CHECK_FALSE(has_key(*replica, "ann"));
  CHECK(has_key(*replica, "bob"));
  CHECK(emails(*replica, "customer-1") == std::vector<std::string>{""});
  CHECK(emails(*replica, "customer-2") == std::vector<std::string>{"bob@mail.test"});
  CHECK(value_of(replica->subject_streams("ann")).empty());
  CHECK_FALSE(value_of(replica->load_snapshot("customer-1")).has_value());
  CHECK(value_of(owner->digest_at(3)).digest == value_of(replica->digest_at(3)).digest);
  CHECK(value_of(replica->forgets()).size() == 1);
  CHECK(value_of(replica->check_chain(cp::no_limit)).first_broken == 0);
}

TEST_CASE("a subject forgotten and then given a new key converges on the replica, whatever the "
          "frames",
          "[integration][replica][personal][forget]") {
  temp_dir keydir, dir;
  auto key_file = write_master_key(keydir.path(), 'a');
  auto owner = open_ok(dir.path(), with_master(key_file));
  sign_up(*owner, "customer-1", "ann", "old@mail.test"); // 1, key K1
  append_ok(*owner, "other-1", {event("noted", "x")});   // 2
  forget(*owner, "ann");                                 // 3, the forget record
  append_ok(*owner, "other-1", {event("noted", "y")});   // 4
  sign_up(*owner, "customer-1", "ann", "new@mail.test"); // 5, key K2
  const std::vector<std::string> expected{"", "new@mail.test"};
  REQUIRE(emails(*owner, "customer-1") == expected);

  for (std::size_t bytes : {std::size_t{1}, std::size_t{big}}) {
    DYNAMIC_SECTION("frames of at most " << bytes << " bytes") {
      temp_dir rdir;
      auto replica = open_ok(rdir.path(), with_master(key_file));
      if (bytes == 1) {
        // Record 1, read now, comes with K2: the owner's key at the read.
        auto f1 = value_of(owner->read_frame(1, 1));
        REQUIRE(value_of(replica->apply_frame(f1)) == 1);
        CHECK(has_key(*replica, "ann"));
        CHECK(emails(*replica, "customer-1") == std::vector<std::string>{""});
        copy_all(*owner, *replica, 1);
      } else {
        copy_all(*owner, *replica, bytes);
      }
      CHECK(emails(*replica, "customer-1") == expected);
      CHECK(value_of(replica->personal_keys()->key_for_read("ann"))->id
            == value_of(owner->personal_keys()->key_for_read("ann"))->id);
    }
  }
  SECTION("between the forget record and the new key, the replica has no key") {
    temp_dir rdir;
    auto stepwise = open_ok(rdir.path(), with_master(key_file));
    for (std::uint64_t p = 1; p <= 5; ++p) {
      REQUIRE(value_of(stepwise->apply_frame(value_of(owner->read_frame(p, 1)))) == p);
      if (p == 3 || p == 4)
        CHECK_FALSE(has_key(*stepwise, "ann"));
    }
    CHECK(emails(*stepwise, "customer-1") == expected);
  }
}

TEST_CASE("re-applying a frame changes nothing, and an old frame does not bring back a forgotten "
          "key",
          "[integration][replica][personal][forget]") {
  temp_dir keydir, dir, rdir;
  auto key_file = write_master_key(keydir.path(), 'a');
  auto owner = open_ok(dir.path(), with_master(key_file));
  auto replica = open_ok(rdir.path(), with_master(key_file));
  sign_up(*owner, "customer-1", "ann", "ann@mail.test");
  auto early = value_of(owner->read_frame(1, big)); // carries ann's key
  REQUIRE(key_subjects(early) == std::vector<std::string>{"ann"});
  REQUIRE(value_of(replica->apply_frame(early)) == 1);
  CHECK(value_of(replica->apply_frame(early)) == 1);
  CHECK(emails(*replica, "customer-1") == std::vector<std::string>{"ann@mail.test"});

  forget(*owner, "ann");
  copy_all(*owner, *replica);
  REQUIRE_FALSE(has_key(*replica, "ann"));
  // A resend of the early frame (a new hello): its records are all here.
  CHECK(value_of(replica->apply_frame(early)) == 2);
  CHECK_FALSE(has_key(*replica, "ann"));
  CHECK(emails(*replica, "customer-1") == std::vector<std::string>{""});
  SECTION("and after a reopen") {
    replica.reset();
    replica = open_ok(rdir.path(), with_master(key_file));
    CHECK_FALSE(has_key(*replica, "ann"));
  }
}

TEST_CASE("a replica refuses data keys it cannot open, and says why",
          "[integration][replica][personal]") {
  temp_dir keydir, otherdir, dir, rdir;
  auto key_file = write_master_key(keydir.path(), 'a');
  auto owner = open_ok(dir.path(), with_master(key_file));
  sign_up(*owner, "customer-1", "ann", "ann@mail.test");
  auto frame = value_of(owner->read_frame(1, big));

  SECTION("another master key") {
    auto replica = open_ok(rdir.path(), with_master(write_master_key(otherdir.path(), 'b')));
    auto refused = replica->apply_frame(frame);
    REQUIRE_FALSE(refused);
    CHECK(refused.error().code == errc::invalid_argument);
    CHECK(contains(refused.error().message, "do not open with this replica's master key"));
    CHECK(value_of(replica->last_position()) == 0); // nothing written
  }
  SECTION("no master key") {
    auto replica = open_ok(rdir.path(), fast_options());
    auto refused = replica->apply_frame(frame);
    REQUIRE_FALSE(refused);
    CHECK(refused.error().code == errc::invalid_argument);
    CHECK(contains(refused.error().message, "no master key"));
    CHECK(value_of(replica->last_position()) == 0);
  }
  SECTION("a key that is not a stored key") {
    auto replica = open_ok(rdir.path(), with_master(key_file));
    auto bad = frame;
    bad.keys[0].wrapped[fmt::seal_size + 3] ^= 1; // the seal no longer matches
    auto refused = replica->apply_frame(bad);
    REQUIRE_FALSE(refused);
    CHECK(refused.error().code == errc::corrupted);
    CHECK(value_of(replica->last_position()) == 0);
  }
  SECTION("the same master key") {
    auto replica = open_ok(rdir.path(), with_master(key_file));
    CHECK(value_of(replica->apply_frame(frame)) == 1);
  }
}

TEST_CASE("an owner without personal data replicates to a replica without a master key",
          "[integration][replica][personal]") {
  temp_dir dir, rdir;
  auto owner = open_ok(dir.path(), fast_options());
  cp::metadata m;
  m.subject = "ann"; // a subject, but no personal field and no key
  append_ok(*owner, "customer-1", {event("noted", "x")}, m);
  forget(*owner, "ann");
  auto replica = open_ok(rdir.path(), fast_options());
  auto frame = value_of(owner->read_frame(1, big));
  CHECK(frame.keys.empty());
  CHECK(value_of(replica->apply_frame(frame)) == 2);
  CHECK(value_of(replica->subject_streams("ann")).empty());
}

TEST_CASE("a forget record is cut with a divergent tail and kept in the saved file",
          "[integration][replica][forget]") {
  temp_dir keydir, dir, out;
  auto key_file = write_master_key(keydir.path(), 'a');
  auto owner = open_ok(dir.path(), with_master(key_file));
  sign_up(*owner, "customer-1", "ann", "ann@mail.test");
  forget(*owner, "ann");
  auto saved = out.path() + "/tail.jsonl";
  auto cut = value_of(owner->truncate_after(1, saved));
  CHECK(cut.records == 1);
  CHECK(contains(read_file(saved), "$forget"));
  CHECK(value_of(owner->last_position()) == 1);
  CHECK(value_of(owner->check_chain(cp::no_limit)).first_broken == 0);
  forget(*owner, "ann"); // the "$forget" stream starts over at version 1
  CHECK(value_of(owner->last_position()) == 2);
}
