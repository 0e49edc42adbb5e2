#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace cairn::persistence {

class event_registry;

/// How hard a commit works to survive a power loss. A process crash (even
/// SIGKILL) never loses a committed event in any mode.
enum class durability : std::uint8_t {
  /// Flush a commit's pages, then its meta page, before it is acknowledged (the
  /// journal lets the next commit's flush carry the meta page). Nothing
  /// acknowledged is lost.
  sync,
  no_meta_sync, ///< Skip the meta-page fsync: a power loss may undo the last commit.
  /// No fsync: a power loss may undo recent commits, and may corrupt the store
  /// unless the filesystem keeps the order of writes (LMDB's MDB_NOSYNC).
  no_sync,
};

/// Options of `open_store`. The defaults suit a service.
struct store_options {
  /// Map size of a new store, in bytes. Default: 256 MiB.
  std::size_t initial_map_size = std::size_t{256} << 20;
  /// How much the map grows when it is full. Default: 1 GiB.
  std::size_t map_growth_step = std::size_t{1} << 30;
  /// The map never grows past this; appends then fail with `unavailable`. Default: 64 GiB.
  std::size_t max_map_size = std::size_t{64} << 30;
  /// Default: `sync`.
  cairn::persistence::durability durability = durability::sync;
  /// Largest event payload in bytes. Default: 1 MiB.
  std::size_t max_event_size = std::size_t{1} << 20;
  /// Largest snapshot in bytes. Default: 64 MiB.
  std::size_t max_snapshot_size = std::size_t{64} << 20;
  /// Open for reading only (tools). Allowed while another process writes. Default: false.
  bool read_only = false;
  /// Decoders of the stored event types. When set, open fails if a stored
  /// (type, version) cannot be decoded, and appends of unknown types fail.
  /// Default: none (no checks). The registry must outlive the store.
  const event_registry* registry = nullptr;
  /// With a registry: open even if stored types are unknown (tools). Default: false.
  bool allow_unknown_types = false;
  /// Concurrent read transactions (reader threads). Default: 512.
  unsigned max_readers = 512;
  /// The heads table is rewritten once this many events were appended since
  /// its last rewrite; until then, commits record the heads they change in
  /// the small, append-only head log (docs/storage-format.md). Larger means
  /// fewer rewrites and a longer head-log scan when a store opens. 0 rewrites
  /// on every commit. Default: 65536.
  std::uint64_t heads_flush_events = 65536;
  /// Zeroed file space kept written ahead of the data, in bytes: as much as
  /// the data takes, from 1 MiB up to this. Commits then overwrite blocks the
  /// file system has allocated, and their flushes write no file metadata
  /// (docs/storage-format.md#preallocation). The file is that much larger
  /// than its data; never past max_map_size. 0 turns it off; `no_sync` never
  /// uses it. Default: 64 MiB.
  std::size_t preallocate = std::size_t{64} << 20;
  /// Extend the tamper-evident digest chain in every commit (docs/audit.md).
  /// Off, commits skip it (the store bench measures its cost this way) and
  /// the stored chain stops where it was; the next writable open with it on
  /// extends the chain over the records written meanwhile, which are not
  /// tamper-evident until then. Default: true.
  bool digest_chain = true;
  /// A file holding the master key (64 hex digits) that wraps the data keys
  /// of personal data (personal.hpp, docs/audit.md). It must lie outside the
  /// store's directory. Without a master key (this and master_key_env
  /// empty), encoding an event with personal data fails and stored personal
  /// data reads as absent. Default: none.
  std::string master_key_file;
  /// An environment variable holding the master key (64 hex digits), the
  /// alternative to master_key_file. Default: none.
  std::string master_key_env;
};

} // namespace cairn::persistence
