#pragma once

/// What-if replay: another `decide` re-run over the commands an aggregate
/// type recorded (runtime_options::record_commands), reporting per stream the
/// first command on which it decides otherwise. runtime::what_if is the
/// entry point; docs/audit.md#what-if-replay explains the rules.
///
///   auto stricter = [](const account::state& s, const account::command& c) {
///     return cairn::match<cairn::decision<account::event>>(c, ...);
///   };
///   auto report = rt->what_if<account>(stricter, {});       // reads only
///   for (const auto& s : report->streams)
///     if (s.difference) ... s.difference->recorded, s.difference->alternative
///
/// Reads only: the command log page by page, the recorded events, and the
/// stored events where no command was recorded. Nothing is written, and no
/// read transaction stays open while user code runs.

#include <algorithm>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "cairn/actors/aggregate_type.hpp"
#include "cairn/model/aggregate.hpp"
#include "cairn/model/error.hpp"
#include "cairn/model/match.hpp"
#include "cairn/persistence/codec.hpp"
#include "cairn/persistence/event_store.hpp"

namespace cairn {

/// Which streams of the aggregate type what_if re-runs. Both empty: all.
struct what_if_filter {
  /// Only these aggregate ids. Default: empty (every id).
  std::vector<std::string> ids;
  /// Only ids that start with this. Default: empty (every id).
  std::string id_prefix;
};

/// The first command of a stream on which the alternative decided otherwise.
template <class A> struct what_if_difference {
  std::uint64_t sequence = 0;    ///< The command's place in the command log.
  std::uint64_t version = 0;     ///< The stream's version it was decided at.
  std::int64_t timestamp_ns = 0; ///< When it was recorded.
  persistence::metadata meta;    ///< Its command id, correlation, causation, tenant, user.
  typename A::command command;
  std::vector<typename A::event> recorded; ///< What it emitted (maybe nothing).
  decision<typename A::event> alternative; ///< What the alternative decides instead.
};

/// One stream re-run.
template <class A> struct what_if_stream {
  std::string id;     ///< The aggregate id.
  std::string stream; ///< "<category>-<id>".
  /// The version its first recorded command was decided at. 0: recording
  /// covers the stream from its start. Above 0 (recording was turned on
  /// later), the state up to it was replayed from the stored events.
  std::uint64_t from_version = 0;
  std::uint64_t commands = 0;        ///< Commands re-run, the differing one included.
  std::uint64_t events_replayed = 0; ///< Stored events folded in where no command was recorded.
  /// None: the alternative decided every recorded command the same way.
  std::optional<what_if_difference<A>> difference;
};

/// What what_if found.
template <class A> struct what_if_report {
  std::vector<what_if_stream<A>> streams; ///< In stream-name order.
  std::uint64_t commands = 0;             ///< Recorded commands of the type read.

  /// How many streams the alternative decided differently.
  [[nodiscard]] std::size_t differing() const {
    return static_cast<std::size_t>(
      std::count_if(streams.begin(), streams.end(),
                    [](const auto& s) { return s.difference.has_value(); }));
  }
};

namespace detail {

/// The replay behind runtime::what_if (which checks the runtime first).
/// `alternative(const state&, const command&) -> decision<event>`.
template <class A, class Decide>
[[nodiscard]] result<what_if_report<A>>
run_what_if(const persistence::event_store& store,
            std::shared_ptr<const persistence::event_registry> registry, Decide& alternative,
            const what_if_filter& filter) {
  using state_t = typename A::state;
  using event_t = typename A::event;
  using command_t = typename A::command;
  using typed = actors::typed_aggregate<A>;
  static_assert(std::is_invocable_r_v<decision<event_t>, Decide&, const state_t&, const command_t&>,
                "what_if: the alternative must be callable as decision<event>(const state&, "
                "const command&), the signature of A::decide");
  const std::string category = A::category;
  const std::string prefix = category + "-";
  typed type{registry};
  struct run {
    std::unique_ptr<actors::state_box> state;
    std::uint64_t version = 0;
    bool done = false;
  };
  std::map<std::string, run> runs;
  std::map<std::string, what_if_stream<A>> streams;
  what_if_report<A> report;
  std::uint64_t of_category = 0; // recorded commands of A, before the filter
  // The canonical bytes of an event: recorded ones are decoded (upcast) and
  // encoded again, so an old schema version does not count as a difference.
  auto encode = [&](const event_t& ev,
                    const std::string& where) -> result<persistence::event_data> {
    try {
      return registry->encode(ev);
    } catch (...) {
      return tl::unexpected(thrown_error("serializing an event", where));
    }
  };
  constexpr std::size_t page_size = 256;
  for (std::uint64_t from = 1;;) {
    auto page = store.read_commands(from, page_size, prefix);
    if (!page)
      return tl::unexpected(page.error());
    for (auto& c : page->commands) {
      ++of_category;
      auto id = c.stream.substr(prefix.size());
      if (id.compare(0, filter.id_prefix.size(), filter.id_prefix) != 0
          || (!filter.ids.empty()
              && std::find(filter.ids.begin(), filter.ids.end(), id) == filter.ids.end()))
        continue;
      ++report.commands;
      auto where = c.stream + " sequence " + std::to_string(c.sequence);
      auto& r = runs[c.stream];
      auto& out = streams[c.stream];
      if (!r.state) {
        if (r.done)
          continue;
        auto initial = type.initial(c.stream);
        if (!initial)
          return tl::unexpected(initial.error());
        r.state = std::move(*initial);
        out.id = id;
        out.stream = c.stream;
        out.from_version = c.version_before;
      }
      if (c.version_before < r.version)
        return fail(errc::corrupted,
                    "the command log has a command decided at version "
                      + std::to_string(c.version_before) + " after the stream reached version "
                      + std::to_string(r.version),
                    where);
      if (c.version_before > r.version) { // events appended without a recorded command
        auto last = actors::fold_stream(store, type, *r.state, c.stream, r.version,
                                        c.version_before);
        if (!last)
          return tl::unexpected(last.error());
        if (*last != c.version_before)
          return fail(errc::corrupted,
                      "the stream ends at version " + std::to_string(*last)
                        + " before the recorded command's version "
                        + std::to_string(c.version_before),
                      where);
        out.events_replayed += c.version_before - r.version;
        r.version = c.version_before;
      }
      auto command = persistence::decode_payload<command_t>(c.payload);
      if (!command)
        return fail(errc::corrupted,
                    "a recorded command does not decode: " + command.error().message, where);
      std::vector<event_t> recorded;
      std::vector<persistence::event_data> recorded_bytes;
      if (c.event_count > 0) {
        auto events = store.read_stream(c.stream, c.version_before + 1, c.event_count);
        if (!events)
          return tl::unexpected(events.error());
        if (events->size() != c.event_count || events->front().position != c.first_position)
          return fail(errc::corrupted,
                      "the recorded command's events are not in the stream where it says", where);
        for (const auto& stored : *events) {
          auto ev = registry->decode<event_t>(stored);
          if (!ev)
            return tl::unexpected(ev.error());
          auto bytes = encode(*ev, where);
          if (!bytes)
            return tl::unexpected(bytes.error());
          recorded.push_back(std::move(*ev));
          recorded_bytes.push_back(std::move(*bytes));
        }
      }
      decision<event_t> decided = reject("not decided");
      try {
        decided = alternative(static_cast<const state_t&>(typed::get(*r.state)),
                              static_cast<const command_t&>(*command));
      } catch (...) {
        return tl::unexpected(thrown_error("the alternative decide", where));
      }
      ++out.commands;
      bool same = decided.has_value() && decided->size() == recorded.size();
      for (std::size_t i = 0; same && i < recorded.size(); ++i) {
        auto bytes = encode((*decided)[i], where);
        if (!bytes)
          return tl::unexpected(bytes.error());
        same = bytes->type == recorded_bytes[i].type && bytes->payload == recorded_bytes[i].payload;
      }
      if (!same) {
        out.difference = what_if_difference<A>{c.sequence,          c.version_before,
                                               c.timestamp_ns,      std::move(c.meta),
                                               std::move(*command), std::move(recorded),
                                               std::move(decided)};
        r.state.reset(); // the stream is done: its state is no longer needed
        r.done = true;
        continue;
      }
      try {
        auto& state = typed::get(*r.state);
        for (const auto& ev : *decided)
          state = evolve_with<A>(std::move(state), ev);
      } catch (...) {
        return tl::unexpected(thrown_error("evolve", where));
      }
      r.version += c.event_count;
    }
    if (page->next_sequence == from)
      break;
    from = page->next_sequence;
  }
  if (of_category == 0)
    return fail(errc::invalid_argument,
                "the store holds no recorded command of " + category
                  + ": commands are recorded only while record_commands is on "
                    "(runtime_options or aggregate_options)",
                store.path());
  for (auto& [name, s] : streams)
    report.streams.push_back(std::move(s));
  return report;
}

} // namespace detail

} // namespace cairn
