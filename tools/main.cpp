// The shipped `cairn` CLI: decodes the events of the bank and hangar samples.
// A service builds its own from cairn::tools::run_cli with its event types.

#include <cstdio>

#include "account.hpp"
#include "cairn/tools/cli.hpp"
#include "hangar/provider.hpp"
#include "hangar/provider_group.hpp"

int main(int argc, char** argv) {
  cairn::persistence::event_registry types;
  auto ok = cairn::persistence::register_event_types<bank::account::event>(types);
  if (ok)
    ok = cairn::persistence::register_event_types<hangar::provider::event>(types);
  if (ok)
    ok = cairn::persistence::register_event_types<hangar::provider_group::event>(types);
  if (ok)
    ok = hangar::provider::upcasters(types);
  if (!ok) {
    std::fprintf(stderr, "cairn: %s\n", ok.error().to_string().c_str());
    return cairn::tools::exit_failure;
  }
  return cairn::tools::run_cli(argc, argv, types);
}
