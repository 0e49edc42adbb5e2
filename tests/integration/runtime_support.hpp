#pragma once

// Helpers shared by the runtime's integration tests: quick options, bounded
// waits on futures, the CAF-native request form, and workload scaling under
// sanitizers.

#include <chrono>
#include <cstdlib>
#include <future>
#include <memory>
#include <string>
#include <thread>
#include <utility>

#include <catch2/catch.hpp>

#include "cairn/runtime/runtime.hpp"
#include "support/eventually.hpp"

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define CAIRN_TEST_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define CAIRN_TEST_SANITIZED 1
#endif
#endif

namespace cairn::test {

/// True under ASan or TSan: timing-dependent figures (group commit) are not checked.
inline constexpr bool sanitized =
#ifdef CAIRN_TEST_SANITIZED
  true;
#else
  false;
#endif

/// True under ASan or TSan, or with CAIRN_TEST_SMALL=1: run the small workloads.
inline bool small_workloads() {
#ifdef CAIRN_TEST_SANITIZED
  return true;
#else
  const char* env = std::getenv("CAIRN_TEST_SMALL");
  return env != nullptr && *env == '1';
#endif
}

/// `full` in a plain build, `small` under sanitizers.
template <class T> T scaled(T full, T small) { return small_workloads() ? small : full; }

/// Options for tests where durability is not the point.
inline runtime_options quick_options(const std::string& dir) {
  runtime_options opts;
  opts.data_dir = dir;
  opts.durability = persistence::durability::no_sync;
  opts.worker_threads = 2;
  return opts;
}

/// Starts a runtime or fails the test with the reason.
inline std::unique_ptr<runtime> start_runtime(runtime_options opts) {
  auto rt = runtime::start(std::move(opts));
  INFO((rt ? std::string{} : rt.error().to_string()));
  REQUIRE(rt);
  return std::move(*rt);
}

/// Registers A or fails the test with the reason.
template <class A> void register_ok(runtime& rt, aggregate_options opts = {}) {
  auto ok = rt.register_aggregate<A>(opts);
  INFO((ok ? std::string{} : ok.error().to_string()));
  REQUIRE(ok);
}

/// Waits for `f` at most `limit` (never forever), then takes its value.
template <class T>
T await(std::future<T>& f, std::chrono::seconds limit = std::chrono::seconds{60}) {
  REQUIRE(f.wait_for(limit) == std::future_status::ready);
  return f.get();
}

template <class T>
T await(std::future<T>&& f, std::chrono::seconds limit = std::chrono::seconds{60}) {
  return await(f, limit);
}

/// The error text of a result, for INFO.
template <class R> std::string describe(const R& r) {
  return r ? std::string{"ok"} : r.error().to_string();
}

} // namespace cairn::test
