#pragma once

// LMDB plumbing shared by the store's units: error mapping, RAII guards for
// transactions and cursors, and the registry of store directories this
// process has open.

#include <lmdb.h>
#include <sys/types.h>

#include <filesystem>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>

#include "cairn/model/error.hpp"

namespace cairn::persistence::detail {

/// Mode of the files the store creates (the umask applies on top): events
/// are nobody else's business.
inline constexpr mode_t file_mode = 0600;
/// Mode of the directories it creates.
inline constexpr mode_t dir_mode = 0700;

/// Creates `dir` and its missing parents with dir_mode.
[[nodiscard]] std::error_code make_private_dirs(const std::filesystem::path& dir);

/// The cairn error for LMDB code `rc` (an MDB_* code or an errno) met in
/// `op`, its errc chosen by what the caller should do (docs/errors.md).
[[nodiscard]] error lmdb_error(int rc, const std::string& op);

/// Why a step of a write transaction stopped it: the caller's error, and the
/// LMDB code the write loop acts on (MDB_MAP_FULL: grow the map and retry;
/// MDB_PANIC or a damaged page: refuse every later write).
struct lmdb_failure {
  int rc = 0;
  error err;
};

/// The outcome of a step of a write transaction.
template <class T = void> using lmdb_result = tl::expected<T, lmdb_failure>;

/// A failed LMDB call `op` that returned `rc`.
[[nodiscard]] inline tl::unexpected<lmdb_failure> lmdb_fail(int rc, const std::string& op) {
  return tl::unexpected(lmdb_failure{rc, lmdb_error(rc, op)});
}

/// A failure with an error of our own, reported to the write loop as `rc`.
[[nodiscard]] inline tl::unexpected<lmdb_failure> lmdb_fail(int rc, error err) {
  return tl::unexpected(lmdb_failure{rc, std::move(err)});
}

[[nodiscard]] inline MDB_val val_of(std::string_view s) {
  return MDB_val{s.size(), const_cast<char*>(s.data())};
}

[[nodiscard]] inline std::string_view view_of(const MDB_val& v) {
  return {static_cast<const char*>(v.mv_data), v.mv_size};
}

/// mdb_put of `key` -> `value` in `dbi`; a failure names `what`.
[[nodiscard]] inline lmdb_result<> put_value(MDB_txn* txn, MDB_dbi dbi, std::string_view key,
                                             std::string_view value, const char* what,
                                             unsigned flags = 0) {
  MDB_val k = val_of(key), v = val_of(value);
  if (int rc = mdb_put(txn, dbi, &k, &v, flags); rc != 0)
    return lmdb_fail(rc, what);
  return {};
}

/// mdb_del of `key` in `dbi`, absent or not; a failure names `what`.
[[nodiscard]] inline lmdb_result<> erase_value(MDB_txn* txn, MDB_dbi dbi, std::string_view key,
                                               const char* what) {
  MDB_val k = val_of(key);
  if (int rc = mdb_del(txn, dbi, &k, nullptr); rc != 0 && rc != MDB_NOTFOUND)
    return lmdb_fail(rc, what);
  return {};
}

/// Aborts the transaction unless it was committed.
class txn_guard {
public:
  explicit txn_guard(MDB_txn* t) : txn_(t) {}
  ~txn_guard() {
    if (txn_ != nullptr)
      mdb_txn_abort(txn_);
  }
  txn_guard(const txn_guard&) = delete;
  txn_guard& operator=(const txn_guard&) = delete;
  [[nodiscard]] int commit() {
    int rc = mdb_txn_commit(txn_);
    txn_ = nullptr; // commit frees the txn even when it fails
    return rc;
  }
  [[nodiscard]] MDB_txn* get() const { return txn_; }

private:
  MDB_txn* txn_;
};

/// Closes the cursor it opened.
class cursor_guard {
public:
  cursor_guard() = default;
  ~cursor_guard() {
    if (cur_ != nullptr)
      mdb_cursor_close(cur_);
  }
  cursor_guard(const cursor_guard&) = delete;
  cursor_guard& operator=(const cursor_guard&) = delete;
  [[nodiscard]] int open(MDB_txn* txn, MDB_dbi dbi) { return mdb_cursor_open(txn, dbi, &cur_); }
  [[nodiscard]] MDB_cursor* get() const { return cur_; }

private:
  MDB_cursor* cur_ = nullptr;
};

/// The store directories this process has open, by (device, inode): LMDB
/// allows one environment per file per process, since closing a second one
/// drops the first one's POSIX locks on lock.mdb (and the reader table with
/// them). Entries name the process that made them, so a child forked while
/// a store is open may open that store for itself.
class open_dirs {
public:
  using key = std::pair<dev_t, ino_t>;
  /// Registers `k`; false when this process has it open already.
  [[nodiscard]] static bool add(key k);
  static void remove(key k);
};

} // namespace cairn::persistence::detail
