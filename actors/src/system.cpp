#include "cairn/actors/system.hpp"

#include <caf/actor_cast.hpp>
#include <caf/actor_system.hpp>
#include <caf/scoped_actor.hpp>

namespace cairn::actors {

void stop_caf_internal_actors(caf::actor_system& sys, std::chrono::milliseconds limit) {
  caf::scoped_actor self{sys};
  for (const auto& internal : {sys.spawn_serv(), sys.config_serv()}) {
    auto who = caf::actor_cast<caf::actor>(internal);
    if (!who)
      continue;
    self->monitor(who);
    self->send_exit(who, caf::exit_reason::user_shutdown);
    self->receive([](const caf::down_msg&) {}, caf::after(limit) >> [] {});
  }
}

} // namespace cairn::actors
