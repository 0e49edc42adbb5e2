#pragma once

// The text the standby demo (standby_demo.cpp) reads: a node's `replication`
// answer on its standard output, and fields of the file of cut events a
// rejoining owner writes. Apart from the demo so the readers need no runtime
// (tests/fuzz/node_line.cpp fuzzes them).
//
//   auto v = parse_replication_line("replication standby peer=B connected=1 epoch=2 "
//                                   "committed=40 acknowledged=40 truncated=3 fenced=0");
//   // v.role == "standby", v.peer == "B", v.truncated == 3

#include <cstdint>
#include <cstdlib>
#include <sstream>
#include <string>
#include <string_view>

#include "cairn/model/cluster_status.hpp"

namespace hangar {

/// A node's replication status as `hangar node` answers the line
/// `replication`: "replication ROLE peer=P connected=0|1 epoch=E committed=N
/// acknowledged=M truncated=T fenced=0|1[ problem=TEXT...]", or
/// "replication none" without replication. `problem` comes last: it has blanks.
[[nodiscard]] inline std::string replication_line(const cairn::replication_status* r) {
  if (r == nullptr)
    return "replication none";
  std::string line = "replication " + r->role + " peer=" + r->peer + " connected="
                     + (r->connected ? "1" : "0") + " epoch=" + std::to_string(r->epoch)
                     + " committed=" + std::to_string(r->committed)
                     + " acknowledged=" + std::to_string(r->acknowledged) + " truncated="
                     + std::to_string(r->truncated) + " fenced=" + (r->fenced ? "1" : "0");
  if (!r->problem.empty())
    line += " problem=" + r->problem;
  return line;
}

/// replication_line read back: the fields it names (the others stay 0 or
/// empty); `role` empty for "replication none" and for a line of another
/// form. A number that is no number reads as what strtoull makes of it.
/// Bounded by the line: one pass over its words.
[[nodiscard]] inline cairn::replication_status parse_replication_line(std::string_view line) {
  cairn::replication_status v;
  std::istringstream in{std::string{line}};
  std::string word;
  if (!(in >> word) || word != "replication" || !(in >> v.role) || v.role == "none") {
    v.role.clear();
    return v;
  }
  while (in >> word) {
    auto eq = word.find('=');
    if (eq == std::string::npos)
      continue;
    auto key = word.substr(0, eq), value = word.substr(eq + 1);
    if (key == "problem") {
      std::string rest;
      std::getline(in, rest);
      v.problem = value + rest;
      break;
    }
    if (key == "peer") {
      v.peer = value;
      continue;
    }
    auto n = std::strtoull(value.c_str(), nullptr, 10);
    if (key == "connected")
      v.connected = n != 0;
    else if (key == "fenced")
      v.fenced = n != 0;
    else if (key == "epoch")
      v.epoch = n;
    else if (key == "committed")
      v.committed = n;
    else if (key == "acknowledged")
      v.acknowledged = n;
    else if (key == "truncated")
      v.truncated = n;
  }
  return v;
}

/// The value of `"key":"VALUE"` in one JSON line as `cairn export` writes it
/// (the cut file of a rejoin), up to the next quote; "" when absent. For
/// values without escapes (type names, correlation ids); bounded by the line.
[[nodiscard]] inline std::string json_string_field(std::string_view line, std::string_view key) {
  std::string needle = "\"" + std::string{key} + "\":\"";
  auto at = line.find(needle);
  if (at == std::string_view::npos)
    return {};
  at += needle.size();
  auto end = line.find('"', at);
  return end == std::string_view::npos ? std::string{} : std::string{line.substr(at, end - at)};
}

} // namespace hangar
