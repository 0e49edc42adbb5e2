#include "hangar/what_if.hpp"

#include <iomanip>
#include <iterator>
#include <ostream>
#include <variant>

#include "hangar/provider.hpp"

namespace hangar {

namespace {

// In the order of provider_group::command's alternatives.
const char* const command_names[] = {
  "create_group",  "update_group",           "delete_group",         "add_member",
  "remove_member", "select_member",          "record_member_result", "reset_circuit",
  "tick",          "record_member_lifecycle"};
static_assert(std::size(command_names) == std::variant_size_v<provider_group::command>);

std::string describe(const provider_group::command& c) {
  std::string out = command_names[c.index()];
  if (const auto* r = std::get_if<record_member_result>(&c))
    out += std::string{" "} + r->member + (r->ok ? " ok" : " failed");
  else if (const auto* s = std::get_if<select_member>(&c))
    out += " " + s->request_id;
  return out;
}

std::string names(const std::vector<provider_group::event>& events) {
  if (events.empty())
    return "(no event)";
  std::string out;
  for (const auto& e : events) {
    if (!out.empty())
      out += ", ";
    out +=
      std::visit([](const auto& x) { return std::string{std::decay_t<decltype(x)>::type_name}; },
                 e);
  }
  return out;
}

bool opens(const cairn::decision<provider_group::event>& d) {
  if (!d)
    return false;
  for (const auto& e : *d)
    if (std::holds_alternative<group_circuit_opened>(e))
      return true;
  return false;
}

} // namespace

cairn::result<what_if_summary> print_what_if(cairn::runtime& rt, std::uint32_t threshold,
                                             std::ostream& out) {
  auto report = rt.what_if<provider_group>(stricter_breaker{threshold});
  if (!report)
    return tl::unexpected(report.error());
  what_if_summary sum;
  out << "what if circuits opened after " << threshold << " consecutive failures ("
      << report->commands << " recorded group commands re-run):\n";
  for (const auto& s : report->streams) {
    ++sum.groups;
    if (!s.difference) {
      out << "  group " << std::left << std::setw(8) << s.id << std::right << " no difference over "
          << s.commands << " commands\n";
      continue;
    }
    ++sum.differing;
    const auto& d = *s.difference;
    sum.opened_earlier += opens(d.alternative) ? 1 : 0;
    out << "  group " << std::left << std::setw(8) << s.id << std::right
        << " first difference at command " << s.commands << " (log #" << d.sequence << ", v"
        << d.version << ", correlation "
        << (d.meta.correlation_id.empty() ? "-" : d.meta.correlation_id)
        << "): " << describe(d.command) << '\n'
        << "    recorded:    " << names(d.recorded) << '\n'
        << "    threshold " << threshold << ": "
        << (d.alternative ? names(*d.alternative) : "rejected: " + d.alternative.error().reason)
        << '\n';
  }
  return sum;
}

int what_if(const std::string& data_dir, std::uint32_t threshold, std::ostream& out) {
  cairn::runtime_options ro;
  ro.data_dir = data_dir;
  auto rt = cairn::runtime::start(ro);
  if (!rt) {
    out << "hangar: " << rt.error().to_string() << '\n';
    return 1;
  }
  if (auto ok = (*rt)->register_aggregate<provider>(); !ok) {
    out << "hangar: " << ok.error().to_string() << '\n';
    return 1;
  }
  if (auto ok = (*rt)->register_aggregate<provider_group>(); !ok) {
    out << "hangar: " << ok.error().to_string() << '\n';
    return 1;
  }
  auto sum = print_what_if(**rt, threshold, out);
  if (!sum) {
    out << "hangar: " << sum.error().to_string() << '\n';
    return 1;
  }
  return 0;
}

} // namespace hangar
