// A standby killed while it applies frames: a forked child copies a source
// store into a replica frame by frame (apply_frame, as the standby's writer
// does) and reports each applied frame's last position through a pipe; the
// parent kills it with SIGKILL at a random moment, reopens the replica and
// checks that it holds every reported frame, is consistent (its digest chain
// and indexes check out, its digest equals the source's at its last
// position), and that resuming from its own last position completes the copy.
//
// The child never touches Catch2 and always leaves through _exit. Failures
// reproduce with the printed seed: CAIRN_CRASH_SEED=<seed>.

#include <poll.h>
#include <signal.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include <chrono>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>

#include "cairn/persistence/event_store.hpp"
#include "support/child_process.hpp"
#include "support/temp_dir.hpp"

namespace {

using namespace cairn;
using namespace cairn::persistence;
using cairn::test::describe_status;
using cairn::test::kill_and_reap;
using cairn::test::ms_until;
using cairn::test::test_seed;
using cairn::test::write_all;

store_options replica_options() {
  store_options o;
  o.durability = durability::sync; // a flush per frame, as a standby runs: kills land anywhere
  o.preallocate = 0;               // no thread of its own: the child forks none
  o.initial_map_size = std::size_t{8} << 20;
  o.heads_flush_events = 700; // kills land between and inside heads rewrites
  return o;
}

/// A source of a few thousand events over 40 streams, with command ids and epochs.
void fill_source(const std::string& dir, std::mt19937_64& rng) {
  auto opts = replica_options();
  opts.durability = durability::no_sync;
  auto s = open_store(dir, opts);
  REQUIRE(s);
  std::uniform_int_distribution<int> filler(0, 600);
  for (int round = 0; round < 250; ++round) {
    write_batch b;
    for (int k = 0; k < 5; ++k) {
      append_request req;
      req.stream = "acct-" + std::to_string((round * 5 + k) % 40);
      if (k % 2 == 0)
        req.meta.command_id = "c" + std::to_string(round) + "-" + std::to_string(k);
      for (int e = 0; e < 1 + (round + k) % 4; ++e)
        req.events.push_back(event_data{"noted", 1, std::string(filler(rng), 'x'), {}, {}});
      b.appends.push_back(std::move(req));
    }
    auto out = (*s)->append_batch(b);
    REQUIRE(out);
    if (round % 60 == 0)
      REQUIRE((*s)->begin_epoch(static_cast<std::uint64_t>(round / 60 + 1), "node-a"));
  }
}

/// The child: copies `source` into `replica` by frames of random sizes,
/// writing each applied frame's last position to `fd`. Exit codes: 0 done,
/// 10 a store failed to open, 11 a read or apply failed.
[[noreturn]] void copy_in_child(const std::string& source, const std::string& replica, int fd,
                                std::uint64_t seed) {
  auto ro = replica_options();
  ro.read_only = true;
  auto src = open_store(source, ro);
  auto dst = open_store(replica, replica_options());
  if (!src || !dst)
    ::_exit(10);
  std::mt19937_64 rng{seed};
  std::uniform_int_distribution<std::size_t> budget(1, 6 << 10);
  for (;;) {
    auto last = (*dst)->last_position();
    if (!last)
      ::_exit(11);
    auto frame = (*src)->read_frame(*last + 1, budget(rng));
    if (!frame)
      ::_exit(11);
    if (frame->records.empty())
      ::_exit(0);
    auto applied = (*dst)->apply_frame(*frame);
    if (!applied)
      ::_exit(11);
    std::uint64_t at = *applied;
    if (!write_all(fd, &at, sizeof at))
      ::_exit(11);
  }
}

/// The replica is consistent and agrees with the source up to its end.
void check_replica(const std::string& source, const std::string& replica, std::uint64_t reported) {
  auto ro = replica_options();
  ro.read_only = true;
  auto src = open_store(source, ro);
  REQUIRE(src);
  auto dst = open_store(replica, replica_options());
  REQUIRE(dst);
  auto last = (*dst)->last_position();
  REQUIRE(last);
  INFO("replica at " << *last << ", last reported " << reported);
  CHECK(*last >= reported);
  auto chain = (*dst)->check_chain(no_limit);
  REQUIRE(chain);
  CHECK(chain->first_broken == 0);
  CHECK(chain->records == *last);
  std::uint64_t problems = 0;
  REQUIRE((*dst)->check_indexes([&](std::uint64_t, const std::string&) { ++problems; }));
  CHECK(problems == 0);
  if (*last > 0) {
    auto a = (*src)->digest_at(*last);
    auto b = (*dst)->digest_at(*last);
    REQUIRE(a);
    REQUIRE(b);
    CHECK(a->digest == b->digest);
  }
  auto history = (*src)->epochs();
  REQUIRE(history);
  std::uint64_t newest = 0; // the newest epoch the replica has copied
  for (const auto& e : *history)
    if (e.position <= *last)
      newest = e.epoch;
  auto current = (*dst)->current_epoch();
  REQUIRE(current);
  CHECK(*current == newest);
}

} // namespace

TEST_CASE(
  "a replica killed while it applies frames reopens consistent and resumes to an equal copy",
  "[crash][replication]") {
  auto seed = test_seed();
  INFO("CAIRN_CRASH_SEED=" << seed);
  std::mt19937_64 rng{seed};
  cairn::test::temp_dir dir;
  auto source = dir.sub("source");
  auto replica = dir.sub("replica");
  fill_source(source, rng);
  std::uniform_int_distribution<int> delay_ms(2, 60);
  int killed = 0;
  for (int round = 0; round < 20; ++round) {
    INFO("round " << round);
    int fds[2];
    REQUIRE(::pipe(fds) == 0);
    pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      ::close(fds[0]);
      copy_in_child(source, replica, fds[1], seed + static_cast<std::uint64_t>(round));
    }
    ::close(fds[1]);
    auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds{delay_ms(rng)};
    std::uint64_t reported = 0;
    bool open = true;
    while (open && std::chrono::steady_clock::now() < deadline) {
      pollfd p{fds[0], POLLIN, 0};
      if (::poll(&p, 1, ms_until(deadline)) <= 0)
        continue;
      std::uint64_t at = 0;
      auto n = ::read(fds[0], &at, sizeof at);
      if (n == static_cast<ssize_t>(sizeof at))
        reported = at;
      else
        open = false; // the child finished
    }
    int status = 0;
    REQUIRE(kill_and_reap(pid, status).empty());
    // Reports written before the kill are acknowledged frames too.
    for (std::uint64_t at = 0; ::read(fds[0], &at, sizeof at) == static_cast<ssize_t>(sizeof at);)
      reported = at;
    ::close(fds[0]);
    INFO("the child " << describe_status(status));
    if (WIFSIGNALED(status))
      ++killed;
    else
      REQUIRE(WEXITSTATUS(status) == 0);
    check_replica(source, replica, reported);
  }
  CHECK(killed > 0);

  // Resuming from the replica's own last position completes the copy.
  {
    auto ro = replica_options();
    ro.read_only = true;
    auto src = open_store(source, ro);
    auto dst = open_store(replica, replica_options());
    REQUIRE(src);
    REQUIRE(dst);
    for (;;) {
      auto frame = (*src)->read_frame((*dst)->last_position().value() + 1, 64 << 10);
      REQUIRE(frame);
      if (frame->records.empty())
        break;
      REQUIRE((*dst)->apply_frame(*frame));
    }
    CHECK((*dst)->last_position().value() == (*src)->last_position().value());
    CHECK((*dst)->digest_at(no_limit).value().digest == (*src)->digest_at(no_limit).value().digest);
    auto a = (*src)->epochs();
    auto b = (*dst)->epochs();
    REQUIRE(a);
    REQUIRE(b);
    CHECK(*a == *b);
    auto streams = (*src)->list_streams("").value();
    REQUIRE(streams.size() == 40);
    for (const auto& info : streams)
      CHECK((*dst)->stream_version(info.name).value() == info.version);
    CHECK((*dst)->find_command("acct-0", "c0-0").value().has_value());
  }
  check_replica(source, replica, 0);
}
