// Retention killed midway: a forked child plans and applies a retention
// policy over a store whose streams lose tens of thousands of events (several
// bounded transactions), and the parent kills it with SIGKILL at a random
// moment. After every kill the reopened store must be consistent: each stream
// reads from one version to its head without a gap, reads below answer
// `truncated`, the log is gap-free from first_position, the digest chain
// verifies from its anchor and the indexes point at what is there. The next
// round continues the work; the last one completes it, and `cairn verify`
// passes. The child never touches Catch2 and leaves through _exit.

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <optional>
#include <cstdio>
#include <random>
#include <string>
#include <thread>

#include <catch2/catch.hpp>

#include "cairn/persistence/event_store.hpp"
#include "cairn/persistence/retention.hpp"
#include "support/child_process.hpp"
#include "support/temp_dir.hpp"

using namespace cairn::persistence;
using cairn::errc;

namespace {

constexpr int streams = 24;
constexpr int events_per_stream = 2500; // 60,000 events: 6 transactions of 10,000

store_options options() {
  store_options o;
  o.durability = durability::no_sync; // a process kill loses nothing committed
  o.initial_map_size = std::size_t{64} << 20;
  return o;
}

void build(const std::string& dir) {
  auto store = open_store(dir, options());
  REQUIRE(store);
  std::string payload(100, 'x');
  for (int round = 0; round < events_per_stream; round += 25) {
    write_batch b;
    for (int s = 0; s < streams; ++s) {
      append_request r;
      r.stream = "prov-" + std::to_string(s);
      r.expected = expected_version::any();
      for (int i = 0; i < 25; ++i)
        r.events.push_back(event_data{"noted", 1, payload, {}, {}});
      b.appends.push_back(std::move(r));
    }
    REQUIRE((*store)->append_batch(b));
  }
  for (int s = 0; s < streams; ++s) {
    auto name = "prov-" + std::to_string(s);
    REQUIRE((*store)->save_snapshot(
      snapshot{name, static_cast<std::uint64_t>(events_per_stream), "state", 1, "s"}));
  }
}

/// Runs retention in a child; once it has planned and begins to apply,
/// kills it after `delay` unless that is null. Returns whether the child was
/// killed (false: it finished by itself) and how long its apply ran (to its
/// exit or the kill).
std::pair<bool, std::chrono::microseconds>
run_child(const std::string& dir, std::optional<std::chrono::microseconds> delay) {
  int fds[2];
  REQUIRE(::pipe(fds) == 0);
  std::fflush(nullptr);
  pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    ::close(fds[0]);
    auto store = open_store(dir, options());
    if (!store)
      ::_exit(2);
    auto policy = parse_retention_policy({"prov=last:1"});
    auto plan = (*store)->plan_retention(*policy, 0);
    if (!plan)
      ::_exit(3);
    char go = 'a';
    if (::write(fds[1], &go, 1) != 1)
      ::_exit(5);
    auto done = (*store)->apply_retention(*plan);
    ::_exit(done ? 0 : 4);
  }
  ::close(fds[1]);
  char go = 0;
  auto got = ::read(fds[0], &go, 1); // 0: the child ended before its apply
  ::close(fds[0]);
  auto started = std::chrono::steady_clock::now();
  if (delay && got == 1) {
    std::this_thread::sleep_for(*delay);
    ::kill(pid, SIGKILL);
  }
  int status = 0;
  REQUIRE(::waitpid(pid, &status, 0) == pid);
  auto ran = std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now()
                                                                   - started);
  INFO("child: " << cairn::test::describe_status(status));
  REQUIRE(got == 1);
  if (WIFSIGNALED(status)) {
    REQUIRE(WTERMSIG(status) == SIGKILL);
    return {true, ran};
  }
  REQUIRE(WIFEXITED(status));
  REQUIRE(WEXITSTATUS(status) == 0);
  return {false, ran};
}

/// Checks everything a reader relies on; returns the events still stored.
std::uint64_t check_consistent(const std::string& dir) {
  auto opened = open_store(dir, options());
  REQUIRE(opened);
  auto& store = **opened;
  auto first = store.first_position();
  REQUIRE(first);
  std::uint64_t kept = 0;
  auto listed = store.list_streams("prov-");
  REQUIRE(listed);
  REQUIRE(listed->size() == static_cast<std::size_t>(streams));
  for (const auto& info : *listed) {
    INFO(info.name << " first kept version " << info.first_version);
    CHECK(info.version == static_cast<std::uint64_t>(events_per_stream));
    auto events = store.read_stream(info.name, info.first_version, events_per_stream);
    REQUIRE(events);
    REQUIRE(events->size() == info.version - info.first_version + 1);
    for (std::size_t i = 0; i < events->size(); ++i)
      REQUIRE((*events)[i].version == info.first_version + i);
    kept += events->size();
    if (info.first_version > 1) {
      auto below = store.read_stream(info.name, info.first_version - 1, 1);
      REQUIRE_FALSE(below);
      CHECK(below.error().code == errc::truncated);
    }
  }
  // The log is gap-free from its cut to its end.
  auto last = store.last_position();
  REQUIRE(last);
  std::uint64_t expect = *first;
  while (expect <= *last) {
    auto page = store.read_all(expect, 10000);
    REQUIRE(page);
    REQUIRE_FALSE(page->events.empty());
    for (const auto& e : page->events)
      REQUIRE(e.position == expect++);
  }
  if (*first > 1) {
    auto below = store.read_all(*first - 1, 1);
    REQUIRE_FALSE(below);
    CHECK(below.error().code == errc::truncated);
  }
  auto chain = store.check_chain(no_limit);
  REQUIRE(chain);
  INFO("chain: " << chain->problem);
  CHECK(chain->first_broken == 0);
  CHECK(chain->from == *first);
  std::uint64_t problems = 0;
  auto indexes = store.check_indexes([&](std::uint64_t, const std::string&) { ++problems; });
  REQUIRE(indexes);
  CHECK(problems == 0);
  return kept;
}

} // namespace

TEST_CASE("retention killed at random moments leaves a consistent store that verifies, and a "
          "rerun completes it",
          "[crash][retention]") {
  namespace fs = std::filesystem;
  cairn::test::temp_dir dir;
  auto original = dir.sub("original");
  build(original);
  auto fresh_copy = [&](const std::string& to) {
    fs::remove_all(to);
    fs::create_directory(to);
    fs::copy_file(fs::path(original) / "data.mdb", fs::path(to) / "data.mdb");
  };
  // How long an uninterrupted run takes, so the kills land inside one.
  auto path = dir.sub("s");
  fresh_copy(path);
  auto [was_killed, full] = run_child(path, std::nullopt);
  REQUIRE_FALSE(was_killed);
  CHECK(check_consistent(path) == static_cast<std::uint64_t>(streams));
  auto seed = cairn::test::test_seed();
  INFO("CAIRN_CRASH_SEED=" << seed << ", an uninterrupted apply takes " << full.count() << " us");
  std::mt19937_64 rng{seed};
  std::uniform_int_distribution<std::int64_t> delay_us{0, full.count()};
  int killed = 0, partial = 0;
  constexpr std::uint64_t all = static_cast<std::uint64_t>(streams) * events_per_stream;
  for (int round = 0; round < 8; ++round) {
    fresh_copy(path);
    killed += run_child(path, std::chrono::microseconds{delay_us(rng)}).first ? 1 : 0;
    auto kept = check_consistent(path); // whatever the kill left
    partial += kept > static_cast<std::uint64_t>(streams) && kept < all ? 1 : 0;
    CHECK(kept <= all);
    CHECK(kept >= static_cast<std::uint64_t>(streams));
    CHECK_FALSE(run_child(path, std::nullopt).first); // the rerun completes it
    CHECK(check_consistent(path) == static_cast<std::uint64_t>(streams));
  }
  CHECK(killed > 0);
  // Timing decides where the kills land: say how many cut the work in two.
  WARN(killed << " of 8 runs killed inside apply_retention, " << partial
              << " of them between two of its transactions");
  std::string cmd = std::string{CAIRN_CLI_PATH} + " verify " + path + " > /dev/null 2>&1";
  CHECK(std::system(cmd.c_str()) == 0);
}
