// Tamper evidence end to end: a store written through the API, changed
// behind cairn's back through raw LMDB as an attacker with write access to
// data.mdb would (recomputing a record's XXH3 checksum, even the digest
// chain), then `cairn verify` run as a process with a digest published
// before the change. Each change is found and its first position named.

#include <lmdb.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <cstdio>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "cairn/persistence/event_store.hpp"
#include "cairn/persistence/format.hpp"
#include "support/temp_dir.hpp"
#include "unit/persistence/helpers.hpp"

using namespace cairn::persistence;
using cairn::test::temp_dir;

namespace {

struct cli_result {
  int code = -1;
  std::string out; ///< stdout and stderr
};

cli_result cairn_cli(const std::string& args) {
  std::string cmd = std::string{CAIRN_CLI_PATH} + " " + args + " 2>&1";
  FILE* p = ::popen(cmd.c_str(), "r");
  REQUIRE(p != nullptr);
  cli_result r;
  char buf[4096];
  for (std::size_t n; (n = std::fread(buf, 1, sizeof buf, p)) > 0;)
    r.out.append(buf, n);
  int status = ::pclose(p);
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  INFO("cairn " << args << " exited " << r.code << ":\n" << r.out);
  return r;
}

/// A store of 40 events over 4 streams in 8 commits (so 8 chain entries).
void build_store(const std::string& dir) {
  auto store = cairn::test::open_ok(dir);
  for (int c = 0; c < 8; ++c) {
    write_batch b;
    for (int i = 0; i < 5; ++i)
      b.appends.push_back(cairn::test::request("acct-" + std::to_string((c + i) % 4),
                                               expected_version::any(),
                                               cairn::test::numbered(1, "payload-", c * 5 + i)));
    REQUIRE(store->append_batch(b));
  }
}

/// data.mdb opened as an attacker would: plain LMDB, no cairn.
class raw_store {
public:
  explicit raw_store(const std::string& dir) {
    REQUIRE(mdb_env_create(&env_) == 0);
    REQUIRE(mdb_env_set_maxdbs(env_, 32) == 0);
    REQUIRE(mdb_env_open(env_, dir.c_str(), MDB_NOSYNC, 0644) == 0);
    REQUIRE(mdb_txn_begin(env_, nullptr, 0, &txn_) == 0);
    REQUIRE(mdb_dbi_open(txn_, "log", 0, &log_) == 0);
    REQUIRE(mdb_dbi_open(txn_, "chain", 0, &chain_) == 0);
  }
  ~raw_store() {
    if (txn_ != nullptr)
      mdb_txn_abort(txn_);
    mdb_env_close(env_);
  }
  raw_store(const raw_store&) = delete;
  raw_store& operator=(const raw_store&) = delete;

  std::string record(std::uint64_t pos) { return get(log_, pos); }
  /// Stores `rec` at `pos` with the checksum that position needs.
  void put_record(std::uint64_t pos, std::string rec) {
    auto* p = reinterpret_cast<unsigned char*>(rec.data());
    format::put_le<std::uint64_t>(p, format::record_checksum(p, rec.size(), pos));
    put(log_, pos, rec);
  }
  void del_record(std::uint64_t pos) { del(log_, pos); }
  void del_chain(std::uint64_t pos) { del(chain_, pos); }

  /// Recomputes every chain entry over the records as they now are: what an
  /// attacker who knows the format does to hide a change from the store.
  void rewrite_chain() {
    MDB_cursor* cur = nullptr;
    REQUIRE(mdb_cursor_open(txn_, chain_, &cur) == 0);
    std::vector<std::pair<std::uint64_t, std::uint32_t>> entries; // (last position, count)
    MDB_val k, v;
    for (int rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
      std::string_view key{static_cast<const char*>(k.mv_data), k.mv_size};
      auto e = format::decode_chain_entry(key, {static_cast<const char*>(v.mv_data), v.mv_size});
      REQUIRE(e);
      entries.emplace_back(e->position, e->count);
    }
    mdb_cursor_close(cur);
    format::digest h{};
    std::uint64_t pos = 0;
    for (auto [last, count] : entries) {
      std::string prefixes;
      for (std::uint64_t p = last - count + 1; p <= last; ++p) {
        REQUIRE(p == pos + 1);
        auto rec = record(p);
        h = format::chain_next(h, reinterpret_cast<const unsigned char*>(rec.data()), rec.size());
        prefixes.append(reinterpret_cast<const char*>(h.data()), format::digest_prefix_size);
        pos = p;
      }
      auto key = format::be64_key(last);
      std::string value(format::seal_size + format::chain_entry_header_size + prefixes.size(),
                        '\0');
      format::encode_chain_entry(reinterpret_cast<unsigned char*>(value.data()), key, h, prefixes);
      put(chain_, last, value);
    }
  }

  void commit() {
    REQUIRE(mdb_txn_commit(txn_) == 0);
    txn_ = nullptr;
  }

private:
  std::string get(MDB_dbi dbi, std::uint64_t pos) {
    auto key = format::be64_key(pos);
    MDB_val k{key.size(), key.data()}, v;
    REQUIRE(mdb_get(txn_, dbi, &k, &v) == 0);
    return {static_cast<const char*>(v.mv_data), v.mv_size};
  }
  void put(MDB_dbi dbi, std::uint64_t pos, std::string value) {
    auto key = format::be64_key(pos);
    MDB_val k{key.size(), key.data()}, v{value.size(), value.data()};
    REQUIRE(mdb_put(txn_, dbi, &k, &v, 0) == 0);
  }
  void del(MDB_dbi dbi, std::uint64_t pos) {
    auto key = format::be64_key(pos);
    MDB_val k{key.size(), key.data()};
    REQUIRE(mdb_del(txn_, dbi, &k, nullptr) == 0);
  }

  MDB_env* env_ = nullptr;
  MDB_txn* txn_ = nullptr;
  MDB_dbi log_ = 0, chain_ = 0;
};

/// The digest `cairn digest` prints, `POSITION:HEX`.
std::string published(const std::string& dir, const std::string& at = {}) {
  auto r = cairn_cli("digest " + dir + (at.empty() ? "" : " --at " + at));
  REQUIRE(r.code == 0);
  REQUIRE(r.out.size() > 1);
  return r.out.substr(0, r.out.size() - 1);
}

bool contains(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}

} // namespace

TEST_CASE("an untouched store verifies against the digest published from it",
          "[integration][cli][tamper]") {
  temp_dir dir;
  auto path = dir.sub("s");
  build_store(path);
  auto at_17 = published(path, "17");
  auto head = published(path);
  CHECK(head.rfind("40:", 0) == 0);
  for (const auto& d : {at_17, head}) {
    auto r = cairn_cli("verify " + path + " --digest " + d);
    CHECK(r.code == 0);
    CHECK(contains(r.out, "published digest: matches"));
  }
  // The same position with one hex digit changed is another log.
  auto forged = head;
  forged.back() = forged.back() == '0' ? '1' : '0';
  auto r = cairn_cli("verify " + path + " --digest " + forged);
  CHECK(r.code == 1);
  CHECK(contains(r.out, "is not the one the published digest was taken from"));
}

TEST_CASE("one payload byte changed with its checksum recomputed is found at its position",
          "[integration][cli][tamper]") {
  temp_dir dir;
  auto path = dir.sub("s");
  build_store(path);
  auto digest = published(path);
  cairn::test::write_file(dir.sub("published"), digest); // for a look at a kept test directory
  {
    raw_store raw{path};
    auto rec = raw.record(23);
    rec.back() = static_cast<char>(rec.back() ^ 0x01); // the payload's last byte
    raw.put_record(23, rec);
    raw.commit();
  }
  // The record passes its checksum: only the chain tells.
  auto plain = cairn_cli("verify " + path);
  CHECK(plain.code == 1);
  CHECK(contains(plain.out, "problem: position 23: first broken link of the digest chain"));
  auto r = cairn_cli("verify " + path + " --digest " + digest);
  CHECK(r.code == 1);
  CHECK(contains(r.out, "problem: position 23: the log up to position 40 is not the one"));
  // A digest published before the change still verifies the log before it.
  auto earlier = cairn_cli("verify " + path + " --digest " + published(path, "22"));
  CHECK(contains(earlier.out, "published digest: matches"));
}

TEST_CASE("a deleted record is found at its position", "[integration][cli][tamper]") {
  temp_dir dir;
  auto path = dir.sub("s");
  build_store(path);
  auto digest = published(path);
  cairn::test::write_file(dir.sub("published"), digest); // for a look at a kept test directory
  {
    raw_store raw{path};
    raw.del_record(12);
    raw.commit();
  }
  auto r = cairn_cli("verify " + path + " --digest " + digest);
  CHECK(r.code == 1);
  CHECK(contains(r.out, "problem: position 12: the log up to position 40 is not the one"));
  CHECK(contains(r.out, "missing from the log"));
}

TEST_CASE("two records swapped are found at the first of them", "[integration][cli][tamper]") {
  temp_dir dir;
  auto path = dir.sub("s");
  build_store(path);
  auto digest = published(path);
  cairn::test::write_file(dir.sub("published"), digest); // for a look at a kept test directory
  {
    raw_store raw{path};
    auto a = raw.record(7), b = raw.record(31);
    raw.put_record(7, b);
    raw.put_record(31, a);
    raw.commit();
  }
  auto r = cairn_cli("verify " + path + " --digest " + digest);
  CHECK(r.code == 1);
  CHECK(contains(r.out, "problem: position 7: the log up to position 40 is not the one"));
}

TEST_CASE("a truncated tail is found: the published position is past the end of the log",
          "[integration][cli][tamper]") {
  temp_dir dir;
  auto path = dir.sub("s");
  build_store(path);
  auto digest = published(path);
  cairn::test::write_file(dir.sub("published"), digest); // for a look at a kept test directory
  {
    raw_store raw{path};
    for (std::uint64_t p = 36; p <= 40; ++p)
      raw.del_record(p);
    raw.del_chain(40); // the last commit's entry, as a careful attacker would
    raw.commit();
  }
  auto r = cairn_cli("verify " + path + " --digest " + digest);
  CHECK(r.code == 1);
  CHECK(contains(r.out, "problem: position 36: the published digest is at position 40, but the "
                        "log ends at 35"));
}

TEST_CASE("an attacker who rewrites the chain too is caught by the published digest alone",
          "[integration][cli][tamper]") {
  temp_dir dir;
  auto path = dir.sub("s");
  build_store(path);
  auto digest = published(path);
  cairn::test::write_file(dir.sub("published"), digest); // for a look at a kept test directory
  {
    raw_store raw{path};
    auto rec = raw.record(23);
    rec.back() = static_cast<char>(rec.back() ^ 0x01);
    raw.put_record(23, rec);
    raw.rewrite_chain();
    raw.commit();
  }
  auto plain = cairn_cli("verify " + path);
  CHECK(plain.code == 0); // consistent with itself: without a published digest, undetectable
  auto r = cairn_cli("verify " + path + " --digest " + digest);
  CHECK(r.code == 1);
  CHECK(contains(r.out, "every record matches the chain the store keeps"));
  CHECK(contains(r.out, "at or before position 40"));
}

TEST_CASE("a signed digest verifies with its public key, and an altered one or another key "
          "is refused before the log is read",
          "[integration][cli][tamper]") {
  temp_dir dir;
  auto path = dir.sub("s");
  build_store(path);
  REQUIRE(cairn_cli("keygen --out " + dir.sub("ops")).code == 0);
  REQUIRE(cairn_cli("keygen --out " + dir.sub("other")).code == 0);
  struct stat st {};
  REQUIRE(::stat(dir.sub("ops.key").c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0600);
  CHECK(cairn_cli("keygen --out " + dir.sub("ops")).code == 2); // never overwrites a key

  auto sign = cairn_cli("digest " + path + " --sign " + dir.sub("ops.key"));
  REQUIRE(sign.code == 0);
  CHECK(sign.out.rfind("cairn signed digest v1\nposition 40\ndigest ", 0) == 0);
  cairn::test::write_file(dir.sub("d.signed"), sign.out);
  auto ok = cairn_cli("verify " + path + " --signed " + dir.sub("d.signed") + " --public-key "
                      + dir.sub("ops.pub"));
  CHECK(ok.code == 0);
  CHECK(contains(ok.out, "published digest: matches"));

  auto other = cairn_cli("verify " + path + " --signed " + dir.sub("d.signed") + " --public-key "
                         + dir.sub("other.pub"));
  CHECK(other.code == 1);
  CHECK(contains(other.out, "the signature does not match"));

  auto altered = sign.out;
  altered.replace(altered.find("position 40"), 11, "position 39");
  cairn::test::write_file(dir.sub("altered.signed"), altered);
  auto bad = cairn_cli("verify " + path + " --signed " + dir.sub("altered.signed")
                       + " --public-key " + dir.sub("ops.pub"));
  CHECK(bad.code == 1);
  CHECK(contains(bad.out, "the signature does not match"));
}
