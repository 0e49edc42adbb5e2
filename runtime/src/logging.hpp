#pragma once

// cairn's loggers: created once per process with one distributing sink, so
// each runtime::start can change where lines go and how they look while
// other threads log.

#include <memory>
#include <vector>

#include <spdlog/formatter.h>

#include "cairn/runtime/options.hpp"

namespace cairn::detail {

/// Sends the lines of every cairn logger to `sinks` (stderr when empty) in
/// `format`, and sets their levels: info, then what SPDLOG_LEVEL says.
void configure_logging(log_encoding format, const std::vector<spdlog::sink_ptr>& sinks);

/// The formatter of `format`; JSON escapes the message.
[[nodiscard]] std::unique_ptr<spdlog::formatter> make_formatter(log_encoding format);

} // namespace cairn::detail
