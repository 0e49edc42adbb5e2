// open_store, the store's directory and its lock, and the write calls of
// event_store (the write transaction itself is in write.cpp).

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <random>

#include "lmdb/store_impl.hpp"

namespace cairn::persistence {

namespace detail {

namespace fs = std::filesystem;

namespace {

/// Checks the options; `invalid_argument` naming the first one out of range.
result<void> validate_options(const std::string& dir, const store_options& opts) {
  if (dir.empty())
    return fail(errc::invalid_argument, "empty store directory");
  if (opts.initial_map_size == 0 || opts.initial_map_size > opts.max_map_size)
    return fail(errc::invalid_argument, "initial_map_size must be in (0, max_map_size]", dir);
  if (opts.map_growth_step == 0)
    return fail(errc::invalid_argument, "map_growth_step must be positive", dir);
  if (opts.max_event_size == 0 || opts.max_event_size > (std::size_t{1} << 30))
    return fail(errc::invalid_argument, "max_event_size must be in (0, 1 GiB]", dir);
  return {};
}

/// Whether `dir` holds a store (data.mdb); creates it when it does not exist
/// and the open may write. `invalid_argument` for a directory that holds
/// something else.
result<bool> prepare_directory(const std::string& dir, bool read_only) {
  std::error_code ec;
  auto status = fs::status(dir, ec);
  bool exists = fs::exists(status);
  if (exists && !fs::is_directory(status))
    return fail(errc::invalid_argument, "not a directory", dir);
  bool has_data = exists && fs::exists(fs::path(dir) / "data.mdb", ec);
  if (exists && !has_data) {
    for (const auto& entry : fs::directory_iterator(dir, ec)) {
      auto name = entry.path().filename().string();
      if (name != lock_file_name && name != "lock.mdb")
        return fail(errc::invalid_argument,
                    "not a cairn store: the directory holds other files (e.g. " + name + ")", dir);
    }
  }
  if (read_only && !has_data)
    return fail(errc::invalid_argument, "no cairn store here (no data.mdb)", dir);
  if (!exists) {
    if (ec = make_private_dirs(fs::path(dir).lexically_normal()); ec)
      return fail(errc::unavailable, "cannot create the directory: " + ec.message(), dir);
  }
  return has_data;
}

/// The (device, inode) of `dir`, registered in open_dirs.
result<open_dirs::key> register_directory(const std::string& dir) {
  struct stat dir_stat {};
  if (::stat(dir.c_str(), &dir_stat) != 0)
    return fail(errc::unavailable, std::string{"cannot read the directory: "} + strerror(errno),
                dir);
  open_dirs::key dir_key{dir_stat.st_dev, dir_stat.st_ino};
  if (!open_dirs::add(dir_key))
    return fail(errc::unavailable,
                "the store is already open in this process (LMDB allows one handle per store "
                "and process: share the open one)",
                dir);
  return dir_key;
}

/// Opens and flocks the lock file that makes this process the one writer;
/// its descriptor, which holds the lock until it is closed.
result<int> lock_for_writing(const std::string& dir) {
  auto lock_path = (fs::path(dir) / lock_file_name).string();
  int fd = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, file_mode);
  if (fd < 0)
    return fail(errc::unavailable, std::string{"cannot open the lock file: "} + strerror(errno),
                lock_path);
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    ::close(fd);
    return fail(errc::unavailable,
                "the store is already open for writing (by this or another process)", dir);
  }
  return fd;
}

} // namespace

result<std::unique_ptr<event_store>> lmdb_store::open(const std::string& dir,
                                                      const store_options& opts) {
  if (auto ok = validate_options(dir, opts); !ok)
    return tl::unexpected(ok.error());
  auto has_data = prepare_directory(dir, opts.read_only);
  if (!has_data)
    return tl::unexpected(has_data.error());
  std::unique_ptr<lmdb_store> store{new lmdb_store(dir, opts)};
  auto dir_key = register_directory(dir);
  if (!dir_key)
    return tl::unexpected(dir_key.error());
  store->registered_ = *dir_key;
  if (!opts.read_only) {
    auto fd = lock_for_writing(dir);
    if (!fd)
      return tl::unexpected(fd.error());
    store->lock_fd_ = *fd;
  }
  if (auto ok = store->init(!*has_data); !ok)
    return tl::unexpected(ok.error());
  if (!opts.read_only)
    if (auto ok = store->extend_chain(); !ok)
      return tl::unexpected(ok.error());
  if (auto ok = store->open_key_ring(); !ok)
    return tl::unexpected(ok.error());
  store->start_preallocation();
  return std::unique_ptr<event_store>{std::move(store)};
}

lmdb_store::lmdb_store(std::string dir, const store_options& opts)
    : dir_(std::move(dir)), opts_(opts) {
  std::random_device rd;
  rng_.seed((std::uint64_t{rd()} << 32) ^ rd());
}

lmdb_store::~lmdb_store() {
  prealloc_.reset(); // before the lock file lets another writer in
  if (env_ != nullptr) {
    // Best effort: a clean close flushes what no_sync and append_batch_deferred left.
    if (!opts_.read_only
        && (opts_.durability != durability::sync || commits_.durable != commits_.last))
      (void)mdb_env_sync(env_, 1);
    mdb_env_close(env_);
  }
  if (lock_fd_ >= 0)
    ::close(lock_fd_);
  if (registered_)
    open_dirs::remove(*registered_);
}

// -- the write calls ----------------------------------------------------------------

lmdb_store::batch_view lmdb_store::view_of_batch(const write_batch& b) {
  batch_view v;
  v.appends = {b.appends.data(), b.appends.size()};
  v.checkpoints = {b.checkpoints.data(), b.checkpoints.size()};
  v.snapshots = {b.snapshots.data(), b.snapshots.size()};
  v.kv = {b.kv.data(), b.kv.size()};
  v.dead_letters = {b.dead_letters.data(), b.dead_letters.size()};
  v.removals = {b.dead_letter_removals.data(), b.dead_letter_removals.size()};
  v.forget = {b.forget.data(), b.forget.size()};
  return v;
}

result<append_result> lmdb_store::append(const append_request& req) {
  batch_view b;
  b.appends = {&req, 1};
  auto out = write(b, false);
  if (!out)
    return tl::unexpected(out.error());
  return std::move(out->front());
}

result<std::vector<result<append_result>>> lmdb_store::append_batch(const write_batch& b) {
  return write(view_of_batch(b), false);
}

result<std::vector<result<append_result>>> lmdb_store::append_batch_deferred(const write_batch& b) {
  return write(view_of_batch(b), true);
}

result<void> lmdb_store::save_snapshot(const snapshot& snap) {
  batch_view b;
  b.snapshots = {&snap, 1};
  auto out = write(b, false);
  if (!out)
    return tl::unexpected(out.error());
  return {};
}

result<void> lmdb_store::save_checkpoint(const checkpoint& cp) {
  batch_view b;
  b.checkpoints = {&cp, 1};
  auto out = write(b, false);
  if (!out)
    return tl::unexpected(out.error());
  return {};
}

} // namespace detail

result<std::unique_ptr<event_store>> open_store(const std::string& dir,
                                                const store_options& options) {
  try {
    return detail::lmdb_store::open(dir, options);
  } catch (const std::exception& e) {
    return fail(errc::internal, std::string{"open failed: "} + e.what(), dir);
  }
}

} // namespace cairn::persistence
