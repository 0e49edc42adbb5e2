// Crash test of the runtime: a forked child runs a runtime (durability sync)
// and keeps 64 deposits with unique command ids in flight over 50 accounts,
// reporting every acknowledged one through a pipe; the parent kills it with
// SIGKILL at a random moment, then starts a runtime on the same directory and
// checks that every acknowledged deposit is stored exactly once, no command
// id is stored twice, and every account's state is the sum of its deposits.
//
// The child never touches Catch2 and leaves through _exit. The parent has no
// actor system alive when it forks: its runtime lives only while checking.
// Failures reproduce with the printed seed: CAIRN_CRASH_SEED=<seed>; the kill
// moments still vary with timing.

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <climits>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <future>
#include <map>
#include <mutex>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <type_traits>
#include <variant>
#include <vector>

#include <catch2/catch.hpp>

#include "account.hpp"
#include "cairn/runtime/runtime.hpp"
#include "support/child_process.hpp"
#include "support/temp_dir.hpp"

namespace {

using bank::account;
using clock_type = std::chrono::steady_clock;
using cairn::test::describe_status;
using cairn::test::ms_until;
using cairn::test::test_seed;
using cairn::test::write_all;
using std::chrono::milliseconds;

constexpr int account_count = 50;
constexpr int in_flight_limit = 64;
constexpr int rounds = 12;
constexpr int min_delay_ms = 10;
constexpr int max_delay_ms = 400;

std::string account_id(std::uint32_t i) { return "crash" + std::to_string(i); }
std::string command_id(std::uint32_t round, std::uint64_t seq) {
  return "r" + std::to_string(round) + "-c" + std::to_string(seq);
}
std::int64_t amount_of(std::uint32_t round, std::uint64_t seq) {
  return 1 + static_cast<std::int64_t>((seq * 31 + round * 7) % 1000);
}

// -- the pipe protocol ----------------------------------------------------------------

constexpr std::uint32_t record_magic = 0x726b696c; // "rkil"
enum record_kind : std::uint32_t {
  kind_ready = 1,   ///< The accounts are open; the load starts now.
  kind_ack = 2,     ///< A deposit was acknowledged.
  kind_failure = 3, ///< The child gave up; `message` says why.
};

/// One fixed-size record per write(2), well under PIPE_BUF: atomic even when
/// actor threads write concurrently.
struct record {
  std::uint32_t magic = record_magic;
  std::uint32_t kind = kind_ack;
  std::uint32_t round = 0;
  std::uint32_t account = 0;
  std::uint64_t seq = 0; ///< The command id is command_id(round, seq).
  std::int64_t amount = 0;
  std::uint64_t version = 0; ///< The version the acknowledgement gave the deposit.
  char message[200] = {};
};
static_assert(std::is_trivially_copyable_v<record>);
static_assert(sizeof(record) <= PIPE_BUF, "a record must fit one atomic pipe write");

// -- the child (plain code only: no Catch2, leaves through _exit) ---------------------

enum child_exit : int {
  exit_start_failed = 10,
  exit_register_failed = 11,
  exit_open_failed = 12,
  exit_stuck = 13,
  exit_time_limit = 14,
  exit_exception = 15,
};

void report_failure(int fd, std::uint32_t round, const std::string& what) {
  record r;
  r.kind = kind_failure;
  r.round = round;
  std::snprintf(r.message, sizeof r.message, "%s", what.c_str());
  (void)write_all(fd, &r, sizeof r); // best effort: the exit code tells the rest
}

/// Runs deposits until killed; returns an exit code only on failure.
int child_main(const std::string& dir, std::uint32_t round, std::uint64_t seed, int fd) {
  cairn::runtime_options opts;
  opts.data_dir = dir;
  opts.durability = cairn::persistence::durability::sync;
  opts.worker_threads = 2;
  opts.snapshot_interval = 20; // snapshots get written (and killed) too
  auto started = cairn::runtime::start(opts);
  if (!started) {
    report_failure(fd, round, "start: " + started.error().to_string());
    return exit_start_failed;
  }
  auto& rt = **started;
  if (auto ok = rt.register_aggregate<account>(); !ok) {
    report_failure(fd, round, "register: " + ok.error().to_string());
    return exit_register_failed;
  }
  // Open the accounts (again): already open is fine, from the rounds before.
  std::vector<std::future<cairn::result<cairn::outcome<account>>>> opening;
  for (std::uint32_t a = 0; a < account_count; ++a)
    opening.push_back(
      rt.send<account>(account_id(a), bank::open_account{"owner " + account_id(a)}));
  for (auto& f : opening) {
    if (f.wait_for(std::chrono::seconds{30}) != std::future_status::ready) {
      report_failure(fd, round, "opening an account took over 30 s");
      return exit_stuck;
    }
    auto r = f.get();
    if (!r
        && !(r.error().code == cairn::errc::rejected
             && r.error().message.find("already_open") != std::string::npos)) {
      report_failure(fd, round, "open: " + r.error().to_string());
      return exit_open_failed;
    }
  }
  record ready;
  ready.kind = kind_ready;
  ready.round = round;
  if (!write_all(fd, &ready, sizeof ready))
    return exit_exception;

  std::mt19937_64 rng{seed};
  std::mutex mutex;
  std::condition_variable slot_free;
  int in_flight = 0;
  auto give_up = clock_type::now() + std::chrono::seconds{60}; // the parent kills long before
  for (std::uint64_t seq = 0;; ++seq) {
    {
      std::unique_lock<std::mutex> lock{mutex};
      if (!slot_free.wait_for(lock, std::chrono::seconds{30},
                              [&] { return in_flight < in_flight_limit; })) {
        report_failure(fd, round, "no deposit was acknowledged for 30 s");
        return exit_stuck;
      }
      ++in_flight;
    }
    if (clock_type::now() > give_up) {
      report_failure(fd, round, "not killed within 60 s");
      return exit_time_limit;
    }
    auto a = static_cast<std::uint32_t>(rng() % account_count);
    cairn::command_options o;
    o.command_id = command_id(round, seq);
    auto amount = amount_of(round, seq);
    rt.send<account>(account_id(a), bank::deposit{amount}, o,
                     [&, a, seq, amount](cairn::result<cairn::outcome<account>> r) {
                       if (r && !r->duplicate) {
                         record ack;
                         ack.round = round;
                         ack.account = a;
                         ack.seq = seq;
                         ack.amount = amount;
                         ack.version = r->version;
                         (void)write_all(fd, &ack, sizeof ack);
                       } else {
                         report_failure(fd, round,
                                        command_id(round, seq) + ": "
                                          + (r ? std::string{"answered as a duplicate"}
                                               : r.error().to_string()));
                       }
                       std::lock_guard<std::mutex> lock{mutex};
                       --in_flight;
                       slot_free.notify_one();
                     });
  }
}

// -- the parent: one round ------------------------------------------------------------

/// Collects records from the pipe; ignores a trailing partial one.
class record_reader {
public:
  explicit record_reader(int fd) : fd_(fd) {}

  /// Waits up to `timeout_ms` for data and takes what is there.
  void pump(int timeout_ms) {
    if (eof_)
      return;
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, std::max(timeout_ms, 0)) <= 0)
      return; // timeout or EINTR: the caller loops
    char chunk[1 << 16];
    ssize_t n = ::read(fd_, chunk, sizeof chunk);
    if (n > 0) {
      buffer_.append(chunk, static_cast<std::size_t>(n));
      std::size_t used = 0;
      while (buffer_.size() - used >= sizeof(record)) {
        record r;
        std::memcpy(&r, buffer_.data() + used, sizeof r);
        records_.push_back(r);
        used += sizeof r;
      }
      buffer_.erase(0, used);
    } else if (n == 0 || errno != EINTR) {
      eof_ = true;
    }
  }

  [[nodiscard]] bool eof() const { return eof_; }
  [[nodiscard]] bool ready() const {
    return std::any_of(records_.begin(), records_.end(),
                       [](const record& r) { return r.kind == kind_ready; });
  }
  [[nodiscard]] const std::vector<record>& records() const { return records_; }

private:
  int fd_;
  bool eof_ = false;
  std::string buffer_;
  std::vector<record> records_;
};

struct round_outcome {
  std::vector<record> acks;
  int status = 0;          ///< From waitpid.
  std::string harness;     ///< Why the round itself failed; empty if fine.
  std::string child_error; ///< The child's failure report, if it sent one.
  int delay_ms = 0;
};

/// Forks a child that runs deposits on `dir`, kills it at a random moment
/// after its load started and collects what it acknowledged.
round_outcome run_round(const std::string& dir, std::uint32_t round, std::mt19937_64& rng) {
  round_outcome out;
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) {
    out.harness = std::string{"pipe2: "} + std::strerror(errno);
    return out;
  }
  auto child_seed = rng();
  out.delay_ms = std::uniform_int_distribution<int>{min_delay_ms, max_delay_ms}(rng);
  if (auto busy = cairn::test::await_quiet_threads(); !busy.empty()) {
    out.harness = busy;
    ::close(fds[0]);
    ::close(fds[1]);
    return out;
  }
  std::fflush(nullptr); // or the child's copy of unflushed output could appear twice
  pid_t parent = ::getpid();
  pid_t pid = ::fork();
  if (pid < 0) {
    out.harness = std::string{"fork: "} + std::strerror(errno);
    ::close(fds[0]);
    ::close(fds[1]);
    return out;
  }
  if (pid == 0) {
    ::close(fds[0]);
    ::prctl(PR_SET_PDEATHSIG, SIGKILL); // never outlive a parent that died
    if (::getppid() != parent)
      ::_exit(exit_exception);
    int code = exit_exception;
    try {
      code = child_main(dir, round, child_seed, fds[1]);
    } catch (...) {
      code = exit_exception;
    }
    ::_exit(code);
  }
  ::close(fds[1]);
  record_reader reader{fds[0]};
  // The kill moment counts from the start of the load, not from the fork.
  auto ready_deadline = clock_type::now() + std::chrono::seconds{30};
  while (!reader.ready() && !reader.eof() && clock_type::now() < ready_deadline)
    reader.pump(ms_until(ready_deadline));
  if (!reader.ready() && !reader.eof())
    out.harness = "the child did not open its accounts within 30 s";
  auto kill_at = clock_type::now() + milliseconds{out.delay_ms};
  while (out.harness.empty() && !reader.eof() && clock_type::now() < kill_at)
    reader.pump(ms_until(kill_at));
  if (auto reaped = cairn::test::kill_and_reap(pid, out.status); !reaped.empty())
    out.harness = reaped;
  // Records written before the kill are acknowledged: drain them to EOF.
  auto drain_deadline = clock_type::now() + std::chrono::seconds{5};
  while (!reader.eof() && clock_type::now() < drain_deadline)
    reader.pump(ms_until(drain_deadline));
  if (!reader.eof() && out.harness.empty())
    out.harness = "the pipe did not reach EOF within 5 s of the child's death";
  ::close(fds[0]);
  for (const auto& r : reader.records()) {
    if (r.magic != record_magic || r.round != round
        || (r.kind != kind_ready && r.kind != kind_ack && r.kind != kind_failure)
        || (r.kind == kind_ack && r.account >= account_count)) {
      out.harness = "garbled record in the pipe";
      break;
    }
    if (r.kind == kind_failure && out.child_error.empty())
      out.child_error.assign(r.message, strnlen(r.message, sizeof r.message));
    if (r.kind == kind_ack)
      out.acks.push_back(r);
  }
  return out;
}

// -- the parent: checking -------------------------------------------------------------

class problems {
public:
  void add(std::string what) {
    if (list_.size() < 25)
      list_.push_back(std::move(what));
    ++count_;
  }
  [[nodiscard]] bool empty() const { return count_ == 0; }
  [[nodiscard]] std::string text() const {
    std::ostringstream os;
    os << count_ << " problem(s):";
    for (const auto& p : list_)
      os << "\n  - " << p;
    if (count_ > list_.size())
      os << "\n  - ... and " << (count_ - list_.size()) << " more";
    return os.str();
  }

private:
  std::vector<std::string> list_;
  std::size_t count_ = 0;
};

struct stored_deposit {
  std::int64_t amount = 0;
  std::uint64_t version = 0;
  int copies = 0;
};

struct check_summary {
  std::size_t deposits = 0; ///< Deposit events in the store.
  std::size_t unacked = 0;  ///< Of those, never acknowledged (killed in flight).
};

/// Starts a runtime on `dir` and checks it against everything acknowledged
/// in the rounds so far. The runtime is gone again on return.
check_summary check_runtime(const std::string& dir, std::uint32_t rounds_run,
                            const std::map<std::string, record>& acked, problems& p) {
  check_summary sum;
  cairn::runtime_options opts;
  opts.data_dir = dir;
  opts.durability = cairn::persistence::durability::no_sync; // only reads, and state queries
  opts.worker_threads = 2;
  auto started = cairn::runtime::start(opts);
  if (!started) {
    p.add("start: " + started.error().to_string());
    return sum;
  }
  auto& rt = **started;
  if (auto ok = rt.register_aggregate<account>(); !ok) {
    p.add("register: " + ok.error().to_string());
    return sum;
  }
  std::map<std::string, stored_deposit> stored; // by command id, across every stream
  std::map<std::uint32_t, std::size_t> stored_per_round;
  for (std::uint32_t a = 0; a < account_count; ++a) {
    auto stream = "account-" + account_id(a);
    auto events = rt.store().read_stream(stream, 1, std::size_t{1} << 30);
    if (!events) {
      p.add("read_stream(" + stream + "): " + events.error().to_string());
      continue;
    }
    std::int64_t sum_of_deposits = 0;
    int opened = 0;
    for (const auto& ev : *events) {
      auto decoded = rt.registry().decode<account::event>(ev);
      if (!decoded) {
        p.add(stream + " v" + std::to_string(ev.version) + ": " + decoded.error().to_string());
        continue;
      }
      if (std::holds_alternative<bank::account_opened>(*decoded)) {
        ++opened;
        continue;
      }
      auto* d = std::get_if<bank::money_deposited>(&*decoded);
      if (d == nullptr) {
        p.add(stream + " v" + std::to_string(ev.version) + ": an event nobody sent");
        continue;
      }
      sum_of_deposits += d->amount;
      ++sum.deposits;
      auto& s = stored[ev.meta.command_id];
      if (++s.copies == 2)
        p.add("command " + ev.meta.command_id + " is stored twice (again at " + stream + " v"
              + std::to_string(ev.version) + ")");
      s.amount = d->amount;
      s.version = ev.version;
      std::uint32_t round = 0;
      unsigned long long seq = 0;
      if (std::sscanf(ev.meta.command_id.c_str(), "r%u-c%llu", &round, &seq) != 2
          || command_id(round, seq) != ev.meta.command_id || round >= rounds_run)
        p.add(stream + " v" + std::to_string(ev.version) + ": a command id nobody sent: '"
              + ev.meta.command_id + "'");
      else if (amount_of(round, seq) != d->amount)
        p.add(ev.meta.command_id + ": stored amount " + std::to_string(d->amount) + ", sent "
              + std::to_string(amount_of(round, seq)));
      else
        ++stored_per_round[round];
    }
    if (opened != 1)
      p.add(stream + " holds " + std::to_string(opened) + " account_opened events");
    auto state = rt.state<account>(account_id(a));
    if (!state)
      p.add("state(" + account_id(a) + "): " + state.error().to_string());
    else if (state->balance != sum_of_deposits || !state->open)
      p.add(account_id(a) + ": the live state's balance is " + std::to_string(state->balance)
            + ", its deposits sum to " + std::to_string(sum_of_deposits));
  }
  std::map<std::uint32_t, std::size_t> acked_per_round;
  for (const auto& [id, ack] : acked) {
    ++acked_per_round[ack.round];
    auto it = stored.find(id);
    if (it == stored.end()) {
      p.add(id + " was acknowledged (" + account_id(ack.account) + " v"
            + std::to_string(ack.version) + ") but is not in the store");
      continue;
    }
    if (it->second.version != ack.version || it->second.amount != ack.amount)
      p.add(id + " was acknowledged as v" + std::to_string(ack.version) + " of "
            + std::to_string(ack.amount) + ", the store has v" + std::to_string(it->second.version)
            + " of " + std::to_string(it->second.amount));
  }
  // A round stores its acknowledged deposits plus at most the ones in flight at the kill.
  for (const auto& [round, n] : stored_per_round) {
    auto a = acked_per_round[round];
    if (n > a + in_flight_limit)
      p.add("round " + std::to_string(round) + " stored " + std::to_string(n)
            + " deposits, acknowledged " + std::to_string(a) + ", with at most "
            + std::to_string(in_flight_limit) + " in flight");
    sum.unacked += n > a ? n - a : 0;
  }
  return sum;
}

} // namespace

TEST_CASE("a runtime killed with SIGKILL under load keeps every acknowledged command exactly once",
          "[crash][runtime]") {
  auto seed = test_seed();
  INFO("seed " << seed << " (rerun with CAIRN_CRASH_SEED=" << seed << ")");
  std::mt19937_64 rng{seed};
  cairn::test::temp_dir dir;
  auto path = dir.sub("store");
  std::map<std::string, record> acked; // by command id, every round
  check_summary sum;
  std::size_t acked_total = 0;
  auto start = clock_type::now();
  for (std::uint32_t round = 0; round < rounds; ++round) {
    INFO("round " << round);
    auto out = run_round(path, round, rng);
    INFO("killed " << out.delay_ms << " ms into the load; " << out.acks.size()
                   << " deposits acknowledged");
    REQUIRE(out.harness == "");
    REQUIRE(out.child_error == "");
    if (!(WIFSIGNALED(out.status) && WTERMSIG(out.status) == SIGKILL))
      FAIL("the child " << describe_status(out.status));
    int acked_twice = 0;
    for (const auto& ack : out.acks)
      acked_twice += acked.emplace(command_id(ack.round, ack.seq), ack).second ? 0 : 1;
    REQUIRE(acked_twice == 0); // each command is acknowledged once
    acked_total += out.acks.size();
    problems p;
    sum = check_runtime(path, round + 1, acked, p);
    INFO(p.text());
    REQUIRE(p.empty());
  }
  auto seconds = std::chrono::duration<double>(clock_type::now() - start).count();
  INFO(rounds << " rounds in " << seconds << " s: " << acked_total
              << " deposits acknowledged; the store holds " << sum.deposits << " (" << sum.unacked
              << " never acknowledged)");
  CHECK(acked_total > 0);
}
