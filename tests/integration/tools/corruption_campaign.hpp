#pragma once

// Structural corruption: random bytes flipped in random used pages of a real
// store's data.mdb (B-tree branch and leaf pages, overflow pages, the meta
// pages: not only inside records), then every reader cairn has run against
// the damaged copy, each in a child process with a timeout: open and read
// everything, `cairn verify`, `cairn export`. Counts crashes (death by a
// signal) and hangs. LMDB has no page checksums, so the library reading a
// damaged page may crash; `cairn verify` must not (it checks in a child).

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "account.hpp"
#include "cairn/persistence/codec.hpp"
#include "cairn/persistence/event_store.hpp"
#include "cairn/runtime/runtime.hpp"
#include "support/child_process.hpp"
#include "support/temp_dir.hpp"
#include "unit/persistence/helpers.hpp"

extern char** environ;

namespace cairn::test::campaign {

namespace cp = cairn::persistence;

/// How one reader ended on one damaged copy.
enum class outcome { clean, reported, crashed, hung };

struct tally {
  int clean = 0;    ///< Exit code 0 (the damage was in unused bytes, or harmless).
  int reported = 0; ///< A nonzero exit code: the damage was reported.
  int crashed = 0;  ///< Died by a signal.
  int hung = 0;     ///< Still running at the timeout (then killed).
  void add(outcome o) {
    switch (o) {
      case outcome::clean: ++clean; break;
      case outcome::reported: ++reported; break;
      case outcome::crashed: ++crashed; break;
      case outcome::hung: ++hung; break;
    }
  }
  [[nodiscard]] std::string str() const {
    return std::to_string(clean) + " clean, " + std::to_string(reported) + " reported, "
           + std::to_string(crashed) + " crashed, " + std::to_string(hung) + " hung";
  }
};

/// Waits for `pid` at most `limit`; kills it then.
inline outcome await(pid_t pid, std::chrono::seconds limit, int* exit_code = nullptr) {
  auto deadline = std::chrono::steady_clock::now() + limit;
  int status = 0;
  for (;;) {
    pid_t r = ::waitpid(pid, &status, WNOHANG);
    if (r == pid)
      break;
    if (std::chrono::steady_clock::now() > deadline) {
      (void)kill_and_reap(pid, status);
      return outcome::hung;
    }
    ::usleep(2000);
  }
  if (WIFSIGNALED(status))
    return outcome::crashed;
  if (exit_code != nullptr)
    *exit_code = WEXITSTATUS(status);
  return WEXITSTATUS(status) == 0 ? outcome::clean : outcome::reported;
}

/// Runs `cairn args...` with its output thrown away.
inline outcome run_cli(const std::vector<std::string>& args, std::chrono::seconds limit,
                       int* exit_code = nullptr) {
  std::vector<std::string> argv_s{CAIRN_CLI_PATH};
  argv_s.insert(argv_s.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : argv_s)
    argv.push_back(a.data());
  argv.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
  pid_t pid = -1;
  int rc = posix_spawn(&pid, CAIRN_CLI_PATH, &fa, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  REQUIRE(rc == 0);
  return await(pid, limit, exit_code);
}

/// In a forked child: the test framework's handlers would report a crash
/// of the child as a failure of the test; the child must just die of it.
inline void default_signals() {
  for (int sig : {SIGSEGV, SIGBUS, SIGABRT, SIGFPE, SIGILL, SIGTERM, SIGINT})
    ::signal(sig, SIG_DFL);
}

/// Opens the store and reads all of it, as an activation and a subscriber
/// would: every stream forwards and backwards, its snapshots, the log, the
/// side tables. Exits 0 when everything read, 1 when something reported an
/// error. Runs in a forked child.
[[noreturn]] inline void read_everything(const std::string& dir) {
  cp::store_options o;
  o.read_only = true;
  auto store = cp::open_store(dir, o);
  if (!store)
    ::_exit(1);
  auto& s = **store;
  bool ok = true;
  auto streams = s.list_streams("", cp::no_limit);
  ok = ok && streams.has_value();
  if (streams)
    for (const auto& info : *streams) {
      ok = s.read_stream(info.name, 1, cp::no_limit).has_value() && ok;
      ok = s.read_stream_backward(info.name, cp::no_limit, 10).has_value() && ok;
      ok = s.load_snapshot(info.name).has_value() && ok;
      ok = s.find_command(info.name, "cmd-1").has_value() && ok;
    }
  for (std::uint64_t pos = 1;;) {
    auto page = s.read_all(pos, 512);
    if (!page) {
      ok = false;
      break;
    }
    if (page->events.empty())
      break;
    pos = page->next_position;
  }
  ok = s.read_side_tables().has_value() && ok;
  ok = s.stats().has_value() && ok;
  ::_exit(ok ? 0 : 1);
}

/// Starts a runtime on the store and activates a few accounts (recovery from
/// snapshots and events), as a service restarting on the damaged disk would.
/// Exits 0 when every activation answered, 1 otherwise.
[[noreturn]] inline void activate(const std::string& dir) {
  cairn::runtime_options opts;
  opts.data_dir = dir;
  opts.durability = cp::durability::no_sync;
  opts.worker_threads = 2;
  auto rt = cairn::runtime::start(std::move(opts));
  if (!rt || !(*rt)->register_aggregate<bank::account>())
    ::_exit(1);
  bool ok = true;
  for (int a = 0; a < 40; a += 7)
    ok = (*rt)->state<bank::account>(std::to_string(a)).has_value() && ok;
  ::_exit(ok ? 0 : 1); // no shutdown: only whether it crashed or hung counts
}

inline outcome run_activation(const std::string& dir, std::chrono::seconds limit) {
  REQUIRE(await_quiet_threads().empty());
  std::fflush(nullptr);
  pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    default_signals();
    activate(dir);
  }
  return await(pid, limit);
}

inline outcome run_reads(const std::string& dir, std::chrono::seconds limit) {
  REQUIRE(await_quiet_threads().empty());
  std::fflush(nullptr);
  pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    default_signals();
    read_everything(dir);
  }
  return await(pid, limit);
}

/// A store like a service's: bank accounts with command ids, snapshots,
/// checkpoints, read-model entries, and some large events (overflow pages).
inline void build_store(const std::string& dir) {
  cp::event_registry types;
  REQUIRE(types.add<bank::account_opened>(bank::account_opened::type_name));
  REQUIRE(types.add<bank::money_deposited>(bank::money_deposited::type_name));
  REQUIRE(types.add<bank::money_withdrawn>(bank::money_withdrawn::type_name));
  auto o = fast_options();
  o.heads_flush_events = 300; // both the heads table and the head log are in use
  auto store = open_ok(dir, o);
  std::mt19937 rng{11};
  for (int round = 0; round < 12; ++round) {
    cp::write_batch b;
    for (int a = 0; a < 40; ++a) {
      auto stream = "account-" + std::to_string(a);
      cp::append_request req;
      req.stream = stream;
      req.expected = cp::expected_version::any();
      req.meta.command_id = "cmd-" + std::to_string(round);
      if (round == 0) {
        auto e = types.encode(bank::account::event{bank::account_opened{"owner " + stream}});
        REQUIRE(e);
        req.events.push_back(*e);
      }
      for (int i = 0; i < 10; ++i) {
        auto e = types.encode(
          bank::account::event{bank::money_deposited{static_cast<std::int64_t>(1 + rng() % 100)}});
        REQUIRE(e);
        req.events.push_back(*e);
      }
      b.appends.push_back(std::move(req));
      if (round % 4 == 3)
        b.snapshots.push_back(cp::snapshot{stream, std::uint64_t(round) * 10 + 1, "account", 1,
                                           std::string(50 + rng() % 3000, 's')});
      cp::kv_op kv;
      kv.space = "balances";
      kv.key = stream;
      kv.value = std::to_string(rng());
      b.kv.push_back(kv);
    }
    b.checkpoints.push_back(cp::checkpoint{"projection", std::uint64_t(round) * 400});
    for (const auto& r : value_of(store->append_batch(b)))
      REQUIRE(r);
  }
  // Large events: overflow pages.
  for (int i = 0; i < 20; ++i)
    append_ok(*store, "blob-" + std::to_string(i % 3),
              {cairn::test::event("blob_stored", std::string(5000 + 700 * i, 'b'))});
}

/// Copies `from`/data.mdb into a new directory `to` with `flips` random bytes
/// changed in 1 to 3 random pages among the first `used_pages`.
inline void damaged_copy(const std::string& from, const std::string& to, std::uint64_t used_pages,
                         std::mt19937_64& rng) {
  std::filesystem::create_directories(to);
  auto bytes = read_file(from + "/data.mdb");
  constexpr std::uint64_t page = 4096;
  auto pages = 1 + rng() % 3;
  for (std::uint64_t p = 0; p < pages; ++p) {
    auto which = rng() % used_pages;
    auto flips = 1 + rng() % 8;
    for (std::uint64_t f = 0; f < flips; ++f) {
      // Half the flips in the first 64 bytes: page headers, node offsets.
      auto within = rng() % 2 == 0 ? rng() % 64 : rng() % page;
      auto at = which * page + within;
      if (at < bytes.size())
        bytes[at] = static_cast<char>(bytes[at] ^ static_cast<char>(1 + rng() % 255));
    }
  }
  write_file(to + "/data.mdb", bytes);
}

struct results {
  tally reads, verify, exporter, runtime;
  int verify_damaged = 0; ///< verify's exit code 3: its check crashed, it reported that.
};

/// Builds a store, damages `copies` copies of it and runs every reader on each.
inline results run(int copies, std::uint64_t seed) {
  temp_dir dir;
  build_store(dir.sub("original"));
  std::uint64_t used_pages = 0;
  {
    cp::store_options o;
    o.read_only = true;
    used_pages = value_of(open_ok(dir.sub("original"), o)->stats()).map_used / 4096;
  }
  REQUIRE(used_pages > 10);
  std::mt19937_64 rng{seed};
  results out;
  const auto limit = std::chrono::seconds{20};
  for (int i = 0; i < copies; ++i) {
    auto copy = dir.sub("copy-" + std::to_string(i));
    damaged_copy(dir.sub("original"), copy, used_pages, rng);
    out.reads.add(run_reads(copy, limit));
    int code = 0;
    auto v = run_cli({"verify", copy}, limit, &code);
    if (v == outcome::reported && code == 3)
      ++out.verify_damaged;
    out.verify.add(v);
    out.exporter.add(run_cli({"export", copy, copy + "/export.jsonl"}, limit));
    out.runtime.add(run_activation(copy, limit)); // last: it may write
    std::filesystem::remove_all(copy);
  }
  return out;
}

inline std::string describe(const results& r, int copies, std::uint64_t seed) {
  return std::to_string(copies) + " damaged copies (CAIRN_CRASH_SEED=" + std::to_string(seed)
         + "):\n  open + read everything: " + r.reads.str() + "\n  cairn verify: " + r.verify.str()
         + " (" + std::to_string(r.verify_damaged)
         + " reported as a damaged B-tree page)\n  cairn export: " + r.exporter.str()
         + "\n  runtime activation: " + r.runtime.str();
}

} // namespace cairn::test::campaign
