#include "cairn/actors/gateway.hpp"

#include <algorithm>
#include <array>
#include <ctime>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <unordered_map>

#include <caf/all.hpp>
#include <caf/io/middleman.hpp>

#include "cairn/actors/log.hpp"
#include "cairn/actors/replication.hpp"
#include "cairn/actors/router.hpp"
#include "cairn/model/backoff.hpp"
#include "cairn/model/clock.hpp"
#include "cairn/model/error.hpp"
#include "cairn/model/stream_name.hpp"

namespace cairn::actors {

void add_cluster_message_types(caf::actor_system_config& cfg) {
  cfg.add_message_type<command_msg>("cairn.command");
  cfg.add_message_type<reply_event>("cairn.reply_event");
  cfg.add_message_type<reply_msg>("cairn.reply");
  cfg.add_message_type<hello_msg>("cairn.hello");
  cfg.add_message_type<forward_batch>("cairn.forward_batch");
  cfg.add_message_type<reply_batch>("cairn.reply_batch");
  cfg.add_message_type<placement_msg>("cairn.placement");
  add_replication_message_types(cfg);
  add_feed_message_types(cfg);
}

namespace {

using time_point = caf::actor_clock::time_point;

/// Round-trip buckets of a forwarded command, inclusive upper bounds in µs.
constexpr std::array<std::uint64_t, 21> rtt_bounds{50,     100,    150,    200,   300,   400,
                                                   500,    750,    1000,   1500,  2000,  3000,
                                                   5000,   7500,   10000,  20000, 50000, 100000,
                                                   250000, 500000, 1000000};

/// A dialling node waits this long after its n-th failed attempt in a row.
constexpr backoff redial{std::chrono::milliseconds{100}, std::chrono::milliseconds{2000}};

/// Deadlines, pings and redials are checked this often at most.
constexpr std::chrono::milliseconds max_tick{100};

enum class link : std::uint8_t { connecting, up, suspect, down, refused };

const char* link_name(link l) {
  switch (l) {
    case link::connecting: return "connecting";
    case link::up: return "up";
    case link::suspect: return "suspect";
    case link::down: return "down";
    case link::refused: return "refused";
  }
  return "unknown";
}

/// "2026-12-06T21:40:12.345Z"
std::string utc_time(std::int64_t ns) {
  auto secs = static_cast<std::time_t>(ns / 1000000000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[32];
  auto n = std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  char ms[8];
  std::snprintf(ms, sizeof ms, ".%03dZ", static_cast<int>((ns / 1000000) % 1000));
  return std::string{buf, n} + ms;
}

/// A command sent to a peer and not answered yet.
struct waiting {
  std::function<void(reply_msg&&)> fn;
  time_point sent;
  time_point deadline;
};

struct peer {
  gateway_node node;
  bool dials = false; ///< This node has the lower id: it connects.
  link state = link::down;
  std::int64_t since_ns = 0; ///< Wall clock of the last change of `state`.
  std::string reason;        ///< Why it is not up.
  caf::actor remote;         ///< Its gateway, while up or suspect.
  caf::node_id nid;
  std::uint64_t attempt = 0;  ///< Of the current dial; stale answers are ignored.
  std::uint64_t failures = 0; ///< Dials in a row that failed.
  time_point redial_at{};
  time_point last_pong{};
  time_point next_ping{};
  std::uint64_t ping_seq = 0;
  std::unordered_map<std::uint64_t, waiting> in_flight;
  std::set<std::pair<time_point, std::uint64_t>> by_deadline;
  forward_batch out; ///< Commands queued for it; each is in `in_flight` already.
  std::size_t out_bytes = 0;
  reply_batch answers;   ///< Answers queued for it...
  caf::actor answers_to; ///< ...to this incarnation of its gateway.
  std::size_t answers_bytes = 0;
  time_point answers_since{}; ///< When the first of `answers` was queued.
  std::size_t serving = 0;    ///< Its commands in the registry's hands, not answered yet.
  std::uint64_t forwarded = 0, received = 0, failed = 0, dropped = 0, late = 0;
  std::array<std::uint64_t, rtt_bounds.size() + 1> rtt{};
  std::uint64_t rtt_sum_us = 0;
};

struct gateway_state {
  gateway_config cfg;
  /// owner -> (active node, epoch) of every owner/standby pair.
  std::map<std::string, placement_msg> placements;
  std::optional<router> route;
  std::vector<peer> peers; ///< Every member but this node; never resized after start.
  std::uint64_t next_request = 0;
  std::uint64_t dropped = 0; ///< Messages from unknown nodes or of unknown shape.
  bool draining = false;
  bool flush_planned = false; ///< A send_batches_atom is on its way to the gateway.
  time_point wake_at{};       ///< A delayed send_batches_atom arrives then (past: none).
  caf::response_promise drained;
  std::shared_ptr<spdlog::logger> log = logger(cluster_logger);
  static inline const char* name = "cairn.gateway";
};

using gateway_actor = caf::stateful_actor<gateway_state>;

peer* peer_by_id(gateway_state& st, const std::string& id) {
  for (auto& p : st.peers)
    if (p.node.id == id)
      return &p;
  return nullptr;
}

/// The peer a message came from: a node that completed a hello.
peer* peer_of_sender(gateway_actor* self) {
  const auto& sender = self->current_sender();
  if (!sender)
    return nullptr;
  for (auto& p : self->state.peers)
    if ((p.state == link::up || p.state == link::suspect) && p.nid == sender->node())
      return &p;
  return nullptr;
}

/// Counts and logs a message the gateway will not act on; the first ten
/// and then every thousandth are logged, so a flood cannot flood the log.
void drop(gateway_actor* self, peer* from, const std::string& what) {
  auto& st = self->state;
  auto n = ++st.dropped;
  if (from)
    ++from->dropped;
  if (n <= 10 || n % 1000 == 0)
    st.log->warn("dropped {} (from {}; {} dropped so far)", what,
                 from ? "node " + from->node.id : std::string{"an unknown sender"}, n);
}

/// True for a message from this node (the runtime, the gateway itself): the
/// control messages are refused from the network, where any peer could
/// send a shutdown or multiply the tick loop.
bool from_here(gateway_actor* self) {
  const auto& sender = self->current_sender();
  return !sender || sender->node() == self->home_system().node();
}

/// Calls a caller's callback; what it throws is logged and swallowed.
void call_back(gateway_state& st, std::function<void(reply_msg&&)>& fn, reply_msg&& r) {
  try {
    fn(std::move(r));
  } catch (...) {
    st.log->error("{} (ignored)", thrown_error("a send callback", {}).message);
  }
}

/// Fails every command in flight to `p` with `e`, the queued ones too.
void fail_all(gateway_state& st, peer& p, const cairn::error& e) {
  auto waiting_now = std::move(p.in_flight);
  p.in_flight.clear();
  p.by_deadline.clear();
  p.out.items.clear();
  p.out_bytes = 0;
  for (auto& [req, w] : waiting_now) {
    ++p.failed;
    call_back(st, w.fn, error_reply(e));
  }
}

cairn::error not_up(const gateway_state& st, const peer& p) {
  switch (p.state) {
    case link::connecting:
      return {errc::unavailable,
              "owner node " + p.node.id + " is not connected yet (connecting to " + p.node.host
                + ":" + std::to_string(p.node.port) + ")",
              st.cfg.node_id};
    case link::refused:
      return {errc::unavailable, "owner node " + p.node.id + " refused: " + p.reason,
              st.cfg.node_id};
    default:
      return {errc::unavailable,
              "owner node " + p.node.id + " unreachable since " + utc_time(p.since_ns)
                + (p.reason.empty() ? std::string{} : " (" + p.reason + ")"),
              st.cfg.node_id};
  }
}

void set_state(gateway_actor* self, peer& p, link to, std::string reason) {
  auto& st = self->state;
  if (p.state == to && p.reason == reason)
    return;
  auto was = p.state;
  p.state = to;
  p.reason = std::move(reason);
  p.since_ns = wall_now_ns();
  auto where = p.node.host + ":" + std::to_string(p.node.port);
  if (to == link::up)
    st.log->info("node {} at {} is up", p.node.id, where);
  else if (to != link::connecting || was != link::down)
    st.log->warn("node {} at {} is {}{}", p.node.id, where, link_name(to),
                 p.reason.empty() ? std::string{} : ": " + p.reason);
}

/// `p` is gone (connection lost, refused, unresponsive): fail what waits on
/// it and, on the dialling side, plan the next attempt.
void lose(gateway_actor* self, peer& p, link to, std::string reason) {
  auto& st = self->state;
  if (p.remote)
    self->demonitor(p.remote);
  p.remote = nullptr;
  set_state(self, p, to, std::move(reason));
  fail_all(st, p, not_up(st, p));
  if (p.dials)
    p.redial_at = self->clock().now() + redial.after(++p.failures);
}

void connected(gateway_actor* self, peer& p, caf::actor remote, caf::node_id nid) {
  auto& st = self->state;
  if (p.remote && p.remote != remote) {
    self->demonitor(p.remote);
    fail_all(st, p,
             {errc::unavailable,
              "owner node " + p.node.id
                + " restarted; the outcome is "
                  "unknown: retry with the same command id",
              st.cfg.node_id});
  }
  if (p.remote != remote)
    self->monitor(remote);
  p.remote = std::move(remote);
  p.nid = std::move(nid);
  p.failures = 0;
  auto now = self->clock().now();
  p.last_pong = now;
  p.next_ping = now + st.cfg.ping_interval;
  set_state(self, p, link::up, {});
}

/// The node that serves the shards `owner` has in the map: the owner, or
/// its promoted standby.
const std::string& active_of(const gateway_state& st, const std::string& owner) {
  auto it = st.placements.find(owner);
  return it == st.placements.end() ? owner : it->second.active;
}

/// Adopts `p` when it is newer than what this node knows; true then.
bool adopt(gateway_actor* self, const placement_msg& p) {
  auto& st = self->state;
  auto it = st.placements.find(p.owner);
  if (it == st.placements.end() || p.epoch <= it->second.epoch)
    return false;
  if (p.active != p.owner
      && std::find_if(st.cfg.nodes.begin(), st.cfg.nodes.end(), [&](const gateway_node& n) {
           return n.id == p.active;
         }) == st.cfg.nodes.end())
    return false;
  st.log->warn("node {} serves node {}'s shards from epoch {} on (was {} at epoch {})", p.active,
               p.owner, p.epoch, it->second.active, it->second.epoch);
  it->second = p;
  if (st.cfg.on_placement)
    st.cfg.on_placement(p);
  return true;
}

hello_msg my_hello(const gateway_state& st) {
  hello_msg h;
  h.protocol = cluster_protocol;
  h.node = st.cfg.node_id;
  h.map_version = st.cfg.map.version;
  h.map_digest = st.cfg.map.digest();
  h.shards = static_cast<std::uint32_t>(st.cfg.map.owners.size());
  for (const auto& [owner, p] : st.placements)
    h.placements.push_back(p);
  return h;
}

/// Why this node cannot work with a node that says `h`; empty when it can.
std::string mismatch(const gateway_state& st, const hello_msg& h) {
  auto mine = my_hello(st);
  if (h.protocol != mine.protocol)
    return "node " + h.node + " speaks cluster protocol " + std::to_string(h.protocol) + ", node "
           + mine.node + " speaks " + std::to_string(mine.protocol);
  if (h.map_version != mine.map_version || h.map_digest != mine.map_digest
      || h.shards != mine.shards)
    return "shard maps differ: node " + h.node + " has version " + std::to_string(h.map_version)
           + " (" + std::to_string(h.shards) + " shards, digest " + std::to_string(h.map_digest)
           + "), node " + mine.node + " has version " + std::to_string(mine.map_version) + " ("
           + std::to_string(mine.shards) + " shards, digest " + std::to_string(mine.map_digest)
           + ")";
  return {};
}

void dial(gateway_actor* self, std::size_t index) {
  auto& st = self->state;
  auto& p = st.peers[index];
  auto attempt = ++p.attempt;
  if (p.state != link::refused)
    set_state(self, p, link::connecting, {});
  // A failed attempt leaves the peer down (or refused) and plans the next.
  auto failed = [self, index, attempt](link to, std::string why) {
    auto& q = self->state.peers[index];
    if (q.attempt != attempt || q.state == link::up)
      return;
    lose(self, q, to, std::move(why));
  };
  auto mm = self->home_system().middleman().actor_handle();
  self->request(mm, st.cfg.connect_timeout, caf::connect_atom::value, p.node.host, p.node.port)
    .then(
      [self, index, attempt, failed](const caf::node_id& nid, caf::strong_actor_ptr& ptr,
                                     const std::set<std::string>&) {
        auto& q = self->state.peers[index];
        if (q.attempt != attempt)
          return;
        if (!ptr) {
          failed(link::down, "nothing is published on its port");
          return;
        }
        auto remote = caf::actor_cast<caf::actor>(ptr);
        self
          ->request(remote, self->state.cfg.connect_timeout, hello_atom::value,
                    my_hello(self->state))
          .then(
            [self, index, attempt, remote, nid, failed](hello_msg& answer) {
              auto& r = self->state.peers[index];
              if (r.attempt != attempt)
                return;
              if (!answer.refusal.empty()) {
                failed(link::refused, "it refused this node: " + answer.refusal);
                return;
              }
              if (answer.node != r.node.id) {
                failed(link::refused, "node " + answer.node + " answers on its port");
                return;
              }
              if (auto why = mismatch(self->state, answer); !why.empty()) {
                failed(link::refused, why);
                return;
              }
              connected(self, r, remote, nid);
              for (const auto& pl : answer.placements)
                adopt(self, pl);
            },
            [self, failed](caf::error& err) {
              failed(link::down, "no answer to hello: " + self->home_system().render(err));
            });
      },
      [self, failed](caf::error& err) {
        failed(link::down, "cannot connect: " + self->home_system().render(err));
      });
}

void record_rtt(peer& p, std::chrono::nanoseconds d) {
  auto us = static_cast<std::uint64_t>(std::max<std::int64_t>(0, d.count() / 1000));
  std::size_t i = 0;
  while (i < rtt_bounds.size() && us > rtt_bounds[i])
    ++i;
  ++p.rtt[i];
  p.rtt_sum_us += us;
}

/// The upper bound of the bucket holding quantile `q` of `p`'s round trips.
std::uint64_t rtt_quantile(const peer& p, double q) {
  std::uint64_t total = 0;
  for (auto n : p.rtt)
    total += n;
  if (total == 0)
    return 0;
  auto rank = static_cast<std::uint64_t>(q * static_cast<double>(total - 1)) + 1;
  std::uint64_t seen = 0;
  for (std::size_t i = 0; i < p.rtt.size(); ++i) {
    seen += p.rtt[i];
    if (seen >= rank)
      return i < rtt_bounds.size() ? rtt_bounds[i] : rtt_bounds.back() * 10;
  }
  return rtt_bounds.back() * 10;
}

void tick(gateway_actor* self) {
  auto& st = self->state;
  auto now = self->clock().now();
  for (std::size_t i = 0; i < st.peers.size(); ++i) {
    auto& p = st.peers[i];
    while (!p.by_deadline.empty() && p.by_deadline.begin()->first <= now) {
      auto req = p.by_deadline.begin()->second;
      p.by_deadline.erase(p.by_deadline.begin());
      auto it = p.in_flight.find(req);
      if (it == p.in_flight.end())
        continue;
      auto w = std::move(it->second);
      p.in_flight.erase(it);
      ++p.failed;
      auto waited = std::chrono::duration_cast<std::chrono::milliseconds>(now - w.sent);
      call_back(st, w.fn,
                error_reply({errc::unavailable,
                             "no answer from node " + p.node.id + " within "
                               + std::to_string(waited.count())
                               + " ms; the outcome is unknown: retry with the same command id",
                             st.cfg.node_id}));
    }
    if (p.state == link::up || p.state == link::suspect) {
      if (p.state == link::up && now - p.last_pong > st.cfg.heartbeat_timeout) {
        // The connection is kept: a pong makes the peer up again.
        auto silent = std::chrono::duration_cast<std::chrono::milliseconds>(now - p.last_pong);
        set_state(self, p, link::suspect,
                  "no answer to pings for " + std::to_string(silent.count()) + " ms");
        fail_all(st, p, not_up(st, p));
      }
      if (now >= p.next_ping) {
        p.next_ping = now + st.cfg.ping_interval;
        self->send(p.remote, ping_atom::value, ++p.ping_seq);
      }
    } else if (p.dials && p.state != link::connecting && now >= p.redial_at && !st.draining) {
      dial(self, i);
    }
  }
  if (!st.draining)
    self->delayed_send(self, std::min(max_tick, st.cfg.ping_interval), tick_atom::value);
}

cluster_status status_of(gateway_actor* self) {
  auto& st = self->state;
  cluster_status s;
  s.node_id = st.cfg.node_id;
  s.map_version = st.cfg.map.version;
  s.map_digest = st.cfg.map.digest();
  s.shards = static_cast<std::uint32_t>(st.cfg.map.owners.size());
  s.owned_shards = static_cast<std::uint32_t>(
    std::count_if(st.cfg.map.owners.begin(), st.cfg.map.owners.end(),
                  [&](const std::string& o) { return active_of(st, o) == st.cfg.node_id; }));
  s.dropped_messages = st.dropped;
  for (const auto& p : st.peers) {
    peer_status ps;
    ps.id = p.node.id;
    ps.host = p.node.host;
    ps.port = p.node.port;
    ps.state = link_name(p.state);
    ps.since_ns = p.since_ns;
    ps.reason = p.reason;
    ps.in_flight = p.in_flight.size();
    ps.forwarded = p.forwarded;
    ps.received = p.received;
    ps.failures = p.failed;
    ps.dropped = p.dropped;
    ps.rtt_us_buckets.assign(p.rtt.begin(), p.rtt.end());
    ps.rtt_us_bounds.assign(rtt_bounds.begin(), rtt_bounds.end());
    ps.rtt_us_sum = p.rtt_sum_us;
    ps.rtt_p50_us = rtt_quantile(p, 0.50);
    ps.rtt_p99_us = rtt_quantile(p, 0.99);
    s.peers.push_back(std::move(ps));
  }
  return s;
}

/// Bytes of strings in `m`: roughly its size on the wire.
std::size_t wire_bytes(const command_msg& m) {
  return m.category.size() + m.id.size() + m.payload.size() + m.command_id.size()
         + m.correlation_id.size() + m.causation_id.size() + m.tenant.size() + m.user.size()
         + m.subject.size() + 64;
}

std::size_t wire_bytes(const reply_msg& r) {
  auto n = r.message.size() + r.context.size() + r.state.size() + 64;
  for (const auto& e : r.events)
    n += e.type.size() + e.payload.size() + 16;
  return n;
}

/// Sends the commands queued for `p` as one message.
void send_commands(gateway_actor* self, peer& p) {
  if (p.out.items.empty())
    return;
  self->send(p.remote, forward_atom::value, std::move(p.out));
  p.out.items.clear(); // moved from: now known to be empty
  p.out_bytes = 0;
}

/// Sends the answers queued for `p` as one message.
void send_answers(gateway_actor* self, peer& p) {
  if (p.answers.items.empty())
    return;
  self->send(p.answers_to, forwarded_atom::value, std::move(p.answers));
  p.answers.items.clear();
  p.answers_bytes = 0;
}

void send_batches(gateway_actor* self) {
  for (auto& p : self->state.peers) {
    send_commands(self, p);
    send_answers(self, p);
  }
}

/// Sends the queued batches, but keeps an answer batch that the answers
/// still being served here for its peer could fill: under load they come in
/// a stream that the mailbox, drained faster than it fills, would cut into
/// batches of one or two. It waits up to answer_wait, and goes as soon as
/// fewer answers are pending than it has room for (a lone one at once).
void flush(gateway_actor* self) {
  auto& st = self->state;
  std::optional<time_point> now;
  for (auto& p : st.peers) {
    send_commands(self, p);
    if (p.answers.items.empty())
      continue;
    if (!st.draining && p.serving >= st.cfg.batch_items - p.answers.items.size()) {
      if (!now)
        now = self->clock().now();
      auto due = p.answers_since + st.cfg.answer_wait;
      if (*now < due) {
        if (st.wake_at <= *now || st.wake_at > due) {
          st.wake_at = due;
          self->delayed_send(self, due - *now, send_batches_atom::value);
        }
        continue;
      }
    }
    send_answers(self, p);
  }
}

/// Has the gateway send its batches once it has handled what is in its
/// mailbox now: the flush message lands behind it.
void plan_flush(gateway_actor* self) {
  auto& st = self->state;
  if (st.flush_planned)
    return;
  st.flush_planned = true;
  self->send(self, send_batches_atom::value);
}

void queue_command(gateway_actor* self, peer& p, forward_item&& item) {
  const auto& cfg = self->state.cfg;
  if (p.out.items.empty())
    p.out.items.reserve(std::min<std::size_t>(cfg.batch_items, 64)); // no moves while it grows
  p.out_bytes += wire_bytes(item.command);
  p.out.items.push_back(std::move(item));
  if (p.out.items.size() >= cfg.batch_items || p.out_bytes >= cfg.batch_bytes)
    send_commands(self, p);
  else
    plan_flush(self);
}

void queue_answer(gateway_actor* self, peer& p, const caf::actor& to, std::uint64_t req,
                  reply_msg&& r) {
  const auto& cfg = self->state.cfg;
  if (p.answers_to != to) {
    send_answers(self, p); // to the incarnation they were meant for
    p.answers_to = to;
  }
  if (p.answers.items.empty()) {
    p.answers_since = self->clock().now();
    p.answers.items.reserve(std::min<std::size_t>(cfg.batch_items, 64));
  }
  p.answers_bytes += wire_bytes(r);
  p.answers.items.push_back({req, std::move(r)});
  if (p.answers.items.size() >= cfg.batch_items || p.answers_bytes >= cfg.batch_bytes)
    send_answers(self, p);
  else
    plan_flush(self);
}

void finish_draining(gateway_actor* self) {
  auto& st = self->state;
  if (st.draining && st.route->outstanding() == 0) {
    send_batches(self); // the last answers
    for (auto& p : st.peers)
      if (p.remote)
        self->demonitor(p.remote);
    if (st.drained.pending())
      st.drained.deliver(true);
    self->quit();
  }
}

/// Serves a command another node forwarded: through the local registry,
/// answered to the gateway it came from, `reply_to`.
void serve(gateway_actor* self, peer& from, const caf::actor& reply_to, std::uint64_t req,
           std::int64_t bound_ms, command_msg& msg) {
  auto& st = self->state;
  ++from.received;
  auto index = static_cast<std::size_t>(&from - st.peers.data());
  auto answer = [self, index, reply_to, req](reply_msg&& r) {
    queue_answer(self, self->state.peers[index], reply_to, req, std::move(r));
  };
  if (st.draining) {
    answer(error_reply({errc::unavailable, "node " + st.cfg.node_id + " is shutting down"}));
    return;
  }
  auto stream = aggregate_stream(msg.category, msg.id);
  if (!stream) {
    answer(error_reply(stream.error()));
    return;
  }
  if (const auto& owner = active_of(st, st.cfg.map.owner_of(*stream)); owner != st.cfg.node_id) {
    answer(error_reply({errc::unavailable,
                        "node " + st.cfg.node_id + " does not serve shard "
                          + std::to_string(st.cfg.map.shard_of(*stream)) + " (node " + owner
                          + " does, map version " + std::to_string(st.cfg.map.version) + ")",
                        *stream}));
    return;
  }
  if (msg.replay) {
    // A store read of any length: on a thread of its own.
    self->spawn<caf::detached>(
      [](caf::event_based_actor* worker, std::function<reply_msg(const command_msg&)> replay,
         command_msg query, caf::actor to, std::uint64_t id) {
        reply_batch batch;
        batch.items.push_back(
          {id, replay ? replay(query)
                      : error_reply({errc::internal, "this node cannot replay streams"})});
        worker->send(to, forwarded_atom::value, std::move(batch));
      },
      st.cfg.replay, std::move(msg), reply_to, req);
    return;
  }
  // The sender's deadline is on its own clock; the bound travels instead.
  msg.deadline_ns = bound_ms > 0 ? steady_now_ns() + bound_ms * 1000000 : 0;
  ++from.serving;
  st.route->send(self, std::move(msg), std::chrono::milliseconds{0},
                 [self, index, answer](reply_msg& r) {
                   --self->state.peers[index].serving;
                   answer(std::move(r));
                   finish_draining(self);
                 });
}

void forward(gateway_actor* self, command_msg& msg, std::int64_t timeout_ms,
             std::function<void(reply_msg&&)> fn) {
  auto& st = self->state;
  auto stream = aggregate_stream(msg.category, msg.id);
  if (!stream) {
    call_back(st, fn, error_reply(stream.error()));
    return;
  }
  const auto& owner = active_of(st, st.cfg.map.owner_of(*stream));
  if (owner == st.cfg.node_id) { // a promotion moved it here since the runtime looked
    auto bound = timeout_ms > 0 ? std::chrono::milliseconds{timeout_ms} : st.cfg.remote_timeout;
    st.route->send(self, std::move(msg), bound, [self, fn = std::move(fn)](reply_msg& r) mutable {
      call_back(self->state, fn, std::move(r));
    });
    return;
  }
  auto* p = peer_by_id(st, owner);
  if (!p) {
    call_back(st, fn, error_reply({errc::internal, "no peer serves the stream's shard", *stream}));
    return;
  }
  if (st.draining) {
    call_back(st, fn,
              error_reply({errc::unavailable, "node " + st.cfg.node_id + " is shutting down"}));
    return;
  }
  if (p->state != link::up) {
    ++p->failed;
    call_back(st, fn, error_reply(not_up(st, *p)));
    return;
  }
  if (p->in_flight.size() >= st.cfg.max_in_flight) {
    ++p->failed;
    call_back(st, fn,
              error_reply({errc::overloaded,
                           std::to_string(p->in_flight.size()) + " commands in flight to node "
                             + p->node.id + " (max_in_flight_per_peer); back off",
                           *stream}));
    return;
  }
  auto bound = timeout_ms > 0 ? std::chrono::milliseconds{timeout_ms} : st.cfg.remote_timeout;
  auto now = self->clock().now();
  auto req = ++st.next_request;
  p->in_flight.emplace(req, waiting{std::move(fn), now, now + bound});
  p->by_deadline.emplace(now + bound, req);
  ++p->forwarded;
  msg.deadline_ns = 0;
  queue_command(self, *p, {req, static_cast<std::int64_t>(bound.count()), std::move(msg)});
}

void init(gateway_actor* self, gateway_config cfg, caf::actor registry) {
  auto& st = self->state;
  st.cfg = std::move(cfg);
  st.route.emplace(std::move(registry));
  for (const auto& p : st.cfg.placements)
    st.placements[p.owner] = p;
  for (const auto& n : st.cfg.nodes)
    if (n.id != st.cfg.node_id) {
      peer p;
      p.node = n;
      p.dials = st.cfg.node_id < n.id;
      p.since_ns = wall_now_ns();
      p.reason = p.dials ? "not connected yet" : "waiting for node " + n.id + " to connect";
      st.peers.push_back(std::move(p));
    }
  self->set_down_handler([self](caf::down_msg& dm) {
    for (auto& p : self->state.peers)
      if (p.remote && p.remote.address() == dm.source) {
        lose(self, p, link::down, "connection lost: " + self->home_system().render(dm.reason));
        return;
      }
  });
  self->set_default_handler(
    [self](caf::scheduled_actor*, caf::message_view& x) -> caf::result<caf::message> {
      drop(self, peer_of_sender(self),
           "a message of unexpected shape " + caf::to_string(x.content()));
      return caf::sec::unexpected_message;
    });
  for (std::size_t i = 0; i < st.peers.size(); ++i)
    if (st.peers[i].dials)
      dial(self, i);
  self->send(self, tick_atom::value);
}

caf::behavior gateway(gateway_actor* self, gateway_config cfg, caf::actor registry) {
  init(self, std::move(cfg), std::move(registry));
  return {
    // -- from this node's runtime ---------------------------------------------
    [self](submit_atom, command_msg& msg, std::int64_t timeout_ms, reply_callback& cb) {
      forward(self, msg, timeout_ms, std::move(cb.fn));
    },
    [self](status_atom) -> caf::result<cluster_status> {
      if (!from_here(self)) {
        drop(self, peer_of_sender(self), "a status request from another node");
        return caf::sec::unexpected_message;
      }
      return status_of(self);
    },
    [self](shutdown_atom) -> caf::result<bool> {
      if (!from_here(self)) {
        drop(self, peer_of_sender(self), "a shutdown from another node");
        return caf::sec::unexpected_message;
      }
      auto& st = self->state;
      st.draining = true;
      for (auto& p : st.peers)
        fail_all(st, p, {errc::unavailable, "node " + st.cfg.node_id + " is shutting down"});
      st.drained = self->make_response_promise();
      auto answer = st.drained;
      finish_draining(self);
      return answer;
    },
    [self](tick_atom) {
      if (!from_here(self)) {
        drop(self, peer_of_sender(self), "a tick from another node");
        return;
      }
      tick(self);
    },
    [self](send_batches_atom) {
      if (!from_here(self)) {
        drop(self, peer_of_sender(self), "a flush from another node");
        return;
      }
      self->state.flush_planned = false;
      flush(self);
    },
    // -- from other nodes -----------------------------------------------------
    [self](hello_atom, hello_msg& h) -> hello_msg {
      auto& st = self->state;
      auto answer = my_hello(st);
      const auto& sender = self->current_sender();
      auto* p = peer_by_id(st, h.node);
      if (!sender || !p) {
        answer.refusal = "node '" + h.node + "' is not in node " + st.cfg.node_id
                         + "'s cluster configuration";
        drop(self, nullptr, "a hello from " + answer.refusal);
        return answer;
      }
      if (auto why = mismatch(st, h); !why.empty()) {
        answer.refusal = why;
        if (p->remote)
          self->demonitor(p->remote);
        p->remote = nullptr;
        set_state(self, *p, link::refused, why);
        fail_all(st, *p, not_up(st, *p));
        return answer;
      }
      connected(self, *p, caf::actor_cast<caf::actor>(sender), sender->node());
      for (const auto& pl : h.placements)
        adopt(self, pl);
      return my_hello(st); // with what it taught this node
    },
    [self](forward_atom, forward_batch& batch) {
      auto* p = peer_of_sender(self);
      if (!p) {
        drop(self, nullptr,
             "a batch of " + std::to_string(batch.items.size())
               + " commands from a node that did not say hello");
        return;
      }
      auto reply_to = caf::actor_cast<caf::actor>(self->current_sender());
      for (auto& item : batch.items)
        serve(self, *p, reply_to, item.request, item.bound_ms, item.command);
    },
    [self](forwarded_atom, reply_batch& batch) {
      auto& st = self->state;
      auto* p = peer_of_sender(self);
      if (!p) {
        drop(self, nullptr, "a reply from a node that did not say hello");
        return;
      }
      auto now = self->clock().now();
      for (auto& item : batch.items) {
        auto it = p->in_flight.find(item.request);
        if (it == p->in_flight.end()) {
          ++p->late; // answered after its bound, or after the peer was given up
          continue;
        }
        auto w = std::move(it->second);
        p->in_flight.erase(it);
        p->by_deadline.erase({w.deadline, item.request});
        record_rtt(*p, now - w.sent);
        call_back(st, w.fn, std::move(item.reply));
      }
    },
    [self](ping_atom, std::uint64_t seq) {
      if (peer_of_sender(self) == nullptr) {
        drop(self, nullptr, "a ping from a node that did not say hello");
        return;
      }
      self->send(caf::actor_cast<caf::actor>(self->current_sender()), pong_atom::value, seq);
    },
    // -- promotion and standby replication (replication.hpp) ------------------
    [self](placement_atom, placement_msg& p) {
      auto& st = self->state;
      if (from_here(self)) {
        if (!adopt(self, p))
          return;
        for (auto& peer : st.peers)
          if (peer.remote && (peer.state == link::up || peer.state == link::suspect))
            self->send(peer.remote, placement_atom::value, p);
        return;
      }
      if (peer_of_sender(self) == nullptr) {
        drop(self, nullptr, "a placement from a node that did not say hello");
        return;
      }
      adopt(self, p);
    },
    [self](replica_atom, std::string& standby, caf::actor& source) {
      if (!from_here(self)) {
        drop(self, peer_of_sender(self), "a replication source from another node");
        return;
      }
      self->state.cfg.standby = std::move(standby);
      self->state.cfg.replication_source = std::move(source);
    },
    [self](replica_atom, std::string& owner, replica_hello& h, caf::actor& sink) {
      // From this node's sink: to the owner's gateway, while it is up. A
      // hello that cannot go is not queued; the sink says it again.
      if (!from_here(self)) {
        drop(self, peer_of_sender(self), "a standby hello in local form from another node");
        return;
      }
      auto* p = peer_by_id(self->state, owner);
      if (!p || !p->remote || (p->state != link::up && p->state != link::suspect))
        return;
      self->send(sink, replica_atom::value, p->nid);
      self->send(p->remote, replica_atom::value, std::move(h), std::move(sink));
    },
    [self](replica_atom, replica_hello& h, caf::actor& sink) {
      auto& st = self->state;
      auto* p = peer_of_sender(self);
      if (!p) {
        drop(self, nullptr, "a standby hello from a node that did not say hello");
        return;
      }
      if (p->node.id != h.node || h.node != st.cfg.standby || !st.cfg.replication_source || !sink
          || sink->node() != p->nid) {
        drop(self, p,
             "a standby hello from node " + p->node.id + ", which is not " + st.cfg.node_id
               + "'s standby");
        return;
      }
      self->send(st.cfg.replication_source, replica_atom::value, std::move(h), std::move(sink));
    },
    // -- cluster-wide subscribers (log_feed.hpp) ------------------------------
    [self](feed_atom, std::string& owner, feed_hello& h, caf::actor& sink) {
      // From a local subscriber: to the node that serves `owner`'s log now
      // (a promoted standby once its owner was replaced). A hello that
      // cannot go is not queued; the subscriber says it again.
      auto& st = self->state;
      if (!from_here(self) || !sink) {
        drop(self, peer_of_sender(self), "a log feed hello in local form from another node");
        return;
      }
      const auto& active = active_of(st, owner);
      if (active == st.cfg.node_id) {
        if (!st.cfg.serve_feed)
          return;
        self->send(sink, feed_atom::value, owner, self->home_system().node());
        st.cfg.serve_feed(h, sink);
        return;
      }
      auto* p = peer_by_id(st, active);
      if (!p || !p->remote || (p->state != link::up && p->state != link::suspect))
        return;
      self->send(sink, feed_atom::value, owner, p->nid);
      self->send(p->remote, feed_atom::value, std::move(h), std::move(sink));
    },
    [self](feed_atom, feed_hello& h, caf::actor& sink) {
      auto& st = self->state;
      auto* p = peer_of_sender(self);
      if (!p) {
        drop(self, nullptr, "a log feed hello from a node that did not say hello");
        return;
      }
      if (p->node.id != h.node || !sink || sink->node() != p->nid || !st.cfg.serve_feed
          || active_of(st, h.owner) != st.cfg.node_id) {
        drop(self, p,
             "a log feed hello from node " + p->node.id + " for node " + h.owner
               + "'s log, which node " + st.cfg.node_id + " does not serve");
        return;
      }
      st.cfg.serve_feed(h, sink);
    },
    [self](pong_atom, std::uint64_t) {
      auto* p = peer_of_sender(self);
      if (!p)
        return;
      p->last_pong = self->clock().now();
      if (p->state == link::suspect)
        set_state(self, *p, link::up, {});
    },
  };
}

} // namespace

caf::actor spawn_gateway(caf::actor_system& sys, gateway_config config, caf::actor registry) {
  return sys.spawn(gateway, std::move(config), std::move(registry));
}

} // namespace cairn::actors
