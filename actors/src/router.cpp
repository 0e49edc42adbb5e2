#include "cairn/actors/router.hpp"

#include <algorithm>
#include <functional>
#include <utility>

#include <caf/all.hpp>

#include "cairn/actors/error.hpp"
#include "cairn/model/stream_name.hpp"

namespace cairn::actors {

struct router::pending {
  std::uint64_t seq;
  caf::message msg; ///< (command_atom, command_msg), shared with a direct request.
  std::chrono::milliseconds timeout;
  callback on_reply;
};

router::router(caf::actor registry, std::size_t max_routes)
    : registry_(std::move(registry)), max_routes_(std::max<std::size_t>(1, max_routes)) {}

void router::send(caf::event_based_actor* self, command_msg msg, std::chrono::milliseconds timeout,
                  callback on_reply) {
  ++outstanding_;
  auto& r = find_or_add(stream_name_of(msg.category, msg.id));
  auto content = caf::make_message(command_atom::value, std::move(msg));
  dispatch(self, r,
           std::make_shared<pending>(
             pending{next_seq_++, std::move(content), timeout, std::move(on_reply)}));
}

router::route& router::find_or_add(std::string key) {
  auto hash = std::hash<std::string>{}(key);
  if (!slots_.empty()) {
    auto mask = slots_.size() - 1;
    for (auto i = hash & mask; slots_[i].to != nullptr; i = (i + 1) & mask)
      if (slots_[i].hash == hash && slots_[i].to->key == key)
        return *slots_[i].to;
  }
  if (routes_.size() >= max_routes_)
    trim();
  if ((routes_.size() + 1) * 2 > slots_.size())
    rebuild_index(std::max<std::size_t>(16, slots_.size() * 2));
  routes_.push_back(std::make_unique<route>());
  routes_.back()->key = std::move(key);
  routes_.back()->hash = hash;
  index(routes_.back().get());
  return *routes_.back();
}

void router::index(route* r) {
  auto mask = slots_.size() - 1;
  auto i = r->hash & mask;
  while (slots_[i].to != nullptr)
    i = (i + 1) & mask;
  slots_[i] = slot{r->hash, r};
}

void router::rebuild_index(std::size_t slots) {
  slots_.assign(slots, slot{});
  for (const auto& r : routes_)
    index(r.get());
}

void router::dispatch(caf::event_based_actor* self, route& r, std::shared_ptr<pending> p) {
  caf::actor target;
  if (r.held.empty() && r.actor)
    target = caf::actor_cast<caf::actor>(r.actor); // empty once it has stopped
  auto* block = caf::actor_cast<caf::actor_control_block*>(target);
  bool direct = target && r.via_registry == 0 && (r.direct == 0 || r.sent_to.get() == block);
  bool via_registry = !target && r.held.empty() && r.direct == 0;
  if (!direct && !via_registry) {
    r.held.push_back(std::move(p)); // settle() sends it once the route is quiet
    return;
  }
  if (direct) {
    ++r.direct;
    if (r.sent_to.get() != block)
      r.sent_to = caf::actor_cast<caf::actor_addr>(target);
    ++sent_direct_;
  } else {
    r.actor = nullptr;
    target = registry_;
    ++r.via_registry;
    ++sent_via_registry_;
  }
  // A direct command may bounce and be resent: it keeps the message, which
  // the request shares (the aggregate reads it without copying).
  auto msg = direct ? p->msg : std::move(p->msg);
  auto* rp = &r;
  auto on_reply = [this, self, rp, direct, p](reply_msg& reply) {
    answered(self, *rp, direct, self->current_sender(), *p, reply);
  };
  auto on_error = [this, self, rp, direct, p](caf::error& err) {
    if (direct && err == caf::sec::request_receiver_down) {
      bounced(self, *rp, p); // the actor stopped before it read the command
      return;
    }
    if (auto carried = from_caf_error(err)) { // an actor's own answer keeps its code
      auto reply = error_reply(*carried);
      answered(self, *rp, direct, nullptr, *p, reply);
      return;
    }
    auto reply = error_reply(
      {errc::unavailable, std::string{err == caf::sec::request_timeout ? "timed out" : "no answer"}
                            + ": " + self->system().render(err)});
    answered(self, *rp, direct, nullptr, *p, reply);
  };
  if (p->timeout.count() > 0)
    self->request(target, p->timeout, std::move(msg))
      .then(std::move(on_reply), std::move(on_error));
  else
    self->request(target, caf::infinite, std::move(msg))
      .then(std::move(on_reply), std::move(on_error));
}

void router::answered(caf::event_based_actor* self, route& r, bool direct,
                      const caf::strong_actor_ptr& from, pending& p, reply_msg& reply) {
  --outstanding_;
  if (direct)
    --r.direct;
  else
    --r.via_registry;
  // Learn the actor that decided: a refusal by the registry or a failed
  // activation names no actor worth going to.
  bool decided = reply.ok() || reply.code == static_cast<std::uint8_t>(errc::rejected);
  if (decided && from && from.get() != caf::actor_cast<caf::actor_control_block*>(registry_)
      && r.actor.get() != from.get())
    r.actor = caf::actor_cast<caf::actor_addr>(from);
  // Held commands are older than anything the callback sends: first them.
  settle(self, r);
  p.on_reply(reply); // may send again, which may trim `r` away
}

void router::bounced(caf::event_based_actor* self, route& r, std::shared_ptr<pending> p) {
  --r.direct;
  r.actor = nullptr; // stopped: the registry knows what comes next
  r.held.push_back(std::move(p));
  settle(self, r);
}

void router::settle(caf::event_based_actor* self, route& r) {
  if (r.held.empty() || r.direct > 0 || r.via_registry > 0)
    return;
  // Everything sent before is answered: resend in first order.
  auto held = std::move(r.held);
  r.held.clear();
  std::sort(held.begin(), held.end(), [](const auto& a, const auto& b) { return a->seq < b->seq; });
  for (auto& p : held)
    dispatch(self, r, std::move(p));
}

void router::trim() {
  // A remembered actor that has stopped still holds its memory (CAF frees an
  // actor's block with its last weak reference): forget those first, then,
  // if that freed too little, every route with nothing in flight.
  auto idle = [](const route& r) { return r.direct == 0 && r.via_registry == 0 && r.held.empty(); };
  auto forget = [this](auto&& which) {
    routes_.erase(std::remove_if(routes_.begin(), routes_.end(),
                                 [&](const std::unique_ptr<route>& r) { return which(*r); }),
                  routes_.end());
  };
  forget([&](const route& r) { return idle(r) && !caf::actor_cast<caf::actor>(r.actor); });
  if (routes_.size() >= max_routes_ / 2)
    forget(idle);
  rebuild_index(slots_.size());
}

} // namespace cairn::actors
