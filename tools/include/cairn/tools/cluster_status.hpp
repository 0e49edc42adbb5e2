#pragma once

// The cluster status that GET /cluster of a node's metrics endpoint serves
// (cairn::to_json of cairn/runtime/cluster.hpp), parsed back, so
// `cairn cluster status` can print it as a table. No I/O: the bytes come
// from the network, and a fuzz target calls it with any input.
//
//   auto status = parse_cluster_status(body);   // invalid_argument on bad JSON
//   if (status) std::cout << cairn::to_text(*status);

#include <cstddef>
#include <string_view>

#include "cairn/model/error.hpp"
#include "cairn/runtime/cluster.hpp"

namespace cairn::tools {

/// The largest status `cairn cluster status` reads: 4 MiB, some thousand
/// peers with their round-trip histograms.
inline constexpr std::size_t max_cluster_status_bytes = std::size_t{4} << 20;

/// The status in `json`, as cairn::to_json writes it: every member it writes
/// must be there with its type (members it does not know are ignored).
/// `invalid_argument` naming the first problem: not JSON, longer than
/// max_cluster_status_bytes, a missing member, a wrong type, a number out
/// of its field's range, a digest that is not 16 hex digits.
[[nodiscard]] result<cluster_status> parse_cluster_status(std::string_view json);

} // namespace cairn::tools
