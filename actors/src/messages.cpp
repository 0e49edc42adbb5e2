#include "cairn/actors/messages.hpp"

namespace cairn::actors {

reply_msg error_reply(const cairn::error& e) {
  reply_msg r;
  r.code = static_cast<std::uint8_t>(e.code);
  r.message = e.message;
  r.context = e.context;
  return r;
}

} // namespace cairn::actors
