#include "cairn/actors/log.hpp"

#include <spdlog/spdlog.h>

namespace cairn::actors {

std::shared_ptr<spdlog::logger> logger(const char* name) {
  if (auto found = spdlog::get(name))
    return found;
  // Not registered: sinks are the runtime's to choose.
  return std::make_shared<spdlog::logger>(name);
}

} // namespace cairn::actors
