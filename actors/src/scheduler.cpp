// The coordinator and worker below follow CAF 0.17.6's
// caf/scheduler/coordinator.hpp and caf/scheduler/worker.hpp (BSD-3-Clause,
// Copyright 2011-2018 Dominik Charousset), minus the logging cast in the
// worker loop (scheduler.hpp says why).

#include "cairn/actors/scheduler.hpp"

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

/// CAF's work stealing, except that an idle worker waits on its condition
/// variable in the moderate phase too (CAF sleeps there for a fixed
/// 50 µs, and only wakes a worker in the relaxed phase), so a job enqueued
/// from outside the workers (the journal's answers, a caller's command)
/// wakes it at once instead of after the rest of its sleep.
class stealing : public caf::policy::work_stealing {
public:
  template <class Worker>
  void external_enqueue(Worker* self, caf::resumable* job) {
    d(self).queue.append(job);
    auto& wait = d(self).waitdata;
    std::unique_lock<std::mutex> guard(wait.lock);
    if (wait.sleeping)
      wait.cv.notify_one();
  }

  template <class Worker>
  caf::resumable* dequeue(Worker* self) {
    auto& strategies = d(self).strategies;
    auto& queue = d(self).queue;
    // Aggressive: spin without sleeping (CAF's first strategy).
    const auto& aggressive = strategies[0];
    for (std::size_t i = 0; i < aggressive.attempts; i += aggressive.step_size) {
      if (auto job = queue.take_head())
        return job;
      if (i % aggressive.steal_interval == 0)
        if (auto job = try_steal(self))
          return job;
    }
    // Moderate for its attempts, then relaxed for good: wait to be woken, stealing between waits.
    const auto& moderate = strategies[1];
    for (std::size_t i = 0; i < moderate.attempts; ++i)
      if (auto job = wait_then_take(self, moderate, i))
        return job;
    const auto& relaxed = strategies[2];
    for (std::size_t i = 1;; ++i) // CAF counts the relaxed attempts from 1
      if (auto job = wait_then_take(self, relaxed, i))
        return job;
  }

private:
  template <class Worker, class Strategy>
  caf::resumable* wait_then_take(Worker* self, const Strategy& phase, std::size_t attempt) {
    auto& queue = d(self).queue;
    {
      std::unique_lock<std::mutex> guard(d(self).waitdata.lock);
      d(self).waitdata.sleeping = true;
      d(self).waitdata.cv.wait_for(guard, phase.sleep_duration, [&] { return !queue.empty(); });
      d(self).waitdata.sleeping = false;
    }
    if (auto job = queue.take_head())
      return job;
    if (attempt % phase.steal_interval == 0)
      return try_steal(self);
    return nullptr;
  }
};

template <class Policy>
class coordinator;

template <class Policy>
class worker : public caf::execution_unit {
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

template <class Policy>
class coordinator : public caf::scheduler::abstract_coordinator {
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
  cfg.module_factories.push_back([](caf::actor_system& sys) -> caf::actor_system::module* {
    return new coordinator<stealing>(sys);
  });
}

} // namespace cairn::actors
