#include <lmdb.h>

#include <cstdint>
#include <filesystem>
#include <string>

#include <catch2/catch.hpp>

#include "cairn/persistence/event_store.hpp"
#include "cairn/persistence/format.hpp"
#include "support/child_process.hpp"
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

namespace fs = std::filesystem;

/// Asserts that opening `dir` fails with `code` and returns the error.
cairn::error open_refused(const std::string& dir, errc code,
                          const store_options& o = fast_options()) {
  auto r = open_store(dir, o);
  REQUIRE_FALSE(r);
  INFO(r.error().to_string());
  CHECK(r.error().code == code);
  return r.error();
}

/// Raw LMDB access for building stores cairn would not write.
class raw_env {
public:
  explicit raw_env(const std::string& dir) {
    REQUIRE(mdb_env_create(&env_) == 0);
    REQUIRE(mdb_env_set_maxdbs(env_, 16) == 0);
    REQUIRE(mdb_env_set_mapsize(env_, std::size_t{16} << 20) == 0);
    REQUIRE(mdb_env_open(env_, dir.c_str(), MDB_NOSYNC, 0644) == 0);
  }
  ~raw_env() { mdb_env_close(env_); }
  raw_env(const raw_env&) = delete;
  raw_env& operator=(const raw_env&) = delete;

  void put(const char* db, const std::string& key, const std::string& value) {
    MDB_txn* txn = nullptr;
    REQUIRE(mdb_txn_begin(env_, nullptr, 0, &txn) == 0);
    MDB_dbi dbi = 0;
    REQUIRE(mdb_dbi_open(txn, db, MDB_CREATE, &dbi) == 0);
    MDB_val k{key.size(), const_cast<char*>(key.data())};
    MDB_val v{value.size(), const_cast<char*>(value.data())};
    REQUIRE(mdb_put(txn, dbi, &k, &v, 0) == 0);
    REQUIRE(mdb_txn_commit(txn) == 0);
  }

  void del(const char* db, const std::string& key) {
    MDB_txn* txn = nullptr;
    REQUIRE(mdb_txn_begin(env_, nullptr, 0, &txn) == 0);
    MDB_dbi dbi = 0;
    REQUIRE(mdb_dbi_open(txn, db, 0, &dbi) == 0);
    MDB_val k{key.size(), const_cast<char*>(key.data())};
    REQUIRE(mdb_del(txn, dbi, &k, nullptr) == 0);
    REQUIRE(mdb_txn_commit(txn) == 0);
  }

  /// Deletes the table `db` itself.
  void drop(const char* db) {
    MDB_txn* txn = nullptr;
    REQUIRE(mdb_txn_begin(env_, nullptr, 0, &txn) == 0);
    MDB_dbi dbi = 0;
    REQUIRE(mdb_dbi_open(txn, db, 0, &dbi) == 0);
    REQUIRE(mdb_drop(txn, dbi, 1) == 0);
    REQUIRE(mdb_txn_commit(txn) == 0);
  }

private:
  MDB_env* env_ = nullptr;
};

std::string u32_le(std::uint32_t v) {
  std::string out(4, '\0');
  format::put_le(reinterpret_cast<unsigned char*>(out.data()), v);
  return out;
}

} // namespace

TEST_CASE("opening a new directory creates a store, and reopening keeps its events",
          "[unit][store][open]") {
  temp_dir dir;
  auto path = dir.sub("nested/deeper/store");
  {
    auto store = open_ok(path);
    append_ok(*store, "acct-1", numbered(3, "a"));
    append_ok(*store, "acct-2", numbered(2, "b"));
    REQUIRE(store->save_checkpoint({"cp", 5}));
  }
  CHECK(fs::exists(path + "/data.mdb"));
  auto store = open_ok(path);
  CHECK(value_of(store->last_position()) == 5);
  CHECK(value_of(store->stream_version("acct-1")) == 3);
  CHECK(value_of(store->load_checkpoint("cp")).value() == 5);
  // Positions and stream numbers continue where they were: a new stream does
  // not take over an old stream's number.
  auto r = append_ok(*store, "acct-3", numbered(1, "c"));
  CHECK(r.first_position == 6);
  append_ok(*store, "acct-1", numbered(1, "a", 4));
  auto one = store->read_stream("acct-1", 1, no_limit);
  REQUIRE(one);
  REQUIRE(one->size() == 4);
  CHECK(one->back().payload == "a4");
  CHECK(one->back().position == 7);
  CHECK(value_of(store->read_stream("acct-2", 1, no_limit)).size() == 2);
  CHECK(value_of(store->read_stream("acct-3", 1, no_limit)).front().payload == "c1");
  CHECK(value_of(store->stats()).streams == 3);
}

TEST_CASE("a directory holding other files is not a cairn store", "[unit][store][open]") {
  temp_dir dir;
  fs::create_directories(dir.sub("s"));
  cairn::test::write_file(dir.sub("s/notes.txt"), "not an event store");
  auto err = open_refused(dir.sub("s"), errc::invalid_argument);
  CHECK_THAT(err.message, Catch::Contains("not a cairn store"));
  CHECK_THAT(err.message, Catch::Contains("notes.txt"));
  CHECK_FALSE(fs::exists(dir.sub("s/data.mdb")));
}

TEST_CASE("an empty existing directory becomes a store", "[unit][store][open]") {
  temp_dir dir;
  fs::create_directories(dir.sub("s"));
  auto store = open_ok(dir.sub("s"));
  append_ok(*store, "acct-1", numbered(1));
}

TEST_CASE("a zero-length data.mdb left by a crash during creation becomes a store",
          "[unit][store][open]") {
  temp_dir dir;
  fs::create_directories(dir.sub("s"));
  cairn::test::write_file(dir.sub("s/data.mdb"), "");
  auto store = open_ok(dir.sub("s"));
  append_ok(*store, "acct-1", numbered(1));
  CHECK(value_of(store->last_position()) == 1);
}

TEST_CASE("every durability mode commits and reads back after reopening", "[unit][store][open]") {
  temp_dir dir;
  for (auto mode : {durability::sync, durability::no_meta_sync, durability::no_sync}) {
    auto o = fast_options();
    o.durability = mode;
    {
      auto store = open_ok(dir.sub("s"), o);
      append_ok(*store, "acct-1", numbered(2));
    }
    auto store = open_ok(dir.sub("s"), o);
    CHECK(value_of(store->read_stream("acct-1", 1, no_limit)).size() % 2 == 0);
  }
  auto store = open_ok(dir.sub("s"));
  CHECK(value_of(store->stream_version("acct-1")) == 6);
}

TEST_CASE("a data.mdb that is not an LMDB file is not a cairn store", "[unit][store][open]") {
  temp_dir dir;
  fs::create_directories(dir.sub("s"));
  cairn::test::write_file(dir.sub("s/data.mdb"), std::string(8192, 'x'));
  auto err = open_refused(dir.sub("s"), errc::invalid_argument);
  CHECK_THAT(err.message, Catch::Contains("not a cairn store"));
}

TEST_CASE("an LMDB file of some other program is not a cairn store", "[unit][store][open]") {
  temp_dir dir;
  fs::create_directories(dir.sub("s"));
  {
    raw_env env{dir.sub("s")};
    env.put("customers", "alice", "42");
  }
  auto err = open_refused(dir.sub("s"), errc::invalid_argument);
  CHECK_THAT(err.message, Catch::Contains("not a cairn store"));
}

TEST_CASE("a file path is refused as a store directory", "[unit][store][open]") {
  temp_dir dir;
  cairn::test::write_file(dir.sub("file"), "x");
  auto err = open_refused(dir.sub("file"), errc::invalid_argument);
  CHECK_THAT(err.message, Catch::Contains("not a directory"));
  CHECK(err.context == dir.sub("file"));
}

TEST_CASE("a read-only open of a missing store is refused and creates nothing",
          "[unit][store][open]") {
  temp_dir dir;
  auto o = fast_options();
  o.read_only = true;
  SECTION("a missing directory") {
    auto err = open_refused(dir.sub("missing"), errc::invalid_argument, o);
    CHECK_THAT(err.message, Catch::Contains("no cairn store"));
    CHECK_FALSE(fs::exists(dir.sub("missing")));
  }
  SECTION("an empty directory") {
    fs::create_directories(dir.sub("empty"));
    open_refused(dir.sub("empty"), errc::invalid_argument, o);
    CHECK(fs::is_empty(dir.sub("empty")));
  }
}

TEST_CASE("a read-only store reads what a writer wrote", "[unit][store][open]") {
  temp_dir dir;
  {
    auto store = open_ok(dir.sub("s"));
    append_ok(*store, "acct-1", numbered(2));
  }
  auto o = fast_options();
  o.read_only = true;
  auto ro = open_ok(dir.sub("s"), o);
  CHECK(value_of(ro->read_stream("acct-1", 1, no_limit)).size() == 2);
  CHECK(value_of(ro->last_position()) == 2);
}

TEST_CASE("a second writer on the same directory is unavailable until the first closes",
          "[unit][store][open]") {
  temp_dir dir;
  auto first = open_ok(dir.sub("s"));
  append_ok(*first, "acct-1", numbered(1));
  auto err = open_refused(dir.sub("s"), errc::unavailable);
  CHECK_THAT(err.message, Catch::Contains("already open"));
  // The refused open did not disturb the first writer.
  append_ok(*first, "acct-1", numbered(1));
  CHECK(value_of(first->stream_version("acct-1")) == 2);
  first.reset();
  auto second = open_ok(dir.sub("s"));
  CHECK(value_of(second->stream_version("acct-1")) == 2);
}

TEST_CASE("a second open of a store in the same process is refused until the first closes",
          "[unit][store][open]") {
  temp_dir dir;
  auto writer = open_ok(dir.sub("s"));
  append_ok(*writer, "acct-1", numbered(1));
  auto ro = fast_options();
  ro.read_only = true;
  // Read-only beside the writer, also through another spelling of the path.
  for (const auto& path : {dir.sub("s"), dir.sub("s") + "/.", dir.sub("s") + "/../s"}) {
    INFO(path);
    auto err = open_refused(path, errc::unavailable, ro);
    CHECK_THAT(err.message, Catch::Contains("already open in this process"));
  }
  fs::create_directory_symlink(dir.sub("s"), dir.sub("link"));
  open_refused(dir.sub("link"), errc::unavailable, ro);
  // The refused opens left the writer's locks alone.
  append_ok(*writer, "acct-1", numbered(1));
  CHECK(value_of(writer->stream_version("acct-1")) == 2);
  writer.reset();

  auto reader = open_ok(dir.sub("s"), ro);
  open_refused(dir.sub("s"), errc::unavailable, ro);
  open_refused(dir.sub("s"), errc::unavailable);
  CHECK(value_of(reader->stream_version("acct-1")) == 2);
  reader.reset();
  CHECK(value_of(open_ok(dir.sub("s"))->stream_version("acct-1")) == 2);
}

TEST_CASE("a store of a newer format is refused naming the version", "[unit][store][open]") {
  temp_dir dir;
  {
    auto store = open_ok(dir.sub("s"));
    append_ok(*store, "acct-1", numbered(1));
  }
  {
    raw_env env{dir.sub("s")};
    env.put("meta", "format", format::seal("format", u32_le(format::current_version + 1)));
  }
  auto err = open_refused(dir.sub("s"), errc::invalid_argument);
  CHECK_THAT(err.message,
             Catch::Contains("format version " + std::to_string(format::current_version + 1)));
  CHECK_THAT(err.message, Catch::Contains("newer"));
  CHECK(err.context == dir.sub("s"));

  SECTION("and opens again once the format is one it reads") {
    {
      raw_env env{dir.sub("s")};
      env.put("meta", "format", format::seal("format", u32_le(format::current_version)));
    }
    auto store = open_ok(dir.sub("s"));
    CHECK(value_of(store->stream_version("acct-1")) == 1);
  }
}

TEST_CASE("a store whose format record fails its checksum is refused as corrupted",
          "[unit][store][open][corruption]") {
  temp_dir dir;
  { auto store = open_ok(dir.sub("s")); }
  {
    raw_env env{dir.sub("s")};
    auto sealed = format::seal("format", u32_le(format::current_version));
    sealed[0] = static_cast<char>(sealed[0] ^ 0x40);
    env.put("meta", "format", sealed);
  }
  open_refused(dir.sub("s"), errc::corrupted);
}

TEST_CASE(
  "a format 1 store is read as it is, and upgraded to the current format by a writable open",
  "[unit][store][open]") {
  temp_dir dir;
  auto path = dir.sub("s");
  auto o = fast_options();
  o.heads_flush_events = 0; // heads table complete after every commit, as format 1 wrote it
  {
    auto store = open_ok(path, o);
    append_ok(*store, "acct-1", numbered(3, "a"));
    append_ok(*store, "acct-2", numbered(2, "b"));
  }
  {
    raw_env env{path};
    env.put("meta", "format", format::seal("format", u32_le(1)));
    env.del("meta", "heads_at");
    env.drop("head_log");
    env.drop("chain");
  }
  auto ro = fast_options();
  ro.read_only = true;
  {
    auto reader = open_ok(path, ro);
    CHECK(value_of(reader->stats()).format_version == 1);
    CHECK(value_of(reader->stream_version("acct-1")) == 3);
    CHECK(value_of(reader->read_stream("acct-2", 1, no_limit)).back().payload == "b2");
  }
  // A reader in another process (one store handle per process) that opened
  // while the store was still format 1; it reads once the writer upgraded it.
  int ready[2], go[2];
  REQUIRE(::pipe(ready) == 0);
  REQUIRE(::pipe(go) == 0);
  REQUIRE(cairn::test::await_quiet_threads().empty());
  pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    auto early_reader = open_store(path, ro);
    char c = early_reader ? 'r' : 'x';
    (void)cairn::test::write_all(ready[1], &c, 1);
    if (!early_reader || ::read(go[0], &c, 1) != 1)
      ::_exit(2);
    // Its heads table is no longer complete: it says so rather than read old heads.
    auto stale = (*early_reader)->stream_version("acct-2");
    bool ok = !stale && stale.error().code == errc::unavailable
              && stale.error().message.find("reopen") != std::string::npos;
    ::_exit(ok ? 0 : 1);
  }
  char c = 0;
  REQUIRE(::read(ready[0], &c, 1) == 1);
  REQUIRE(c == 'r');
  {
    auto store = open_ok(path); // default interval: new heads go to the head log
    CHECK(value_of(store->stats()).format_version == format::current_version);
    append_ok(*store, "acct-2", numbered(1, "b", 3));
    append_ok(*store, "acct-3", numbered(1, "c"));
  }
  REQUIRE(cairn::test::write_all(go[1], &c, 1));
  int status = 0;
  REQUIRE(::waitpid(pid, &status, 0) == pid);
  INFO("the early reader " << cairn::test::describe_status(status));
  CHECK((WIFEXITED(status) && WEXITSTATUS(status) == 0));
  for (int fd : {ready[0], ready[1], go[0], go[1]})
    ::close(fd);
  auto reader = open_ok(path, ro);
  CHECK(value_of(reader->stats()).format_version == format::current_version);
  CHECK(value_of(reader->stream_version("acct-1")) == 3);
  CHECK(value_of(reader->stream_version("acct-2")) == 3);
  CHECK(value_of(reader->stream_version("acct-3")) == 1);
}
