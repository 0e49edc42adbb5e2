// The digest and key files of cairn digest/verify/keygen: they round-trip,
// and anything else is refused with invalid_argument.

#include <string>

#include <catch2/catch.hpp>

#include "cairn/tools/digest_file.hpp"

using namespace cairn::tools;
using cairn::errc;

namespace {

signed_digest sample() {
  signed_digest s;
  s.position = 40;
  for (std::size_t i = 0; i < s.digest.size(); ++i)
    s.digest[i] = static_cast<unsigned char>(i);
  for (std::size_t i = 0; i < s.signature.size(); ++i)
    s.signature[i] = static_cast<unsigned char>(255 - i);
  return s;
}

} // namespace

TEST_CASE("a signed digest round-trips and signs exactly its first three lines",
          "[unit][tools][digest]") {
  auto s = sample();
  auto text = format_signed_digest(s);
  auto message = signed_digest_message(s.position, s.digest);
  CHECK(text.rfind(message, 0) == 0);
  CHECK(message
        == "cairn signed digest v1\nposition 40\ndigest "
           "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n");
  auto back = parse_signed_digest(text);
  REQUIRE(back);
  CHECK(back->position == 40);
  CHECK(back->digest == s.digest);
  CHECK(back->signature == s.signature);
}

TEST_CASE("a malformed signed digest is refused", "[unit][tools][digest]") {
  auto text = format_signed_digest(sample());
  auto refused = [](const std::string& t) {
    auto r = parse_signed_digest(t);
    INFO(t);
    REQUIRE_FALSE(r);
    CHECK(r.error().code == errc::invalid_argument);
  };
  refused(text.substr(0, text.size() - 1));                     // no final newline
  refused(text + "extra\n");                                    // a fifth line
  refused("cairn signed digest v2" + text.substr(22));          // another version
  refused(std::string{text}.replace(text.find("40"), 2, "-4")); // not a number
  refused(std::string{text}.replace(text.find("40"), 2, "99999999999999999999")); // too large
  auto short_sig = text;
  short_sig.erase(short_sig.size() - 3, 2); // 126 hex digits
  refused(short_sig);
  refused(std::string(max_digest_file_size + 1, '\n'));
}

TEST_CASE("a published digest is POSITION:HEX", "[unit][tools][digest]") {
  auto s = sample();
  auto text = format_published_digest({s.position, s.digest});
  CHECK(text == "40:000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f");
  auto d = parse_published_digest(text);
  REQUIRE(d);
  CHECK(d->position == 40);
  CHECK(d->digest == s.digest);
  CHECK_FALSE(parse_published_digest(text.substr(3)));       // no position
  CHECK_FALSE(parse_published_digest(text.substr(0, 60)));   // short hex
  CHECK_FALSE(parse_published_digest("x" + text));           // not digits
  CHECK_FALSE(parse_published_digest(":" + text.substr(3))); // empty position
}

TEST_CASE("key files round-trip, and one kind is not taken for the other",
          "[unit][tools][digest]") {
  auto s = sample();
  auto pub = parse_public_key(format_public_key(s.digest));
  REQUIRE(pub);
  CHECK(*pub == s.digest);
  auto sec = parse_secret_key(format_secret_key(s.signature));
  REQUIRE(sec);
  CHECK(*sec == s.signature);
  CHECK_FALSE(parse_public_key(format_secret_key(s.signature)));
  CHECK_FALSE(parse_secret_key(format_public_key(s.digest)));
  CHECK_FALSE(parse_public_key("cairn ed25519 public key v1\n00\n"));
}
