#pragma once

/// Stream names: `<category>-<id>`, 1 to 255 bytes of [A-Za-z0-9_.:@-].
///
///   auto ok = cairn::validate_stream_name("account-42");   // ok
///   cairn::category_of("provider_group-a-1");             // "provider_group"
///   cairn::stream_name_of("account", "42");               // "account-42"
///   auto s = cairn::aggregate_stream("account", "-x");    // invalid_argument

#include <cstddef>
#include <string>
#include <string_view>

#include "cairn/model/error.hpp"

namespace cairn {

/// Longest stream name in bytes.
inline constexpr std::size_t max_stream_name_size = 255;

/// True for the bytes a stream name may contain.
[[nodiscard]] constexpr bool is_stream_name_char(char c) noexcept {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_'
         || c == '.' || c == ':' || c == '@' || c == '-';
}

/// The category: the part before the first '-' (the whole name when there is none).
[[nodiscard]] constexpr std::string_view category_of(std::string_view stream) noexcept {
  return stream.substr(0, stream.find('-'));
}

/// Checks a stream name; `invalid_argument` naming the problem otherwise.
/// A name needs a non-empty category prefix and a non-empty id after the first '-'.
[[nodiscard]] inline result<void> validate_stream_name(std::string_view name) {
  auto bad = [&](std::string why) {
    return fail(errc::invalid_argument, "invalid stream name: " + why,
                std::string{name.substr(0, 64)});
  };
  if (name.empty())
    return bad("empty");
  if (name.size() > max_stream_name_size)
    return bad("longer than 255 bytes (" + std::to_string(name.size()) + ")");
  for (std::size_t i = 0; i < name.size(); ++i)
    if (!is_stream_name_char(name[i]))
      return bad("byte " + std::to_string(i) + " is not one of [A-Za-z0-9_.:@-]");
  auto dash = name.find('-');
  if (dash == std::string_view::npos)
    return bad("no category prefix (expected <category>-<id>)");
  if (dash == 0)
    return bad("empty category before '-'");
  if (dash + 1 == name.size())
    return bad("empty id after '-'");
  return {};
}

/// The stream of aggregate `id` of type `category`: "<category>-<id>".
[[nodiscard]] inline std::string stream_name_of(std::string_view category, std::string_view id) {
  std::string out;
  out.reserve(category.size() + 1 + id.size());
  out += category;
  out += '-';
  out += id;
  return out;
}

/// Checks an aggregate id and returns its stream. An id is not empty, does
/// not start with '-' (the category would become ambiguous), and makes a
/// valid stream name with its category.
[[nodiscard]] inline result<std::string> aggregate_stream(std::string_view category,
                                                          std::string_view id) {
  if (id.empty() || id.front() == '-')
    return fail(errc::invalid_argument, "invalid aggregate id", std::string{id.substr(0, 64)});
  auto stream = stream_name_of(category, id);
  if (auto ok = validate_stream_name(stream); !ok)
    return tl::unexpected(ok.error());
  return stream;
}

} // namespace cairn
