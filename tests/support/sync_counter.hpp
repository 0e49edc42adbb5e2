#pragma once

#include <cstdint>

namespace cairn::test {

/// How many fdatasync calls this process has completed. Tests use it to see
/// how often LMDB (and so the store) flushed to disk: the support library
/// defines fdatasync itself, counting, and forwards to the C library's.
[[nodiscard]] std::uint64_t fdatasync_count() noexcept;

/// Makes the fdatasync call `calls_from_now` calls ahead (0: the next one)
/// fail with `err` instead of flushing, as a failing disk would.
void fail_fdatasync(std::uint64_t calls_from_now, int err) noexcept;

} // namespace cairn::test
