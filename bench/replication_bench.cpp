// cairn-bench replication: an owner and its standby on loopback
// (docs/cluster.md#standby). This process is the owner A, as in `cairn-bench
// cluster`; the standby S is a child process of this binary (`cluster-node
// --standby A=S`). Three cases:
//
//   catchup  A's store is filled with --events deposits straight through the
//            store API before A starts; S starts from an empty directory.
//            The time from S's "ready" until its replica's last position
//            equals A's: events/s and MiB/s of record bytes.
//   lag      on the same pair (async), deposits at a fixed offered --rate:
//            for every position, the time from A's durable commit (A's
//            journal tells a probe actor of this process) to the moment it
//            is visible in S's store (this process polls a read-only view of
//            it every --poll-us). Both instants are taken by this process
//            on one clock; the poll interval is the resolution.
//   sync     commands/s at --in-flight in flight with `sync` replication to
//            S, and the same on A alone (a one-node cluster, no standby), in
//            the same run, and their ratio.
//
// Each case prints a table row and one JSON line beginning
// {"bench":"replication".

#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <caf/all.hpp>

#include "cairn/persistence/codec.hpp"
#include "cairn/persistence/event_store.hpp"
#include "cairn/runtime/runtime_caf.hpp"
#include "cluster_support.hpp"

namespace cairn::bench {

namespace {

using bank::account;
using namespace std::chrono_literals;

constexpr double mib = 1024.0 * 1024.0;

/// The options of a bench node: the pair A=S under `mode`, or A alone
/// (`mode` empty).
args node_args(const args& a, const std::string& mode) {
  args out;
  out.items = {"--durability",        a.get("--durability", "sync"),
               "--threads",           a.get("--threads", "0"),
               "--middleman-workers", a.get("--middleman-workers", "0")};
  if (!mode.empty())
    out.items.insert(out.items.end(), {"--standby", "A=S", "--replication", mode});
  return out;
}

/// Starts S, the standby of the pair `nodes`, as a child process.
std::unique_ptr<hangar::child_process>
start_standby(const args& pair, const std::vector<cluster_node>& nodes, const std::string& dir) {
  std::vector<std::string> cargs{"cluster-node",    "--node", "S", "--nodes",
                                 nodes_text(nodes), "--data", dir};
  cargs.insert(cargs.end(), pair.items.begin(), pair.items.end());
  auto c = start_node_process(cargs);
  std::fprintf(stderr, "standby S: pid %d\n", static_cast<int>(c->pid()));
  return c;
}

/// A read-only view of a store another process writes (LMDB allows that).
std::unique_ptr<persistence::event_store> open_view(const std::string& dir) {
  persistence::store_options o;
  o.read_only = true;
  auto s = persistence::open_store(dir, o);
  if (!s)
    throw std::runtime_error("opening " + dir + " read-only: " + s.error().to_string());
  return std::move(*s);
}

std::uint64_t last_of(const persistence::event_store& s) {
  auto last = s.last_position();
  if (!last)
    throw std::runtime_error("last position: " + last.error().to_string());
  return *last;
}

/// The owner's side of its pair; role empty when it has none yet.
replication_status owner_status(runtime& rt) {
  auto s = rt.cluster();
  if (!s || s->replication.empty())
    return {};
  return s->replication.front();
}

/// Waits until `view` holds the log up to `position`; throws after `limit`.
void wait_replica(const persistence::event_store& view, std::uint64_t position,
                  std::chrono::seconds limit) {
  auto deadline = clock::now() + limit;
  while (last_of(view) < position) {
    if (clock::now() > deadline)
      throw std::runtime_error("the standby did not reach position " + std::to_string(position)
                               + " within " + std::to_string(limit.count()) + " s (it holds "
                               + std::to_string(last_of(view)) + ")");
    std::this_thread::sleep_for(1ms);
  }
}

std::vector<std::string> ids_with_prefix(const std::string& prefix, std::size_t n) {
  std::vector<std::string> out;
  for (std::size_t i = 0; i < n; ++i)
    out.push_back(prefix + std::to_string(i));
  return out;
}

// -- catchup --------------------------------------------------------------------

std::string catchup_case(const args& a, runtime& rt, std::uint64_t filled,
                         const std::vector<cluster_node>& nodes, const std::string& dir,
                         std::unique_ptr<hangar::child_process>& standby,
                         std::unique_ptr<persistence::event_store>& view) {
  auto target = last_of(rt.store()); // the filled events and A's epoch record
  auto spawned = clock::now();
  standby = start_standby(node_args(a, "async"), nodes, dir + "/S");
  auto ready = clock::now();
  view = open_view(dir + "/S");
  wait_replica(*view, target, std::chrono::seconds{600});
  auto done = clock::now();
  auto secs = std::chrono::duration<double>(done - ready).count();
  auto start_s = std::chrono::duration<double>(ready - spawned).count();
  auto bytes = owner_status(rt).bytes;
  auto rate = static_cast<double>(target) / secs;
  auto mib_s = static_cast<double>(bytes) / mib / secs;
  std::printf("%-8s %10llu %10.1f %8.2f %8.3f %12.0f %8.1f\n", "catchup",
              static_cast<unsigned long long>(target), static_cast<double>(bytes) / mib, start_s,
              secs, rate, mib_s);
  std::fflush(stdout);
  char line[512];
  std::snprintf(line, sizeof line,
                "{\"bench\":\"replication\",\"case\":\"catchup\",\"durability\":\"%s\","
                "\"filled_events\":%llu,\"positions\":%llu,\"bytes\":%llu,\"start_s\":%.3f,"
                "\"seconds\":%.3f,\"events_per_s\":%.0f,\"mib_per_s\":%.1f}",
                a.get("--durability", "sync").c_str(), static_cast<unsigned long long>(filled),
                static_cast<unsigned long long>(target), static_cast<unsigned long long>(bytes),
                start_s, secs, rate, mib_s);
  return line;
}

// -- lag ------------------------------------------------------------------------

/// (position, when) pairs, as they were seen.
struct sightings {
  std::mutex m;
  std::vector<std::pair<std::uint64_t, clock::time_point>> seen;
};

/// Subscribed to A's journal: notes each durable log end the journal tells,
/// and asks for the next at once. On its own thread, so that the owner's
/// busy scheduler does not delay the notes.
caf::behavior commit_probe(caf::event_based_actor* self, caf::actor journal,
                           std::shared_ptr<sightings> out) {
  self->send(journal, actors::subscribe_atom::value, caf::actor_cast<caf::actor>(self));
  return {
    [=](actors::committed_atom, std::uint64_t position) {
      auto now = clock::now();
      {
        std::lock_guard lock{out->m};
        out->seen.emplace_back(position, now);
      }
      self->send(journal, actors::demand_atom::value, caf::actor_cast<caf::actor>(self));
    },
  };
}

/// Sends deposits to `ids` at `rate` per second for `seconds`, at most
/// `cap` unanswered; the commands sent and the first error.
struct paced_result {
  std::uint64_t sent = 0, errors = 0;
  std::string first_error;
};

paced_result paced_load(runtime& rt, const std::vector<std::string>& ids, double rate,
                        double seconds, std::size_t cap) {
  std::mutex m;
  std::condition_variable cv;
  std::size_t outstanding = 0;
  paced_result out;
  auto t0 = clock::now();
  std::uint64_t i = 0;
  for (;;) {
    auto elapsed = seconds_since(t0);
    if (elapsed >= seconds)
      break;
    auto due = static_cast<std::uint64_t>(rate * elapsed);
    for (; out.sent < due; ++out.sent) {
      {
        std::lock_guard lock{m};
        if (outstanding >= cap)
          break;
        ++outstanding;
      }
      rt.send<account>(ids[i++ % ids.size()], bank::deposit{1}, {},
                       [&](result<outcome<account>> r) {
                         std::lock_guard lock{m};
                         if (!r && out.errors++ == 0)
                           out.first_error = r.error().to_string();
                         --outstanding;
                         cv.notify_all();
                       });
    }
    std::this_thread::sleep_for(200us);
  }
  std::unique_lock lock{m};
  cv.wait(lock, [&] { return outstanding == 0; });
  return out;
}

std::string lag_case(const args& a, runtime& rt, const persistence::event_store& view) {
  auto rate = a.number("--rate", 50000);
  auto seconds = a.number("--seconds", 3);
  auto warmup = 0.5;
  auto poll = std::chrono::microseconds{static_cast<long>(a.number("--poll-us", 100))};
  auto ids = ids_with_prefix("live-", static_cast<std::size_t>(a.number("--accounts", 1000)));
  open_accounts(rt, ids);
  wait_replica(view, last_of(rt.store()), std::chrono::seconds{60});

  auto commits = std::make_shared<sightings>();
  auto probe = rt.system().spawn<caf::detached>(commit_probe, rt.journal(), commits);
  sightings applied;
  std::atomic<bool> stop{false};
  std::thread poller{[&] {
    std::uint64_t prev = 0;
    while (!stop.load()) {
      auto last = view.last_position();
      if (last && *last > prev) {
        prev = *last;
        applied.seen.emplace_back(prev, clock::now());
      }
      std::this_thread::sleep_for(poll);
    }
  }};
  auto t0 = clock::now();
  auto measured_from =
    t0 + std::chrono::duration_cast<clock::duration>(std::chrono::duration<double>(warmup));
  auto load = paced_load(rt, ids, rate, warmup + seconds, 1 << 16);
  auto load_s = seconds_since(t0);
  auto end = last_of(rt.store());
  auto deadline = clock::now() + 60s;
  while (clock::now() < deadline) {
    {
      std::lock_guard lock{commits->m};
      if (!commits->seen.empty() && commits->seen.back().first >= end)
        break;
    }
    std::this_thread::sleep_for(1ms);
  }
  wait_replica(view, end, std::chrono::seconds{60});
  std::this_thread::sleep_for(10 * poll); // the poller's last sighting
  stop = true;
  poller.join();
  caf::anon_send_exit(probe, caf::exit_reason::user_shutdown);

  // Every position committed after the warm-up: when A's journal said it
  // was durable, and when S's store first held it.
  std::vector<double> lags;
  std::uint64_t measured = 0;
  {
    std::lock_guard lock{commits->m};
    const auto& c = commits->seen;
    const auto& s = applied.seen;
    std::size_t j = 0;
    for (std::size_t i = 1; i < c.size(); ++i) { // c[0]: the log end when the probe subscribed
      for (auto p = c[i - 1].first + 1; p <= c[i].first; ++p) {
        while (j < s.size() && s[j].first < p)
          ++j;
        if (j == s.size())
          throw std::runtime_error("position " + std::to_string(p) + " was never seen on S");
        if (c[i].second < measured_from)
          continue;
        ++measured;
        lags.push_back(
          std::chrono::duration<double, std::milli>(s[j].second - c[i].second).count());
      }
    }
  }
  auto achieved = static_cast<double>(load.sent) / load_s;
  auto p50 = quantile(lags, 0.50);
  auto p99 = quantile(lags, 0.99);
  auto worst = lags.empty() ? 0.0 : lags.back(); // quantile sorted them
  std::printf("%-8s %10.0f %10.0f %10llu %9.3f %9.3f %9.3f %7llu\n", "lag", rate, achieved,
              static_cast<unsigned long long>(measured), p50, p99, worst,
              static_cast<unsigned long long>(load.errors));
  if (!load.first_error.empty())
    std::printf("         first error: %s\n", load.first_error.c_str());
  std::fflush(stdout);
  char line[512];
  std::snprintf(line, sizeof line,
                "{\"bench\":\"replication\",\"case\":\"lag\",\"durability\":\"%s\","
                "\"replication\":\"async\",\"target_events_per_s\":%.0f,\"events_per_s\":%.0f,"
                "\"seconds\":%.1f,\"positions\":%llu,\"lag_p50_ms\":%.3f,\"lag_p99_ms\":%.3f,"
                "\"lag_max_ms\":%.3f,\"poll_us\":%lld,\"errors\":%llu}",
                a.get("--durability", "sync").c_str(), rate, achieved, seconds,
                static_cast<unsigned long long>(measured), p50, p99, worst,
                static_cast<long long>(poll.count()), static_cast<unsigned long long>(load.errors));
  return line;
}

/// catchup and/or lag on one pair: A (filled with --events when catchup
/// runs) in this process, S a child process from an empty directory.
void run_pair(const args& a, bool catchup, bool lag, std::vector<std::string>& json) {
  auto filled = catchup ? static_cast<std::uint64_t>(a.number("--events", 1000000)) : 0;
  auto dir = scratch_dir(a, "replication");
  if (filled > 0) {
    auto t0 = clock::now();
    prefill_deposits(dir + "/A", filled, "account-fill-");
    std::fprintf(stderr, "filled A's store with %llu events in %.1f s\n",
                 static_cast<unsigned long long>(filled), seconds_since(t0));
  }
  std::vector<cluster_node> nodes{{"A", "127.0.0.1", free_port()}, {"S", "127.0.0.1", free_port()}};
  std::unique_ptr<hangar::child_process> standby;
  std::unique_ptr<persistence::event_store> view;
  {
    auto rt = start_bank_runtime(node_options(node_args(a, "async"), dir + "/A", nodes, "A"));
    if (catchup) {
      std::printf("%-8s %10s %10s %8s %8s %12s %8s\n", "case", "positions", "MiB", "start s",
                  "seconds", "events/s", "MiB/s");
      json.push_back(catchup_case(a, *rt, filled, nodes, dir, standby, view));
    } else {
      standby = start_standby(node_args(a, "async"), nodes, dir + "/S");
      view = open_view(dir + "/S");
    }
    if (lag) {
      std::printf("%-8s %10s %10s %10s %9s %9s %9s %7s\n", "case", "target/s", "events/s",
                  "positions", "p50 ms", "p99 ms", "max ms", "errors");
      json.push_back(lag_case(a, *rt, *view));
    }
    view.reset();
    rt->shutdown();
  }
  standby->stop(std::chrono::seconds{15});
  remove_dir(dir);
}

// -- sync -----------------------------------------------------------------------

std::string sync_json(const args& a, const char* standby, std::size_t window, double seconds,
                      const figures& f) {
  char line[256];
  std::snprintf(line, sizeof line,
                "{\"bench\":\"replication\",\"case\":\"sync\",\"standby\":\"%s\","
                "\"durability\":\"%s\",\"inflight\":%zu,\"seconds\":%.1f,",
                standby, a.get("--durability", "sync").c_str(), window, seconds);
  return line + figures_json(f) + "}";
}

void sync_row(const char* standby, std::size_t window, const figures& f) {
  std::printf("%-8s %-8s %8zu %9zu %12.0f %9.0f %9.0f %9.0f %7.1f %6llu\n", "sync", standby, window,
              f.commands, f.commands_per_s, f.p50_us, f.p95_us, f.p99_us, f.cpu_us_per_command,
              static_cast<unsigned long long>(f.errors));
  if (!f.first_error.empty())
    std::printf("         first error: %s\n", f.first_error.c_str());
  std::fflush(stdout);
}

/// Deposits at `window` in flight on A alone, then on A with S under `sync`.
void run_sync(const args& a, std::vector<std::string>& json) {
  auto window = static_cast<std::size_t>(a.number("--in-flight", 1024));
  auto seconds = a.number("--seconds", 3);
  auto ids = ids_with_prefix("s-", static_cast<std::size_t>(a.number("--accounts", 1000)));
  bank::deposit cmd{1};
  std::printf("%-8s %-8s %8s %9s %12s %9s %9s %9s %7s %6s\n", "case", "standby", "inflight",
              "commands", "commands/s", "p50 us", "p95 us", "p99 us", "cpu us", "errors");
  auto dir = scratch_dir(a, "replication-sync");
  figures alone, synced;
  {
    std::vector<cluster_node> nodes{{"A", "127.0.0.1", free_port()}};
    auto rt = start_bank_runtime(node_options(node_args(a, ""), dir + "/alone", nodes, "A"));
    open_accounts(*rt, ids);
    drive(*rt, ids, 64, 0.5, cmd, 1); // untimed warm-up
    alone = drive(*rt, ids, window, seconds, cmd, 2, {::getpid()});
    rt->shutdown();
  }
  sync_row("none", window, alone);
  json.push_back(sync_json(a, "none", window, seconds, alone));
  {
    std::vector<cluster_node> nodes{{"A", "127.0.0.1", free_port()},
                                    {"S", "127.0.0.1", free_port()}};
    auto pair = node_args(a, "sync");
    auto standby = start_standby(pair, nodes, dir + "/S");
    {
      auto rt = start_bank_runtime(node_options(pair, dir + "/A", nodes, "A"));
      auto deadline = clock::now() + 30s;
      while (!owner_status(*rt).connected) {
        if (clock::now() > deadline)
          throw std::runtime_error("the standby did not subscribe within 30 s");
        std::this_thread::sleep_for(10ms);
      }
      open_accounts(*rt, ids);
      drive(*rt, ids, 64, 0.5, cmd, 1);
      synced = drive(*rt, ids, window, seconds, cmd, 2, {::getpid(), standby->pid()});
      rt->shutdown();
    }
    standby->stop(std::chrono::seconds{15});
  }
  sync_row("sync", window, synced);
  json.push_back(sync_json(a, "sync", window, seconds, synced));
  remove_dir(dir);
  auto ratio = alone.commands_per_s > 0 ? synced.commands_per_s / alone.commands_per_s : 0;
  std::printf("sync standby / no standby at %zu in flight: throughput %.2f, p50 %+.0f us, "
              "p99 %+.0f us\n",
              window, ratio, synced.p50_us - alone.p50_us, synced.p99_us - alone.p99_us);
  char line[256];
  std::snprintf(line, sizeof line,
                "{\"bench\":\"replication\",\"case\":\"sync_ratio\",\"inflight\":%zu,"
                "\"throughput_ratio\":%.2f,\"added_p50_us\":%.0f,\"added_p99_us\":%.0f}",
                window, ratio, synced.p50_us - alone.p50_us, synced.p99_us - alone.p99_us);
  json.push_back(line);
}

} // namespace

int replication_main(const args& a) {
  auto which = a.get("--case", "all");
  if (which != "all" && which != "catchup" && which != "lag" && which != "sync")
    throw std::invalid_argument("--case takes catchup, lag, sync or all");
  std::vector<std::string> json;
  bool catchup = which == "all" || which == "catchup";
  bool lag = which == "all" || which == "lag";
  if (catchup || lag)
    run_pair(a, catchup, lag, json);
  if (which == "all" || which == "sync")
    run_sync(a, json);
  for (const auto& line : json)
    print_json(line);
  return 0;
}

} // namespace cairn::bench
