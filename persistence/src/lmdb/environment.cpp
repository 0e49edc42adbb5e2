// The LMDB environment: map growth and the adoption of a map another process
// grew, commits and flushes, stale readers, LMDB's panic, hot backup.

#include <sys/stat.h>

#include <algorithm>
#include <filesystem>

#include "lmdb/store_impl.hpp"

namespace cairn::persistence::detail {

namespace fs = std::filesystem;

void lmdb_store::start_preallocation() {
  if (opts_.read_only || opts_.durability == durability::no_sync || opts_.preallocate == 0)
    return;
  prealloc_ = preallocator::start((fs::path(dir_) / "data.mdb").string(), data_end(),
                                  opts_.preallocate, opts_.max_map_size);
}

std::uint64_t lmdb_store::data_end() const {
  MDB_envinfo info;
  mdb_env_info(env_, &info);
  MDB_stat st;
  mdb_env_stat(env_, &st);
  return (std::uint64_t{info.me_last_pgno} + 1) * st.ms_psize;
}

result<void> lmdb_store::after_commit(bool defer) {
  MDB_envinfo info;
  mdb_env_info(env_, &info);
  auto before = commits_.last;
  commits_.last = info.me_last_txnid;
  if (opts_.durability != durability::sync)
    commits_.durable = commits_.last; // as durable as this mode makes anything
  else if (!defer)
    return sync();
  else if (commits_.last != before)
    commits_.durable = before; // this commit's data flush carried the previous meta page
  return {};
}

result<void> lmdb_store::sync() {
  if (broken_)
    return tl::unexpected(*broken_);
  if (commits_.durable == commits_.last)
    return {};
  if (int rc = mdb_env_sync(env_, 1); rc != 0) {
    auto err = lmdb_error(rc, "flush to disk");
    broken_ = error{errc::unavailable,
                    err.message
                      + "; commits since the last flush may be lost on a power loss, "
                        "so the store takes no more writes: reopen it",
                    dir_};
    return tl::unexpected(*broken_);
  }
  commits_.durable = commits_.last;
  return {};
}

std::uint64_t lmdb_store::check_readers() {
  int dead = 0;
  if (mdb_reader_check(env_, &dead) != 0)
    dead = 0;
  commits_since_reader_check_ = 0;
  last_reader_check_ = std::chrono::steady_clock::now();
  if (dead > 0)
    stale_readers_.fetch_add(static_cast<std::uint64_t>(dead), std::memory_order_relaxed);
  return static_cast<std::uint64_t>(std::max(dead, 0));
}

bool lmdb_store::panicked() const {
  if (fatal_.load(std::memory_order_relaxed))
    return true;
  // LMDB keeps its fatal flag private; a transaction it refuses shows it.
  MDB_txn* probe = nullptr;
  int rc = mdb_txn_begin(env_, nullptr, MDB_RDONLY, &probe);
  if (rc == 0)
    mdb_txn_abort(probe);
  if (rc != MDB_PANIC)
    return false;
  fatal_.store(true, std::memory_order_relaxed);
  return true;
}

void lmdb_store::note_write_failure(const lmdb_failure& f) {
  const int rc = f.rc;
  const error& err = f.err;
  bool stopped = rc == MDB_PANIC || (rc > 0 && panicked());
  if (stopped)
    fatal_.store(true, std::memory_order_relaxed);
  if (broken_)
    return;
  if (stopped) {
    broken_ = error{errc::unavailable,
                    err.message
                      + "; LMDB stopped the store (MDB_PANIC, a failed meta page "
                        "write): it takes no more writes or reads until it is reopened",
                    dir_};
  } else if (rc == MDB_CORRUPTED || rc == MDB_PAGE_NOTFOUND) {
    broken_ = error{errc::corrupted,
                    err.message
                      + "; a damaged B-tree page: the store takes no more writes, "
                        "so the damage does not spread (run cairn verify)",
                    dir_};
  }
}

result<void> lmdb_store::before_retry(const lmdb_failure& f) {
  if (f.rc != MDB_MAP_FULL) {
    note_write_failure(f);
    return tl::unexpected(broken_ ? *broken_ : f.err);
  }
  // Pages pinned by a dead reader's snapshot become free again: retry first.
  if (check_readers() > 0)
    return {};
  return grow_map();
}

result<void> lmdb_store::grow_map() {
  if (map_size_ >= opts_.max_map_size)
    return fail(errc::unavailable,
                "map full: the store reached max_map_size (" + std::to_string(opts_.max_map_size)
                  + " bytes); reads still work, reopen with a larger max_map_size to append",
                dir_);
  auto next = std::min(opts_.max_map_size, map_size_ + opts_.map_growth_step);
  std::unique_lock lock{remap_};
  if (int rc = mdb_env_set_mapsize(env_, next); rc != 0)
    return tl::unexpected(lmdb_error(rc, "grow the map"));
  MDB_envinfo info;
  mdb_env_info(env_, &info);
  map_size_ = info.me_mapsize;
  return {};
}

int lmdb_store::adopting_resize(std::shared_lock<std::shared_mutex>& lock,
                                const std::function<int()>& attempt) const {
  int rc = attempt();
  if (rc != MDB_MAP_RESIZED)
    return rc;
  // Another process grew the map: adopt its size, then try again. Only a
  // read-only process gets here (the writer's flock excludes a second
  // writer), so no write transaction of ours can be open meanwhile.
  lock.unlock();
  {
    std::unique_lock grow{remap_};
    (void)mdb_env_set_mapsize(env_, 0);
  }
  lock.lock();
  return attempt();
}

result<MDB_txn*> lmdb_store::begin_read(std::shared_lock<std::shared_mutex>& lock) const {
  if (fatal_.load(std::memory_order_relaxed))
    return fail(errc::unavailable,
                "LMDB stopped the store after a failed write (MDB_PANIC): reopen it", dir_);
  lock.lock();
  MDB_txn* raw = nullptr;
  int rc = adopting_resize(lock, [&] { return mdb_txn_begin(env_, nullptr, MDB_RDONLY, &raw); });
  if (rc == MDB_PANIC)
    fatal_.store(true, std::memory_order_relaxed);
  if (rc != 0)
    return tl::unexpected(lmdb_error(rc, "begin read"));
  return raw;
}

result<void> lmdb_store::copy_to(const std::string& dest_dir) const {
  if (dest_dir.empty())
    return fail(errc::invalid_argument, "empty backup directory");
  std::error_code ec;
  auto status = fs::status(dest_dir, ec);
  if (fs::exists(status)) {
    if (!fs::is_directory(status))
      return fail(errc::invalid_argument, "the backup target is not a directory", dest_dir);
    if (!fs::is_empty(dest_dir, ec) || ec)
      return fail(errc::invalid_argument, "the backup directory is not empty", dest_dir);
  } else if (ec = make_private_dirs(fs::path(dest_dir).lexically_normal()); ec) {
    return fail(errc::unavailable, "cannot create the backup directory: " + ec.message(), dest_dir);
  }
  auto data = fs::path(dest_dir) / "data.mdb";
  std::shared_lock lock{remap_};
  int attempts = 0;
  int rc = adopting_resize(lock, [&] {
    // The copy creates data.mdb exclusively: a retry drops the partial one.
    if (attempts++ > 0)
      fs::remove(data, ec);
    return mdb_env_copy2(env_, dest_dir.c_str(), MDB_CP_COMPACT);
  });
  if (rc != 0) {
    fs::remove(data, ec);
    auto err = lmdb_error(rc, "copy the store");
    if (err.code == errc::internal) // an errno: the target's file system refused
      err.code = errc::unavailable;
    err.context = dest_dir;
    return tl::unexpected(err);
  }
  // LMDB creates the copy with mode 0666 (less the umask): keep it private.
  struct stat copy_stat {};
  if (::stat(data.c_str(), &copy_stat) == 0)
    (void)::chmod(data.c_str(), copy_stat.st_mode & file_mode);
  return {};
}

} // namespace cairn::persistence::detail
