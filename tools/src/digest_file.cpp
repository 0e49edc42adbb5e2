#include "cairn/tools/digest_file.hpp"

#include <limits>
#include <vector>

namespace cairn::tools {

namespace {

constexpr std::string_view signed_header = "cairn signed digest v1";
constexpr std::string_view public_header = "cairn ed25519 public key v1";
constexpr std::string_view secret_header = "cairn ed25519 secret key v1";

result<std::uint64_t> parse_position(std::string_view s) {
  if (s.empty() || s.size() > 20 || s.find_first_not_of("0123456789") != std::string_view::npos)
    return fail(errc::invalid_argument, "a position is 1 to 20 decimal digits");
  std::uint64_t v = 0;
  for (char c : s) {
    auto d = static_cast<std::uint64_t>(c - '0');
    if (v > (std::numeric_limits<std::uint64_t>::max() - d) / 10)
      return fail(errc::invalid_argument, "the position is too large");
    v = v * 10 + d;
  }
  return v;
}

/// The lines of `text`, which must end in '\n'; false when it does not or is too long.
bool split_lines(std::string_view text, std::vector<std::string_view>& lines) {
  if (text.size() > max_digest_file_size || text.empty() || text.back() != '\n')
    return false;
  for (std::size_t at = 0; at < text.size();) {
    auto nl = text.find('\n', at);
    lines.push_back(text.substr(at, nl - at));
    at = nl + 1;
  }
  return true;
}

/// The rest of `line` after `label` and one space; false when it does not start so.
bool field(std::string_view line, std::string_view label, std::string_view& rest) {
  if (line.size() <= label.size() || line.substr(0, label.size()) != label
      || line[label.size()] != ' ')
    return false;
  rest = line.substr(label.size() + 1);
  return true;
}

template <std::size_t N>
result<std::array<unsigned char, N>> parse_key(std::string_view text, std::string_view header,
                                               const char* what) {
  std::vector<std::string_view> lines;
  std::array<unsigned char, N> key{};
  if (!split_lines(text, lines) || lines.size() != 2 || lines[0] != header
      || !from_hex(lines[1], key.data(), N))
    return fail(errc::invalid_argument, std::string{"not a cairn "} + what + " key file ('"
                                          + std::string{header} + "', then " + std::to_string(2 * N)
                                          + " hex digits)");
  return key;
}

} // namespace

std::string hex_of(const unsigned char* bytes, std::size_t n) {
  static constexpr char hex[] = "0123456789abcdef";
  std::string out;
  out.reserve(2 * n);
  for (std::size_t i = 0; i < n; ++i) {
    out.push_back(hex[bytes[i] >> 4]);
    out.push_back(hex[bytes[i] & 0xf]);
  }
  return out;
}

bool from_hex(std::string_view text, unsigned char* out, std::size_t n) {
  if (text.size() != 2 * n)
    return false;
  auto nibble = [](char c) -> int {
    if (c >= '0' && c <= '9')
      return c - '0';
    if (c >= 'a' && c <= 'f')
      return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
      return c - 'A' + 10;
    return -1;
  };
  for (std::size_t i = 0; i < n; ++i) {
    int hi = nibble(text[2 * i]), lo = nibble(text[2 * i + 1]);
    if (hi < 0 || lo < 0)
      return false;
    out[i] = static_cast<unsigned char>(hi << 4 | lo);
  }
  return true;
}

result<published_digest> parse_published_digest(std::string_view text) {
  auto colon = text.find(':');
  published_digest d;
  if (colon == std::string_view::npos)
    return fail(errc::invalid_argument, "a digest is POSITION:HEX, as `cairn digest` prints it");
  auto pos = parse_position(text.substr(0, colon));
  if (!pos)
    return tl::unexpected(pos.error());
  d.position = *pos;
  if (!from_hex(text.substr(colon + 1), d.digest.data(), d.digest.size()))
    return fail(errc::invalid_argument, "a digest's HEX is 64 hex digits");
  return d;
}

std::string format_published_digest(const published_digest& d) {
  return std::to_string(d.position) + ":" + hex_of(d.digest.data(), d.digest.size());
}

std::string signed_digest_message(std::uint64_t position, const digest_bytes& d) {
  return std::string{signed_header} + "\nposition " + std::to_string(position) + "\ndigest "
         + hex_of(d.data(), d.size()) + "\n";
}

std::string format_signed_digest(const signed_digest& s) {
  return signed_digest_message(s.position, s.digest) + "signature "
         + hex_of(s.signature.data(), s.signature.size()) + "\n";
}

result<signed_digest> parse_signed_digest(std::string_view text) {
  auto bad = [](const std::string& why) {
    return fail(errc::invalid_argument, "not a signed digest (cairn digest --sign): " + why);
  };
  std::vector<std::string_view> lines;
  if (!split_lines(text, lines))
    return bad("empty, over " + std::to_string(max_digest_file_size)
               + " bytes, or not ending in a newline");
  if (lines.size() != 4 || lines[0] != signed_header)
    return bad("expected 4 lines, the first '" + std::string{signed_header} + "'");
  signed_digest s;
  std::string_view rest;
  if (!field(lines[1], "position", rest))
    return bad("line 2 is not 'position N'");
  auto pos = parse_position(rest);
  if (!pos)
    return bad(pos.error().message);
  s.position = *pos;
  if (!field(lines[2], "digest", rest) || !from_hex(rest, s.digest.data(), s.digest.size()))
    return bad("line 3 is not 'digest' and 64 hex digits");
  if (!field(lines[3], "signature", rest)
      || !from_hex(rest, s.signature.data(), s.signature.size()))
    return bad("line 4 is not 'signature' and 128 hex digits");
  return s;
}

std::string format_public_key(const public_key_bytes& key) {
  return std::string{public_header} + "\n" + hex_of(key.data(), key.size()) + "\n";
}

result<public_key_bytes> parse_public_key(std::string_view text) {
  return parse_key<32>(text, public_header, "public");
}

std::string format_secret_key(const secret_key_bytes& key) {
  return std::string{secret_header} + "\n" + hex_of(key.data(), key.size()) + "\n";
}

result<secret_key_bytes> parse_secret_key(std::string_view text) {
  return parse_key<64>(text, secret_header, "secret");
}

} // namespace cairn::tools
