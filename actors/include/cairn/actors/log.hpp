#pragma once

/// cairn's named loggers. Only the runtime gives them sinks, a format and
/// levels (runtime/src/logging.cpp); the actors just look them up:
///
///   auto log = cairn::actors::logger(cairn::actors::journal_logger);
///   log->error("commit of {} appends failed: {}", n, err.to_string());
///
/// Never log in the per-command path above debug level.

#include <memory>

#include <spdlog/logger.h>

namespace cairn::actors {

inline constexpr const char* runtime_logger = "cairn.runtime";
inline constexpr const char* journal_logger = "cairn.journal";
inline constexpr const char* registry_logger = "cairn.registry";
inline constexpr const char* aggregate_logger = "cairn.aggregate";
inline constexpr const char* subscriber_logger = "cairn.subscriber";
inline constexpr const char* cluster_logger = "cairn.cluster";

/// The logger `name` as the runtime set it up; a logger without sinks (silent)
/// when no runtime has. Look it up once per actor, not per message.
[[nodiscard]] std::shared_ptr<spdlog::logger> logger(const char* name);

} // namespace cairn::actors
