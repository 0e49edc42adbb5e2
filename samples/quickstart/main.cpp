// Quickstart: append a few events to an LMDB store and read them back.
//
//   cairn-quickstart [DIR]      (default ./cairn-data)
//
// Run it twice: the second run appends to the same streams, and the versions
// and positions carry on where the first run stopped.

#include <cstdint>
#include <cstdio>
#include <string>

#include <cereal/types/string.hpp>

#include "cairn/persistence/codec.hpp"
#include "cairn/persistence/event_store.hpp"

namespace {

struct account_opened {
  std::string owner;
  template <class Archive> void serialize(Archive& ar) { ar(owner); }
};

struct money_deposited {
  std::int64_t amount = 0;
  template <class Archive> void serialize(Archive& ar) { ar(amount); }
};

using account_event = std::variant<account_opened, money_deposited>;

int die(const cairn::error& e) {
  std::fprintf(stderr, "error: %s\n", e.to_string().c_str());
  return 1;
}

} // namespace

int main(int argc, char** argv) {
  using namespace cairn::persistence;
  std::string dir = argc > 1 ? argv[1] : "./cairn-data";

  event_registry registry;
  if (auto ok = registry.add<account_opened>("account_opened"); !ok)
    return die(ok.error());
  if (auto ok = registry.add<money_deposited>("money_deposited"); !ok)
    return die(ok.error());

  store_options options;
  options.registry = &registry;
  auto store = open_store(dir, options);
  if (!store)
    return die(store.error());

  // Open the account once; later runs only deposit.
  auto version = (*store)->stream_version("account-alice");
  if (!version)
    return die(version.error());
  append_request req;
  req.stream = "account-alice";
  req.expected = expected_version::exact(*version);
  req.meta.correlation_id = "quickstart";
  if (*version == 0)
    req.events.push_back(*registry.encode(account_opened{"Alice"}));
  for (std::int64_t amount : {100, 250, 40})
    req.events.push_back(*registry.encode(money_deposited{amount}));
  auto appended = (*store)->append(req);
  if (!appended)
    return die(appended.error());
  std::printf("appended versions %llu..%llu at positions %llu..%llu\n\n",
              static_cast<unsigned long long>(appended->first_version),
              static_cast<unsigned long long>(appended->last_version),
              static_cast<unsigned long long>(appended->first_position),
              static_cast<unsigned long long>(appended->last_position));

  auto events = (*store)->read_stream("account-alice", 1, 1000);
  if (!events)
    return die(events.error());
  std::int64_t balance = 0;
  std::printf("%-8s %-8s %-16s %s\n", "version", "position", "type", "event");
  for (const auto& ev : *events) {
    auto decoded = registry.decode<account_event>(ev);
    if (!decoded)
      return die(decoded.error());
    std::string text;
    if (auto* o = std::get_if<account_opened>(&*decoded)) {
      text = "owner=" + o->owner;
    } else {
      auto amount = std::get<money_deposited>(*decoded).amount;
      balance += amount;
      text = "amount=" + std::to_string(amount);
    }
    std::printf("%-8llu %-8llu %-16s %s\n", static_cast<unsigned long long>(ev.version),
                static_cast<unsigned long long>(ev.position), ev.type.c_str(), text.c_str());
  }
  std::printf("\nbalance of account-alice: %lld (store: %s)\n", static_cast<long long>(balance),
              dir.c_str());
  return 0;
}
