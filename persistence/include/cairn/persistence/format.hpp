#pragma once

/// Byte layout of every key and value cairn stores in LMDB: the on-disk
/// contract that docs/storage-format.md describes byte by byte. Pure
/// functions, no LMDB: the store, the tools, the tests and the fuzz targets
/// (tests/fuzz/) share them. Every decoder reads only the bytes it is given
/// and answers `corrupted` for a layout it does not recognise.
///
///   auto value = format::seal(key, format::u64_body(42));
///   auto v = format::decode_u64(key, value, "checkpoint x"); // *v == 42

#include <array>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "cairn/model/error.hpp"
#include "cairn/persistence/types.hpp"

namespace cairn::persistence::format {

/// Version of the on-disk format this code writes. Versions 1 (heads written
/// on every commit, no head log) and 2 (no digest chain) are read, and
/// upgraded by a writable open.
inline constexpr std::uint32_t current_version = 3;

/// Record header size; variable fields follow it.
inline constexpr std::size_t record_header_size = 68;

/// Every Nth version of a stream gets an entry in the sparse stream index.
inline constexpr std::uint64_t index_interval = 128;

/// Stream heads are stored in buckets of this many fixed-size slots, so a
/// commit touching thousands of streams dirties few pages.
inline constexpr std::uint64_t heads_per_bucket = 128;
/// One head slot: the position of the stream's last event (u64 LE; 0 = no
/// stream). Its version is in that record, verified by its checksum.
inline constexpr std::size_t head_slot_size = 8;
inline constexpr std::size_t head_bucket_size = heads_per_bucket * head_slot_size;

/// One head-log pair: stream number (u64 LE), position of its last event in
/// the commit (u64 LE).
inline constexpr std::size_t head_log_pair_size = 16;

// -- fixed-width integers ------------------------------------------------------
// Keys are big-endian so byte order equals numeric order; values little-endian.

inline void put_be64(unsigned char* p, std::uint64_t v) {
  for (int i = 7; i >= 0; --i) {
    p[i] = static_cast<unsigned char>(v & 0xff);
    v >>= 8;
  }
}

inline std::uint64_t get_be64(const unsigned char* p) {
  std::uint64_t v = 0;
  for (int i = 0; i < 8; ++i)
    v = v << 8 | p[i];
  return v;
}

template <class T> inline void put_le(unsigned char* p, T v) {
  static_assert(std::is_integral_v<T>);
  std::memcpy(p, &v, sizeof v); // x86-64 and aarch64 are little-endian
}

template <class T> inline T get_le(const unsigned char* p) {
  T v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

// -- log records ---------------------------------------------------------------
//
//  off size field
//    0    8 checksum: XXH3-64 of bytes [8, size) seeded with the position
//    8    1 record format (1)
//    9    1 flags (0)
//   10    2 stream name length
//   12    4 schema version
//   16    8 stream version
//   24    8 position of the stream's previous event (0 for its first)
//   32    8 timestamp, ns since the Unix epoch (signed)
//   40   16 event id
//   56    2 type name length
//   58    5 lengths of correlation, causation, command id, tenant, user (1 byte each)
//   63    1 subject length (0 = none; written as 0 before format version 3)
//   64    4 payload length
//   68      stream name, type, correlation, causation, command id, tenant, user,
//           subject, payload

/// Fields of a record that are not in the append request.
struct record_fields {
  std::uint64_t version = 0;
  std::uint64_t prev_position = 0;
  std::int64_t timestamp_ns = 0;
  event_id id;
};

[[nodiscard]] inline std::size_t record_size(std::string_view stream, const event_data& ev,
                                             const metadata& m) {
  return record_header_size + stream.size() + ev.type.size() + m.correlation_id.size()
         + m.causation_id.size() + m.command_id.size() + m.tenant.size() + m.user.size()
         + m.subject.size() + ev.payload.size();
}

/// XXH3-64 of bytes [8, size) of a record, seeded with its position.
[[nodiscard]] std::uint64_t record_checksum(const unsigned char* rec, std::size_t size,
                                            std::uint64_t position);

/// Writes the record into `out` (exactly record_size() bytes), checksum last.
inline void encode_record(unsigned char* out, std::uint64_t position, std::string_view stream,
                          const event_data& ev, const metadata& m, const record_fields& f) {
  out[8] = 1;
  out[9] = 0;
  put_le<std::uint16_t>(out + 10, static_cast<std::uint16_t>(stream.size()));
  put_le<std::uint32_t>(out + 12, ev.schema_version);
  put_le<std::uint64_t>(out + 16, f.version);
  put_le<std::uint64_t>(out + 24, f.prev_position);
  put_le<std::int64_t>(out + 32, f.timestamp_ns);
  std::memcpy(out + 40, f.id.bytes.data(), 16);
  put_le<std::uint16_t>(out + 56, static_cast<std::uint16_t>(ev.type.size()));
  out[58] = static_cast<unsigned char>(m.correlation_id.size());
  out[59] = static_cast<unsigned char>(m.causation_id.size());
  out[60] = static_cast<unsigned char>(m.command_id.size());
  out[61] = static_cast<unsigned char>(m.tenant.size());
  out[62] = static_cast<unsigned char>(m.user.size());
  out[63] = static_cast<unsigned char>(m.subject.size());
  put_le<std::uint32_t>(out + 64, static_cast<std::uint32_t>(ev.payload.size()));
  unsigned char* p = out + record_header_size;
  for (std::string_view s :
       {std::string_view{stream}, std::string_view{ev.type}, std::string_view{m.correlation_id},
        std::string_view{m.causation_id}, std::string_view{m.command_id},
        std::string_view{m.tenant}, std::string_view{m.user}, std::string_view{m.subject},
        std::string_view{ev.payload}}) {
    if (!s.empty())
      std::memcpy(p, s.data(), s.size());
    p += s.size();
  }
  auto size = static_cast<std::size_t>(p - out);
  put_le<std::uint64_t>(out, record_checksum(out, size, position));
}

/// A verified record, its strings pointing into the stored bytes.
struct record_view {
  std::string_view stream;
  std::uint32_t schema_version = 0;
  std::uint64_t version = 0;
  std::uint64_t prev_position = 0;
  std::int64_t timestamp_ns = 0;
  const unsigned char* id = nullptr;
  std::string_view type, correlation_id, causation_id, command_id, tenant, user, subject, payload;
};

/// Parses a stored record's fields into `v` without verifying its checksum
/// (for a reader that leaves that to another, as a source does to its
/// replica); the reason when the layout is wrong, null otherwise.
[[nodiscard]] inline const char* parse_record(const unsigned char* rec, std::size_t size,
                                              record_view& v) {
  if (size < record_header_size)
    return "shorter than its header";
  if (rec[8] != 1)
    return "has an unknown record format";
  std::size_t lens[9] = {get_le<std::uint16_t>(rec + 10),
                         get_le<std::uint16_t>(rec + 56),
                         rec[58],
                         rec[59],
                         rec[60],
                         rec[61],
                         rec[62],
                         rec[63],
                         get_le<std::uint32_t>(rec + 64)};
  std::size_t total = record_header_size;
  for (auto n : lens)
    total += n;
  if (total != size)
    return "has field lengths that do not add up to its size";
  v.schema_version = get_le<std::uint32_t>(rec + 12);
  v.version = get_le<std::uint64_t>(rec + 16);
  v.prev_position = get_le<std::uint64_t>(rec + 24);
  v.timestamp_ns = get_le<std::int64_t>(rec + 32);
  v.id = rec + 40;
  const char* p = reinterpret_cast<const char*>(rec) + record_header_size;
  std::string_view* fields[9] = {&v.stream,       &v.type,       &v.correlation_id,
                                 &v.causation_id, &v.command_id, &v.tenant,
                                 &v.user,         &v.subject,    &v.payload};
  for (int i = 0; i < 9; ++i) {
    *fields[i] = std::string_view{p, lens[i]};
    p += lens[i];
  }
  return nullptr;
}

/// Verifies and parses a stored record; `corrupted` naming the position when
/// the checksum or the layout is wrong.
[[nodiscard]] inline result<record_view> decode_record(const unsigned char* rec, std::size_t size,
                                                       std::uint64_t position) {
  auto bad = [&](const char* why) {
    return fail(errc::corrupted, std::string{"log record "} + why,
                "position " + std::to_string(position));
  };
  if (size < record_header_size)
    return bad("shorter than its header");
  if (get_le<std::uint64_t>(rec) != record_checksum(rec, size, position))
    return bad("fails its checksum");
  record_view v;
  if (auto why = parse_record(rec, size, v))
    return bad(why);
  return v;
}

/// Copies a verified record into an owning event.
inline void to_event(const record_view& v, std::uint64_t position, recorded_event& out) {
  out.stream.assign(v.stream);
  out.version = v.version;
  out.position = position;
  std::memcpy(out.id.bytes.data(), v.id, 16);
  out.timestamp_ns = v.timestamp_ns;
  out.type.assign(v.type);
  out.schema_version = v.schema_version;
  out.meta.correlation_id.assign(v.correlation_id);
  out.meta.causation_id.assign(v.causation_id);
  out.meta.command_id.assign(v.command_id);
  out.meta.tenant.assign(v.tenant);
  out.meta.user.assign(v.user);
  out.meta.subject.assign(v.subject);
  out.payload.assign(v.payload);
}

// -- sealed values (every table but the log) -------------------------------------
// value = checksum (8, XXH3-64 of the body seeded with XXH3-64 of the key) + body

inline constexpr std::size_t seal_size = 8;

/// XXH3-64 of `body` seeded with XXH3-64 of `key`.
[[nodiscard]] std::uint64_t seal_checksum(std::string_view key, std::string_view body);

[[nodiscard]] inline std::string seal(std::string_view key, std::string_view body) {
  std::string out(seal_size + body.size(), '\0');
  put_le<std::uint64_t>(reinterpret_cast<unsigned char*>(out.data()), seal_checksum(key, body));
  if (!body.empty())
    std::memcpy(out.data() + seal_size, body.data(), body.size());
  return out;
}

/// The body of a sealed value; `corrupted` naming `what` when it fails its checksum.
[[nodiscard]] inline result<std::string_view> unseal(std::string_view key, std::string_view value,
                                                     const std::string& what) {
  if (value.size() < seal_size)
    return fail(errc::corrupted, what + " is shorter than its checksum");
  auto body = value.substr(seal_size);
  if (get_le<std::uint64_t>(reinterpret_cast<const unsigned char*>(value.data()))
      != seal_checksum(key, body))
    return fail(errc::corrupted, what + " fails its checksum");
  return body;
}

// -- keys ----------------------------------------------------------------------

[[nodiscard]] inline std::string be64_key(std::uint64_t v) {
  std::string k(8, '\0');
  put_be64(reinterpret_cast<unsigned char*>(k.data()), v);
  return k;
}

/// stream number + version (or any second u64), both big-endian.
[[nodiscard]] inline std::string pair_key(std::uint64_t stream_no, std::uint64_t v) {
  std::string k(16, '\0');
  put_be64(reinterpret_cast<unsigned char*>(k.data()), stream_no);
  put_be64(reinterpret_cast<unsigned char*>(k.data()) + 8, v);
  return k;
}

/// Catalogue key: type name, a 0 byte, schema version (u32 big-endian).
[[nodiscard]] inline std::string type_key(std::string_view type, std::uint32_t version) {
  std::string k{type};
  k.push_back('\0');
  for (int shift = 24; shift >= 0; shift -= 8)
    k.push_back(static_cast<char>((version >> shift) & 0xff));
  return k;
}

/// The type and schema version of a catalogue key; nullopt when it is not
/// one (shorter than 5 bytes, or no 0 byte before the version).
[[nodiscard]] inline std::optional<std::pair<std::string_view, std::uint32_t>>
decode_type_key(std::string_view key) {
  if (key.size() < 5 || key[key.size() - 5] != '\0')
    return std::nullopt;
  auto* vb = reinterpret_cast<const unsigned char*>(key.data() + key.size() - 4);
  std::uint32_t version = std::uint32_t{vb[0]} << 24 | std::uint32_t{vb[1]} << 16
                          | std::uint32_t{vb[2]} << 8 | vb[3];
  return std::pair{key.substr(0, key.size() - 5), version};
}

/// Command record key: stream number (u64 big-endian), then the command id.
[[nodiscard]] inline std::string command_key(std::uint64_t stream_no, std::string_view command_id) {
  auto k = be64_key(stream_no);
  k.append(command_id);
  return k;
}

/// Key-value key: space, a 0 byte, key (so one space is one key range).
[[nodiscard]] inline std::string space_key(std::string_view space, std::string_view key) {
  std::string k;
  k.reserve(space.size() + 1 + key.size());
  k.append(space);
  k.push_back('\0');
  k.append(key);
  return k;
}

/// Dead-letter key: subscriber, a 0 byte, position (u64 big-endian).
[[nodiscard]] inline std::string dead_letter_store_key(std::string_view subscriber,
                                                       std::uint64_t position) {
  auto k = space_key(subscriber, {});
  k += be64_key(position);
  return k;
}

/// meta key of the format version; its body is the version (u32 LE).
inline constexpr std::string_view format_version_key = "format";
/// meta key of the log position up to which the heads table is complete (a sealed u64).
inline constexpr std::string_view heads_at_key = "heads_at";
/// meta key of the store's random 16-byte id.
inline constexpr std::string_view store_id_key = "store_id";

// -- digest chain --------------------------------------------------------------
// h_0 = 32 zero bytes; h_n = BLAKE2b-256(h_{n-1} || the bytes of record n, as
// stored, checksum included). The "chain" table keeps one entry per commit
// (and per chain_entry_span records when a writable open extends the chain):
// key: the position of its last record (u64 BE); sealed body:
//    0   32 h_key
//   32    4 n: records the entry covers, positions key-n+1 .. key (u32 LE)
//   36  8*n the first 8 bytes of h_p for each of them, in position order
// An entry with n = 0 is an anchor: h_key alone (a cut of the log keeps one).

inline constexpr std::size_t digest_size = 32;
/// A chained digest.
using digest = std::array<unsigned char, digest_size>;
/// Bytes of a digest kept per record in a chain entry: enough to name the
/// first record that no longer matches the chain the writer computed.
inline constexpr std::size_t digest_prefix_size = 8;
inline constexpr std::size_t chain_entry_header_size = digest_size + 4;
/// Records per chain entry when a writable open extends the chain over
/// records written without one (an upgrade from format 2).
inline constexpr std::uint64_t chain_entry_span = 4096;

/// h_n from h_{n-1} and the bytes of record n.
[[nodiscard]] digest chain_next(const digest& prev, const unsigned char* rec, std::size_t size);

/// A decoded chain entry; `prefixes` points into the stored bytes.
struct chain_entry {
  std::uint64_t position = 0; ///< Its last record.
  digest head{};              ///< h_position
  std::uint32_t count = 0;    ///< Records covered: position-count+1 .. position.
  std::string_view prefixes;  ///< count * digest_prefix_size bytes.

  /// Whether the entry covers record `p`.
  [[nodiscard]] bool covers(std::uint64_t p) const { return p <= position && position - p < count; }
  /// The stored prefix of h_p for a record `p` it covers.
  [[nodiscard]] std::string_view prefix_of(std::uint64_t p) const {
    return prefixes.substr((count - 1 - (position - p)) * digest_prefix_size, digest_prefix_size);
  }
};

/// Writes the body of a chain entry into `out` (chain_entry_header_size +
/// prefixes.size() bytes) after the seal's 8 bytes; `key` is its key.
inline void encode_chain_entry(unsigned char* out, std::string_view key, const digest& head,
                               std::string_view prefixes) {
  unsigned char* body = out + seal_size;
  std::memcpy(body, head.data(), digest_size);
  put_le<std::uint32_t>(body + digest_size,
                        static_cast<std::uint32_t>(prefixes.size() / digest_prefix_size));
  if (!prefixes.empty())
    std::memcpy(body + chain_entry_header_size, prefixes.data(), prefixes.size());
  auto len = chain_entry_header_size + prefixes.size();
  put_le<std::uint64_t>(out, seal_checksum(key, {reinterpret_cast<const char*>(body), len}));
}

/// A chain entry stored under `key` (8 bytes); `corrupted` when the seal
/// fails, a size is wrong, or it covers positions below 1.
[[nodiscard]] inline result<chain_entry> decode_chain_entry(std::string_view key,
                                                            std::string_view value) {
  if (key.size() != 8)
    return fail(errc::corrupted,
                "a digest chain entry has a key of " + std::to_string(key.size()) + " bytes");
  chain_entry e;
  e.position = get_be64(reinterpret_cast<const unsigned char*>(key.data()));
  auto where = "position " + std::to_string(e.position);
  auto body = unseal(key, value, "digest chain entry");
  if (!body) {
    auto err = body.error();
    err.context = where;
    return tl::unexpected(err);
  }
  if (body->size() < chain_entry_header_size)
    return fail(errc::corrupted, "digest chain entry is shorter than its header", where);
  auto* p = reinterpret_cast<const unsigned char*>(body->data());
  std::memcpy(e.head.data(), p, digest_size);
  e.count = get_le<std::uint32_t>(p + digest_size);
  e.prefixes = body->substr(chain_entry_header_size);
  if (e.prefixes.size() != std::uint64_t{e.count} * digest_prefix_size)
    return fail(errc::corrupted, "digest chain entry has the wrong size", where);
  if (e.count > e.position)
    return fail(errc::corrupted, "digest chain entry covers positions below 1", where);
  return e;
}

/// Lower-case hex of a digest.
[[nodiscard]] inline std::string to_hex(const digest& d) {
  static constexpr char hex[] = "0123456789abcdef";
  std::string out;
  out.reserve(2 * d.size());
  for (unsigned char c : d) {
    out.push_back(hex[c >> 4]);
    out.push_back(hex[c & 0xf]);
  }
  return out;
}

/// The digest written as 64 hex digits (either case); nullopt otherwise.
[[nodiscard]] inline std::optional<digest> digest_from_hex(std::string_view text) {
  if (text.size() != 2 * digest_size)
    return std::nullopt;
  auto nibble = [](char c) -> int {
    if (c >= '0' && c <= '9')
      return c - '0';
    if (c >= 'a' && c <= 'f')
      return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
      return c - 'A' + 10;
    return -1;
  };
  digest d{};
  for (std::size_t i = 0; i < digest_size; ++i) {
    int hi = nibble(text[2 * i]), lo = nibble(text[2 * i + 1]);
    if (hi < 0 || lo < 0)
      return std::nullopt;
    d[i] = static_cast<unsigned char>(hi << 4 | lo);
  }
  return d;
}

// -- heads buckets ---------------------------------------------------------------
// key: bucket number (u64 BE) = stream number / heads_per_bucket; body:
// heads_per_bucket slots of head_slot_size bytes, by stream number.

[[nodiscard]] inline std::uint64_t bucket_of(std::uint64_t stream_no) {
  return stream_no / heads_per_bucket;
}

/// Offset of the slot of `stream_no` in its bucket's body.
[[nodiscard]] inline std::size_t slot_of(std::uint64_t stream_no) {
  return static_cast<std::size_t>(stream_no % heads_per_bucket) * head_slot_size;
}

/// The head in a bucket body (head_bucket_size bytes): the position of the
/// stream's last event, 0 for none.
[[nodiscard]] inline std::uint64_t head_in_bucket(std::string_view body, std::uint64_t stream_no) {
  return get_le<std::uint64_t>(reinterpret_cast<const unsigned char*>(body.data())
                               + slot_of(stream_no));
}

// -- sealed value bodies ---------------------------------------------------------
// The decoders below verify the seal first, then the body's layout; the store
// and the fuzz targets (tests/fuzz/) call them.

// commands value body: first/last version, first/last position (u64 LE each)
[[nodiscard]] inline std::string encode_outcome(const append_result& r) {
  std::string body(32, '\0');
  auto* p = reinterpret_cast<unsigned char*>(body.data());
  put_le(p, r.first_version);
  put_le(p + 8, r.last_version);
  put_le(p + 16, r.first_position);
  put_le(p + 24, r.last_position);
  return body;
}

/// A command record (the outcome of an append with a command id); `corrupted`
/// when the seal fails or the size is wrong.
[[nodiscard]] inline result<append_result>
decode_outcome(std::string_view key, std::string_view value, const std::string& stream) {
  auto body = unseal(key, value, "command record of " + stream);
  if (!body)
    return tl::unexpected(body.error());
  if (body->size() != 32)
    return fail(errc::corrupted, "command record has the wrong size", stream);
  auto* p = reinterpret_cast<const unsigned char*>(body->data());
  return append_result{get_le<std::uint64_t>(p), get_le<std::uint64_t>(p + 8),
                       get_le<std::uint64_t>(p + 16), get_le<std::uint64_t>(p + 24), true};
}

[[nodiscard]] inline std::string u64_body(std::uint64_t v) {
  std::string body(8, '\0');
  put_le(reinterpret_cast<unsigned char*>(body.data()), v);
  return body;
}

/// A sealed u64 (stream numbers, checkpoints, index entries, heads_at);
/// `corrupted` naming `what` when the seal fails or the size is wrong.
[[nodiscard]] inline result<std::uint64_t> decode_u64(std::string_view key, std::string_view value,
                                                      const std::string& what) {
  auto body = unseal(key, value, what);
  if (!body)
    return tl::unexpected(body.error());
  if (body->size() != 8)
    return fail(errc::corrupted, what + " has the wrong size");
  return get_le<std::uint64_t>(reinterpret_cast<const unsigned char*>(body->data()));
}

// dead letter body: version, attempts, first, last failure (LE), then
// stream, type (u16 length + bytes each), error (u32 length + bytes), then
// one flags byte (bit 0: replay requested); records written before the
// flags byte existed end after the error.
[[nodiscard]] inline std::string encode_dead_letter(const dead_letter& dl) {
  std::string body(28, '\0');
  auto* p = reinterpret_cast<unsigned char*>(body.data());
  put_le(p, dl.version);
  put_le(p + 8, dl.attempts);
  put_le(p + 12, dl.first_failure_ns);
  put_le(p + 20, dl.last_failure_ns);
  auto add = [&](std::string_view s, auto len) {
    std::string l(sizeof len, '\0');
    put_le(reinterpret_cast<unsigned char*>(l.data()), static_cast<decltype(len)>(s.size()));
    body += l;
    body.append(s);
  };
  add(dl.stream, std::uint16_t{});
  add(dl.type, std::uint16_t{});
  add(dl.error, std::uint32_t{});
  body.push_back(static_cast<char>(dl.replay_requested ? 1 : 0));
  return body;
}

/// A dead letter stored under `key` (subscriber, a 0 byte, position u64 BE);
/// `corrupted` when the seal fails or a length runs past the body.
[[nodiscard]] inline result<dead_letter> decode_dead_letter(std::string_view key,
                                                            std::string_view value) {
  auto where = std::string{key.substr(0, key.find('\0'))};
  auto body = unseal(key, value, "dead letter of " + where);
  if (!body)
    return tl::unexpected(body.error());
  dead_letter dl;
  auto bad = [&] { return fail(errc::corrupted, "dead letter has a bad layout", where); };
  if (key.size() < 10 || body->size() < 28)
    return bad();
  dl.subscriber = where;
  dl.position = get_be64(reinterpret_cast<const unsigned char*>(key.data() + key.size() - 8));
  auto* p = reinterpret_cast<const unsigned char*>(body->data());
  dl.version = get_le<std::uint64_t>(p);
  dl.attempts = get_le<std::uint32_t>(p + 8);
  dl.first_failure_ns = get_le<std::int64_t>(p + 12);
  dl.last_failure_ns = get_le<std::int64_t>(p + 20);
  std::size_t off = 28;
  auto take = [&](std::string& out, std::size_t width) {
    if (off + width > body->size())
      return false;
    auto* q = p + off;
    std::size_t len = width == 2 ? get_le<std::uint16_t>(q) : get_le<std::uint32_t>(q);
    off += width;
    if (off + len > body->size())
      return false;
    out.assign(body->data() + off, len);
    off += len;
    return true;
  };
  if (!take(dl.stream, 2) || !take(dl.type, 2) || !take(dl.error, 4))
    return bad();
  if (off + 1 == body->size())
    dl.replay_requested = (body->back() & 1) != 0;
  else if (off != body->size())
    return bad();
  return dl;
}

/// (stream number, position of its last event) pairs of one head-log entry.
using head_log_pairs = std::vector<std::pair<std::uint64_t, std::uint64_t>>;

/// The body of a head-log entry: the pairs, in their order.
[[nodiscard]] inline std::string encode_head_log(const head_log_pairs& pairs) {
  std::string body(pairs.size() * head_log_pair_size, '\0');
  auto* p = reinterpret_cast<unsigned char*>(body.data());
  for (auto [no, pos] : pairs) {
    put_le(p, no);
    put_le(p + 8, pos);
    p += head_log_pair_size;
  }
  return body;
}

/// Head-log value at position `key`: sealed pairs of stream number (u64 LE)
/// and position (u64 LE). `corrupted` when the seal fails or the body is
/// empty or not whole pairs (the store then rebuilds the entry from the log).
[[nodiscard]] inline result<head_log_pairs> decode_head_log(std::uint64_t key,
                                                            std::string_view value) {
  auto k = be64_key(key);
  auto body = unseal(k, value, "head log entry");
  if (!body)
    return tl::unexpected(body.error());
  if (body->empty() || body->size() % head_log_pair_size != 0)
    return fail(errc::corrupted, "head log entry has the wrong size",
                "position " + std::to_string(key));
  head_log_pairs pairs;
  auto* p = reinterpret_cast<const unsigned char*>(body->data());
  pairs.reserve(body->size() / head_log_pair_size);
  for (std::size_t i = 0; i < body->size(); i += head_log_pair_size)
    pairs.emplace_back(get_le<std::uint64_t>(p + i), get_le<std::uint64_t>(p + i + 8));
  return pairs;
}

// snapshot value body: schema version (u32 LE), state type length (u16 LE),
// state type, data; its key is the pair_key of stream number and version.
[[nodiscard]] inline std::string encode_snapshot(const snapshot& snap) {
  std::string body(6, '\0');
  auto* p = reinterpret_cast<unsigned char*>(body.data());
  put_le(p, snap.schema_version);
  put_le(p + 4, static_cast<std::uint16_t>(snap.state_type.size()));
  body += snap.state_type;
  body += snap.data;
  return body;
}

/// The snapshot of `stream` stored under `key` (16 bytes); `corrupted` when
/// the seal fails or the body is truncated.
[[nodiscard]] inline result<snapshot> decode_snapshot(std::string_view key, std::string_view value,
                                                      std::string_view stream) {
  if (key.size() != 16)
    return fail(errc::corrupted, "snapshot key has the wrong size", std::string{stream});
  auto version = get_be64(reinterpret_cast<const unsigned char*>(key.data()) + 8);
  auto what = "snapshot of " + std::string{stream} + " at version " + std::to_string(version);
  auto body = unseal(key, value, what);
  if (!body) {
    auto err = body.error();
    err.context = std::string{stream} + " v" + std::to_string(version);
    return tl::unexpected(err);
  }
  auto* p = reinterpret_cast<const unsigned char*>(body->data());
  if (body->size() < 6 || body->size() < 6u + get_le<std::uint16_t>(p + 4))
    return fail(errc::corrupted, what + " is truncated", std::string{stream});
  snapshot s;
  s.stream = std::string{stream};
  s.version = version;
  s.schema_version = get_le<std::uint32_t>(p);
  auto type_len = get_le<std::uint16_t>(p + 4);
  s.state_type = std::string{body->substr(6, type_len)};
  s.data = std::string{body->substr(6 + type_len)};
  return s;
}

// format version body: the version (u32 LE), under format_version_key.
[[nodiscard]] inline std::string encode_format_version(std::uint32_t version) {
  std::string body(4, '\0');
  put_le(reinterpret_cast<unsigned char*>(body.data()), version);
  return body;
}

/// The stored format version; `corrupted` when the seal fails or the size is wrong.
[[nodiscard]] inline result<std::uint32_t> decode_format_version(std::string_view value,
                                                                 const std::string& context) {
  auto body = unseal(format_version_key, value, "the format version");
  if (!body)
    return tl::unexpected(body.error());
  if (body->size() != 4)
    return fail(errc::corrupted, "the format version has the wrong size", context);
  return get_le<std::uint32_t>(reinterpret_cast<const unsigned char*>(body->data()));
}

/// The body of a heads bucket stored under `key` (8 bytes): head_bucket_size
/// bytes of slots. `corrupted` naming `what` when the seal fails or a size is wrong.
[[nodiscard]] inline result<std::string_view> decode_heads_bucket(std::string_view key,
                                                                  std::string_view value,
                                                                  const std::string& what,
                                                                  const std::string& context) {
  auto body = unseal(key, value, what);
  if (!body)
    return body;
  if (key.size() != 8 || body->size() != head_bucket_size)
    return fail(errc::corrupted, what + " has the wrong size", context);
  return body;
}

// -- command log (format 3; what-if replay) ----------------------------------------
// key: sequence (u64 BE, 1, 2, 3 … in commit order); sealed body:
//
//  off size field
//    0    1 layout (1)
//    1    2 stream name length (LE16, >= 1)
//    3    5 lengths of correlation, causation, command id, tenant, user (1 byte each)
//    8    8 stream version before the command (LE64)
//   16    8 position of its first event (LE64; 0 when it emitted none)
//   24    4 number of events it emitted (LE32)
//   28    8 timestamp, ns since the Unix epoch (LEi64)
//   36    4 command payload length (LE32)
//   40      stream name, correlation, causation, command id, tenant, user, payload

inline constexpr std::size_t command_header_size = 40;

/// A command-log entry, its strings pointing into the bytes it was decoded from.
struct command_view {
  std::string_view stream;
  std::uint64_t version_before = 0;
  std::uint64_t first_position = 0;
  std::uint32_t event_count = 0;
  std::int64_t timestamp_ns = 0;
  std::string_view correlation_id, causation_id, command_id, tenant, user, payload;
};

/// Size of the sealed value of `c` (seal included).
[[nodiscard]] inline std::size_t command_value_size(const command_view& c) {
  return seal_size + command_header_size + c.stream.size() + c.correlation_id.size()
         + c.causation_id.size() + c.command_id.size() + c.tenant.size() + c.user.size()
         + c.payload.size();
}

/// Writes the sealed value of `c` under `key` into `out` (exactly
/// command_value_size() bytes), checksum last. The strings' lengths must fit
/// their fields (the store checks them first).
inline void encode_command(unsigned char* out, std::string_view key, const command_view& c) {
  unsigned char* b = out + seal_size;
  b[0] = 1;
  put_le<std::uint16_t>(b + 1, static_cast<std::uint16_t>(c.stream.size()));
  b[3] = static_cast<unsigned char>(c.correlation_id.size());
  b[4] = static_cast<unsigned char>(c.causation_id.size());
  b[5] = static_cast<unsigned char>(c.command_id.size());
  b[6] = static_cast<unsigned char>(c.tenant.size());
  b[7] = static_cast<unsigned char>(c.user.size());
  put_le<std::uint64_t>(b + 8, c.version_before);
  put_le<std::uint64_t>(b + 16, c.first_position);
  put_le<std::uint32_t>(b + 24, c.event_count);
  put_le<std::int64_t>(b + 28, c.timestamp_ns);
  put_le<std::uint32_t>(b + 36, static_cast<std::uint32_t>(c.payload.size()));
  unsigned char* p = b + command_header_size;
  for (std::string_view s :
       {c.stream, c.correlation_id, c.causation_id, c.command_id, c.tenant, c.user, c.payload}) {
    if (!s.empty())
      std::memcpy(p, s.data(), s.size());
    p += s.size();
  }
  auto body = std::string_view{reinterpret_cast<const char*>(b), static_cast<std::size_t>(p - b)};
  put_le<std::uint64_t>(out, seal_checksum(key, body));
}

/// The sealed value of `c` under `key`, as a string (tests, tools).
[[nodiscard]] inline std::string seal_command(std::string_view key, const command_view& c) {
  std::string out(command_value_size(c), '\0');
  encode_command(reinterpret_cast<unsigned char*>(out.data()), key, c);
  return out;
}

/// A command-log entry stored under `key` (8 bytes, the sequence), its
/// strings pointing into `value`; `corrupted` naming the sequence when the
/// seal fails, the layout is unknown, the lengths do not add up to the size,
/// or the event count and first position disagree.
[[nodiscard]] inline result<command_view> decode_command(std::string_view key,
                                                         std::string_view value) {
  if (key.size() != 8)
    return fail(errc::corrupted, "command log key has the wrong size");
  auto where = "sequence "
               + std::to_string(get_be64(reinterpret_cast<const unsigned char*>(key.data())));
  auto body = unseal(key, value, "command log entry");
  if (!body) {
    auto err = body.error();
    err.context = where;
    return tl::unexpected(err);
  }
  auto bad = [&](const char* why) {
    return fail(errc::corrupted, std::string{"command log entry "} + why, where);
  };
  if (body->size() < command_header_size)
    return bad("is shorter than its header");
  auto* b = reinterpret_cast<const unsigned char*>(body->data());
  if (b[0] != 1)
    return bad("has an unknown layout");
  std::size_t lens[7] = {get_le<std::uint16_t>(b + 1), b[3], b[4], b[5], b[6], b[7],
                         get_le<std::uint32_t>(b + 36)};
  std::size_t total = command_header_size;
  for (auto n : lens)
    total += n;
  if (total != body->size())
    return bad("has field lengths that do not add up to its size");
  if (lens[0] == 0)
    return bad("has no stream name");
  command_view c;
  c.version_before = get_le<std::uint64_t>(b + 8);
  c.first_position = get_le<std::uint64_t>(b + 16);
  c.event_count = get_le<std::uint32_t>(b + 24);
  c.timestamp_ns = get_le<std::int64_t>(b + 28);
  if ((c.event_count == 0) != (c.first_position == 0))
    return bad("has an event count and a first position that disagree");
  const char* p = body->data() + command_header_size;
  std::string_view* fields[7] = {&c.stream, &c.correlation_id, &c.causation_id, &c.command_id,
                                 &c.tenant, &c.user,           &c.payload};
  for (int i = 0; i < 7; ++i) {
    *fields[i] = std::string_view{p, lens[i]};
    p += lens[i];
  }
  return c;
}

/// Copies a decoded command-log entry into an owning one.
inline void to_command(const command_view& c, std::uint64_t sequence, recorded_command& out) {
  out.sequence = sequence;
  out.stream.assign(c.stream);
  out.version_before = c.version_before;
  out.first_position = c.first_position;
  out.event_count = c.event_count;
  out.timestamp_ns = c.timestamp_ns;
  out.meta.correlation_id.assign(c.correlation_id);
  out.meta.causation_id.assign(c.causation_id);
  out.meta.command_id.assign(c.command_id);
  out.meta.tenant.assign(c.tenant);
  out.meta.user.assign(c.user);
  out.payload.assign(c.payload);
}

// -- system records and epochs (replication.hpp) ---------------------------------
// A system record is a log record of a stream whose name starts with '$',
// which validate_stream_name refuses, so no user append can write one. There
// are two kinds. The epoch record: stream "$epoch", type "$epoch", schema
// version 1, its stream version the count of epoch records so far, no
// metadata. Its payload:
//
//  off size field
//    0    1 layout (1)
//    1    8 epoch number (LE64, >= 1)
//    9    8 position of the previous epoch record (LE64; 0 for the first)
//   17    2 node name length n (LE16, 1-255)
//   19    n node name
//
// The meta entry `epoch` holds the newest epoch (sealed): epoch number
// (LE64), position of its epoch record (LE64).
//
// The forget record (write_batch::forget): stream "$forget", type "$forget",
// schema version 1, its stream version the count of forget records so far,
// no metadata (the subject is in the payload, so the subject index never
// names "$forget"). Written in the transaction that deletes the subject's
// data key, after that transaction's appends. Its payload:
//
//  off size field
//    0    1 layout (1)
//    1    1 subject length n (1-255)
//    2    n the forgotten subject

/// True for the name of a system stream ('$' first).
[[nodiscard]] inline bool is_system_stream(std::string_view stream) {
  return !stream.empty() && stream.front() == '$';
}

/// Stream and type name of epoch records.
inline constexpr std::string_view epoch_stream = "$epoch";
inline constexpr std::string_view epoch_type = "$epoch";
/// Stream and type name of forget records.
inline constexpr std::string_view forget_stream = "$forget";
inline constexpr std::string_view forget_type = "$forget";
/// True for the type of a system record (the store's own, never a registry's).
[[nodiscard]] inline bool is_system_type(std::string_view type) {
  return type == epoch_type || type == forget_type;
}
/// meta key of the newest epoch.
inline constexpr std::string_view epoch_key = "epoch";
inline constexpr std::size_t epoch_payload_header_size = 19;
/// Longest node name an epoch record holds.
inline constexpr std::size_t max_epoch_node = 255;

/// The payload of an epoch record, its node name pointing into the bytes it
/// was decoded from.
struct epoch_payload {
  std::uint64_t epoch = 0;
  std::uint64_t previous_position = 0;
  std::string_view node;
};

/// The payload of an epoch record; the node name must be 1-255 bytes.
[[nodiscard]] inline std::string encode_epoch_payload(const epoch_payload& e) {
  std::string out(epoch_payload_header_size, '\0');
  auto* p = reinterpret_cast<unsigned char*>(out.data());
  p[0] = 1;
  put_le<std::uint64_t>(p + 1, e.epoch);
  put_le<std::uint64_t>(p + 9, e.previous_position);
  put_le<std::uint16_t>(p + 17, static_cast<std::uint16_t>(e.node.size()));
  out.append(e.node);
  return out;
}

/// An epoch record's payload; `corrupted` when the layout is unknown, the
/// epoch is 0, the node name is empty or longer than 255 bytes, or the sizes
/// do not add up.
[[nodiscard]] inline result<epoch_payload> decode_epoch_payload(std::string_view payload) {
  auto bad = [](const char* why) {
    return fail(errc::corrupted, std::string{"epoch record "} + why);
  };
  if (payload.size() < epoch_payload_header_size)
    return bad("is shorter than its header");
  auto* p = reinterpret_cast<const unsigned char*>(payload.data());
  if (p[0] != 1)
    return bad("has an unknown layout");
  epoch_payload e;
  e.epoch = get_le<std::uint64_t>(p + 1);
  e.previous_position = get_le<std::uint64_t>(p + 9);
  std::size_t n = get_le<std::uint16_t>(p + 17);
  if (e.epoch == 0)
    return bad("has epoch 0");
  if (n == 0 || n > max_epoch_node)
    return bad("has a node name that is not 1-255 bytes");
  if (epoch_payload_header_size + n != payload.size())
    return bad("has a node name length that does not add up to its size");
  e.node = payload.substr(epoch_payload_header_size);
  return e;
}

inline constexpr std::size_t forget_payload_header_size = 2;
/// Longest subject a forget record names (as the records' subject field).
inline constexpr std::size_t max_forget_subject = 255;

/// The payload of a forget record; the subject must be 1-255 bytes.
[[nodiscard]] inline std::string encode_forget_payload(std::string_view subject) {
  std::string out(forget_payload_header_size, '\0');
  out[0] = 1;
  out[1] = static_cast<char>(static_cast<unsigned char>(subject.size()));
  out.append(subject);
  return out;
}

/// The subject a forget record's payload names, pointing into `payload`;
/// `corrupted` when the layout is unknown, the subject is empty, or the sizes
/// do not add up.
[[nodiscard]] inline result<std::string_view> decode_forget_payload(std::string_view payload) {
  auto bad = [](const char* why) {
    return fail(errc::corrupted, std::string{"forget record "} + why);
  };
  if (payload.size() < forget_payload_header_size)
    return bad("is shorter than its header");
  auto* p = reinterpret_cast<const unsigned char*>(payload.data());
  if (p[0] != 1)
    return bad("has an unknown layout");
  std::size_t n = p[1];
  if (n == 0)
    return bad("names an empty subject");
  if (forget_payload_header_size + n != payload.size())
    return bad("has a subject length that does not add up to its size");
  return payload.substr(forget_payload_header_size);
}

/// Whether a system record (stream, type and payload) is one this build
/// knows and its payload decodes: an epoch or a forget record.
[[nodiscard]] inline bool is_known_system_record(std::string_view stream, std::string_view type,
                                                 std::string_view payload) {
  if (stream == epoch_stream)
    return type == epoch_type && decode_epoch_payload(payload).has_value();
  if (stream == forget_stream)
    return type == forget_type && decode_forget_payload(payload).has_value();
  return false;
}

/// The body of the meta entry `epoch`: epoch number, position of its record.
[[nodiscard]] inline std::string encode_epoch_header(std::uint64_t epoch, std::uint64_t position) {
  std::string body(16, '\0');
  put_le(reinterpret_cast<unsigned char*>(body.data()), epoch);
  put_le(reinterpret_cast<unsigned char*>(body.data()) + 8, position);
  return body;
}

/// The meta entry `epoch` as (epoch, position); `corrupted` when the seal
/// fails or the size is wrong.
[[nodiscard]] inline result<std::pair<std::uint64_t, std::uint64_t>>
decode_epoch_header(std::string_view value) {
  auto body = unseal(epoch_key, value, "the store header's epoch");
  if (!body)
    return tl::unexpected(body.error());
  if (body->size() != 16)
    return fail(errc::corrupted, "the store header's epoch has the wrong size");
  auto* p = reinterpret_cast<const unsigned char*>(body->data());
  return std::pair{get_le<std::uint64_t>(p), get_le<std::uint64_t>(p + 8)};
}

// -- retention cuts --------------------------------------------------------------
// The "retention" table: under BE64 0 the log's cut (a u64_body: the first
// position from which the log is complete); under BE64 stream number the
// stream's cut, sealed 16 bytes: LE64 first kept version, LE64 its position.

/// The body of a stream's retention cut.
[[nodiscard]] inline std::string encode_stream_cut(std::uint64_t version, std::uint64_t position) {
  std::string body(16, '\0');
  auto* p = reinterpret_cast<unsigned char*>(body.data());
  put_le<std::uint64_t>(p, version);
  put_le<std::uint64_t>(p + 8, position);
  return body;
}

/// A stream's retention cut stored under `key` (8 bytes) as (first kept
/// version, its position); `corrupted` when the seal fails, a size is wrong,
/// or the version is 0.
[[nodiscard]] inline result<std::pair<std::uint64_t, std::uint64_t>>
decode_stream_cut(std::string_view key, std::string_view value) {
  if (key.size() != 8)
    return fail(errc::corrupted,
                "a retention cut has a key of " + std::to_string(key.size()) + " bytes");
  auto where = "retention cut of stream number "
               + std::to_string(get_be64(reinterpret_cast<const unsigned char*>(key.data())));
  auto body = unseal(key, value, where);
  if (!body)
    return tl::unexpected(body.error());
  if (body->size() != 16)
    return fail(errc::corrupted, where + " has the wrong size");
  auto* p = reinterpret_cast<const unsigned char*>(body->data());
  auto version = get_le<std::uint64_t>(p);
  if (version == 0)
    return fail(errc::corrupted, where + " names version 0");
  return std::pair{version, get_le<std::uint64_t>(p + 8)};
}

} // namespace cairn::persistence::format
