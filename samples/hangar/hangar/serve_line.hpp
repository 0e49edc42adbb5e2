#pragma once

// The line protocol of `hangar serve` (serve.cpp): one command per line,
// words separated by blanks. Parsing is apart from running, so the parser
// needs no runtime (tests/fuzz/serve_line.cpp fuzzes it).
//
//   auto req = parse_serve_line("stop p1 maintenance");
//   // req: ok, (*req)->what == serve_request::kind::stop, id "p1", reason "maintenance"

#include <cstdint>
#include <cstdlib>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "cairn/model/error.hpp"
#include "hangar/provider.hpp"

namespace hangar {

/// What `hangar serve` answers to a line it does not understand.
inline constexpr const char* serve_usage =
  "commands: register ID MODE [COMMAND...|ENDPOINT] | start ID | stop ID [REASON] | "
  "invoke ID TOOL [ARGS] | status [ID] | history ID | state-at ID VERSION | quit";

/// One parsed line of `hangar serve`.
struct serve_request {
  enum class kind { register_provider, start, stop, invoke, status, history, state_at, quit };
  kind what = kind::status;
  std::string id;                                 ///< Empty for `status` of every provider.
  provider_mode mode = provider_mode::subprocess; ///< register
  provider_config config;                         ///< register: command words or endpoint
  std::string reason = "manual";                  ///< stop
  std::string tool;                               ///< invoke
  std::string args = "{}";                        ///< invoke
  std::uint64_t version = 0;                      ///< state-at
};

/// The blank-separated words of `line`.
[[nodiscard]] inline std::vector<std::string> serve_words(const std::string& line) {
  std::istringstream in{line};
  std::vector<std::string> out;
  for (std::string w; in >> w;)
    out.push_back(w);
  return out;
}

/// Parses one line (without its newline): nullopt for a blank line,
/// `invalid_argument` whose message is the answer's text for an unknown
/// command, missing arguments, an unknown mode or a VERSION that is no number.
[[nodiscard]] inline cairn::result<std::optional<serve_request>>
parse_serve_line(const std::string& line) {
  auto w = serve_words(line);
  if (w.empty())
    return std::optional<serve_request>{};
  auto bad = [](std::string why) { return cairn::fail(cairn::errc::invalid_argument, why); };
  const auto& cmd = w[0];
  auto need = [&](std::size_t n) { return w.size() >= n; };
  serve_request r;
  if (need(2))
    r.id = w[1];
  if (cmd == "quit") {
    r.what = serve_request::kind::quit;
  } else if (cmd == "register") {
    if (!need(3))
      return bad("register ID MODE [COMMAND...|ENDPOINT]");
    auto mode = parse_provider_mode(w[2]);
    if (!mode)
      return bad("unknown mode '" + w[2] + "' (subprocess, docker, remote, group)");
    r.what = serve_request::kind::register_provider;
    r.mode = *mode;
    if (*mode == provider_mode::subprocess || *mode == provider_mode::docker)
      r.config.command.assign(w.begin() + 3, w.end());
    else if (need(4))
      r.config.endpoint = w[3];
  } else if (cmd == "start" && need(2)) {
    r.what = serve_request::kind::start;
  } else if (cmd == "stop" && need(2)) {
    r.what = serve_request::kind::stop;
    if (need(3))
      r.reason = w[2];
  } else if (cmd == "invoke" && need(3)) {
    r.what = serve_request::kind::invoke;
    r.tool = w[2];
    if (need(4))
      r.args = w[3];
  } else if (cmd == "status") {
    r.what = serve_request::kind::status;
  } else if (cmd == "history" && need(2)) {
    r.what = serve_request::kind::history;
  } else if (cmd == "state-at" && need(3)) {
    char* end = nullptr;
    r.version = std::strtoull(w[2].c_str(), &end, 10);
    if (end == w[2].c_str() || *end != '\0')
      return bad("VERSION must be a number, not '" + w[2] + "'");
    r.what = serve_request::kind::state_at;
  } else {
    return bad(serve_usage);
  }
  return std::optional<serve_request>{std::move(r)};
}

} // namespace hangar
