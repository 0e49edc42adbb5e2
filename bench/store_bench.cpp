// cairn-bench store: append throughput of the event store against plain LMDB
// MDB_APPEND puts of the same values, in alternating slices of one run.
// cairn-bench store --chain: the same store against itself with the digest
// chain off (store_options::digest_chain), the chain's cost.
// cairn-bench store --read: stream replay and read_all scan speed.

#include <lmdb.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "bench.hpp"
#include "cairn/persistence/event_store.hpp"

namespace cairn::bench {

namespace {

using namespace cairn::persistence;

constexpr std::size_t payload_size = 200;
constexpr std::uint64_t stream_count = 10000;

struct write_figures {
  double events_per_s = 0;
  double p50_us = 0;
  double p99_us = 0;
};

const char* name_of(durability d) {
  return d == durability::sync ? "sync" : d == durability::no_sync ? "no_sync" : "no_meta_sync";
}

std::string random_payload(std::mt19937_64& rng) {
  std::string p(payload_size, '\0');
  for (auto& c : p)
    c = static_cast<char>(rng());
  return p;
}

void check(int rc, const char* what) {
  if (rc != 0)
    throw std::runtime_error(std::string{what} + ": " + mdb_strerror(rc));
}

/// Commit latencies and event counts gathered over the slices of one case.
struct tally {
  std::vector<double> commits;
  std::uint64_t events = 0;
  double seconds = 0;

  /// Calls `commit()` (which returns the events it committed) for `for_seconds`,
  /// timing each call.
  template <class F> void run(double for_seconds, F&& commit) {
    auto t0 = clock::now();
    while (seconds_since(t0) < for_seconds) {
      auto c0 = clock::now();
      events += commit();
      commits.push_back(std::chrono::duration<double, std::micro>(clock::now() - c0).count());
    }
    seconds += seconds_since(t0);
  }

  [[nodiscard]] write_figures figures() {
    write_figures f;
    f.events_per_s = seconds > 0 ? static_cast<double>(events) / seconds : 0;
    f.p50_us = quantile(commits, 0.50);
    f.p99_us = quantile(commits, 0.99);
    return f;
  }
};

/// Plain LMDB: `batch` puts of 200-byte values under big-endian u64 keys with
/// MDB_APPEND per transaction; the ceiling any log layout can reach.
class raw_lmdb {
public:
  raw_lmdb(const args& a, durability d, std::size_t batch)
      : dir_(scratch_dir(a, "raw")), batch_(batch) {
    check(mdb_env_create(&env_), "env");
    check(mdb_env_set_mapsize(env_, std::size_t{16} << 30), "mapsize");
    check(mdb_env_set_maxdbs(env_, 2), "maxdbs");
    unsigned flags = MDB_NOTLS | (d == durability::no_sync ? MDB_NOSYNC : 0)
                     | (d == durability::no_meta_sync ? MDB_NOMETASYNC : 0);
    check(mdb_env_open(env_, dir_.c_str(), flags, 0644), "open");
    MDB_txn* txn = nullptr;
    check(mdb_txn_begin(env_, nullptr, 0, &txn), "begin");
    check(mdb_dbi_open(txn, "log", MDB_CREATE, &dbi_), "dbi");
    check(mdb_txn_commit(txn), "commit");
    std::mt19937_64 rng{42};
    value_ = random_payload(rng);
  }
  ~raw_lmdb() {
    mdb_env_close(env_);
    remove_dir(dir_);
  }
  raw_lmdb(const raw_lmdb&) = delete;
  raw_lmdb& operator=(const raw_lmdb&) = delete;

  void run(double seconds, tally& t) {
    t.run(seconds, [&] {
      MDB_txn* txn = nullptr;
      check(mdb_txn_begin(env_, nullptr, 0, &txn), "begin");
      for (std::size_t i = 0; i < batch_; ++i) {
        unsigned char kb[8];
        auto p = ++pos_;
        for (int b = 7; b >= 0; --b, p >>= 8)
          kb[b] = static_cast<unsigned char>(p);
        std::memcpy(value_.data(), &pos_, sizeof pos_);
        MDB_val k{8, kb}, v{value_.size(), value_.data()};
        check(mdb_put(txn, dbi_, &k, &v, MDB_APPEND), "put");
      }
      check(mdb_txn_commit(txn), "commit");
      return batch_;
    });
  }

private:
  std::string dir_;
  std::size_t batch_;
  MDB_env* env_ = nullptr;
  MDB_dbi dbi_ = 0;
  std::string value_;
  std::uint64_t pos_ = 0;
};

/// The event store: batches of single-event appends to random streams, the
/// shape group commit produces from many aggregates.
class cairn_store {
public:
  cairn_store(const args& a, durability d, std::size_t batch, bool chain = true)
      : dir_(scratch_dir(a, chain ? "store" : "store-nochain")) {
    store_options opts;
    opts.durability = d;
    opts.digest_chain = chain;
    auto store = open_store(dir_, opts);
    if (!store)
      throw std::runtime_error(store.error().to_string());
    store_ = std::move(*store);
    std::mt19937_64 rng{42};
    // Batches are built before the clock starts: this measures the store, not
    // the benchmark's allocations.
    std::size_t pool = std::max<std::size_t>(2, std::min<std::size_t>(64, 200000 / batch));
    // --tenant: every append names one, so the store checks it (docs/audit.md#tenants).
    auto tenant = a.get("--tenant", "");
    batches_.resize(pool);
    for (auto& b : batches_) {
      b.appends.resize(batch);
      for (auto& req : b.appends) {
        req.meta.tenant = tenant;
        req.stream = "bench-" + std::to_string(rng() % stream_count);
        req.events.push_back(event_data{"bench_event", 1, random_payload(rng), {}, {}});
      }
    }
  }
  ~cairn_store() {
    store_.reset();
    remove_dir(dir_);
  }
  cairn_store(const cairn_store&) = delete;
  cairn_store& operator=(const cairn_store&) = delete;

  void run(double seconds, tally& t) {
    t.run(seconds, [&] {
      const auto& b = batches_[next_++ % batches_.size()];
      if (auto res = store_->append_batch(b); !res)
        throw std::runtime_error(res.error().to_string());
      return b.appends.size();
    });
  }

private:
  std::string dir_;
  std::unique_ptr<event_store> store_;
  std::vector<write_batch> batches_;
  std::size_t next_ = 0;
};

/// Runs `raw` (the baseline) and the store in alternating slices, so both see the same
/// stretches of a shared machine's noise and the ratio compares like with like.
template <class Baseline>
std::pair<write_figures, write_figures>
measure_against(const args& a, durability d, std::size_t batch, double seconds, Baseline&& raw) {
  constexpr int slices = 6;
  cairn_store ours{a, d, batch};
  tally raw_tally, our_tally;
  for (int i = 0; i < slices; ++i) {
    raw.run(seconds / slices, raw_tally);
    ours.run(seconds / slices, our_tally);
  }
  return {raw_tally.figures(), our_tally.figures()};
}

/// With --chain, the baseline is the store with its digest chain off.
std::pair<write_figures, write_figures> measure(const args& a, durability d, std::size_t batch,
                                                double seconds) {
  if (a.flag("--chain"))
    return measure_against(a, d, batch, seconds, cairn_store{a, d, batch, false});
  return measure_against(a, d, batch, seconds, raw_lmdb{a, d, batch});
}

int write_cases(const args& a) {
  double seconds = a.number("--seconds", 1.5);
  bool chain = a.flag("--chain");
  std::printf("%-8s %6s %7s %13s %10s %10s %13s %6s\n", "durab.", "batch", "streams", "events/s",
              "p50 us", "p99 us", chain ? "no-chain ev/s" : "raw events/s", "ratio");
  std::vector<std::string> json;
  auto only_durability = a.get("--durability", "");
  auto only_batch = static_cast<std::size_t>(a.number("--batch", 0));
  for (auto d : {durability::sync, durability::no_sync}) {
    for (std::size_t batch : {1, 10, 100, 1000, 10000}) {
      if ((!only_durability.empty() && only_durability != name_of(d))
          || (only_batch != 0 && only_batch != batch))
        continue;
      auto [raw, ours] = measure(a, d, batch, seconds);
      double ratio = ours.events_per_s / raw.events_per_s;
      std::printf("%-8s %6zu %7llu %13.0f %10.1f %10.1f %13.0f %6.2f\n", name_of(d), batch,
                  static_cast<unsigned long long>(stream_count), ours.events_per_s, ours.p50_us,
                  ours.p99_us, raw.events_per_s, ratio);
      char line[512];
      std::snprintf(line, sizeof line,
                    "{\"bench\":\"store\",\"durability\":\"%s\",\"batch\":%zu,\"streams\":%llu,"
                    "\"events_per_s\":%.0f,\"commit_p50_us\":%.1f,\"commit_p99_us\":%.1f,"
                    "\"%s_events_per_s\":%.0f,\"ratio\":%.3f}",
                    name_of(d), batch, static_cast<unsigned long long>(stream_count),
                    ours.events_per_s, ours.p50_us, ours.p99_us, chain ? "no_chain" : "raw",
                    raw.events_per_s, ratio);
      json.emplace_back(line);
      std::fflush(stdout);
    }
  }
  for (const auto& line : json)
    print_json(line);
  return 0;
}

/// Fills a store: `total` events, round-robin over `streams` streams.
std::unique_ptr<event_store> fill(const std::string& dir, std::uint64_t total,
                                  std::uint64_t streams) {
  store_options opts;
  opts.durability = durability::no_sync;
  auto store = open_store(dir, opts);
  if (!store)
    throw std::runtime_error(store.error().to_string());
  std::mt19937_64 rng{7};
  auto payload = random_payload(rng);
  write_batch b;
  for (std::uint64_t i = 0; i < total;) {
    b.appends.clear();
    for (; b.appends.size() < 10000 && i < total; ++i) {
      append_request req;
      req.stream = "replay-" + std::to_string(i % streams);
      req.events.push_back(event_data{"bench_event", 1, payload, {}, {}});
      b.appends.push_back(std::move(req));
    }
    auto res = (*store)->append_batch(b);
    if (!res)
      throw std::runtime_error(res.error().to_string());
  }
  return std::move(*store);
}

/// Events per second of reading `stream` front to back in pages of 1000,
/// either copied into recorded_events or visited in place (replay's path).
double replay_rate(const event_store& store, const std::string& stream, std::uint64_t events,
                   bool in_place) {
  std::vector<double> rates;
  for (int pass = 0; pass < 3; ++pass) {
    auto t0 = clock::now();
    std::uint64_t n = 0;
    std::uint64_t checksum = 0; // keeps the visitor from being optimised away
    for (std::uint64_t from = 1;; from += 1000) {
      std::uint64_t got = 0;
      if (in_place) {
        auto page = store.visit_stream(stream, from, 1000, [&](const event_view& ev) {
          checksum += ev.version + ev.payload.size();
          return true;
        });
        if (!page)
          throw std::runtime_error(page.error().to_string());
        got = *page;
      } else {
        auto page = store.read_stream(stream, from, 1000);
        if (!page)
          throw std::runtime_error(page.error().to_string());
        got = page->size();
      }
      n += got;
      if (got < 1000)
        break;
    }
    if (in_place && checksum == 0)
      throw std::runtime_error("visited nothing");
    if (n != events)
      throw std::runtime_error("replay read " + std::to_string(n) + " events, expected "
                               + std::to_string(events));
    rates.push_back(static_cast<double>(n) / seconds_since(t0));
  }
  return quantile(rates, 0.5);
}

double scan_rate(const event_store& store, std::uint64_t events) {
  std::vector<double> rates;
  for (int pass = 0; pass < 3; ++pass) {
    auto t0 = clock::now();
    std::uint64_t n = 0;
    for (std::uint64_t from = 1; n < events;) {
      auto page = store.read_all(from, 1000);
      if (!page)
        throw std::runtime_error(page.error().to_string());
      if (page->events.empty())
        break;
      n += page->events.size();
      from = page->next_position;
    }
    rates.push_back(static_cast<double>(n) / seconds_since(t0));
  }
  return quantile(rates, 0.5);
}

int read_cases(const args& a) {
  auto total = static_cast<std::uint64_t>(a.number("--events", 1000000));
  std::printf("%-34s %10s %14s\n", "case", "events", "events/s");
  std::vector<std::string> json;
  auto report = [&](const std::string& name, std::uint64_t events, double rate) {
    std::printf("%-34s %10llu %14.0f\n", name.c_str(), static_cast<unsigned long long>(events),
                rate);
    char line[256];
    std::snprintf(line, sizeof line,
                  "{\"bench\":\"store\",\"case\":\"%s\",\"events\":%llu,\"events_per_s\":%.0f}",
                  name.c_str(), static_cast<unsigned long long>(events), rate);
    json.emplace_back(line);
    std::fflush(stdout);
  };
  {
    // One warm stream written alone: replay of an aggregate's whole history.
    auto dir = scratch_dir(a, "replay");
    auto store = fill(dir, total, 1);
    report("replay_one_stream", total, replay_rate(*store, "replay-0", total, true));
    report("replay_one_stream_copied", total, replay_rate(*store, "replay-0", total, false));
    report("read_all_scan", total, scan_rate(*store, total));
    store.reset();
    remove_dir(dir);
  }
  {
    // A stream interleaved with 99 others: its events sit on different pages.
    auto dir = scratch_dir(a, "replay100");
    auto store = fill(dir, total, 100);
    report("replay_interleaved_1_of_100", total / 100,
           replay_rate(*store, "replay-0", total / 100, true));
    store.reset();
    remove_dir(dir);
  }
  for (const auto& line : json)
    print_json(line);
  return 0;
}

} // namespace

int store_main(const args& a) { return a.flag("--read") ? read_cases(a) : write_cases(a); }

} // namespace cairn::bench
