// Crash tests of the LMDB store: a forked child appends batches and reports
// each acknowledged one through a pipe; the parent kills it with SIGKILL at a
// random moment, reopens the store and checks that nothing acknowledged was
// lost, no batch is half there, and the log and every stream have no gaps.
//
// The child never touches Catch2 (it shares the parent's state after fork)
// and always leaves through _exit. Failures reproduce with the printed seed:
// CAIRN_CRASH_SEED=<seed>; the kill moments still vary with timing.

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cinttypes>
#include <climits>
#include <iterator>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include "cairn/persistence/event_store.hpp"
#include "support/child_process.hpp"
#include "support/temp_dir.hpp"

namespace {

using namespace cairn;
using namespace cairn::persistence;
using clock_type = std::chrono::steady_clock;
using cairn::test::describe_status;
using cairn::test::ms_until;
using cairn::test::test_seed;
using cairn::test::write_all;
using std::chrono::milliseconds;

// -- the workload ---------------------------------------------------------------

/// What the child appends and when the parent kills it.
struct workload {
  const char* category = "acct";
  std::uint32_t streams = 300;
  std::uint32_t min_requests = 1;
  std::uint32_t max_requests = 20;
  std::uint32_t min_events = 1;
  std::uint32_t max_events = 5;
  /// Filler bytes after each payload's header.
  std::uint32_t min_filler = 0;
  std::uint32_t max_filler = 200;
  int rounds = 24;
  /// Kill at a random moment in [min_delay, max_delay] after the fork...
  int min_delay_ms = 5;
  int max_delay_ms = 150;
  /// ...or, when set, once the second batch's append_batch has begun, after a
  /// random fraction (0 to 1.2) of the time the first batch's commit took.
  bool kill_mid_commit = false;
  /// Fail unless at least one round was killed inside append_batch.
  bool require_kill_in_commit = false;
  /// Small, so kills land both between and inside heads-table rewrites and
  /// the reopened store rebuilds heads from a non-empty head log.
  std::uint64_t heads_flush_events = 500;
};

constexpr std::uint32_t max_requests_per_batch = 20;
constexpr const char* event_type = "crash_appended";

std::string stream_name(const workload& w, std::uint32_t index) {
  return std::string{w.category} + "-" + std::to_string(index);
}

/// Where an event came from, written into its payload so the parent can check
/// content and batch atomicity without the child telling it.
struct event_tag {
  std::uint32_t round = 0;
  std::uint64_t seq = 0;      ///< Batch number within the round.
  std::uint32_t requests = 0; ///< Requests in the batch.
  std::uint32_t request = 0;  ///< This event's request.
  std::uint32_t offset = 0;   ///< This event's index within the whole batch.
  std::uint32_t total = 0;    ///< Events in the whole batch.
  std::uint32_t event = 0;    ///< This event's index within its request.
  std::uint32_t events = 0;   ///< Events in the request.
  std::uint32_t stream = 0;   ///< Index of the stream the request appends to.
  std::uint32_t filler = 0;   ///< Filler bytes after the header.
};

char filler_byte(const event_tag& t, std::uint32_t i) {
  return static_cast<char>('a' + (t.seq * 131 + t.offset * 17 + t.round * 7 + i) % 26);
}

#define CAIRN_TAG_FORMAT(u64) "crash r=%u b=%" u64 " n=%u q=%u o=%u t=%u e=%u/%u s=%u L=%u|"

std::string make_payload(const event_tag& t) {
  char head[192];
  int n = std::snprintf(head, sizeof head, CAIRN_TAG_FORMAT(PRIu64), t.round, t.seq, t.requests,
                        t.request, t.offset, t.total, t.event, t.events, t.stream, t.filler);
  std::string out;
  out.reserve(static_cast<std::size_t>(n) + t.filler);
  out.append(head, static_cast<std::size_t>(n));
  for (std::uint32_t i = 0; i < t.filler; ++i)
    out.push_back(filler_byte(t, i));
  return out;
}

/// The tag of a payload written by make_payload; nullopt for anything else.
std::optional<event_tag> parse_payload(const std::string& payload) {
  event_tag t;
  int header = -1;
  int fields = std::sscanf(payload.c_str(), CAIRN_TAG_FORMAT(SCNu64) "%n", &t.round, &t.seq,
                           &t.requests, &t.request, &t.offset, &t.total, &t.event, &t.events,
                           &t.stream, &t.filler, &header);
  if (fields != 10 || header <= 0 || payload.size() != static_cast<std::size_t>(header) + t.filler)
    return std::nullopt;
  for (std::uint32_t i = 0; i < t.filler; ++i)
    if (payload[static_cast<std::size_t>(header) + i] != filler_byte(t, i))
      return std::nullopt;
  return t;
}

// -- the pipe protocol ------------------------------------------------------------

constexpr std::uint32_t report_magic = 0x6361726e; // "carn"
enum report_kind : std::uint32_t {
  kind_begin = 1, ///< The child calls append_batch for batch `seq` now.
  kind_ack = 2,   ///< append_batch of batch `seq` returned success: acknowledged.
  kind_failure = 3,
};

struct request_report {
  std::uint32_t stream = 0; ///< Stream index.
  std::uint32_t events = 0;
  std::uint64_t first_version = 0;
  std::uint64_t last_version = 0;
  std::uint64_t first_position = 0;
  std::uint64_t last_position = 0;
};

/// One fixed-size record per write(2): a batch about to be committed, an
/// acknowledged batch, or why the child gave up. Small enough for the write
/// to be atomic, so a record is in the pipe whole or not at all; the reader
/// still ignores a trailing partial one.
struct report {
  std::uint32_t magic = report_magic;
  std::uint32_t kind = kind_begin;
  std::uint32_t round = 0;
  std::uint32_t requests = 0;
  std::uint64_t seq = 0;
  std::uint64_t commit_ns = 0; ///< How long append_batch took.
  request_report reqs[max_requests_per_batch];
  char message[512] = {};
};
static_assert(std::is_trivially_copyable_v<report>);
static_assert(sizeof(report) <= PIPE_BUF, "a report must fit one atomic pipe write");

// -- the child (plain code only: no Catch2, leaves through _exit) ------------------

enum child_exit : int {
  exit_open_failed = 10,
  exit_read_failed = 11,
  exit_batch_failed = 12,
  exit_request_failed = 13,
  exit_bad_result = 14,
  exit_pipe_failed = 15,
  exit_exception = 16,
};

int child_fail(int fd, std::uint32_t round, int code, const std::string& what) {
  report rep;
  rep.kind = kind_failure;
  rep.round = round;
  std::snprintf(rep.message, sizeof rep.message, "%s", what.c_str());
  (void)write_all(fd, &rep, sizeof rep); // best effort: the exit code tells the rest
  return code;
}

/// Appends batches until killed; returns an exit code only on failure.
int child_main(const std::string& dir, const workload& w, std::uint32_t round, std::uint64_t seed,
               int fd) {
  store_options opts; // durability::sync, the default
  opts.heads_flush_events = w.heads_flush_events;
  auto opened = open_store(dir, opts);
  if (!opened)
    return child_fail(fd, round, exit_open_failed, "open_store: " + opened.error().to_string());
  event_store& store = **opened;
  auto last = store.last_position();
  if (!last)
    return child_fail(fd, round, exit_read_failed, "last_position: " + last.error().to_string());
  std::uint64_t position = *last;
  std::mt19937_64 rng{seed};
  auto pick = [&](std::uint32_t lo, std::uint32_t hi) {
    return std::uniform_int_distribution<std::uint32_t>{lo, hi}(rng);
  };
  // Each stream's version as this child knows it: read once, then tracked,
  // so every append states the exact version it expects.
  std::vector<std::optional<std::uint64_t>> versions(w.streams);
  for (std::uint64_t seq = 0;; ++seq) {
    report rep;
    rep.round = round;
    rep.seq = seq;
    rep.requests = pick(w.min_requests, w.max_requests);
    std::uint32_t total = 0;
    for (std::uint32_t q = 0; q < rep.requests; ++q) {
      rep.reqs[q].stream = pick(0, w.streams - 1);
      rep.reqs[q].events = pick(w.min_events, w.max_events);
      total += rep.reqs[q].events;
    }
    write_batch batch;
    std::vector<std::uint64_t> expected(rep.requests);
    std::uint32_t offset = 0;
    for (std::uint32_t q = 0; q < rep.requests; ++q) {
      auto& rr = rep.reqs[q];
      auto& known = versions[rr.stream];
      if (!known) {
        auto v = store.stream_version(stream_name(w, rr.stream));
        if (!v)
          return child_fail(fd, round, exit_read_failed,
                            "stream_version: " + v.error().to_string());
        known = *v;
      }
      expected[q] = *known;
      *known += rr.events; // a later request of this batch may touch the same stream
      append_request req;
      req.stream = stream_name(w, rr.stream);
      req.expected = expected_version::exact(expected[q]);
      for (std::uint32_t e = 0; e < rr.events; ++e, ++offset) {
        event_tag t{round, seq, rep.requests, q,         offset,
                    total, e,   rr.events,    rr.stream, pick(w.min_filler, w.max_filler)};
        event_data ev;
        ev.type = event_type;
        ev.payload = make_payload(t);
        req.events.push_back(std::move(ev));
      }
      batch.appends.push_back(std::move(req));
    }
    if (!write_all(fd, &rep, sizeof rep)) // kind_begin
      return exit_pipe_failed;
    auto t0 = clock_type::now();
    auto res = store.append_batch(batch);
    rep.commit_ns = static_cast<std::uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(clock_type::now() - t0).count());
    if (!res)
      return child_fail(fd, round, exit_batch_failed,
                        "append_batch of batch " + std::to_string(seq) + ": "
                          + res.error().to_string());
    if (res->size() != rep.requests)
      return child_fail(fd, round, exit_bad_result, "append_batch returned the wrong slot count");
    for (std::uint32_t q = 0; q < rep.requests; ++q) {
      const auto& slot = (*res)[q];
      auto where = "batch " + std::to_string(seq) + " request " + std::to_string(q) + " ("
                   + stream_name(w, rep.reqs[q].stream) + "): ";
      if (!slot)
        return child_fail(fd, round, exit_request_failed, where + slot.error().to_string());
      auto& rr = rep.reqs[q];
      if (slot->duplicate || slot->first_version != expected[q] + 1
          || slot->last_version != expected[q] + rr.events || slot->first_position != position + 1
          || slot->last_position != position + rr.events)
        return child_fail(fd, round, exit_bad_result,
                          where + "unexpected result v" + std::to_string(slot->first_version) + "-"
                            + std::to_string(slot->last_version) + " p"
                            + std::to_string(slot->first_position) + "-"
                            + std::to_string(slot->last_position) + ", expected v"
                            + std::to_string(expected[q] + 1) + " p"
                            + std::to_string(position + 1));
      rr.first_version = slot->first_version;
      rr.last_version = slot->last_version;
      rr.first_position = slot->first_position;
      rr.last_position = slot->last_position;
      position = slot->last_position;
    }
    rep.kind = kind_ack;
    if (!write_all(fd, &rep, sizeof rep))
      return exit_pipe_failed;
  }
}

// -- the parent: one round ----------------------------------------------------------

/// Collects reports from the pipe; ignores a trailing partial record.
class report_reader {
public:
  explicit report_reader(int fd) : fd_(fd) {}

  /// Waits up to `timeout_ms` for data and takes what is there.
  void pump(int timeout_ms) {
    if (eof_)
      return;
    pollfd p{fd_, POLLIN, 0};
    int ready = ::poll(&p, 1, std::max(timeout_ms, 0));
    if (ready <= 0)
      return; // timeout or EINTR: the caller loops
    char chunk[1 << 16];
    ssize_t n = ::read(fd_, chunk, sizeof chunk);
    if (n > 0) {
      buffer_.append(chunk, static_cast<std::size_t>(n));
      parse();
    } else if (n == 0 || errno != EINTR) {
      eof_ = true;
    }
  }

  [[nodiscard]] bool eof() const { return eof_; }
  [[nodiscard]] const std::vector<report>& reports() const { return reports_; }
  [[nodiscard]] std::size_t trailing_bytes() const { return buffer_.size(); }
  [[nodiscard]] std::size_t count(report_kind kind) const {
    return static_cast<std::size_t>(
      std::count_if(reports_.begin(), reports_.end(),
                    [kind](const report& r) { return r.kind == kind; }));
  }

private:
  void parse() {
    std::size_t used = 0;
    while (buffer_.size() - used >= sizeof(report)) {
      report r;
      std::memcpy(&r, buffer_.data() + used, sizeof r);
      reports_.push_back(r);
      used += sizeof r;
    }
    buffer_.erase(0, used);
  }

  int fd_;
  bool eof_ = false;
  std::string buffer_;
  std::vector<report> reports_;
};

struct round_outcome {
  std::vector<report> acks;
  int status = 0;          ///< From waitpid.
  std::string harness;     ///< Why the round itself failed (timeouts, syscalls); empty if fine.
  std::string child_error; ///< The child's failure report, if it sent one.
  std::size_t trailing_bytes = 0;
  int delay_ms = 0;
  /// The last report was a kind_begin: the kill came inside append_batch.
  bool killed_in_commit = false;
};

/// Forks a child that appends to `dir`, kills it at a random moment and
/// collects what it acknowledged.
round_outcome run_round(const std::string& dir, const workload& w, std::uint32_t round,
                        std::mt19937_64& rng) {
  round_outcome out;
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) {
    out.harness = std::string{"pipe2: "} + std::strerror(errno);
    return out;
  }
  auto child_seed = rng();
  if (auto busy = cairn::test::await_quiet_threads(); !busy.empty()) {
    out.harness = busy;
    ::close(fds[0]);
    ::close(fds[1]);
    return out;
  }
  std::fflush(nullptr); // or the child's copy of unflushed output could appear twice
  pid_t pid = ::fork();
  if (pid < 0) {
    out.harness = std::string{"fork: "} + std::strerror(errno);
    ::close(fds[0]);
    ::close(fds[1]);
    return out;
  }
  if (pid == 0) {
    ::close(fds[0]);
    int code = exit_exception;
    try {
      code = child_main(dir, w, round, child_seed, fds[1]);
    } catch (...) {
      code = exit_exception;
    }
    ::_exit(code);
  }
  ::close(fds[1]);
  report_reader reader{fds[0]};
  auto start = clock_type::now();
  if (w.kill_mid_commit) {
    // Time the first commit, then kill inside the second.
    auto deadline = start + std::chrono::seconds{30};
    while (reader.count(kind_begin) < 2 && !reader.eof() && clock_type::now() < deadline)
      reader.pump(ms_until(deadline));
    if (reader.count(kind_begin) < 2 && !reader.eof())
      out.harness = "the child did not finish its first batch within 30 s";
    if (reader.count(kind_ack) > 0) {
      auto first = std::find_if(reader.reports().begin(), reader.reports().end(),
                                [](const report& r) { return r.kind == kind_ack; });
      auto commit_ms = static_cast<double>(first->commit_ns) / 1e6;
      out.delay_ms =
        static_cast<int>(std::uniform_real_distribution<double>{0, 1.2}(rng)*commit_ms);
    }
  } else {
    out.delay_ms = std::uniform_int_distribution<int>{w.min_delay_ms, w.max_delay_ms}(rng);
  }
  auto kill_at = clock_type::now() + milliseconds{out.delay_ms};
  if (!w.kill_mid_commit)
    kill_at = start + milliseconds{out.delay_ms};
  while (out.harness.empty() && !reader.eof() && clock_type::now() < kill_at)
    reader.pump(ms_until(kill_at));
  if (auto reaped = cairn::test::kill_and_reap(pid, out.status); !reaped.empty())
    out.harness = reaped;
  // Reports written before the kill are acknowledged: drain them to EOF.
  auto drain_deadline = clock_type::now() + std::chrono::seconds{5};
  while (!reader.eof() && clock_type::now() < drain_deadline)
    reader.pump(ms_until(drain_deadline));
  if (!reader.eof() && out.harness.empty())
    out.harness = "the pipe did not reach EOF within 5 s of the child's death";
  ::close(fds[0]);
  out.trailing_bytes = reader.trailing_bytes();
  for (const auto& r : reader.reports()) {
    out.killed_in_commit = r.kind == kind_begin;
    if (r.magic != report_magic || r.round != round
        || (r.kind != kind_begin && r.kind != kind_ack && r.kind != kind_failure)) {
      out.harness = "garbled report in the pipe";
      break;
    }
    if (r.kind == kind_failure) {
      out.child_error.assign(r.message, strnlen(r.message, sizeof r.message));
      continue;
    }
    if (r.seq != out.acks.size() || r.requests == 0 || r.requests > max_requests_per_batch) {
      out.harness = "report out of order: batch " + std::to_string(r.seq) + " after "
                    + std::to_string(out.acks.size()) + " acknowledgements";
      break;
    }
    if (r.kind == kind_ack)
      out.acks.push_back(r);
  }
  return out;
}

// -- the parent: checking the store ----------------------------------------------------

/// Problems found, the first few in full.
class problems {
public:
  void add(std::string what) {
    if (list_.size() < 25)
      list_.push_back(std::move(what));
    ++count_;
  }
  void error(const std::string& call, const cairn::error& e) {
    add(call + " failed: " + e.to_string()
        + (e.code == errc::corrupted ? " (a checksum or layout check failed)" : ""));
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

/// What the global log holds at one position.
struct log_entry {
  std::string stream;
  std::uint64_t version = 0;
  std::optional<event_tag> tag;
};

struct batch_seen {
  std::uint32_t total = 0;
  std::uint32_t count = 0;
  std::uint64_t base = 0; ///< Position of offset 0: every event sits at base + offset.
  std::vector<bool> offsets;
};

struct store_summary {
  std::uint64_t events = 0;
  std::size_t batches = 0;
  std::size_t streams = 0;
  /// Rounds whose last committed batch was killed before it was reported.
  std::size_t unreported_commits = 0;
};

std::string batch_label(std::uint32_t round, std::uint64_t seq) {
  return "batch " + std::to_string(round) + "/" + std::to_string(seq);
}

/// Reopens the store and checks it against everything acknowledged in rounds
/// [0, rounds). The store is closed again on return.
store_summary check_store(const std::string& dir, const workload& w,
                          const std::vector<std::vector<report>>& acked, problems& p) {
  store_summary sum;
  auto opened = open_store(dir);
  if (!opened) {
    p.error("reopen", opened.error());
    return sum;
  }
  const event_store& store = **opened;
  auto last = store.last_position();
  if (!last) {
    p.error("last_position", last.error());
    return sum;
  }
  sum.events = *last;

  // The global log: positions 1..last, each exactly once, every record verified.
  std::vector<log_entry> log;
  log.reserve(static_cast<std::size_t>(*last));
  for (std::uint64_t next = 1; next <= *last;) {
    auto page = store.read_all(next, 1000);
    if (!page) {
      p.error("read_all(" + std::to_string(next) + ")", page.error());
      return sum;
    }
    if (page->events.empty() || page->next_position <= next) {
      p.add("read_all(" + std::to_string(next) + ") made no progress below last position "
            + std::to_string(*last));
      return sum;
    }
    for (auto& ev : page->events) {
      if (ev.position != log.size() + 1) {
        p.add("gap in the global log: position " + std::to_string(ev.position) + " follows "
              + std::to_string(log.size()));
        return sum;
      }
      auto tag = parse_payload(ev.payload);
      if (!tag)
        p.add("position " + std::to_string(ev.position) + ": payload is not ours");
      else if (ev.stream != stream_name(w, tag->stream))
        p.add("position " + std::to_string(ev.position) + ": event of "
              + stream_name(w, tag->stream) + " stored under " + ev.stream);
      if (ev.type != event_type)
        p.add("position " + std::to_string(ev.position) + ": type " + ev.type);
      log.push_back(log_entry{ev.stream, ev.version, tag});
    }
    next = page->next_position;
  }
  if (log.size() != *last)
    p.add("the log holds " + std::to_string(log.size()) + " events, last position is "
          + std::to_string(*last));
  if (auto tail = store.read_all(*last + 1, 10); !tail)
    p.error("read_all past the end", tail.error());
  else if (!tail->events.empty())
    p.add("read_all finds events past last_position " + std::to_string(*last));
  if (auto st = store.stats(); !st)
    p.error("stats", st.error());
  else if (st->events != *last)
    p.add("stats().events is " + std::to_string(st->events) + ", last position "
          + std::to_string(*last));

  // Atomicity: every batch in the log is whole, at consecutive positions.
  std::map<std::pair<std::uint32_t, std::uint64_t>, batch_seen> batches;
  for (std::size_t i = 0; i < log.size(); ++i) {
    if (!log[i].tag)
      continue;
    const auto& t = *log[i].tag;
    auto pos = i + 1;
    auto& b = batches[{t.round, t.seq}];
    if (b.offsets.empty()) {
      b.total = t.total;
      b.offsets.resize(t.total);
      b.base = pos - t.offset;
    }
    if (t.total != b.total || t.offset >= b.total || pos - t.offset != b.base
        || b.offsets[t.offset]) {
      p.add(batch_label(t.round, t.seq) + ": event at position " + std::to_string(pos) + " (offset "
            + std::to_string(t.offset) + " of " + std::to_string(t.total)
            + ") is duplicated or out of place");
      continue;
    }
    b.offsets[t.offset] = true;
    ++b.count;
  }
  sum.batches = batches.size();
  std::map<std::uint32_t, std::uint64_t> present; // round -> batches in the log
  for (const auto& [key, b] : batches) {
    if (b.count != b.total)
      p.add(batch_label(key.first, key.second) + " is partly visible: " + std::to_string(b.count)
            + " of " + std::to_string(b.total) + " events");
    if (key.first >= acked.size())
      p.add(batch_label(key.first, key.second) + " belongs to a round that never ran");
    ++present[key.first];
  }
  for (std::uint32_t round = 0; round < acked.size(); ++round) {
    // A child commits batch n+1 only after reporting batch n, so a round shows
    // its acknowledged batches plus at most the one it was killed in.
    std::uint64_t k = present.count(round) ? present[round] : 0;
    std::uint64_t a = acked[round].size();
    auto it = batches.lower_bound({round + 1, 0});
    if (k > 0 && std::prev(it)->first.second != k - 1)
      p.add("round " + std::to_string(round) + ": its " + std::to_string(k)
            + " batches in the log are not numbered 0.." + std::to_string(k - 1));
    if (k < a)
      p.add("round " + std::to_string(round) + ": " + std::to_string(a)
            + " batches acknowledged but only " + std::to_string(k) + " in the log");
    if (k > a + 1)
      p.add("round " + std::to_string(round) + ": " + std::to_string(k)
            + " batches in the log but only " + std::to_string(a)
            + " acknowledged (at most one more may have committed unreported)");
    if (k == a + 1)
      ++sum.unreported_commits;
  }

  // Every acknowledged event is there, where the child was told it is.
  for (const auto& round_acks : acked) {
    for (const auto& rep : round_acks) {
      auto label = batch_label(rep.round, rep.seq);
      for (std::uint32_t q = 0; q < rep.requests; ++q) {
        const auto& rr = rep.reqs[q];
        auto name = stream_name(w, rr.stream);
        auto n = rr.last_version - rr.first_version + 1;
        if (n != rr.events || rr.last_position - rr.first_position + 1 != n) {
          p.add(label + " request " + std::to_string(q) + ": the acknowledgement is inconsistent");
          continue;
        }
        for (std::uint64_t k = 0; k < n; ++k) {
          auto pos = rr.first_position + k;
          auto where = label + " request " + std::to_string(q) + " event " + std::to_string(k)
                       + " (acknowledged at " + name + " v" + std::to_string(rr.first_version + k)
                       + ", position " + std::to_string(pos) + ")";
          if (pos == 0 || pos > log.size()) {
            p.add(where + " is lost: the log ends at " + std::to_string(log.size()));
            break;
          }
          const auto& e = log[pos - 1];
          if (e.stream != name || e.version != rr.first_version + k || !e.tag
              || e.tag->round != rep.round || e.tag->seq != rep.seq || e.tag->request != q
              || e.tag->event != k) {
            p.add(where + " holds " + e.stream + " v" + std::to_string(e.version)
                  + (e.tag ? " from " + batch_label(e.tag->round, e.tag->seq) : ""));
            break;
          }
        }
      }
    }
  }

  // Every stream: versions 1..stream_version() without a gap, matching the log.
  std::map<std::string, std::uint64_t> log_versions;
  for (const auto& e : log)
    log_versions[e.stream] = std::max(log_versions[e.stream], e.version);
  auto streams = store.list_streams("");
  if (!streams) {
    p.error("list_streams", streams.error());
    return sum;
  }
  sum.streams = streams->size();
  std::uint64_t events_in_streams = 0;
  std::map<std::string, std::uint64_t> listed;
  for (const auto& info : *streams) {
    listed[info.name] = info.version;
    auto version = store.stream_version(info.name);
    if (!version) {
      p.error("stream_version(" + info.name + ")", version.error());
      continue;
    }
    if (*version != info.version)
      p.add(info.name + ": list_streams says v" + std::to_string(info.version)
            + ", stream_version says v" + std::to_string(*version));
    std::uint64_t expect = 1;
    bool failed = false;
    while (expect <= *version && !failed) {
      auto events = store.read_stream(info.name, expect, 1000);
      if (!events) {
        p.error("read_stream(" + info.name + ", " + std::to_string(expect) + ")", events.error());
        break;
      }
      if (events->empty()) {
        p.add(info.name + ": read_stream from v" + std::to_string(expect)
              + " returns nothing, stream version is " + std::to_string(*version));
        break;
      }
      for (const auto& ev : *events) {
        const log_entry* e = ev.position >= 1 && ev.position <= log.size() ? &log[ev.position - 1]
                                                                           : nullptr;
        if (ev.version != expect || ev.stream != info.name || e == nullptr || e->stream != info.name
            || e->version != ev.version) {
          p.add(info.name + ": read_stream gives " + ev.stream + " v" + std::to_string(ev.version)
                + " at position " + std::to_string(ev.position) + " where v"
                + std::to_string(expect) + " was due");
          failed = true;
          break;
        }
        ++expect;
      }
    }
    events_in_streams += *version;
    if (auto beyond = store.read_stream(info.name, *version + 1, 10); !beyond)
      p.error("read_stream past the end of " + info.name, beyond.error());
    else if (!beyond->empty())
      p.add(info.name + ": read_stream finds events past v" + std::to_string(*version));
  }
  if (listed != log_versions)
    p.add("list_streams names " + std::to_string(listed.size())
          + " streams and versions that differ from the log's "
          + std::to_string(log_versions.size()));
  if (events_in_streams != log.size())
    p.add("the streams hold " + std::to_string(events_in_streams) + " events, the log "
          + std::to_string(log.size()));
  return sum;
}

// -- the driver --------------------------------------------------------------------

/// Runs w.rounds kill rounds on one store directory and checks it after each.
void run_kill_rounds(const workload& w) {
  auto seed = test_seed();
  INFO("seed " << seed << " (rerun with CAIRN_CRASH_SEED=" << seed << ")");
  std::mt19937_64 rng{seed};
  cairn::test::temp_dir dir;
  auto path = dir.sub("store");
  std::vector<std::vector<report>> acked;
  std::size_t acked_batches = 0;
  std::size_t unreported = 0;
  int killed_in_commit = 0;
  store_summary sum;
  auto start = clock_type::now();
  for (int round = 0; round < w.rounds; ++round) {
    INFO("round " << round);
    auto out = run_round(path, w, static_cast<std::uint32_t>(round), rng);
    INFO("killed after " << out.delay_ms << " ms; " << out.acks.size() << " batches acknowledged"
                         << (out.trailing_bytes > 0 ? ", a partial report ignored" : ""));
    REQUIRE(out.harness == "");
    if (!(WIFSIGNALED(out.status) && WTERMSIG(out.status) == SIGKILL))
      FAIL("the child " << describe_status(out.status) << ": "
                        << (out.child_error.empty() ? "(no message)" : out.child_error));
    REQUIRE(out.child_error == "");
    acked_batches += out.acks.size();
    killed_in_commit += out.killed_in_commit ? 1 : 0;
    acked.push_back(std::move(out.acks));
    problems p;
    sum = check_store(path, w, acked, p);
    INFO(p.text());
    REQUIRE(p.empty());
    unreported = sum.unreported_commits;
  }
  auto seconds = std::chrono::duration<double>(clock_type::now() - start).count();
  INFO(w.rounds << " rounds in " << seconds << " s: " << acked_batches
                << " batches acknowledged; the store holds " << sum.events << " events in "
                << sum.batches << " batches over " << sum.streams << " streams; "
                << killed_in_commit << " rounds killed inside append_batch; " << unreported
                << " rounds committed a batch they never reported");
  CHECK(acked_batches > 0);
  if (w.require_kill_in_commit)
    CHECK(killed_in_commit > 0);
}

} // namespace

TEST_CASE("a store killed with SIGKILL at random moments keeps every acknowledged batch whole",
          "[crash][store]") {
  workload w;
  run_kill_rounds(w);
}

TEST_CASE("a store killed in the middle of a large batch shows all of it or none of it",
          "[crash][store]") {
  workload w;
  w.category = "bulk";
  w.streams = 20;
  w.min_requests = w.max_requests = 10;
  w.min_events = w.max_events = 200;  // 2000 events per batch
  w.min_filler = w.max_filler = 4040; // about 4 KiB per payload, 8 MiB per batch
  w.rounds = 10;
  w.kill_mid_commit = true;
  w.require_kill_in_commit = true;
  run_kill_rounds(w);
}
