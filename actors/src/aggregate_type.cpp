#include "cairn/actors/aggregate_type.hpp"

#include "cairn/persistence/personal.hpp"

#include <algorithm>
#include <optional>

namespace cairn::actors {

result<std::uint64_t> fold_stream(const persistence::event_store& store, const aggregate_type& type,
                                  state_box& state, const std::string& stream,
                                  std::uint64_t after_version, std::uint64_t max_version,
                                  const std::function<bool(const persistence::event_view&)>& keep) {
  // Pages keep each read transaction short on a long stream.
  constexpr std::uint64_t page = 4096;
  std::uint64_t version = after_version;
  while (version < max_version) {
    auto want = std::min(page, max_version - version);
    std::optional<cairn::error> failure;
    bool refused = false;
    auto visited = store.visit_stream(
      stream, version + 1, static_cast<std::size_t>(want), [&](const persistence::event_view& ev) {
        if (keep && !keep(ev)) {
          refused = true;
          return false;
        }
        // The event's personal data decrypts under its subject's key, or reads as absent.
        persistence::personal_scope scope{store.personal_keys(), ev.subject};
        auto applied = type.evolve_stored(state, ev, stream + " v" + std::to_string(ev.version));
        if (!applied) {
          failure = applied.error();
          return false;
        }
        version = ev.version;
        return true;
      });
    if (!visited)
      return tl::unexpected(visited.error());
    if (failure)
      return tl::unexpected(*failure);
    if (refused || *visited < want)
      break;
  }
  return version;
}

result<recovered_state> recover(const persistence::event_store& store, const aggregate_type& type,
                                const std::string& stream) {
  auto initial = type.initial(stream);
  if (!initial)
    return tl::unexpected(initial.error());
  recovered_state out;
  out.state = std::move(*initial);
  auto snap = store.load_snapshot(stream);
  if (snap && *snap && (*snap)->state_type == type.state_type()
      && (*snap)->schema_version == type.state_schema()) {
    if (auto decoded = type.decode_state((*snap)->data)) { // else replay from the start
      out.state = std::move(*decoded);
      out.version = (*snap)->version;
    }
  } else if (!snap && snap.error().code != errc::corrupted) {
    return tl::unexpected(snap.error()); // an unreadable store, not a bad snapshot
  }
  auto from = out.version;
  auto folded = fold_stream(store, type, *out.state, stream, from, persistence::no_limit,
                            [&](const persistence::event_view& ev) {
                              if (!ev.tenant.empty())
                                out.tenant.assign(ev.tenant);
                              return true;
                            });
  if (!folded)
    return tl::unexpected(folded.error());
  out.version = *folded;
  out.replayed = *folded - from;
  // Recovered from a snapshot alone (or its events had no tenant): the event
  // it was taken at. One read, not a walk: the store's own check is the
  // last word on a stream whose newest events carry no tenant.
  if (out.tenant.empty() && from > 0) {
    auto at = store.visit_stream(stream, from, 1, [&](const persistence::event_view& ev) {
      out.tenant.assign(ev.tenant);
      return true;
    });
    if (!at)
      return tl::unexpected(at.error());
  }
  return out;
}

} // namespace cairn::actors
