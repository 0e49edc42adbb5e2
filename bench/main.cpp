// cairn-bench SUBCOMMAND [options]
//
//   store [--seconds S] [--dir D] [--durability sync|no_sync] [--batch N] [--chain] [--tenant T]
//         event store append speed against plain LMDB, one case per durability and batch;
//         --chain: against the same store with its digest chain off instead;
//         --tenant: every append names tenant T
//   store --read [--events N] [--dir D]
//         stream replay and read_all scan speed
//   e2e [--aggregates N --commands M --inflight C] [--durability D] [--via V] [--dir D]
//       [--record off|on|both]
//         commands through the runtime's CAF-native form; without a shape: uniform 1000
//         aggregates at 1024 and 64 in flight, and one hot aggregate at 1024; --via router
//         (default) or registry (every command through the registry's handle)
//   bank [--durability D] [--dir D]
//         1000 accounts, 20 000 deposits at 1, 16 and 64 in flight
//   activation [--aggregates N] [--samples S] [--replay-events E] [--dir D]
//         cold activation p50/p99 with and without snapshots, through rt.state and through
//         the CAF-native form (S ids each, all different); replay of one long aggregate
//   passivation [--aggregates N] [--max-live L] [--inflight C] [--dir D]
//         N aggregates touched once under a live cap: commands/s and peak RSS
//   handlers [--case live|catchup] [--rate R --seconds S --subscribers N --per-command K]
//            [--events E]
//            [--durability D] [--dir D]
//         subscriber lag at a sustained commit rate; catch-up speed over a prefilled log
//   hangar [--invocations N --inflight C --providers P] [--durability D] [--dir D]
//         tool invocations end to end through the hangar sample's group and providers
//   cluster [--seconds S] [--nodes 2,3] [--in-flight 1,64,1024] [--middleman-workers N]
//           [--route both|local|forwarded] [--accounts N] [--threads T] [--durability D]
//           [--dir D]
//         deposits through a cluster on loopback: this process is node A, the others are
//         child processes (the hidden subcommand cluster-node, which serves until its
//         standard input closes); per in-flight level, to accounts A owns (local) and to
//         accounts other nodes own (forwarded), then the ratio and the hop's added latency
//   replication [--case catchup|lag|sync|all] [--events N] [--rate R] [--seconds S]
//               [--in-flight C] [--accounts N] [--poll-us U] [--threads T] [--durability D]
//               [--dir D]
//         an owner (this process) and its standby (a child process): catch-up of a standby
//         from empty over a store filled with N events; replication lag p50/p99 at a fixed
//         rate; commands/s at C in flight under sync replication against no standby
//
// Each case prints a table row and one JSON line beginning {"bench":"<name>".

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <string_view>
#include <dlfcn.h>
#include <unistd.h>

#include "bench.hpp"

namespace cairn::bench {

std::string scratch_dir(const args& a, const std::string& tag) {
  const char* tmp = std::getenv("TMPDIR");
  std::string base = a.get("--dir", tmp != nullptr && *tmp != '\0' ? tmp : "/tmp");
  auto dir = base + "/cairn-bench-" + tag + "-" + std::to_string(::getpid());
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

persistence::durability parse_durability(const std::string& s) {
  if (s == "sync")
    return persistence::durability::sync;
  if (s == "no_sync")
    return persistence::durability::no_sync;
  if (s == "no_meta_sync")
    return persistence::durability::no_meta_sync;
  throw std::runtime_error("unknown durability '" + s + "'");
}

std::string allocator_name() {
  // The library that defines the malloc this process calls: a linked or a
  // preloaded allocator, whichever comes first in symbol lookup.
  Dl_info info{};
  auto* fn = ::dlsym(RTLD_DEFAULT, "malloc");
  if (fn == nullptr || ::dladdr(fn, &info) == 0 || info.dli_fname == nullptr)
    return "unknown";
  std::string_view lib = info.dli_fname;
  for (const char* name : {"jemalloc", "tcmalloc", "mimalloc"})
    if (lib.find(name) != std::string_view::npos)
      return name;
  if (lib.find("libc.so") != std::string_view::npos)
    return "glibc";
  return std::string(lib.substr(lib.rfind('/') + 1));
}

void print_json(const std::string& object) {
  auto body = std::string_view(object);
  if (!body.empty() && body.back() == '}')
    body.remove_suffix(1);
  static const std::string allocator = allocator_name();
  std::printf("%.*s,\"malloc\":\"%s\"}\n", static_cast<int>(body.size()), body.data(),
              allocator.c_str());
}

void remove_dir(const std::string& dir) {
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
}

} // namespace cairn::bench

int main(int argc, char** argv) {
  auto usage = [] {
    std::fprintf(stderr, "usage: cairn-bench store|e2e|bank|activation|passivation|handlers|hangar|"
                         "cluster "
                         "[options] (see bench/main.cpp)\n");
    return 2;
  };
  if (argc < 2)
    return usage();
  cairn::bench::args a;
  for (int i = 2; i < argc; ++i)
    a.items.emplace_back(argv[i]);
  std::string cmd = argv[1];
  try {
    if (cmd == "store")
      return cairn::bench::store_main(a);
    if (cmd == "e2e")
      return cairn::bench::e2e_main(a);
    if (cmd == "bank")
      return cairn::bench::bank_main(a);
    if (cmd == "activation")
      return cairn::bench::activation_main(a);
    if (cmd == "passivation")
      return cairn::bench::passivation_main(a);
    if (cmd == "handlers")
      return cairn::bench::handlers_main(a);
    if (cmd == "hangar")
      return cairn::bench::hangar_main(a);
    if (cmd == "cluster")
      return cairn::bench::cluster_main(a);
    if (cmd == "replication")
      return cairn::bench::replication_main(a);
    if (cmd == "cluster-node")
      return cairn::bench::cluster_node_main(a);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "cairn-bench %s: %s\n", cmd.c_str(), e.what());
    return 1;
  }
  return usage();
}
