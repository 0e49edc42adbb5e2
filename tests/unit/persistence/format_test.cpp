#include <cstdint>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "cairn/persistence/types.hpp"
#include "cairn/persistence/format.hpp"

#include "helpers.hpp"

using namespace cairn::persistence;
using cairn::errc;

namespace {

struct sample {
  std::string stream = "acct-42";
  event_data ev;
  metadata meta;
  format::record_fields fields;
  std::uint64_t position = 123'456;

  sample() {
    ev.type = "deposited";
    ev.schema_version = 3;
    ev.payload = std::string("pay\0load\xfe", 9);
    meta.correlation_id = "corr";
    meta.causation_id = "cause";
    meta.command_id = "cmd";
    meta.tenant = "t";
    meta.user = std::string(255, 'u');
    fields.version = 77;
    fields.prev_position = 123'400;
    fields.timestamp_ns = -1'000'000'007;
    for (std::size_t i = 0; i < 16; ++i)
      fields.id.bytes[i] = static_cast<std::uint8_t>(0xa0 + i);
  }

  std::vector<unsigned char> encode() const {
    std::vector<unsigned char> out(format::record_size(stream, ev, meta));
    format::encode_record(out.data(), position, stream, ev, meta, fields);
    return out;
  }
};

} // namespace

TEST_CASE("a log record decodes to the fields it was encoded from", "[unit][format]") {
  sample s;
  auto rec = s.encode();
  CHECK(rec.size() == format::record_header_size + 7 + 9 + 4 + 5 + 3 + 1 + 255 + 9);
  auto v = format::decode_record(rec.data(), rec.size(), s.position);
  REQUIRE(v);
  CHECK(v->stream == "acct-42");
  CHECK(v->type == "deposited");
  CHECK(v->schema_version == 3);
  CHECK(v->version == 77);
  CHECK(v->prev_position == 123'400);
  CHECK(v->timestamp_ns == -1'000'000'007);
  CHECK(v->correlation_id == "corr");
  CHECK(v->causation_id == "cause");
  CHECK(v->command_id == "cmd");
  CHECK(v->tenant == "t");
  CHECK(v->user == std::string(255, 'u'));
  CHECK(v->payload == std::string("pay\0load\xfe", 9));

  recorded_event e;
  format::to_event(*v, s.position, e);
  CHECK(e.stream == "acct-42");
  CHECK(e.position == s.position);
  CHECK(e.version == 77);
  CHECK(e.id == s.fields.id);
  CHECK(e.meta == s.meta);
  CHECK(e.type == "deposited");
  CHECK(e.schema_version == 3);
  CHECK(e.payload == s.ev.payload);
  CHECK(e.timestamp_ns == -1'000'000'007);
}

TEST_CASE("a record with empty fields round-trips", "[unit][format]") {
  sample s;
  s.ev.payload.clear();
  s.meta = metadata{};
  auto rec = s.encode();
  CHECK(rec.size() == format::record_header_size + 7 + 9);
  auto v = format::decode_record(rec.data(), rec.size(), s.position);
  REQUIRE(v);
  CHECK(v->payload.empty());
  CHECK(v->user.empty());
  CHECK(v->type == "deposited");
}

TEST_CASE("the layout matches the documented byte offsets", "[unit][format]") {
  sample s;
  auto rec = s.encode();
  const unsigned char* p = rec.data();
  CHECK(p[8] == 1);
  CHECK(p[9] == 0);
  CHECK(format::get_le<std::uint16_t>(p + 10) == 7);
  CHECK(format::get_le<std::uint32_t>(p + 12) == 3);
  CHECK(format::get_le<std::uint64_t>(p + 16) == 77);
  CHECK(format::get_le<std::uint64_t>(p + 24) == 123'400);
  CHECK(format::get_le<std::int64_t>(p + 32) == -1'000'000'007);
  CHECK(p[40] == 0xa0);
  CHECK(p[55] == 0xaf);
  CHECK(format::get_le<std::uint16_t>(p + 56) == 9);
  CHECK(p[58] == 4);
  CHECK(p[59] == 5);
  CHECK(p[60] == 3);
  CHECK(p[61] == 1);
  CHECK(p[62] == 255);
  CHECK(p[63] == 0);
  CHECK(format::get_le<std::uint32_t>(p + 64) == 9);
  CHECK(std::string(reinterpret_cast<const char*>(p) + 68, 7) == "acct-42");
}

TEST_CASE("the checksum detects a flipped bit in any byte of a record", "[unit][format]") {
  sample s;
  const auto good = s.encode();
  REQUIRE(format::decode_record(good.data(), good.size(), s.position));
  for (std::size_t i = 0; i < good.size(); ++i) {
    for (int bit : {0, 7}) {
      auto rec = good;
      rec[i] = static_cast<unsigned char>(rec[i] ^ (1u << bit));
      auto v = format::decode_record(rec.data(), rec.size(), s.position);
      if (v) {
        FAIL_CHECK("flipping bit " << bit << " of byte " << i << " went unnoticed");
        continue;
      }
      CHECK(v.error().code == errc::corrupted);
      CHECK(v.error().context == "position 123456");
    }
  }
}

TEST_CASE("a record read at the wrong position fails its checksum", "[unit][format]") {
  sample s;
  auto rec = s.encode();
  for (std::uint64_t pos : {s.position - 1, s.position + 1, std::uint64_t{0}, ~std::uint64_t{0}}) {
    auto v = format::decode_record(rec.data(), rec.size(), pos);
    REQUIRE_FALSE(v);
    CHECK(v.error().code == errc::corrupted);
    CHECK_THAT(v.error().message, Catch::Contains("checksum"));
    CHECK(v.error().context == "position " + std::to_string(pos));
  }
}

TEST_CASE("a record shorter than its header or with inconsistent lengths is corrupted",
          "[unit][format]") {
  sample s;
  auto rec = s.encode();
  for (std::size_t n : {std::size_t{0}, std::size_t{8}, format::record_header_size - 1}) {
    auto v = format::decode_record(rec.data(), n, s.position);
    REQUIRE_FALSE(v);
    CHECK(v.error().code == errc::corrupted);
  }
  auto reseal = [&](std::vector<unsigned char>& r, std::size_t size) {
    format::put_le<std::uint64_t>(r.data(), format::record_checksum(r.data(), size, s.position));
  };
  SECTION("a payload length that overstates the record") {
    format::put_le<std::uint32_t>(rec.data() + 64, 10);
    reseal(rec, rec.size());
    auto v = format::decode_record(rec.data(), rec.size(), s.position);
    REQUIRE_FALSE(v);
    CHECK_THAT(v.error().message, Catch::Contains("do not add up"));
  }
  SECTION("a record cut short with a matching checksum") {
    reseal(rec, rec.size() - 1);
    auto v = format::decode_record(rec.data(), rec.size() - 1, s.position);
    REQUIRE_FALSE(v);
    CHECK_THAT(v.error().message, Catch::Contains("do not add up"));
  }
  SECTION("an unknown record format") {
    rec[8] = 2;
    reseal(rec, rec.size());
    auto v = format::decode_record(rec.data(), rec.size(), s.position);
    REQUIRE_FALSE(v);
    CHECK_THAT(v.error().message, Catch::Contains("record format"));
  }
}

TEST_CASE("a sealed value unseals only under its own key and body", "[unit][format]") {
  auto sealed = format::seal("format", "body-bytes");
  CHECK(sealed.size() == format::seal_size + 10);
  auto body = format::unseal("format", sealed, "the thing");
  REQUIRE(body);
  CHECK(*body == "body-bytes");
  auto other_key = format::unseal("formax", sealed, "the thing");
  REQUIRE_FALSE(other_key);
  CHECK(other_key.error().code == errc::corrupted);
  CHECK_THAT(other_key.error().message, Catch::Contains("the thing"));
  for (std::size_t i = 0; i < sealed.size(); ++i) {
    auto bad = sealed;
    bad[i] = static_cast<char>(bad[i] ^ 0x10);
    CHECK_FALSE(format::unseal("format", bad, "x"));
  }
  CHECK_FALSE(format::unseal("format", sealed.substr(0, 7), "x"));
  auto empty = format::seal("k", "");
  REQUIRE(format::unseal("k", empty, "x"));
  CHECK(format::unseal("k", empty, "x")->empty());
}

TEST_CASE("keys are big-endian so byte order is numeric order", "[unit][format]") {
  std::vector<std::uint64_t> values{0,    1, 255, 256, 65'535, 65'536, 1ull << 32, (1ull << 63) + 5,
                                    ~0ull};
  for (std::size_t i = 0; i + 1 < values.size(); ++i) {
    CHECK(format::be64_key(values[i]) < format::be64_key(values[i + 1]));
    CHECK(format::pair_key(1, values[i]) < format::pair_key(1, values[i + 1]));
    CHECK(format::pair_key(values[i], ~0ull) < format::pair_key(values[i + 1], 0));
  }
  for (auto v : values)
    CHECK(format::get_be64(reinterpret_cast<const unsigned char*>(format::be64_key(v).data()))
          == v);
  CHECK(format::be64_key(0x0102030405060708ull) == std::string("\1\2\3\4\5\6\7\x08", 8));
  CHECK(format::type_key("opened", 258) == std::string("opened\0\0\0\1\2", 11));
  CHECK(format::type_key("a", 1) < format::type_key("a", 2));
  CHECK(format::type_key("a", 255) < format::type_key("a", 256));
}

TEST_CASE("event ids print as 32 hex digits and parse back", "[unit][format][types]") {
  event_id id;
  for (std::size_t i = 0; i < 16; ++i)
    id.bytes[i] = static_cast<std::uint8_t>(i * 17);
  auto hex = id.to_string();
  CHECK(hex == "00112233445566778899aabbccddeeff");
  auto back = event_id::parse(hex);
  REQUIRE(back);
  CHECK(*back == id);
  CHECK(event_id::parse("00112233445566778899AABBCCDDEEFF") == id);
  CHECK_FALSE(event_id::parse("0011223344556677889").has_value());
  CHECK_FALSE(event_id::parse(hex + "0").has_value());
  CHECK_FALSE(event_id::parse("g0112233445566778899aabbccddeeff").has_value());
}

TEST_CASE("expected versions admit the right stream versions and print themselves",
          "[unit][format][types]") {
  CHECK(expected_version::any().admits(0));
  CHECK(expected_version::any().admits(9));
  CHECK(expected_version::no_stream().admits(0));
  CHECK_FALSE(expected_version::no_stream().admits(1));
  CHECK_FALSE(expected_version::stream_exists().admits(0));
  CHECK(expected_version::stream_exists().admits(1));
  CHECK(expected_version::exact(0).admits(0));
  CHECK(expected_version::exact(3).admits(3));
  CHECK_FALSE(expected_version::exact(3).admits(4));
  CHECK(expected_version::any().to_string() == "any");
  CHECK(expected_version::no_stream().to_string() == "no_stream");
  CHECK(expected_version::stream_exists().to_string() == "stream_exists");
  CHECK(expected_version::exact(42).to_string() == "42");
}
