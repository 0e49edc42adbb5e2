// The shipped `cairn` CLI: decodes the bank sample's events. A service builds
// its own from cairn::tools::run_cli with its event types.

#include <cstdio>

#include "account.hpp"
#include "cairn/tools/cli.hpp"

int main(int argc, char** argv) {
  cairn::persistence::event_registry types;
  if (auto ok = cairn::tools::add_event_types<bank::account::event>(types); !ok) {
    std::fprintf(stderr, "cairn: %s\n", ok.error().to_string().c_str());
    return cairn::tools::exit_failure;
  }
  return cairn::tools::run_cli(argc, argv, types);
}
