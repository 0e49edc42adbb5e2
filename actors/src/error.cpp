#include "cairn/actors/error.hpp"

#include <string>
#include <utility>

#include <caf/message.hpp>

namespace cairn::actors {

namespace {

std::optional<cairn::error> decode(std::uint8_t code, const caf::message& ctx) {
  if (code < static_cast<std::uint8_t>(errc::rejected)
      || code > static_cast<std::uint8_t>(errc::truncated))
    return std::nullopt;
  cairn::error out{static_cast<errc>(code), {}};
  if (ctx.match_elements<std::string, std::string>()) {
    out.message = ctx.get_as<std::string>(0);
    out.context = ctx.get_as<std::string>(1);
  }
  return out;
}

} // namespace

caf::error to_caf_error(const cairn::error& e) {
  return caf::error{static_cast<std::uint8_t>(e.code), error_category,
                    caf::make_message(e.message, e.context)};
}

std::optional<cairn::error> from_caf_error(const caf::error& e) {
  if (!e || e.category() != error_category)
    return std::nullopt;
  return decode(e.code(), e.context());
}

void add_error_category(caf::actor_system_config& cfg) {
  cfg.add_error_category(error_category, [](std::uint8_t code, caf::atom_value,
                                            const caf::message& ctx) {
    auto e = decode(code, ctx);
    return e ? e->to_string() : "cairn: unknown code " + std::to_string(code);
  });
}

} // namespace cairn::actors
