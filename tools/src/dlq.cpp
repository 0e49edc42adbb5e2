// cairn dlq: the dead letters of subscribers (docs/reacting-to-events.md).
// `list` reads alongside a running service. `replay` and `discard` write, so
// they need the service stopped (the store has one writer): `replay` marks
// dead letters, and each subscriber replays its marked ones when it starts,
// since only the service has the handler code.

#include <filesystem>
#include <iostream>

#include "cairn/tools/cli.hpp"
#include "output.hpp"

namespace cairn::tools::detail {

namespace {

namespace fs = std::filesystem;

result<std::unique_ptr<persistence::event_store>> open_write(const std::string& dir) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec))
    return fail(errc::invalid_argument, "no such directory", dir);
  if (!fs::exists(fs::path(dir) / "data.mdb", ec))
    return fail(errc::invalid_argument, "no cairn store here (no data.mdb)", dir);
  auto store = persistence::open_store(dir, {});
  if (!store && store.error().code == errc::unavailable)
    return fail(errc::unavailable,
                "the store is open for writing by a running service: stop it first (dead "
                "letters of a running service are replayed and discarded through its runtime)",
                dir);
  return store;
}

} // namespace

int dlq(const context& ctx, const std::string& dir, const dlq_options& opts) {
  if (opts.action != "list" && opts.subscriber.empty())
    return report(error{errc::invalid_argument, "--subscriber is required to " + opts.action});
  auto store = opts.action == "list" ? open_read(dir) : open_write(dir);
  if (!store)
    return report(store.error());
  auto letters = (*store)->list_dead_letters(opts.subscriber);
  if (!letters)
    return report(letters.error());
  std::vector<persistence::dead_letter> chosen;
  for (auto& dl : *letters)
    if (opts.position == 0 || dl.position == opts.position)
      chosen.push_back(std::move(dl));
  if (opts.action == "list") {
    for (const auto& dl : chosen) {
      if (ctx.json)
        std::cout << dead_letter_json(dl, "subscriber") << '\n';
      else
        std::cout << dl.subscriber << " @" << dl.position << ' ' << dl.stream << " v" << dl.version
                  << ' ' << dl.type << " attempts=" << dl.attempts
                  << " first=" << iso_time(dl.first_failure_ns)
                  << " last=" << iso_time(dl.last_failure_ns)
                  << (dl.replay_requested ? " (replay requested)" : "") << "\n  " << dl.error
                  << '\n';
    }
    if (!ctx.json)
      std::cout << count_of(chosen.size(), "dead letter") << '\n';
    return exit_ok;
  }
  if (chosen.empty())
    return report(
      error{errc::invalid_argument, "no such dead letter",
            opts.subscriber + (opts.position != 0 ? " @" + std::to_string(opts.position) : "")});
  persistence::write_batch batch;
  for (auto& dl : chosen) {
    if (opts.action == "discard") {
      batch.dead_letter_removals.push_back({dl.subscriber, dl.position});
    } else {
      dl.replay_requested = true;
      batch.dead_letters.push_back(dl);
    }
  }
  if (auto ok = (*store)->append_batch(batch); !ok)
    return report(ok.error());
  std::cout << (opts.action == "discard" ? "discarded " : "marked for replay at the next start: ")
            << count_of(chosen.size(), "dead letter") << " of " << opts.subscriber << '\n';
  return exit_ok;
}

} // namespace cairn::tools::detail
