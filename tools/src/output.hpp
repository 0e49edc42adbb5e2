#pragma once

// Shared plumbing of the subcommands: opening a store for reading, JSON and
// text rendering (on top of cairn/tools/text.hpp), progress lines, errors and exit codes.

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "cairn/model/error.hpp"
#include "cairn/persistence/codec.hpp"
#include "cairn/persistence/event_store.hpp"
#include "cairn/tools/digest_file.hpp"
#include "cairn/tools/text.hpp"

namespace cairn::tools::detail {

/// What every subcommand gets.
struct context {
  const persistence::event_registry& types;
  bool json = false;
  /// The master key's source (--master-key, --master-key-env), for the
  /// commands that decrypt personal data; empty: none.
  std::string master_key_file;
  std::string master_key_env;
};

/// Prints `cairn: <error>` and returns its exit code (usage for invalid_argument).
int report(const error& e);

/// Runs `work` in a child process and returns its exit code. LMDB has no page
/// checksums, so reading a damaged B-tree page can crash the reader: when the
/// child dies by a signal, calls `crashed(message)` and returns exit_damaged.
int in_child(const std::function<int()>& work,
             const std::function<void(const std::string&)>& crashed);

/// Opens `dir` read-only; `invalid_argument` when it is missing or not a cairn store.
[[nodiscard]] result<std::unique_ptr<persistence::event_store>> open_read(const std::string& dir);
/// open_read with the master key of `ctx`, so personal data decrypts.
[[nodiscard]] result<std::unique_ptr<persistence::event_store>> open_read(const std::string& dir,
                                                                          const context& ctx);

/// What retention left of a store's log, for the readers that list every
/// record still stored (events, tail, export, export --subject).
struct log_cut {
  persistence::log_extent extent;
  /// Events (the store's own epoch records not counted) up to extent.last_position.
  std::uint64_t events = 0;
  /// Of them, those retention kept below extent.first_position.
  std::uint64_t kept_below = 0;
  [[nodiscard]] bool cut() const { return extent.cut(); }
};
[[nodiscard]] result<log_cut> log_cut_of(const persistence::event_store& store);
/// "retention removed events before position P (the log is complete from
/// there); N kept events lie below it", what the readers of a cut log say once.
[[nodiscard]] std::string cut_note(const log_cut& cut);

/// "1 event", "2 events"
[[nodiscard]] std::string count_of(std::uint64_t n, std::string_view noun);

/// "1.5 MiB"
[[nodiscard]] std::string human_bytes(std::uint64_t bytes);

/// The payload for humans: its JSON, or its size and (the start of) its hex.
[[nodiscard]] std::string payload_text(const persistence::recorded_event& ev,
                                       const persistence::event_registry& types);

/// The non-empty metadata fields as ` name=value` pairs.
[[nodiscard]] std::string metadata_text(const persistence::metadata& m);

/// One updating line on stderr while it is a terminal; silent otherwise.
class progress {
public:
  progress(std::string label, std::uint64_t total);
  ~progress();
  progress(const progress&) = delete;
  progress& operator=(const progress&) = delete;
  /// Redraws at most every 100 ms.
  void update(std::uint64_t done);

private:
  std::string label_;
  std::uint64_t total_;
  bool enabled_;
  bool drawn_ = false;
  std::chrono::steady_clock::time_point last_{};
};

// The subcommands; each returns its exit code.
/// With `tenant`: only the streams of that tenant.
int streams(const context& ctx, const std::string& dir, const std::string& prefix,
            const std::string& tenant = {});
/// With `last`: the newest `*last` events up to `to`, newest first. With
/// `tenant`: only the events of that tenant.
int events(const context& ctx, const std::string& dir, const std::string& stream,
           std::uint64_t from, std::uint64_t to, const std::string& as_of,
           std::optional<std::uint64_t> last, const std::string& tenant = {});
struct tail_options {
  bool follow = false;
  std::vector<std::string> categories;
  std::vector<std::string> types;
  std::string tenant; ///< Only this tenant's events; empty: all.
  std::uint64_t from = 1;
};
int tail(const context& ctx, const std::string& dir, const tail_options& opts);
/// With `tenants`: also events and streams per tenant, from one pass of the log.
int stats(const context& ctx, const std::string& dir, bool tenants = false);
int checkpoints(const context& ctx, const std::string& dir);
int backup(const context& ctx, const std::string& dir, const std::string& dest);
/// A digest `verify` checks the log against: `digest` (POSITION:HEX), or the
/// signed digest in `signed_file` checked with the key in `public_key`.
struct published_options {
  std::string digest;
  std::string signed_file;
  std::string public_key;
  [[nodiscard]] bool given() const { return !digest.empty() || !signed_file.empty(); }
};
int verify(const context& ctx, const std::string& dir, const published_options& published);
/// `cairn digest`: the digest at `at` (no_limit: the last record); signed
/// with the secret key in `key_file` when it is not empty.
int digest(const context& ctx, const std::string& dir, std::uint64_t at,
           const std::string& key_file);
/// `cairn epochs`: the store's epochs, oldest first (table or JSON lines).
int epochs(const context& ctx, const std::string& dir);
int keygen(const context& ctx, const std::string& prefix);
int upgrade(const context& ctx, const std::string& dir);
/// The digest `opts` names; for a signed one, after its signature checked
/// out (`rejected` when it does not).
[[nodiscard]] result<published_digest> published_from(const published_options& opts);
/// nullopt when the log up to the digest's position is the one it was taken
/// from; otherwise the first position that differs (0: unknown) and why.
[[nodiscard]] std::optional<std::pair<std::uint64_t, std::string>>
compare_published(const persistence::event_store& store, const published_digest& pub);
struct export_options {
  /// Only this tenant's events, renumbered from position 1 so the file
  /// imports into a store of its own; no checkpoints, read models or dead
  /// letters (they describe the whole log). Empty: everything.
  std::string tenant;
};
int export_log(const context& ctx, const std::string& dir, const std::string& file,
               const export_options& opts = {});
struct import_options {
  /// Import events whose type (or schema version) the registry cannot decode,
  /// without checking their payloads. Default: false (refused, naming the line).
  bool allow_unknown_types = false;
};
int import_log(const context& ctx, const std::string& dir, const std::string& file,
               const import_options& opts);
struct dlq_options {
  std::string action; ///< list, replay or discard
  std::string subscriber;
  std::uint64_t position = 0; ///< 0: all
};
int dlq(const context& ctx, const std::string& dir, const dlq_options& opts);
/// `cluster status HOST:PORT`: GET /cluster of a node's metrics endpoint.
int cluster_status_cmd(const context& ctx, const std::string& address);
/// `cluster map CONFIG`: version, digest and each node's shards.
int cluster_map_cmd(const context& ctx, const std::string& config);
/// `cluster locate CONFIG STREAM`: the stream's shard and owner.
int cluster_locate_cmd(const context& ctx, const std::string& config, const std::string& stream);
/// `cluster promote HOST:PORT`: POST /cluster/promote to a standby.
int cluster_promote_cmd(const context& ctx, const std::string& address);
/// `cluster replication HOST:PORT async|sync`: POST /cluster/replication/MODE.
int cluster_replication_cmd(const context& ctx, const std::string& address,
                            const std::string& mode);
/// Deletes the data key of `subject` and the snapshots of its streams.
int forget(const context& ctx, const std::string& dir, const std::string& subject);
/// `cairn retention`: the plan of `rules` (CATEGORY=AGE|last:N), or with
/// `apply` its removal (the writer's lock needed).
struct retention_options {
  std::vector<std::string> rules;
  bool apply = false;
};
int retention(const context& ctx, const std::string& dir, const retention_options& opts);
/// Writes every event about `subject`, decrypted where its key exists, to `file`.
int export_subject(const context& ctx, const std::string& dir, const std::string& subject,
                   const std::string& file);

} // namespace cairn::tools::detail
