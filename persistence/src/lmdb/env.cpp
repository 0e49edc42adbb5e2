// LMDB plumbing shared by the store's units (env.hpp).

#include "lmdb/env.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <map>
#include <mutex>

namespace cairn::persistence::detail {

namespace fs = std::filesystem;

std::error_code make_private_dirs(const fs::path& dir) {
  std::error_code ec;
  if (fs::exists(dir, ec) || dir.empty())
    return ec;
  if (auto parent = dir.parent_path(); parent != dir)
    if (auto err = make_private_dirs(parent))
      return err;
  if (::mkdir(dir.c_str(), dir_mode) != 0 && errno != EEXIST)
    return std::error_code{errno, std::generic_category()};
  return {};
}

error lmdb_error(int rc, const std::string& op) {
  std::string what = op + ": " + mdb_strerror(rc);
  switch (rc) {
    case MDB_MAP_FULL: return error{errc::unavailable, what + " (map full)"};
    case ENOSPC: return error{errc::unavailable, what + " (disk full)"};
    // The disk refused a write: nothing of the commit is visible (or, for the
    // meta page, LMDB refuses every later transaction: MDB_PANIC), and a retry
    // can succeed once space is freed. LMDB reports a short write, which is
    // what a nearly full disk gives, as EIO.
    case EIO: return error{errc::unavailable, what + " (the disk failed a write, or is full)"};
    case EFBIG: return error{errc::unavailable, what + " (file size limit reached)"};
    case EDQUOT: return error{errc::unavailable, what + " (disk quota reached)"};
    case MDB_PANIC:
      return error{errc::unavailable, what + " (the store must be closed and reopened)"};
    case MDB_READERS_FULL:
      return error{errc::unavailable, what + " (raise store_options::max_readers)"};
    case MDB_CORRUPTED:
    case MDB_PAGE_NOTFOUND:
    case MDB_INVALID:
    case MDB_VERSION_MISMATCH: return error{errc::corrupted, what};
    default: return error{errc::internal, what};
  }
}

namespace {

std::mutex& open_dirs_mutex() {
  static std::mutex m;
  return m;
}

std::map<open_dirs::key, pid_t>& open_dirs_map() {
  static std::map<open_dirs::key, pid_t> m;
  return m;
}

} // namespace

bool open_dirs::add(key k) {
  std::lock_guard lock{open_dirs_mutex()};
  auto [it, added] = open_dirs_map().try_emplace(k, ::getpid());
  if (added)
    return true;
  if (it->second == ::getpid())
    return false;
  it->second = ::getpid(); // left by the parent of a forked process
  return true;
}

void open_dirs::remove(key k) {
  std::lock_guard lock{open_dirs_mutex()};
  auto& map = open_dirs_map();
  if (auto it = map.find(k); it != map.end() && it->second == ::getpid())
    map.erase(it);
}

} // namespace cairn::persistence::detail
