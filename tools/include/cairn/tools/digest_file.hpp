#pragma once

/// The text files of `cairn digest --sign`, `cairn keygen` and `cairn verify
/// --digest/--signed` (docs/audit.md): a published digest `POSITION:HEX`, a
/// signed digest, and Ed25519 key files. Parsing only, no cryptography: the
/// parsers read just the text they are given and answer `invalid_argument`
/// for anything else (tests/fuzz/signed_digest.cpp).
///
///   cairn signed digest v1
///   position 1234
///   digest 5db827e5...(64 hex digits)
///   signature 9f0c...(128 hex digits)
///
/// The signature (Ed25519, detached) covers the first three lines, each
/// ending in '\n', exactly as signed_digest_message() writes them.

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

#include "cairn/model/error.hpp"

namespace cairn::tools {

/// A chained digest of the log (see persistence::log_digest).
using digest_bytes = std::array<unsigned char, 32>;
using signature_bytes = std::array<unsigned char, 64>;
using public_key_bytes = std::array<unsigned char, 32>;
using secret_key_bytes = std::array<unsigned char, 64>;

/// The longest digest or key file the parsers read, in bytes.
inline constexpr std::size_t max_digest_file_size = 4096;

struct published_digest {
  std::uint64_t position = 0;
  digest_bytes digest{};
};

struct signed_digest {
  std::uint64_t position = 0;
  digest_bytes digest{};
  signature_bytes signature{};
};

/// `POSITION:HEX` (64 hex digits); `invalid_argument` otherwise.
[[nodiscard]] result<published_digest> parse_published_digest(std::string_view text);
[[nodiscard]] std::string format_published_digest(const published_digest& d);

/// The bytes the signature of a signed digest covers.
[[nodiscard]] std::string signed_digest_message(std::uint64_t position, const digest_bytes& d);
[[nodiscard]] std::string format_signed_digest(const signed_digest& s);
[[nodiscard]] result<signed_digest> parse_signed_digest(std::string_view text);

[[nodiscard]] std::string format_public_key(const public_key_bytes& key);
[[nodiscard]] result<public_key_bytes> parse_public_key(std::string_view text);
[[nodiscard]] std::string format_secret_key(const secret_key_bytes& key);
[[nodiscard]] result<secret_key_bytes> parse_secret_key(std::string_view text);

/// Lower-case hex of `n` bytes.
[[nodiscard]] std::string hex_of(const unsigned char* bytes, std::size_t n);
/// Decodes exactly `n` bytes from 2n hex digits (either case) into `out`.
[[nodiscard]] bool from_hex(std::string_view text, unsigned char* out, std::size_t n);

} // namespace cairn::tools
