#pragma once

// What the disk-fault child appends, as a function of the batch number, so
// the parent can check every stored byte without being told it.

#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <optional>
#include <string>

#include "cairn/persistence/types.hpp"

namespace cairn::test::disk_fault {

constexpr const char* event_type = "fault_appended";
constexpr std::uint32_t streams = 11;

/// Requests in batch `b`: 1 to 4.
inline std::uint32_t requests_of(std::uint64_t b) { return 1 + static_cast<std::uint32_t>(b % 4); }

inline std::string stream_of(std::uint64_t b, std::uint32_t q) {
  return "fault-" + std::to_string((b * 7 + q * 13) % streams);
}

/// Events of request `q` of batch `b`: 1 to 3.
inline std::uint32_t events_of(std::uint64_t b, std::uint32_t q) {
  return 1 + static_cast<std::uint32_t>((b + q) % 3);
}

inline std::uint32_t total_of(std::uint64_t b) {
  std::uint32_t n = 0;
  for (std::uint32_t q = 0; q < requests_of(b); ++q)
    n += events_of(b, q);
  return n;
}

/// Every fifth batch carries payloads larger than a page (overflow pages,
/// written with writev); the others fill a page or two between them.
inline std::uint32_t filler_of(std::uint64_t b, std::uint32_t offset) {
  return b % 5 == 4 ? 6000 : static_cast<std::uint32_t>((b * 37 + offset * 11) % 300);
}

inline std::string payload_of(std::uint64_t b, std::uint32_t offset) {
  char head[64];
  int n = std::snprintf(head, sizeof head, "b=%" PRIu64 " o=%u t=%u|", b, offset, total_of(b));
  std::string out(head, static_cast<std::size_t>(n));
  auto filler = filler_of(b, offset);
  for (std::uint32_t i = 0; i < filler; ++i)
    out.push_back(static_cast<char>('a' + (b * 131 + offset * 17 + i) % 26));
  return out;
}

/// The batch and offset a payload names; nullopt when it is not one of ours.
struct tag {
  std::uint64_t batch = 0;
  std::uint32_t offset = 0;
};
inline std::optional<tag> parse_payload(const std::string& payload) {
  tag t;
  std::uint32_t total = 0;
  int used = -1;
  if (std::sscanf(payload.c_str(), "b=%" SCNu64 " o=%u t=%u|%n", &t.batch, &t.offset, &total, &used)
        != 3
      || used <= 0)
    return std::nullopt;
  return t;
}

inline persistence::write_batch make_batch(std::uint64_t b) {
  persistence::write_batch batch;
  std::uint32_t offset = 0;
  for (std::uint32_t q = 0; q < requests_of(b); ++q) {
    persistence::append_request req;
    req.stream = stream_of(b, q);
    req.expected = persistence::expected_version::any();
    for (std::uint32_t e = 0; e < events_of(b, q); ++e, ++offset) {
      persistence::event_data ev;
      ev.type = event_type;
      ev.payload = payload_of(b, offset);
      req.events.push_back(std::move(ev));
    }
    batch.appends.push_back(std::move(req));
  }
  return batch;
}

// -- the runtime case -------------------------------------------------------------

constexpr std::uint32_t accounts = 6;
inline std::string account_id(std::uint32_t a) { return "fault" + std::to_string(a); }
inline std::uint32_t account_of(std::uint64_t seq) {
  return static_cast<std::uint32_t>((seq * 5 + seq / 3) % accounts);
}
inline std::string command_id(std::uint64_t seq) { return "d" + std::to_string(seq); }
inline std::int64_t amount_of(std::uint64_t seq) {
  return 1 + static_cast<std::int64_t>((seq * 31) % 997);
}

} // namespace cairn::test::disk_fault
