// Crypto-shredding through the runtime: personal data encrypted under a
// subject's key, forget(), and what every read (the live state, state_at,
// recovery after a restart, subscribers) then sees; snapshot invalidation;
// and which bytes stay in data.mdb until a compacting backup.

#include <atomic>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <mutex>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "cairn/persistence/personal.hpp"
#include "customer.hpp"
#include "runtime_support.hpp"
#include "support/temp_dir.hpp"

using namespace std::chrono_literals;
using cairn::test::temp_dir;

namespace {

const std::string ann_name = "Annabel Quux-Forgettable";
const std::string ann_email = "annabel.quux@mail.test";

std::string write_master_key(const std::string& dir) {
  auto path = dir + "/master.key";
  std::ofstream{path} << "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\n";
  return path;
}

cairn::runtime_options options(const std::string& dir, const std::string& key_file) {
  auto o = cairn::test::quick_options(dir);
  o.store.master_key_file = key_file;
  return o;
}

cairn::command_options about(std::string subject) {
  cairn::command_options o;
  o.subject = std::move(subject);
  return o;
}

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

std::size_t occurrences(const std::string& hay, const std::string& needle) {
  std::size_t n = 0;
  for (auto at = hay.find(needle); at != std::string::npos; at = hay.find(needle, at + 1))
    ++n;
  return n;
}

/// Occurrences of a wrapped data key of subject "ann": LMDB stores a leaf
/// node's key right before its value, and the value is the 8-byte seal
/// checksum, then 0x01 ‖ key id (`key_tag`). An envelope in an event starts
/// the same but follows a cereal length (LE64, small), and a record's first
/// envelope may follow its subject "ann" too: the checksum tells them apart
/// (below 2^32 with a chance of 2^-32).
std::size_t wrapped_keys(const std::string& file, const std::string& key_tag) {
  std::size_t n = 0;
  for (auto at = file.find(key_tag); at != std::string::npos; at = file.find(key_tag, at + 1)) {
    if (at < 11 || file.compare(at - 11, 3, "ann") != 0)
      continue;
    std::uint64_t before = 0;
    std::memcpy(&before, file.data() + at - 8, 8);
    if (before >= (std::uint64_t{1} << 32))
      ++n;
  }
  return n;
}

/// Names ("" for an absent one) and subjects a subscriber's handler saw. The
/// handler runs on an actor's thread, where Catch's assertions must not run:
/// the test thread checks these.
struct seen_names {
  std::mutex mu;
  std::vector<std::string> names;
  std::vector<std::string> subjects;
  void add(const cairn::personal<std::string>& n) {
    std::lock_guard lock{mu};
    names.push_back(n.value_or(""));
  }
  void add_subject(const std::string& subject) {
    std::lock_guard lock{mu};
    subjects.push_back(subject);
  }
  std::vector<std::string> get() {
    std::lock_guard lock{mu};
    return names;
  }
  std::vector<std::string> get_subjects() {
    std::lock_guard lock{mu};
    return subjects;
  }
};

cairn::result<void> record(seen_names& seen, const crm::customer::event& e) {
  std::visit([&](const auto& ev) { seen.add(ev.name); }, e);
  return {};
}

/// Registers the customer aggregate, snapshotting after every event.
void register_customer(cairn::runtime& rt) {
  cairn::aggregate_options agg;
  agg.snapshot_interval = 1;
  cairn::test::register_ok<crm::customer>(rt, agg);
}

/// Registers ann (customer 7, subject "ann") and renames her.
void make_ann(cairn::runtime& rt) {
  auto f = rt.send<crm::customer>("7", crm::register_customer{"Ann", ann_email, "gold"},
                                  about("ann"));
  auto first = cairn::test::await(f);
  REQUIRE(first);
  auto& registered = std::get<crm::customer_registered>(first->events.at(0));
  CHECK(registered.name.value_or("") == "Ann"); // the outcome decrypts under the command's subject
  auto g = rt.send<crm::customer>("7", crm::rename_customer{ann_name}, about("ann"));
  REQUIRE(cairn::test::await(g));
}

} // namespace

TEST_CASE("without a master key, a command whose events hold personal data is refused",
          "[integration][personal]") {
  temp_dir dir;
  auto rt = cairn::test::start_runtime(cairn::test::quick_options(dir.path()));
  cairn::test::register_ok<crm::customer>(*rt);
  auto f = rt->send<crm::customer>("7", crm::register_customer{"Ann", ann_email, "gold"},
                                   about("ann"));
  auto r = cairn::test::await(f);
  REQUIRE_FALSE(r);
  CHECK(r.error().code == cairn::errc::invalid_argument);
  CHECK(r.error().message.find("master key") != std::string::npos);
  CHECK(rt->store().last_position().value() == 0);
}

TEST_CASE("a command without a subject cannot store personal data", "[integration][personal]") {
  temp_dir keys, dir;
  auto rt = cairn::test::start_runtime(options(dir.path(), write_master_key(keys.path())));
  cairn::test::register_ok<crm::customer>(*rt);
  auto f = rt->send<crm::customer>("7", crm::register_customer{"Ann", ann_email, "gold"});
  auto r = cairn::test::await(f);
  REQUIRE_FALSE(r);
  CHECK(r.error().code == cairn::errc::invalid_argument);
  CHECK(r.error().message.find("data subject") != std::string::npos);
}

TEST_CASE("after forget, recovery, state_at, subscribers and a restart see the personal data "
          "as absent",
          "[integration][personal]") {
  temp_dir keys, dir;
  auto key_file = write_master_key(keys.path());
  auto rt = cairn::test::start_runtime(options(dir.path(), key_file));
  register_customer(*rt);
  seen_names before;
  REQUIRE(rt->subscribe<crm::customer::event>("before", {},
                                              [&](const cairn::envelope<crm::customer::event>& e) {
                                                return record(before, e.event);
                                              }));
  make_ann(*rt);
  auto live = rt->state<crm::customer>("7");
  REQUIRE(live);
  CHECK(live->name.value_or("") == ann_name);
  auto& store = rt->store();
  REQUIRE(rt->wait_for("before", 2, 60s));
  CHECK(before.get() == std::vector<std::string>{"Ann", ann_name});
  REQUIRE(cairn::test::eventually([&] {
    auto snap = store.load_snapshot("customer-7");
    return snap && *snap && (*snap)->version == 2;
  }));
  CHECK(store.subject_streams("ann").value() == std::vector<std::string>{"customer-7"});
  const auto payloads_before = store.read_stream("customer-7", 1, 10).value();

  REQUIRE(rt->forget("ann"));

  // The snapshots are gone, the events are not, and their bytes did not change.
  CHECK_FALSE(store.load_snapshot("customer-7")->has_value());
  auto after = store.read_stream("customer-7", 1, 10);
  REQUIRE(after);
  REQUIRE(after->size() == 2);
  for (std::size_t i = 0; i < 2; ++i)
    CHECK((*after)[i].payload == payloads_before[i].payload);

  auto then = rt->state_at<crm::customer>("7", 2);
  REQUIRE(then);
  CHECK(then->registered);
  CHECK(then->tier == "gold");
  CHECK(then->renames == 1);
  CHECK_FALSE(then->name.has_value());

  // The live aggregate was passivated: its next activation recovers without the data.
  CHECK(cairn::test::eventually([&] {
    auto s = rt->state<crm::customer>("7");
    return s && !s->name.has_value();
  }));
  auto recovered = rt->state<crm::customer>("7");
  REQUIRE(recovered);
  CHECK(recovered->tier == "gold");
  CHECK(recovered->renames == 1);

  seen_names late;
  REQUIRE(rt->subscribe<crm::customer::event>("late", {},
                                              [&](const cairn::envelope<crm::customer::event>& e) {
                                                late.add_subject(e.meta.subject);
                                                return record(late, e.event);
                                              }));
  REQUIRE(rt->wait_for("late", 2, 60s));
  CHECK(late.get() == std::vector<std::string>{"", ""});
  CHECK(late.get_subjects() == std::vector<std::string>{"ann", "ann"});

  // A new fact about the subject gets a new key; the old events stay unreadable.
  auto f = rt->send<crm::customer>("7", crm::rename_customer{"Ann again"}, about("ann"));
  REQUIRE(cairn::test::await(f));
  rt.reset();
  rt = cairn::test::start_runtime(options(dir.path(), key_file));
  register_customer(*rt);
  auto restarted = rt->state<crm::customer>("7");
  REQUIRE(restarted);
  CHECK(restarted->name.value_or("") == "Ann again");
  CHECK(restarted->renames == 2);
  auto at2 = rt->state_at<crm::customer>("7", 2);
  REQUIRE(at2);
  CHECK_FALSE(at2->name.has_value());
}

TEST_CASE("what data.mdb still holds after forget, and that a compacting backup holds none of it",
          "[integration][personal]") {
  temp_dir keys, dir, backup_parent;
  auto key_file = write_master_key(keys.path());
  auto rt = cairn::test::start_runtime(options(dir.path(), key_file));
  register_customer(*rt);
  make_ann(*rt);
  auto& store = rt->store();
  REQUIRE(cairn::test::eventually([&] {
    auto snap = store.load_snapshot("customer-7");
    return snap && *snap && (*snap)->version == 2;
  }));
  auto key = store.personal_keys()->key_for_read("ann");
  REQUIRE(key);
  REQUIRE(key->has_value());
  const std::string raw_key(reinterpret_cast<const char*>((*key)->key.data()), 32);
  // 0x01 ‖ key id opens every envelope of the key (three in the log) and its
  // wrapped form in the keys table.
  std::string key_tag(1, '\x01');
  key_tag.append(reinterpret_cast<const char*>((*key)->id.data()), 8);
  const auto data_file = dir.path() + "/data.mdb";

  auto file = slurp(data_file);
  CHECK(occurrences(file, raw_key) == 0);   // only ever stored wrapped
  CHECK(occurrences(file, ann_email) == 0); // events hold ciphertext
  CHECK(occurrences(file, ann_name) > 0);   // the snapshot holds the state plainly
  CHECK(wrapped_keys(file, key_tag) >= 1);

  REQUIRE(rt->forget("ann"));
  file = slurp(data_file);
  // What LMDB's free pages still hold: reported, since it depends on page reuse.
  auto plain_left = occurrences(file, ann_name);
  auto wrapped_left = wrapped_keys(file, key_tag);
  WARN("after forget, data.mdb still holds the plaintext "
       << plain_left << " time(s) and the wrapped key " << wrapped_left
       << " time(s) on free pages");
  CHECK(occurrences(file, raw_key) == 0);
  CHECK(occurrences(file, ann_email) == 0);

  // `cairn backup` (copy_to: mdb_env_copy2 with MDB_CP_COMPACT) writes only live pages.
  auto dest = backup_parent.path() + "/copy";
  REQUIRE(store.copy_to(dest));
  auto copy = slurp(dest + "/data.mdb");
  CHECK(occurrences(copy, ann_name) == 0);
  CHECK(occurrences(copy, ann_email) == 0);
  CHECK(occurrences(copy, raw_key) == 0);
  CHECK(wrapped_keys(copy, key_tag) == 0);
  CHECK(occurrences(copy, key_tag) == 3);     // each of the 3 envelopes once: live pages only
  CHECK(occurrences(copy, "customer-7") > 0); // the events are all there
}
