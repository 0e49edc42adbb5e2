#pragma once

// Transports: how the hangar's handlers reach a provider's process. They are
// effects, so they live outside the aggregates: a handler calls them and
// reports the outcome back as a record_* command.
//
//   simulated  — latency, failure rate and scripted outages from a seed;
//                the same seed and the same calls give the same outcomes.
//   subprocess — really starts the configured command as a child process,
//                talks to it one line per call over its stdin/stdout, and
//                notices when it dies.

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

namespace hangar {

/// What a call through a transport did.
struct call_outcome {
  bool ok = false;
  std::int64_t duration_ms = 0;
  std::uint64_t result_bytes = 0;
  std::string error;
  /// "transport" (the process is unreachable or died: counts as a
  /// consecutive failure), "timeout", or "application" (the tool answered
  /// with an error: counts only in the totals).
  std::string error_type;
};

/// The outcome of starting a provider.
struct start_outcome {
  bool ok = false;
  std::uint32_t tools_count = 0;
  std::int64_t duration_ms = 0;
  std::string error;
};

class transport {
public:
  virtual ~transport() = default;
  virtual start_outcome start() = 0;
  virtual call_outcome invoke(const std::string& tool, const std::string& args,
                              std::chrono::milliseconds timeout) = 0;
  virtual call_outcome probe() = 0;
  virtual void stop() = 0;
  [[nodiscard]] virtual bool running() const = 0;
};

/// A scripted outage: calls number [from_call, to_call) of the provider fail
/// as transport failures (the demo's way of making a circuit open).
struct outage {
  std::uint64_t from_call = 0;
  std::uint64_t to_call = 0;
};

struct simulated_options {
  std::uint64_t seed = 1;
  std::chrono::milliseconds latency{0};
  double failure_rate = 0; ///< Transport failures, 0..1.
  double error_rate = 0;   ///< Application errors, 0..1.
  std::uint32_t tools = 3;
  std::vector<outage> outages; ///< By call number (invocations and probes count).
};

class simulated_transport final : public transport {
public:
  explicit simulated_transport(simulated_options o);
  start_outcome start() override;
  call_outcome invoke(const std::string& tool, const std::string& args,
                      std::chrono::milliseconds timeout) override;
  call_outcome probe() override;
  void stop() override;
  [[nodiscard]] bool running() const override;

  /// Adds an outage starting at the next call and lasting `calls` calls.
  void fail_next(std::uint64_t calls);

private:
  call_outcome call(std::uint64_t bytes);

  mutable std::mutex mutex_;
  simulated_options opts_;
  std::mt19937_64 rng_;
  std::uint64_t calls_ = 0;
  bool running_ = false;
};

/// Starts `argv` as a child process. A call writes "<id> <tool> <args>\n" to
/// its stdin and waits for the line "<id> ok <payload>" or "<id> error
/// <message>" on its stdout (any other text after the id is a success
/// carrying it); lines with other ids are late answers and dropped. Starting
/// asks tool "tools", whose payload is the number of tools. A
/// watcher thread reaps the child and calls `on_exit` once when it dies by
/// itself (not after stop()).
class subprocess_transport final : public transport {
public:
  subprocess_transport(std::vector<std::string> argv, std::function<void(int status)> on_exit);
  ~subprocess_transport() override;
  start_outcome start() override;
  call_outcome invoke(const std::string& tool, const std::string& args,
                      std::chrono::milliseconds timeout) override;
  call_outcome probe() override;
  void stop() override;
  [[nodiscard]] bool running() const override;
  /// The child's process id while running, else -1.
  [[nodiscard]] pid_t pid() const;

private:
  call_outcome round_trip(const std::string& line, std::chrono::milliseconds timeout);
  void watch(pid_t child);

  std::vector<std::string> argv_;
  std::function<void(int)> on_exit_;
  mutable std::mutex mutex_;
  pid_t pid_ = -1;
  int to_child_ = -1;
  int from_child_ = -1;
  bool stopping_ = false;
  std::string pending_; ///< Bytes read past the last line.
  std::uint64_t next_id_ = 0;
  std::thread watcher_;
};

} // namespace hangar
