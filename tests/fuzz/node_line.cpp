// What the standby demo reads (samples/hangar/hangar/node_lines.hpp): a node's
// `replication` answer, and string fields of the lines of a rejoin's cut file.
// Every line of the input is read both ways.

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "fuzz_check.hpp"
#include "hangar/node_lines.hpp"

namespace {

bool same(const cairn::replication_status& a, const cairn::replication_status& b) {
  return a.role == b.role && a.peer == b.peer && a.connected == b.connected && a.epoch == b.epoch
         && a.committed == b.committed && a.acknowledged == b.acknowledged
         && a.truncated == b.truncated && a.fenced == b.fenced && a.problem == b.problem;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view text{reinterpret_cast<const char*>(data), size};
  while (!text.empty()) {
    auto nl = text.find('\n');
    auto line = text.substr(0, nl);
    text = nl == std::string_view::npos ? std::string_view{} : text.substr(nl + 1);
    auto v = hangar::parse_replication_line(line);
    if (!v.role.empty()) {
      // What reads is written back to a line that reads the same.
      auto again = hangar::parse_replication_line(hangar::replication_line(&v));
      CAIRN_FUZZ_CHECK(same(v, again), "a replication line round-trips");
    } else {
      CAIRN_FUZZ_CHECK(v.peer.empty() && v.problem.empty() && v.epoch == 0,
                       "a line of another form reads as nothing");
    }
    for (const char* key : {"type", "correlation_id", "stream"}) {
      auto value = hangar::json_string_field(line, key);
      CAIRN_FUZZ_CHECK(value.find('"') == std::string::npos, "a field ends at its quote");
      CAIRN_FUZZ_CHECK(value.empty() || line.find(value) != std::string_view::npos,
                       "a field is part of its line");
    }
  }
  return 0;
}
