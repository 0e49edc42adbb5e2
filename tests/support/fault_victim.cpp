// The child of the disk-fault tests (tests/crash/disk_fault_test.cpp): run
// with tests/support/fault_shim.c preloaded, it opens a store (or a runtime),
// arms the shim and appends until a write fails, then tries a few more. Every
// outcome goes out as one text line on the report descriptor, written before
// the next call, so the parent knows what was acknowledged even if this
// process dies:
//
//   begin <batch>                                   the child appends this batch now
//   ack <batch> <first position> <last position>   a batch append_batch acknowledged
//   fail <batch> <refuses_writes 0/1> <ms> <kind> <error>
//        a batch that failed and how long the call took; kind `commit`: its own
//        append call failed, `unflushed`: it committed under append_batch_deferred
//        and its flush failed, or a later call failed before it was flushed
//   deposit <seq> <account> <version> <amount>      runtime: an acknowledged deposit
//   refused <seq> <ms> <error>                      runtime: a deposit answered with an error
//   open_failed <error>                             open_store failed (a fault during the open)
//   stuck <what>                                    an answer took longer than the bound
//   end <acknowledged> <failed>                     the child finished by itself
//
// Usage:
//   cairn-fault-victim store <dir> <report fd> <batches> [deferred] [fsize=<bytes>]
//   cairn-fault-victim runtime <dir> <report fd> <deposits>
// The batches' contents follow from their numbers (disk_fault_workload.hpp),
// so the parent checks the bytes without being told them.

#include <dlfcn.h>
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <future>
#include <string>
#include <vector>

#include "account.hpp"
#include "cairn/persistence/event_store.hpp"
#include "cairn/runtime/runtime.hpp"
#include "support/child_process.hpp"
#include "support/disk_fault_workload.hpp"

namespace {

using clock_type = std::chrono::steady_clock;
namespace wl = cairn::test::disk_fault;

/// Any single answer slower than this is reported as stuck.
constexpr auto answer_bound = std::chrono::seconds{10};
/// Attempts after the first failure: they show whether the store refuses
/// writes quickly or recovers.
constexpr int attempts_after_failure = 3;

int report_fd = -1;

void say(const std::string& line) {
  auto text = line + "\n";
  (void)cairn::test::write_all(report_fd, text.data(), text.size());
}

void arm_shim() {
  using arm_fn = void (*)();
  if (auto arm = reinterpret_cast<arm_fn>(::dlsym(RTLD_DEFAULT, "cairn_fault_arm")))
    arm();
}

long long ms_since(clock_type::time_point t0) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(clock_type::now() - t0).count();
}

std::string one_line(std::string s) {
  for (auto& c : s)
    if (c == '\n')
      c = ' ';
  return s;
}

int run_store(const std::string& dir, std::uint64_t batches, bool deferred, std::uint64_t fsize) {
  cairn::persistence::store_options opts;
  opts.heads_flush_events = 40; // heads-table rewrites happen within the sweep
  auto opened = cairn::persistence::open_store(dir, opts);
  if (!opened) { // a fault counted from the start can hit the open
    say("open_failed " + one_line(opened.error().to_string()));
    say("end 0 0");
    return 0;
  }
  auto& store = **opened;
  if (fsize != 0) {
    ::signal(SIGXFSZ, SIG_IGN); // writes past the limit fail with EFBIG instead
    rlimit lim{fsize, fsize};
    if (::setrlimit(RLIMIT_FSIZE, &lim) != 0) {
      say("stuck setrlimit");
      return 2;
    }
  }
  arm_shim();
  std::uint64_t acked = 0, failed = 0;
  // Deferred mode: batches committed but not yet durable, with their commit numbers.
  struct pending {
    std::uint64_t batch, commit, first, last;
  };
  std::vector<pending> waiting;
  auto fail = [&](std::uint64_t batch, const char* kind, clock_type::time_point t0,
                  const std::string& why) {
    say("fail " + std::to_string(batch) + " " + (store.refuses_writes() ? "1" : "0") + " "
        + std::to_string(ms_since(t0)) + " " + kind + " " + one_line(why));
    ++failed;
  };
  for (std::uint64_t b = 0; b < batches && failed <= attempts_after_failure; ++b) {
    auto batch = wl::make_batch(b);
    say("begin " + std::to_string(b));
    auto t0 = clock_type::now();
    auto res = deferred ? store.append_batch_deferred(batch) : store.append_batch(batch);
    bool ok = static_cast<bool>(res);
    std::string why = ok ? "" : res.error().to_string();
    std::uint64_t first = 0, last = 0;
    if (ok) {
      for (std::size_t q = 0; q < res->size(); ++q) {
        const auto& slot = (*res)[q];
        if (!slot) {
          ok = false;
          why = "request " + std::to_string(q) + ": " + slot.error().to_string();
          break;
        }
        if (q == 0)
          first = slot->first_position;
        last = slot->last_position;
      }
    }
    if (ok && deferred) {
      waiting.push_back({b, store.commits().last, first, last});
      if (b % 2 == 1 || b + 1 == batches) {
        if (auto s = store.sync(); !s) {
          ok = false;
          why = "sync: " + s.error().to_string();
        }
      }
      // Acknowledge what is durable; what a failed sync left waiting is not.
      auto durable = store.commits().durable;
      std::size_t done = 0;
      while (done < waiting.size() && waiting[done].commit <= durable) {
        const auto& w = waiting[done++];
        say("ack " + std::to_string(w.batch) + " " + std::to_string(w.first) + " "
            + std::to_string(w.last));
        ++acked;
      }
      waiting.erase(waiting.begin(), waiting.begin() + static_cast<std::ptrdiff_t>(done));
      if (!ok) {
        for (const auto& w : waiting)
          fail(w.batch, "unflushed", t0, why);
        waiting.clear();
      }
    } else if (!ok && deferred) {
      // The batches waiting for a flush: committed, durability unknown.
      for (const auto& w : waiting)
        fail(w.batch, "unflushed", t0, why);
      waiting.clear();
      fail(b, "commit", t0, why);
    } else if (ok) {
      say("ack " + std::to_string(b) + " " + std::to_string(first) + " " + std::to_string(last));
      ++acked;
    } else {
      fail(b, "commit", t0, why);
    }
    if (clock_type::now() - t0 > answer_bound)
      say("stuck batch " + std::to_string(b) + " took " + std::to_string(ms_since(t0)) + " ms");
  }
  say("end " + std::to_string(acked) + " " + std::to_string(failed));
  return 0;
}

int run_runtime(const std::string& dir, std::uint64_t deposits) {
  cairn::runtime_options opts;
  opts.data_dir = dir;
  opts.durability = cairn::persistence::durability::sync;
  opts.worker_threads = 2;
  opts.snapshot_interval = 10;
  auto started = cairn::runtime::start(opts);
  if (!started) {
    say("stuck start: " + one_line(started.error().to_string()));
    return 2;
  }
  auto& rt = **started;
  if (auto ok = rt.register_aggregate<bank::account>(); !ok) {
    say("stuck register: " + one_line(ok.error().to_string()));
    return 2;
  }
  for (std::uint32_t a = 0; a < wl::accounts; ++a) {
    auto f = rt.send<bank::account>(wl::account_id(a), bank::open_account{"owner"});
    if (f.wait_for(answer_bound) != std::future_status::ready) {
      say("stuck opening an account");
      return 2;
    }
    auto r = f.get();
    if (!r) {
      say("stuck open: " + one_line(r.error().to_string()));
      return 2;
    }
  }
  arm_shim();
  std::uint64_t acked = 0, failed = 0;
  // A few deposits in flight at a time, so a fault meets pipelined commits.
  constexpr std::uint64_t in_flight = 4;
  for (std::uint64_t seq = 0; seq < deposits && failed <= 4 * attempts_after_failure;
       seq += in_flight) {
    struct sent {
      std::uint64_t seq;
      std::uint32_t account;
      std::future<cairn::result<cairn::outcome<bank::account>>> answer;
    };
    std::vector<sent> wave;
    auto t0 = clock_type::now();
    for (auto s = seq; s < seq + in_flight && s < deposits; ++s) {
      cairn::command_options o;
      o.command_id = wl::command_id(s);
      auto a = wl::account_of(s);
      wave.push_back(
        {s, a, rt.send<bank::account>(wl::account_id(a), bank::deposit{wl::amount_of(s)}, o)});
    }
    for (auto& w : wave) {
      if (w.answer.wait_until(t0 + answer_bound) != std::future_status::ready) {
        say("stuck deposit " + std::to_string(w.seq) + " unanswered after "
            + std::to_string(ms_since(t0)) + " ms");
        std::fflush(nullptr);
        ::_exit(3); // a runtime that hangs cannot shut down either
      }
      auto r = w.answer.get();
      if (r && !r->duplicate) {
        say("deposit " + std::to_string(w.seq) + " " + std::to_string(w.account) + " "
            + std::to_string(r->version) + " " + std::to_string(wl::amount_of(w.seq)));
        ++acked;
      } else {
        say("refused " + std::to_string(w.seq) + " " + std::to_string(ms_since(t0)) + " "
            + (r ? std::string{"answered as a duplicate"} : one_line(r.error().to_string())));
        ++failed;
      }
    }
  }
  auto t0 = clock_type::now();
  rt.shutdown();
  say("shutdown " + std::to_string(ms_since(t0)));
  say("end " + std::to_string(acked) + " " + std::to_string(failed));
  return 0;
}

} // namespace

int main(int argc, char** argv) {
  if (argc < 5) {
    std::fprintf(stderr,
                 "usage: %s store <dir> <report fd> <batches> [deferred] [fsize=<bytes>]\n"
                 "       %s runtime <dir> <report fd> <deposits>\n",
                 argv[0], argv[0]);
    return 2;
  }
  std::string mode = argv[1], dir = argv[2];
  report_fd = std::atoi(argv[3]);
  auto count = std::strtoull(argv[4], nullptr, 10);
  bool deferred = false;
  std::uint64_t fsize = 0;
  for (int i = 5; i < argc; ++i) {
    if (std::strcmp(argv[i], "deferred") == 0)
      deferred = true;
    else if (std::strncmp(argv[i], "fsize=", 6) == 0)
      fsize = std::strtoull(argv[i] + 6, nullptr, 10);
  }
  try {
    int code = mode == "runtime" ? run_runtime(dir, count) : run_store(dir, count, deferred, fsize);
    std::fflush(nullptr);
    ::_exit(code); // skips static destructors: nothing left to flush
  } catch (const std::exception& e) {
    say(std::string{"stuck exception: "} + e.what());
    return 4;
  }
}
