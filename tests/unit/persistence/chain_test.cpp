// The digest chain: its math against an independent BLAKE2b (Python's
// hashlib), its entries' layout, digest_at against a fold over the raw
// records, the upgrade of a format 2 store, and the chain switched off and on.

#include <lmdb.h>

#include <cstdint>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "cairn/persistence/event_store.hpp"
#include "cairn/persistence/format.hpp"
#include "support/temp_dir.hpp"

#include "helpers.hpp"

using namespace cairn::persistence;
using cairn::errc;
using cairn::test::append_ok;
using cairn::test::fast_options;
using cairn::test::numbered;
using cairn::test::open_ok;
using cairn::test::temp_dir;
using cairn::test::value_of;

namespace {

/// The records of the log, as stored, read through raw LMDB.
std::vector<std::string> raw_records(const std::string& dir) {
  MDB_env* env = nullptr;
  REQUIRE(mdb_env_create(&env) == 0);
  REQUIRE(mdb_env_set_maxdbs(env, 16) == 0);
  REQUIRE(mdb_env_open(env, dir.c_str(), MDB_RDONLY, 0644) == 0);
  MDB_txn* txn = nullptr;
  REQUIRE(mdb_txn_begin(env, nullptr, MDB_RDONLY, &txn) == 0);
  MDB_dbi dbi = 0;
  REQUIRE(mdb_dbi_open(txn, "log", 0, &dbi) == 0);
  MDB_cursor* cur = nullptr;
  REQUIRE(mdb_cursor_open(txn, dbi, &cur) == 0);
  std::vector<std::string> out;
  MDB_val k, v;
  for (int rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
       rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
    REQUIRE(format::get_be64(static_cast<const unsigned char*>(k.mv_data)) == out.size() + 1);
    out.emplace_back(static_cast<const char*>(v.mv_data), v.mv_size);
  }
  mdb_cursor_close(cur);
  mdb_txn_abort(txn);
  mdb_env_close(env);
  return out;
}

/// h_0 .. h_n folded over `records`.
std::vector<format::digest> fold(const std::vector<std::string>& records) {
  std::vector<format::digest> out{format::digest{}};
  for (const auto& r : records)
    out.push_back(
      format::chain_next(out.back(), reinterpret_cast<const unsigned char*>(r.data()), r.size()));
  return out;
}

/// Makes the store in `dir` look as format 2 wrote it: no chain table.
void downgrade_to_format_2(const std::string& dir) {
  MDB_env* env = nullptr;
  REQUIRE(mdb_env_create(&env) == 0);
  REQUIRE(mdb_env_set_maxdbs(env, 16) == 0);
  REQUIRE(mdb_env_open(env, dir.c_str(), MDB_NOSYNC, 0644) == 0);
  MDB_txn* txn = nullptr;
  REQUIRE(mdb_txn_begin(env, nullptr, 0, &txn) == 0);
  MDB_dbi meta = 0, chain = 0;
  REQUIRE(mdb_dbi_open(txn, "meta", 0, &meta) == 0);
  REQUIRE(mdb_dbi_open(txn, "chain", 0, &chain) == 0);
  REQUIRE(mdb_drop(txn, chain, 1) == 0);
  std::string body(4, '\0');
  format::put_le<std::uint32_t>(reinterpret_cast<unsigned char*>(body.data()), 2);
  auto sealed = format::seal(format::format_version_key, body);
  std::string key{format::format_version_key};
  MDB_val k{key.size(), key.data()}, v{sealed.size(), sealed.data()};
  REQUIRE(mdb_put(txn, meta, &k, &v, 0) == 0);
  REQUIRE(mdb_txn_commit(txn) == 0);
  mdb_env_close(env);
}

} // namespace

TEST_CASE("the chain is BLAKE2b-256 of the previous digest and the record bytes", "[unit][chain]") {
  // Expected values from Python: hashlib.blake2b(h + rec, digest_size=32).
  auto h1 = format::chain_next(format::digest{}, reinterpret_cast<const unsigned char*>("abc"), 3);
  CHECK(format::to_hex(h1) == "5db827e5e925e6b933a86596a0446c345c0d74d77f55a751ade5d7c7162eead8");
  auto h2 = format::chain_next(h1, reinterpret_cast<const unsigned char*>("record two"), 10);
  CHECK(format::to_hex(h2) == "68042d055097fabd3f5b412844423fbb7a827e1c0f207df7c099d89853e29583");
  // Order matters: the same records the other way round give another head.
  auto b1 = format::chain_next(format::digest{},
                               reinterpret_cast<const unsigned char*>("record two"), 10);
  CHECK(format::chain_next(b1, reinterpret_cast<const unsigned char*>("abc"), 3) != h2);
}

TEST_CASE("a digest reads back from its hex, and malformed hex is refused", "[unit][chain]") {
  auto d = format::chain_next(format::digest{}, reinterpret_cast<const unsigned char*>("x"), 1);
  auto hex = format::to_hex(d);
  CHECK(format::digest_from_hex(hex) == d);
  std::string upper = hex;
  for (auto& c : upper)
    c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  CHECK(format::digest_from_hex(upper) == d);
  CHECK_FALSE(format::digest_from_hex(hex.substr(1)));
  CHECK_FALSE(format::digest_from_hex(hex + "0"));
  CHECK_FALSE(format::digest_from_hex("g" + hex.substr(1)));
}

TEST_CASE("a chain entry round-trips, and a wrong size or seal is corrupted",
          "[unit][chain][corruption]") {
  format::digest head{};
  head[0] = 7;
  std::string prefixes(3 * format::digest_prefix_size, 'p');
  auto key = format::be64_key(10);
  std::string value(format::seal_size + format::chain_entry_header_size + prefixes.size(), '\0');
  format::encode_chain_entry(reinterpret_cast<unsigned char*>(value.data()), key, head, prefixes);
  auto e = format::decode_chain_entry(key, value);
  REQUIRE(e);
  CHECK(e->position == 10);
  CHECK(e->count == 3);
  CHECK(e->head == head);
  CHECK(e->covers(8));
  CHECK(e->covers(10));
  CHECK_FALSE(e->covers(7));
  CHECK_FALSE(e->covers(11));

  SECTION("a flipped byte fails the seal") {
    value.back() = static_cast<char>(value.back() ^ 1);
    auto bad = format::decode_chain_entry(key, value);
    REQUIRE_FALSE(bad);
    CHECK(bad.error().code == errc::corrupted);
    CHECK(bad.error().context == "position 10");
  }
  SECTION("a count that disagrees with the prefixes is corrupted") {
    std::string body = value.substr(format::seal_size);
    body[format::digest_size] = 4;
    auto bad = format::decode_chain_entry(key, format::seal(key, body));
    REQUIRE_FALSE(bad);
    CHECK_THAT(bad.error().message, Catch::Contains("wrong size"));
  }
  SECTION("an entry covering positions below 1 is corrupted") {
    auto low = format::be64_key(2);
    std::string v2(value.size(), '\0');
    format::encode_chain_entry(reinterpret_cast<unsigned char*>(v2.data()), low, head, prefixes);
    CHECK_FALSE(format::decode_chain_entry(low, v2));
  }
  SECTION("an anchor covers nothing but keeps its digest") {
    std::string anchor(format::seal_size + format::chain_entry_header_size, '\0');
    format::encode_chain_entry(reinterpret_cast<unsigned char*>(anchor.data()), key, head, {});
    auto a = format::decode_chain_entry(key, anchor);
    REQUIRE(a);
    CHECK(a->count == 0);
    CHECK(a->head == head);
    CHECK_FALSE(a->covers(10));
  }
}

TEST_CASE("digest_at is the fold of the chain over the stored records, at every position",
          "[unit][chain][store]") {
  temp_dir dir;
  {
    auto store = open_ok(dir.sub("s"));
    CHECK(value_of(store->digest_at(no_limit)).position == 0);
    CHECK(value_of(store->digest_at(0)).digest == format::digest{});
    append_ok(*store, "acct-1", numbered(3, "a"));
    write_batch b;
    for (int i = 0; i < 5; ++i)
      b.appends.push_back(cairn::test::request("acct-" + std::to_string(i % 2 + 2),
                                               expected_version::any(), numbered(2, "b")));
    REQUIRE(store->append_batch(b));
    append_ok(*store, "acct-1", numbered(1, "c"));
  }
  auto hs = fold(raw_records(dir.sub("s")));
  REQUIRE(hs.size() == 15);
  auto ro = fast_options();
  ro.read_only = true;
  auto store = open_ok(dir.sub("s"), ro);
  for (std::uint64_t p = 0; p < hs.size(); ++p) {
    INFO("position " << p);
    auto d = value_of(store->digest_at(p));
    CHECK(d.position == p);
    CHECK(d.digest == hs[p]);
  }
  CHECK(value_of(store->digest_at(no_limit)).digest == hs.back());
  auto past = store->digest_at(15);
  REQUIRE_FALSE(past);
  CHECK(past.error().code == errc::invalid_argument);
  CHECK_THAT(past.error().message, Catch::Contains("past the end of the log (14)"));
  auto check = value_of(store->check_chain(no_limit));
  CHECK(check.first_broken == 0);
  CHECK(check.records == 14);
  CHECK(check.chained_to == 14);
  REQUIRE(check.at);
  CHECK(check.at->digest == hs.back());
  auto part = value_of(store->check_chain(9));
  CHECK(part.records == 9);
  REQUIRE(part.at);
  CHECK(part.at->digest == hs[9]);
  auto beyond = value_of(store->check_chain(20));
  CHECK_FALSE(beyond.at);
  CHECK(beyond.log_end == 14);
}

TEST_CASE("a format 2 store reads read-only, says how to get a chain, and gets the same chain "
          "by a writable open",
          "[unit][chain][store][open]") {
  temp_dir dir;
  auto path = dir.sub("s");
  log_digest before;
  {
    auto store = open_ok(path);
    write_batch b;
    // Past one chain_entry_span, so the upgrade writes more than one entry.
    for (std::uint64_t i = 0; i < format::chain_entry_span + 100; ++i)
      b.appends.push_back(cairn::test::request("acct-" + std::to_string(i % 7),
                                               expected_version::any(), numbered(1, "u")));
    REQUIRE(store->append_batch(b));
    before = value_of(store->digest_at(no_limit));
  }
  downgrade_to_format_2(path);
  auto ro = fast_options();
  ro.read_only = true;
  {
    auto reader = open_ok(path, ro);
    CHECK(value_of(reader->stats()).format_version == 2);
    CHECK(value_of(reader->stream_version("acct-1")) > 0);
    auto d = reader->digest_at(no_limit);
    REQUIRE_FALSE(d);
    CHECK(d.error().code == errc::invalid_argument);
    CHECK_THAT(d.error().message, Catch::Contains("format 2"));
    CHECK_THAT(d.error().message, Catch::Contains("cairn upgrade"));
    CHECK_FALSE(reader->check_chain(no_limit));
  }
  {
    auto store = open_ok(path);
    CHECK(value_of(store->stats()).format_version == format::current_version);
    auto d = value_of(store->digest_at(no_limit));
    CHECK(d.position == before.position);
    CHECK(d.digest == before.digest);
    append_ok(*store, "acct-1", numbered(1, "after"));
  }
  auto expected = fold(raw_records(path)).back(); // before the open: one LMDB handle per process
  auto reader = open_ok(path, ro);
  auto check = value_of(reader->check_chain(no_limit));
  INFO(check.problem);
  CHECK(check.first_broken == 0);
  CHECK(check.chained_to == before.position + 1);
  REQUIRE(check.at);
  CHECK(check.at->digest == expected);
}

TEST_CASE("commits with the chain off leave it behind, and the next open with it on catches up",
          "[unit][chain][store][open]") {
  temp_dir dir;
  auto path = dir.sub("s");
  { append_ok(*open_ok(path), "acct-1", numbered(2, "on")); }
  auto off = fast_options();
  off.digest_chain = false;
  { append_ok(*open_ok(path, off), "acct-1", numbered(3, "off")); }
  auto ro = fast_options();
  ro.read_only = true;
  {
    auto expected = fold(raw_records(path)).back();
    auto reader = open_ok(path, ro);
    auto check = value_of(reader->check_chain(no_limit));
    CHECK(check.chained_to == 2);
    CHECK(check.first_broken == 0);
    // The digest is still defined: recomputed past the stored chain.
    CHECK(value_of(reader->digest_at(5)).digest == expected);
  }
  { append_ok(*open_ok(path), "acct-1", numbered(1, "on again")); }
  auto expected = fold(raw_records(path)).back();
  auto reader = open_ok(path, ro);
  CHECK(value_of(reader->digest_at(no_limit)).digest == expected);
  CHECK(value_of(reader->digest_at(1)).digest
        == fold(std::vector<std::string>{raw_records(path).front()}).back());
  auto check = value_of(reader->check_chain(no_limit));
  INFO(check.problem);
  CHECK(check.chained_to == 6);
  CHECK(check.first_broken == 0);
  REQUIRE(check.at);
  CHECK(check.at->digest == expected);
}
