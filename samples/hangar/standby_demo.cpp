// `hangar demo --cluster N --standby`: the cluster demo with a standby for
// every owner (docs/hangar.md#a-standby-for-every-node). Owner B is killed
// mid-run, its standby B2 is promoted through the operator endpoint that
// `cairn cluster promote` calls, B2 serves B's providers, and B, restarted,
// rejoins as B2's standby after cutting its divergent tail.
//
// The layout: owners A, B, C and standbys A2, B2, C2, each a process of its
// own (A is this process and drives the load). A standby owns no shards and
// follows exactly one node, so no node can be both an owner and another's
// standby (cairn::validate refuses it); on real machines each standby runs
// on another machine than its owner.
#include <httplib.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <map>
#include <ostream>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "cairn/persistence/replication.hpp"
#include "cairn/runtime/cluster.hpp"
#include "cluster_support.hpp"
#include "hangar/demo.hpp"
#include "hangar/service.hpp"

namespace hangar::detail {

namespace {

namespace fs = std::filesystem;

/// POSTs an operator step to a node's metrics endpoint, as `cairn cluster
/// promote|replication` does; the node's answer, or why it refused.
cairn::result<std::string> operator_step(const std::string& address, const std::string& path) {
  auto colon = address.rfind(':');
  httplib::Client client{address.substr(0, colon), std::stoi(address.substr(colon + 1))};
  client.set_connection_timeout(5s);
  client.set_read_timeout(60s); // a promotion waits for the journal
  auto res = client.Post(path.c_str());
  if (!res)
    return cairn::fail(cairn::errc::unavailable,
                       "cannot reach " + address + ": " + httplib::to_string(res.error()));
  auto body = res->body;
  while (!body.empty() && body.back() == '\n')
    body.pop_back();
  if (res->status != 200)
    return cairn::fail(cairn::errc::rejected,
                       "HTTP " + std::to_string(res->status) + " from " + address + ": " + body);
  return body;
}

/// The node that wrote `position`: the one that began the newest epoch at or
/// before it (its epoch record precedes everything it wrote).
std::string writer_of(const std::vector<cairn::persistence::epoch_info>& epochs,
                      std::uint64_t position) {
  std::string node = "?";
  for (const auto& e : epochs)
    if (e.position <= position)
      node = e.node;
  return node;
}

std::unique_ptr<cairn::persistence::event_store> open_read_only(const std::string& dir) {
  cairn::persistence::store_options so;
  so.read_only = true;
  auto store = cairn::persistence::open_store(dir, so);
  return store ? std::move(*store) : nullptr;
}

std::string hex(const std::array<unsigned char, 32>& d) {
  static const char* digits = "0123456789abcdef";
  std::string out;
  for (auto b : d) {
    out += digits[b >> 4];
    out += digits[b & 15];
  }
  return out;
}

} // namespace

cairn::result<cluster_demo_report> run_standby_demo(const cluster_demo_options& opts,
                                                    std::ostream& out) {
  if (auto ok = fresh_data_dir(opts.data_dir); !ok)
    return tl::unexpected(ok.error());

  // Owners A, B, ... own the shards; X2 is X's standby.
  std::vector<cairn::cluster_node> owners, standbys;
  std::map<std::string, std::string> metrics, standby_of;
  for (int i = 0; i < opts.nodes; ++i) {
    std::string id(1, static_cast<char>('A' + i));
    if (auto ok = add_local_node(owners, metrics, id); !ok)
      return tl::unexpected(ok.error());
    if (auto ok = add_local_node(standbys, metrics, id + "2"); !ok)
      return tl::unexpected(ok.error());
    standby_of[id] = id + "2";
  }
  auto cluster = cairn::make_cluster(owners, "A");
  for (auto& n : cluster.nodes)
    n.standby = standby_of[n.id];
  for (const auto& s : standbys)
    cluster.nodes.push_back(s);
  cluster.replication = opts.async_replication ? cairn::replication_mode::async
                                               : cairn::replication_mode::sync;
  auto config = write_cluster_config(cluster, opts.data_dir);
  if (!config)
    return tl::unexpected(config.error());
  demo_nodes processes{opts, *config, metrics};
  const auto mode = std::string{cairn::to_string(cluster.replication)};
  auto node_dir = [&](const std::string& id) { return processes.dir(id); };
  out << "hangar demo --cluster " << opts.nodes << " --standby: seed " << opts.seed
      << ", replication " << mode << ", data in " << opts.data_dir
      << "\ncluster config: " << *config << "  (try: cairn cluster map " << *config << ")\n";
  for (const auto& n : cluster.nodes) {
    out << "  node " << std::left << std::setw(3) << n.id << std::right << " gateway " << n.host
        << ':' << n.port << "  metrics " << metrics[n.id] << "  data " << node_dir(n.id);
    if (!n.standby.empty())
      out << "  owner, standby " << n.standby;
    else
      out << "  standby of " << n.id.substr(0, n.id.size() - 1);
    out << (n.id == "A" ? "  (this process: drives the load)" : "") << '\n';
  }
  out << "(a standby owns no shards and follows one node, so each is a process of its own; "
      << "replication " << mode
      << (opts.async_replication ? ": an owner acknowledges after its own commit)\n"
                                 : ": an owner acknowledges only what its standby holds)\n");

  auto started = processes.start(cluster);
  if (!started)
    return tl::unexpected(started.error());
  auto& svc = **started;
  auto elapsed = [&] { return processes.elapsed(); };

  // A node's replication status: A's from its runtime, the others' from
  // their `replication` line (what `cairn cluster status` shows of them).
  auto status_of = [&](const std::string& id) {
    if (id == "A")
      return parse_replication_line(replication_line(svc.runtime()));
    auto* c = processes.child(id);
    if (c == nullptr || c->pid() <= 0 || !c->write_line("replication"))
      return cairn::replication_status{};
    return parse_replication_line(c->wait_line("replication", 5s));
  };
  auto describe = [&](const std::string& id) {
    auto v = status_of(id);
    std::ostringstream s;
    if (v.role.empty())
      s << "no replication";
    else if (v.role == "owner" && v.connected)
      s << "serves, standby " << v.peer << " connected, epoch " << v.epoch << ", log end "
        << v.committed << ", standby holds " << v.acknowledged;
    else if (v.role == "owner") // its log end is not followed without a standby
      s << "serves, standby " << v.peer << " NOT connected, epoch " << v.epoch
        << ", standby acknowledged " << v.acknowledged;
    else
      s << "standby of " << v.peer << (v.connected ? ", following" : ", NOT following")
        << ", epoch " << v.epoch << ", holds " << v.acknowledged << " of " << v.committed;
    if (v.truncated > 0)
      s << ", cut " << v.truncated << " records";
    if (!v.problem.empty())
      s << " (" << v.problem << ")";
    return s.str();
  };
  for (const auto& o : owners) {
    auto deadline = clock_type::now() + 20s;
    while (!status_of(o.id).connected) {
      if (clock_type::now() >= deadline)
        return cairn::fail(cairn::errc::unavailable,
                           "standby " + standby_of[o.id] + " did not follow " + o.id);
      std::this_thread::sleep_for(50ms);
    }
  }
  out << "all " << cluster.nodes.size() << " nodes up, every standby following, after "
      << std::fixed << std::setprecision(2) << elapsed() << " s\n";

  // Three providers per owner, picked by the shard map.
  auto providers = start_providers(svc, cluster, opts.nodes);
  if (!providers)
    return tl::unexpected(providers.error());
  auto& tallies = *providers;
  out << "\nproviders by owner:\n";
  for (const auto& o : owners) {
    out << "  node " << o.id << " (standby " << standby_of[o.id] << "):";
    for (const auto& [id, t] : tallies)
      if (t.owner == o.id)
        out << "  " << id;
    out << '\n';
  }
  out << '\n';

  cluster_demo_report report;
  const std::string victim = owners[1].id, heir = standby_of[victim];
  std::map<std::string, std::string> serving; // pair (owner id) -> the node serving it
  for (const auto& o : owners)
    serving[o.id] = o.id;
  std::uint64_t round = 0;
  double next_line = std::ceil(elapsed());
  double last_summary = -1;
  auto summary = [&] {
    if (elapsed() - last_summary < 0.3)
      return; // one was just printed
    last_summary = elapsed();
    out << "t=" << std::setw(5) << std::setprecision(1) << elapsed() << " s  acknowledged";
    for (const auto& o : owners) {
      std::uint64_t acked = 0, failed = 0;
      for (const auto& [id, ta] : tallies)
        if (ta.owner == o.id) {
          acked += ta.acknowledged;
          failed += ta.unavailable + ta.other_errors;
        }
      out << "  " << o.id << ' ' << std::setw(4) << acked << " [served by " << serving[o.id] << ']';
      if (failed > 0)
        out << " (" << failed << " failed)";
    }
    out << '\n';
  };
  // One invocation per provider; errors printed once per phase and provider.
  auto load_round = [&] {
    ++round;
    for (auto& [id, ta] : tallies) {
      auto r = invoke_counted(svc, id, round, ta);
      if (r)
        continue;
      bool unavailable = r.error().code == cairn::errc::unavailable;
      report.unavailable_seen |= unavailable && ta.owner == victim;
      if (!ta.error_printed) {
        out << "    " << id << " (pair " << ta.owner << ", served by " << serving[ta.owner]
            << "): " << r.error().to_string() << '\n';
        ta.error_printed = true;
      }
    }
    if (elapsed() >= next_line) {
      summary();
      next_line += 1;
    }
    std::this_thread::sleep_for(40ms);
  };
  auto new_phase = [&] {
    for (auto& [id, ta] : tallies)
      ta.error_printed = false;
  };
  auto victim_acked = [&] {
    std::uint64_t n = 0;
    for (const auto& [id, ta] : tallies)
      n += ta.owner == victim ? ta.acknowledged : 0;
    return n;
  };

  // 1. Load on the healthy cluster.
  while (elapsed() < opts.seconds * 0.25)
    load_round();
  summary();
  out << ">>> before the kill: " << heir << ": " << describe(heir) << '\n';
  out << ">>> SIGKILL node " << victim << " (pid " << processes.child(victim)->pid() << ")\n";
  processes.child(victim)->kill(SIGKILL);
  report.node_killed = true;
  new_phase();
  // 2. The owner is gone: its providers answer unavailable.
  for (auto until = elapsed() + 0.5; elapsed() < until || !report.unavailable_seen;) {
    load_round();
    if (elapsed() > opts.seconds * 0.25 + 10)
      break;
  }
  out << ">>> " << heir << " after the kill: " << describe(heir) << '\n';

  // 3. Promote the standby through the operator endpoint.
  out << ">>> promote " << heir << ": POST http://" << metrics[heir]
      << "/cluster/promote  (= cairn cluster promote " << metrics[heir] << ")\n";
  auto promoted = operator_step(metrics[heir], "/cluster/promote");
  if (!promoted)
    return tl::unexpected(promoted.error());
  out << "    " << heir << " answered: " << *promoted << '\n';
  report.promoted = true;
  serving[victim] = heir;
  new_phase();
  // A learns the new placement from B2's hello; under sync B2 has no
  // standby now, so it cannot acknowledge until B rejoins or the operator
  // lets it serve alone.
  const auto& probe_id = [&]() -> const std::string& {
    for (const auto& [id, ta] : tallies)
      if (ta.owner == victim)
        return id;
    return tallies.begin()->first;
  }();
  // A routes B's shards to B2 once B2's news reached it: until then they
  // still go to B and fail as before.
  int still_to_victim = 0;
  auto probe = svc.invoke(probe_id, "call", "{\"probe\":0}");
  for (auto deadline = clock_type::now() + 10s;
       !probe && probe.error().message.find("owner node " + victim) != std::string::npos
       && clock_type::now() < deadline;) {
    ++still_to_victim;
    std::this_thread::sleep_for(100ms);
    probe = svc.invoke(probe_id, "call", "{\"probe\":" + std::to_string(still_to_victim) + "}");
  }
  if (still_to_victim > 0)
    out << "    (" << still_to_victim << " probes still went to " << victim
        << " before A heard of the promotion)\n";
  if (probe) {
    ++tallies[probe_id].acknowledged;
    tallies[probe_id].correlations.push_back(*probe);
  }
  out << "    " << probe_id << " (pair " << victim << ", served by " << heir
      << "): " << (probe ? "acknowledged" : probe.error().to_string()) << '\n';
  // Under sync the promoted node serves async until it has a standby again:
  // the operator endpoint switches its replication mode.
  auto switch_mode = [&](const std::string& why, const std::string& to) -> cairn::result<void> {
    out << ">>> " << heir << why << ": POST http://" << metrics[heir] << "/cluster/replication/"
        << to << "  (= cairn cluster replication " << metrics[heir] << ' ' << to << ")\n";
    auto switched = operator_step(metrics[heir], "/cluster/replication/" + to);
    if (!switched)
      return tl::unexpected(switched.error());
    out << "    " << heir << " answered: " << *switched << '\n';
    return {};
  };
  if (!opts.async_replication)
    if (auto ok =
          switch_mode(" serves without a standby until " + victim + " rejoins: switch it to async",
                      "async");
        !ok)
      return tl::unexpected(ok.error());
  // 4. The promoted node serves the dead owner's providers.
  auto before_promoted = victim_acked();
  auto phase_end = elapsed() + opts.seconds * 0.25;
  while (elapsed() < phase_end || (victim_acked() == before_promoted && elapsed() < phase_end + 10))
    load_round();
  summary();
  out << ">>> " << heir << " acknowledged " << victim_acked() - before_promoted
      << " invocations of " << victim << "'s providers since its promotion: " << describe(heir)
      << '\n';

  // 5. The old owner comes back: it learns the newer epoch, steps down, cuts
  // its divergent tail and follows the promoted node.
  out << ">>> restarting node " << victim << " on the same port " << owners[1].port << '\n';
  auto heir_end = status_of(heir).committed; // B must hold at least this to have caught up
  auto r0 = clock_type::now();
  if (auto ok = processes.spawn(victim); !ok)
    return tl::unexpected(ok.error());
  new_phase();
  auto rejoin_deadline = clock_type::now() + 30s;
  for (auto next_check = clock_type::now();;) {
    load_round();
    if (clock_type::now() < next_check)
      continue;
    next_check = clock_type::now() + 200ms;
    auto v = status_of(victim);
    auto h = status_of(heir);
    if (v.role == "standby" && v.connected && h.acknowledged >= heir_end && heir_end > 0) {
      report.rejoined = true;
      report.truncated = v.truncated;
      break;
    }
    if (clock_type::now() >= rejoin_deadline)
      return cairn::fail(cairn::errc::unavailable,
                         "node " + victim + " did not rejoin as " + heir
                           + "'s standby within 30 s: " + describe(victim));
  }
  out << ">>> node " << victim << " rejoined after "
      << std::chrono::duration<double>(clock_type::now() - r0).count() << " s: " << describe(victim)
      << '\n';
  std::string cut_file;
  std::set<std::string> cut_correlations;
  std::uint64_t cut_events = 0;
  std::error_code ec;
  for (const auto& f : fs::directory_iterator{node_dir(victim), ec})
    if (f.path().filename().string().rfind("truncated-after-", 0) == 0)
      cut_file = f.path().string();
  if (!cut_file.empty()) {
    std::ifstream in{cut_file};
    for (std::string line; std::getline(in, line);)
      if (line.rfind("{\"position\":", 0) == 0) {
        ++cut_events;
        if (json_string_field(line, "type") == "tool_invocation_requested")
          cut_correlations.insert(json_string_field(line, "correlation_id"));
      }
    out << "    its divergent tail, " << cut_events << " records it wrote that " << heir
        << " never acknowledged, is saved in " << cut_file << " (" << cut_correlations.size()
        << " tool invocations)\n";
  } else {
    out << "    it had no divergent tail: " << heir << " held everything it wrote (no file)\n";
  }
  if (!opts.async_replication)
    if (auto ok = switch_mode(" has a standby again: back to sync", "sync"); !ok)
      return tl::unexpected(ok.error());
  // 6. The cluster serves on, B's providers on B2, replicated to B.
  for (auto until = elapsed() + std::max(1.0, opts.seconds * 0.2); elapsed() < until;)
    load_round();
  summary();
  out << "\nreplication at the end:\n";
  for (const auto& o : owners)
    for (const auto& id : {o.id, standby_of[o.id]})
      out << "  " << std::left << std::setw(3) << id << std::right << ' ' << describe(id) << '\n';

  // The serving nodes first: an owner whose standby stopped first would wait
  // out the replication timeout on each commit under sync, its shutdown too.
  out << "\n>>> stopping the nodes, the serving ones first\n";
  (void)svc.settle(10s);
  for (const auto& [pair, node] : serving)
    if (node != "A")
      processes.stop(node, out);
  started->reset();
  processes.stop_all(out);

  // Every acknowledged invocation against the store of the node that serves
  // its pair now; the epoch history says which node wrote each one.
  out << "\nacknowledged invocations against the serving node's store (opened read-only):\n"
      << "  provider   pair  serving  acknowledged  in the store  written by          missing\n";
  std::map<std::string, std::unique_ptr<cairn::persistence::event_store>> stores;
  auto store_of = [&](const std::string& id) -> cairn::persistence::event_store* {
    auto& s = stores[id];
    if (!s)
      s = open_read_only(node_dir(id));
    return s.get();
  };
  for (const auto& [id, ta] : tallies) {
    const auto& node = serving[ta.owner];
    auto* store = store_of(node);
    if (store == nullptr)
      return cairn::fail(cairn::errc::unavailable, "cannot open " + node_dir(node));
    auto epochs = store->epochs();
    if (!epochs)
      return tl::unexpected(epochs.error());
    std::map<std::string, std::uint64_t> position_of;
    for (std::uint64_t from = 1;;) {
      auto events = store->read_stream("provider-" + id, from, 4096);
      if (!events)
        return tl::unexpected(events.error());
      if (events->empty())
        break;
      for (const auto& e : *events)
        position_of.emplace(e.meta.correlation_id, e.position);
      from = events->back().version + 1;
    }
    std::map<std::string, std::uint64_t> by_writer;
    std::uint64_t found = 0, missing = 0;
    for (const auto& c : ta.correlations) {
      auto it = position_of.find(c);
      if (it == position_of.end()) {
        ++missing;
        report.missing_in_cut += cut_correlations.count(c);
        continue;
      }
      ++found;
      ++by_writer[writer_of(*epochs, it->second)];
    }
    std::string writers;
    for (const auto& [w, n] : by_writer) {
      writers += (writers.empty() ? "" : ", ") + w + " " + std::to_string(n);
      if (w == heir && ta.owner == victim)
        report.served_by_promoted += n;
    }
    report.acknowledged += ta.acknowledged;
    report.missing += missing;
    out << "  " << std::left << std::setw(10) << id << ' ' << std::setw(5) << ta.owner << ' '
        << std::setw(7) << node << std::right << std::setw(14) << ta.acknowledged << std::setw(13)
        << found << "  " << std::left << std::setw(18) << writers << std::right << std::setw(8)
        << missing << (missing > 0 ? "  LOST" : "") << '\n';
  }

  // Each pair's two logs are one log: equal digests at the standby's end.
  out << "\nowner and standby logs (cairn digest DIR --to P):\n";
  report.digests_equal = true;
  for (const auto& o : owners) {
    std::string lead = serving[o.id], follow = lead == o.id ? standby_of[o.id] : o.id;
    auto* a = store_of(lead);
    auto* b = store_of(follow);
    if (a == nullptr || b == nullptr)
      return cairn::fail(cairn::errc::unavailable, "cannot open the stores of pair " + o.id);
    auto la = a->last_position();
    auto lb = b->last_position();
    if (!la || !lb)
      return tl::unexpected(!la ? la.error() : lb.error());
    auto p = std::min(*la, *lb);
    auto da = a->digest_at(p);
    auto db = b->digest_at(p);
    bool same = da && db && da->digest == db->digest;
    report.digests_equal = report.digests_equal && same && p > 0;
    out << "  " << lead << " (serving, log end " << *la << ") and " << follow
        << " (standby, log end " << *lb << ") at " << p << ": "
        << (da ? hex(da->digest).substr(0, 16) : da.error().to_string()) << "… "
        << (db ? hex(db->digest).substr(0, 16) : db.error().to_string()) << "… "
        << (same ? "equal" : "DIFFERENT") << '\n';
  }

  out << "\nkey moments: owner " << victim << " killed " << (report.node_killed ? "yes" : "no")
      << ", " << heir << " promoted " << (report.promoted ? "yes" : "no") << ", " << heir
      << " wrote " << report.served_by_promoted << " acknowledged invocations of " << victim
      << "'s providers, " << victim << " rejoined as its standby "
      << (report.rejoined ? "yes" : "no") << " (cut " << report.truncated << " records)\n";
  if (report.missing == 0)
    out << "every acknowledged event is there: " << report.acknowledged
        << " acknowledged invocations, each in the store of the node serving its pair\n";
  else if (opts.async_replication && report.missing == report.missing_in_cut)
    out << "async failover lost " << report.missing << " of " << report.acknowledged
        << " acknowledged invocations, all in " << victim
        << "'s file of cut events (async may lose what the standby had not acknowledged)\n";
  else
    out << "LOSS: " << report.missing << " of " << report.acknowledged
        << " acknowledged invocations are missing from the serving node's store\n";
  return report;
}

} // namespace hangar::detail
