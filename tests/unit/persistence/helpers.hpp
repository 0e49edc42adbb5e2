#pragma once

// Shared helpers of the persistence unit tests: store options that skip
// fsync, short ways to build requests, and byte surgery on data.mdb.

#include <cstddef>
#include <cstdint>
#include <fstream>
#include <iterator>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <catch2/catch.hpp>

#include "cairn/model/error.hpp"
#include "cairn/persistence/event_store.hpp"

namespace Catch {

// "REQUIRE(r)" on a failed result prints the error, not "{?}".
template <class T> struct StringMaker<tl::expected<T, cairn::error>> {
  static std::string convert(const tl::expected<T, cairn::error>& r) {
    return r ? std::string{"ok"} : r.error().to_string();
  }
};

} // namespace Catch

namespace cairn::test {

namespace cp = cairn::persistence;

/// The value of a result that must have succeeded; fails the test, printing
/// the error, otherwise (dereferencing a failed result would be undefined).
template <class T> T value_of(cairn::result<T> r) {
  REQUIRE(r);
  return std::move(*r);
}

/// Options for tests that do not test durability: no fsync, small map.
inline cp::store_options fast_options() {
  cp::store_options o;
  o.durability = cp::durability::no_sync;
  o.initial_map_size = std::size_t{16} << 20;
  return o;
}

/// Opens a store or fails the test with the error.
inline std::unique_ptr<cp::event_store> open_ok(const std::string& dir,
                                                const cp::store_options& o = fast_options()) {
  auto s = cp::open_store(dir, o);
  INFO("open_store(" << dir << ")");
  REQUIRE(s);
  return std::move(*s);
}

inline cp::event_data event(std::string type, std::string payload) {
  cp::event_data e;
  e.type = std::move(type);
  e.payload = std::move(payload);
  return e;
}

inline cp::append_request request(std::string stream, cp::expected_version expected,
                                  std::vector<cp::event_data> events, cp::metadata meta = {}) {
  cp::append_request r;
  r.stream = std::move(stream);
  r.expected = expected;
  r.events = std::move(events);
  r.meta = std::move(meta);
  return r;
}

/// `n` events of type "noted" whose payloads are "<prefix><i>", i = first..first+n-1.
inline std::vector<cp::event_data> numbered(std::size_t n, const std::string& prefix = "p",
                                            std::size_t first = 1) {
  std::vector<cp::event_data> out;
  for (std::size_t i = 0; i < n; ++i)
    out.push_back(event("noted", prefix + std::to_string(first + i)));
  return out;
}

/// Appends `events` with expected any; fails the test on error.
inline cp::append_result append_ok(cp::event_store& s, const std::string& stream,
                                   std::vector<cp::event_data> events, cp::metadata meta = {}) {
  auto r =
    s.append(request(stream, cp::expected_version::any(), std::move(events), std::move(meta)));
  INFO("append to " << stream);
  REQUIRE(r);
  return *r;
}

inline std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  REQUIRE(in.good());
  return std::string{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

inline void write_file(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  REQUIRE(out.good());
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  REQUIRE(out.good());
}

/// Flips bit 0 of the byte `offset` bytes into every occurrence of `marker`
/// in `path` (LMDB copies pages on write, so stale copies may hold it too;
/// flipping them all guarantees the live copy is hit). Returns the count.
inline std::size_t flip_in_file(const std::string& path, std::string_view marker,
                                std::size_t offset = 0) {
  auto bytes = read_file(path);
  std::size_t count = 0;
  for (auto at = bytes.find(marker); at != std::string::npos; at = bytes.find(marker, at + 1)) {
    bytes[at + offset] = static_cast<char>(bytes[at + offset] ^ 0x01);
    ++count;
  }
  write_file(path, bytes);
  return count;
}

/// Counts the occurrences of `needle` in the file at `path`.
inline std::size_t count_in_file(const std::string& path, std::string_view needle) {
  auto bytes = read_file(path);
  std::size_t count = 0;
  for (auto at = bytes.find(needle); at != std::string::npos; at = bytes.find(needle, at + 1))
    ++count;
  return count;
}

inline bool contains(const std::string& haystack, std::string_view needle) {
  return haystack.find(needle) != std::string::npos;
}

} // namespace cairn::test
