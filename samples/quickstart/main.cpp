// Quickstart: append a few events to an LMDB store and read them back, with
// a snapshot of what was read and a checkpoint of how far.
//
//   cairn-quickstart [DIR]      (default ./cairn-data)
//
// Run it twice: the second run appends to the same streams, the versions and
// positions carry on where the first run stopped, and it starts from the
// snapshot the first run saved instead of replaying the whole stream.

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

  // The previous run's checkpoint and snapshot, if any.
  auto seen = (*store)->load_checkpoint("quickstart");
  if (!seen)
    return die(seen.error());
  if (*seen)
    std::printf("the previous run read up to position %llu\n",
                static_cast<unsigned long long>(**seen));
  std::int64_t balance = 0;
  std::uint64_t from = 1;
  auto snap = (*store)->load_snapshot("account-alice");
  if (!snap)
    return die(snap.error());
  if (*snap) {
    auto saved = decode_payload<std::int64_t>((*snap)->data);
    if (!saved)
      return die(saved.error());
    balance = *saved;
    from = (*snap)->version + 1;
    std::printf("from the snapshot at version %llu: balance %lld\n",
                static_cast<unsigned long long>((*snap)->version), static_cast<long long>(balance));
  }
  std::printf("\n");

  auto events = (*store)->read_stream("account-alice", from, 1000);
  if (!events)
    return die(events.error());
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

  // What this run read, for the next: the balance at the last version, and the position.
  if (!events->empty()) {
    snapshot next{"account-alice", events->back().version, "quickstart.balance", 1, {}};
    encode_payload(balance, next.data);
    if (auto ok = (*store)->save_snapshot(next); !ok)
      return die(ok.error());
    if (auto ok = (*store)->save_checkpoint({"quickstart", events->back().position}); !ok)
      return die(ok.error());
  }
  return 0;
}
