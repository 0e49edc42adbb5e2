// The account aggregate on a cairn runtime: open, deposit, withdraw, read the
// state live and as it was.
//
//   cairn-bank [DIR]      (default ./cairn-data)

#include <cstdio>

#include "account.hpp"
#include "cairn/runtime/runtime.hpp"

int main(int argc, char** argv) {
  cairn::runtime_options opts;
  opts.data_dir = argc > 1 ? argv[1] : "./cairn-data";
  auto rt = cairn::runtime::start(opts);
  if (!rt) {
    std::fprintf(stderr, "error: %s\n", rt.error().to_string().c_str());
    return 1;
  }
  if (auto ok = (*rt)->register_aggregate<bank::account>(); !ok) {
    std::fprintf(stderr, "error: %s\n", ok.error().to_string().c_str());
    return 1;
  }
  auto show = [](const char* what, const cairn::result<cairn::outcome<bank::account>>& r) {
    if (r)
      std::printf("%-28s -> version %llu%s\n", what, static_cast<unsigned long long>(r->version),
                  r->duplicate ? " (duplicate: the original outcome)" : "");
    else
      std::printf("%-28s -> %s\n", what, r.error().to_string().c_str());
  };
  auto& runtime = **rt;
  cairn::command_options dep1;
  dep1.command_id = "dep-1"; // a retry with the same id is answered, not applied again
  show("open_account alice",
       runtime.send<bank::account>("alice", bank::open_account{"Alice"}).get());
  show("deposit 100 (id dep-1)",
       runtime.send<bank::account>("alice", bank::deposit{100}, dep1).get());
  show("deposit 100 (id dep-1 again)",
       runtime.send<bank::account>("alice", bank::deposit{100}, dep1).get());
  show("withdraw 500", runtime.send<bank::account>("alice", bank::withdraw{500}).get());
  show("withdraw 30", runtime.send<bank::account>("alice", bank::withdraw{30}).get());
  if (auto s = runtime.state<bank::account>("alice"))
    std::printf("\nalice now: owner=%s balance=%lld\n", s->owner.c_str(),
                static_cast<long long>(s->balance));
  if (auto s = runtime.state_at<bank::account>("alice", 1))
    std::printf("alice at version 1: balance=%lld\n", static_cast<long long>(s->balance));
  return 0;
}
