#pragma once

/// CAF's work-stealing scheduler without the per-job logging cast.
///
/// CAF 0.17's worker loop runs CAF_PUSH_AID_FROM_PTR(dynamic_cast<
/// abstract_actor*>(job)) before every resume, whatever the log level, for
/// log lines that Debian's CAF (built with CAF_LOG_LEVEL_QUIET) never
/// writes. This scheduler is CAF's coordinator and worker with that line left
/// out, and with CAF's logger kept unbound from the worker threads (CAF binds
/// it at start and at every spawn). The workers' queues and stealing are
/// CAF's. Jobs from outside the workers go to one queue that every worker
/// takes from, and idle workers wait and are woken differently (scheduler.cpp
/// says how). Why, with the figures: docs/decisions/scheduler-logging.md,
/// scheduler-shared-queue.md and scheduler-idle-wait.md.

#include <caf/fwd.hpp>

namespace cairn::actors {

/// Makes the actor system built from `cfg` use this scheduler. Call it
/// before constructing the caf::actor_system; `scheduler.max-threads` and
/// `scheduler.max-throughput` keep their meaning.
void use_work_stealing_scheduler(caf::actor_system_config& cfg);

} // namespace cairn::actors
