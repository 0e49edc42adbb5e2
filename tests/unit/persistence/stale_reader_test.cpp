// A reader process killed inside a read transaction leaves its slot in
// LMDB's reader table, and the slot pins the pages of its snapshot: freed
// pages stay unusable and a writer that overwrites data grows the file
// forever. The writer clears such slots itself.

#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <string>

#include <catch2/catch.hpp>

#include "cairn/persistence/event_store.hpp"
#include "support/child_process.hpp"
#include "support/temp_dir.hpp"

#include "helpers.hpp"

using namespace cairn::persistence;
using cairn::test::append_ok;
using cairn::test::fast_options;
using cairn::test::numbered;
using cairn::test::open_ok;
using cairn::test::temp_dir;
using cairn::test::value_of;

namespace {

/// Overwrites one key-value entry (three pages' worth) `n` times, one commit each.
void overwrite(event_store& s, int n) {
  for (int i = 0; i < n; ++i) {
    write_batch b;
    kv_op op;
    op.space = "model";
    op.key = "big";
    op.value = std::string(10000, static_cast<char>('a' + i % 26));
    b.kv.push_back(op);
    REQUIRE(s.append_batch(b));
  }
}

/// Forks a process that opens the store read-only, reads a stream and, inside
/// that read transaction, reports to the parent and waits to be killed.
pid_t start_stuck_reader(const std::string& dir, int& report_fd) {
  int fds[2];
  REQUIRE(::pipe(fds) == 0);
  REQUIRE(cairn::test::await_quiet_threads().empty());
  pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    ::close(fds[0]);
    auto o = fast_options();
    o.read_only = true;
    auto store = open_store(dir, o);
    if (!store)
      ::_exit(3);
    (void)(*store)->visit_stream("acct-1", 1, no_limit, [&](const event_view&) {
      char c = 'r';
      (void)cairn::test::write_all(fds[1], &c, 1);
      for (;;)
        ::pause();
      return true;
    });
    ::_exit(4);
  }
  ::close(fds[1]);
  report_fd = fds[0];
  return pid;
}

} // namespace

TEST_CASE("a reader killed inside a read transaction is cleared by the writer, so the file "
          "stops growing",
          "[unit][store][readers]") {
  temp_dir dir;
  auto writer = open_ok(dir.path());
  append_ok(*writer, "acct-1", numbered(3));
  overwrite(*writer, 10);
  CHECK(writer->stale_readers_cleared() == 0);

  int report = -1;
  pid_t pid = start_stuck_reader(dir.path(), report);
  pollfd p{report, POLLIN, 0};
  REQUIRE(::poll(&p, 1, 20000) == 1);
  char c = 0;
  REQUIRE(::read(report, &c, 1) == 1);
  ::close(report);
  int status = 0;
  REQUIRE(cairn::test::kill_and_reap(pid, status).empty());
  REQUIRE(WIFSIGNALED(status));

  // The writer, open all along, meets the dead reader's slot at its next check.
  overwrite(*writer, 2000);
  CHECK(writer->stale_readers_cleared() == 1);
  auto used = value_of(writer->stats()).map_used;
  overwrite(*writer, 2000);
  CHECK(value_of(writer->stats()).map_used == used);
  CHECK(writer->stale_readers_cleared() == 1);
  CHECK(value_of(writer->kv_get("model", "big"))->size() == 10000);
}
