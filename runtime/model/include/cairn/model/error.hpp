#pragma once

/// Errors as values. Every fallible call in cairn returns `result<T>`:
///
///   cairn::result<std::uint64_t> v = store.stream_version("account-42");
///   if (!v) {
///     if (v.error().code == cairn::errc::unavailable) retry_later();
///     else log(v.error().to_string());
///   }
///
/// The code says what the caller should do next (docs/errors.md).

#include <cstdint>
#include <exception>
#include <ostream>
#include <string>
#include <string_view>
#include <utility>

#include <tl/expected.hpp>

namespace cairn {

/// What went wrong, named by what the caller should do about it.
enum class errc : std::uint8_t {
  rejected = 1,     ///< The domain said no. Do not retry.
  conflict,         ///< Expected version mismatch. Re-read, re-decide, retry.
  unavailable,      ///< Temporarily cannot serve (map full, disk full, stopped). Retry later.
  overloaded,       ///< Too much work queued. Back off, then retry.
  invalid_argument, ///< The input is wrong. Fix it; retrying the same input fails again.
  corrupted,        ///< Stored bytes failed verification. Stop and alert.
  internal,         ///< A bug or an unexpected failure. Stop and alert.
  /// What was asked for was removed by retention; the message names the first
  /// position or version still kept. Read from there (value 8: codes travel
  /// on the wire, so new ones are only ever appended).
  truncated,
};

/// Stable lower-case name of a code, e.g. "invalid_argument".
[[nodiscard]] constexpr std::string_view to_string(errc code) noexcept {
  switch (code) {
    case errc::rejected: return "rejected";
    case errc::conflict: return "conflict";
    case errc::unavailable: return "unavailable";
    case errc::overloaded: return "overloaded";
    case errc::invalid_argument: return "invalid_argument";
    case errc::corrupted: return "corrupted";
    case errc::internal: return "internal";
    case errc::truncated: return "truncated";
  }
  return "unknown";
}

/// A code plus a message for humans and an optional context (a stream, a position, a path).
struct error {
  errc code = errc::internal;
  std::string message;
  std::string context;

  error() = default;
  error(errc c, std::string msg, std::string ctx = {})
      : code(c), message(std::move(msg)), context(std::move(ctx)) {
    // nop
  }

  /// "conflict: expected version 3, actual 5 [account-1]"
  [[nodiscard]] std::string to_string() const {
    std::string out{cairn::to_string(code)};
    out += ": ";
    out += message;
    if (!context.empty()) {
      out += " [";
      out += context;
      out += ']';
    }
    return out;
  }
};

inline std::ostream& operator<<(std::ostream& os, const error& e) { return os << e.to_string(); }

/// The result of a fallible call: a value or an error.
template <class T> using result = tl::expected<T, error>;

/// Shorthand for returning an error: `return fail(errc::conflict, "...")`.
[[nodiscard]] inline tl::unexpected<error> fail(errc code, std::string message,
                                                std::string context = {}) {
  return tl::unexpected<error>(error{code, std::move(message), std::move(context)});
}

/// The error for the exception that user code (`what`: "decide", "evolve of
/// money_deposited" …) threw; call it inside a catch block only.
[[nodiscard]] inline error thrown_error(const std::string& what, const std::string& where) {
  try {
    throw;
  } catch (const std::exception& e) {
    return {errc::internal, what + " threw: " + e.what(), where};
  } catch (...) {
    return {errc::internal, what + " threw an exception that is not a std::exception", where};
  }
}

} // namespace cairn
