// The store's files hold every event: nobody but their owner may read them.

#include <sys/stat.h>

#include <filesystem>
#include <string>

#include <catch2/catch.hpp>

#include "cairn/persistence/event_store.hpp"
#include "support/temp_dir.hpp"

#include "helpers.hpp"

using namespace cairn::persistence;
using cairn::test::append_ok;
using cairn::test::fast_options;
using cairn::test::numbered;
using cairn::test::open_ok;
using cairn::test::temp_dir;
using cairn::test::value_of;

namespace {

/// Permission bits of `path` (not following a symlink).
mode_t mode_of(const std::string& path) {
  struct stat st {};
  REQUIRE(::lstat(path.c_str(), &st) == 0);
  return st.st_mode & 07777;
}

/// Sets the umask for a scope.
class umask_scope {
public:
  explicit umask_scope(mode_t m) : old_(::umask(m)) {}
  ~umask_scope() { ::umask(old_); }
  umask_scope(const umask_scope&) = delete;
  umask_scope& operator=(const umask_scope&) = delete;

private:
  mode_t old_;
};

} // namespace

TEST_CASE("a store and its backup are created readable by their owner only",
          "[unit][store][open]") {
  temp_dir dir;
  umask_scope no_mask{0}; // the store's own modes, not the umask, keep them private
  {
    auto store = open_ok(dir.sub("a/b/store"));
    append_ok(*store, "acct-1", numbered(1));
    REQUIRE(store->copy_to(dir.sub("c/backup")));
  }
  for (const auto* d : {"a", "a/b", "a/b/store", "c", "c/backup"}) {
    INFO(d);
    CHECK(mode_of(dir.sub(d)) == 0700);
  }
  for (const auto* f :
       {"a/b/store/data.mdb", "a/b/store/lock.mdb", "a/b/store/cairn.lock", "c/backup/data.mdb"}) {
    INFO(f);
    CHECK(mode_of(dir.sub(f)) == 0600);
  }
}
