// The coordinator and worker below follow CAF 0.17.6's
// caf/scheduler/coordinator.hpp and caf/scheduler/worker.hpp (BSD-3-Clause,
// Copyright 2011-2018 Dominik Charousset), minus the logging cast in the
// worker loop (docs/decisions/scheduler-logging.md says why).

#include "cairn/actors/scheduler.hpp"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/detail/set_thread_name.hpp>
#include <caf/detail/thread_safe_actor_clock.hpp>
#include <caf/execution_unit.hpp>
#include <caf/logger.hpp>
#include <caf/policy/work_stealing.hpp>
#include <caf/ref_counted.hpp>
#include <caf/resumable.hpp>
#include <caf/scheduler/abstract_coordinator.hpp>

namespace cairn::actors {
namespace {

/// CAF's work stealing, except for where jobs from outside the workers go
/// and how idle workers wait and are woken.
///
/// CAF hands a job from outside (the journal's answers, a caller's command)
/// to the next worker in turn, sleeping or not. With more runnable threads
/// than cores (the workers and the journal's thread), the kernel lets a
/// woken worker wait for a core for up to a time slice, several
/// milliseconds, while the job waits in its queue and the worker that is
/// running cannot see it until its own queue runs dry. Here such jobs go
/// to one queue that every worker takes from, so the first worker to look
/// takes them. A worker looks there before its own queue every
/// kInjectedEvery jobs, so that a chain of jobs it enqueues for itself
/// cannot hold them back.
///
/// Waking follows Go's scheduler: a job from outside wakes a sleeping
/// worker only when no worker is spinning (the aggressive phase), since a
/// spinning worker takes it within a few polls; the last spinner to find a
/// job wakes a sleeper if more jobs wait. A worker woken for nothing costs
/// a core that the caller or the journal needed.
///
/// An idle worker waits on its condition variable in the moderate phase
/// too (CAF sleeps there for a fixed 50 µs), so that a job from outside
/// wakes it at once instead of after the rest of its sleep. Its wait there
/// lasts up to 1 ms, not CAF's 50 µs: a timeout only serves to steal, and
/// at 50 µs every idle worker woke 20 000 times a second, which on a
/// machine with several nodes' workers took the cores from the ones with
/// work. The figures: docs/decisions/scheduler-shared-queue.md and
/// scheduler-idle-wait.md.
class stealing : public caf::policy::work_stealing {
public:
  using base = caf::policy::work_stealing;

  struct coordinator_data {
    explicit coordinator_data(caf::scheduler::abstract_coordinator*) {}
    queue_type injected;                       ///< Jobs from outside the workers, oldest first.
    std::atomic<std::size_t> injected_jobs{0}; ///< About its length (see below).
    std::atomic<std::size_t> spinning{0};      ///< Workers in the aggressive phase.
    std::atomic<std::size_t> sleepers{0};      ///< Workers waiting on their condition variable.
    std::atomic<std::size_t> next_to_wake{0};
  };

  struct worker_data : base::worker_data {
    explicit worker_data(caf::scheduler::abstract_coordinator* p) : base::worker_data(p) {}
    worker_data(const worker_data& other) : base::worker_data(other) {}
    std::size_t jobs = 0; ///< Jobs taken, for the turn of the injected queue.
  };

  // No job is left with every worker asleep: a waker appends its job and
  // counts it in `injected_jobs`, then reads `spinning` and `sleepers`; a
  // worker changes those, then reads `injected_jobs`. All four steps are
  // sequentially consistent, so at least one side sees the other's first
  // step. (The count runs ahead of the queue while a job is being taken,
  // which costs at most a needless wake-up.)

  template <class Coordinator> void central_enqueue(Coordinator* self, caf::resumable* job) {
    auto& shared = d(self);
    shared.injected.append(job);
    shared.injected_jobs.fetch_add(1);
    if (shared.spinning.load() == 0)
      wake_one(self);
  }

  /// To one worker in particular (the coordinator's shutdown).
  template <class Worker> void external_enqueue(Worker* self, caf::resumable* job) {
    d(self).queue.append(job);
    auto& wait = d(self).waitdata;
    std::unique_lock<std::mutex> guard(wait.lock);
    if (wait.sleeping)
      wait.cv.notify_one();
  }

  template <class Worker> caf::resumable* dequeue(Worker* self) {
    auto& strategies = d(self).strategies;
    auto& shared = d(self->parent());
    if (++d(self).jobs % kInjectedEvery == 0)
      if (auto job = take_injected(shared))
        return job;
    if (auto job = d(self).queue.take_head())
      return job; // a worker with work of its own never counts as spinning
    // Aggressive: spin without sleeping (CAF's first strategy).
    shared.spinning.fetch_add(1);
    const auto& aggressive = strategies[0];
    for (std::size_t i = 0; i < aggressive.attempts; i += aggressive.step_size) {
      if (auto job = take(self))
        return stop_spinning(self, job);
      if (i % aggressive.steal_interval == 0)
        if (auto job = try_steal(self))
          return stop_spinning(self, job);
    }
    // Moderate for its attempts, then relaxed for good: wait to be woken, stealing between waits.
    bool spinning = true;
    const auto& moderate = strategies[1];
    for (std::size_t i = 0; i < moderate.attempts; ++i)
      if (auto job = wait_then_take(self, moderate, i, spinning))
        return job;
    const auto& relaxed = strategies[2];
    for (std::size_t i = 1;; ++i) // CAF counts the relaxed attempts from 1
      if (auto job = wait_then_take(self, relaxed, i, spinning))
        return job;
  }

  /// At shutdown, after the workers left: what is left in the shared queue.
  template <class Coordinator, class UnaryFunction>
  void foreach_central_resumable(Coordinator* self, UnaryFunction f) {
    while (auto job = take_injected(d(self)))
      f(job);
  }

private:
  static constexpr std::size_t kInjectedEvery = 61; // Go's scheduler uses 61 too

  template <class Coordinator> void wake_one(Coordinator* self) {
    auto& shared = d(self);
    if (shared.sleepers.load() == 0)
      return;
    auto n = self->num_workers();
    auto first = shared.next_to_wake.fetch_add(1, std::memory_order_relaxed);
    for (std::size_t k = 0; k < n; ++k) {
      auto& wait = d(self->worker_by_id((first + k) % n)).waitdata;
      std::unique_lock<std::mutex> guard(wait.lock);
      if (wait.sleeping) {
        wait.cv.notify_one();
        return;
      }
    }
  }

  /// A spinner found `job`. Jobs from outside did not wake anyone while it
  /// spun: if it was the last spinner and some wait, wake a sleeper for them.
  template <class Worker> caf::resumable* stop_spinning(Worker* self, caf::resumable* job) {
    auto& shared = d(self->parent());
    if (shared.spinning.fetch_sub(1) == 1 && shared.injected_jobs.load() > 0)
      wake_one(self->parent());
    return job;
  }

  static caf::resumable* take_injected(coordinator_data& shared) {
    auto job = shared.injected.take_head();
    if (job)
      shared.injected_jobs.fetch_sub(1, std::memory_order_relaxed);
    return job;
  }

  template <class Worker> caf::resumable* take(Worker* self) {
    if (auto job = d(self).queue.take_head())
      return job;
    return take_injected(d(self->parent()));
  }

  template <class Worker> bool has_work(Worker* self) {
    return !d(self).queue.empty() || d(self->parent()).injected_jobs.load() > 0;
  }

  /// Waits once; the first wait also ends the worker's spinning.
  template <class Worker, class Strategy>
  caf::resumable* wait_then_take(Worker* self, const Strategy& phase, std::size_t attempt,
                                 bool& spinning) {
    auto& wait = d(self).waitdata;
    auto& shared = d(self->parent());
    {
      std::unique_lock<std::mutex> guard(wait.lock);
      wait.sleeping = true;
      shared.sleepers.fetch_add(1);
      if (spinning) {
        shared.spinning.fetch_sub(1);
        spinning = false;
      }
      wait.cv.wait_for(guard, phase.sleep_duration, [&] { return has_work(self); });
      shared.sleepers.fetch_sub(1);
      wait.sleeping = false;
    }
    if (auto job = take(self))
      return job;
    if (attempt % phase.steal_interval == 0)
      return try_steal(self);
    return nullptr;
  }
};

template <class Policy> class coordinator;

template <class Policy> class worker : public caf::execution_unit {
public:
  using policy_data = typename Policy::worker_data;

  worker(std::size_t id, coordinator<Policy>* parent, const policy_data& init,
         std::size_t throughput)
      : caf::execution_unit(&parent->system()), max_throughput_(throughput), id_(id),
        parent_(parent), data_(init) {}
  worker(const worker&) = delete;
  worker& operator=(const worker&) = delete;

  void start() {
    thread_ = std::thread{[this] {
      caf::detail::set_thread_name("caf.multiplexer"); // CAF's name for its workers
      system().thread_started();
      run();
      system().thread_terminates();
    }};
  }

  /// From any thread.
  void external_enqueue(caf::resumable* job) { policy_.external_enqueue(this, job); }

  /// Only from this worker's thread, for a job it runs.
  void exec_later(caf::resumable* job) override { policy_.internal_enqueue(this, job); }

  coordinator<Policy>* parent() { return parent_; }
  std::size_t id() const { return id_; }
  std::thread& get_thread() { return thread_; }
  policy_data& data() { return data_; }
  std::size_t max_throughput() { return max_throughput_; }

private:
  void run() {
    for (;;) {
      auto job = policy_.dequeue(this);
      // Spawning an actor binds CAF's logger to the spawning thread
      // (actor_system::spawn_impl), so a worker that ran the registry would
      // update the logger's locked thread-to-actor map twice per resume from
      // then on. Unbind it again (start() does not bind it either).
      if (caf::logger::current_logger() != nullptr)
        caf::logger::set_current_actor_system(nullptr);
      policy_.before_resume(this, job);
      auto res = job->resume(this, max_throughput_);
      policy_.after_resume(this, job);
      switch (res) {
        case caf::resumable::resume_later:
          policy_.resume_job_later(this, job); // keeps its reference
          break;
        case caf::resumable::done:
          policy_.after_completion(this, job);
          intrusive_ptr_release(job);
          break;
        case caf::resumable::awaiting_message:
          intrusive_ptr_release(job); // enqueued again by its next message
          break;
        case caf::resumable::shutdown_execution_unit:
          policy_.after_completion(this, job);
          policy_.before_shutdown(this);
          return;
      }
    }
  }

  std::size_t max_throughput_; ///< Messages an actor may take per resume.
  std::thread thread_;
  std::size_t id_;
  coordinator<Policy>* parent_;
  policy_data data_;
  Policy policy_;
};

template <class Policy> class coordinator : public caf::scheduler::abstract_coordinator {
public:
  using worker_type = worker<Policy>;
  using policy_data = typename Policy::coordinator_data;

  explicit coordinator(caf::actor_system& sys) : abstract_coordinator(sys), data_(this) {}

  worker_type* worker_by_id(std::size_t x) { return workers_[x].get(); }
  policy_data& data() { return data_; }

  caf::detail::thread_safe_actor_clock& clock() noexcept override { return clock_; }

protected:
  void start() override {
    typename worker_type::policy_data init{this};
    auto num = num_workers();
    workers_.reserve(num);
    for (std::size_t i = 0; i < num; ++i)
      workers_.emplace_back(std::make_unique<worker_type>(i, this, init, max_throughput_));
    for (auto& w : workers_)
      w->start();
    timer_ = std::thread{[this] {
      caf::detail::set_thread_name("caf.clock");
      system().thread_started();
      clock_.run_dispatch_loop();
      system().thread_terminates();
    }};
    abstract_coordinator::start();
  }

  void stop() override {
    // Each worker runs this job once and leaves its loop.
    class shutdown_helper : public caf::resumable, public caf::ref_counted {
    public:
      caf::resumable::resume_result resume(caf::execution_unit* unit, std::size_t) override {
        std::unique_lock<std::mutex> guard(mtx);
        last_worker = unit;
        cv.notify_all();
        return caf::resumable::shutdown_execution_unit;
      }
      void intrusive_ptr_add_ref_impl() override { intrusive_ptr_add_ref(this); }
      void intrusive_ptr_release_impl() override { intrusive_ptr_release(this); }
      std::mutex mtx;
      std::condition_variable cv;
      caf::execution_unit* last_worker = nullptr;
    };
    shutdown_helper sh;
    std::set<worker_type*> alive;
    for (std::size_t i = 0; i < num_workers(); ++i) {
      alive.insert(worker_by_id(i));
      sh.ref(); // one reference per worker that releases it
    }
    while (!alive.empty()) {
      (*alive.begin())->external_enqueue(&sh);
      {
        std::unique_lock<std::mutex> guard(sh.mtx);
        sh.cv.wait(guard, [&] { return sh.last_worker != nullptr; });
      }
      alive.erase(static_cast<worker_type*>(sh.last_worker));
      sh.last_worker = nullptr;
    }
    stop_actors();
    for (auto& w : workers_)
      w->get_thread().join();
    auto cleanup = &abstract_coordinator::cleanup_and_release;
    for (auto& w : workers_)
      policy_.foreach_resumable(w.get(), cleanup);
    policy_.foreach_central_resumable(this, cleanup);
    clock_.cancel_dispatch_loop();
    timer_.join();
  }

  void enqueue(caf::resumable* job) override { policy_.central_enqueue(this, job); }

private:
  caf::detail::thread_safe_actor_clock clock_;
  std::vector<std::unique_ptr<worker_type>> workers_;
  policy_data data_;
  Policy policy_;
  std::thread timer_;
};

} // namespace

void use_work_stealing_scheduler(caf::actor_system_config& cfg) {
  cfg.set("work-stealing.moderate-sleep-duration", caf::timespan{std::chrono::milliseconds{1}});
  cfg.module_factories.push_back([](caf::actor_system& sys) -> caf::actor_system::module* {
    return new coordinator<stealing>(sys);
  });
}

} // namespace cairn::actors
