// cairn retention: what a retention policy would remove and what holds it
// back (--plan), and the removal (--apply) (docs/audit.md#retention).

#include <filesystem>
#include <iostream>

#include "cairn/model/clock.hpp"
#include "cairn/tools/cli.hpp"
#include "output.hpp"

namespace cairn::tools::detail {

namespace {

namespace fs = std::filesystem;

std::string hold_text(persistence::retention_hold h, const persistence::retention_plan& plan) {
  switch (h) {
    case persistence::retention_hold::snapshot:
      return "no snapshot covers them (save a snapshot of the stream)";
    case persistence::retention_hold::checkpoint:
      return "checkpoint " + plan.limiting_checkpoint.value_or("?") + " at position "
             + std::to_string(plan.limiting_position) + " has not passed them";
    case persistence::retention_hold::newest: return "a stream keeps its newest event";
    case persistence::retention_hold::tenant:
      return "the newest event naming the stream's tenant stays";
    case persistence::retention_hold::none: break;
  }
  return "the rule keeps them";
}

std::string range(std::uint64_t first, std::uint64_t last) {
  return first == last ? "position " + std::to_string(first)
                       : "positions " + std::to_string(first) + "-" + std::to_string(last);
}

std::string plan_json(const persistence::retention_plan& plan) {
  std::string cats = "[";
  for (const auto& c : plan.categories) {
    if (cats.size() > 1)
      cats += ',';
    cats += json_object{}
              .add("category", c.category)
              .add("streams", c.streams)
              .add("events", c.events)
              .add("held", c.held)
              .add("first_position", c.first_position)
              .add("last_position", c.last_position)
              .str();
  }
  cats += ']';
  std::string held = "[";
  for (const auto& h : plan.held) {
    if (held.size() > 1)
      held += ',';
    held += json_object{}
              .add("stream", h.stream)
              .add("events", h.events)
              .add("hold", persistence::to_string(h.hold))
              .str();
  }
  held += ']';
  json_object o;
  o.add("now", iso_time(plan.now_ns))
    .add("events", plan.events)
    .add("streams", std::uint64_t{plan.streams.size()})
    .add("first_position", plan.first_position)
    .add("new_first_position", plan.new_first_position);
  if (plan.limiting_checkpoint)
    o.add("checkpoint", *plan.limiting_checkpoint)
      .add("checkpoint_position", plan.limiting_position);
  return o.add_raw("categories", cats).add_raw("held", held).str();
}

void print_plan(const persistence::retention_plan& plan) {
  std::cout << "retention plan as of " << iso_time(plan.now_ns) << ":";
  for (const auto& r : plan.policy.rules)
    std::cout << " " << persistence::to_string(r);
  std::cout << "\n";
  for (const auto& c : plan.categories) {
    std::cout << "  " << c.category << ": " << count_of(c.events, "event") << " of "
              << count_of(c.streams, "stream") << " go";
    if (c.events > 0)
      std::cout << " (" << range(c.first_position, c.last_position) << ")";
    if (c.held > 0)
      std::cout << "; " << count_of(c.held, "event") << " held back";
    std::cout << "\n";
  }
  if (plan.limiting_checkpoint)
    std::cout << "  checkpoint " << *plan.limiting_checkpoint << " at position "
              << plan.limiting_position << ": nothing at or after it goes\n";
  else
    std::cout << "  no checkpoints: none holds anything back\n";
  constexpr std::size_t shown = 20;
  for (std::size_t i = 0; i < plan.held.size() && i < shown; ++i)
    std::cout << "  held back: " << plan.held[i].stream << ", "
              << count_of(plan.held[i].events, "event") << ": "
              << hold_text(plan.held[i].hold, plan) << "\n";
  if (plan.held.size() > shown)
    std::cout << "  held back: " << plan.held.size() - shown
              << " more streams (--json lists all)\n";
  std::cout << "total: " << count_of(plan.events, "event") << " of "
            << count_of(plan.streams.size(), "stream") << " go; the log is complete from position "
            << plan.first_position;
  if (plan.new_first_position != plan.first_position)
    std::cout << ", afterwards from " << plan.new_first_position;
  std::cout << "\n";
}

} // namespace

int retention(const context& ctx, const std::string& dir, const retention_options& opts) {
  auto policy = persistence::parse_retention_policy(opts.rules);
  if (!policy)
    return report(policy.error());
  if (policy->rules.empty())
    return report(error{errc::invalid_argument, "no --keep rule: nothing would go"});
  std::unique_ptr<persistence::event_store> store;
  if (opts.apply) {
    std::error_code ec;
    if (!fs::exists(fs::path(dir) / "data.mdb", ec))
      return report(error{errc::invalid_argument, "no cairn store here (no data.mdb)", dir});
    persistence::store_options so;
    so.allow_unknown_types = true; // removes records; decodes no payload
    auto opened = persistence::open_store(dir, so);
    if (!opened && opened.error().code == errc::unavailable)
      return report(error{errc::unavailable,
                          "the store is open for writing by a running service: stop it first "
                          "(retention needs the writer's lock)",
                          dir});
    if (!opened)
      return report(opened.error());
    store = std::move(*opened);
  } else {
    auto opened = open_read(dir);
    if (!opened)
      return report(opened.error());
    store = std::move(*opened);
  }
  auto now = wall_now_ns();
  auto plan = store->plan_retention(*policy, now);
  if (!plan)
    return report(plan.error());
  if (!opts.apply) {
    if (ctx.json)
      std::cout << plan_json(*plan) << '\n';
    else
      print_plan(*plan);
    return exit_ok;
  }
  auto done = store->apply_retention(*plan);
  if (!done)
    return report(done.error());
  if (ctx.json) {
    std::string skipped = "[";
    for (const auto& s : done->skipped)
      skipped += (skipped.size() > 1 ? "," : "") + json_string(s);
    skipped += ']';
    std::cout << json_object{}
                   .add("events", done->events)
                   .add("streams", done->streams)
                   .add("transactions", done->transactions)
                   .add("first_position", done->first_position)
                   .add_raw("skipped", skipped)
                   .str()
              << '\n';
  } else {
    print_plan(*plan);
    std::cout << "removed " << count_of(done->events, "event") << " of "
              << count_of(done->streams, "stream") << " in "
              << count_of(done->transactions, "transaction")
              << "; the log is complete from position " << done->first_position << "\n";
    for (const auto& s : done->skipped)
      std::cout << "skipped " << s << ": it changed since the plan; run retention again\n";
  }
  return exit_ok;
}

} // namespace cairn::tools::detail
