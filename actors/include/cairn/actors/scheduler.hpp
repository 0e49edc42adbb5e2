#pragma once

/// CAF's work-stealing scheduler without the per-job logging cast.
///
/// CAF 0.17's worker loop runs CAF_PUSH_AID_FROM_PTR(dynamic_cast<
/// abstract_actor*>(job)) before every resume, whatever the log level: a
/// cross-cast that walks the actor's class hierarchy comparing type names.
/// Under callgrind it was 12.6 % of all instructions of cairn-bench e2e
/// (about 1,300 per resume, close to three resumes per command). This
/// scheduler is CAF's coordinator and worker with that line left out, and
/// with CAF's logger kept unbound from the worker threads (CAF binds it at
/// start and at every spawn), which made every resume update a locked
/// thread-to-actor map for log lines that Debian's CAF (built with
/// CAF_LOG_LEVEL_QUIET) never writes. The workers' queues and stealing are
/// CAF's. Jobs from outside the workers go to one queue that every worker
/// takes from, and idle workers wait and are woken differently
/// (scheduler.cpp says why; docs/runtime.md, Threading, has the figures).

#include <caf/fwd.hpp>

namespace cairn::actors {

/// Makes the actor system built from `cfg` use this scheduler. Call it
/// before constructing the caf::actor_system; `scheduler.max-threads` and
/// `scheduler.max-throughput` keep their meaning.
void use_work_stealing_scheduler(caf::actor_system_config& cfg);

} // namespace cairn::actors
