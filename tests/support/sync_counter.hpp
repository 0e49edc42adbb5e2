#pragma once

#include <cstdint>

namespace cairn::test {

/// How many fdatasync calls this process has completed. Tests use it to see
/// how often LMDB (and so the store) flushed to disk: the support library
/// defines fdatasync itself, counting, and forwards to the C library's.
[[nodiscard]] std::uint64_t fdatasync_count() noexcept;

} // namespace cairn::test
