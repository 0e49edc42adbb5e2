// cairn-test-node: one node of the multi-process cluster tests
// (tests/integration/cluster_test.cpp). It runs a runtime with the tally
// aggregate as cluster member --node, prints "ready" and serves until its
// standard input closes (or it is killed). With --drive N it first waits for
// every peer, sends R rounds of notes to tally ids 0..N-1, writes the
// acknowledged ones ("id seq" lines) to --out and prints "driven ok=… failed=…".
// With --echo PORT it is no node but a CAF peer that echoes every message.
// With --master-key-file FILE its store encrypts personal data and it serves
// the customer aggregate of tests/integration/customer.hpp too.

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <fstream>
#include <memory>
#include <iostream>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <caf/all.hpp>
#include <caf/io/middleman.hpp>

#include "cairn/actors/gateway.hpp"
#include "cairn/runtime/runtime.hpp"
#include "integration/customer.hpp"
#include "support/tally.hpp"

namespace {

struct args {
  std::string node, data, out, metrics, master_key_file;
  std::uint16_t echo = 0;
  std::vector<cairn::cluster_node> nodes;
  std::uint32_t shards = 1024;
  std::uint64_t map_version = 1;
  std::int64_t heartbeat_ms = 1000, timeout_ms = 5000, ping_ms = 1000;
  std::size_t drive = 0, rounds = 1;
  std::string standby_of, standby; ///< --standby OWNER=STANDBY
  std::string replication = "async";
  std::int64_t sync_timeout_ms = 2000;
  bool wait_peers = true;
};

/// "A=127.0.0.1:7101,B=127.0.0.1:7102"
bool parse_nodes(const std::string& text, std::vector<cairn::cluster_node>& out) {
  std::stringstream in{text};
  std::string item;
  while (std::getline(in, item, ',')) {
    auto eq = item.find('=');
    auto colon = item.rfind(':');
    if (eq == std::string::npos || colon == std::string::npos || colon < eq)
      return false;
    out.push_back({item.substr(0, eq), item.substr(eq + 1, colon - eq - 1),
                   static_cast<std::uint16_t>(std::stoi(item.substr(colon + 1)))});
  }
  return !out.empty();
}

bool parse(int argc, char** argv, args& a) {
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string k = argv[i], v = argv[i + 1];
    if (k == "--node")
      a.node = v;
    else if (k == "--data")
      a.data = v;
    else if (k == "--out")
      a.out = v;
    else if (k == "--metrics")
      a.metrics = v;
    else if (k == "--echo")
      a.echo = static_cast<std::uint16_t>(std::stoi(v));
    else if (k == "--nodes") {
      if (!parse_nodes(v, a.nodes))
        return false;
    } else if (k == "--shards")
      a.shards = static_cast<std::uint32_t>(std::stoul(v));
    else if (k == "--map-version")
      a.map_version = std::stoull(v);
    else if (k == "--heartbeat-ms")
      a.heartbeat_ms = std::stoll(v);
    else if (k == "--timeout-ms")
      a.timeout_ms = std::stoll(v);
    else if (k == "--ping-ms")
      a.ping_ms = std::stoll(v);
    else if (k == "--drive")
      a.drive = std::stoul(v);
    else if (k == "--rounds")
      a.rounds = std::stoul(v);
    else if (k == "--standby") {
      auto eq = v.find('=');
      if (eq == std::string::npos)
        return false;
      a.standby_of = v.substr(0, eq);
      a.standby = v.substr(eq + 1);
    } else if (k == "--replication")
      a.replication = v;
    else if (k == "--sync-timeout-ms")
      a.sync_timeout_ms = std::stoll(v);
    else if (k == "--wait-peers")
      a.wait_peers = v != "0";
    else if (k == "--master-key-file")
      a.master_key_file = v;
    else
      return false;
  }
  return a.echo != 0 || (!a.node.empty() && !a.data.empty() && !a.nodes.empty());
}

bool peers_up(cairn::runtime& rt) {
  auto s = rt.cluster();
  if (!s)
    return false;
  for (const auto& p : s->peers)
    if (p.state != "up")
      return false;
  return true;
}

int drive(cairn::runtime& rt, const args& a) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds{30};
  while (a.wait_peers && !peers_up(rt)) {
    if (std::chrono::steady_clock::now() > deadline) {
      std::printf("error: peers not up within 30 s\n");
      std::fflush(stdout);
      return 3;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds{20});
  }
  std::mutex m;
  std::condition_variable cv;
  std::size_t answered = 0, failed = 0;
  std::string first_error;
  std::vector<std::pair<std::size_t, std::uint64_t>> acked;
  auto total = a.drive * a.rounds;
  for (std::uint64_t seq = 1; seq <= a.rounds; ++seq)
    for (std::size_t id = 0; id < a.drive; ++id)
      rt.send<cairn::test::tally>(std::to_string(id), cairn::test::note{a.node, seq}, {},
                                  [&, id,
                                   seq](cairn::result<cairn::outcome<cairn::test::tally>> r) {
                                    std::lock_guard lock{m};
                                    if (r)
                                      acked.emplace_back(id, seq);
                                    else if (failed++ == 0)
                                      first_error = r.error().to_string();
                                    if (++answered == total)
                                      cv.notify_all();
                                  });
  {
    std::unique_lock lock{m};
    cv.wait(lock, [&] { return answered == total; });
  }
  if (!a.out.empty()) {
    std::ofstream out{a.out};
    for (auto& [id, seq] : acked)
      out << id << ' ' << seq << '\n';
  }
  std::printf("driven ok=%zu failed=%zu%s%s\n", acked.size(), failed,
              first_error.empty() ? "" : " first=", first_error.c_str());
  std::fflush(stdout);
  return 0;
}

/// `load start` .. `load stop`: notes of sender NODE-load, numbered from 1
/// (on across a restart), to tally ids 0..63 round-robin, at most 64
/// unanswered, from a thread of its own (the other commands keep working).
class background_load {
public:
  void start(cairn::runtime& rt, const std::string& sender) {
    if (thread_.joinable())
      return; // already running
    stop_ = false;
    thread_ = std::thread{[this, &rt, sender] {
      while (!stop_.load()) {
        auto seq = ++last_seq_;
        {
          std::unique_lock lock{m_};
          cv_.wait(lock, [&] { return in_flight_ < 64; });
          ++in_flight_;
        }
        rt.send<cairn::test::tally>(std::to_string(seq % 64), cairn::test::note{sender, seq}, {},
                                    [this](cairn::result<cairn::outcome<cairn::test::tally>> r) {
                                      std::lock_guard lock{m_};
                                      if (r)
                                        ++ok_;
                                      else if (failed_++ == 0)
                                        first_error_ = r.error().to_string();
                                      --in_flight_;
                                      cv_.notify_all();
                                    });
      }
      std::unique_lock lock{m_};
      cv_.wait(lock, [&] { return in_flight_ == 0; });
    }};
  }

  /// Stops sending, waits for every answer: "ok=N failed=M[ first=ERROR]".
  std::string stop() {
    if (!thread_.joinable())
      return "not running";
    stop_ = true;
    thread_.join();
    auto text = "ok=" + std::to_string(ok_) + " failed=" + std::to_string(failed_);
    if (!first_error_.empty())
      text += " first=" + first_error_;
    return text;
  }

  ~background_load() { (void)stop(); }

private:
  std::thread thread_;
  std::atomic<bool> stop_{false};
  std::mutex m_;
  std::condition_variable cv_;
  std::size_t in_flight_ = 0, ok_ = 0, failed_ = 0;
  std::string first_error_;
  std::uint64_t last_seq_ = 0; ///< A restart continues the numbering.
};
/// The cluster-wide projection of the tests: per tally stream the events
/// it saw ("n/<stream>"), their total ("total"), and every event it saw a
/// second time ("dup": a marker per stream and version finds them).
cairn::result<void> start_projection(cairn::runtime& rt) {
  cairn::subscription_options o;
  o.cluster_wide = true;
  o.checkpoint_every = 50;
  o.batch_size = 100;
  return rt.project<cairn::test::noted>(
    "tallies", {},
    [](const cairn::envelope<cairn::test::noted>& e, cairn::read_model& m) -> cairn::result<void> {
      auto bump = [&](const std::string& key) -> cairn::result<void> {
        auto n = m.get_as<std::uint64_t>(key);
        if (!n)
          return tl::unexpected(n.error());
        return m.put_as(key, n->value_or(0) + 1);
      };
      auto marker = "e/" + std::string{e.stream} + "/" + std::to_string(e.version);
      auto seen = m.get(marker);
      if (!seen)
        return tl::unexpected(seen.error());
      if (*seen)
        return bump("dup");
      if (auto ok = m.put(marker, "1"); !ok)
        return ok;
      if (auto ok = bump("n/" + std::string{e.stream}); !ok)
        return ok;
      return bump("total");
    },
    o);
}

/// The side-effect subscriber of the tests ("effects"): a plain subscriber
/// that appends the position of every tally event it handles to `file`, one
/// line each, flushed at once (its effect, visible to the test process).
cairn::result<void> start_effects(cairn::runtime& rt, const std::string& file) {
  std::shared_ptr<std::FILE> out{std::fopen(file.c_str(), "a"), [](std::FILE* f) {
                                   if (f != nullptr)
                                     std::fclose(f);
                                 }};
  if (!out)
    return cairn::fail(cairn::errc::invalid_argument, "cannot open the effects file", file);
  cairn::subscription_options o;
  o.checkpoint_every = 20;
  o.checkpoint_interval = std::chrono::milliseconds{50};
  return rt.subscribe<cairn::test::noted>(
    "effects", {},
    [out](const cairn::envelope<cairn::test::noted>& e) -> cairn::result<void> {
      std::fprintf(out.get(), "%llu\n", static_cast<unsigned long long>(e.position));
      std::fflush(out.get());
      return {};
    },
    o);
}

std::uint64_t model_value(cairn::runtime& rt, const std::string& key) {
  auto v = rt.query<std::uint64_t>("tallies", key);
  return v && *v ? **v : 0;
}

} // namespace

/// --echo PORT: a CAF node with cairn's cluster message types whose one
/// actor, published on PORT, sends every message back as it got it.
int echo(std::uint16_t port) {
  caf::actor_system_config cfg;
  cfg.load<caf::io::middleman>();
  cairn::actors::add_cluster_message_types(cfg);
  caf::actor_system sys{cfg};
  auto reflector = sys.spawn(
    [](caf::event_based_actor* self, int) -> caf::behavior {
      self->set_default_handler(caf::reflect);
      return {[](cairn::actors::stop_atom) {}};
    },
    0);
  auto bound = sys.middleman().publish(reflector, port, "127.0.0.1", true);
  if (!bound) {
    std::printf("error: %s\n", sys.render(bound.error()).c_str());
    return 1;
  }
  std::printf("ready\n");
  std::fflush(stdout);
  char buf[256];
  while (::read(0, buf, sizeof buf) > 0) {
  }
  caf::anon_send_exit(reflector, caf::exit_reason::user_shutdown);
  return 0;
}

int main(int argc, char** argv) {
  args a;
  if (!parse(argc, argv, a)) {
    std::fprintf(stderr, "usage: cairn-test-node --node ID --nodes A=host:port,... --data DIR "
                         "[--shards N] [--map-version V] [--heartbeat-ms MS] [--timeout-ms MS] "
                         "[--ping-ms MS] [--metrics HOST:PORT] [--drive N --rounds R --out FILE]\n"
                         "       [--standby OWNER=STANDBY] [--replication async|sync] "
                         "[--sync-timeout-ms MS] [--wait-peers 0|1] [--master-key-file FILE]\n"
                         "       cairn-test-node --echo PORT\n");
    return 2;
  }
  if (a.echo != 0)
    return echo(a.echo);
  cairn::runtime_options opts;
  opts.data_dir = a.data;
  opts.metrics_address = a.metrics;
  opts.worker_threads = 2;
  opts.request_timeout = std::chrono::seconds{10};
  opts.store.master_key_file = a.master_key_file;
  // A standby owns no shards: the map spreads them over the others.
  std::vector<cairn::cluster_node> owners;
  for (const auto& n : a.nodes)
    if (n.id != a.standby)
      owners.push_back(n);
  auto c = cairn::make_cluster(owners, a.node, a.shards);
  for (const auto& n : a.nodes)
    if (n.id == a.standby)
      c.nodes.push_back(n);
  for (auto& n : c.nodes)
    if (n.id == a.standby_of)
      n.standby = a.standby;
  c.replication = a.replication == "sync" ? cairn::replication_mode::sync
                                          : cairn::replication_mode::async;
  c.sync_timeout = std::chrono::milliseconds{a.sync_timeout_ms};
  c.map.version = a.map_version;
  c.heartbeat_interval = std::chrono::milliseconds{a.heartbeat_ms};
  c.heartbeat_timeout = std::chrono::milliseconds{a.timeout_ms};
  c.ping_interval = std::chrono::milliseconds{a.ping_ms};
  opts.cluster = c;
  auto rt = cairn::runtime::start(opts);
  if (!rt) {
    std::printf("error: %s\n", rt.error().to_string().c_str());
    return 1;
  }
  if (auto ok = (*rt)->register_aggregate<cairn::test::tally>(); !ok) {
    std::printf("error: %s\n", ok.error().to_string().c_str());
    return 1;
  }
  if (!a.master_key_file.empty())
    if (auto ok = (*rt)->register_aggregate<crm::customer>(); !ok) {
      std::printf("error: %s\n", ok.error().to_string().c_str());
      return 1;
    }
  std::printf("ready\n");
  std::fflush(stdout);
  int rc = a.drive > 0 ? drive(**rt, a) : 0;
  // Commands on standard input, one per line, until it closes:
  //   status       -> "replication <role> connected=C epoch=E committed=N acknowledged=M"
  //   send ID SEQ  -> "sent ok" or "sent failed <error>"
  //   promote      -> "promoted epoch=E" or "promote failed <error>"
  //   async | sync -> "mode ok" or "mode <error>"
  //   load start   -> "load started"; load stop -> "load stopped ok=N failed=M[ first=E]"
  //   project      -> "project ok" or "project failed <error>": starts the
  //                   cluster-wide projection "tallies"
  //   projected    -> "projected total=T dup=D sources=NODE:CONNECTED:POSITION:CHECKPOINT,..."
  //   states N     -> "states sum=S model=M mismatched=K failed=F": tally ids
  //                   0..N-1, their states' counts against the projection's model
  // With --master-key-file (the customer aggregate, its data subject the id):
  //   register ID NAME -> "registered ok" or "registered failed <error>"
  //   name ID      -> "name <NAME>", "name absent" (forgotten) or "name failed <error>"
  //   forget ID    -> "forget ok" or "forget failed <error>"
  //   problem      -> "problem <the replication's last problem>" ("problem " when none)
  //   effects FILE -> "effects ok" or "effects failed <error>": starts the plain
  //                   subscriber "effects", which appends each position it handles to FILE
  //   subscriber N -> "subscriber state=S checkpoint=C position=P handled=H why=TEXT"
  //                   or "subscriber failed <error>"
  background_load load;
  std::string line;
  while (std::getline(std::cin, line)) {
    std::istringstream in{line};
    std::string cmd;
    in >> cmd;
    if (cmd == "status") {
      auto st = (*rt)->cluster();
      if (!st || st->replication.empty()) {
        std::printf("replication none\n");
      } else {
        const auto& r = st->replication.front();
        std::printf("replication %s connected=%d epoch=%llu committed=%llu acknowledged=%llu "
                    "truncated=%llu fenced=%d\n",
                    r.role.c_str(), r.connected ? 1 : 0, static_cast<unsigned long long>(r.epoch),
                    static_cast<unsigned long long>(r.committed),
                    static_cast<unsigned long long>(r.acknowledged),
                    static_cast<unsigned long long>(r.truncated), r.fenced ? 1 : 0);
      }
    } else if (cmd == "promote") {
      auto r = (*rt)->promote();
      if (r)
        std::printf("promoted epoch=%llu\n", static_cast<unsigned long long>(*r));
      else
        std::printf("promote failed %s\n", r.error().to_string().c_str());
    } else if (cmd == "async" || cmd == "sync") {
      auto r = (*rt)->set_replication(cmd == "sync" ? cairn::replication_mode::sync
                                                    : cairn::replication_mode::async);
      std::printf("mode %s\n", r ? "ok" : r.error().to_string().c_str());
    } else if (cmd == "load") {
      std::string what;
      in >> what;
      if (what == "start") {
        load.start(**rt, a.node + "-load");
        std::printf("load started\n");
      } else {
        std::printf("load stopped %s\n", load.stop().c_str());
      }
    } else if (cmd == "project") {
      auto r = start_projection(**rt);
      if (r)
        std::printf("project ok\n");
      else
        std::printf("project failed %s\n", r.error().to_string().c_str());
    } else if (cmd == "effects") {
      std::string file;
      in >> file;
      auto r = start_effects(**rt, file);
      if (r)
        std::printf("effects ok\n");
      else
        std::printf("effects failed %s\n", r.error().to_string().c_str());
    } else if (cmd == "subscriber") {
      std::string name;
      in >> name;
      if (auto sub = (*rt)->subscription(name))
        std::printf("subscriber state=%s checkpoint=%llu position=%llu handled=%llu why=%s\n",
                    to_string(sub->state), static_cast<unsigned long long>(sub->checkpoint),
                    static_cast<unsigned long long>(sub->position),
                    static_cast<unsigned long long>(sub->handled), sub->last_error.c_str());
      else
        std::printf("subscriber failed %s\n", sub.error().to_string().c_str());
    } else if (cmd == "projected") {
      std::string sources;
      if (auto sub = (*rt)->subscription("tallies"))
        for (const auto& src : sub->sources)
          sources += (sources.empty() ? "" : ",") + src.node + ":" + (src.connected ? "1" : "0")
                     + ":" + std::to_string(src.position) + ":" + std::to_string(src.checkpoint);
      std::printf("projected total=%llu dup=%llu sources=%s\n",
                  static_cast<unsigned long long>(model_value(**rt, "total")),
                  static_cast<unsigned long long>(model_value(**rt, "dup")), sources.c_str());
    } else if (cmd == "states") {
      std::size_t n = 0;
      in >> n;
      std::uint64_t sum = 0, model = 0, mismatched = 0, failed = 0;
      for (std::size_t id = 0; id < n; ++id) {
        auto s = (*rt)->state<cairn::test::tally>(std::to_string(id));
        auto m = model_value(**rt, "n/tally-" + std::to_string(id));
        model += m;
        if (!s) {
          ++failed;
          continue;
        }
        sum += s->count;
        if (s->count != m)
          ++mismatched;
      }
      std::printf("states sum=%llu model=%llu mismatched=%llu failed=%llu\n",
                  static_cast<unsigned long long>(sum), static_cast<unsigned long long>(model),
                  static_cast<unsigned long long>(mismatched),
                  static_cast<unsigned long long>(failed));
    } else if (cmd == "problem") {
      auto st = (*rt)->cluster();
      std::printf("problem %s\n",
                  st && !st->replication.empty() ? st->replication.front().problem.c_str() : "");
    } else if (cmd == "register") {
      std::string id, name;
      in >> id >> name;
      cairn::command_options o;
      o.subject = id;
      auto r = (*rt)
                 ->send<crm::customer>(id,
                                       crm::register_customer{name, name + "@mail.test", "gold"}, o)
                 .get();
      if (r)
        std::printf("registered ok\n");
      else
        std::printf("registered failed %s\n", r.error().to_string().c_str());
    } else if (cmd == "name") {
      std::string id;
      in >> id;
      auto s = (*rt)->state<crm::customer>(id);
      if (!s)
        std::printf("name failed %s\n", s.error().to_string().c_str());
      else
        std::printf("name %s\n", s->name ? s->name->c_str() : "absent");
    } else if (cmd == "forget") {
      std::string id;
      in >> id;
      auto r = (*rt)->forget(id);
      if (r)
        std::printf("forget ok\n");
      else
        std::printf("forget failed %s\n", r.error().to_string().c_str());
    } else if (cmd == "send") {
      std::string id;
      std::uint64_t seq = 0;
      in >> id >> seq;
      auto r = (*rt)->send<cairn::test::tally>(id, cairn::test::note{a.node, seq}).get();
      if (r)
        std::printf("sent ok\n");
      else
        std::printf("sent failed %s\n", r.error().to_string().c_str());
    }
    std::fflush(stdout);
  }
  (void)load.stop();
  (*rt)->shutdown();
  return rc;
}
