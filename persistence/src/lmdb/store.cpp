// The LMDB event store. Layout and the reasons for it: docs/storage-format.md.
//
// Write cost is what shaped it: a commit writes the new log records (appended
// in position order, so they fill fresh pages) plus one small head per stream
// touched. The per-stream index is a back-pointer chain inside the records
// with a sparse index entry every 32 versions, so random index inserts stay
// off the commit path.

#include <fcntl.h>
#include <lmdb.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <deque>
#include <filesystem>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <shared_mutex>
#include <tuple>
#include <unordered_map>

#include "cairn/model/clock.hpp"
#include "cairn/model/stream_name.hpp"
#include "cairn/persistence/codec.hpp"
#include "cairn/persistence/event_store.hpp"
#include "lmdb/format.hpp"
#include "lmdb/preallocator.hpp"

namespace cairn::persistence {

namespace {

namespace fs = std::filesystem;
using namespace format;

/// Longest metadata field, type name and checkpoint name, in bytes.
constexpr std::size_t max_short_field = 255;
/// Records one read_all call scans at most, so a read transaction stays short.
constexpr std::size_t max_scan_per_read = 65536;
/// Snapshots kept per stream.
constexpr int snapshots_kept = 2;
/// The writer's head cache is dropped when it grows past this many streams.
constexpr std::size_t head_cache_limit = std::size_t{1} << 20;
/// Name of the file whose flock marks the one writing process.
constexpr const char* lock_file_name = "cairn.lock";
/// The writer clears the reader slots of dead processes (mdb_reader_check)
/// after this many commits, after reader_check_period, and before it grows
/// the map: a slot left by a reader killed inside a read transaction pins
/// the pages of that snapshot, so the file would otherwise grow forever.
constexpr std::uint64_t reader_check_commits = 1024;
constexpr std::chrono::seconds reader_check_period{10};
/// meta key: the log position up to which the heads table is complete.
constexpr std::string_view heads_at_key = "heads_at";

/// Mode of the files the store creates (the umask applies on top): events
/// are nobody else's business.
constexpr mode_t file_mode = 0600;
/// Mode of the directories it creates.
constexpr mode_t dir_mode = 0700;

/// Creates `dir` and its missing parents with dir_mode.
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

/// The store directories this process has open, by (device, inode): LMDB
/// allows one environment per file per process, since closing a second one
/// drops the first one's POSIX locks on lock.mdb (and the reader table with
/// them). Entries name the process that made them, so a child forked while
/// a store is open may open that store for itself.
class open_dirs {
public:
  using key = std::pair<dev_t, ino_t>;
  /// Registers `k`; false when this process has it open already.
  static bool add(key k) {
    std::lock_guard lock{mu()};
    auto [it, added] = map().try_emplace(k, ::getpid());
    if (added)
      return true;
    if (it->second == ::getpid())
      return false;
    it->second = ::getpid(); // left by the parent of a forked process
    return true;
  }
  static void remove(key k) {
    std::lock_guard lock{mu()};
    if (auto it = map().find(k); it != map().end() && it->second == ::getpid())
      map().erase(it);
  }

private:
  static std::mutex& mu() {
    static std::mutex m;
    return m;
  }
  static std::map<key, pid_t>& map() {
    static std::map<key, pid_t> m;
    return m;
  }
};

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

MDB_val val_of(std::string_view s) {
  return MDB_val{s.size(), const_cast<char*>(s.data())};
}

std::string_view view_of(const MDB_val& v) {
  return {static_cast<const char*>(v.mv_data), v.mv_size};
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

struct head_state {
  std::uint64_t stream_no = 0; ///< 0: the stream does not exist (yet).
  std::uint64_t version = 0;
  std::uint64_t last_position = 0;
  bool dirty = false; ///< Staged only: this transaction appended to the stream.
};

/// (stream number, position of its last event) pairs: a head-log entry, or heads to write.
using head_pairs = std::vector<std::pair<std::uint64_t, std::uint64_t>>;

/// The writer's knowledge of one stream: its committed head, and what the
/// current write transaction staged on top of it. One map serves both, so an
/// append costs one lookup; `staged` is meaningful only while `staged_in` is
/// the running transaction's serial, so an aborted transaction leaves nothing
/// to undo.
struct cached_head {
  head_state committed;
  head_state staged;
  std::uint64_t staged_in = 0;
};

/// The writer's heads by stream name. An append looks its stream up here
/// first, so this is on the hot path: an open-addressing index of hashes
/// over entries that never move (staging keeps pointers to them) costs one
/// index probe and one entry per lookup, where std::unordered_map chases a
/// bucket, a node and often a chain.
class head_cache {
public:
  using entry = std::pair<const std::string, cached_head>;

  /// The entry of `name`, inserted with a default head if absent.
  std::pair<entry*, bool> find_or_insert(std::string_view name) {
    auto hash = XXH3_64bits(name.data(), name.size());
    if ((entries_.size() + 1) * 2 > slots_.size())
      grow();
    auto mask = slots_.size() - 1;
    for (auto i = static_cast<std::size_t>(hash) & mask;; i = (i + 1) & mask) {
      auto& s = slots_[i];
      if (s.index == 0) {
        entries_.emplace_back(std::piecewise_construct, std::forward_as_tuple(name),
                              std::forward_as_tuple());
        s = slot{hash, entries_.size()};
        return {&entries_.back(), true};
      }
      auto& e = entries_[s.index - 1];
      if (s.hash == hash && e.first == name)
        return {&e, false};
    }
  }

  /// Undoes the find_or_insert that just inserted `e` (its head could not be read).
  void erase_inserted(const entry* e) {
    auto hash = XXH3_64bits(e->first.data(), e->first.size());
    auto mask = slots_.size() - 1;
    // The newest entry: nothing inserted after it can have probed past its slot.
    for (auto i = static_cast<std::size_t>(hash) & mask;; i = (i + 1) & mask)
      if (slots_[i].index == entries_.size()) {
        slots_[i] = slot{};
        break;
      }
    entries_.pop_back();
  }

  [[nodiscard]] std::size_t size() const { return entries_.size(); }
  void clear() {
    entries_.clear();
    slots_.clear();
  }

private:
  struct slot {
    std::uint64_t hash = 0;
    std::size_t index = 0; ///< 1-based into entries_; 0 = empty.
  };

  void grow() {
    std::vector<slot> bigger(std::max<std::size_t>(1024, slots_.size() * 2));
    auto mask = bigger.size() - 1;
    for (const auto& s : slots_) {
      if (s.index == 0)
        continue;
      auto i = static_cast<std::size_t>(s.hash) & mask;
      while (bigger[i].index != 0)
        i = (i + 1) & mask;
      bigger[i] = s;
    }
    slots_ = std::move(bigger);
  }

  std::vector<slot> slots_; ///< A power of two, at most half full.
  std::deque<entry> entries_;
};

std::uint64_t bucket_of(std::uint64_t stream_no) { return stream_no / heads_per_bucket; }
std::size_t slot_of(std::uint64_t stream_no) {
  return static_cast<std::size_t>(stream_no % heads_per_bucket) * head_slot_size;
}

/// Small, fast generator for event ids; seeded from std::random_device.
class splitmix64 {
public:
  void seed(std::uint64_t s) { state_ = s; }
  std::uint64_t operator()() {
    std::uint64_t z = (state_ += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }

private:
  std::uint64_t state_ = 0;
};

/// Longest error text a dead letter keeps.
constexpr std::size_t max_dead_letter_error = 4096;

bool is_valid_space_name(std::string_view name) {
  return !name.empty() && name.size() <= max_short_field
         && name.find('\0') == std::string_view::npos;
}

/// Key-value key: space, a 0 byte, key (so one space is one key range).
std::string space_key(std::string_view space, std::string_view key) {
  std::string k;
  k.reserve(space.size() + 1 + key.size());
  k.append(space);
  k.push_back('\0');
  k.append(key);
  return k;
}

/// Dead-letter key: subscriber, a 0 byte, position (u64 big-endian).
std::string dead_letter_store_key(std::string_view subscriber, std::uint64_t position) {
  auto k = space_key(subscriber, {});
  k += be64_key(position);
  return k;
}

/// Checks what can be checked without the store's state.
result<void> validate_request(const append_request& req, const store_options& opts) {
  if (auto ok = validate_stream_name(req.stream); !ok)
    return ok;
  const metadata& m = req.meta;
  for (const std::string* f :
       {&m.correlation_id, &m.causation_id, &m.command_id, &m.tenant, &m.user})
    if (f->size() > max_short_field)
      return fail(errc::invalid_argument, "metadata fields are at most 255 bytes", req.stream);
  for (std::size_t i = 0; i < req.events.size(); ++i) {
    const auto& ev = req.events[i];
    auto ctx = [&] { return req.stream + " event " + std::to_string(i); }; // on failure only
    if (!is_valid_type_name(ev.type))
      return fail(errc::invalid_argument,
                  "event type names are 1-255 printable bytes without spaces", ctx());
    if (ev.schema_version == 0)
      return fail(errc::invalid_argument, "schema versions start at 1", ctx());
    if (ev.payload.size() > opts.max_event_size)
      return fail(errc::invalid_argument,
                  "event of " + std::to_string(ev.payload.size())
                    + " bytes exceeds max_event_size " + std::to_string(opts.max_event_size),
                  ctx());
    if (opts.registry != nullptr && !opts.registry->can_decode(ev.type, ev.schema_version))
      return fail(errc::invalid_argument,
                  "unknown event type " + ev.type + " v" + std::to_string(ev.schema_version)
                    + " (not in the registry)",
                  ctx());
  }
  return {};
}

class lmdb_store final : public event_store {
public:
  static result<std::unique_ptr<event_store>> open(const std::string& dir,
                                                   const store_options& opts);

  ~lmdb_store() override {
    prealloc_.reset(); // before the lock file lets another writer in
    if (env_ != nullptr) {
      // Best effort: a clean close flushes what no_sync and append_batch_deferred left.
      if (!opts_.read_only
          && (opts_.durability != durability::sync || commits_.durable != commits_.last))
        (void) mdb_env_sync(env_, 1);
      mdb_env_close(env_);
    }
    if (lock_fd_ >= 0)
      ::close(lock_fd_);
    if (registered_)
      open_dirs::remove(*registered_);
  }

  result<append_result> append(const append_request& req) override {
    batch_view b;
    b.appends = {&req, 1};
    auto out = write(b, false);
    if (!out)
      return tl::unexpected(out.error());
    return std::move(out->front());
  }

  result<std::vector<result<append_result>>> append_batch(const write_batch& b) override {
    return write(view_of_batch(b), false);
  }

  result<std::vector<result<append_result>>> append_batch_deferred(const write_batch& b) override {
    return write(view_of_batch(b), true);
  }

  result<void> sync() override;

  commit_marks commits() const noexcept override { return commits_; }

  bool refuses_writes() const noexcept override {
    return broken_.has_value() || fatal_.load(std::memory_order_relaxed);
  }

  std::uint64_t stale_readers_cleared() const noexcept override {
    return stale_readers_.load(std::memory_order_relaxed);
  }

  result<void> save_snapshot(const snapshot& snap) override {
    batch_view b;
    b.snapshots = {&snap, 1};
    auto out = write(b, false);
    if (!out)
      return tl::unexpected(out.error());
    return {};
  }

  result<void> save_checkpoint(const checkpoint& cp) override {
    batch_view b;
    b.checkpoints = {&cp, 1};
    auto out = write(b, false);
    if (!out)
      return tl::unexpected(out.error());
    return {};
  }

  result<std::vector<recorded_event>> read_stream(std::string_view stream, std::uint64_t from,
                                                  std::size_t max) const override;
  result<std::uint64_t> visit_stream(
    std::string_view stream, std::uint64_t from, std::size_t max,
    const std::function<bool(const event_view&)>& visit) const override;
  result<std::vector<recorded_event>> read_stream_backward(std::string_view stream,
                                                           std::uint64_t from,
                                                           std::size_t max) const override;
  result<std::vector<recorded_event>> read_stream_until_time(std::string_view stream,
                                                             std::int64_t ts) const override;
  result<std::uint64_t> stream_version(std::string_view stream) const override;
  result<log_page> read_all(std::uint64_t from, std::size_t max,
                            const read_filter& filter) const override;
  result<std::optional<append_result>> find_command(std::string_view stream,
                                                    std::string_view command_id) const override;
  result<std::uint64_t> last_position() const override;
  result<std::vector<stream_info>> list_streams(std::string_view prefix,
                                                std::size_t max) const override;
  result<std::optional<snapshot>> load_snapshot(std::string_view stream,
                                                std::uint64_t max_version) const override;
  result<std::optional<std::uint64_t>> load_checkpoint(std::string_view name) const override;
  result<std::vector<checkpoint>> list_checkpoints() const override;
  result<std::vector<std::pair<std::string, std::uint32_t>>> type_catalogue() const override;
  result<std::optional<std::string>> kv_get(std::string_view space,
                                            std::string_view key) const override;
  result<std::vector<std::pair<std::string, std::string>>>
  kv_scan(std::string_view space, std::string_view prefix, std::string_view after,
          std::size_t max) const override;
  result<std::vector<dead_letter>> list_dead_letters(std::string_view subscriber,
                                                     std::size_t max) const override;
  result<std::uint64_t> count_dead_letters(std::string_view subscriber) const override;
  result<side_tables> read_side_tables() const override;
  result<store_stats> stats() const override;
  result<index_check>
  check_indexes(const std::function<void(std::uint64_t, std::string)>& problem) const override;
  result<void> copy_to(const std::string& dest_dir) const override;
  const std::string& path() const noexcept override { return dir_; }

private:
  template <class T>
  struct span {
    const T* data = nullptr;
    std::size_t size = 0;
    const T* begin() const { return data; }
    const T* end() const { return data + size; }
  };

  struct batch_view {
    span<append_request> appends;
    span<checkpoint> checkpoints;
    span<snapshot> snapshots;
    span<kv_op> kv;
    span<dead_letter> dead_letters;
    span<dead_letter_key> removals;
  };

  static batch_view view_of_batch(const write_batch& b) {
    batch_view v;
    v.appends = {b.appends.data(), b.appends.size()};
    v.checkpoints = {b.checkpoints.data(), b.checkpoints.size()};
    v.snapshots = {b.snapshots.data(), b.snapshots.size()};
    v.kv = {b.kv.data(), b.kv.size()};
    v.dead_letters = {b.dead_letters.data(), b.dead_letters.size()};
    v.removals = {b.dead_letter_removals.data(), b.dead_letter_removals.size()};
    return v;
  }

  /// Everything a write transaction changes before it commits; applied to the
  /// writer's caches only after the commit succeeds.
  struct staging {
    std::uint64_t serial = 0; ///< Tells this transaction's staged heads from stale ones.
    std::vector<head_cache::entry*> touched; // in staging order
    std::unordered_map<std::string, append_result> commands; // stream_no+command id
    std::set<std::pair<std::string, std::uint32_t>> new_types;
    std::uint64_t position = 0;
    std::uint64_t next_stream_no = 0;
  };

  lmdb_store(std::string dir, const store_options& opts) : dir_(std::move(dir)), opts_(opts) {
    std::random_device rd;
    rng_.seed((std::uint64_t{rd()} << 32) ^ rd());
  }

  result<void> init(bool create);
  /// Starts zero-filling ahead of the data (store_options::preallocate).
  void start_preallocation();
  /// Where the data's pages end in the file, in bytes.
  std::uint64_t data_end() const;
  result<void> grow_map();
  /// Clears the reader slots of dead processes; returns how many it cleared.
  std::uint64_t check_readers();
  /// Whether LMDB has stopped the environment (every transaction now fails
  /// with MDB_PANIC); remembers it in fatal_.
  bool panicked() const;
  /// After a failed write transaction (`rc`): makes the store refuse every
  /// later write when LMDB stopped or found its B-tree damaged.
  void note_write_failure(int rc, const error& err);

  /// `defer`: leave the commit's meta page unflushed (append_batch_deferred).
  result<std::vector<result<append_result>>> write(const batch_view& b, bool defer);
  /// Learns the commit's number after a successful write transaction.
  result<void> after_commit(bool defer);
  /// One attempt at a write transaction: 0, or the LMDB code that stopped it.
  int try_write(const batch_view& b, std::vector<result<append_result>>& out, error& err);
  /// Removes every key of a key-value space.
  int clear_space(MDB_txn* txn, std::string_view space, error& err);
  int stage_append(MDB_txn* txn, const append_request& req, staging& st, std::int64_t now,
                   result<append_result>& out);
  int stage_snapshot(MDB_txn* txn, const snapshot& snap, staging& st, error& err);
  /// Writes (stream number, last position) heads, one read-modify-write per
  /// bucket touched; for a stream listed twice, the higher position wins.
  int write_heads(MDB_txn* txn, head_pairs& heads,
                  error& err);
  /// The writer's view of a stream head: staged, cached or stored.
  int writer_head(MDB_txn* txn, std::string_view stream, staging& st, head_state*& out,
                  error& err);

  /// Runs `f(txn)` in a read transaction.
  template <class F>
  auto with_read(F&& f) const -> decltype(f(static_cast<MDB_txn*>(nullptr)));

  /// A stream's head as `txn` sees it. The writer knows the heads changed
  /// since the last heads rewrite (`unflushed_`); readers find them through
  /// the head log (`tail_position`).
  result<std::optional<head_state>> read_head(MDB_txn* txn, std::string_view stream,
                                              bool writer = false) const;
  /// The position of the last event of `stream_no` among the commits after
  /// the heads rewrite that `txn` sees, or 0 when it has none there.
  result<std::uint64_t> tail_position(MDB_txn* txn, std::uint64_t stream_no) const;
  /// The heads changed by the commit whose head-log entry is (`key`, `value`),
  /// as (stream number, position) pairs: from the entry, or, when it fails its
  /// checksum, from the log records after `prev_key`, the previous entry.
  result<head_pairs>
  head_log_entry(MDB_txn* txn, std::uint64_t prev_key, std::uint64_t key,
                 std::string_view value) const;
  /// Calls `visit(key, pairs)` for each head-log entry in (`after`, `upto`].
  template <class F>
  result<void> scan_head_log(MDB_txn* txn, std::uint64_t after, std::uint64_t upto,
                             F&& visit) const;
  /// The log position up to which the heads table is complete, as `txn` sees it.
  result<std::uint64_t> read_heads_at(MDB_txn* txn) const;
  /// Walks the back-pointer chain of `stream` from version `top` down to
  /// `bottom`, calling `emit` for versions in [bottom, keep_top].
  template <class F>
  result<void> walk(MDB_txn* txn, std::string_view stream, const head_state& head,
                    std::uint64_t top, std::uint64_t keep_top, std::uint64_t bottom,
                    F&& emit) const;

  std::string dir_;
  store_options opts_;
  MDB_env* env_ = nullptr;
  MDB_dbi log_ = 0, names_ = 0, heads_ = 0, index_ = 0, commands_ = 0, snapshots_ = 0,
          checkpoints_ = 0, types_ = 0, meta_ = 0, kv_ = 0, dead_letters_ = 0;
  /// False when a read-only open found a store written before the key-value
  /// and dead-letter tables existed: those reads see empty tables.
  bool has_side_tables_ = true;
  /// False when a read-only open found a format 1 store: its heads table is
  /// complete, there is no head log.
  bool has_head_log_ = true;
  MDB_dbi head_log_ = 0;
  std::uint32_t format_version_ = current_version; ///< as opened (after any upgrade)

  /// Readers' index of the head log: for each stream changed since the heads
  /// rewrite at `base`, the positions its commits left it at, ascending. Built
  /// from the head log as readers need it, so it serves read-only processes
  /// too; positions are kept per commit so a reader whose snapshot ends before
  /// the newest scanned commit still finds its own head.
  struct tail_index {
    std::uint64_t base = 0;       ///< heads_at this index builds on
    std::uint64_t scanned_to = 0; ///< key of the last head-log entry indexed
    std::unordered_map<std::uint64_t, std::vector<std::uint64_t>> positions;
  };
  mutable std::mutex tail_mu_;
  mutable tail_index tail_;
  int lock_fd_ = -1;
  /// The directory's entry in open_dirs, once made.
  std::optional<open_dirs::key> registered_;
  /// Shared by every transaction of this process; unique while the map is
  /// resized, which LMDB allows only with no transaction in flight.
  mutable std::shared_mutex remap_;
  std::size_t map_size_ = 0;

  // Writer-only state.
  std::unique_ptr<detail::preallocator> prealloc_; ///< null when off
  commit_marks commits_;
  /// Set when a flush failed or LMDB stopped: every later write fails with it.
  std::optional<error> broken_;
  /// Set when LMDB stopped the environment (MDB_PANIC: a meta page write
  /// failed). Every transaction then fails, so reads report `unavailable`.
  mutable std::atomic<bool> fatal_{false};
  /// Reader slots of dead processes cleared since the open.
  std::atomic<std::uint64_t> stale_readers_{0};
  std::uint64_t commits_since_reader_check_ = 0;
  std::chrono::steady_clock::time_point last_reader_check_;
  std::uint64_t last_position_ = 0;
  std::uint64_t next_stream_no_ = 1;
  /// Every stream the writer has looked up, including ones found absent
  /// (stream_no 0): the flock makes this process the only writer, so the
  /// cache is never stale.
  head_cache head_cache_;
  std::uint64_t txn_serial_ = 0;
  std::set<std::pair<std::string, std::uint32_t>> known_types_;
  std::string last_type_; ///< The last appended type known to the catalogue.
  std::uint32_t last_type_version_ = 0;
  splitmix64 rng_;
  /// Log position up to which the heads table is complete.
  std::uint64_t heads_at_ = 0;
  /// Stream number -> last position, for streams appended to after heads_at_.
  std::unordered_map<std::uint64_t, std::uint64_t> unflushed_;
};

// -- open ------------------------------------------------------------------------

result<std::unique_ptr<event_store>> lmdb_store::open(const std::string& dir,
                                                      const store_options& opts) {
  if (dir.empty())
    return fail(errc::invalid_argument, "empty store directory");
  if (opts.initial_map_size == 0 || opts.initial_map_size > opts.max_map_size)
    return fail(errc::invalid_argument, "initial_map_size must be in (0, max_map_size]", dir);
  if (opts.map_growth_step == 0)
    return fail(errc::invalid_argument, "map_growth_step must be positive", dir);
  if (opts.max_event_size == 0 || opts.max_event_size > (std::size_t{1} << 30))
    return fail(errc::invalid_argument, "max_event_size must be in (0, 1 GiB]", dir);
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
  if (opts.read_only && !has_data)
    return fail(errc::invalid_argument, "no cairn store here (no data.mdb)", dir);
  if (!exists) {
    if (ec = make_private_dirs(fs::path(dir).lexically_normal()); ec)
      return fail(errc::unavailable, "cannot create the directory: " + ec.message(), dir);
  }
  std::unique_ptr<lmdb_store> store{new lmdb_store(dir, opts)};
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
  store->registered_ = dir_key;
  if (!opts.read_only) {
    auto lock_path = (fs::path(dir) / lock_file_name).string();
    store->lock_fd_ = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, file_mode);
    if (store->lock_fd_ < 0)
      return fail(errc::unavailable, std::string{"cannot open the lock file: "} + strerror(errno),
                  lock_path);
    if (::flock(store->lock_fd_, LOCK_EX | LOCK_NB) != 0)
      return fail(errc::unavailable,
                  "the store is already open for writing (by this or another process)", dir);
  }
  if (auto ok = store->init(!has_data); !ok)
    return tl::unexpected(ok.error());
  store->start_preallocation();
  return std::unique_ptr<event_store>{std::move(store)};
}

result<void> lmdb_store::init(bool create) {
  if (int rc = mdb_env_create(&env_); rc != 0)
    return tl::unexpected(lmdb_error(rc, "mdb_env_create"));
  (void) mdb_env_set_maxdbs(env_, 16);
  (void) mdb_env_set_maxreaders(env_, opts_.max_readers);
  if (!opts_.read_only)
    (void) mdb_env_set_mapsize(env_, opts_.initial_map_size);
  unsigned flags = MDB_NOTLS;
  if (opts_.read_only)
    flags |= MDB_RDONLY;
  // Under `sync` as well: the store flushes the meta page itself (after_commit),
  // so that append_batch_deferred can leave it to the next commit.
  if (opts_.durability != durability::no_sync)
    flags |= MDB_NOMETASYNC;
  if (opts_.durability == durability::no_sync)
    flags |= MDB_NOSYNC;
  if (int rc = mdb_env_open(env_, dir_.c_str(), flags, file_mode); rc != 0) {
    auto err = lmdb_error(rc, "mdb_env_open");
    err.context = dir_;
    if (rc == MDB_INVALID || rc == MDB_VERSION_MISMATCH)
      err = error{errc::invalid_argument, "not a cairn store (data.mdb is not an LMDB file)", dir_};
    return tl::unexpected(err);
  }
  (void) check_readers(); // slots left by killed readers
  MDB_envinfo info;
  mdb_env_info(env_, &info);
  map_size_ = info.me_mapsize;

  MDB_txn* raw = nullptr;
  if (int rc = mdb_txn_begin(env_, nullptr, opts_.read_only ? MDB_RDONLY : 0, &raw); rc != 0)
    return tl::unexpected(lmdb_error(rc, "begin"));
  txn_guard txn{raw};
  if (!create) {
    // A crash during creation can leave an LMDB file with no tables: still new.
    MDB_stat st;
    MDB_dbi main_dbi = 0;
    if (mdb_dbi_open(raw, nullptr, 0, &main_dbi) == 0 && mdb_stat(raw, main_dbi, &st) == 0
        && st.ms_entries == 0 && !opts_.read_only)
      create = true;
  }
  unsigned dbi_flags = create ? MDB_CREATE : 0;
  struct named {
    const char* name;
    MDB_dbi* dbi;
  };
  for (auto [name, dbi] : {named{"meta", &meta_}, named{"log", &log_}, named{"stream_names", &names_},
                           named{"heads", &heads_}, named{"stream_index", &index_},
                           named{"commands", &commands_}, named{"snapshots", &snapshots_},
                           named{"checkpoints", &checkpoints_}, named{"types", &types_}}) {
    int rc = mdb_dbi_open(raw, name, dbi_flags, dbi);
    if (rc == MDB_NOTFOUND || rc == MDB_INCOMPATIBLE)
      return fail(errc::invalid_argument,
                  std::string{"not a cairn store (no '"} + name + "' table in data.mdb)", dir_);
    if (rc != 0)
      return tl::unexpected(lmdb_error(rc, std::string{"open table "} + name));
  }
  // Added after the first stores were written: created on a writable open.
  for (auto [name, dbi] : {named{"kv", &kv_}, named{"dead_letters", &dead_letters_}}) {
    int rc = mdb_dbi_open(raw, name, opts_.read_only ? 0 : MDB_CREATE, dbi);
    if (rc == MDB_NOTFOUND && opts_.read_only) {
      has_side_tables_ = false;
      continue;
    }
    if (rc != 0)
      return tl::unexpected(lmdb_error(rc, std::string{"open table "} + name));
  }
  // Format 2: a format 1 store gets it on a writable open (below).
  if (int rc = mdb_dbi_open(raw, "head_log", opts_.read_only ? 0 : MDB_CREATE, &head_log_);
      rc == MDB_NOTFOUND && opts_.read_only)
    has_head_log_ = false;
  else if (rc != 0)
    return tl::unexpected(lmdb_error(rc, "open table head_log"));
  std::uint32_t stored_version = current_version;
  const std::string format_key = "format";
  if (create) { // format and heads_at are written below, as for an upgrade
    std::string id(16, '\0');
    for (auto& c : id)
      c = static_cast<char>(rng_());
    std::string store_id_key = "store_id";
    auto sid = seal(store_id_key, id);
    MDB_val k = val_of(store_id_key), v = val_of(sid);
    if (int rc = mdb_put(raw, meta_, &k, &v, 0); rc != 0)
      return tl::unexpected(lmdb_error(rc, "write meta"));
  } else {
    MDB_val k = val_of(format_key), v;
    if (mdb_get(raw, meta_, &k, &v) != 0)
      return fail(errc::invalid_argument, "not a cairn store (no format version)", dir_);
    auto body = unseal(format_key, view_of(v), "the format version");
    if (!body)
      return tl::unexpected(body.error());
    if (body->size() != 4)
      return fail(errc::corrupted, "the format version has the wrong size", dir_);
    auto version = get_le<std::uint32_t>(reinterpret_cast<const unsigned char*>(body->data()));
    stored_version = version;
    if (version > current_version)
      return fail(errc::invalid_argument,
                  "the store has format version " + std::to_string(version)
                    + ", newer than this cairn reads (" + std::to_string(current_version)
                    + "); use a newer cairn",
                  dir_);
  }
  // Writer state: last position, next stream number, type catalogue.
  {
    cursor_guard cur;
    MDB_val k, v;
    if (int rc = cur.open(raw, log_); rc != 0)
      return tl::unexpected(lmdb_error(rc, "cursor"));
    if (mdb_cursor_get(cur.get(), &k, &v, MDB_LAST) == 0)
      last_position_ = get_be64(static_cast<const unsigned char*>(k.mv_data));
  }
  {
    cursor_guard cur;
    MDB_val k, v;
    if (int rc = cur.open(raw, heads_); rc != 0)
      return tl::unexpected(lmdb_error(rc, "cursor"));
    if (mdb_cursor_get(cur.get(), &k, &v, MDB_LAST) == 0) {
      auto key = view_of(k);
      auto bucket = unseal(key, view_of(v), "the last heads bucket");
      if (!bucket)
        return tl::unexpected(bucket.error());
      if (key.size() != 8 || bucket->size() != head_bucket_size)
        return fail(errc::corrupted, "the last heads bucket has the wrong size", dir_);
      // Every stored stream has version >= 1, so the highest used slot ends the numbering.
      auto base = get_be64(reinterpret_cast<const unsigned char*>(key.data())) * heads_per_bucket;
      for (std::uint64_t i = 0; i < heads_per_bucket; ++i)
        if (get_le<std::uint64_t>(reinterpret_cast<const unsigned char*>(bucket->data())
                                  + i * head_slot_size)
            != 0)
          next_stream_no_ = base + i + 1;
    }
  }
  // Heads: a format 1 store's heads table is complete; a writable open makes
  // it format 2 with an empty head log. The writer reads the head log once.
  if (stored_version < 2 && opts_.read_only) {
    has_head_log_ = false;
    format_version_ = stored_version;
  } else if (!has_head_log_) {
    return fail(errc::corrupted, "a format 2 store without its head_log table", dir_);
  }
  if (!opts_.read_only) {
    if (create || stored_version < 2) {
      auto current_format =
        seal(format_key, std::string_view{reinterpret_cast<const char*>(&current_version),
                                          sizeof current_version});
      auto at = seal(heads_at_key, u64_body(last_position_));
      MDB_val fk = val_of(format_key), fv = val_of(current_format);
      MDB_val ak = val_of(heads_at_key), av = val_of(at);
      if (int rc = mdb_put(raw, meta_, &fk, &fv, 0); rc != 0)
        return tl::unexpected(lmdb_error(rc, "write meta"));
      if (int rc = mdb_put(raw, meta_, &ak, &av, 0); rc != 0)
        return tl::unexpected(lmdb_error(rc, "write meta"));
      heads_at_ = last_position_;
    } else {
      auto at = read_heads_at(raw);
      if (!at)
        return tl::unexpected(at.error());
      heads_at_ = *at;
    }
    std::uint64_t highest = 0;
    auto scanned = scan_head_log(raw, heads_at_, no_limit, [&](std::uint64_t, const auto& pairs) {
      for (auto [no, pos] : pairs) {
        unflushed_[no] = pos;
        highest = std::max(highest, no);
      }
    });
    if (!scanned)
      return tl::unexpected(scanned.error());
    next_stream_no_ = std::max(next_stream_no_, highest + 1);
  }
  {
    cursor_guard cur;
    MDB_val k, v;
    if (int rc = cur.open(raw, types_); rc != 0)
      return tl::unexpected(lmdb_error(rc, "cursor"));
    for (int rc = mdb_cursor_get(cur.get(), &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur.get(), &k, &v, MDB_NEXT)) {
      auto key = view_of(k);
      if (key.size() < 5 || key[key.size() - 5] != '\0'
          || !unseal(key, view_of(v), "type catalogue entry"))
        return fail(errc::corrupted, "bad type catalogue entry", dir_);
      auto* vb = reinterpret_cast<const unsigned char*>(key.data() + key.size() - 4);
      std::uint32_t ver = std::uint32_t{vb[0]} << 24 | std::uint32_t{vb[1]} << 16
                          | std::uint32_t{vb[2]} << 8 | vb[3];
      known_types_.emplace(std::string{key.substr(0, key.size() - 5)}, ver);
    }
  }
  if (opts_.registry != nullptr && !opts_.allow_unknown_types) {
    std::vector<std::pair<std::string, std::uint32_t>> cat(known_types_.begin(),
                                                           known_types_.end());
    if (auto ok = opts_.registry->check_decodable(cat); !ok) {
      auto err = ok.error();
      err.context = dir_;
      return tl::unexpected(err);
    }
  }
  if (int rc = txn.commit(); rc != 0)
    return tl::unexpected(lmdb_error(rc, "commit at open"));
  if (opts_.read_only)
    return {};
  return after_commit(false);
}

void lmdb_store::start_preallocation() {
  if (opts_.read_only || opts_.durability == durability::no_sync || opts_.preallocate == 0)
    return;
  prealloc_ = detail::preallocator::start((fs::path(dir_) / "data.mdb").string(), data_end(),
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
                    err.message + "; commits since the last flush may be lost on a power loss, "
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

void lmdb_store::note_write_failure(int rc, const error& err) {
  bool stopped = rc == MDB_PANIC || (rc > 0 && panicked());
  if (stopped)
    fatal_.store(true, std::memory_order_relaxed);
  if (broken_)
    return;
  if (stopped) {
    broken_ = error{errc::unavailable,
                    err.message + "; LMDB stopped the store (MDB_PANIC, a failed meta page "
                                  "write): it takes no more writes or reads until it is reopened",
                    dir_};
  } else if (rc == MDB_CORRUPTED || rc == MDB_PAGE_NOTFOUND) {
    broken_ = error{errc::corrupted,
                    err.message + "; a damaged B-tree page: the store takes no more writes, "
                                  "so the damage does not spread (run cairn verify)",
                    dir_};
  }
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

// -- writes ----------------------------------------------------------------------

result<std::vector<result<append_result>>>
lmdb_store::write(const batch_view& b, bool defer) {
  if (opts_.read_only)
    return fail(errc::invalid_argument, "the store is open read-only", dir_);
  if (broken_)
    return tl::unexpected(*broken_);
  for (const auto& op : b.kv) {
    if (!is_valid_space_name(op.space))
      return fail(errc::invalid_argument, "key-value space names are 1-255 bytes without a 0 byte",
                  op.space);
    if (op.op != kv_op::kind::clear && (op.key.empty() || op.key.size() > max_short_field))
      return fail(errc::invalid_argument, "keys are 1-255 bytes", op.space + "/" + op.key);
    if (op.value.size() > opts_.max_event_size)
      return fail(errc::invalid_argument,
                  "value of " + std::to_string(op.value.size()) + " bytes exceeds max_event_size "
                    + std::to_string(opts_.max_event_size),
                  op.space + "/" + op.key);
  }
  for (const auto& dl : b.dead_letters) {
    if (!is_valid_space_name(dl.subscriber) || dl.position == 0)
      return fail(errc::invalid_argument,
                  "a dead letter needs a subscriber name of 1-255 bytes without a 0 byte and a "
                  "position >= 1",
                  dl.subscriber);
    if (dl.stream.size() > max_short_field || dl.type.size() > max_short_field
        || dl.error.size() > max_dead_letter_error)
      return fail(errc::invalid_argument,
                  "a dead letter's stream and type are at most 255 bytes, its error at most "
                    + std::to_string(max_dead_letter_error),
                  dl.subscriber);
  }
  for (const auto& key : b.removals)
    if (!is_valid_space_name(key.subscriber))
      return fail(errc::invalid_argument, "subscriber names are 1-255 bytes without a 0 byte",
                  key.subscriber);
  for (const auto& cp : b.checkpoints)
    if (cp.name.empty() || cp.name.size() > max_short_field)
      return fail(errc::invalid_argument, "checkpoint names are 1-255 bytes", cp.name);
  for (const auto& s : b.snapshots) {
    if (auto ok = validate_stream_name(s.stream); !ok)
      return tl::unexpected(ok.error());
    if (s.version == 0 || s.schema_version == 0 || !is_valid_type_name(s.state_type))
      return fail(errc::invalid_argument,
                  "a snapshot needs a version >= 1, a schema version >= 1 and a state type of "
                  "1-255 printable bytes without spaces",
                  s.stream);
    if (s.data.size() > opts_.max_snapshot_size)
      return fail(errc::invalid_argument,
                  "snapshot of " + std::to_string(s.data.size())
                    + " bytes exceeds max_snapshot_size " + std::to_string(opts_.max_snapshot_size),
                  s.stream);
  }
  std::vector<result<append_result>> out;
  for (;;) {
    out.assign(b.appends.size, result<append_result>{});
    error err;
    int rc = 0;
    try {
      rc = try_write(b, out, err);
    } catch (const std::exception& e) { // bad_alloc; the txn was aborted
      return fail(errc::internal, std::string{"write failed: "} + e.what(), dir_);
    }
    if (rc == 0) {
      if (++commits_since_reader_check_ >= reader_check_commits
          || std::chrono::steady_clock::now() - last_reader_check_ >= reader_check_period)
        (void) check_readers();
      if (auto ok = after_commit(defer); !ok)
        return tl::unexpected(ok.error());
      return out;
    }
    if (rc != MDB_MAP_FULL) {
      note_write_failure(rc, err);
      return tl::unexpected(broken_ ? *broken_ : err);
    }
    // Pages pinned by a dead reader's snapshot become free again: retry first.
    if (check_readers() > 0)
      continue;
    if (auto grown = grow_map(); !grown)
      return tl::unexpected(grown.error());
  }
}

int lmdb_store::try_write(const batch_view& b, std::vector<result<append_result>>& out,
                          error& err) {
  const auto& reqs = b.appends;
  // Held for the whole transaction, not only its commit: LMDB writes pages
  // before the commit too. A transaction that dirties more pages than its
  // dirty list holds (MDB_IDL_UM_MAX, 131072) spills some to the file
  // (mdb_page_spill), at page numbers past the last commit's end, where the
  // preallocator would otherwise write zeros over them.
  std::optional<detail::preallocator::guard> guard;
  if (prealloc_)
    guard.emplace(prealloc_.get());
  MDB_txn* raw = nullptr;
  if (int rc = mdb_txn_begin(env_, nullptr, 0, &raw); rc != 0) {
    err = lmdb_error(rc, "begin write");
    return rc;
  }
  txn_guard txn{raw};
  if (head_cache_.size() > head_cache_limit)
    head_cache_.clear(); // only here: staging points into the cache
  staging st;
  st.serial = ++txn_serial_;
  st.position = last_position_;
  st.next_stream_no = next_stream_no_;
  auto now = wall_now_ns();
  for (std::size_t i = 0; i < reqs.size; ++i) {
    if (auto ok = validate_request(reqs.data[i], opts_); !ok) {
      out[i] = tl::unexpected(ok.error());
      continue;
    }
    if (int rc = stage_append(raw, reqs.data[i], st, now, out[i]); rc != 0) {
      err = out[i] ? lmdb_error(rc, "append") : out[i].error();
      return rc;
    }
  }
  for (const auto& snap : b.snapshots)
    if (int rc = stage_snapshot(raw, snap, st, err); rc != 0)
      return rc;
  auto put = [&](MDB_dbi dbi, std::string_view key, std::string_view value, const char* what) {
    MDB_val k = val_of(key), v = val_of(value);
    int rc = mdb_put(raw, dbi, &k, &v, 0);
    if (rc != 0)
      err = lmdb_error(rc, what);
    return rc;
  };
  // Heads: the changed ones go to the head log, sequentially after the
  // previous commit's; every heads_flush_events events the heads table takes
  // them all in one rewrite and the head log starts over.
  head_pairs changed; // (stream no, last position)
  for (const auto* entry : st.touched)
    if (entry->second.staged.dirty)
      changed.emplace_back(entry->second.staged.stream_no, entry->second.staged.last_position);
  const bool rewrite_heads =
    !changed.empty() && st.position - heads_at_ >= opts_.heads_flush_events;
  if (rewrite_heads) {
    head_pairs heads;
    heads.reserve(unflushed_.size() + changed.size());
    for (auto [no, pos] : unflushed_)
      if (pos != 0) // 0: left by a failed commit, the table has the head
        heads.emplace_back(no, pos);
    heads.insert(heads.end(), changed.begin(), changed.end());
    if (int rc = write_heads(raw, heads, err); rc != 0)
      return rc;
    if (int rc = mdb_drop(raw, head_log_, 0); rc != 0) {
      err = lmdb_error(rc, "empty the head log");
      return rc;
    }
    if (int rc = put(meta_, heads_at_key, seal(heads_at_key, u64_body(st.position)),
                     "write heads_at");
        rc != 0)
      return rc;
  } else if (!changed.empty()) {
    std::string body(changed.size() * head_log_pair_size, '\0');
    auto* p = reinterpret_cast<unsigned char*>(body.data());
    for (auto [no, pos] : changed) {
      put_le(p, no);
      put_le(p + 8, pos);
      p += head_log_pair_size;
    }
    auto key = be64_key(st.position);
    auto value = seal(key, body);
    MDB_val k = val_of(key), v = val_of(value);
    if (int rc = mdb_put(raw, head_log_, &k, &v, MDB_APPEND); rc != 0) {
      err = lmdb_error(rc, "write head log");
      return rc;
    }
  }
  for (const auto* entry : st.touched) {
    const auto& [name, head] = *entry;
    if (!head.staged.dirty || head.committed.stream_no != 0)
      continue; // not new, or staged by a request that wrote nothing
    auto no = u64_body(head.staged.stream_no);
    if (int rc = put(names_, name, seal(name, no), "write stream name"); rc != 0)
      return rc;
  }
  for (const auto& [type, version] : st.new_types) {
    auto key = type_key(type, version);
    if (int rc = put(types_, key, seal(key, {}), "write type catalogue"); rc != 0)
      return rc;
  }
  for (const auto& op : b.kv) {
    if (op.op == kv_op::kind::clear) {
      if (int rc = clear_space(raw, op.space, err); rc != 0)
        return rc;
      continue;
    }
    auto key = space_key(op.space, op.key);
    if (op.op == kv_op::kind::put) {
      if (int rc = put(kv_, key, seal(key, op.value), "write key-value"); rc != 0)
        return rc;
      continue;
    }
    MDB_val k = val_of(key);
    if (int rc = mdb_del(raw, kv_, &k, nullptr); rc != 0 && rc != MDB_NOTFOUND) {
      err = lmdb_error(rc, "erase key-value");
      return rc;
    }
  }
  for (const auto& dl : b.dead_letters) {
    auto key = dead_letter_store_key(dl.subscriber, dl.position);
    if (int rc = put(dead_letters_, key, seal(key, encode_dead_letter(dl)), "write dead letter");
        rc != 0)
      return rc;
  }
  for (const auto& dk : b.removals) {
    auto key = dead_letter_store_key(dk.subscriber, dk.position);
    MDB_val k = val_of(key);
    if (int rc = mdb_del(raw, dead_letters_, &k, nullptr); rc != 0 && rc != MDB_NOTFOUND) {
      err = lmdb_error(rc, "remove dead letter");
      return rc;
    }
  }
  for (const auto& cp : b.checkpoints)
    if (int rc = put(checkpoints_, cp.name, seal(cp.name, u64_body(cp.position)),
                     "write checkpoint");
        rc != 0)
      return rc;
  // Allocate now what the caches need after the commit, so nothing after it
  // can throw: a commit must never be reported as failed, nor half-learned.
  // A 0 position means "in the heads table", which stays true if the commit fails.
  if (!rewrite_heads)
    for (auto [no, pos] : changed)
      unflushed_.try_emplace(no, 0);
  if (int rc = txn.commit(); rc != 0) {
    err = lmdb_error(rc, "commit");
    // An I/O error (a positive errno) may have come from the flush that was
    // to carry an unflushed meta page, and Linux reports such an error once:
    // a later flush may succeed without that page on the disk.
    if (rc > 0 && commits_.durable != commits_.last)
      broken_ = error{errc::unavailable,
                      err.message + " while earlier commits waited for their flush; they may "
                                    "be lost on a power loss, so the store takes no more "
                                    "writes: reopen it",
                      dir_};
    return rc;
  }
  if (guard) {
    guard->committed(data_end());
    guard.reset();
  }
  // Committed: now the writer's caches may learn about it, without allocating.
  last_position_ = st.position;
  next_stream_no_ = st.next_stream_no;
  for (auto* entry : st.touched) {
    auto& head = entry->second;
    if (!head.staged.dirty)
      continue;
    head.committed = head.staged;
    head.committed.dirty = false;
  }
  if (rewrite_heads) {
    unflushed_.clear();
    heads_at_ = st.position;
  } else {
    for (auto [no, pos] : changed)
      unflushed_.find(no)->second = pos;
  }
  known_types_.merge(st.new_types); // moves the nodes: no allocation
  return 0;
}

int lmdb_store::clear_space(MDB_txn* txn, std::string_view space, error& err) {
  cursor_guard cur;
  if (int rc = cur.open(txn, kv_); rc != 0) {
    err = lmdb_error(rc, "cursor");
    return rc;
  }
  auto prefix = space_key(space, {});
  MDB_val k = val_of(prefix), v;
  int rc = mdb_cursor_get(cur.get(), &k, &v, MDB_SET_RANGE);
  while (rc == 0 && view_of(k).substr(0, prefix.size()) == prefix) {
    if (rc = mdb_cursor_del(cur.get(), 0); rc != 0)
      break;
    k = val_of(prefix); // seek again: plain, where cursor state after a delete is subtle
    rc = mdb_cursor_get(cur.get(), &k, &v, MDB_SET_RANGE);
  }
  if (rc != 0 && rc != MDB_NOTFOUND) {
    err = lmdb_error(rc, "clear key-value space");
    return rc;
  }
  return 0;
}

int lmdb_store::write_heads(MDB_txn* txn,
                            head_pairs& heads,
                            error& err) {
  std::sort(heads.begin(), heads.end()); // by stream, then position: the last one wins
  std::string body(head_bucket_size, '\0');
  for (std::size_t i = 0; i < heads.size();) {
    auto bucket = bucket_of(heads[i].first);
    auto key = be64_key(bucket);
    MDB_val k = val_of(key), v;
    int rc = mdb_get(txn, heads_, &k, &v);
    if (rc == 0) {
      auto stored = unseal(key, view_of(v), "heads bucket " + std::to_string(bucket));
      if (!stored || stored->size() != head_bucket_size) {
        err = stored ? error{errc::corrupted, "heads bucket has the wrong size",
                             "bucket " + std::to_string(bucket)}
                     : stored.error();
        return MDB_CORRUPTED;
      }
      body.assign(stored->data(), stored->size());
    } else if (rc == MDB_NOTFOUND) {
      body.assign(head_bucket_size, '\0');
    } else {
      err = lmdb_error(rc, "read heads bucket");
      return rc;
    }
    for (; i < heads.size() && bucket_of(heads[i].first) == bucket; ++i)
      put_le(reinterpret_cast<unsigned char*>(body.data()) + slot_of(heads[i].first),
             heads[i].second);
    MDB_val out{seal_size + head_bucket_size, nullptr};
    if (rc = mdb_put(txn, heads_, &k, &out, MDB_RESERVE); rc != 0) {
      err = lmdb_error(rc, "write heads bucket");
      return rc;
    }
    auto* dst = static_cast<unsigned char*>(out.mv_data);
    std::memcpy(dst + seal_size, body.data(), body.size());
    put_le(dst, seal_checksum(key, body));
  }
  return 0;
}

int lmdb_store::writer_head(MDB_txn* txn, std::string_view stream, staging& st,
                            head_state*& out, error& err) {
  auto [it, inserted] = head_cache_.find_or_insert(stream);
  auto& entry = it->second;
  if (inserted) {
    auto stored = read_head(txn, stream, true);
    if (!stored) {
      head_cache_.erase_inserted(it);
      err = stored.error();
      return MDB_CORRUPTED;
    }
    if (*stored)
      entry.committed = **stored;
  }
  if (entry.staged_in != st.serial) {
    entry.staged = entry.committed;
    entry.staged_in = st.serial;
    st.touched.push_back(it);
  }
  out = &entry.staged;
  return 0;
}

int lmdb_store::stage_append(MDB_txn* txn, const append_request& req, staging& st,
                             std::int64_t now, result<append_result>& out) {
  error err;
  head_state* head = nullptr;
  if (int rc = writer_head(txn, req.stream, st, head, err); rc != 0) {
    out = tl::unexpected(err);
    return rc;
  }
  // A stream without a number has no events, so no command was recorded for it.
  const bool records_command = !req.meta.command_id.empty() && !req.events.empty();
  std::string cmd_key;
  if (records_command && head->stream_no != 0) {
    cmd_key = be64_key(head->stream_no) + req.meta.command_id;
    if (auto it = st.commands.find(cmd_key); it != st.commands.end()) {
      out = it->second;
      return 0;
    }
    if (head->version > 0) {
      MDB_val k = val_of(cmd_key), v;
      int rc = mdb_get(txn, commands_, &k, &v);
      if (rc == 0) {
        out = decode_outcome(cmd_key, view_of(v), req.stream);
        return 0;
      }
      if (rc != MDB_NOTFOUND) {
        out = tl::unexpected(lmdb_error(rc, "read command record"));
        return rc;
      }
    }
  }
  if (!req.expected.admits(head->version)) {
    out = fail(errc::conflict,
               "expected version " + req.expected.to_string() + ", actual "
                 + std::to_string(head->version),
               req.stream);
    return 0;
  }
  append_result r;
  r.first_version = head->version + 1;
  r.last_version = head->version + req.events.size();
  if (req.events.empty()) {
    out = r;
    return 0;
  }
  head->dirty = true;
  if (head->stream_no == 0) {
    // Numbered only now, so a new stream whose first append fails uses up no number.
    head->stream_no = st.next_stream_no++;
    if (records_command)
      cmd_key = be64_key(head->stream_no) + req.meta.command_id;
  }
  r.first_position = st.position + 1;
  for (const auto& ev : req.events) {
    record_fields f;
    f.version = ++head->version;
    f.prev_position = head->last_position;
    f.timestamp_ns = ev.timestamp_ns.value_or(now);
    if (ev.id) {
      f.id = *ev.id;
    } else {
      auto a = rng_(), b = rng_();
      std::memcpy(f.id.bytes.data(), &a, 8);
      std::memcpy(f.id.bytes.data() + 8, &b, 8);
    }
    auto pos = ++st.position;
    unsigned char kb[8];
    put_be64(kb, pos);
    MDB_val k{8, kb};
    MDB_val v{record_size(req.stream, ev, req.meta), nullptr};
    if (int rc = mdb_put(txn, log_, &k, &v, MDB_APPEND | MDB_RESERVE); rc != 0) {
      out = tl::unexpected(lmdb_error(rc, "write log record"));
      return rc;
    }
    encode_record(static_cast<unsigned char*>(v.mv_data), pos, req.stream, ev, req.meta, f);
    head->last_position = pos;
    if (f.version % index_interval == 0) {
      auto key = pair_key(head->stream_no, f.version);
      auto value = seal(key, u64_body(pos));
      MDB_val ik = val_of(key), iv = val_of(value);
      if (int rc = mdb_put(txn, index_, &ik, &iv, 0); rc != 0) {
        out = tl::unexpected(lmdb_error(rc, "write stream index"));
        return rc;
      }
    }
    // Most events repeat the previous type: skip the set (and its key copy).
    if (ev.schema_version != last_type_version_ || ev.type != last_type_) {
      if (known_types_.count({ev.type, ev.schema_version}) == 0)
        st.new_types.emplace(ev.type, ev.schema_version);
      else {
        last_type_ = ev.type;
        last_type_version_ = ev.schema_version;
      }
    }
  }
  r.last_position = st.position;
  if (!cmd_key.empty()) {
    auto value = seal(cmd_key, encode_outcome(r));
    MDB_val k = val_of(cmd_key), v = val_of(value);
    if (int rc = mdb_put(txn, commands_, &k, &v, 0); rc != 0) {
      out = tl::unexpected(lmdb_error(rc, "write command record"));
      return rc;
    }
    auto dup = r;
    dup.duplicate = true;
    st.commands.emplace(std::move(cmd_key), dup);
  }
  out = r;
  return 0;
}

int lmdb_store::stage_snapshot(MDB_txn* txn, const snapshot& snap, staging& st, error& err) {
  head_state* head = nullptr;
  if (int rc = writer_head(txn, snap.stream, st, head, err); rc != 0)
    return rc;
  if (snap.version > head->version) {
    err = error{errc::invalid_argument,
                "snapshot version " + std::to_string(snap.version)
                  + " is past the stream's version " + std::to_string(head->version),
                snap.stream};
    return EINVAL;
  }
  // body: schema version (u32 LE), state type length (u16 LE), state type, data
  std::string body(6, '\0');
  auto* p = reinterpret_cast<unsigned char*>(body.data());
  put_le(p, snap.schema_version);
  put_le(p + 4, static_cast<std::uint16_t>(snap.state_type.size()));
  body += snap.state_type;
  body += snap.data;
  auto key = pair_key(head->stream_no, snap.version);
  auto value = seal(key, body);
  MDB_val k = val_of(key), v = val_of(value);
  if (int rc = mdb_put(txn, snapshots_, &k, &v, 0); rc != 0) {
    err = lmdb_error(rc, "write snapshot");
    return rc;
  }
  // Keep the newest few: older ones go.
  cursor_guard cur;
  if (int rc = cur.open(txn, snapshots_); rc != 0) {
    err = lmdb_error(rc, "cursor");
    return rc;
  }
  auto last = pair_key(head->stream_no, no_limit);
  MDB_val ck = val_of(last), cv;
  int rc = mdb_cursor_get(cur.get(), &ck, &cv, MDB_SET_RANGE);
  rc = rc == 0 ? mdb_cursor_get(cur.get(), &ck, &cv, MDB_PREV)
               : mdb_cursor_get(cur.get(), &ck, &cv, MDB_LAST);
  int seen = 0;
  while (rc == 0 && ck.mv_size == 16
         && get_be64(static_cast<const unsigned char*>(ck.mv_data)) == head->stream_no) {
    if (++seen > snapshots_kept) {
      if (int drc = mdb_cursor_del(cur.get(), 0); drc != 0) {
        err = lmdb_error(drc, "prune snapshots");
        return drc;
      }
    }
    rc = mdb_cursor_get(cur.get(), &ck, &cv, MDB_PREV);
  }
  return 0;
}

// -- reads -----------------------------------------------------------------------

template <class F>
auto lmdb_store::with_read(F&& f) const -> decltype(f(static_cast<MDB_txn*>(nullptr))) {
  if (fatal_.load(std::memory_order_relaxed))
    return fail(errc::unavailable,
                "LMDB stopped the store after a failed write (MDB_PANIC): reopen it", dir_);
  std::shared_lock lock{remap_};
  MDB_txn* raw = nullptr;
  int rc = mdb_txn_begin(env_, nullptr, MDB_RDONLY, &raw);
  if (rc == MDB_MAP_RESIZED) {
    // Another process grew the map: adopt its size, then try again. Only a
    // read-only process gets here (the writer's flock excludes a second
    // writer), so no write transaction of ours can be open meanwhile.
    lock.unlock();
    {
      std::unique_lock grow{remap_};
      (void) mdb_env_set_mapsize(env_, 0);
    }
    lock.lock();
    rc = mdb_txn_begin(env_, nullptr, MDB_RDONLY, &raw);
  }
  if (rc == MDB_PANIC)
    fatal_.store(true, std::memory_order_relaxed);
  if (rc != 0)
    return tl::unexpected(lmdb_error(rc, "begin read"));
  txn_guard txn{raw};
  try {
    return f(raw);
  } catch (const std::exception& e) { // bad_alloc, or a caller's visitor
    return fail(errc::internal, std::string{"read failed: "} + e.what(), dir_);
  }
}

result<std::optional<head_state>> lmdb_store::read_head(MDB_txn* txn, std::string_view stream,
                                                        bool writer) const {
  MDB_val k = val_of(stream), v;
  int rc = mdb_get(txn, names_, &k, &v);
  if (rc == MDB_NOTFOUND)
    return std::optional<head_state>{};
  if (rc != 0)
    return tl::unexpected(lmdb_error(rc, "read stream name"));
  auto no = decode_u64(stream, view_of(v), "stream name entry of " + std::string{stream});
  if (!no)
    return tl::unexpected(no.error());
  head_state h{*no, 0, 0};
  if (writer) {
    if (auto it = unflushed_.find(*no); it != unflushed_.end())
      h.last_position = it->second;
  } else {
    auto tail = tail_position(txn, *no);
    if (!tail)
      return tl::unexpected(tail.error());
    h.last_position = *tail;
  }
  if (h.last_position == 0) { // not appended to since the heads rewrite: the table has it
    auto key = be64_key(bucket_of(*no));
    MDB_val hk = val_of(key), hv;
    rc = mdb_get(txn, heads_, &hk, &hv);
    if (rc == MDB_NOTFOUND)
      return fail(errc::corrupted, "stream has a name but no head", std::string{stream});
    if (rc != 0)
      return tl::unexpected(lmdb_error(rc, "read the head of " + std::string{stream}));
    auto body = unseal(key, view_of(hv), "heads bucket of " + std::string{stream});
    if (!body)
      return tl::unexpected(body.error());
    if (body->size() != head_bucket_size)
      return fail(errc::corrupted, "heads bucket has the wrong size", std::string{stream});
    h.last_position =
      get_le<std::uint64_t>(reinterpret_cast<const unsigned char*>(body->data()) + slot_of(*no));
  }
  if (h.last_position == 0)
    return fail(errc::corrupted, "stream has a name but an empty head", std::string{stream});
  // The version lives in the last record; its checksum and name vouch for the head.
  unsigned char kb[8];
  put_be64(kb, h.last_position);
  MDB_val lk{8, kb}, lv;
  if (int lrc = mdb_get(txn, log_, &lk, &lv); lrc == MDB_NOTFOUND)
    return fail(errc::corrupted, "head points at a missing log record",
                "position " + std::to_string(h.last_position));
  else if (lrc != 0)
    return tl::unexpected(lmdb_error(lrc, "read the last record of " + std::string{stream}));
  auto rec = decode_record(static_cast<const unsigned char*>(lv.mv_data), lv.mv_size,
                           h.last_position);
  if (!rec)
    return tl::unexpected(rec.error());
  if (rec->stream != stream)
    return fail(errc::corrupted,
                "head of " + std::string{stream} + " points at an event of "
                  + std::string{rec->stream},
                "position " + std::to_string(h.last_position));
  h.version = rec->version;
  return std::optional<head_state>{h};
}

result<std::uint64_t> lmdb_store::read_heads_at(MDB_txn* txn) const {
  MDB_val k = val_of(heads_at_key), v;
  if (int rc = mdb_get(txn, meta_, &k, &v); rc == MDB_NOTFOUND)
    return fail(errc::corrupted, "a format 2 store without heads_at", dir_);
  else if (rc != 0)
    return tl::unexpected(lmdb_error(rc, "read heads_at"));
  return decode_u64(heads_at_key, view_of(v), "heads_at");
}

result<head_pairs>
lmdb_store::head_log_entry(MDB_txn* txn, std::uint64_t prev_key, std::uint64_t key,
                           std::string_view value) const {
  if (auto decoded = decode_head_log(key, value))
    return std::move(*decoded);
  // Damaged: the commit's log records say the same, each verified.
  head_pairs pairs;
  cursor_guard cur;
  if (int rc = cur.open(txn, log_); rc != 0)
    return tl::unexpected(lmdb_error(rc, "cursor"));
  for (auto pos = prev_key + 1; pos <= key; ++pos) {
    unsigned char kb[8];
    put_be64(kb, pos);
    MDB_val lk{8, kb}, lv;
    if (int rc = mdb_cursor_get(cur.get(), &lk, &lv, MDB_SET_KEY); rc != 0)
      return rc == MDB_NOTFOUND
               ? fail(errc::corrupted, "the head log entry at position " + std::to_string(key)
                                         + " fails its checksum and a log record is missing",
                      "position " + std::to_string(pos))
               : tl::unexpected(lmdb_error(rc, "read log"));
    auto rec = decode_record(static_cast<const unsigned char*>(lv.mv_data), lv.mv_size, pos);
    if (!rec)
      return tl::unexpected(rec.error());
    MDB_val nk = val_of(rec->stream), nv;
    if (int rc = mdb_get(txn, names_, &nk, &nv); rc != 0)
      return rc == MDB_NOTFOUND
               ? fail(errc::corrupted, "an event of a stream without a name entry",
                      "position " + std::to_string(pos))
               : tl::unexpected(lmdb_error(rc, "read stream name"));
    auto no = decode_u64(rec->stream, view_of(nv), "stream name entry of " + std::string{rec->stream});
    if (!no)
      return tl::unexpected(no.error());
    pairs.emplace_back(*no, pos); // several per stream: positions ascend, the last counts
  }
  return pairs;
}

template <class F>
result<void> lmdb_store::scan_head_log(MDB_txn* txn, std::uint64_t after, std::uint64_t upto,
                                       F&& visit) const {
  cursor_guard cur;
  if (int rc = cur.open(txn, head_log_); rc != 0)
    return tl::unexpected(lmdb_error(rc, "cursor"));
  auto start = be64_key(after + 1);
  MDB_val k = val_of(start), v;
  std::uint64_t prev = after;
  int rc = mdb_cursor_get(cur.get(), &k, &v, MDB_SET_RANGE);
  for (; rc == 0; rc = mdb_cursor_get(cur.get(), &k, &v, MDB_NEXT)) {
    if (k.mv_size != 8)
      return fail(errc::corrupted, "a head log key of the wrong size", dir_);
    auto key = get_be64(static_cast<const unsigned char*>(k.mv_data));
    if (key > upto)
      break;
    auto pairs = head_log_entry(txn, prev, key, view_of(v));
    if (!pairs)
      return tl::unexpected(pairs.error());
    visit(key, *pairs);
    prev = key;
  }
  if (rc != 0 && rc != MDB_NOTFOUND)
    return tl::unexpected(lmdb_error(rc, "read head log"));
  return {};
}

result<std::uint64_t> lmdb_store::tail_position(MDB_txn* txn, std::uint64_t stream_no) const {
  if (!has_head_log_) {
    // Format 1 when opened. Its heads table is complete unless a writer has
    // since upgraded the store, which the heads_at entry tells.
    MDB_val k = val_of(heads_at_key), v;
    if (mdb_get(txn, meta_, &k, &v) == 0)
      return fail(errc::unavailable,
                  "a writer upgraded this store to format 2 after it was opened read-only; "
                  "reopen it",
                  dir_);
    return 0;
  }
  std::uint64_t last = 0; // the last head-log entry this snapshot has
  {
    cursor_guard cur;
    if (int rc = cur.open(txn, head_log_); rc != 0)
      return tl::unexpected(lmdb_error(rc, "cursor"));
    MDB_val k, v;
    int rc = mdb_cursor_get(cur.get(), &k, &v, MDB_LAST);
    if (rc == MDB_NOTFOUND)
      return 0; // the heads table is complete in this snapshot
    if (rc != 0)
      return tl::unexpected(lmdb_error(rc, "read head log"));
    if (k.mv_size != 8)
      return fail(errc::corrupted, "a head log key of the wrong size", dir_);
    last = get_be64(static_cast<const unsigned char*>(k.mv_data));
  }
  auto heads_at = read_heads_at(txn);
  if (!heads_at)
    return tl::unexpected(heads_at.error());
  auto latest_at_most = [last](const std::vector<std::uint64_t>& positions) -> std::uint64_t {
    auto it = std::upper_bound(positions.begin(), positions.end(), last);
    return it == positions.begin() ? 0 : *std::prev(it);
  };
  std::unique_lock lock{tail_mu_};
  if (tail_.base < *heads_at) { // the heads were rewritten since the index was built
    tail_.positions.clear();
    tail_.base = tail_.scanned_to = *heads_at;
  }
  if (tail_.base > *heads_at) {
    // This snapshot predates the rewrite the index builds on: read its own head log.
    lock.unlock();
    std::uint64_t found = 0;
    auto scanned = scan_head_log(txn, *heads_at, last, [&](std::uint64_t, const auto& pairs) {
      for (auto [no, pos] : pairs)
        if (no == stream_no)
          found = pos;
    });
    if (!scanned)
      return tl::unexpected(scanned.error());
    return found;
  }
  if (tail_.scanned_to < last) {
    auto scanned =
      scan_head_log(txn, tail_.scanned_to, last, [&](std::uint64_t key, const auto& pairs) {
        for (auto [no, pos] : pairs)
          tail_.positions[no].push_back(pos);
        tail_.scanned_to = key;
      });
    if (!scanned)
      return tl::unexpected(scanned.error());
  }
  auto it = tail_.positions.find(stream_no);
  return it == tail_.positions.end() ? 0 : latest_at_most(it->second);
}

template <class F>
result<void> lmdb_store::walk(MDB_txn* txn, std::string_view stream, const head_state& head,
                              std::uint64_t top, std::uint64_t keep_top, std::uint64_t bottom,
                              F&& emit) const {
  // Start at the nearest sparse index entry at or above `top`, or at the head.
  std::uint64_t version = head.version;
  std::uint64_t pos = head.last_position;
  auto anchor = (top + index_interval - 1) / index_interval * index_interval;
  if (anchor < head.version) {
    auto key = pair_key(head.stream_no, anchor);
    MDB_val k = val_of(key), v;
    int rc = mdb_get(txn, index_, &k, &v);
    if (rc != 0)
      return fail(errc::corrupted, "stream index entry missing for version "
                                     + std::to_string(anchor), std::string{stream});
    auto p = decode_u64(key, view_of(v), "stream index entry of " + std::string{stream});
    if (!p)
      return tl::unexpected(p.error());
    version = anchor;
    pos = *p;
  }
  cursor_guard cur;
  if (int rc = cur.open(txn, log_); rc != 0)
    return tl::unexpected(lmdb_error(rc, "cursor"));
  unsigned char kb[8];
  std::uint64_t at = 0; // where the cursor stands
  for (; version >= bottom && version > 0; --version) {
    if (pos == 0)
      return fail(errc::corrupted, "back-pointer chain ends at version " + std::to_string(version),
                  std::string{stream});
    put_be64(kb, pos);
    MDB_val k{8, kb}, v;
    // A stream written alone is contiguous in the log: step the cursor back.
    // Otherwise MDB_SET, which on an initialised cursor searches the current
    // page first, so neighbouring positions cost no tree descent.
    int rc = at == pos + 1 ? mdb_cursor_get(cur.get(), &k, &v, MDB_PREV)
                           : mdb_cursor_get(cur.get(), &k, &v, MDB_SET);
    if (rc == 0 && (k.mv_size != 8 || get_be64(static_cast<const unsigned char*>(k.mv_data)) != pos))
      rc = MDB_NOTFOUND;
    at = pos;
    if (rc != 0)
      return fail(errc::corrupted, "log record missing", "position " + std::to_string(pos));
    auto rec = decode_record(static_cast<const unsigned char*>(v.mv_data), v.mv_size, pos);
    if (!rec)
      return tl::unexpected(rec.error());
    if (rec->stream != stream || rec->version != version)
      return fail(errc::corrupted,
                  "back-pointer leads to " + std::string{rec->stream} + " v"
                    + std::to_string(rec->version) + " instead of " + std::string{stream} + " v"
                    + std::to_string(version),
                  "position " + std::to_string(pos));
    if (version <= keep_top)
      if (!emit(*rec, pos))
        break;
    pos = rec->prev_position;
  }
  return {};
}

result<std::vector<recorded_event>> lmdb_store::read_stream(std::string_view stream,
                                                            std::uint64_t from,
                                                            std::size_t max) const {
  std::vector<recorded_event> out;
  auto visited = visit_stream(stream, from, max, [&](const event_view& v) {
    auto& e = out.emplace_back();
    e.stream.assign(v.stream);
    e.version = v.version;
    e.position = v.position;
    std::memcpy(e.id.bytes.data(), v.id, 16);
    e.timestamp_ns = v.timestamp_ns;
    e.type.assign(v.type);
    e.schema_version = v.schema_version;
    e.meta = metadata{std::string{v.correlation_id}, std::string{v.causation_id},
                      std::string{v.command_id}, std::string{v.tenant}, std::string{v.user}};
    e.payload.assign(v.payload);
    return true;
  });
  if (!visited)
    return tl::unexpected(visited.error());
  return out;
}

result<std::uint64_t>
lmdb_store::visit_stream(std::string_view stream, std::uint64_t from, std::size_t max,
                         const std::function<bool(const event_view&)>& visit) const {
  if (auto ok = validate_stream_name(stream); !ok)
    return tl::unexpected(ok.error());
  return with_read([&](MDB_txn* txn) -> result<std::uint64_t> {
    auto head = read_head(txn, stream);
    if (!head)
      return tl::unexpected(head.error());
    from = std::max<std::uint64_t>(from, 1);
    if (!*head || from > (*head)->version || max == 0)
      return std::uint64_t{0};
    auto to = (*head)->version - from + 1 <= max ? (*head)->version : from + max - 1;
    // The chain runs backward; collect views (valid for this txn), then visit forward.
    std::vector<event_view> views(static_cast<std::size_t>(to - from + 1));
    auto slot = views.size();
    auto ok = walk(txn, stream, **head, to, to, from, [&](const record_view& r, std::uint64_t p) {
      auto& v = views[--slot];
      v.stream = r.stream;
      v.version = r.version;
      v.position = p;
      v.id = r.id;
      v.timestamp_ns = r.timestamp_ns;
      v.type = r.type;
      v.schema_version = r.schema_version;
      v.correlation_id = r.correlation_id;
      v.causation_id = r.causation_id;
      v.command_id = r.command_id;
      v.tenant = r.tenant;
      v.user = r.user;
      v.payload = r.payload;
      return true;
    });
    if (!ok)
      return tl::unexpected(ok.error());
    std::uint64_t n = 0;
    for (const auto& v : views) {
      ++n;
      if (!visit(v))
        break;
    }
    return n;
  });
}

result<std::vector<recorded_event>> lmdb_store::read_stream_backward(std::string_view stream,
                                                                     std::uint64_t from,
                                                                     std::size_t max) const {
  if (auto ok = validate_stream_name(stream); !ok)
    return tl::unexpected(ok.error());
  return with_read([&](MDB_txn* txn) -> result<std::vector<recorded_event>> {
    auto head = read_head(txn, stream);
    if (!head)
      return tl::unexpected(head.error());
    std::vector<recorded_event> out;
    if (!*head || max == 0 || from == 0)
      return out;
    auto top = std::min(from, (*head)->version);
    auto bottom = top >= max ? top - max + 1 : 1;
    out.reserve(static_cast<std::size_t>(top - bottom + 1));
    auto ok = walk(txn, stream, **head, top, top, bottom,
                   [&](const record_view& r, std::uint64_t p) {
                     to_event(r, p, out.emplace_back());
                     return true;
                   });
    if (!ok)
      return tl::unexpected(ok.error());
    return out;
  });
}

result<std::vector<recorded_event>> lmdb_store::read_stream_until_time(std::string_view stream,
                                                                       std::int64_t ts) const {
  std::vector<recorded_event> out;
  constexpr std::size_t page = 4096;
  for (std::uint64_t from = 1;; from += page) {
    auto chunk = read_stream(stream, from, page);
    if (!chunk)
      return chunk;
    for (auto& ev : *chunk) {
      if (ev.timestamp_ns > ts)
        return out;
      out.push_back(std::move(ev));
    }
    if (chunk->size() < page)
      return out;
  }
}

result<std::uint64_t> lmdb_store::stream_version(std::string_view stream) const {
  if (auto ok = validate_stream_name(stream); !ok)
    return tl::unexpected(ok.error());
  return with_read([&](MDB_txn* txn) -> result<std::uint64_t> {
    auto head = read_head(txn, stream);
    if (!head)
      return tl::unexpected(head.error());
    return *head ? (*head)->version : 0;
  });
}

result<log_page> lmdb_store::read_all(std::uint64_t from, std::size_t max,
                                      const read_filter& filter) const {
  return with_read([&](MDB_txn* txn) -> result<log_page> {
    log_page page;
    page.next_position = std::max<std::uint64_t>(from, 1);
    if (max == 0)
      return page;
    page.events.reserve(std::min<std::size_t>(max, 1024));
    cursor_guard cur;
    if (int rc = cur.open(txn, log_); rc != 0)
      return tl::unexpected(lmdb_error(rc, "cursor"));
    unsigned char kb[8];
    put_be64(kb, page.next_position);
    MDB_val k{8, kb}, v;
    std::size_t scanned = 0;
    int rc = mdb_cursor_get(cur.get(), &k, &v, MDB_SET_RANGE);
    for (; rc == 0 && page.events.size() < max && scanned < max_scan_per_read;
         rc = mdb_cursor_get(cur.get(), &k, &v, MDB_NEXT), ++scanned) {
      auto pos = get_be64(static_cast<const unsigned char*>(k.mv_data));
      auto rec = decode_record(static_cast<const unsigned char*>(v.mv_data), v.mv_size, pos);
      if (!rec)
        return tl::unexpected(rec.error());
      page.next_position = pos + 1;
      auto matches = [](const std::vector<std::string>& allowed, std::string_view x) {
        return allowed.empty() || std::find(allowed.begin(), allowed.end(), x) != allowed.end();
      };
      if (matches(filter.categories, category_of(rec->stream)) && matches(filter.types, rec->type))
        to_event(*rec, pos, page.events.emplace_back());
    }
    if (rc != 0 && rc != MDB_NOTFOUND)
      return tl::unexpected(lmdb_error(rc, "scan the log"));
    return page;
  });
}

result<std::optional<append_result>>
lmdb_store::find_command(std::string_view stream, std::string_view command_id) const {
  if (auto ok = validate_stream_name(stream); !ok)
    return tl::unexpected(ok.error());
  if (command_id.empty() || command_id.size() > max_short_field)
    return fail(errc::invalid_argument, "command ids are 1-255 bytes", std::string{stream});
  return with_read([&](MDB_txn* txn) -> result<std::optional<append_result>> {
    auto head = read_head(txn, stream);
    if (!head)
      return tl::unexpected(head.error());
    if (!*head)
      return std::optional<append_result>{};
    auto key = be64_key((*head)->stream_no);
    key.append(command_id);
    MDB_val k = val_of(key), v;
    int rc = mdb_get(txn, commands_, &k, &v);
    if (rc == MDB_NOTFOUND)
      return std::optional<append_result>{};
    if (rc != 0)
      return tl::unexpected(lmdb_error(rc, "read command record"));
    auto r = decode_outcome(key, view_of(v), std::string{stream});
    if (!r)
      return tl::unexpected(r.error());
    return std::optional<append_result>{*r};
  });
}

result<std::uint64_t> lmdb_store::last_position() const {
  return with_read([&](MDB_txn* txn) -> result<std::uint64_t> {
    cursor_guard cur;
    if (int rc = cur.open(txn, log_); rc != 0)
      return tl::unexpected(lmdb_error(rc, "cursor"));
    MDB_val k, v;
    int rc = mdb_cursor_get(cur.get(), &k, &v, MDB_LAST);
    if (rc == MDB_NOTFOUND)
      return std::uint64_t{0};
    if (rc != 0)
      return tl::unexpected(lmdb_error(rc, "read last position"));
    return get_be64(static_cast<const unsigned char*>(k.mv_data));
  });
}

result<std::vector<stream_info>> lmdb_store::list_streams(std::string_view prefix,
                                                          std::size_t max) const {
  return with_read([&](MDB_txn* txn) -> result<std::vector<stream_info>> {
    std::vector<stream_info> out;
    cursor_guard cur;
    if (int rc = cur.open(txn, names_); rc != 0)
      return tl::unexpected(lmdb_error(rc, "cursor"));
    MDB_val k = val_of(prefix), v;
    int rc = prefix.empty() ? mdb_cursor_get(cur.get(), &k, &v, MDB_FIRST)
                            : mdb_cursor_get(cur.get(), &k, &v, MDB_SET_RANGE);
    for (; rc == 0 && out.size() < max; rc = mdb_cursor_get(cur.get(), &k, &v, MDB_NEXT)) {
      auto name = view_of(k);
      if (name.substr(0, prefix.size()) != prefix)
        break;
      auto head = read_head(txn, name);
      if (!head)
        return tl::unexpected(head.error());
      out.push_back(stream_info{std::string{name}, *head ? (*head)->version : 0});
    }
    if (rc != 0 && rc != MDB_NOTFOUND)
      return tl::unexpected(lmdb_error(rc, "list streams"));
    return out;
  });
}

result<std::optional<snapshot>> lmdb_store::load_snapshot(std::string_view stream,
                                                          std::uint64_t max_version) const {
  if (auto ok = validate_stream_name(stream); !ok)
    return tl::unexpected(ok.error());
  return with_read([&](MDB_txn* txn) -> result<std::optional<snapshot>> {
    auto head = read_head(txn, stream);
    if (!head)
      return tl::unexpected(head.error());
    if (!*head || max_version == 0)
      return std::optional<snapshot>{};
    auto no = (*head)->stream_no;
    cursor_guard cur;
    if (int rc = cur.open(txn, snapshots_); rc != 0)
      return tl::unexpected(lmdb_error(rc, "cursor"));
    auto target = pair_key(no, max_version);
    MDB_val k = val_of(target), v;
    int rc = mdb_cursor_get(cur.get(), &k, &v, MDB_SET_RANGE);
    if (rc == 0 && view_of(k) != target)
      rc = mdb_cursor_get(cur.get(), &k, &v, MDB_PREV);
    else if (rc == MDB_NOTFOUND)
      rc = mdb_cursor_get(cur.get(), &k, &v, MDB_LAST);
    if (rc == MDB_NOTFOUND || (rc == 0 && (k.mv_size != 16
                                           || get_be64(static_cast<const unsigned char*>(
                                                k.mv_data))
                                                != no)))
      return std::optional<snapshot>{};
    if (rc != 0)
      return tl::unexpected(lmdb_error(rc, "read snapshot"));
    auto s = decode_snapshot(view_of(k), view_of(v), stream);
    if (!s)
      return tl::unexpected(s.error());
    return std::optional<snapshot>{std::move(*s)};
  });
}

result<std::optional<std::uint64_t>> lmdb_store::load_checkpoint(std::string_view name) const {
  if (name.empty() || name.size() > max_short_field)
    return fail(errc::invalid_argument, "checkpoint names are 1-255 bytes", std::string{name});
  return with_read([&](MDB_txn* txn) -> result<std::optional<std::uint64_t>> {
    MDB_val k = val_of(name), v;
    int rc = mdb_get(txn, checkpoints_, &k, &v);
    if (rc == MDB_NOTFOUND)
      return std::optional<std::uint64_t>{};
    if (rc != 0)
      return tl::unexpected(lmdb_error(rc, "read checkpoint"));
    auto pos = decode_u64(name, view_of(v), "checkpoint " + std::string{name});
    if (!pos)
      return tl::unexpected(pos.error());
    return std::optional<std::uint64_t>{*pos};
  });
}

result<std::vector<checkpoint>> lmdb_store::list_checkpoints() const {
  return with_read([&](MDB_txn* txn) -> result<std::vector<checkpoint>> {
    std::vector<checkpoint> out;
    cursor_guard cur;
    if (int rc = cur.open(txn, checkpoints_); rc != 0)
      return tl::unexpected(lmdb_error(rc, "cursor"));
    MDB_val k, v;
    for (int rc = mdb_cursor_get(cur.get(), &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur.get(), &k, &v, MDB_NEXT)) {
      auto name = view_of(k);
      auto pos = decode_u64(name, view_of(v), "checkpoint " + std::string{name});
      if (!pos)
        return tl::unexpected(pos.error());
      out.push_back(checkpoint{std::string{name}, *pos});
    }
    return out;
  });
}

result<std::vector<std::pair<std::string, std::uint32_t>>> lmdb_store::type_catalogue() const {
  return with_read(
    [&](MDB_txn* txn) -> result<std::vector<std::pair<std::string, std::uint32_t>>> {
      std::vector<std::pair<std::string, std::uint32_t>> out;
      cursor_guard cur;
      if (int rc = cur.open(txn, types_); rc != 0)
        return tl::unexpected(lmdb_error(rc, "cursor"));
      MDB_val k, v;
      for (int rc = mdb_cursor_get(cur.get(), &k, &v, MDB_FIRST); rc == 0;
           rc = mdb_cursor_get(cur.get(), &k, &v, MDB_NEXT)) {
        auto key = view_of(k);
        if (key.size() < 5 || !unseal(key, view_of(v), "type catalogue entry"))
          return fail(errc::corrupted, "bad type catalogue entry", std::string{key});
        auto* vb = reinterpret_cast<const unsigned char*>(key.data() + key.size() - 4);
        out.emplace_back(std::string{key.substr(0, key.size() - 5)},
                         std::uint32_t{vb[0]} << 24 | std::uint32_t{vb[1]} << 16
                           | std::uint32_t{vb[2]} << 8 | vb[3]);
      }
      return out;
    });
}

result<std::optional<std::string>> lmdb_store::kv_get(std::string_view space,
                                                     std::string_view key) const {
  if (!is_valid_space_name(space) || key.empty() || key.size() > max_short_field)
    return fail(errc::invalid_argument,
                "key-value spaces are 1-255 bytes without a 0 byte, keys 1-255 bytes",
                std::string{space} + "/" + std::string{key});
  if (!has_side_tables_)
    return std::optional<std::string>{};
  return with_read([&](MDB_txn* txn) -> result<std::optional<std::string>> {
    auto k = space_key(space, key);
    MDB_val kv = val_of(k), v;
    int rc = mdb_get(txn, kv_, &kv, &v);
    if (rc == MDB_NOTFOUND)
      return std::optional<std::string>{};
    if (rc != 0)
      return tl::unexpected(lmdb_error(rc, "read key-value"));
    auto body = unseal(k, view_of(v), "value " + std::string{space} + "/" + std::string{key});
    if (!body)
      return tl::unexpected(body.error());
    return std::optional<std::string>{std::string{*body}};
  });
}

result<std::vector<std::pair<std::string, std::string>>>
lmdb_store::kv_scan(std::string_view space, std::string_view prefix, std::string_view after,
                    std::size_t max) const {
  using entries = std::vector<std::pair<std::string, std::string>>;
  if (!is_valid_space_name(space))
    return fail(errc::invalid_argument, "key-value spaces are 1-255 bytes without a 0 byte",
                std::string{space});
  if (!has_side_tables_)
    return entries{};
  return with_read([&](MDB_txn* txn) -> result<entries> {
    entries out;
    cursor_guard cur;
    if (int rc = cur.open(txn, kv_); rc != 0)
      return tl::unexpected(lmdb_error(rc, "cursor"));
    auto full_prefix = space_key(space, prefix);
    auto start = after.empty() || after < prefix ? full_prefix : space_key(space, after);
    auto head = space.size() + 1;
    MDB_val k = val_of(start), v;
    int rc = mdb_cursor_get(cur.get(), &k, &v, MDB_SET_RANGE);
    for (; rc == 0 && out.size() < max; rc = mdb_cursor_get(cur.get(), &k, &v, MDB_NEXT)) {
      auto key = view_of(k);
      if (key.substr(0, full_prefix.size()) != full_prefix)
        break;
      if (!after.empty() && key.substr(head) == after)
        continue;
      auto body = unseal(key, view_of(v), "value " + std::string{space} + "/"
                                            + std::string{key.substr(head)});
      if (!body)
        return tl::unexpected(body.error());
      out.emplace_back(std::string{key.substr(head)}, std::string{*body});
    }
    if (rc != 0 && rc != MDB_NOTFOUND)
      return tl::unexpected(lmdb_error(rc, "scan key-value"));
    return out;
  });
}

result<std::vector<dead_letter>> lmdb_store::list_dead_letters(std::string_view subscriber,
                                                               std::size_t max) const {
  if (!subscriber.empty() && !is_valid_space_name(subscriber))
    return fail(errc::invalid_argument, "subscriber names are 1-255 bytes without a 0 byte",
                std::string{subscriber});
  if (!has_side_tables_)
    return std::vector<dead_letter>{};
  return with_read([&](MDB_txn* txn) -> result<std::vector<dead_letter>> {
    std::vector<dead_letter> out;
    cursor_guard cur;
    if (int rc = cur.open(txn, dead_letters_); rc != 0)
      return tl::unexpected(lmdb_error(rc, "cursor"));
    auto prefix = subscriber.empty() ? std::string{} : space_key(subscriber, {});
    MDB_val k = val_of(prefix), v;
    int rc = prefix.empty() ? mdb_cursor_get(cur.get(), &k, &v, MDB_FIRST)
                            : mdb_cursor_get(cur.get(), &k, &v, MDB_SET_RANGE);
    for (; rc == 0 && out.size() < max; rc = mdb_cursor_get(cur.get(), &k, &v, MDB_NEXT)) {
      auto key = view_of(k);
      if (key.substr(0, prefix.size()) != prefix)
        break;
      auto dl = decode_dead_letter(key, view_of(v));
      if (!dl)
        return tl::unexpected(dl.error());
      out.push_back(std::move(*dl));
    }
    if (rc != 0 && rc != MDB_NOTFOUND)
      return tl::unexpected(lmdb_error(rc, "scan dead letters"));
    return out;
  });
}

result<std::uint64_t> lmdb_store::count_dead_letters(std::string_view subscriber) const {
  if (!is_valid_space_name(subscriber))
    return fail(errc::invalid_argument, "subscriber names are 1-255 bytes without a 0 byte",
                std::string{subscriber});
  if (!has_side_tables_)
    return std::uint64_t{0};
  return with_read([&](MDB_txn* txn) -> result<std::uint64_t> {
    cursor_guard cur;
    if (int rc = cur.open(txn, dead_letters_); rc != 0)
      return tl::unexpected(lmdb_error(rc, "cursor"));
    auto prefix = space_key(subscriber, {});
    MDB_val k = val_of(prefix), v;
    std::uint64_t n = 0;
    int rc = mdb_cursor_get(cur.get(), &k, &v, MDB_SET_RANGE);
    for (; rc == 0 && view_of(k).substr(0, prefix.size()) == prefix;
         rc = mdb_cursor_get(cur.get(), &k, &v, MDB_NEXT))
      ++n;
    if (rc != 0 && rc != MDB_NOTFOUND)
      return tl::unexpected(lmdb_error(rc, "count dead letters"));
    return n;
  });
}

result<event_store::side_tables> lmdb_store::read_side_tables() const {
  return with_read([&](MDB_txn* txn) -> result<side_tables> {
    side_tables out;
    auto each = [&](MDB_dbi dbi, auto&& take) -> result<void> {
      cursor_guard cur;
      if (int rc = cur.open(txn, dbi); rc != 0)
        return tl::unexpected(lmdb_error(rc, "cursor"));
      MDB_val k, v;
      int rc = mdb_cursor_get(cur.get(), &k, &v, MDB_FIRST);
      for (; rc == 0; rc = mdb_cursor_get(cur.get(), &k, &v, MDB_NEXT))
        if (auto ok = take(view_of(k), view_of(v)); !ok)
          return ok;
      if (rc != MDB_NOTFOUND)
        return tl::unexpected(lmdb_error(rc, "scan"));
      return {};
    };
    auto cps = each(checkpoints_, [&](std::string_view key, std::string_view value) -> result<void> {
      auto pos = decode_u64(key, value, "checkpoint " + std::string{key});
      if (!pos)
        return tl::unexpected(pos.error());
      out.checkpoints.push_back(checkpoint{std::string{key}, *pos});
      return {};
    });
    if (!cps)
      return tl::unexpected(cps.error());
    if (!has_side_tables_)
      return out;
    auto kv = each(kv_, [&](std::string_view key, std::string_view value) -> result<void> {
      auto sep = key.find('\0');
      auto body = unseal(key, value, "value " + std::string{key.substr(0, sep)});
      if (!body)
        return tl::unexpected(body.error());
      out.kv.push_back(kv_op{kv_op::kind::put, std::string{key.substr(0, sep)},
                             std::string{key.substr(sep + 1)}, std::string{*body}});
      return {};
    });
    if (!kv)
      return tl::unexpected(kv.error());
    auto dls = each(dead_letters_, [&](std::string_view key, std::string_view value) -> result<void> {
      auto dl = decode_dead_letter(key, value);
      if (!dl)
        return tl::unexpected(dl.error());
      out.dead_letters.push_back(std::move(*dl));
      return {};
    });
    if (!dls)
      return tl::unexpected(dls.error());
    return out;
  });
}

result<event_store::index_check> lmdb_store::check_indexes(
  const std::function<void(std::uint64_t, std::string)>& problem) const {
  index_check out;
  // The log record at `pos`, checked to belong to stream number `no` at
  // `version` (and to carry `command`, when not empty); "" or the problem.
  auto check_record = [&](MDB_txn* txn, std::uint64_t pos, std::uint64_t no, std::uint64_t version,
                          std::string_view command) -> std::string {
    unsigned char kb[8];
    put_be64(kb, pos);
    MDB_val k{8, kb}, v;
    if (int rc = mdb_get(txn, log_, &k, &v); rc != 0)
      return rc == MDB_NOTFOUND ? "no log record there" : lmdb_error(rc, "read").message;
    auto rec = decode_record(static_cast<const unsigned char*>(v.mv_data), v.mv_size, pos);
    if (!rec)
      return rec.error().message;
    MDB_val nk = val_of(rec->stream), nv;
    if (mdb_get(txn, names_, &nk, &nv) != 0)
      return "the record's stream " + std::string{rec->stream} + " has no number";
    auto rec_no = decode_u64(rec->stream, view_of(nv), "stream name entry");
    if (!rec_no || *rec_no != no || rec->version != version)
      return "the record is " + std::string{rec->stream} + " v" + std::to_string(rec->version)
             + ", not stream number " + std::to_string(no) + " v" + std::to_string(version);
    if (!command.empty() && rec->command_id != command)
      return "the record does not carry command id " + std::string{command};
    return {};
  };
  // Walks `dbi` in read transactions of at most `per_txn` entries, resuming
  // after the last key seen, and calls `check(txn, key, value)` for each.
  constexpr std::size_t per_txn = 16384;
  auto scan = [&](MDB_dbi dbi, auto&& check) -> result<void> {
    std::string after;
    bool first = true;
    for (;;) {
      bool done = false;
      auto chunk = with_read([&](MDB_txn* txn) -> result<void> {
        cursor_guard cur;
        if (int rc = cur.open(txn, dbi); rc != 0)
          return tl::unexpected(lmdb_error(rc, "cursor"));
        MDB_val k = val_of(after), v;
        int rc = first ? mdb_cursor_get(cur.get(), &k, &v, MDB_FIRST)
                       : mdb_cursor_get(cur.get(), &k, &v, MDB_SET_RANGE);
        if (rc == 0 && !first && view_of(k) == after)
          rc = mdb_cursor_get(cur.get(), &k, &v, MDB_NEXT);
        for (std::size_t n = 0; rc == 0 && n < per_txn; ++n) {
          after.assign(view_of(k));
          check(txn, view_of(k), view_of(v));
          rc = mdb_cursor_get(cur.get(), &k, &v, MDB_NEXT);
        }
        if (rc == MDB_NOTFOUND)
          done = true;
        else if (rc != 0)
          return tl::unexpected(lmdb_error(rc, "walk a table"));
        return {};
      });
      if (!chunk)
        return chunk;
      first = false;
      if (done)
        return {};
    }
  };
  auto index_ok = scan(index_, [&](MDB_txn* txn, std::string_view key, std::string_view value) {
    ++out.index_entries;
    if (key.size() != 16) {
      problem(0, "a stream index entry has a key of " + std::to_string(key.size()) + " bytes");
      return;
    }
    auto no = get_be64(reinterpret_cast<const unsigned char*>(key.data()));
    auto version = get_be64(reinterpret_cast<const unsigned char*>(key.data()) + 8);
    auto what = "stream index entry of stream number " + std::to_string(no) + " v"
                + std::to_string(version);
    auto pos = decode_u64(key, value, what);
    if (!pos) {
      problem(0, pos.error().message);
      return;
    }
    if (version % index_interval != 0)
      problem(*pos, what + " is off the index interval");
    if (auto bad = check_record(txn, *pos, no, version, {}); !bad.empty())
      problem(*pos, what + " points at position " + std::to_string(*pos) + ": " + bad);
  });
  if (!index_ok)
    return tl::unexpected(index_ok.error());
  auto commands_ok =
    scan(commands_, [&](MDB_txn* txn, std::string_view key, std::string_view value) {
      ++out.command_records;
      if (key.size() <= 8) {
        problem(0, "a command record has a key of " + std::to_string(key.size()) + " bytes");
        return;
      }
      auto no = get_be64(reinterpret_cast<const unsigned char*>(key.data()));
      auto command = key.substr(8);
      auto what = "command record " + std::string{command} + " of stream number "
                  + std::to_string(no);
      auto r = decode_outcome(key, value, what);
      if (!r) {
        problem(0, r.error().message);
        return;
      }
      if (r->first_position == 0 || r->last_position < r->first_position
          || r->last_position - r->first_position != r->last_version - r->first_version) {
        problem(r->first_position, what + " holds an impossible range");
        return;
      }
      if (auto bad = check_record(txn, r->first_position, no, r->first_version, command);
          !bad.empty())
        problem(r->first_position, what + ": " + bad);
      else if (auto last = check_record(txn, r->last_position, no, r->last_version, command);
               !last.empty())
        problem(r->last_position, what + ": " + last);
    });
  if (!commands_ok)
    return tl::unexpected(commands_ok.error());
  return out;
}

result<store_stats> lmdb_store::stats() const {
  return with_read([&](MDB_txn* txn) -> result<store_stats> {
    store_stats s;
    MDB_stat st;
    auto entries = [&](MDB_dbi dbi) -> std::uint64_t {
      return mdb_stat(txn, dbi, &st) == 0 ? st.ms_entries : 0;
    };
    s.events = entries(log_);
    s.streams = entries(names_);
    s.snapshots = entries(snapshots_);
    s.checkpoints = entries(checkpoints_);
    if (has_side_tables_) {
      s.kv_entries = entries(kv_);
      s.dead_letters = entries(dead_letters_);
    }
    MDB_envinfo info;
    mdb_env_info(env_, &info);
    MDB_stat env_stat;
    mdb_env_stat(env_, &env_stat);
    s.map_size = info.me_mapsize;
    s.map_used = (info.me_last_pgno + 1) * env_stat.ms_psize;
    s.format_version = format_version_;
    return s;
  });
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
    return fail(errc::unavailable, "cannot create the backup directory: " + ec.message(),
                dest_dir);
  }
  auto data = fs::path(dest_dir) / "data.mdb";
  std::shared_lock lock{remap_};
  int rc = mdb_env_copy2(env_, dest_dir.c_str(), MDB_CP_COMPACT);
  if (rc == MDB_MAP_RESIZED) {
    // Another process grew the map: adopt its size (as with_read does) and
    // copy again; the copy creates data.mdb exclusively, so drop the partial one.
    lock.unlock();
    {
      std::unique_lock grow{remap_};
      (void) mdb_env_set_mapsize(env_, 0);
    }
    lock.lock();
    fs::remove(data, ec);
    rc = mdb_env_copy2(env_, dest_dir.c_str(), MDB_CP_COMPACT);
  }
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
    (void) ::chmod(data.c_str(), copy_stat.st_mode & file_mode);
  return {};
}

} // namespace

result<std::unique_ptr<event_store>> open_store(const std::string& dir,
                                                const store_options& options) {
  try {
    return lmdb_store::open(dir, options);
  } catch (const std::exception& e) {
    return fail(errc::internal, std::string{"open failed: "} + e.what(), dir);
  }
}

} // namespace cairn::persistence
