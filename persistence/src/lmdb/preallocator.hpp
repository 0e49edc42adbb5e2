#pragma once

// Zeroed file space ahead of the data in the store's LMDB file, so that a
// commit's flush overwrites blocks that exist instead of also writing the
// file system's metadata for new ones. Why, and the measurements behind it:
// docs/decisions/preallocation.md.
//
// LMDB writes the file's pages only during a write transaction (when it
// commits, and when a large one spills dirty pages before that), and only
// below the end it reports after that commit. So the writer runs each write
// transaction holding a `guard` and reports the new end, and the thread
// writes zeros only above the last reported end, under the same mutex.

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

namespace cairn::persistence::detail {

class preallocator {
public:
  /// Starts the thread for the file at `path`, whose data ends at `used`.
  /// It keeps up to `limit` bytes zeroed ahead of the data (as many as the
  /// data takes, at least 1 MiB or `limit` when smaller) and never grows the
  /// file past `max_size`.
  /// Returns null when the file cannot be opened or the thread not started:
  /// commits then grow the file as LMDB does by itself.
  static std::unique_ptr<preallocator> start(const std::string& path, std::uint64_t used,
                                             std::uint64_t limit, std::uint64_t max_size);
  ~preallocator(); ///< Stops and joins the thread.
  preallocator(const preallocator&) = delete;
  preallocator& operator=(const preallocator&) = delete;

  /// Held by the writer for the whole of a write transaction, from before
  /// it begins until after it commits or aborts.
  class guard {
  public:
    explicit guard(preallocator* p);
    /// After a successful commit: the data now ends at `used`.
    void committed(std::uint64_t used);

  private:
    preallocator* p_;
    std::unique_lock<std::mutex> lock_;
  };

private:
  preallocator(int fd, std::uint64_t used, std::uint64_t file_size, std::uint64_t limit,
               std::uint64_t max_size);
  void run();
  /// Under mu_: the end to fill up to for data ending at used_.
  [[nodiscard]] std::uint64_t wanted_end() const;

  const int fd_;
  const std::uint64_t limit_;
  const std::uint64_t max_size_;
  std::mutex mu_;
  std::condition_variable wake_;
  std::uint64_t used_;   ///< The data's end, as of the last commit.
  std::uint64_t zeroed_; ///< Written (and, once flushed, allocated) up to here.
  std::uint64_t target_ = 0;
  bool stop_ = false;
  bool failed_ = false; ///< A write or flush failed (a full disk): stop filling.
  /// Set while the writer waits for mu_, so the thread yields it between slices.
  std::atomic<bool> writer_waiting_{false};
  std::thread thread_;
};

} // namespace cairn::persistence::detail
