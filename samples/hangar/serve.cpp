#include <istream>
#include <ostream>
#include <sstream>
#include <vector>

#include "hangar/demo.hpp"
#include "hangar/service.hpp"

namespace hangar {

namespace {

const char* const usage =
  "commands: register ID MODE [COMMAND...|ENDPOINT] | start ID | stop ID [REASON] | "
  "invoke ID TOOL [ARGS] | status [ID] | history ID | state-at ID VERSION | quit";

std::vector<std::string> words(const std::string& line) {
  std::istringstream in{line};
  std::vector<std::string> out;
  for (std::string w; in >> w;)
    out.push_back(w);
  return out;
}

std::string err(const cairn::error& e) { return "error " + e.to_string(); }

std::string describe(const provider::state& s) {
  std::ostringstream out;
  out << "state=" << to_string(s.status) << " mode=" << to_string(s.mode)
      << " consecutive_failures=" << s.consecutive_failures
      << " total_failures=" << s.total_failures << " invocations=" << s.total_invocations;
  if (!s.last_error.empty())
    out << " last_error=\"" << s.last_error << '"';
  return out.str();
}

std::string answer(service& svc, const std::vector<std::string>& w) {
  const auto& cmd = w[0];
  auto need = [&](std::size_t n) { return w.size() >= n; };
  if (cmd == "register") {
    if (!need(3))
      return "error invalid_argument: register ID MODE [COMMAND...|ENDPOINT]";
    auto mode = parse_provider_mode(w[2]);
    if (!mode)
      return "error invalid_argument: unknown mode '" + w[2]
             + "' (subprocess, docker, remote, group)";
    provider_config config;
    if (*mode == provider_mode::subprocess || *mode == provider_mode::docker)
      config.command.assign(w.begin() + 3, w.end());
    else if (need(4))
      config.endpoint = w[3];
    auto r = svc.register_provider(w[1], *mode, config);
    return r ? "ok registered " + w[1] : err(r.error());
  }
  if (cmd == "start" && need(2)) {
    auto r = svc.start_provider(w[1]);
    return r ? "ok starting " + w[1] : err(r.error());
  }
  if (cmd == "stop" && need(2)) {
    auto r = svc.stop_provider(w[1], need(3) ? w[2] : "manual");
    return r ? "ok stopped " + w[1] : err(r.error());
  }
  if (cmd == "invoke" && need(3)) {
    auto r = svc.invoke(w[1], w[2], need(4) ? w[3] : "{}");
    return r ? "ok requested " + *r : err(r.error());
  }
  if (cmd == "status") {
    if (need(2)) {
      auto s = svc.runtime().state<provider>(w[1]);
      if (!s)
        return err(s.error());
      if (!s->registered)
        return "error rejected: not_registered [" + w[1] + "]";
      return "ok " + describe(*s);
    }
    std::ostringstream out;
    out << "ok";
    for (const auto& [id, p] : svc.providers())
      out << ' ' << id << '=' << p.state;
    return out.str();
  }
  if (cmd == "history" && need(2)) {
    auto events = svc.runtime().store().read_stream("provider-" + w[1], 1, 100000);
    if (!events)
      return err(events.error());
    std::ostringstream out;
    out << "ok " << events->size() << " events:";
    for (const auto& e : *events)
      out << " v" << e.version << '=' << e.type;
    return out.str();
  }
  if (cmd == "state-at" && need(3)) {
    char* end = nullptr;
    auto version = std::strtoull(w[2].c_str(), &end, 10);
    if (end == w[2].c_str() || *end != '\0')
      return "error invalid_argument: VERSION must be a number, not '" + w[2] + "'";
    auto s = svc.runtime().state_at<provider>(w[1], version);
    return s ? "ok " + describe(*s) : err(s.error());
  }
  return std::string{"error invalid_argument: "} + usage;
}

} // namespace

int serve(const std::string& data_dir, std::istream& in, std::ostream& out) {
  service_options so;
  so.data_dir = data_dir;
  auto started = service::start(so);
  if (!started) {
    out << err(started.error()) << std::endl;
    return 1;
  }
  out << "ok hangar serving " << data_dir << "; " << usage << std::endl;
  for (std::string line; std::getline(in, line);) {
    auto w = words(line);
    if (w.empty())
      continue;
    if (w[0] == "quit")
      break;
    out << answer(**started, w) << std::endl;
  }
  return 0;
}

} // namespace hangar
