// cairn-bench SUBCOMMAND [options]
//
//   store [--seconds S] [--dir D] [--durability sync|no_sync] [--batch N]
//         event store append speed against plain LMDB, one case per durability and batch
//   store --read [--events N] [--dir D]
//         stream replay and read_all scan speed
//
// Each case prints a table row and one JSON line beginning {"bench":"<name>".

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
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

void remove_dir(const std::string& dir) {
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
}

} // namespace cairn::bench

int main(int argc, char** argv) {
  auto usage = [] {
    std::fprintf(stderr, "usage: cairn-bench store [--read] [--seconds S] [--dir D] [--durability D] "
                         "[--batch N] [--events N]\n");
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
  } catch (const std::exception& e) {
    std::fprintf(stderr, "cairn-bench %s: %s\n", cmd.c_str(), e.what());
    return 1;
  }
  return usage();
}
