#include "cairn/tools/text.hpp"

#include <limits>

#include "cairn/model/hex.hpp"
#include "cairn/model/iso_time.hpp"
#include "cairn/model/json_text.hpp"

namespace cairn::tools {

std::string json_string(std::string_view s) {
  std::string out;
  out.reserve(s.size() + 2);
  append_json_string(out, s);
  return out;
}

void json_object::key(std::string_view k) {
  if (out_.size() > 1)
    out_ += ',';
  out_ += json_string(k);
  out_ += ':';
}

json_object& json_object::add(std::string_view k, std::string_view value) {
  key(k);
  out_ += json_string(value);
  return *this;
}

json_object& json_object::add(std::string_view k, std::uint64_t value) {
  key(k);
  out_ += std::to_string(value);
  return *this;
}

json_object& json_object::add(std::string_view k, std::int64_t value) {
  key(k);
  out_ += std::to_string(value);
  return *this;
}

json_object& json_object::add(std::string_view k, bool value) {
  key(k);
  out_ += value ? "true" : "false";
  return *this;
}

json_object& json_object::add_raw(std::string_view k, std::string_view json) {
  key(k);
  out_ += json;
  return *this;
}

std::string dead_letter_json(const persistence::dead_letter& dl, std::string_view subscriber_key) {
  return json_object{}
    .add(subscriber_key, dl.subscriber)
    .add("position", dl.position)
    .add("stream", dl.stream)
    .add("version", dl.version)
    .add("type", dl.type)
    .add("error", dl.error)
    .add("attempts", dl.attempts)
    .add("first_failure_ns", dl.first_failure_ns)
    .add("last_failure_ns", dl.last_failure_ns)
    .add("replay_requested", dl.replay_requested)
    .str();
}

result<std::string> from_hex(std::string_view hex) {
  if (hex.size() % 2 != 0)
    return fail(errc::invalid_argument, "hex of odd length");
  std::string out(hex.size() / 2, '\0');
  for (std::size_t i = 0; i < out.size(); ++i) {
    int hi = hex_digit_value(hex[2 * i]), lo = hex_digit_value(hex[2 * i + 1]);
    if (hi < 0 || lo < 0)
      return fail(errc::invalid_argument, "not a hex digit at offset " + std::to_string(2 * i));
    out[i] = static_cast<char>(hi << 4 | lo);
  }
  return out;
}

namespace {

constexpr std::int64_t ns_per_s = 1'000'000'000;

} // namespace

result<std::int64_t> parse_time(std::string_view text) {
  auto bad = [&] {
    return fail(errc::invalid_argument,
                "not a time: use ISO-8601 like 2026-11-24T10:00:00Z or ns since the epoch",
                std::string{text});
  };
  auto digits = [&](std::size_t at, std::size_t n, std::int64_t& out) {
    if (at + n > text.size())
      return false;
    out = 0;
    for (std::size_t i = at; i < at + n; ++i) {
      if (text[i] < '0' || text[i] > '9')
        return false;
      out = out * 10 + (text[i] - '0');
    }
    return true;
  };
  if (text.empty())
    return bad();
  if (text.find_first_not_of("-0123456789") == std::string_view::npos) {
    bool neg = text[0] == '-';
    std::int64_t v = 0;
    auto body = text.substr(neg ? 1 : 0);
    if (body.empty() || body.size() > 19)
      return bad();
    for (char c : body) {
      if (c < '0' || c > '9' || v > (std::numeric_limits<std::int64_t>::max() - (c - '0')) / 10)
        return bad();
      v = v * 10 + (c - '0');
    }
    return neg ? -v : v;
  }
  // YYYY-MM-DDTHH:MM:SS
  std::int64_t y, mo, d, h, mi, s;
  if (text.size() < 20 || !digits(0, 4, y) || text[4] != '-' || !digits(5, 2, mo) || text[7] != '-'
      || !digits(8, 2, d) || text[10] != 'T' || !digits(11, 2, h) || text[13] != ':'
      || !digits(14, 2, mi) || text[16] != ':' || !digits(17, 2, s))
    return bad();
  if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || s > 60)
    return bad();
  std::size_t at = 19;
  std::int64_t frac = 0;
  if (text[at] == '.') {
    std::size_t n = 0;
    for (++at; at < text.size() && text[at] >= '0' && text[at] <= '9'; ++at, ++n)
      if (n < 9)
        frac = frac * 10 + (text[at] - '0');
    if (n == 0 || n > 9)
      return bad();
    for (; n < 9; ++n)
      frac *= 10;
  }
  std::int64_t offset_s = 0;
  if (at < text.size() && text[at] == 'Z') {
    ++at;
  } else if (at < text.size() && (text[at] == '+' || text[at] == '-')) {
    std::int64_t oh, om;
    if (!digits(at + 1, 2, oh) || at + 3 >= text.size() || text[at + 3] != ':'
        || !digits(at + 4, 2, om) || oh > 23 || om > 59)
      return bad();
    offset_s = (oh * 3600 + om * 60) * (text[at] == '+' ? 1 : -1);
    at += 6;
  } else {
    return bad();
  }
  if (at != text.size())
    return bad();
  auto days = days_from_civil(y, static_cast<unsigned>(mo), static_cast<unsigned>(d));
  std::int64_t secs = days * 86400 + h * 3600 + mi * 60 + s - offset_s;
  // int64 nanoseconds reach from 1677-09-21 to 2262-04-11: refuse, never wrap,
  // what lies outside (found by tests/fuzz/time.cpp). A negative time with a
  // fraction is one second less plus a negative fraction, so the earliest
  // time iso_time prints (INT64_MIN ns) parses back too.
  if (secs < 0 && frac > 0) {
    secs += 1;
    frac -= ns_per_s;
  }
  std::int64_t ns = 0;
  if (__builtin_mul_overflow(secs, ns_per_s, &ns) || __builtin_add_overflow(ns, frac, &ns))
    return fail(errc::invalid_argument,
                "time out of range: nanoseconds since the epoch reach from 1677-09-21 to "
                "2262-04-11",
                std::string{text});
  return ns;
}

} // namespace cairn::tools
