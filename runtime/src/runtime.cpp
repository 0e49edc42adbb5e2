#include "cairn/runtime/runtime.hpp"

#include <algorithm>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <thread>

#include <caf/all.hpp>
#include <caf/io/middleman.hpp>

#include "cairn/actors/aggregate_actor.hpp"
#include "cairn/actors/error.hpp"
#include "cairn/actors/gateway.hpp"
#include "cairn/actors/replication.hpp"
#include "cairn/actors/journal.hpp"
#include "cairn/actors/messages.hpp"
#include "cairn/actors/registry.hpp"
#include "cairn/actors/subscriber.hpp"
#include "cairn/actors/log.hpp"
#include "cairn/actors/router.hpp"
#include "cairn/actors/scheduler.hpp"
#include "cairn/actors/system.hpp"
#include "cairn/runtime/runtime_caf.hpp"
#include "logging.hpp"
#include "metrics_server.hpp"

namespace cairn {

namespace {

using actors::reply_msg;

const char* durability_name(persistence::durability d) {
  switch (d) {
    case persistence::durability::sync: return "sync";
    case persistence::durability::no_meta_sync: return "no_meta_sync";
    case persistence::durability::no_sync: return "no_sync";
  }
  return "unknown";
}

// A bridge turns an actor reply into a callback, so threads that are not
// actors can send commands without a blocking scoped_actor per call. Its
// router sends them straight to live aggregates. On shutdown it answers once
// every command it forwarded has been answered.
//
// A command sent without a timeout of its own is bounded by request_timeout
// through `watch`, checked by one coarse timer: a CAF request timeout per
// command registers a timer each and wakes the clock's thread each time.
struct waiting_callback {
  std::function<void(reply_msg&&)> fn;
  bool answered = false;
};

struct bridge_state {
  std::optional<actors::router> route;
  std::chrono::milliseconds bound{60000}; ///< runtime_options::request_timeout.
  /// Callbacks bounded by `bound`, by deadline (submit order, so sorted).
  std::deque<std::pair<std::chrono::steady_clock::time_point, std::shared_ptr<waiting_callback>>>
    watch;
  bool ticking = false;
  caf::response_promise drained;
  bool draining = false;
  static inline const char* name = "cairn.bridge";
};

/// Calls a caller's callback; what it throws is logged and swallowed, so
/// the bridge keeps serving everyone else.
void call_back(const std::function<void(reply_msg&&)>& fn, reply_msg&& r) {
  try {
    fn(std::move(r));
  } catch (...) {
    actors::logger(actors::runtime_logger)
      ->error("{} (ignored)", thrown_error("a send callback", {}).message);
  }
}

using bridge_actor = caf::stateful_actor<bridge_state>;

/// The period of the bound's check: a command waits at most bound + period.
std::chrono::milliseconds watch_period(std::chrono::milliseconds bound) {
  return std::clamp(bound / 4, std::chrono::milliseconds{1}, std::chrono::milliseconds{1000});
}

void check_watch(bridge_actor* self) {
  auto& st = self->state;
  st.ticking = false;
  auto now = std::chrono::steady_clock::now();
  while (!st.watch.empty()
         && (st.watch.front().second->answered || st.watch.front().first <= now)) {
    auto w = std::move(st.watch.front().second);
    st.watch.pop_front();
    if (w->answered)
      continue;
    w->answered = true; // the late answer, if any, is dropped
    call_back(w->fn, actors::error_reply({errc::unavailable, "timed out: no answer within "
                                                               + std::to_string(st.bound.count())
                                                               + " ms (request_timeout)"}));
  }
  if (!st.watch.empty()) {
    st.ticking = true;
    self->delayed_send(self, watch_period(st.bound), actors::tick_atom::value);
  }
}

caf::behavior bridge(bridge_actor* self, caf::actor registry, std::chrono::milliseconds bound) {
  self->state.route.emplace(std::move(registry));
  self->state.bound = bound;
  return {
    [self](actors::submit_atom, actors::command_msg& msg, std::int64_t timeout_ms,
           actors::reply_callback& cb) {
      auto& st = self->state;
      auto w = std::make_shared<waiting_callback>();
      w->fn = std::move(cb.fn);
      if (timeout_ms <= 0) {
        st.watch.emplace_back(std::chrono::steady_clock::now() + st.bound, w);
        if (!st.ticking) {
          st.ticking = true;
          self->delayed_send(self, watch_period(st.bound), actors::tick_atom::value);
        }
      }
      st.route->send(self, std::move(msg), std::chrono::milliseconds{timeout_ms},
                     [self, w](reply_msg& r) {
                       if (!w->answered) {
                         w->answered = true;
                         call_back(w->fn, std::move(r));
                       }
                       auto& now = self->state;
                       if (now.draining && now.route->outstanding() == 0) {
                         now.drained.deliver(true);
                         self->quit();
                       }
                     });
    },
    [self](actors::tick_atom) { check_watch(self); },
    [self](actors::stats_atom) { return self->state.route->outstanding(); },
    [self](actors::shutdown_atom) -> caf::result<bool> {
      auto& st = self->state;
      if (st.route->outstanding() == 0) {
        self->quit();
        return true;
      }
      st.draining = true;
      st.drained = self->make_response_promise();
      return st.drained;
    },
  };
}

} // namespace

struct runtime::impl {
  runtime_options opts;
  actors::metrics stats; // outlives every actor that records into it
  std::shared_ptr<spdlog::logger> log = actors::logger(actors::runtime_logger);
  std::unique_ptr<detail::metrics_server> metrics_server;
  std::unique_ptr<persistence::event_store> store; // outlives the actor system
  caf::actor_system_config cfg;
  std::unique_ptr<caf::actor_system> sys;
  caf::actor journal;
  caf::actor registry;
  caf::actor gateway; ///< With opts.cluster only; start() stores it under role_mutex.
  /// Log feeds this node serves to cluster-wide subscribers elsewhere
  /// (they read the store: stopped before it closes).
  std::mutex feeds_mutex;
  /// By subscribing node, subscriber and owner: a newer hello supersedes.
  std::map<std::string, caf::actor> feeds;

  /// The node serving `owner`'s log now: the owner, or its promoted standby.
  std::string active_of(const std::string& owner) const {
    for (const auto& pr : pairs)
      if (pr->owner == owner)
        return pr->standby_serves.load(std::memory_order_acquire) ? pr->standby : pr->owner;
    return owner;
  }

  // -- owner/standby pairs (docs/cluster.md#standby) --------------------------
  /// An owner and its standby: which of the two serves the owner's shards.
  /// Read on every caller's thread, written on a role change.
  struct pair_route {
    std::string owner;
    std::string standby;
    std::atomic<bool> standby_serves{false};
    std::atomic<std::uint64_t> epoch{0};
  };
  std::vector<std::unique_ptr<pair_route>> pairs; ///< Never resized after start.
  std::vector<int> shard_pair;                    ///< Shard -> index in pairs, or -1.
  pair_route* own_pair = nullptr;                 ///< The pair this node is in, if any.
  caf::actor control;        ///< Steps this node down when a peer reports a newer epoch.
  std::mutex role_mutex;     ///< Serializes role changes; guards the three below.
  bool serving_pair = false; ///< This node serves its pair's shards.
  caf::actor replication;    ///< The source (serving) or the sink (following).
  replication_mode mode = replication_mode::async;

  /// Builds the pairs and finds this node's role in its own from its log's
  /// newest epoch: the node that began it serves. An owner whose log has no
  /// epoch yet begins epoch 1 (before any actor writes).
  result<void> find_role() {
    const auto& c = *opts.cluster;
    mode = c.replication;
    shard_pair.assign(c.map.owners.size(), -1);
    for (const auto& n : c.nodes) {
      if (n.standby.empty())
        continue;
      auto pr = std::make_unique<pair_route>();
      pr->owner = n.id;
      pr->standby = n.standby;
      for (std::size_t s = 0; s < c.map.owners.size(); ++s)
        if (c.map.owners[s] == n.id)
          shard_pair[s] = static_cast<int>(pairs.size());
      if (n.id == c.node_id || n.standby == c.node_id)
        own_pair = pr.get();
      pairs.push_back(std::move(pr));
    }
    if (own_pair == nullptr)
      return {};
    auto epochs = store->epochs();
    if (!epochs)
      return tl::unexpected(epochs.error());
    const bool first_start = epochs->empty();
    if (first_start && own_pair->owner == c.node_id) {
      auto began = store->begin_epoch(1, c.node_id);
      if (!began)
        return tl::unexpected(began.error());
      epochs->push_back(*began);
    }
    serving_pair = !epochs->empty() && epochs->back().node == c.node_id;
    bool i_am_standby = own_pair->standby == c.node_id;
    own_pair->standby_serves = serving_pair ? i_am_standby : !i_am_standby;
    own_pair->epoch = epochs->empty() ? 0 : epochs->back().epoch;
    return {};
  }

  /// A node about to serve its pair's shards waits, fenced, to hear its
  /// partner (at most heartbeat_timeout): a partner promoted while it was
  /// down says so in its hello, and this node steps down before it
  /// acknowledges anything that the rejoin would cut. That holds for an
  /// owner started on an empty directory too (a lost disk, a new machine):
  /// its fresh epoch 1 shares nothing with the promoted log, so it would
  /// otherwise serve beside the partner until the hello. Called before
  /// start() returns, so no local caller is waiting.
  void confirm_role(const runtime& rt) {
    const auto& c = *opts.cluster;
    caf::anon_send(journal, actors::fenced_atom::value,
                   "node " + c.node_id + " is confirming with " + partner()
                     + " that no other node serves its shards");
    auto deadline = std::chrono::steady_clock::now() + c.heartbeat_timeout;
    bool heard = false;
    while (!heard && std::chrono::steady_clock::now() < deadline) {
      if (auto s = rt.cluster())
        for (const auto& p : s->peers)
          heard = heard || (p.id == partner() && p.state == "up");
      if (!heard)
        std::this_thread::sleep_for(std::chrono::milliseconds{10});
    }
    if (!heard)
      log->warn("node {} did not hear {} within {} ms: it serves its shards at epoch {} without "
                "knowing whether {} was promoted meanwhile",
                c.node_id, partner(), c.heartbeat_timeout.count(), own_pair->epoch, partner());
    // The partner's hello handed a newer placement to the control actor
    // before it showed the partner up: let it step this node down first.
    caf::scoped_actor self{*sys};
    self->request(control, std::chrono::seconds{5}, actors::status_atom::value)
      .receive([](bool) {}, [](caf::error&) {});
  }

  /// The node that serves `stream` now (cluster only).
  const std::string& served_by(std::string_view stream) const {
    const auto& m = opts.cluster->map;
    auto shard = m.shard_of(stream);
    if (auto i = shard_pair[shard]; i >= 0) {
      const auto& pr = *pairs[static_cast<std::size_t>(i)];
      return pr.standby_serves.load(std::memory_order_acquire) ? pr.standby : pr.owner;
    }
    return m.owners[shard];
  }

  /// The other node of this node's pair.
  const std::string& partner() const {
    return own_pair->owner == opts.cluster->node_id ? own_pair->standby : own_pair->owner;
  }

  /// Why a plain subscriber started now is held: this node serves no log
  /// of its pair (a standby); empty when it serves. Under role_mutex.
  std::string held_reason() const {
    if (own_pair == nullptr || serving_pair)
      return {};
    return "held: this node is the standby of " + partner();
  }

  /// Holds (this node stopped serving) or releases (it serves now) every
  /// running subscriber; projections ignore it. Under role_mutex, so no
  /// subscriber starts between the role change and this.
  void hold_subscribers(bool hold) {
    std::lock_guard lock{subscribers_mutex};
    for (const auto& entry : subscribers)
      if (hold)
        caf::anon_send(entry.second, actors::hold_atom::value, held_reason());
      else
        caf::anon_send(entry.second, actors::unhold_atom::value);
  }

  /// Replicates this node's log to its partner (it serves the pair's shards).
  void start_source() {
    const auto& c = *opts.cluster;
    actors::source_config sc;
    sc.node_id = c.node_id;
    sc.standby = partner();
    sc.window = c.replication_window;
    caf::actor control_ref = control;
    auto owner = own_pair->owner;
    sc.on_fenced = [control_ref, owner, active = partner()](std::uint64_t epoch) {
      caf::anon_send(control_ref, actors::placement_atom::value,
                     actors::placement_msg{owner, active, epoch});
    };
    caf::anon_send(journal, actors::fenced_atom::value, std::string{}); // it serves
    // Their own threads: on the shared scheduler a frame waited behind aggregates' work, which
    // put tens of milliseconds on the standby's lag p99 (cairn-bench replication).
    replication = actors::spawn_replication_source(*sys, *store, journal, std::move(sc),
                                                   actors::placement::detached);
    caf::anon_send(gateway, actors::replica_atom::value, partner(), replication);
    caf::anon_send(journal, actors::replication_atom::value, mode == replication_mode::sync,
                   caf::timespan{c.sync_timeout}, partner());
    log->info("node {} serves node {}'s shards at epoch {} and replicates to {} ({})", c.node_id,
              own_pair->owner, own_pair->epoch.load(), partner(), to_string(mode));
  }

  /// Follows the partner's log (this node is its standby now).
  void start_sink() {
    const auto& c = *opts.cluster;
    actors::sink_config kc;
    kc.node_id = c.node_id;
    kc.owner = partner();
    kc.gateway = gateway;
    kc.truncation_dir = opts.data_dir;
    caf::anon_send(journal, actors::fenced_atom::value,
                   "node " + c.node_id + " is the standby of node " + partner()
                     + ": it serves none of its shards; retry (the cluster routes it to "
                     + partner() + ")");
    replication = actors::spawn_replication_sink(*sys, *store, journal, kc,
                                                 actors::placement::detached);
    log->info("node {} is the standby of {}: it follows {}'s log", c.node_id, partner(), partner());
  }

  void stop_replication(caf::scoped_actor& self) {
    if (!replication)
      return;
    self->send_exit(replication, caf::exit_reason::user_shutdown);
    self->wait_for(replication);
    replication = nullptr;
  }

  /// This node's pair is served by another node from a newer epoch: stop
  /// serving at once and follow it.
  void step_down(const actors::placement_msg& p) {
    std::lock_guard lock{role_mutex};
    if (!serving_pair || stopped.load() || p.active == opts.cluster->node_id)
      return;
    serving_pair = false;
    auto why = "node " + opts.cluster->node_id + " no longer serves node " + p.owner
               + "'s shards: node " + p.active + " does from epoch " + std::to_string(p.epoch)
               + "; an unacknowledged commit of this node is cut when it rejoins: retry it there";
    log->error("stepping down: {}", why);
    caf::scoped_actor self{*sys};
    caf::anon_send(journal, actors::fenced_atom::value, why);
    caf::anon_send(journal, actors::replication_atom::value, false, caf::timespan{0},
                   std::string{});
    stop_replication(self);
    // Before start() stored the gateway (a peer's hello came first), the
    // gateway knows no source yet, and start() starts the sink once it has
    // stored it: a sink without a gateway would never reach its owner.
    if (gateway)
      caf::anon_send(gateway, actors::replica_atom::value, std::string{}, caf::actor{});
    std::vector<std::string> live;
    self->request(registry, std::chrono::seconds{5}, actors::live_atom::value)
      .receive([&](std::vector<std::string>& v) { live = std::move(v); }, [](caf::error&) {});
    if (!live.empty())
      self->request(registry, std::chrono::seconds{5}, actors::passivate_atom::value, live)
        .receive([](bool) {}, [](caf::error&) {});
    if (gateway)
      start_sink();
    hold_subscribers(true);
  }
  std::mutex types_mutex; ///< Guards `types`: registration against a peer's replay query.
  std::map<std::string, std::shared_ptr<const actors::aggregate_type>> types;
  std::vector<caf::actor> bridges;
  std::atomic<bool> stopped{false};
  bool abandoned = false;         ///< shutdown() passed its deadline: never destroyed.
  std::atomic<int> submitting{0}; ///< submit() calls past the stopped check.
  std::mutex subscribers_mutex;   ///< Guards `subscribers` (control calls, not the event path).
  std::map<std::string, caf::actor> subscribers;
  mutable std::mutex categories_mutex; ///< Guards `categories`.
  std::set<std::string> categories;    ///< Of the registered aggregate types.

  result<caf::actor> subscriber(const std::string& name) {
    std::lock_guard lock{subscribers_mutex};
    if (stopped.load())
      return fail(errc::unavailable, "the runtime is stopped");
    auto it = subscribers.find(name);
    if (it == subscribers.end())
      return fail(errc::invalid_argument, "no subscriber of this name is running", name);
    return it->second;
  }

  /// Asks subscriber `name` and waits for its answer of type T.
  template <class T, class... Ts>
  result<T> ask(const std::string& name, std::chrono::milliseconds timeout, Ts... msg) {
    auto sub = subscriber(name);
    if (!sub)
      return tl::unexpected(sub.error());
    result<T> out = fail(errc::internal, "no answer", name);
    caf::scoped_actor self{*sys};
    auto on_error = [&](caf::error& err) {
      // The subscriber's own answer keeps its code; of CAF's, only a timeout
      // says "retry" (anything else: no such subscriber any more).
      if (auto e = actors::from_caf_error(err)) {
        if (e->context.empty())
          e->context = name;
        out = tl::unexpected(std::move(*e));
        return;
      }
      out = fail(err == caf::sec::request_timeout ? errc::unavailable : errc::invalid_argument,
                 sys->render(err), name);
    };
    if (timeout.count() <= 0)
      timeout = opts.request_timeout;
    self->request(*sub, timeout, msg...).receive([&](T& v) { out = std::move(v); }, on_error);
    return out;
  }
};

namespace {

/// Per-peer cluster metrics in the Prometheus text format (docs/cluster.md#metrics).
std::string cluster_prometheus(const cluster_status& s) {
  std::string out;
  auto family = [&](const char* name, const char* type, const char* help) {
    out += std::string{"# HELP cairn_cluster_"} + name + " " + help + "\n# TYPE cairn_cluster_"
           + name + " " + type + "\n";
  };
  auto line = [&](const char* name, const std::string& peer, std::uint64_t v) {
    out += std::string{"cairn_cluster_"} + name + "{peer=\"" + peer + "\"} " + std::to_string(v)
           + "\n";
  };
  family("peer_up", "gauge", "1 while the peer is connected and answers pings.");
  for (const auto& p : s.peers)
    line("peer_up", p.id, p.state == "up" ? 1 : 0);
  family("in_flight", "gauge", "Commands forwarded to the peer and not yet answered.");
  for (const auto& p : s.peers)
    line("in_flight", p.id, p.in_flight);
  family("forwarded_total", "counter", "Commands and queries forwarded to the peer.");
  for (const auto& p : s.peers)
    line("forwarded_total", p.id, p.forwarded);
  family("received_total", "counter", "Commands the peer forwarded to this node.");
  for (const auto& p : s.peers)
    line("received_total", p.id, p.received);
  family("failures_total", "counter",
         "Commands for the peer's shards that failed here (peer not up, timeout, overloaded).");
  for (const auto& p : s.peers)
    line("failures_total", p.id, p.failures);
  family("dropped_total", "counter", "Messages from the peer dropped as malformed.");
  for (const auto& p : s.peers)
    line("dropped_total", p.id, p.dropped);
  family("round_trip_seconds", "histogram", "Round trip of a forwarded command.");
  for (const auto& p : s.peers) {
    std::uint64_t cumulative = 0;
    for (std::size_t i = 0; i < p.rtt_us_buckets.size(); ++i) {
      cumulative += p.rtt_us_buckets[i];
      auto le = i < p.rtt_us_bounds.size()
                  ? fmt::format("{}", static_cast<double>(p.rtt_us_bounds[i]) / 1e6)
                  : std::string{"+Inf"};
      out += "cairn_cluster_round_trip_seconds_bucket{peer=\"" + p.id + "\",le=\"" + le + "\"} "
             + std::to_string(cumulative) + "\n";
    }
    out += "cairn_cluster_round_trip_seconds_sum{peer=\"" + p.id + "\"} "
           + fmt::format("{}", static_cast<double>(p.rtt_us_sum) / 1e6) + "\n";
    out += "cairn_cluster_round_trip_seconds_count{peer=\"" + p.id + "\"} "
           + std::to_string(cumulative) + "\n";
  }
  for (const auto& r : s.replication) {
    auto gauge = [&](const char* name, const char* type, const char* help, std::uint64_t v) {
      out += std::string{"# HELP cairn_replication_"} + name + " " + help
             + "\n# TYPE cairn_replication_" + name + " " + type + "\ncairn_replication_" + name
             + "{role=\"" + r.role + "\",peer=\"" + r.peer + "\"} " + std::to_string(v) + "\n";
    };
    gauge("connected", "gauge", "1 while frames flow between this node and its peer.",
          r.connected ? 1 : 0);
    gauge("epoch", "gauge", "The newest epoch this node knows.", r.epoch);
    gauge("log_end_position", "gauge", "The owner's durable log end (as last heard).", r.committed);
    gauge("acknowledged_position", "gauge", "The replica holds the log up to here durably.",
          r.acknowledged);
    gauge("lag_positions", "gauge", "Records the replica is behind the owner's durable log.",
          r.committed > r.acknowledged ? r.committed - r.acknowledged : 0);
    gauge("frames_total", "counter", "Frames sent (owner) or applied (standby).", r.frames);
    gauge("bytes_total", "counter", "Record bytes sent (owner) or applied (standby).", r.bytes);
    gauge("truncated_records_total", "counter",
          "Records cut from this node's divergent tail when it rejoined.", r.truncated);
    gauge("fenced", "gauge", "1 once a standby refused this node's epoch.", r.fenced ? 1 : 0);
  }
  out += "# HELP cairn_cluster_dropped_messages_total Messages from unknown senders dropped.\n"
         "# TYPE cairn_cluster_dropped_messages_total counter\n"
         "cairn_cluster_dropped_messages_total "
         + std::to_string(s.dropped_messages) + "\n";
  return out;
}

/// Spawns the gateway and publishes it on this node's cluster port.
result<caf::actor>
start_gateway(caf::actor_system& sys, const runtime_options& opts, caf::actor registry,
              spdlog::logger& log,
              std::function<actors::reply_msg(const actors::command_msg&)> replay,
              std::vector<actors::placement_msg> placements,
              std::function<void(const actors::placement_msg&)> on_placement,
              std::function<void(actors::feed_hello&, caf::actor)> serve_feed) {
  const auto& c = *opts.cluster;
  actors::gateway_config gc;
  gc.node_id = c.node_id;
  for (const auto& n : c.nodes)
    gc.nodes.push_back({n.id, n.host, n.port});
  gc.map = c.map;
  gc.ping_interval = c.ping_interval;
  gc.heartbeat_timeout = c.heartbeat_timeout;
  gc.connect_timeout = c.connect_timeout;
  gc.remote_timeout = c.remote_timeout.count() > 0 ? c.remote_timeout : opts.request_timeout;
  gc.max_in_flight = std::max<std::size_t>(1, c.max_in_flight_per_peer);
  gc.replay = std::move(replay);
  gc.placements = std::move(placements);
  gc.on_placement = std::move(on_placement);
  gc.serve_feed = std::move(serve_feed);
  auto me = std::find_if(c.nodes.begin(), c.nodes.end(),
                         [&](const cluster_node& n) { return n.id == c.node_id; });
  auto gateway = actors::spawn_gateway(sys, std::move(gc), std::move(registry));
  // reuse: a node restarted at once gets its port back from TIME_WAIT.
  auto port = sys.middleman().publish(gateway, me->port, me->host.c_str(), true);
  if (!port) {
    caf::anon_send_exit(gateway, caf::exit_reason::user_shutdown);
    return fail(errc::unavailable,
                "cannot listen for the cluster on " + me->host + ":" + std::to_string(me->port)
                  + ": " + sys.render(port.error()),
                c.node_id);
  }
  log.info("cluster node {} listening on {}:{} ({} of {} shards, map version {}); the "
           "cluster port has no authentication or TLS: bind it to loopback or a private "
           "network",
           c.node_id, me->host, *port,
           std::count(c.map.owners.begin(), c.map.owners.end(), c.node_id), c.map.owners.size(),
           c.map.version);
  return gateway;
}

} // namespace

runtime::runtime(std::unique_ptr<impl> p)
    : impl_(std::move(p)), registry_(std::make_shared<persistence::event_registry>()) {}

result<std::unique_ptr<runtime>> runtime::start(runtime_options opts) {
  detail::configure_logging(opts.log_format, opts.log_sinks);
  auto p = std::make_unique<impl>();
  p->opts = std::move(opts);
  // Checked before anything starts; binding waits until the runtime exists.
  if (!p->opts.metrics_address.empty())
    if (auto ok = detail::parse_listen_address(p->opts.metrics_address); !ok) {
      p->log->error("cannot start: {}", ok.error().to_string());
      return tl::unexpected(ok.error());
    }
  auto store_opts = p->opts.store;
  store_opts.durability = p->opts.durability;
  store_opts.registry = nullptr; // types are checked per aggregate at registration
  auto store = persistence::open_store(p->opts.data_dir, store_opts);
  if (!store) {
    p->log->error("cannot open the store in {}: {}", p->opts.data_dir, store.error().to_string());
    return tl::unexpected(store.error());
  }
  p->store = std::move(*store);
  auto threads = p->opts.worker_threads != 0 ? p->opts.worker_threads
                                             : std::max(1u, std::thread::hardware_concurrency());
  // Built by hand, not parsed: no caf-application.ini or command line is read.
  p->cfg.set("scheduler.max-threads", static_cast<std::size_t>(threads));
  actors::use_work_stealing_scheduler(p->cfg);
  actors::add_error_category(p->cfg); // renders errors that carry an errc
  if (p->opts.cluster) {
    const auto& c = *p->opts.cluster;
    if (auto ok = validate(c); !ok) {
      p->log->error("cannot start: {}", ok.error().to_string());
      return tl::unexpected(ok.error());
    }
    p->cfg.load<caf::io::middleman>();
    // Off by default in CAF 0.17; without them a silent peer is never dropped.
    p->cfg.set("middleman.heartbeat-interval", caf::timespan{c.heartbeat_interval});
    p->cfg.set("middleman.connection-timeout", caf::timespan{c.heartbeat_timeout});
    if (c.middleman_workers != 0)
      p->cfg.set("middleman.workers", static_cast<std::size_t>(c.middleman_workers));
    actors::add_cluster_message_types(p->cfg);
  }
  if (p->opts.cluster)
    if (auto ok = p->find_role(); !ok) {
      p->log->error("cannot start: {}", ok.error().to_string());
      return tl::unexpected(ok.error());
    }
  try {
    p->sys = std::make_unique<caf::actor_system>(p->cfg);
  } catch (const std::exception& e) {
    p->log->error("cannot start the actor system: {}", e.what());
    return fail(errc::internal, std::string{"cannot start the actor system: "} + e.what());
  }
  p->journal = actors::spawn_journal(*p->sys, *p->store, p->stats);
  actors::registry_options ro;
  ro.idle_timeout = p->opts.idle_timeout;
  ro.max_live = std::max<std::size_t>(1, p->opts.max_live_aggregates);
  ro.max_activations = std::max<std::size_t>(1, p->opts.max_concurrent_activations);
  ro.max_waiting = std::max<std::size_t>(1, p->opts.max_waiting_commands);
  if (p->own_pair != nullptr)
    ro.refuses = [im = p.get()](const std::string& stream) -> std::string {
      const auto& by = im->served_by(stream);
      if (by == im->opts.cluster->node_id)
        return {};
      return "node " + im->opts.cluster->node_id + " does not serve shard "
             + std::to_string(im->opts.cluster->map.shard_of(stream)) + ": node " + by
             + " does; retry";
    };
  p->registry = actors::spawn_registry(*p->sys, ro, p->stats);
  for (unsigned i = 0; i < std::max(2u, threads); ++i)
    p->bridges.push_back(p->sys->spawn(bridge, p->registry, p->opts.request_timeout));
  std::unique_ptr<runtime> rt{new runtime(std::move(p))};
  auto& im = *rt->impl_;
  if (im.opts.cluster) {
    auto* self = rt.get();
    std::vector<actors::placement_msg> placements;
    for (const auto& pr : im.pairs)
      placements.push_back({pr->owner, pr->standby_serves ? pr->standby : pr->owner, pr->epoch});
    if (im.own_pair != nullptr)
      // The impl travels as a spawn argument: CAF 0.17 dereferences a null argument tuple when a
      // function actor gets none (UBSan reports it).
      im.control = im.sys->spawn<caf::detached>(
        [](caf::event_based_actor*, impl* owner) -> caf::behavior {
          return {
            [owner](actors::placement_atom, actors::placement_msg& pl) { owner->step_down(pl); },
            [](actors::status_atom) { return true; }, // answered after what came before
          };
        },
        &im);
    auto on_placement = [&im](const actors::placement_msg& pl) {
      for (auto& pr : im.pairs)
        if (pr->owner == pl.owner) {
          pr->epoch = pl.epoch;
          pr->standby_serves.store(pl.active == pr->standby, std::memory_order_release);
          if (pr.get() == im.own_pair && pl.active != im.opts.cluster->node_id)
            caf::anon_send(im.control, actors::placement_atom::value, pl);
        }
    };
    auto serve_feed = [&im](actors::feed_hello& h, caf::actor sink) {
      std::lock_guard lock{im.feeds_mutex};
      if (im.stopped.load())
        return;
      // A subscriber says hello again after losing its feed: the new feed
      // replaces the old one, which stops, so there is one per subscriber.
      auto key = h.node + '\0' + h.name + '\0' + h.owner;
      auto& feed = im.feeds[key];
      if (feed)
        caf::anon_send_exit(feed, caf::exit_reason::user_shutdown);
      feed = actors::spawn_log_feed(*im.sys, *im.store, im.journal, std::move(h), std::move(sink));
    };
    auto gateway = start_gateway(
      *im.sys, im.opts, im.registry, *im.log,
      [self](const actors::command_msg& q) { return self->replay_here(q); }, std::move(placements),
      std::move(on_placement), std::move(serve_feed));
    if (!gateway) {
      im.log->error("cannot start: {}", gateway.error().to_string());
      rt->shutdown();
      return tl::unexpected(gateway.error());
    }
    bool serving = false;
    {
      // A peer's hello may have had the control actor step this node down
      // already: step_down reads the gateway under the same lock.
      std::lock_guard lock{im.role_mutex};
      im.gateway = std::move(*gateway);
      serving = im.serving_pair;
    }
    if (im.own_pair != nullptr && serving)
      im.confirm_role(*rt);
    if (im.own_pair != nullptr) {
      std::lock_guard lock{im.role_mutex};
      if (im.serving_pair)
        im.start_source();
      else if (!im.replication) // a step-down while it confirmed started the sink already
        im.start_sink();
    }
  }
  if (!im.opts.metrics_address.empty()) {
    auto* self = rt.get();
    std::function<std::optional<cluster_status>()> cluster; // none: GET /cluster answers 404
    if (im.opts.cluster)
      cluster = [self]() -> std::optional<cluster_status> {
        auto s = self->cluster();
        return s ? std::optional<cluster_status>{std::move(*s)} : std::nullopt;
      };
    std::function<result<std::string>(const std::string&)> admin;
    if (im.opts.cluster && im.opts.cluster_admin)
      admin = [self](const std::string& action) -> result<std::string> {
        if (action == "promote")
          return self->promote().map(
            [](std::uint64_t e) { return "promoted: epoch " + std::to_string(e); });
        auto mode = action == "sync" ? replication_mode::sync : replication_mode::async;
        return self->set_replication(mode).map(
          [&] { return "replication " + std::string{to_string(mode)}; });
      };
    auto server = detail::metrics_server::start(
      im.opts.metrics_address,
      [self] {
        auto text = to_prometheus(self->metrics());
        if (self->impl_->opts.cluster)
          if (auto s = self->cluster())
            text += cluster_prometheus(*s);
        return text;
      },
      std::move(cluster), std::move(admin));
    if (!server) {
      im.log->error("cannot start: {}", server.error().to_string());
      rt->shutdown();
      return tl::unexpected(server.error());
    }
    im.metrics_server = std::move(*server);
  }
  im.log->info("started: data dir {}, durability {}, {} worker threads{}", im.opts.data_dir,
               durability_name(im.opts.durability), threads,
               im.metrics_server
                 ? ", metrics at http://" + im.metrics_server->endpoint() + "/metrics"
                 : std::string{});
  return rt;
}

namespace {

/// What a shutdown past its deadline leaves to the process's exit: actors
/// still running user code may touch it. Reachable from here, so leak
/// checkers do not report it; never destroyed.
void keep_forever(std::shared_ptr<void> part) {
  static std::mutex mutex;
  static auto* kept = new std::vector<std::shared_ptr<void>>;
  std::lock_guard lock{mutex};
  kept->push_back(std::move(part));
}

} // namespace

runtime::~runtime() {
  shutdown();
  if (impl_ && impl_->abandoned) {
    keep_forever(registry_);
    keep_forever(std::shared_ptr<impl>(std::move(impl_)));
  }
}

void runtime::shutdown() {
  if (!impl_ || impl_->stopped.exchange(true))
    return;
  auto& im = *impl_;
  using clock = std::chrono::steady_clock;
  auto deadline = clock::now() + im.opts.shutdown_timeout;
  auto left = [deadline] {
    return std::max(std::chrono::milliseconds{1},
                    std::chrono::duration_cast<std::chrono::milliseconds>(deadline - clock::now()));
  };
  // First, so no scrape asks a subscriber that is going away.
  im.metrics_server.reset();
  // A submit that passed the stopped check is still sending: let it finish,
  // so nothing reaches a bridge after the bridge quit.
  while (im.submitting.load() != 0)
    std::this_thread::yield();
  std::vector<std::string> abandoned; // what did not stop by the deadline
  {
    caf::scoped_actor self{*im.sys};
    // Stops `who`; false when it did not answer in time.
    auto stop = [&](const caf::actor& who, auto atom) {
      bool answered = true;
      self->request(who, left(), atom)
        .receive([](bool) {},
                 [&](caf::error& err) { answered = err != caf::sec::request_timeout; });
      return answered;
    };
    // The gateway first: it fails what it forwarded and answers what other
    // nodes sent here, while the registry still serves them.
    if (im.gateway && !stop(im.gateway, actors::shutdown_atom::value))
      abandoned.push_back("the cluster gateway");
    {
      std::map<std::string, caf::actor> feeds;
      {
        std::lock_guard lock{im.feeds_mutex};
        feeds.swap(im.feeds);
      }
      for (auto& entry : feeds) {
        self->send_exit(entry.second, caf::exit_reason::user_shutdown);
        self->wait_for(entry.second);
      }
    }
    if (im.control) { // no step-down starts after this
      self->send_exit(im.control, caf::exit_reason::user_shutdown);
      self->wait_for(im.control);
    }
    {
      std::lock_guard lock{im.role_mutex};
      im.stop_replication(self); // holds no reply of anyone's: it just stops
    }
    // Bridges next: each answers once everything it forwarded is answered,
    // so every command in flight gets its real outcome. Then the registry
    // stops every aggregate, and the journal commits whatever is still queued.
    for (std::size_t i = 0; i < im.bridges.size(); ++i)
      if (!stop(im.bridges[i], actors::shutdown_atom::value)) {
        std::size_t waiting = 0;
        self->request(im.bridges[i], std::chrono::milliseconds{100}, actors::stats_atom::value)
          .receive([&](std::size_t n) { waiting = n; }, [](caf::error&) {});
        abandoned.push_back("bridge " + std::to_string(i) + " (" + std::to_string(waiting)
                            + " commands unanswered)");
      }
    if (!stop(im.registry, actors::shutdown_atom::value)) {
      std::vector<std::string> live;
      self->request(im.registry, std::chrono::milliseconds{100}, actors::live_atom::value)
        .receive([&](std::vector<std::string>& v) { live = std::move(v); }, [](caf::error&) {});
      std::string names;
      for (std::size_t i = 0; i < live.size() && i < 10; ++i)
        names += (i == 0 ? "" : ", ") + live[i];
      abandoned.push_back("aggregates that did not stop: " + std::to_string(live.size())
                          + (names.empty() ? "" : " (" + names + ")"));
    }
    // Subscribers write their final checkpoints through the journal.
    std::map<std::string, caf::actor> subscribers;
    {
      std::lock_guard lock{im.subscribers_mutex};
      subscribers.swap(im.subscribers);
    }
    for (auto& [name, sub] : subscribers)
      if (!stop(sub, actors::stop_atom::value))
        abandoned.push_back("subscriber " + name);
    if (!stop(im.journal, actors::shutdown_atom::value))
      abandoned.push_back("the journal");
  }
  im.bridges.clear();
  im.gateway = nullptr;
  im.control = nullptr;
  im.journal = nullptr;
  im.registry = nullptr;
  if (!abandoned.empty()) {
    std::string what;
    for (const auto& a : abandoned)
      what += (what.empty() ? "" : "; ") + a;
    im.log->error("shutdown gave up after {} ms on: {}. User code may be blocking them; their "
                  "threads and the store stay until the process exits",
                  im.opts.shutdown_timeout.count(), what);
    im.abandoned = true;
    keep_forever(std::shared_ptr<caf::actor_system>(std::move(im.sys)));
    keep_forever(std::shared_ptr<persistence::event_store>(std::move(im.store)));
    return;
  }
  actors::stop_caf_internal_actors(*im.sys, left());
  im.sys.reset(); // every actor of ours has stopped: this waits for their threads
  im.store.reset();
  im.log->info("stopped: data dir {}", im.opts.data_dir);
}

void runtime::add_aggregate(std::shared_ptr<const actors::aggregate_type> type,
                            const aggregate_options& opts) {
  {
    std::lock_guard lock{impl_->types_mutex};
    impl_->types[type->category()] = type;
  }
  auto env = std::make_shared<actors::aggregate_env>();
  env->store = impl_->store.get();
  env->journal = impl_->journal;
  env->registry_actor = impl_->registry;
  env->snapshot_interval = opts.snapshot_interval.value_or(impl_->opts.snapshot_interval);
  env->record_commands = opts.record_commands.value_or(impl_->opts.record_commands);
  env->max_waiting = std::max<std::size_t>(1, impl_->opts.max_waiting_commands);
  // Often enough that an aggregate in use stays ahead of the idle sweep.
  env->touch_every = std::min<std::chrono::nanoseconds>(impl_->opts.idle_timeout / 4,
                                                        std::chrono::seconds{1});
  env->stats = &impl_->stats;
  env->request_timeout = impl_->opts.request_timeout;
  env->log = actors::logger(actors::aggregate_logger);
  {
    std::lock_guard lock{impl_->categories_mutex};
    impl_->categories.insert(type->category());
  }
  caf::anon_send(impl_->registry, actors::kind_atom::value,
                 actors::kind_of(std::move(type), std::move(env)));
}

result<void> runtime::check_what_if(const std::string& category,
                                    const what_if_filter& filter) const {
  if (stopped())
    return fail(errc::unavailable, "the runtime is stopped");
  {
    std::lock_guard lock{impl_->categories_mutex};
    if (impl_->categories.count(category) == 0)
      return fail(errc::invalid_argument,
                  "what_if: aggregate type " + category + " is not registered", category);
  }
  for (const auto& id : filter.ids)
    if (auto stream = aggregate_stream(category, id); !stream)
      return tl::unexpected(stream.error());
  return {};
}

result<std::unique_ptr<actors::state_box>>
runtime::replay(const actors::aggregate_type& type, const std::string& id,
                std::uint64_t max_version,
                const std::function<bool(const persistence::event_view&)>& keep) {
  auto stream = aggregate_stream(type.category(), id);
  if (!stream)
    return tl::unexpected(stream.error());
  auto state = type.initial(*stream);
  if (!state)
    return tl::unexpected(state.error());
  auto folded = actors::fold_stream(store(), type, **state, *stream, 0, max_version, keep);
  if (!folded)
    return tl::unexpected(folded.error());
  return std::move(*state);
}

actors::reply_msg runtime::replay_here(const actors::command_msg& q) {
  std::shared_ptr<const actors::aggregate_type> type;
  {
    std::lock_guard lock{impl_->types_mutex};
    if (auto it = impl_->types.find(q.category); it != impl_->types.end())
      type = it->second;
  }
  if (!type)
    return actors::error_reply(
      {errc::invalid_argument, "no aggregate type of this category is registered", q.category});
  std::function<bool(const persistence::event_view&)> keep;
  if (q.as_of_ns != 0)
    keep = [as_of = q.as_of_ns](const persistence::event_view& e) {
      return e.timestamp_ns <= as_of;
    };
  auto state = replay(*type, q.id, q.to_version, keep);
  if (!state)
    return actors::error_reply(state.error());
  actors::reply_msg r;
  if (auto ok = type->encode_state(**state, r.state, q.category + "-" + q.id); !ok)
    return actors::error_reply(ok.error());
  return r;
}

std::optional<result<std::string>> runtime::replay_remotely(const std::string& category,
                                                            const std::string& id,
                                                            std::uint64_t to_version,
                                                            std::int64_t as_of_ns) {
  if (!impl_->gateway)
    return std::nullopt;
  const auto& c = *impl_->opts.cluster;
  auto stream = aggregate_stream(category, id);
  if (!stream || impl_->served_by(*stream) == c.node_id)
    return std::nullopt; // served here; an invalid id gets its error there
  actors::command_msg msg;
  msg.category = category;
  msg.id = id;
  msg.query = true;
  msg.replay = true;
  msg.to_version = to_version;
  msg.as_of_ns = as_of_ns;
  auto promise = std::make_shared<std::promise<actors::reply_msg>>();
  auto future = promise->get_future();
  submit(std::move(msg), {},
         [promise](actors::reply_msg&& r) { promise->set_value(std::move(r)); });
  auto reply = future.get();
  if (!reply.ok())
    return result<std::string>{tl::unexpected(reply.error())};
  return result<std::string>{std::move(reply.state)};
}

result<void> runtime::add_subscriber(const std::string& name, subscription_filter filter,
                                     const subscription_options& opts, bool projection,
                                     actors::subscriber_handler handle) {
  actors::subscriber_spec spec;
  spec.name = name;
  spec.filter = std::move(filter);
  spec.options = opts;
  spec.projection = projection;
  spec.handle = std::move(handle);
  spec.request_timeout = impl_->opts.request_timeout;
  if (opts.cluster_wide) {
    if (!impl_->opts.cluster)
      return fail(errc::invalid_argument,
                  "a cluster-wide subscriber needs runtime_options::cluster", name);
    const auto& c = *impl_->opts.cluster;
    spec.node_id = c.node_id;
    // One source per log: each node that owns shards in the map.
    for (const auto& owner : c.map.owners)
      if (std::none_of(spec.sources.begin(), spec.sources.end(),
                       [&](const actors::subscriber_source& x) { return x.node == owner; }))
        spec.sources.push_back({owner, impl_->active_of(owner) == c.node_id});
  }
  if (auto ok = actors::validate_subscriber(spec); !ok)
    return ok;
  commands_started_.store(true); // decoding reads the registry from now on
  // A plain subscriber on a standby is held until the node is promoted: the
  // owner's subscriber acts on these events (docs/cluster.md#what-is-copied).
  // The role stays as it is until the subscriber is in the map.
  std::unique_lock<std::mutex> role_lock{impl_->role_mutex, std::defer_lock};
  if (impl_->own_pair != nullptr) {
    role_lock.lock();
    if (!projection)
      spec.held = impl_->held_reason();
  }
  std::lock_guard lock{impl_->subscribers_mutex};
  if (impl_->stopped.load())
    return fail(errc::unavailable, "the runtime is stopped");
  if (impl_->subscribers.count(name) != 0)
    return fail(errc::invalid_argument, "a subscriber of this name is already running", name);
  impl_->subscribers.emplace(name,
                             actors::spawn_subscriber(*impl_->sys, *impl_->store, impl_->journal,
                                                      std::move(spec), actors::placement::detached,
                                                      impl_->gateway));
  return {};
}

result<void> runtime::unsubscribe(const std::string& name) {
  auto done = impl_->ask<bool>(name, std::chrono::milliseconds{0}, actors::stop_atom::value);
  if (!done)
    return tl::unexpected(done.error());
  std::lock_guard lock{impl_->subscribers_mutex};
  impl_->subscribers.erase(name);
  return {};
}

result<void> runtime::rebuild(const std::string& name) {
  auto done = impl_->ask<bool>(name, std::chrono::milliseconds{0}, actors::rebuild_atom::value);
  if (!done)
    return tl::unexpected(done.error());
  return {};
}

result<void> runtime::wait_for(const std::string& name, std::uint64_t position,
                               std::chrono::milliseconds timeout) {
  auto done = impl_->ask<bool>(name, std::max(timeout, std::chrono::milliseconds{1}),
                               actors::wait_atom::value, position);
  if (!done)
    return tl::unexpected(done.error());
  return {};
}

result<subscription_status> runtime::subscription(const std::string& name) {
  return impl_->ask<subscription_status>(name, std::chrono::milliseconds{0},
                                         actors::status_atom::value);
}

std::vector<subscription_status> runtime::subscriptions() {
  std::vector<std::string> names;
  {
    std::lock_guard lock{impl_->subscribers_mutex};
    for (const auto& [name, sub] : impl_->subscribers)
      names.push_back(name);
  }
  std::vector<subscription_status> out;
  for (const auto& name : names)
    if (auto s = subscription(name))
      out.push_back(std::move(*s));
  return out;
}

result<std::vector<persistence::dead_letter>> runtime::dead_letters(const std::string& name) {
  if (stopped())
    return fail(errc::unavailable, "the runtime is stopped");
  if (name.empty())
    return fail(errc::invalid_argument, "a subscriber name is needed");
  return impl_->store->list_dead_letters(name);
}

result<replay_report> runtime::replay_dead_letters(const std::string& name,
                                                   std::uint64_t position) {
  return impl_->ask<replay_report>(name, std::chrono::milliseconds{0}, actors::replay_atom::value,
                                   position);
}

result<std::uint64_t> runtime::discard_dead_letters(const std::string& name,
                                                    std::uint64_t position) {
  return impl_->ask<std::uint64_t>(name, std::chrono::milliseconds{0}, actors::discard_atom::value,
                                   position);
}

result<void> runtime::forget(const std::string& subject) {
  if (subject.empty() || subject.size() > 255)
    return fail(errc::invalid_argument, "a data subject is 1-255 bytes", subject);
  if (stopped())
    return fail(errc::unavailable, "the runtime is stopped");
  // Read before the erasure deletes the subject index.
  auto streams = impl_->store->subject_streams(subject);
  if (!streams)
    return tl::unexpected(streams.error());
  caf::scoped_actor self{*impl_->sys};
  actors::journal_write w;
  w.value.forget.push_back(subject);
  result<void> out = fail(errc::unavailable, "no answer from the journal", subject);
  self
    ->request(impl_->journal, impl_->opts.request_timeout, actors::write_atom::value, std::move(w))
    .receive([&](actors::journal_written& r) { out = std::move(r.value); },
             [&](caf::error& err) {
               auto e = actors::from_caf_error(err);
               out = tl::unexpected(
                 e ? *e : cairn::error{errc::unavailable, impl_->sys->render(err), subject});
             });
  if (!out || streams->empty())
    return out;
  // Live aggregates hold the data in memory: they recover without it.
  self
    ->request(impl_->registry, impl_->opts.request_timeout, actors::passivate_atom::value, *streams)
    .receive([](bool) {}, [](caf::error&) {}); // best effort: idle passivation follows anyway
  return out;
}

const persistence::key_ring* runtime::personal_keys() const {
  return impl_->store->personal_keys();
}

result<void> runtime::check_catalogue() const {
  auto catalogue = impl_->store->type_catalogue();
  if (!catalogue)
    return tl::unexpected(catalogue.error());
  // Types no registered aggregate claims belong to types registered later.
  std::vector<std::pair<std::string, std::uint32_t>> ours;
  for (auto& entry : *catalogue)
    if (registry_->current_version(entry.first))
      ours.push_back(std::move(entry));
  return registry_->check_decodable(ours);
}

void runtime::submit(actors::command_msg msg, const command_options& opts,
                     std::function<void(actors::reply_msg&&)> done) {
  commands_started_.store(true);
  ++impl_->submitting;
  if (impl_->stopped.load()) {
    --impl_->submitting;
    done(actors::error_reply({errc::unavailable, "the runtime is stopped"}));
    return;
  }
  if (impl_->gateway) {
    // Streams another node owns go through the gateway; an invalid id goes
    // the local way, which names the problem.
    const auto& c = *impl_->opts.cluster;
    if (auto stream = aggregate_stream(msg.category, msg.id);
        stream && impl_->served_by(*stream) != c.node_id) {
      caf::anon_send(impl_->gateway, actors::submit_atom::value, std::move(msg),
                     static_cast<std::int64_t>(opts.timeout.count()),
                     actors::reply_callback{std::move(done)});
      --impl_->submitting;
      return;
    }
  }
  // One bridge per aggregate keeps the commands a thread sends to it in order.
  auto key = std::hash<std::string>{}(msg.id) ^ std::hash<std::string>{}(msg.category);
  auto& b = impl_->bridges[key % impl_->bridges.size()];
  // 0: the bridge bounds it by request_timeout itself.
  caf::anon_send(b, actors::submit_atom::value, std::move(msg),
                 static_cast<std::int64_t>(opts.timeout.count()),
                 actors::reply_callback{std::move(done)});
  --impl_->submitting;
}

result<cluster_status> runtime::cluster() const {
  if (!impl_->opts.cluster)
    return fail(errc::invalid_argument, "the runtime runs without a cluster");
  if (impl_->stopped.load() || !impl_->gateway)
    return fail(errc::unavailable, "the runtime is stopped");
  result<cluster_status> out = fail(errc::unavailable, "the gateway did not answer in time");
  caf::scoped_actor self{*impl_->sys};
  self->request(impl_->gateway, std::chrono::seconds{1}, actors::status_atom::value)
    .receive([&](cluster_status& s) { out = std::move(s); }, [](caf::error&) {});
  caf::actor replication;
  {
    std::lock_guard lock{impl_->role_mutex};
    replication = impl_->replication;
  }
  if (out && replication)
    self->request(replication, std::chrono::seconds{1}, actors::status_atom::value)
      .receive([&](replication_status& r) { out->replication.push_back(std::move(r)); },
               [](caf::error&) {});
  return out;
}

result<std::uint64_t> runtime::promote() {
  auto& im = *impl_;
  if (!im.opts.cluster || im.own_pair == nullptr)
    return fail(errc::invalid_argument, "this node has no owner/standby pair to promote in");
  std::lock_guard lock{im.role_mutex};
  if (im.stopped.load())
    return fail(errc::unavailable, "the runtime is stopped");
  const auto& me = im.opts.cluster->node_id;
  if (im.serving_pair)
    return fail(errc::invalid_argument,
                "node " + me + " serves node " + im.own_pair->owner + "'s shards already");
  caf::scoped_actor self{*im.sys};
  im.stop_replication(self); // the replica is sealed at its last applied position
  auto current = im.store->current_epoch();
  if (!current)
    return tl::unexpected(current.error());
  auto epoch = std::max(*current, im.own_pair->epoch.load()) + 1;
  result<persistence::epoch_info> began = fail(errc::unavailable, "the journal did not answer");
  self->request(im.journal, std::chrono::seconds{30}, actors::epoch_atom::value, epoch, me)
    .receive([&](actors::journal_epoch& r) { began = std::move(r.value); }, [](caf::error&) {});
  if (!began) {
    im.log->error("promotion failed: {}; following {} again", began.error().to_string(),
                  im.partner());
    im.start_sink();
    return tl::unexpected(began.error());
  }
  im.serving_pair = true;
  im.own_pair->epoch = epoch;
  im.own_pair->standby_serves.store(me == im.own_pair->standby, std::memory_order_release);
  im.log->warn("promoted: node {} serves node {}'s shards from epoch {} (its log ends at {})", me,
               im.own_pair->owner, epoch, began->position);
  im.start_source();
  caf::anon_send(im.gateway, actors::placement_atom::value,
                 actors::placement_msg{im.own_pair->owner, me, epoch});
  im.hold_subscribers(false); // from the owner's replicated checkpoints
  return epoch;
}

result<void> runtime::set_replication(replication_mode mode) {
  auto& im = *impl_;
  if (!im.opts.cluster || im.own_pair == nullptr)
    return fail(errc::invalid_argument, "this node has no standby");
  std::lock_guard lock{im.role_mutex};
  im.log->warn("replication switched from {} to {} by the operator", to_string(im.mode),
               to_string(mode));
  im.mode = mode;
  if (im.serving_pair)
    caf::anon_send(im.journal, actors::replication_atom::value, mode == replication_mode::sync,
                   caf::timespan{im.opts.cluster->sync_timeout}, im.partner());
  return {};
}

caf::actor runtime::handle() {
  commands_started_.store(true); // the CAF-native form sends commands from here on
  return impl_->registry;
}

bool runtime::stopped() const { return impl_->stopped.load(); }

caf::actor runtime::journal() const { return impl_->journal; }

caf::actor_system& runtime::system() { return *impl_->sys; }

persistence::event_store& runtime::store() { return *impl_->store; }

std::pair<std::uint64_t, std::uint64_t> runtime::journal_stats() {
  std::pair<std::uint64_t, std::uint64_t> out{0, 0};
  caf::scoped_actor self{*impl_->sys};
  self->request(impl_->journal, impl_->opts.request_timeout, actors::stats_atom::value)
    .receive(
      [&](std::uint64_t batches, std::uint64_t appends) {
        out = {batches, appends};
      },
      [](caf::error&) {});
  return out;
}

actors::registry_stats runtime::registry_stats() {
  actors::registry_stats out;
  caf::scoped_actor self{*impl_->sys};
  self->request(impl_->registry, impl_->opts.request_timeout, actors::stats_atom::value)
    .receive([&](actors::registry_stats& s) { out = s; }, [](caf::error&) {});
  return out;
}

} // namespace cairn

namespace cairn {

metrics_snapshot runtime::metrics() {
  auto s = impl_->stats.snapshot();
  std::vector<std::string> names;
  {
    std::lock_guard lock{impl_->subscribers_mutex};
    for (const auto& [name, sub] : impl_->subscribers)
      names.push_back(name);
  }
  for (const auto& name : names) {
    auto st = impl_->ask<subscription_status>(name, std::chrono::milliseconds{1000},
                                              actors::status_atom::value);
    if (!st)
      continue; // stopped meanwhile, or busy in a long handler call
    s.subscribers.push_back(subscriber_metrics{st->name, st->lag, st->lag_ms, st->dead_letters,
                                               st->handled, st->state == subscription_state::held});
  }
  return s;
}

std::string runtime::metrics_endpoint() const {
  return impl_->metrics_server ? impl_->metrics_server->endpoint() : std::string{};
}

} // namespace cairn
