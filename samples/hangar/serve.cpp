#include <istream>
#include <ostream>
#include <sstream>

#include "hangar/demo.hpp"
#include "hangar/serve_line.hpp"
#include "hangar/service.hpp"

namespace hangar {

namespace {

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

} // namespace

std::string serve_answer(service& svc, const serve_request& r) {
  using kind = serve_request::kind;
  switch (r.what) {
    case kind::register_provider: {
      auto ok = svc.register_provider(r.id, r.mode, r.config);
      return ok ? "ok registered " + r.id : err(ok.error());
    }
    case kind::start: {
      auto ok = svc.start_provider(r.id);
      return ok ? "ok starting " + r.id : err(ok.error());
    }
    case kind::stop: {
      auto ok = svc.stop_provider(r.id, r.reason);
      return ok ? "ok stopped " + r.id : err(ok.error());
    }
    case kind::invoke: {
      auto ok = svc.invoke(r.id, r.tool, r.args);
      return ok ? "ok requested " + *ok : err(ok.error());
    }
    case kind::status: {
      if (!r.id.empty()) {
        auto s = svc.runtime().state<provider>(r.id);
        if (!s)
          return err(s.error());
        if (!s->registered)
          return "error rejected: not_registered [" + r.id + "]";
        return "ok " + describe(*s);
      }
      std::ostringstream out;
      out << "ok";
      for (const auto& [id, p] : svc.providers())
        out << ' ' << id << '=' << p.state;
      return out.str();
    }
    case kind::history: {
      auto events = svc.runtime().store().read_stream("provider-" + r.id, 1, 100000);
      if (!events)
        return err(events.error());
      std::ostringstream out;
      out << "ok " << events->size() << " events:";
      for (const auto& e : *events)
        out << " v" << e.version << '=' << e.type;
      return out.str();
    }
    case kind::state_at: {
      auto s = svc.runtime().state_at<provider>(r.id, r.version);
      return s ? "ok " + describe(*s) : err(s.error());
    }
    case kind::quit: break;
  }
  return "error internal: unhandled request";
}

int serve(const std::string& data_dir, std::istream& in, std::ostream& out) {
  service_options so;
  so.data_dir = data_dir;
  auto started = service::start(so);
  if (!started) {
    out << err(started.error()) << std::endl;
    return 1;
  }
  out << "ok hangar serving " << data_dir << "; " << serve_usage << std::endl;
  for (std::string line; std::getline(in, line);) {
    auto req = parse_serve_line(line);
    if (!req) {
      out << err(req.error()) << std::endl;
      continue;
    }
    if (!*req)
      continue;
    if ((*req)->what == serve_request::kind::quit)
      break;
    out << serve_answer(**started, **req) << std::endl;
  }
  return 0;
}

} // namespace hangar
