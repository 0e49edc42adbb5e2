#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include <catch2/catch.hpp>
#include <cereal/types/string.hpp>
#include <cereal/types/vector.hpp>

#include "cairn/persistence/codec.hpp"
#include "cairn/persistence/event_store.hpp"
#include "cairn/persistence/format.hpp"
#include "cairn/persistence/personal.hpp"
#include "support/temp_dir.hpp"

#include "helpers.hpp"

using namespace cairn::persistence;
using cairn::errc;
using cairn::personal;
using cairn::test::open_ok;
using cairn::test::temp_dir;
using cairn::test::value_of;

namespace {

struct signed_up {
  static constexpr const char* type_name = "signed_up";
  std::string customer_no;
  personal<std::string> email;
  personal<std::vector<std::string>> addresses;
  template <class A> void serialize(A& a) { a(customer_no, email, addresses); }
};

const std::string secret_email = "ann.example@mail.test";

signed_up sample() { return signed_up{"c-7", secret_email, std::vector<std::string>{"Elm St 1"}}; }

std::string encode_as(const key_ring* keys, std::string_view subject, const signed_up& ev) {
  personal_scope scope{keys, subject};
  std::string out;
  encode_payload(ev, out);
  return out;
}

cairn::result<signed_up> decode_as(const key_ring* keys, std::string_view subject,
                                   std::string_view bytes) {
  personal_scope scope{keys, subject};
  return decode_payload<signed_up>(bytes);
}

/// A ring that answers with a fixed key: a wrong key under the right id.
class fixed_ring final : public key_ring {
public:
  explicit fixed_ring(data_key k) : k_(k) {}
  cairn::result<data_key> key_for_write(std::string_view) const override { return k_; }
  cairn::result<std::optional<data_key>> key_for_read(std::string_view) const override {
    return std::optional<data_key>{k_};
  }

private:
  data_key k_;
};

/// A master key file outside the store's directory.
std::string write_master_key(const std::string& dir, char digit = 'a') {
  auto path = dir + "/master.key";
  std::ofstream{path} << std::string(64, digit) << '\n';
  return path;
}

store_options with_master(const std::string& key_file) {
  auto o = cairn::test::fast_options();
  o.master_key_file = key_file;
  return o;
}

} // namespace

TEST_CASE("personal data round-trips through encryption under its subject's key",
          "[unit][personal]") {
  memory_key_ring keys;
  auto bytes = encode_as(&keys, "ann", sample());
  CHECK(bytes.find(secret_email) == std::string::npos);
  CHECK(bytes.find("Elm St 1") == std::string::npos);
  CHECK(bytes.find("c-7") != std::string::npos); // only the personal part is encrypted
  auto back = decode_as(&keys, "ann", bytes);
  REQUIRE(back);
  REQUIRE(back->email.has_value());
  CHECK(*back->email == secret_email);
  REQUIRE(back->addresses.has_value());
  CHECK(back->addresses->at(0) == "Elm St 1");
  CHECK(back->customer_no == "c-7");
}

TEST_CASE("two encryptions of the same value differ (a fresh nonce each)", "[unit][personal]") {
  memory_key_ring keys;
  CHECK(encode_as(&keys, "ann", sample()) != encode_as(&keys, "ann", sample()));
}

TEST_CASE("a forgotten subject's personal data decodes as absent", "[unit][personal]") {
  memory_key_ring keys;
  auto bytes = encode_as(&keys, "ann", sample());
  keys.forget("ann");
  auto back = decode_as(&keys, "ann", bytes);
  REQUIRE(back);
  CHECK_FALSE(back->email.has_value());
  CHECK_FALSE(back->addresses.has_value());
  CHECK(back->customer_no == "c-7");
  SECTION("and a new key for the subject does not open the old data") {
    (void)encode_as(&keys, "ann", sample()); // makes a new key
    auto again = decode_as(&keys, "ann", bytes);
    REQUIRE(again);
    CHECK_FALSE(again->email.has_value());
  }
}

TEST_CASE("personal data read under another subject, or without keys, is absent",
          "[unit][personal]") {
  memory_key_ring keys;
  auto bytes = encode_as(&keys, "ann", sample());
  (void)encode_as(&keys, "bob", sample());
  auto as_bob = decode_as(&keys, "bob", bytes);
  REQUIRE(as_bob);
  CHECK_FALSE(as_bob->email.has_value());
  auto no_keys = decode_as(nullptr, "ann", bytes);
  REQUIRE(no_keys);
  CHECK_FALSE(no_keys->email.has_value());
  auto no_scope = decode_payload<signed_up>(bytes);
  REQUIRE(no_scope);
  CHECK_FALSE(no_scope->email.has_value());
}

TEST_CASE("a wrong key under the right key id is corrupted, not absent", "[unit][personal]") {
  auto right = random_data_key();
  fixed_ring writer{right};
  auto bytes = encode_as(&writer, "ann", sample());
  auto wrong = random_data_key();
  wrong.id = right.id;
  fixed_ring reader{wrong};
  auto back = decode_as(&reader, "ann", bytes);
  REQUIRE_FALSE(back);
  CHECK(back.error().code == errc::corrupted);
  CHECK(back.error().message.find("authentication") != std::string::npos);
}

TEST_CASE("a tampered ciphertext is corrupted, never a crash or a wrong value",
          "[unit][personal]") {
  memory_key_ring keys;
  const auto good = encode_as(&keys, "ann", sample());
  std::size_t corrupted = 0, absent = 0;
  // Every byte of the payload, one at a time: the plain part may still decode,
  // the envelope's bytes must never yield a different value.
  for (std::size_t i = 0; i < good.size(); ++i) {
    auto bytes = good;
    bytes[i] = static_cast<char>(bytes[i] ^ 0x20);
    auto back = decode_as(&keys, "ann", bytes);
    if (!back) {
      CHECK(back.error().code == errc::corrupted);
      ++corrupted;
      continue;
    }
    if (back->email.has_value())
      CHECK(*back->email == secret_email);
    else
      ++absent; // the key id byte changed: reads as another (forgotten) key
    if (back->addresses.has_value())
      CHECK(back->addresses->at(0) == "Elm St 1");
  }
  CHECK(corrupted > good.size() / 2);
  CHECK(absent > 0);
}

TEST_CASE("encoding personal data needs an event scope with keys and a subject",
          "[unit][personal]") {
  memory_key_ring keys;
  std::string out;
  SECTION("outside any scope") { CHECK_THROWS_AS(encode_payload(sample(), out), personal_error); }
  SECTION("without a master key") {
    personal_scope scope{nullptr, "ann"};
    CHECK_THROWS_WITH(encode_payload(sample(), out), Catch::Contains("master key"));
  }
  SECTION("without a subject") {
    personal_scope scope{&keys, ""};
    CHECK_THROWS_WITH(encode_payload(sample(), out), Catch::Contains("data subject"));
  }
  SECTION("absent values need nothing") {
    signed_up none{"c-8", {}, {}};
    encode_payload(none, out);
    auto back = decode_payload<signed_up>(out);
    REQUIRE(back);
    CHECK_FALSE(back->email.has_value());
  }
}

TEST_CASE("a state scope stores personal data in plain bytes that decode anywhere",
          "[unit][personal]") {
  std::string bytes;
  {
    personal_scope scope{personal_context::kind::state};
    encode_payload(sample(), bytes);
  }
  CHECK(bytes.find(secret_email) != std::string::npos);
  auto back = decode_payload<signed_up>(bytes);
  REQUIRE(back);
  CHECK(back->email.value_or("") == secret_email);
}

TEST_CASE("personal envelopes of unknown kinds or too short are corrupted", "[unit][personal]") {
  CHECK(format::decode_personal_envelope("")->type == format::personal_envelope::kind::absent);
  CHECK(format::decode_personal_envelope(std::string(1, '\x02'))->type
        == format::personal_envelope::kind::plain);
  auto unknown = format::decode_personal_envelope(std::string(60, '\x03'));
  REQUIRE_FALSE(unknown);
  CHECK(unknown.error().code == errc::corrupted);
  auto shorter = format::decode_personal_envelope(std::string(48, '\x01'));
  REQUIRE_FALSE(shorter);
  CHECK(shorter.error().code == errc::corrupted);
  auto just = format::decode_personal_envelope(std::string(49, '\x01'));
  REQUIRE(just);
  CHECK(just->ciphertext.size() == 16);
}

TEST_CASE("a wrapped key value with a bad seal or layout is corrupted", "[unit][personal]") {
  std::string body(format::wrapped_key_size, '\x01');
  auto good = format::decode_wrapped_key("ann", format::seal("ann", body));
  REQUIRE(good);
  CHECK(good->ciphertext.size() == 48);
  CHECK(format::decode_wrapped_key("bob", format::seal("ann", body)).error().code
        == errc::corrupted);
  CHECK(format::decode_wrapped_key("ann", format::seal("ann", body.substr(1))).error().code
        == errc::corrupted);
  CHECK(format::decode_wrapped_key("ann", "short").error().code == errc::corrupted);
}

// -- the store's keys ------------------------------------------------------------

TEST_CASE("a store's data key is written with the first append about its subject",
          "[unit][personal][store]") {
  temp_dir keydir, dir;
  auto key_file = write_master_key(keydir.path());
  std::string payload;
  {
    auto store = open_ok(dir.path(), with_master(key_file));
    REQUIRE(store->personal_keys() != nullptr);
    payload = encode_as(store->personal_keys(), "ann", sample());
    // Made for a payload that is never appended: no trace in the store.
    (void)encode_as(store->personal_keys(), "bob", sample());
    metadata m;
    m.subject = "ann";
    cairn::test::append_ok(*store, "customer-7", {cairn::test::event("signed_up", payload)}, m);
  }
  auto store = open_ok(dir.path(), with_master(key_file));
  CHECK(value_of(store->personal_keys()->key_for_read("ann")).has_value());
  CHECK_FALSE(value_of(store->personal_keys()->key_for_read("bob")).has_value());
  auto ev = value_of(store->read_stream("customer-7", 1, 1)).at(0);
  auto back = decode_as(store->personal_keys(), ev.meta.subject, ev.payload);
  REQUIRE(back);
  CHECK(back->email.value_or("") == secret_email);
  CHECK(value_of(store->subject_streams("ann")) == std::vector<std::string>{"customer-7"});
}

TEST_CASE("forgetting a subject deletes its key and its streams' snapshots, not its events",
          "[unit][personal][store]") {
  temp_dir keydir, dir;
  auto key_file = write_master_key(keydir.path());
  auto store = open_ok(dir.path(), with_master(key_file));
  auto payload = encode_as(store->personal_keys(), "ann", sample());
  metadata m;
  m.subject = "ann";
  cairn::test::append_ok(*store, "customer-7", {cairn::test::event("signed_up", payload)}, m);
  cairn::test::append_ok(*store, "other-1", {cairn::test::event("noted", "x")});
  REQUIRE(store->save_snapshot(snapshot{"customer-7", 1, "customer.state", 1, "plain"}));
  REQUIRE(store->save_snapshot(snapshot{"other-1", 1, "other.state", 1, "kept"}));
  write_batch forget;
  forget.forget.push_back("ann");
  REQUIRE(store->append_batch(forget));

  CHECK_FALSE(value_of(store->personal_keys()->key_for_read("ann")).has_value());
  CHECK_FALSE(value_of(store->load_snapshot("customer-7")).has_value());
  CHECK(value_of(store->load_snapshot("other-1")).has_value());
  CHECK(value_of(store->subject_streams("ann")).empty());
  auto ev = value_of(store->read_stream("customer-7", 1, 1)).at(0); // checksums still verify
  CHECK(ev.payload == payload);
  auto back = decode_as(store->personal_keys(), ev.meta.subject, ev.payload);
  REQUIRE(back);
  CHECK_FALSE(back->email.has_value());
  CHECK(back->customer_no == "c-7");

  SECTION("and after a reopen") {
    store.reset();
    store = open_ok(dir.path(), with_master(key_file));
    CHECK_FALSE(value_of(store->personal_keys()->key_for_read("ann")).has_value());
  }
  SECTION("a new event about the subject gets a new key that opens only it") {
    auto fresh = encode_as(store->personal_keys(), "ann", sample());
    cairn::test::append_ok(*store, "customer-7", {cairn::test::event("signed_up", fresh)}, m);
    auto both = value_of(store->read_stream("customer-7", 1, 2));
    auto old_one = decode_as(store->personal_keys(), "ann", both.at(0).payload);
    auto new_one = decode_as(store->personal_keys(), "ann", both.at(1).payload);
    REQUIRE(old_one);
    REQUIRE(new_one);
    CHECK_FALSE(old_one->email.has_value());
    CHECK(new_one->email.value_or("") == secret_email);
  }
}

TEST_CASE("another master key does not open the stored data keys", "[unit][personal][store]") {
  temp_dir keydir, dir;
  auto key_file = write_master_key(keydir.path(), 'a');
  {
    auto store = open_ok(dir.path(), with_master(key_file));
    metadata m;
    m.subject = "ann";
    cairn::test::append_ok(*store, "customer-7",
                           {cairn::test::event("signed_up",
                                               encode_as(store->personal_keys(), "ann", sample()))},
                           m);
  }
  temp_dir otherdir;
  auto other = write_master_key(otherdir.path(), 'b');
  auto store = open_ok(dir.path(), with_master(other));
  auto k = store->personal_keys()->key_for_read("ann");
  REQUIRE_FALSE(k);
  CHECK(k.error().code == errc::invalid_argument);
  CHECK(k.error().message.find("master key") != std::string::npos);
}

TEST_CASE("a master key source is refused when it is in the store, doubled or malformed",
          "[unit][personal][store]") {
  temp_dir dir, keydir;
  { auto created = open_ok(dir.path()); }
  auto inside = write_master_key(dir.path());
  auto o = with_master(inside);
  auto s = open_store(dir.path(), o);
  REQUIRE_FALSE(s);
  CHECK(s.error().code == errc::invalid_argument);
  CHECK(s.error().message.find("inside the store's directory") != std::string::npos);

  o = with_master(write_master_key(keydir.path()));
  o.master_key_env = "CAIRN_TEST_MASTER_KEY";
  CHECK(open_store(dir.path(), o).error().code == errc::invalid_argument);

  auto bad = keydir.path() + "/bad.key";
  std::ofstream{bad} << "not hex";
  CHECK(open_store(dir.path(), with_master(bad)).error().code == errc::invalid_argument);

  o = cairn::test::fast_options();
  o.master_key_env = "CAIRN_TEST_MASTER_KEY_UNSET";
  ::unsetenv("CAIRN_TEST_MASTER_KEY_UNSET");
  CHECK(open_store(dir.path(), o).error().code == errc::invalid_argument);
  ::setenv("CAIRN_TEST_MASTER_KEY_SET", std::string(64, 'c').c_str(), 1);
  o.master_key_env = "CAIRN_TEST_MASTER_KEY_SET";
  auto from_env = open_store(dir.path(), o);
  REQUIRE(from_env);
  CHECK((*from_env)->personal_keys() != nullptr);
}
