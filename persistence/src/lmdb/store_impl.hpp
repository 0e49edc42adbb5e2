#pragma once

// The LMDB event store, the class its units share. Layout and the reasons
// for it: docs/storage-format.md. The units, one concern each:
//
//   store.cpp        open_store, the directory and its lock, the write calls
//   environment.cpp  the LMDB environment: map growth (and the adoption of a
//                    map another process grew), commits and flushes, stale
//                    readers, LMDB's panic, hot backup
//   open.cpp         opening the tables and upgrading the format, in steps
//   heads.cpp        stream heads: the heads table, the head log, the
//                    readers' index of it, the writer's cached heads
//   write.cpp        the write transaction: validation, staging of appends,
//                    the commit and what the writer learns from it
//   read.cpp         reads of the log and of streams
//   side_tables.cpp  snapshots, checkpoints, key-value read models, dead
//                    letters: their writes and reads
//   verify.cpp       check_indexes (cairn verify)
//   chain.cpp        the digest chain: extending it at open, digest_at,
//                    check_chain
//   command_log.cpp  the command log (what-if replay): its writes and reads
//   replication.cpp  what a standby copies: frames of the log read and
//                    applied, epochs, and truncating a divergent tail
//   retention.cpp    retention: plans, the removal of stream prefixes in
//                    bounded transactions, the cuts that readers check
//
// Write cost is what shaped the store: a commit writes the new log records
// (appended in position order, so they fill fresh pages) plus one small head
// per stream touched. The per-stream index is a back-pointer chain inside the
// records with a sparse index entry every index_interval versions, so random
// index inserts stay off the commit path.

#include <lmdb.h>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "cairn/persistence/event_store.hpp"
#include "cairn/persistence/format.hpp"
#include "lmdb/env.hpp"
#include "lmdb/head_cache.hpp"
#include "lmdb/keys.hpp"
#include "lmdb/preallocator.hpp"

namespace cairn::persistence::detail {

/// Longest metadata field, type name, key-value key and checkpoint name, in bytes.
inline constexpr std::size_t max_short_field = 255;
/// Longest error text a dead letter keeps.
inline constexpr std::size_t max_dead_letter_error = 4096;
/// Name of the file whose flock marks the one writing process.
inline constexpr const char* lock_file_name = "cairn.lock";

/// True for a key-value space or subscriber name: 1-255 bytes without a 0 byte.
[[nodiscard]] inline bool is_valid_space_name(std::string_view name) {
  return !name.empty() && name.size() <= max_short_field
         && name.find('\0') == std::string_view::npos;
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

class lmdb_store final : public event_store {
public:
  /// Checks the options and the directory, takes the writer's lock, opens.
  static result<std::unique_ptr<event_store>> open(const std::string& dir,
                                                   const store_options& opts);

  ~lmdb_store() override;

  // -- writes (store.cpp, write.cpp) -----------------------------------------

  result<append_result> append(const append_request& req) override;
  result<std::vector<result<append_result>>> append_batch(const write_batch& b) override;
  result<std::vector<result<append_result>>> append_batch_deferred(const write_batch& b) override;
  result<void> sync() override;
  commit_marks commits() const noexcept override { return commits_; }
  bool refuses_writes() const noexcept override {
    return broken_.has_value() || fatal_.load(std::memory_order_relaxed);
  }
  std::uint64_t stale_readers_cleared() const noexcept override {
    return stale_readers_.load(std::memory_order_relaxed);
  }
  result<void> save_snapshot(const snapshot& snap) override;
  result<void> save_checkpoint(const checkpoint& cp) override;

  // -- reads (read.cpp, side_tables.cpp, verify.cpp) ---------------------------

  result<std::vector<recorded_event>> read_stream(std::string_view stream, std::uint64_t from,
                                                  std::size_t max) const override;
  result<std::uint64_t>
  visit_stream(std::string_view stream, std::uint64_t from, std::size_t max,
               const std::function<bool(const event_view&)>& visit) const override;
  result<std::vector<recorded_event>>
  read_stream_backward(std::string_view stream, std::uint64_t from, std::size_t max) const override;
  result<std::vector<recorded_event>> read_stream_until_time(std::string_view stream,
                                                             std::int64_t ts) const override;
  result<std::uint64_t> stream_version(std::string_view stream) const override;
  result<log_page> read_all(std::uint64_t from, std::size_t max,
                            const read_filter& filter) const override;
  result<std::optional<append_result>> find_command(std::string_view stream,
                                                    std::string_view command_id) const override;
  result<command_page> read_commands(std::uint64_t from, std::size_t max,
                                     std::string_view stream_prefix) const override;
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
  result<std::vector<std::pair<std::string, std::string>>> kv_scan(std::string_view space,
                                                                   std::string_view prefix,
                                                                   std::string_view after,
                                                                   std::size_t max) const override;
  result<std::vector<dead_letter>> list_dead_letters(std::string_view subscriber,
                                                     std::size_t max) const override;
  result<std::uint64_t> count_dead_letters(std::string_view subscriber) const override;
  result<side_tables> read_side_tables() const override;
  result<store_stats> stats() const override;
  using problem_sink = std::function<void(std::uint64_t, std::string)>;
  result<index_check> check_indexes(const problem_sink& problem) const override;
  result<log_digest> digest_at(std::uint64_t position) const override;
  result<chain_check> check_chain(std::uint64_t upto) const override;
  result<void> copy_to(const std::string& dest_dir) const override;
  // -- replication (replication.cpp) ------------------------------------------

  result<log_frame> read_frame(std::uint64_t from, std::size_t max_bytes) const override;
  result<std::vector<epoch_info>> epochs() const override;
  result<std::vector<forget_info>> forgets() const override;
  result<std::uint64_t> current_epoch() const override;
  result<std::uint64_t> apply_frame(const log_frame& frame) override;
  result<epoch_info> begin_epoch(std::uint64_t epoch, std::string_view node) override;
  result<truncation> truncate_after(std::uint64_t position, const std::string& save_file) override;

  result<retention_plan> plan_retention(const retention_policy& policy,
                                        std::int64_t now_ns) const override;
  result<retention_result> apply_retention(const retention_plan& plan) override;
  result<std::uint64_t> first_position() const override;
  result<log_extent> extent() const override;
  const std::string& path() const noexcept override { return dir_; }
  const key_ring* personal_keys() const noexcept override { return ring_.get(); }

private:
  template <class T> struct span {
    const T* data = nullptr;
    std::size_t size = 0;
    const T* begin() const { return data; }
    const T* end() const { return data + size; }
  };

  /// A write_batch, or a single append, snapshot or checkpoint, uncopied.
  struct batch_view {
    span<append_request> appends;
    span<checkpoint> checkpoints;
    span<snapshot> snapshots;
    span<kv_op> kv;
    span<dead_letter> dead_letters;
    span<dead_letter_key> removals;
    span<std::string> forget;
  };
  static batch_view view_of_batch(const write_batch& b);

  using append_results = std::vector<result<append_result>>;

  /// Everything a write transaction changes before it commits; applied to the
  /// writer's caches only after the commit succeeds.
  struct staging {
    std::uint64_t serial = 0; ///< Tells this transaction's staged heads from stale ones.
    std::vector<head_cache::entry*> touched;                 // in staging order
    std::unordered_map<std::string, append_result> commands; // command_key -> outcome
    std::set<std::pair<std::string, std::uint32_t>> new_types;
    std::uint64_t position = 0;
    std::uint64_t next_stream_no = 0;
    format::digest chain{};         ///< h at `position` while the chain is on.
    std::uint64_t next_command = 0; ///< The next command-log sequence.
    /// Data keys this transaction stores: (subject, key id).
    std::vector<std::pair<std::string, std::array<unsigned char, 8>>> new_keys;
  };

  /// The heads a write transaction changed, and where it put them.
  struct head_plan {
    head_pairs changed;   ///< (stream number, last position), in staging order.
    bool rewrite = false; ///< The heads table took every head; the head log starts over.
  };

  lmdb_store(std::string dir, const store_options& opts);

  // -- open (open.cpp) ---------------------------------------------------------

  /// Opens the environment and the tables, upgrades the format, and loads
  /// what the writer keeps in memory. `create`: data.mdb did not exist.
  result<void> init(bool create);
  result<void> open_env();
  /// True when a writable open finds an LMDB file without tables (a crash
  /// during creation): the store is still new.
  bool holds_no_tables(MDB_txn* txn) const;
  result<void> open_tables(MDB_txn* txn, bool create);
  /// The tables added after the first stores were written.
  result<void> open_later_tables(MDB_txn* txn);
  result<void> write_store_id(MDB_txn* txn);
  result<std::uint32_t> read_format_version(MDB_txn* txn) const;
  /// Learns the last position and the next stream number.
  result<void> load_log_end(MDB_txn* txn);
  /// Format 1 -> 2 on a writable open; loads the writer's head-log state.
  result<void> open_heads(MDB_txn* txn, bool create, std::uint32_t stored_version);
  result<void> load_type_catalogue(MDB_txn* txn);
  /// `invalid_argument` naming the stored types the registry cannot decode.
  result<void> check_registry() const;

  // -- environment (environment.cpp) ---------------------------------------------

  /// Starts zero-filling ahead of the data (store_options::preallocate).
  void start_preallocation();
  /// Where the data's pages end in the file, in bytes.
  std::uint64_t data_end() const;
  result<void> grow_map();
  /// Runs `attempt` (an LMDB call, returning its code) while `lock` holds
  /// remap_ shared. When another process grew the map (MDB_MAP_RESIZED), adopts
  /// the new size and runs it once more. `lock` is held again on return.
  int adopting_resize(std::shared_lock<std::shared_mutex>& lock,
                      const std::function<int()>& attempt) const;
  /// Begins a read transaction, holding `lock` (remap_ shared) for it.
  result<MDB_txn*> begin_read(std::shared_lock<std::shared_mutex>& lock) const;
  /// Runs `f(txn)` in a read transaction.
  template <class F> auto with_read(F&& f) const -> decltype(f(static_cast<MDB_txn*>(nullptr)));
  /// Clears the reader slots of dead processes; returns how many it cleared.
  std::uint64_t check_readers();
  /// Whether LMDB has stopped the environment (every transaction now fails
  /// with MDB_PANIC); remembers it in fatal_.
  bool panicked() const;
  /// After a failed write transaction: makes the store refuse every later
  /// write when LMDB stopped or found its B-tree damaged.
  void note_write_failure(const lmdb_failure& f);
  /// Every write loop's step after a failed transaction: success when another
  /// attempt is worth it (the map was full, and dead readers' pages came free
  /// or the map grew), else the error to give up with.
  result<void> before_retry(const lmdb_failure& f);
  /// Learns the commit's number after a successful write transaction.
  /// `defer`: leave the commit's meta page unflushed (append_batch_deferred).
  result<void> after_commit(bool defer);

  // -- write transaction (write.cpp) ---------------------------------------------

  /// Validates `b`, then runs write transactions until one commits or fails
  /// for good (a full map grows the map and retries).
  result<append_results> write(const batch_view& b, bool defer);
  /// One attempt at a write transaction.
  lmdb_result<append_results> try_write(const batch_view& b);
  staging begin_staging();
  lmdb_result<append_results> stage_appends(MDB_txn* txn, span<append_request> reqs, staging& st);
  /// Stages one append: the outer failure aborts the transaction, the inner
  /// one fails this request alone (a conflict, a bad command record).
  lmdb_result<result<append_result>> stage_append(MDB_txn* txn, const append_request& req,
                                                  staging& st, std::int64_t now);
  /// A stream never mixes tenants: `invalid_argument` (the inner failure)
  /// when `req` names a tenant and the stream of `head` has another.
  lmdb_result<result<void>> check_tenant(MDB_txn* txn, const append_request& req, head_state& head);
  /// The stream's tenant after an append of `req` to it was staged.
  void note_tenant(const append_request& req, head_state& head);
  /// The tenant of `stream`: the first non-empty one walking its chain back
  /// from `position`, "" when none.
  lmdb_result<std::string> stream_tenant(MDB_txn* txn, std::string_view stream,
                                         std::uint64_t position) const;
  /// The recorded outcome of command `key` on the stream of `head`, if any.
  lmdb_result<std::optional<result<append_result>>>
  earlier_outcome(MDB_txn* txn, const staging& st, const std::string& key, const head_state& head,
                  const std::string& stream) const;
  /// Writes one event's log record (and index entry) after `head`.
  lmdb_result<> stage_event(MDB_txn* txn, const append_request& req, const event_data& ev,
                            head_state& head, staging& st, std::int64_t now);
  lmdb_result<> stage_outcome(MDB_txn* txn, std::string key, const append_result& r, staging& st);
  /// The chain entry of the records this transaction appended (chain.cpp).
  lmdb_result<> stage_chain(MDB_txn* txn, const staging& st);
  /// The name entries of new streams and the catalogue entries of new types.
  lmdb_result<> stage_names_and_types(MDB_txn* txn, const staging& st);
  event_id new_event_id();
  /// Commits `txn`; a failed flush with earlier commits unflushed breaks the store.
  lmdb_result<> commit(txn_guard& txn);
  /// After the commit: the writer's caches learn it, without allocating.
  void learn_commit(staging& st, const head_plan& plan);
  /// Commits a transaction staged through `st` and `plan`, then releases the
  /// preallocator's `guard` and learns the commit (caches, heads).
  lmdb_result<> commit_staged(txn_guard& txn, std::optional<preallocator::guard>& guard,
                              staging& st, const head_plan& plan);

  // -- heads (heads.cpp) -----------------------------------------------------------

  /// The writer's view of a stream head: staged, cached or stored.
  lmdb_result<head_state*> writer_head(MDB_txn* txn, std::string_view stream, staging& st);
  /// Sends the changed heads of `st` to the head log, or rewrites the heads
  /// table every heads_flush_events events.
  lmdb_result<head_plan> stage_heads(MDB_txn* txn, const staging& st);
  lmdb_result<> rewrite_heads(MDB_txn* txn, const head_pairs& changed, std::uint64_t position);
  /// Writes (stream number, last position) heads, one read-modify-write per
  /// bucket touched; for a stream listed twice, the higher position wins.
  lmdb_result<> write_heads(MDB_txn* txn, head_pairs& heads);
  /// Writer, at open: the heads the head log holds since heads_at_.
  result<void> load_unflushed(MDB_txn* txn);
  /// A stream's head as `txn` sees it. The writer knows the heads changed
  /// since the last heads rewrite (`unflushed_`); readers find them through
  /// the head log (`tail_position`).
  result<std::optional<head_state>> read_head(MDB_txn* txn, std::string_view stream,
                                              bool writer = false) const;
  result<std::optional<std::uint64_t>> stream_number(MDB_txn* txn, std::string_view stream) const;
  /// Calls `each` with the records of system stream `stream`, newest first
  /// along their back-pointers, up to where retention removed the older ones.
  result<void> walk_system_records(
    MDB_txn* txn, std::string_view stream,
    const std::function<result<void>(const format::record_view&, std::uint64_t)>& each) const;
  /// The position of the last event of stream `no` (never 0).
  result<std::uint64_t> head_position(MDB_txn* txn, std::string_view stream, std::uint64_t no,
                                      bool writer) const;
  /// The version of the record at `position`, the last one of `stream`.
  result<std::uint64_t> version_at(MDB_txn* txn, std::string_view stream,
                                   std::uint64_t position) const;
  /// The position of the last event of `stream_no` among the commits after
  /// the heads rewrite that `txn` sees, or 0 when it has none there.
  result<std::uint64_t> tail_position(MDB_txn* txn, std::uint64_t stream_no) const;
  /// tail_position of a store opened read-only at format 1 (no head log): 0.
  result<std::uint64_t> format1_tail(MDB_txn* txn) const;
  /// tail_position through the readers' index, for the snapshot of `txn`
  /// whose heads rewrite is at `heads_at` and last head-log entry at `last`.
  result<std::uint64_t> indexed_tail(MDB_txn* txn, std::uint64_t stream_no, std::uint64_t heads_at,
                                     std::uint64_t last) const;
  /// The key of the last head-log entry `txn` sees; nullopt when there is none.
  result<std::optional<std::uint64_t>> last_head_log_key(MDB_txn* txn) const;
  /// The heads changed by the commit whose head-log entry is (`key`, `value`),
  /// as (stream number, position) pairs: from the entry, or, when it fails its
  /// checksum, from the log records after `prev_key`, the previous entry.
  result<head_pairs> head_log_entry(MDB_txn* txn, std::uint64_t prev_key, std::uint64_t key,
                                    std::string_view value) const;
  /// Calls `visit(key, pairs)` for each head-log entry in (`after`, `upto`].
  result<void>
  scan_head_log(MDB_txn* txn, std::uint64_t after, std::uint64_t upto,
                const std::function<void(std::uint64_t, const head_pairs&)>& visit) const;
  /// The log position up to which the heads table is complete, as `txn` sees it.
  result<std::uint64_t> read_heads_at(MDB_txn* txn) const;

  // -- reads (read.cpp) --------------------------------------------------------------

  /// Walks the back-pointer chain of `stream` from version `top` down to
  /// `bottom`, calling `emit` for versions in [bottom, keep_top].
  template <class F>
  result<void> walk(MDB_txn* txn, std::string_view stream, const head_state& head,
                    std::uint64_t top, std::uint64_t keep_top, std::uint64_t bottom,
                    F&& emit) const;
  /// Where walk starts: the nearest sparse index entry at or above `top`, or
  /// the head; (version, position).
  result<std::pair<std::uint64_t, std::uint64_t>> walk_start(MDB_txn* txn, std::string_view stream,
                                                             const head_state& head,
                                                             std::uint64_t top) const;

  // -- side tables (side_tables.cpp) ---------------------------------------------------

  /// Checks a batch's snapshots, checkpoints, key-value ops and dead letters.
  result<void> validate_side_tables(const batch_view& b) const;
  result<void> validate_snapshots(span<snapshot> snapshots) const;
  lmdb_result<> stage_snapshot(MDB_txn* txn, const snapshot& snap, staging& st);
  /// Deletes all but the newest snapshots_kept snapshots of `stream_no`.
  lmdb_result<> prune_snapshots(MDB_txn* txn, std::uint64_t stream_no);
  /// Stages key-value ops, dead letters and checkpoints.
  lmdb_result<> stage_side_tables(MDB_txn* txn, const batch_view& b);
  lmdb_result<> stage_kv(MDB_txn* txn, const kv_op& op);
  /// Removes every key of a key-value space.
  lmdb_result<> clear_space(MDB_txn* txn, std::string_view space);
  /// Calls `take(key, value)` for every entry of `dbi`, stopping at its first error.
  static result<void>
  for_each_entry(MDB_txn* txn, MDB_dbi dbi,
                 const std::function<result<void>(std::string_view, std::string_view)>& take);

  // -- digest chain (chain.cpp) -------------------------------------------------

  /// Writer, after init: extends the stored chain over the records after its
  /// last entry (an upgrade from format 2, or commits made with
  /// digest_chain off), in transactions of bounded length, and loads its head.
  result<void> extend_chain();
  /// One transaction of extend_chain; true once the chain reaches the log's end.
  lmdb_result<bool> extend_chain_step();
  /// `invalid_argument` saying how to upgrade when the store has no chain.
  result<void> require_chain() const;
  /// The stored chain entry with the greatest position <= `position`, as
  /// (position, h); (0, zeros) when there is none.
  result<std::pair<std::uint64_t, format::digest>> chain_base(MDB_txn* txn,
                                                              std::uint64_t position) const;
  // -- command log (command_log.cpp) ------------------------------------------------------

  /// Writer, at open: the sequence after the command log's last entry.
  result<void> load_command_log_end(MDB_txn* txn);
  /// Records `req.command` (set) with the outcome `r` of its append.
  lmdb_result<> stage_command(MDB_txn* txn, const append_request& req, const append_result& r,
                              staging& st, std::int64_t now);
  // -- data subjects (keys.cpp, subjects.cpp) ---------------------------------------

  /// The keys and subjects tables (format 3); a read-only open of an older store sees none.
  result<void> open_key_tables(MDB_txn* txn);
  /// Loads the master key and makes the key ring, when the options name one.
  result<void> open_key_ring();
  /// Records that stream `stream_no` has events about `subject`, and stores
  /// the subject's data key when it is pending.
  lmdb_result<> stage_subject(MDB_txn* txn, const std::string& subject, const std::string& stream,
                              staging& st);
  /// Deletes the subject's data key, the snapshots of its streams and its
  /// subject-index entries.
  lmdb_result<> stage_forget(MDB_txn* txn, const std::string& subject);
  /// Appends the forget record of `subject` (a system record, "$forget"),
  /// so the log says when it was forgotten and a standby deletes its key too.
  lmdb_result<> stage_forget_record(MDB_txn* txn, const std::string& subject, staging& st,
                                    std::int64_t now);
  /// `invalid_argument` for a subject to forget that is empty or too long.
  result<void> validate_forget(span<std::string> subjects) const;
  /// Streams with events about `subject`, in name order.
  result<std::vector<std::string>> subject_streams(std::string_view subject) const override;

  // -- replication (replication.cpp) ----------------------------------------------------

  /// The write loop of the replication writes: runs `attempt` (one write
  /// transaction) until it commits or fails for good, growing the map when
  /// it is full, then flushes as the store's durability says.
  template <class T> result<T> replication_write(const std::function<lmdb_result<T>()>& attempt);
  /// One attempt at apply_frame over the verified `records` of `frame`: the
  /// outer failure aborts (an LMDB failure), the inner one refuses the frame.
  lmdb_result<result<std::uint64_t>> try_apply(const log_frame& frame,
                                               const std::vector<format::record_view>& records);
  lmdb_result<result<epoch_info>> try_begin_epoch(std::uint64_t epoch, std::string_view node);
  lmdb_result<result<truncation>> try_truncate(std::uint64_t position, truncation out);
  /// Writer, at open: the header's epoch.
  result<void> load_epoch(MDB_txn* txn);
  /// The newest epoch record at or before the head of "$epoch" that `txn`
  /// sees, as (epoch, position); (0, 0) when there is none.
  result<std::pair<std::uint64_t, std::uint64_t>> newest_epoch_record(MDB_txn* txn) const;
  // -- retention (retention.cpp) ---------------------------------------------------------

  /// The position from which the log is complete (1: never cut).
  result<std::uint64_t> log_cut(MDB_txn* txn) const;
  /// Stream number `no`'s first kept version and its position; (1, 0) when never cut.
  result<std::pair<std::uint64_t, std::uint64_t>> stream_cut(MDB_txn* txn, std::uint64_t no) const;
  /// `truncated`: a read of the log from `from`, below the cut at `first`.
  error truncated_log(std::uint64_t from, std::uint64_t first) const;
  /// `truncated`: a read of `stream` from version `from`, below its first kept one.
  error truncated_stream(std::string_view stream, std::uint64_t from, std::uint64_t first) const;
  /// Runs `stage` in write transactions until one commits (it returned
  /// true), stages nothing (false: aborted) or fails for good (a full map
  /// grows the map and retries). `committed` says which.
  result<void> retention_write(const std::function<lmdb_result<bool>(MDB_txn*)>& stage,
                               bool& committed);
  /// Moves the log's cut from `cut` to `new_cut`, with the chain's anchor at
  /// new_cut - 1 (computed from the records still there).
  lmdb_result<> move_log_cut(MDB_txn* txn, std::uint64_t cut, std::uint64_t new_cut);
  /// Drops at most 10,000 chain entries below the anchor at `cut` - 1; how many.
  lmdb_result<std::size_t> drop_stale_chain(MDB_txn* txn, std::uint64_t cut);

  // -- verify (verify.cpp) ---------------------------------------------------------------

  /// The log record at `pos`, checked to belong to stream number `no` at
  /// `version` (and to carry `command`, when not empty); "" or the problem.
  std::string check_record(MDB_txn* txn, std::uint64_t pos, std::uint64_t no, std::uint64_t version,
                           std::string_view command) const;
  /// Walks `dbi` in read transactions of bounded length, resuming after the
  /// last key seen, and calls `check(txn, key, value)` for each entry.
  result<void> scan_in_chunks(
    MDB_dbi dbi,
    const std::function<void(MDB_txn*, std::string_view, std::string_view)>& check) const;
  void check_index_entry(MDB_txn* txn, std::string_view key, std::string_view value,
                         const problem_sink& problem) const;
  void check_command_record(MDB_txn* txn, std::string_view key, std::string_view value,
                            const problem_sink& problem) const;

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
  /// False when a read-only open found a store of format 2 or older: no
  /// digest chain (a writable open adds it).
  bool has_chain_ = true;
  MDB_dbi chain_ = 0;
  /// False when a read-only open found a store written before the command
  /// log existed: it reads as empty.
  bool has_command_log_ = true;
  MDB_dbi command_log_ = 0;
  /// The cuts of retention (retention.cpp); false when a read-only open
  /// found a store never opened for writing since the table was added.
  bool has_retention_ = true;
  MDB_dbi retention_ = 0;
  /// subject -> wrapped data key; subject ‖ 0 ‖ stream number -> (empty).
  MDB_dbi keys_ = 0, subjects_ = 0;
  bool has_key_tables_ = true;
  /// null without a master key.
  std::unique_ptr<lmdb_key_ring> ring_;
  std::uint32_t format_version_ = format::current_version; ///< as opened (after any upgrade)

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
  std::unique_ptr<preallocator> prealloc_; ///< null when off
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
  std::uint64_t next_command_ = 1; ///< The next command-log sequence.
  /// Every stream the writer has looked up, including ones found absent
  /// (stream_no 0): the flock makes this process the only writer, so the
  /// cache is never stale.
  head_cache head_cache_;
  /// The tenants the cached heads point to; cleared with head_cache_.
  std::unordered_set<std::string> tenants_;
  std::uint64_t txn_serial_ = 0;
  std::set<std::pair<std::string, std::uint32_t>> known_types_;
  std::string last_type_; ///< The last appended type known to the catalogue.
  std::uint32_t last_type_version_ = 0;
  splitmix64 rng_;
  /// Log position up to which the heads table is complete.
  std::uint64_t heads_at_ = 0;
  /// Stream number -> last position, for streams appended to after heads_at_.
  std::unordered_map<std::uint64_t, std::uint64_t> unflushed_;
  /// Whether commits extend the chain: digest_chain, once the chain is caught up.
  bool chain_on_ = false;
  /// The chain's head, at last_position_ while chain_on_.
  format::digest chain_head_{};
  /// Digest prefixes of the records the current write transaction appended.
  std::string chain_prefixes_;
  /// The header's epoch and the position of its epoch record (0: none).
  std::uint64_t epoch_ = 0;
  std::uint64_t epoch_position_ = 0;
};

template <class F>
auto lmdb_store::with_read(F&& f) const -> decltype(f(static_cast<MDB_txn*>(nullptr))) {
  std::shared_lock lock{remap_, std::defer_lock};
  auto raw = begin_read(lock);
  if (!raw)
    return tl::unexpected(raw.error());
  txn_guard txn{*raw};
  try {
    return f(*raw);
  } catch (const std::exception& e) { // bad_alloc, or a caller's visitor
    return fail(errc::internal, std::string{"read failed: "} + e.what(), dir_);
  }
}

} // namespace cairn::persistence::detail
