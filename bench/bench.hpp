#pragma once

// Shared plumbing of the cairn-bench subcommands.

#include <algorithm>
#include <chrono>
#include <memory>
#include <cstdio>
#include <string>
#include <vector>

#include "cairn/persistence/options.hpp"

namespace cairn {
class runtime;
struct runtime_options;
} // namespace cairn

namespace cairn::bench {

using clock = std::chrono::steady_clock;

inline double seconds_since(clock::time_point t0) {
  return std::chrono::duration<double>(clock::now() - t0).count();
}

/// The q-quantile (0..1) of `v`; sorts it.
inline double quantile(std::vector<double>& v, double q) {
  if (v.empty())
    return 0;
  std::sort(v.begin(), v.end());
  auto i = static_cast<std::size_t>(q * static_cast<double>(v.size() - 1) + 0.5);
  return v[std::min(i, v.size() - 1)];
}

/// Command-line options shared by subcommands: --name value or --flag.
struct args {
  std::vector<std::string> items;

  [[nodiscard]] bool flag(const std::string& name) const {
    return std::find(items.begin(), items.end(), name) != items.end();
  }
  [[nodiscard]] std::string get(const std::string& name, const std::string& fallback) const {
    for (std::size_t i = 0; i + 1 < items.size(); ++i)
      if (items[i] == name)
        return items[i + 1];
    return fallback;
  }
  [[nodiscard]] double number(const std::string& name, double fallback) const {
    auto s = get(name, "");
    return s.empty() ? fallback : std::stod(s);
  }
};

/// A fresh scratch directory under --dir (default $TMPDIR or /tmp), removed at exit.
std::string scratch_dir(const args& a, const std::string& tag);
void remove_dir(const std::string& dir);

/// The allocator this process runs on: "jemalloc", "tcmalloc", "mimalloc"
/// (linked or preloaded), "glibc", or the file name of another library.
std::string allocator_name();
/// Prints one case's JSON object as a line, with the allocator added: figures
/// on different allocators differ by tens of percent.
void print_json(const std::string& object);

/// "sync", "no_meta_sync" or "no_sync"; throws on anything else.
persistence::durability parse_durability(const std::string& s);

/// A runtime on `opts` with the bank sample's account registered; throws on failure.
std::unique_ptr<runtime> start_bank_runtime(const runtime_options& opts);

/// Opens every account of `ids`, `window` at a time, through the callback
/// API; throws on a failure.
void open_accounts(runtime& rt, const std::vector<std::string>& ids, std::size_t window = 256);

/// Fills the store at `dir` with `n` deposits over the 1000 streams
/// `stream_prefix`0 to `stream_prefix`999, straight into the store (no
/// commands), and closes it; throws on a failure.
void prefill_deposits(const std::string& dir, std::uint64_t n, const std::string& stream_prefix);

int store_main(const args& a);
int e2e_main(const args& a);
int bank_main(const args& a);
int activation_main(const args& a);
int passivation_main(const args& a);
int handlers_main(const args& a);
int hangar_main(const args& a);
int cluster_main(const args& a);
int cluster_node_main(const args& a);
int replication_main(const args& a);

} // namespace cairn::bench
