#include "lmdb/preallocator.hpp"

#include <fcntl.h>
#include <pthread.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <system_error>

namespace cairn::persistence::detail {

namespace {

constexpr std::uint64_t min_reserve = std::uint64_t{1} << 20;
/// Written per hold of the lock: the most a commit waits for the thread
/// (128 KiB into the page cache takes about 30 µs here).
constexpr std::size_t slice = std::size_t{128} << 10;
/// Written per flush: a commit's flush that runs beside the thread's waits
/// for at most this much (1 MiB of zeros + fdatasync: about 0.9 ms here).
constexpr std::uint64_t chunk = std::uint64_t{1} << 20;

const std::array<char, slice>& zeros() {
  static const std::array<char, slice> z{};
  return z;
}

} // namespace

std::unique_ptr<preallocator> preallocator::start(const std::string& path, std::uint64_t used,
                                                  std::uint64_t limit, std::uint64_t max_size) {
  int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0)
    return nullptr;
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    ::close(fd);
    return nullptr;
  }
  try {
    return std::unique_ptr<preallocator>{
      new preallocator(fd, used, static_cast<std::uint64_t>(st.st_size), limit, max_size)};
  } catch (const std::system_error&) { // no thread: the store works without one
    ::close(fd);
    return nullptr;
  }
}

preallocator::preallocator(int fd, std::uint64_t used, std::uint64_t file_size, std::uint64_t limit,
                           std::uint64_t max_size)
    : fd_(fd), limit_(limit), max_size_(max_size), used_(used), zeroed_(std::max(used, file_size)) {
  target_ = wanted_end();
  thread_ = std::thread([this] { run(); });
  // Named here, not in run(), so that it has its name once the store is open.
  pthread_setname_np(thread_.native_handle(), "cairn.prealloc");
}

preallocator::~preallocator() {
  {
    std::lock_guard lock{mu_};
    stop_ = true;
  }
  wake_.notify_one();
  thread_.join();
  ::close(fd_);
}

preallocator::guard::guard(preallocator* p) : p_(p) {
  p_->writer_waiting_.store(true, std::memory_order_relaxed);
  lock_ = std::unique_lock{p_->mu_};
  p_->writer_waiting_.store(false, std::memory_order_relaxed);
}

void preallocator::guard::committed(std::uint64_t used) {
  p_->used_ = used;
  auto want = p_->wanted_end();
  // Refill once half the reserve is used, so that the thread wakes rarely.
  if (p_->failed_ || p_->zeroed_ >= used + (want - used) / 2)
    return;
  p_->target_ = want;
  p_->wake_.notify_one();
}

std::uint64_t preallocator::wanted_end() const {
  auto reserve = std::clamp(used_, std::min(min_reserve, limit_), limit_);
  return std::max(used_, std::min(used_ + reserve, max_size_));
}

void preallocator::run() {
  std::unique_lock lock{mu_};
  // Never below the data's end: those pages are LMDB's.
  auto next = [&] { return std::max(zeroed_, used_); };
  auto pending = [&] { return !stop_ && !failed_ && next() < target_; };
  for (;;) {
    wake_.wait(lock, [&] { return stop_ || pending(); });
    if (stop_)
      return;
    std::uint64_t wrote = 0;
    while (pending() && wrote < chunk) {
      auto from = next();
      auto n = static_cast<std::size_t>(std::min<std::uint64_t>(slice, target_ - from));
      auto w = ::pwrite(fd_, zeros().data(), n, static_cast<off_t>(from));
      if (w != static_cast<ssize_t>(n)) {
        failed_ = true;
        break;
      }
      zeroed_ = from + n;
      wrote += n;
      if (writer_waiting_.load(std::memory_order_relaxed)) {
        lock.unlock();
        while (writer_waiting_.load(std::memory_order_relaxed))
          std::this_thread::yield(); // until the writer holds the lock
        lock.lock();
      }
    }
    if (wrote == 0)
      continue;
    // Allocate the blocks and record the size now, not in a commit's flush.
    lock.unlock();
    bool flushed = ::fdatasync(fd_) == 0;
    lock.lock();
    if (!flushed)
      failed_ = true;
  }
}

} // namespace cairn::persistence::detail
