#pragma once

/// The `cairn` operator CLI as a library, so a service can build its own
/// `cairn` with its event types registered: `events`, `tail` and `export`
/// then show payloads as JSON, and `verify` checks that they decode.
///
///   int main(int argc, char** argv) {
///     cairn::persistence::event_registry types;
///     if (auto ok = cairn::persistence::register_event_types<my_aggregate::event>(types); !ok)
///       return 1;
///     return cairn::tools::run_cli(argc, argv, types);
///   }
///
/// Subcommands and their output: docs/operations.md. Every store is opened
/// read-only except by `import` and `upgrade`, so the CLI runs alongside a
/// writing runtime.

#include <variant>

#include "cairn/model/error.hpp"
#include "cairn/persistence/codec.hpp"

namespace cairn::tools {

/// Exit codes of `run_cli`.
inline constexpr int exit_ok = 0;
/// A failure: the store cannot be read, `verify` found problems, a file cannot be written.
inline constexpr int exit_failure = 1;
/// Bad input: arguments, a DIR that is missing or not a cairn store, a bad
/// stream name or number, a malformed import file.
inline constexpr int exit_usage = 2;
/// `verify` and `export`: reading the store crashed their work (a child
/// process) on damage LMDB cannot detect, such as a damaged B-tree page.
inline constexpr int exit_damaged = 3;

/// Parses `argv`, runs one subcommand and returns its exit code. Output goes
/// to stdout, errors to stderr as one line `cairn: <message>`. Never throws.
/// `types` decodes payloads; unregistered types are shown as hex.
[[nodiscard]] int run_cli(int argc, char** argv, const persistence::event_registry& types);

} // namespace cairn::tools
