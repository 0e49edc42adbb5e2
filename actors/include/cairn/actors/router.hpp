#pragma once

/// router: sends commands from inside one actor to the live actors of their
/// aggregates, skipping the registry once a reply has named the actor.
///
/// A command whose aggregate has no known live actor goes through the
/// registry, which activates it; the reply comes from the aggregate's actor,
/// and the router remembers it (weakly: a passivated actor is not kept).
/// Later commands go straight to it. An aggregate that is passivating hands
/// what reaches it to the registry, and a request that reaches an actor that
/// has already stopped comes back unprocessed, so the router resends it
/// through the registry: no command is lost or applied twice.
///
/// Order: the commands one router sends to one aggregate are applied in the
/// order they were sent. A command goes straight to an actor only when every
/// earlier one still in flight went straight to that same actor, and through
/// the registry only when none is in flight straight to an actor (one that
/// passivates forwards them to the registry, or they bounce). Otherwise it
/// waits in the router until those are answered; bounced commands are resent
/// with the waiting ones in their first order.
///
/// A router is used by one actor at a time, from its handlers; it may pass to
/// another actor only when nothing is outstanding().

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <caf/actor.hpp>
#include <caf/actor_addr.hpp>
#include <caf/fwd.hpp>

#include "cairn/actors/messages.hpp"

namespace cairn::actors {

class router {
public:
  using callback = std::function<void(reply_msg&)>;

  /// `registry` is the runtime's registry (runtime::handle()). At most
  /// `max_routes` aggregates are remembered: at the limit, the ones whose
  /// actor has stopped are forgotten, and if that is not half of them, all
  /// with nothing in flight. A remembered actor that stopped keeps its memory
  /// (a few KB) until then, so the limit bounds that too
  /// (docs/decisions/router-route-limit.md).
  explicit router(caf::actor registry, std::size_t max_routes = 4096);
  router(const router&) = delete; // its requests' handlers point into it
  router& operator=(const router&) = delete;

  /// Sends `msg` on behalf of `self` and calls `on_reply` once with the
  /// answer (an error reply when none came: a timeout, an unreachable
  /// registry). A `timeout` of zero waits without limit.
  void send(caf::event_based_actor* self, command_msg msg, std::chrono::milliseconds timeout,
            callback on_reply);

  /// Commands sent and not yet answered.
  [[nodiscard]] std::size_t outstanding() const { return outstanding_; }
  /// Commands that went straight to an aggregate's actor / through the
  /// registry (resent ones counted again).
  [[nodiscard]] std::uint64_t sent_direct() const { return sent_direct_; }
  [[nodiscard]] std::uint64_t sent_via_registry() const { return sent_via_registry_; }

private:
  struct pending;
  struct route {
    std::string key;                            ///< The stream name.
    std::size_t hash = 0;                       ///< Of `key`, kept for rebuilding the index.
    caf::actor_addr actor;                      ///< The incarnation that answered last; weak.
    std::uint32_t via_registry = 0;             ///< In flight through the registry.
    std::uint32_t direct = 0;                   ///< In flight straight to an actor: `sent_to`.
    caf::actor_addr sent_to;                    ///< Weak, so its address is not reused meanwhile.
    std::vector<std::shared_ptr<pending>> held; ///< Bounced and held, resent in `seq` order.
  };
  /// An open-addressing index entry; empty without a route.
  struct slot {
    std::size_t hash = 0;
    route* to = nullptr;
  };

  // A route with commands in flight or held is never trimmed, so the
  // handlers of its requests keep a pointer to it.
  /// Sends `p` where it keeps its place in the route's order, or holds it.
  void dispatch(caf::event_based_actor* self, route& r, std::shared_ptr<pending> p);
  void answered(caf::event_based_actor* self, route& r, bool direct,
                const caf::strong_actor_ptr& from, pending& p, reply_msg& reply);
  void bounced(caf::event_based_actor* self, route& r, std::shared_ptr<pending> p);
  void settle(caf::event_based_actor* self, route& r);
  route& find_or_add(std::string key);
  void index(route* r);
  void rebuild_index(std::size_t slots);
  void trim();

  caf::actor registry_;
  std::size_t max_routes_;
  // A flat index over stable routes: looking a stream up costs one probe of
  // a contiguous table, not a walk of hash-map nodes (docs/decisions/router-index.md).
  std::vector<std::unique_ptr<route>> routes_;
  std::vector<slot> slots_; ///< A power of two, at least twice routes_.
  std::uint64_t next_seq_ = 0;
  std::size_t outstanding_ = 0;
  std::uint64_t sent_direct_ = 0;
  std::uint64_t sent_via_registry_ = 0;
};

} // namespace cairn::actors
