#pragma once

/// The event store: streams of events in one global log, plus snapshots and
/// checkpoints, on LMDB.
///
///   auto store = cairn::persistence::open_store("./cairn-data", {});
///   if (!store) return fail(store.error());
///   append_request req{"account-42", expected_version::no_stream(), {...}, {}};
///   auto res = (*store)->append(req);            // res->last_version == 1
///   auto events = (*store)->read_stream("account-42", 1, 100);
///
/// Threads: the write calls (`append`, `append_batch*`, `save_*`, `sync`,
/// `commits`) must come from one thread at a time (the journal). Every read
/// call may run on any thread, concurrently with each other and with the
/// writer; a read sees only whole committed transactions.

#include <array>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "cairn/model/error.hpp"
#include "cairn/persistence/options.hpp"
#include "cairn/persistence/replication.hpp"
#include "cairn/persistence/retention.hpp"
#include "cairn/persistence/types.hpp"

namespace cairn::persistence {

class key_ring;

/// Where a read starts or stops without a bound.
inline constexpr std::uint64_t no_limit = std::numeric_limits<std::uint64_t>::max();

/// Figures about a store, for tools and metrics.
struct store_stats {
  std::uint64_t events = 0; ///< Records in the global log (== last position).
  std::uint64_t streams = 0;
  std::uint64_t snapshots = 0;
  std::uint64_t checkpoints = 0;
  std::uint64_t kv_entries = 0; ///< Keys of every key-value space.
  std::uint64_t dead_letters = 0;
  std::size_t map_size = 0; ///< Current map size in bytes.
  std::size_t map_used = 0; ///< Bytes in use (pages times page size).
  std::uint32_t format_version = 0;
};

/// A position of the global log and the chained digest of every record up to
/// it: h_0 = 32 zero bytes, h_n = BLAKE2b-256(h_{n-1} || record n's stored
/// bytes) (docs/audit.md). Publishing one commits the store to its log up to
/// that position.
struct log_digest {
  std::uint64_t position = 0;
  std::array<unsigned char, 32> digest{};
};

/// What event_store::check_chain found.
struct chain_check {
  std::uint64_t records = 0; ///< Records hashed.
  /// The first position checked: 1, or the first after retention's cut,
  /// where the chain starts from its anchor (docs/audit.md#retention).
  std::uint64_t from = 1;
  std::uint64_t log_end = 0;    ///< Position of the last record read (at most `upto`).
  std::uint64_t chained_to = 0; ///< The stored chain reaches this position.
  /// The first position that is missing, fails its checksum, or no longer
  /// matches the chain the writer stored; 0 when none does.
  std::uint64_t first_broken = 0;
  std::string problem; ///< What is wrong at first_broken.
  /// The recomputed digest at `upto` (at the last record for no_limit);
  /// nullopt when the log ends before `upto`.
  std::optional<log_digest> at;
};

class event_store {
public:
  virtual ~event_store() = default;
  event_store() = default;
  event_store(const event_store&) = delete;
  event_store& operator=(const event_store&) = delete;

  // -- writes (one thread at a time) ----------------------------------------

  /// Appends the events of `req` atomically. `conflict` when `req.expected`
  /// does not admit the stream's version; `invalid_argument` for a bad name,
  /// oversize or unknown events; `unavailable` when the map or disk is full.
  [[nodiscard]] virtual result<append_result> append(const append_request& req) = 0;

  /// Commits everything in `batch` in ONE transaction (one fsync). A request
  /// that fails its own checks (conflict, invalid input) fails alone, in its
  /// slot of the returned vector; the others are written. The outer error
  /// means nothing at all was written: the map or the disk is full, the store
  /// is read-only, a checkpoint or snapshot is invalid, or stored bytes are
  /// corrupted. Or the flush to disk failed, after which the commit may be
  /// visible but not durable, and the store takes no more writes (see sync).
  [[nodiscard]] virtual result<std::vector<result<append_result>>>
  append_batch(const write_batch& batch) = 0;

  /// append_batch for a writer that pipelines its commits (the journal): one
  /// flush per commit instead of two. Under `durability::sync` it returns once
  /// the commit's pages are flushed and its meta page is written but not yet
  /// flushed: the commit is visible and survives a crash of the process, not
  /// yet a power loss. The next commit that changes something flushes that
  /// meta page with its own pages; `sync()` flushes it alone. Acknowledge a
  /// commit once `commits().durable` reaches it. In the other modes, the same
  /// as append_batch.
  [[nodiscard]] virtual result<std::vector<result<append_result>>>
  append_batch_deferred(const write_batch& batch) = 0;

  /// Makes every commit durable that append_batch_deferred left unflushed
  /// (one fdatasync; nothing when there is none). When a flush fails (this
  /// one, or a commit's while earlier commits wait for theirs), the store
  /// refuses every later write with `unavailable`: what is on the disk is
  /// then unknown until the store is reopened.
  [[nodiscard]] virtual result<void> sync() = 0;

  /// Where the writer's commits stand. Commits are numbered in order, and a
  /// commit that changes nothing takes no number.
  struct commit_marks {
    std::uint64_t last = 0;    ///< The newest commit.
    std::uint64_t durable = 0; ///< Every commit up to this one survives a power loss.
  };
  [[nodiscard]] virtual commit_marks commits() const noexcept = 0;

  /// True once the store refuses every write: a flush failed (see sync),
  /// LMDB stopped the environment (MDB_PANIC, a failed meta page write:
  /// reads then fail with `unavailable` too), or a write met a damaged
  /// B-tree page. Only reopening the store lets it write again.
  [[nodiscard]] virtual bool refuses_writes() const noexcept = 0;

  /// Reader slots of dead processes the writer cleared since the open (a
  /// reader killed inside a read transaction pins the pages of its snapshot
  /// until its slot is cleared, so the file grows). The writer checks at
  /// open, every 1024 commits or 10 s, and before it grows the map. Any thread.
  [[nodiscard]] virtual std::uint64_t stale_readers_cleared() const noexcept { return 0; }

  /// Stores a snapshot (checksummed). The two newest per stream are kept.
  [[nodiscard]] virtual result<void> save_snapshot(const snapshot& snap) = 0;

  /// Stores a named position.
  [[nodiscard]] virtual result<void> save_checkpoint(const checkpoint& cp) = 0;

  // -- reads (any thread) ----------------------------------------------------

  /// Events of `stream` with versions from `from_version`, oldest first, at most `max`.
  /// An unknown stream gives an empty vector. The stream as it stood at version
  /// `v` (time travel by version): `read_stream(stream, 1, v)`.
  [[nodiscard]] virtual result<std::vector<recorded_event>>
  read_stream(std::string_view stream, std::uint64_t from_version, std::size_t max) const = 0;

  /// Calls `visit` for the events of `stream` from `from_version`, oldest
  /// first, at most `max`, without copying them (the fast path for replay).
  /// Stops early when `visit` returns false. Returns how many were visited.
  /// The read transaction stays open during the calls: keep `visit` short.
  [[nodiscard]] virtual result<std::uint64_t>
  visit_stream(std::string_view stream, std::uint64_t from_version, std::size_t max,
               const std::function<bool(const event_view&)>& visit) const = 0;

  /// Events of `stream` from `from_version` down (`no_limit` = from the last), newest first.
  [[nodiscard]] virtual result<std::vector<recorded_event>>
  read_stream_backward(std::string_view stream, std::uint64_t from_version,
                       std::size_t max) const = 0;

  /// Time travel: the leading events of `stream` whose timestamps are at or
  /// before `timestamp_ns` (the stream as it stood then).
  [[nodiscard]] virtual result<std::vector<recorded_event>>
  read_stream_until_time(std::string_view stream, std::int64_t timestamp_ns) const = 0;

  /// The stream's current version; 0 when it does not exist.
  [[nodiscard]] virtual result<std::uint64_t> stream_version(std::string_view stream) const = 0;

  /// Up to `max` events of the global log from `from_position` that match
  /// `filter`, scanning at most 65,536 records per call (`next_position` says
  /// where to go on). From below first_position(): `truncated` naming it,
  /// unless `filter.kept_below_cut` asks for the records retention kept there.
  [[nodiscard]] virtual result<log_page> read_all(std::uint64_t from_position, std::size_t max,
                                                  const read_filter& filter = {}) const = 0;

  /// The result of the append that recorded `command_id` on `stream`, marked
  /// `duplicate`; nullopt when that command id was never appended there.
  [[nodiscard]] virtual result<std::optional<append_result>>
  find_command(std::string_view stream, std::string_view command_id) const = 0;

  /// Up to `max` entries of the command log (append_request::command), from
  /// sequence `from_sequence` on, whose stream names start with
  /// `stream_prefix` (empty: every stream), in sequence order: commit order
  /// over all streams, and command order within one. Every entry scanned is
  /// verified: `corrupted` names the sequence of one that fails. A store
  /// without the command log (written before format 3, opened read-only)
  /// reads as empty.
  [[nodiscard]] virtual result<command_page>
  read_commands(std::uint64_t from_sequence, std::size_t max,
                std::string_view stream_prefix = {}) const = 0;

  /// Position of the newest event; 0 for an empty store.
  [[nodiscard]] virtual result<std::uint64_t> last_position() const = 0;

  /// Streams whose names start with `prefix`, in name order, at most `max`.
  [[nodiscard]] virtual result<std::vector<stream_info>>
  list_streams(std::string_view prefix, std::size_t max = no_limit) const = 0;

  /// The newest snapshot of `stream` with version <= `max_version`; nullopt if
  /// none. A snapshot failing its checksum is `corrupted`, naming its version;
  /// ask again with a lower `max_version` to fall back to an older one.
  [[nodiscard]] virtual result<std::optional<snapshot>>
  load_snapshot(std::string_view stream, std::uint64_t max_version = no_limit) const = 0;

  /// The position saved under `name`; nullopt if none.
  [[nodiscard]] virtual result<std::optional<std::uint64_t>>
  load_checkpoint(std::string_view name) const = 0;

  /// Every checkpoint, in name order.
  [[nodiscard]] virtual result<std::vector<checkpoint>> list_checkpoints() const = 0;

  /// The (type, schema version) pairs the store holds, sorted.
  [[nodiscard]] virtual result<std::vector<std::pair<std::string, std::uint32_t>>>
  type_catalogue() const = 0;

  /// The value of `key` in key-value `space`; nullopt if absent.
  [[nodiscard]] virtual result<std::optional<std::string>> kv_get(std::string_view space,
                                                                  std::string_view key) const = 0;

  /// Up to `max` entries of `space` whose keys start with `prefix`, in key
  /// order, starting after key `after` (empty: from the first). Page with the
  /// last key returned.
  [[nodiscard]] virtual result<std::vector<std::pair<std::string, std::string>>>
  kv_scan(std::string_view space, std::string_view prefix, std::string_view after = {},
          std::size_t max = no_limit) const = 0;

  /// Dead letters of `subscriber` (empty: of every subscriber), by subscriber
  /// then position, at most `max`.
  [[nodiscard]] virtual result<std::vector<dead_letter>>
  list_dead_letters(std::string_view subscriber, std::size_t max = no_limit) const = 0;

  [[nodiscard]] virtual result<std::uint64_t>
  count_dead_letters(std::string_view subscriber) const = 0;

  /// Everything besides the log that subscribers keep, read in ONE read
  /// transaction so a projection's checkpoint and its read model agree:
  /// every checkpoint, every key-value entry (as kv_op puts) and every dead
  /// letter. For export and backup tools.
  struct side_tables {
    std::vector<checkpoint> checkpoints;
    std::vector<kv_op> kv;
    std::vector<dead_letter> dead_letters;
  };
  [[nodiscard]] virtual result<side_tables> read_side_tables() const = 0;

  [[nodiscard]] virtual result<store_stats> stats() const = 0;

  /// What check_indexes read.
  struct index_check {
    std::uint64_t index_entries = 0;   ///< Sparse stream index entries checked.
    std::uint64_t command_records = 0; ///< Idempotency (command id) records checked.
  };
  /// Checks the tables that point into the log against it (for `cairn
  /// verify`): every sparse stream index entry names a record of its stream
  /// and version, and every command record a range of records of its stream
  /// that carry its command id. Calls `problem(position, message)` for each
  /// mismatch (position 0: none to name) and goes on. Reads in transactions
  /// of bounded length, so memory stays bounded on any store. The outer
  /// error: the tables cannot be read at all. Any thread.
  [[nodiscard]] virtual result<index_check>
  check_indexes(const std::function<void(std::uint64_t, std::string)>& problem) const {
    (void)problem;
    return index_check{};
  }

  /// The digest of the log up to `position` (no_limit: up to its last
  /// record), recomputed from the nearest stored chain entry at or below it.
  /// `invalid_argument` past the end of the log, or for a store opened
  /// read-only before it had a digest chain (format 2: the message says how
  /// to upgrade); `corrupted` naming the position when a record on the way
  /// is missing or fails its checksum. Any thread.
  [[nodiscard]] virtual result<log_digest> digest_at(std::uint64_t position) const = 0;

  /// Recomputes the digest chain from the first record up to `upto`
  /// (no_limit: the end), comparing every record with the chain the writer
  /// stored, and reports the first broken link (for `cairn verify`). Reads in
  /// transactions of bounded length. The outer error: the log cannot be read
  /// at all, or the store has no chain (as digest_at). Any thread.
  [[nodiscard]] virtual result<chain_check> check_chain(std::uint64_t upto) const = 0;

  // -- retention (docs/audit.md#retention) -----------------------------------

  /// What `policy` would remove as of `now_ns` (ns since the Unix epoch), and
  /// what holds the rest back. Reads only. Any thread.
  [[nodiscard]] virtual result<retention_plan> plan_retention(const retention_policy& policy,
                                                              std::int64_t now_ns) const = 0;

  /// Removes what `plan` lists, in write transactions of at most 10,000
  /// records, each consistent on its own (a stream always reads from one
  /// version on; the log is complete from first_position on; the digest
  /// chain keeps an anchor at first_position - 1). Streams the store changed
  /// since the plan in a way that keeps their events (a snapshot forgotten, a
  /// checkpoint moved back) are skipped and named. Writer thread only.
  [[nodiscard]] virtual result<retention_result> apply_retention(const retention_plan& plan) = 0;

  /// The position from which the log is complete: every record from it on is
  /// kept. 1 for a store never cut. Records below it that retention kept (a
  /// stream's newest, say) are read through their streams; read_all from a
  /// position below it answers `truncated`, unless it asks for them with
  /// read_filter::kept_below_cut. Any thread.
  [[nodiscard]] virtual result<std::uint64_t> first_position() const = 0;

  /// first_position, the last position and the number of records, from ONE
  /// read transaction, in constant time: what a reader of a cut log reports
  /// (log_extent::kept_below). Read every kept record with
  /// read_filter::kept_below_cut. Any thread.
  [[nodiscard]] virtual result<log_extent> extent() const = 0;

  /// Writes a compacted copy of the store as of one read transaction into
  /// `dest_dir` (a hot backup: safe while the writer appends, which it does
  /// not block). `dest_dir` must not exist or be an empty directory; it then
  /// holds a complete store of the same format that `open_store` opens.
  /// `invalid_argument` when `dest_dir` is not an empty directory,
  /// `unavailable` when it cannot be created or written (the partial copy is
  /// removed). Any thread.
  [[nodiscard]] virtual result<void> copy_to(const std::string& dest_dir) const = 0;

  /// The data keys of subjects (personal.hpp), for encoding and decoding
  /// events with personal data; null when the store has no master key. Any
  /// thread; it lives as long as the store.
  [[nodiscard]] virtual const key_ring* personal_keys() const noexcept { return nullptr; }

  /// The streams with events about data subject `subject` (metadata::subject),
  /// in name order, from the subject index; empty once it was forgotten.
  [[nodiscard]] virtual result<std::vector<std::string>>
  subject_streams(std::string_view subject) const {
    (void)subject;
    return std::vector<std::string>{};
  }

  /// The store's forget records (a `forget` writes one per subject), oldest
  /// first: the audit trail of forgetting, and what a reader that counts
  /// the log's events leaves out besides the epochs. One entry per forget
  /// record in memory. Any thread.
  [[nodiscard]] virtual result<std::vector<forget_info>> forgets() const {
    return std::vector<forget_info>{};
  }

  // -- replication (docs/cluster.md#replica-store) ---------------------------

  /// The records from `from_position` on, as stored, read in one short read
  /// transaction: the first one always (when it exists), then as many as fit
  /// in `max_bytes` of record bytes. An empty frame (first_position =
  /// from_position) when `from_position` is past the last position.
  /// `invalid_argument` for position 0. Any thread.
  [[nodiscard]] virtual result<log_frame> read_frame(std::uint64_t from_position,
                                                     std::size_t max_bytes) const = 0;

  /// The store's epochs, oldest first, from the epoch records in its log;
  /// empty when none began. Any thread.
  [[nodiscard]] virtual result<std::vector<epoch_info>> epochs() const = 0;

  /// The newest epoch (from the store header); 0 when none began. Any thread.
  [[nodiscard]] virtual result<std::uint64_t> current_epoch() const = 0;

  /// Writes the records of `frame` at exactly their positions, in ONE write
  /// transaction, maintaining every table an append maintains (heads, stream
  /// index, command ids, subject index, type catalogue, digest chain), so
  /// the replica answers every read as the source does and takes appends
  /// after a promotion. Each record is verified first (checksum with its
  /// position, layout, stream name): `corrupted` naming the position.
  /// Idempotent by position: records at or below the last position are
  /// compared byte for byte and skipped when equal; `conflict` naming the
  /// position when one differs (divergent history: see truncate_after);
  /// `invalid_argument` naming both positions for a gap (first_position past
  /// last + 1). `corrupted` when a record's stream version is not its
  /// stream's head + 1 or its previous position not the stream's head. An
  /// epoch record moves the store header's epoch too. The frame's
  /// checkpoints (the owner's) are written in the same transaction under
  /// replicated_checkpoint_name, each at most the new last position; a frame
  /// may carry only those. `invalid_argument` for more than
  /// max_frame_checkpoints of them, or a name that is empty, longer than 255
  /// bytes or begins with replicated_checkpoint_prefix (nothing is written).
  /// Durable as an append under the store's options. Returns the new last
  /// position. Writer thread.
  [[nodiscard]] virtual result<std::uint64_t> apply_frame(const log_frame& frame) = 0;

  /// Begins epoch `epoch`, owned by `node` (1-255 bytes): appends an epoch
  /// record to the log (a system record, stream and type "$epoch") and sets
  /// the store header's epoch, in one write transaction, so a standby copying
  /// the log copies the epoch history with it. `conflict` unless `epoch` >
  /// current_epoch(). Writer thread.
  [[nodiscard]] virtual result<epoch_info> begin_epoch(std::uint64_t epoch,
                                                       std::string_view node) = 0;

  /// Removes every record after `position` (a divergent tail, for rejoin).
  /// First writes the removed events to `save_file` as JSON lines in the form
  /// `cairn export` writes (created, never overwritten, and fsynced), then
  /// removes them in one write transaction, restoring heads, stream index,
  /// command ids, subject index, digest chain (it ends exactly at
  /// `position`) and the header epoch (the newest epoch record kept). It
  /// drops snapshots of versions that no longer exist and dead letters of
  /// removed events, and lowers checkpoints past `position` to it (listed in
  /// the result: their read models saw removed events). Afterwards the store
  /// reads, digests and appends as one that never had the tail. Nothing to
  /// remove (position >= last position): nothing written. `invalid_argument`
  /// when `save_file` exists or cannot be created. Writer thread; readers in
  /// other processes should reopen the store afterwards.
  [[nodiscard]] virtual result<truncation> truncate_after(std::uint64_t position,
                                                          const std::string& save_file) = 0;

  /// The directory the store lives in.
  [[nodiscard]] virtual const std::string& path() const noexcept = 0;
};

/// Opens (or, unless read-only, creates) the store in `dir`. Fails with
/// `invalid_argument` for a directory that is not a cairn store or holds a
/// newer format, `unavailable` when another process has it open for writing,
/// and names every stored event type the registry cannot decode.
[[nodiscard]] result<std::unique_ptr<event_store>> open_store(const std::string& dir,
                                                              const store_options& options = {});

} // namespace cairn::persistence
