// Disk-fault tests of the LMDB store and the runtime: a child program
// (tests/support/fault_victim.cpp) runs with an LD_PRELOAD shim
// (tests/support/fault_shim.c) that fails the Nth pwrite, writev or fdatasync
// of data.mdb with EIO or ENOSPC, or under a file-size limit, or on a tiny
// tmpfs. It reports every acknowledged batch; the parent then reopens the
// store without faults and checks:
//   - every acknowledged batch is there, whole, at its positions, byte for byte;
//   - a batch that failed is absent, unless its error says the flush after
//     its commit failed: then it is there whole (visible, not known durable);
//   - no batch is half there, the log and every stream have no gaps;
//   - every failing call returned within a bound, the child exited by itself;
//   - the reopened store takes writes and `cairn verify` finds no problem.
// The call counts start once the store is open (the child arms the shim).

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <variant>
#include <vector>

#include "account.hpp"
#include "cairn/persistence/event_store.hpp"
#include "cairn/runtime/runtime.hpp"
#include "support/child_process.hpp"
#include "support/disk_fault_workload.hpp"
#include "support/temp_dir.hpp"

extern char** environ;

namespace {

using namespace cairn;
using namespace cairn::persistence;
namespace wl = cairn::test::disk_fault;
using clock_type = std::chrono::steady_clock;

/// The child must finish by itself within this (it makes at most ~45 commits).
constexpr auto child_deadline = std::chrono::seconds{60};
/// A failed append must answer within this.
constexpr long long answer_bound_ms = 10000;

/// One fault: which calls fail, from which one, how many, and with what.
struct fault {
  std::string call;        ///< "pwrite", "writev", "fdatasync", "pwrite,writev", ...
  unsigned long nth = 1;   ///< From 1, counted once the store is open.
  unsigned long count = 1; ///< 0: every later call too (a disk that stays full).
  std::string err = "EIO";
  std::string region = "any";             ///< "meta", "data" or "any" (writes only).
  std::string thread = "!cairn.prealloc"; ///< The writer's calls by default.
  bool from_start = false; ///< Count from the child's first call, not once the store is open.
  /// Then replace data.mdb with what a power loss would leave: the writes that
  /// a successful flush covered, none that a failed flush covered.
  bool power_loss = false;
  /// With power_loss: the child dies of SIGKILL at the flush this many
  /// flushes after the fault (-1: it runs on).
  int die_after = -1;

  [[nodiscard]] std::string describe() const {
    std::ostringstream os;
    os << (power_loss ? "power loss "
                          + (die_after < 0 ? std::string{"at the end"}
                                           : std::to_string(die_after) + " flushes")
                          + " after "
                      : std::string{})
       << call << " #" << nth
       << (count == 0   ? "+"
           : count == 1 ? ""
                        : "x" + std::to_string(count))
       << " " << err << " region=" << region << " thread=" << thread;
    return os.str();
  }
};

/// What the child said and how it ended.
struct child_run {
  std::string harness; ///< Why the run itself failed; empty if fine.
  int status = 0;
  std::vector<std::string> lines;
  std::string fault_log; ///< The shim's lines: one per failed call.
  std::string output;    ///< The child's stdout and stderr.
  [[nodiscard]] bool fired() const { return !fault_log.empty(); }
};

std::string read_file(const std::string& path) {
  std::ifstream in{path, std::ios::binary};
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

/// Runs the victim with `args` (after its mode), the shim preloaded and
/// configured by `f` (none when null), and collects its report lines.
child_run run_victim(const std::string& work, const std::vector<std::string>& args,
                     const fault* f) {
  child_run out;
  auto log_path = work + "/fault.log";
  auto out_path = work + "/child.out";
  ::unlink(log_path.c_str());
  std::vector<std::string> env;
  for (char** e = environ; *e != nullptr; ++e) {
    std::string kv = *e;
    if (kv.rfind("CAIRN_FAULT_", 0) == 0 || kv.rfind("LD_PRELOAD=", 0) == 0
        || kv.rfind("ASAN_OPTIONS=", 0) == 0)
      continue;
    env.push_back(kv);
  }
  // A preloaded library comes before the sanitizer runtime: let ASan accept it.
  const char* asan = std::getenv("ASAN_OPTIONS");
  env.push_back(std::string{"ASAN_OPTIONS="} + (asan != nullptr ? std::string{asan} + ":" : "")
                + "verify_asan_link_order=0");
  if (f != nullptr) {
    env.push_back(std::string{"LD_PRELOAD="} + CAIRN_FAULT_SHIM_PATH);
    env.push_back("CAIRN_FAULT_CALL=" + f->call);
    env.push_back("CAIRN_FAULT_NTH=" + std::to_string(f->nth));
    env.push_back("CAIRN_FAULT_COUNT=" + std::to_string(f->count));
    env.push_back("CAIRN_FAULT_ERRNO=" + f->err);
    env.push_back("CAIRN_FAULT_REGION=" + f->region);
    env.push_back("CAIRN_FAULT_THREAD=" + f->thread);
    env.push_back("CAIRN_FAULT_LOG=" + log_path);
    if (f->from_start)
      env.push_back("CAIRN_FAULT_ARM=start");
    if (f->power_loss) {
      env.push_back("CAIRN_FAULT_DURABLE=" + work + "/durable.img");
      env.push_back("CAIRN_FAULT_DURABLE_SOURCE=" + args.at(1) + "/data.mdb");
      if (f->die_after >= 0)
        env.push_back("CAIRN_FAULT_DIE_AFTER=" + std::to_string(f->die_after));
    }
  }
  env.push_back("SPDLOG_LEVEL=warn");
  std::vector<std::string> argv_s{CAIRN_FAULT_VICTIM_PATH};
  argv_s.insert(argv_s.end(), args.begin(), args.end());
  // The report descriptor is 3 in the child.
  argv_s.insert(argv_s.begin() + 3, "3");
  std::vector<char*> argv, envp;
  for (auto& s : argv_s)
    argv.push_back(s.data());
  argv.push_back(nullptr);
  for (auto& s : env)
    envp.push_back(s.data());
  envp.push_back(nullptr);

  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) {
    out.harness = std::string{"pipe2: "} + std::strerror(errno);
    return out;
  }
  int out_fd = ::open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  std::fflush(nullptr);
  pid_t pid = ::fork();
  if (pid < 0) {
    out.harness = std::string{"fork: "} + std::strerror(errno);
    ::close(fds[0]);
    ::close(fds[1]);
    return out;
  }
  if (pid == 0) {
    // dup2 clears close-on-exec on the copies.
    if (::dup2(fds[1], 3) < 0 || (out_fd >= 0 && (::dup2(out_fd, 1) < 0 || ::dup2(out_fd, 2) < 0)))
      ::_exit(120);
    ::execve(argv[0], argv.data(), envp.data());
    ::_exit(121);
  }
  ::close(fds[1]);
  if (out_fd >= 0)
    ::close(out_fd);
  std::string buffer;
  auto deadline = clock_type::now() + child_deadline;
  bool eof = false;
  while (!eof) {
    if (clock_type::now() > deadline) {
      out.harness = "the child did not finish within 60 s (a hang)";
      break;
    }
    pollfd p{fds[0], POLLIN, 0};
    if (::poll(&p, 1, cairn::test::ms_until(deadline)) <= 0)
      continue;
    char chunk[4096];
    ssize_t n = ::read(fds[0], chunk, sizeof chunk);
    if (n > 0)
      buffer.append(chunk, static_cast<std::size_t>(n));
    else if (n == 0 || errno != EINTR)
      eof = true;
  }
  ::close(fds[0]);
  if (auto err = cairn::test::kill_and_reap(pid, out.status); !err.empty() && out.harness.empty())
    out.harness = err;
  std::istringstream lines{buffer};
  for (std::string line; std::getline(lines, line);)
    out.lines.push_back(line);
  out.fault_log = read_file(log_path);
  out.output = read_file(out_path);
  if (f != nullptr && f->power_loss) {
    auto image = work + "/durable.img";
    if (::access(image.c_str(), F_OK) == 0
        && ::rename(image.c_str(), (args.at(1) + "/data.mdb").c_str()) != 0)
      out.harness = std::string{"rename the power-loss image: "} + std::strerror(errno);
  }
  return out;
}

/// Collects what is wrong; one line each.
struct problems {
  std::vector<std::string> list;
  void add(std::string what) { list.push_back(std::move(what)); }
  [[nodiscard]] bool empty() const { return list.empty(); }
  [[nodiscard]] std::string text() const {
    std::string out;
    for (std::size_t i = 0; i < list.size() && i < 20; ++i)
      out += list[i] + "\n";
    if (list.size() > 20)
      out += "... and " + std::to_string(list.size() - 20) + " more\n";
    return out;
  }
};

/// The child ended by itself after an `end` line and named no stuck call.
void check_child_ended(const child_run& run, problems& p, bool may_be_killed = false) {
  if (!run.harness.empty())
    p.add(run.harness);
  if (may_be_killed && WIFSIGNALED(run.status) && WTERMSIG(run.status) == SIGKILL)
    return; // the shim's power loss
  if (!WIFEXITED(run.status) || WEXITSTATUS(run.status) != 0)
    p.add("the child " + cairn::test::describe_status(run.status));
  bool ended = false;
  for (const auto& l : run.lines) {
    if (l.rfind("stuck", 0) == 0)
      p.add("child: " + l);
    ended = ended || l.rfind("end ", 0) == 0;
  }
  if (!ended)
    p.add("the child sent no end line");
}

struct store_report {
  std::map<std::uint64_t, std::pair<std::uint64_t, std::uint64_t>> acked; ///< batch -> positions
  struct failure {
    bool refuses = false;
    long long ms = 0;
    bool committed = false; ///< "unflushed": it committed and then its flush failed.
    std::string error;
  };
  std::map<std::uint64_t, failure> failed;
  std::uint64_t first_failed = UINT64_MAX;
  std::set<std::uint64_t> begun;
  /// The shim's power loss killed the child: the batches begun after its
  /// last acknowledgement were in flight, and each may or may not be there.
  bool killed = false;
};

store_report parse_store_report(const child_run& run, problems& p) {
  store_report r;
  for (const auto& l : run.lines) {
    unsigned long long b = 0, first = 0, last = 0;
    int refuses = 0;
    long long ms = 0;
    int used = 0;
    if (std::sscanf(l.c_str(), "begin %llu", &b) == 1) {
      r.begun.insert(b);
    } else if (std::sscanf(l.c_str(), "ack %llu %llu %llu", &b, &first, &last) == 3) {
      if (!r.acked.emplace(b, std::pair{first, last}).second)
        p.add("batch " + std::to_string(b) + " acknowledged twice");
    } else if (std::sscanf(l.c_str(), "fail %llu %d %lld %n", &b, &refuses, &ms, &used) == 3) {
      auto rest = l.substr(static_cast<std::size_t>(used));
      bool committed = rest.rfind("unflushed ", 0) == 0;
      if (!committed && rest.rfind("commit ", 0) != 0)
        p.add("a fail line without its kind: " + l);
      r.failed[b] = {refuses != 0, ms, committed, rest.substr(rest.find(' ') + 1)};
      r.first_failed = std::min<std::uint64_t>(r.first_failed, b);
    }
  }
  return r;
}

/// Reopens the store in `dir` without faults and checks it against what the
/// child reported. Returns how many failed batches are visible.
std::size_t check_store(const std::string& dir, const store_report& rep, problems& p) {
  auto opened = open_store(dir);
  if (!opened) {
    p.add("reopen: " + opened.error().to_string());
    return 0;
  }
  auto& store = **opened;
  // Read the whole log: batch -> its events in position order.
  struct seen {
    std::uint64_t position;
    std::uint32_t offset;
    std::string stream;
    std::uint64_t version;
  };
  std::map<std::uint64_t, std::vector<seen>> batches;
  std::map<std::string, std::vector<std::uint64_t>> positions_of_stream;
  std::uint64_t expect_position = 1;
  for (std::uint64_t from = 1;;) {
    auto page = store.read_all(from, 1000);
    if (!page) {
      p.add("read_all from " + std::to_string(from) + ": " + page.error().to_string());
      return 0;
    }
    for (const auto& ev : page->events) {
      auto at = "position " + std::to_string(ev.position);
      if (ev.position != expect_position)
        p.add(at + ": expected position " + std::to_string(expect_position) + " (a gap)");
      expect_position = ev.position + 1;
      auto t = wl::parse_payload(ev.payload);
      if (!t || ev.type != wl::event_type) {
        p.add(at + ": not an event the child wrote");
        continue;
      }
      if (ev.payload != wl::payload_of(t->batch, t->offset))
        p.add(at + ": the bytes of batch " + std::to_string(t->batch) + " event "
              + std::to_string(t->offset) + " differ from what was appended");
      batches[t->batch].push_back({ev.position, t->offset, ev.stream, ev.version});
      positions_of_stream[ev.stream].push_back(ev.position);
    }
    if (page->events.empty() || page->next_position <= from)
      break;
    from = page->next_position;
  }
  auto last = store.last_position();
  if (!last || *last + 1 != expect_position)
    p.add("last_position disagrees with the log");
  std::size_t visible_failed = 0;
  for (const auto& [b, evs] : batches) {
    auto name = "batch " + std::to_string(b);
    // Whole: every event, in order, contiguous, in the right streams.
    if (evs.size() != wl::total_of(b))
      p.add(name + " is half there: " + std::to_string(evs.size()) + " of "
            + std::to_string(wl::total_of(b)) + " events");
    std::uint32_t offset = 0;
    for (std::uint32_t q = 0; q < wl::requests_of(b); ++q)
      for (std::uint32_t e = 0; e < wl::events_of(b, q); ++e, ++offset)
        if (offset < evs.size()
            && (evs[offset].offset != offset || evs[offset].stream != wl::stream_of(b, q)
                || evs[offset].position != evs.front().position + offset))
          p.add(name + " event " + std::to_string(offset) + " is out of place");
    if (auto a = rep.acked.find(b); a != rep.acked.end()) {
      if (evs.front().position != a->second.first || evs.back().position != a->second.second)
        p.add(name + " was acknowledged at positions " + std::to_string(a->second.first) + "-"
              + std::to_string(a->second.second) + ", the store has it at "
              + std::to_string(evs.front().position) + "-" + std::to_string(evs.back().position));
      continue;
    }
    auto f = rep.failed.find(b);
    if (f == rep.failed.end()) {
      bool in_flight = rep.killed && rep.begun.count(b) != 0
                       && (rep.acked.empty() || b > rep.acked.rbegin()->first);
      if (!in_flight)
        p.add(name + " is stored but was never acknowledged nor reported failed");
      continue;
    }
    // The one way a failed batch may be visible: its commit succeeded and
    // the flush after it failed (inside append_batch, which the error says,
    // or the later sync of append_batch_deferred).
    ++visible_failed;
    if (!f->second.committed && f->second.error.rfind("unavailable: flush to disk", 0) != 0)
      p.add(name + " failed (" + f->second.error + ") but is visible after reopening");
  }
  for (const auto& [b, pos] : rep.acked)
    if (batches.count(b) == 0)
      p.add("batch " + std::to_string(b) + " was acknowledged at positions "
            + std::to_string(pos.first) + "-" + std::to_string(pos.second)
            + " but is not in the store");
  // Streams: versions 1..n over exactly the log's events of that stream.
  for (std::uint32_t s = 0; s < wl::streams; ++s) {
    auto stream = "fault-" + std::to_string(s);
    auto events = store.read_stream(stream, 1, no_limit);
    auto version = store.stream_version(stream);
    if (!events || !version) {
      p.add(stream + ": cannot read it back");
      continue;
    }
    const auto& expect = positions_of_stream[stream];
    if (events->size() != expect.size() || *version != expect.size())
      p.add(stream + ": " + std::to_string(events->size()) + " events, version "
            + std::to_string(*version) + ", the log has " + std::to_string(expect.size()));
    for (std::size_t i = 0; i < events->size() && i < expect.size(); ++i)
      if ((*events)[i].version != i + 1 || (*events)[i].position != expect[i]) {
        p.add(stream + " v" + std::to_string(i + 1) + " is out of place");
        break;
      }
  }
  // The reopened store takes writes again.
  append_request req;
  req.stream = "after-fault";
  req.events.push_back(event_data{"after", 1, "written after the fault", {}, {}});
  auto res = store.append(req);
  if (!res)
    p.add("append after reopening: " + res.error().to_string());
  else if (res->first_position != expect_position)
    p.add("the append after reopening landed at position " + std::to_string(res->first_position));
  return visible_failed;
}

/// `cairn verify` on the store finds no problem.
void check_verify(const std::string& dir, problems& p) {
  auto cmd = std::string{CAIRN_CLI_PATH} + " verify '" + dir + "' > /dev/null 2>&1";
  int rc = std::system(cmd.c_str());
  if (rc != 0)
    p.add("cairn verify " + dir + " failed (" + cairn::test::describe_status(rc) + ")");
}

/// After the first failure: each later attempt answered quickly; once the
/// store refused writes, every later batch failed.
void check_after_failure(const store_report& rep, problems& p) {
  bool refusing = false;
  for (const auto& [b, f] : rep.failed) {
    if (f.ms > answer_bound_ms)
      p.add("batch " + std::to_string(b) + " took " + std::to_string(f.ms) + " ms to fail");
    // A disk's failure is one to retry after fixing the disk, never a bug.
    if (f.error.find("unavailable") == std::string::npos)
      p.add("batch " + std::to_string(b) + " failed with " + f.error + ", not unavailable");
    if (f.refuses)
      refusing = true;
  }
  if (!refusing)
    return;
  for (const auto& [b, pos] : rep.acked) {
    (void)pos;
    auto first_refusal = std::find_if(rep.failed.begin(), rep.failed.end(),
                                      [](const auto& kv) { return kv.second.refuses; });
    if (b > first_refusal->first)
      p.add("batch " + std::to_string(b) + " was acknowledged after the store refused writes");
  }
}

/// Directory for the sweeps' stores, removed with it even when a check
/// fails: on a tmpfs when there is one (what is checked is the store's answer
/// to a failing call, not the disk, and a fdatasync there costs nothing),
/// else in a temp dir.
class fast_dir {
public:
  fast_dir() {
    struct stat st {};
    if (::stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode) && ::access("/dev/shm", W_OK) == 0) {
      std::string tmpl = "/dev/shm/cairn-fault-XXXXXX";
      if (::mkdtemp(tmpl.data()) != nullptr) {
        path_ = tmpl;
        return;
      }
    }
    path_ = fallback_.sub("fast");
    std::filesystem::create_directories(path_);
  }
  ~fast_dir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  fast_dir(const fast_dir&) = delete;
  fast_dir& operator=(const fast_dir&) = delete;
  [[nodiscard]] const std::string& path() const { return path_; }

private:
  cairn::test::temp_dir fallback_;
  std::string path_;
};

struct sweep_summary {
  int runs = 0;
  int fired = 0;          ///< Runs in which the fault happened.
  int failed_batches = 0; ///< Batches the child saw fail.
  int visible_failed = 0; ///< Failed batches visible after reopening.
  int recovered = 0;      ///< Runs in which a batch after a failure was acknowledged.
  int refused = 0;        ///< Runs in which the store refused writes after the fault.
  int open_failed = 0;    ///< Runs in which open_store itself failed.
};

/// One fault case: a fresh store, the child appends `batches`, then the checks.
void run_store_case(const std::string& base, const fault& f, std::uint64_t batches, bool deferred,
                    sweep_summary& sum, const std::string& extra = {},
                    const std::function<void()>& before_reopen = {}) {
  auto dir = base + "/store";
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
  std::vector<std::string> args{"store", dir, std::to_string(batches)};
  if (deferred)
    args.push_back("deferred");
  if (!extra.empty())
    args.push_back(extra);
  auto run = run_victim(base, args, &f);
  problems p;
  check_child_ended(run, p, f.die_after >= 0);
  auto rep = parse_store_report(run, p);
  rep.killed = WIFSIGNALED(run.status) && WTERMSIG(run.status) == SIGKILL && f.die_after >= 0;
  check_after_failure(rep, p);
  if (before_reopen)
    before_reopen();
  for (const auto& l : run.lines)
    if (l.rfind("open_failed ", 0) == 0) {
      ++sum.open_failed;
      if (l.find("unavailable") == std::string::npos)
        p.add("the open failed with " + l.substr(12) + ", not unavailable");
    }
  auto visible = check_store(dir, rep, p);
  if (p.empty())
    check_verify(dir, p);
  ++sum.runs;
  sum.fired += run.fired() ? 1 : 0;
  sum.failed_batches += static_cast<int>(rep.failed.size());
  sum.visible_failed += static_cast<int>(visible);
  bool any_refused = false, recovered = false;
  for (const auto& [b, fl] : rep.failed)
    any_refused = any_refused || fl.refuses;
  if (!rep.failed.empty())
    for (const auto& [b, pos] : rep.acked)
      recovered = recovered || b > rep.first_failed;
  sum.refused += any_refused ? 1 : 0;
  sum.recovered += recovered ? 1 : 0;
  INFO("fault: " << f.describe() << (deferred ? " (deferred commits)" : "")
                 << "\nshim: " << run.fault_log << "child output:\n"
                 << run.output.substr(0, 2000) << "\nchild report:\n"
                 << [&] {
                      std::string s;
                      for (const auto& l : run.lines)
                        s += l + "\n";
                      return s;
                    }());
  INFO(p.text());
  REQUIRE(p.empty());
}

void sweep(const fault& proto, unsigned long from, unsigned long to, std::uint64_t batches,
           bool deferred, sweep_summary& sum) {
  fast_dir fast;
  const auto& base = fast.path();
  for (auto n = from; n <= to; ++n) {
    auto f = proto;
    f.nth = n;
    run_store_case(base, f, batches, deferred, sum);
  }
}

/// How far each sweep goes in the crash label; `slow` goes further.
constexpr unsigned long crash_sweep = 40;
constexpr unsigned long slow_sweep = 160;

} // namespace

TEST_CASE("a failed pwrite of a data page fails its batch alone and loses nothing acknowledged",
          "[crash][store][disk]") {
  sweep_summary sum;
  fault f{"pwrite", 1, 1, GENERATE(as<std::string>{}, "EIO", "ENOSPC"), "data"};
  sweep(f, 1, crash_sweep / 2, 30, false, sum);
  INFO(sum.runs << " runs, " << sum.fired << " with a fault, " << sum.failed_batches
                << " failed batches");
  CHECK(sum.fired > 0);
  CHECK(sum.visible_failed == 0);
  CHECK(sum.recovered > 0); // the store keeps writing after a data page failed
}

TEST_CASE("a failed writev of data pages fails its batch alone and loses nothing acknowledged",
          "[crash][store][disk]") {
  sweep_summary sum;
  fault f{"writev", 1, 1, "EIO"};
  bool deferred = GENERATE(false, true);
  sweep(f, 1, crash_sweep / 2, 30, deferred, sum);
  CHECK(sum.fired > 0);
  // Deferred: the commits before the failed one, waiting for their flush, are visible.
  CHECK((deferred || sum.visible_failed == 0));
}

TEST_CASE("a failed meta-page write leaves the previous commit and refuses writes until reopened",
          "[crash][store][disk]") {
  sweep_summary sum;
  fault f{"pwrite", 1, 1, GENERATE(as<std::string>{}, "EIO", "ENOSPC"), "meta"};
  bool deferred = GENERATE(false, true);
  sweep(f, 1, crash_sweep / 4, 30, deferred, sum);
  INFO(sum.runs << " runs");
  CHECK(sum.fired == sum.runs);
  CHECK((deferred || sum.visible_failed == 0));
  CHECK(sum.recovered == 0); // LMDB panics: no write succeeds before a reopen
}

TEST_CASE("a failed fdatasync never loses an acknowledged batch nor shows half of one",
          "[crash][store][disk]") {
  sweep_summary sum;
  fault f{"fdatasync", 1, 1, "EIO"};
  bool deferred = GENERATE(false, true);
  sweep(f, 1, crash_sweep, 30, deferred, sum);
  INFO(sum.runs << " runs, " << sum.visible_failed << " failed batches visible after reopening");
  CHECK(sum.fired == sum.runs);
  // A failed flush after a commit leaves the store refusing writes, and that
  // commit visible (whole, checked above) though its batch was not acknowledged.
  CHECK(sum.refused > 0);
  CHECK(sum.visible_failed > 0);
}

TEST_CASE("a power loss after a failed flush loses nothing acknowledged", "[crash][store][disk]") {
  // The store reopens on what a power loss leaves when the Nth flush failed
  // and lost every write it covered; the other descriptor (the store's or the
  // preallocator's) reports that failure at its next flush, as Linux does.
  sweep_summary sum;
  fault f{"fdatasync", 1,     1,
          "EIO",       "any", GENERATE(as<std::string>{}, "!cairn.prealloc", "cairn.prealloc")};
  f.power_loss = true;
  f.die_after = GENERATE(-1, 0, 1);
  bool deferred = GENERATE(false, true);
  // The preallocator flushes again once the data takes half its first MiB.
  if (f.thread == "cairn.prealloc")
    sweep(f, 1, 2, 200, deferred, sum);
  else
    sweep(f, 1, crash_sweep, 30, deferred, sum);
  INFO(sum.runs << " runs, " << sum.fired << " with a fault");
  CHECK(sum.fired > 0);
}

TEST_CASE("a power loss after a failed write loses nothing acknowledged", "[crash][store][disk]") {
  sweep_summary sum;
  fault f{"pwrite,writev", 1, 1, "EIO"};
  f.power_loss = true;
  f.die_after = GENERATE(-1, 0);
  sweep(f, 1, crash_sweep, 30, GENERATE(false, true), sum);
  CHECK(sum.fired > 0);
}

TEST_CASE("a disk that stays full from the Nth write loses nothing acknowledged",
          "[crash][store][disk]") {
  sweep_summary sum;
  fault f{"pwrite,writev,fdatasync", 1, 0, "ENOSPC"};
  sweep(f, 1, crash_sweep, 30, GENERATE(false, true), sum);
  CHECK(sum.fired == sum.runs);
  CHECK(sum.recovered == 0);
}

TEST_CASE("a fault while a new store is created fails the open cleanly and the store reopens",
          "[crash][store][disk]") {
  sweep_summary sum;
  fault f{"pwrite,writev,fdatasync", 1, 1, GENERATE(as<std::string>{}, "EIO", "ENOSPC")};
  f.from_start = true;
  sweep(f, 1, 8, 5, false, sum);
  INFO(sum.runs << " runs, " << sum.open_failed << " failed opens");
  CHECK(sum.open_failed > 0);
}

TEST_CASE("a failing preallocator never fails an append", "[crash][store][disk]") {
  sweep_summary sum;
  // Counted from the start: the preallocator fills its first MiB as the store opens.
  fault f{GENERATE(as<std::string>{}, "pwrite", "fdatasync"),
          1,
          0,
          "ENOSPC",
          "any",
          "cairn.prealloc",
          true};
  sweep(f, 1, 6, 150, false, sum);
  CHECK(sum.fired > 0);
  CHECK(sum.failed_batches == 0);
}

TEST_CASE("a store under a file-size limit fails appends with unavailable and loses nothing",
          "[crash][store][disk]") {
  fast_dir fast;
  const auto& base = fast.path();
  sweep_summary sum;
  fault none{"", 1, 1};
  // Small enough that the appends reach it; the preallocator hits it first.
  run_store_case(base, none, 400, false, sum, "fsize=" + std::to_string(384 << 10));
  CHECK(sum.failed_batches > 0);
}

TEST_CASE("a store on a full tmpfs fails appends and loses nothing", "[crash][store][disk]") {
  cairn::test::temp_dir tmp;
  auto mnt = tmp.sub("tmpfs");
  std::filesystem::create_directories(mnt);
  if (::mount("tmpfs", mnt.c_str(), "tmpfs", 0, "size=1m") != 0) {
    WARN("skipped: mount -t tmpfs failed (" << std::strerror(errno) << ")");
    return;
  }
  struct unmount {
    std::string path;
    ~unmount() { (void)::umount2(path.c_str(), MNT_DETACH); }
  } guard{mnt};
  sweep_summary sum;
  fault none{"", 1, 1};
  // Then the operator frees space: the store reopens and takes writes.
  run_store_case(mnt, none, 400, false, sum, {}, [&] {
    if (::mount("tmpfs", mnt.c_str(), "tmpfs", MS_REMOUNT, "size=16m") != 0)
      FAIL("remount with more space: " << std::strerror(errno));
  });
  CHECK(sum.failed_batches > 0);
}

TEST_CASE("wider sweeps of write and flush faults lose nothing acknowledged",
          "[.slow][store][disk]") {
  sweep_summary sum;
  auto call = GENERATE(as<std::string>{}, "pwrite", "writev", "fdatasync", "pwrite,writev");
  bool deferred = GENERATE(false, true);
  fault f{call, 1, 1, "EIO"};
  sweep(f, 1, slow_sweep, 80, deferred, sum);
  INFO(sum.runs << " runs, " << sum.fired << " with a fault, " << sum.visible_failed
                << " failed batches visible");
  CHECK(sum.fired > 0);
}

namespace {

struct deposit_ack {
  std::uint32_t account = 0;
  std::uint64_t version = 0;
  std::int64_t amount = 0;
};

struct runtime_summary {
  int fired = 0;
  int refused = 0;
  int stored_refused = 0; ///< Refused deposits that the store holds after all.
};

/// One runtime case: the child runs deposits through cairn::runtime until the
/// fault, then the parent starts a runtime on the store and checks it.
void run_runtime_case(const std::string& base, const fault& f, runtime_summary& sum,
                      int deposits = 60, const std::function<void()>& before_reopen = {}) {
  auto dir = base + "/rt";
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
  auto run = run_victim(base, {"runtime", dir, std::to_string(deposits)}, &f);
  if (before_reopen)
    before_reopen();
  problems p;
  check_child_ended(run, p, f.die_after >= 0);
  bool killed = WIFSIGNALED(run.status) && WTERMSIG(run.status) == SIGKILL;
  std::map<std::uint64_t, deposit_ack> acked;
  std::map<std::uint64_t, std::string> refused;
  bool shut_down = false;
  for (const auto& l : run.lines) {
    unsigned long long seq = 0, version = 0;
    unsigned account = 0;
    long long amount = 0, ms = 0;
    int used = 0;
    if (std::sscanf(l.c_str(), "deposit %llu %u %llu %lld", &seq, &account, &version, &amount)
        == 4) {
      acked[seq] = {account, version, amount};
    } else if (std::sscanf(l.c_str(), "refused %llu %lld %n", &seq, &ms, &used) == 2) {
      auto why = l.substr(static_cast<std::size_t>(used));
      refused[seq] = why;
      if (why.rfind("unavailable", 0) != 0)
        p.add("deposit " + std::to_string(seq) + " answered " + why + ", not unavailable");
      if (ms > answer_bound_ms)
        p.add("deposit " + std::to_string(seq) + " was answered after " + std::to_string(ms)
              + " ms");
    } else if (std::sscanf(l.c_str(), "shutdown %lld", &ms) == 1) {
      shut_down = true;
      if (ms > answer_bound_ms)
        p.add("shutdown took " + std::to_string(ms) + " ms");
    }
  }
  if (!shut_down && !killed)
    p.add("the runtime did not shut down");
  sum.fired += run.fired() ? 1 : 0;
  sum.refused += static_cast<int>(refused.size());
  if (p.empty()) {
    cairn::runtime_options opts;
    opts.data_dir = dir;
    opts.worker_threads = 2;
    auto started = cairn::runtime::start(opts);
    if (!started)
      p.add("start after the fault: " + started.error().to_string());
    else if (auto ok = (*started)->register_aggregate<bank::account>(); !ok)
      p.add("register: " + ok.error().to_string());
    else {
      auto& rt = **started;
      std::set<std::uint64_t> stored;
      for (std::uint32_t a = 0; a < wl::accounts; ++a) {
        auto stream = "account-" + wl::account_id(a);
        auto events = rt.store().read_stream(stream, 1, no_limit);
        if (!events) {
          p.add(stream + ": " + events.error().to_string());
          continue;
        }
        std::int64_t balance = 0;
        for (const auto& ev : *events) {
          auto at = stream + " v" + std::to_string(ev.version);
          auto decoded = rt.registry().decode<bank::account::event>(ev);
          if (!decoded) {
            p.add(at + ": " + decoded.error().to_string());
            continue;
          }
          auto* d = std::get_if<bank::money_deposited>(&*decoded);
          if (d == nullptr)
            continue;
          balance += d->amount;
          unsigned long long seq = 0;
          if (std::sscanf(ev.meta.command_id.c_str(), "d%llu", &seq) != 1
              || wl::command_id(seq) != ev.meta.command_id) {
            p.add(at + ": a command id nobody sent: '" + ev.meta.command_id + "'");
            continue;
          }
          if (!stored.insert(seq).second)
            p.add(at + ": deposit " + std::to_string(seq) + " is stored twice");
          if (d->amount != wl::amount_of(seq) || wl::account_of(seq) != a)
            p.add(at + ": deposit " + std::to_string(seq) + " has the wrong amount or account");
          if (auto k = acked.find(seq); k != acked.end()) {
            if (k->second.version != ev.version)
              p.add(at + ": deposit " + std::to_string(seq) + " was acknowledged as v"
                    + std::to_string(k->second.version));
          } else if (refused.count(seq) != 0) {
            ++sum.stored_refused; // committed, then its flush failed: outcome unknown
          } else if (!killed) {   // killed: it may have been in flight
            p.add(at + ": deposit " + std::to_string(seq) + " was never answered");
          }
        }
        auto state = rt.state<bank::account>(wl::account_id(a));
        if (!state)
          p.add("state of " + wl::account_id(a) + ": " + state.error().to_string());
        else if (state->balance != balance)
          p.add(wl::account_id(a) + ": balance " + std::to_string(state->balance)
                + ", its deposits sum to " + std::to_string(balance));
      }
      for (const auto& [seq, ack] : acked)
        if (stored.count(seq) == 0)
          p.add("deposit " + std::to_string(seq) + " was acknowledged ("
                + wl::account_id(ack.account) + " v" + std::to_string(ack.version)
                + ") but is not in the store");
      rt.shutdown();
    }
  }
  INFO("fault: " << f.describe() << "\nshim: " << run.fault_log << "child output:\n"
                 << run.output.substr(0, 3000));
  INFO(p.text());
  REQUIRE(p.empty());
}

} // namespace

TEST_CASE(
  "a runtime whose disk fails answers unavailable promptly and loses no acknowledged deposit",
  "[crash][runtime][disk]") {
  auto f = GENERATE(fault{"pwrite,writev,fdatasync", 1, 0, "ENOSPC"},
                    fault{"pwrite,writev,fdatasync", 6, 0, "ENOSPC"},
                    fault{"pwrite,writev,fdatasync", 13, 0, "ENOSPC"},
                    fault{"fdatasync", 2, 1, "EIO"}, fault{"fdatasync", 5, 1, "EIO"},
                    fault{"pwrite", 3, 1, "EIO", "meta"}, fault{"pwrite", 2, 1, "EIO", "data"},
                    fault{"writev", 2, 1, "ENOSPC"});
  fast_dir fast;
  const auto& base = fast.path();
  runtime_summary sum;
  run_runtime_case(base, f, sum);
  INFO("fault " << f.describe() << ": " << sum.refused << " deposits refused, "
                << sum.stored_refused << " of them stored");
  CHECK(sum.fired == 1);
  CHECK(sum.refused > 0);
}

TEST_CASE("a runtime that loses power after a failed flush keeps every acknowledged deposit",
          "[crash][runtime][disk]") {
  auto f = GENERATE(fault{"fdatasync", 3, 1, "EIO"}, fault{"fdatasync", 6, 1, "EIO"},
                    fault{"fdatasync", 9, 1, "EIO"}, fault{"pwrite,writev", 8, 1, "EIO"});
  f.power_loss = true;
  f.die_after = GENERATE(-1, 0, 1);
  fast_dir fast;
  const auto& base = fast.path();
  runtime_summary sum;
  run_runtime_case(base, f, sum);
  CHECK(sum.fired == 1);
}

TEST_CASE("a runtime on a full tmpfs answers unavailable and keeps every acknowledged deposit",
          "[crash][runtime][disk]") {
  cairn::test::temp_dir tmp;
  auto mnt = tmp.sub("tmpfs");
  std::filesystem::create_directories(mnt);
  // Room for the lock file and a few hundred deposits.
  if (::mount("tmpfs", mnt.c_str(), "tmpfs", 0, "size=200k") != 0) {
    WARN("skipped: mount -t tmpfs failed (" << std::strerror(errno) << ")");
    return;
  }
  struct unmount {
    std::string path;
    ~unmount() { (void)::umount2(path.c_str(), MNT_DETACH); }
  } guard{mnt};
  runtime_summary sum;
  fault none{"", 1, 1};
  run_runtime_case(mnt, none, sum, 3000, [&] {
    if (::mount("tmpfs", mnt.c_str(), "tmpfs", MS_REMOUNT, "size=16m") != 0)
      FAIL("remount with more space: " << std::strerror(errno));
  });
  INFO(sum.refused << " deposits refused");
  CHECK(sum.refused > 0);
}

TEST_CASE("a runtime whose disk fills at any of its first writes loses no acknowledged deposit",
          "[.slow][runtime][disk]") {
  fast_dir fast;
  const auto& base = fast.path();
  runtime_summary sum;
  for (unsigned long n = 1; n <= 40; ++n)
    run_runtime_case(base, fault{"pwrite,writev,fdatasync", n, 0, "ENOSPC"}, sum);
  CHECK(sum.fired > 0);
}
