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
int streams(const context& ctx, const std::string& dir, const std::string& prefix);
/// With `last`: the newest `*last` events up to `to`, newest first.
int events(const context& ctx, const std::string& dir, const std::string& stream,
           std::uint64_t from, std::uint64_t to, const std::string& as_of,
           std::optional<std::uint64_t> last);
struct tail_options {
  bool follow = false;
  std::vector<std::string> categories;
  std::vector<std::string> types;
  std::uint64_t from = 1;
};
int tail(const context& ctx, const std::string& dir, const tail_options& opts);
int stats(const context& ctx, const std::string& dir);
int checkpoints(const context& ctx, const std::string& dir);
int backup(const context& ctx, const std::string& dir, const std::string& dest);
int verify(const context& ctx, const std::string& dir);
int export_log(const context& ctx, const std::string& dir, const std::string& file);
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
/// Deletes the data key of `subject` and the snapshots of its streams.
int forget(const context& ctx, const std::string& dir, const std::string& subject);
/// Writes every event about `subject`, decrypted where its key exists, to `file`.
int export_subject(const context& ctx, const std::string& dir, const std::string& subject,
                   const std::string& file);

} // namespace cairn::tools::detail
