// The metrics registry: counters, gauges, fixed-bucket histograms, outcome
// mapping, and the exact Prometheus text of a known snapshot.

#include <string>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>

#include "cairn/actors/metrics.hpp"

using cairn::actors::command_outcome;
using cairn::actors::histogram;
using cairn::actors::metrics;
using cairn::actors::metrics_snapshot;

TEST_CASE("a histogram puts each value in the first bucket whose bound is not below it",
          "[unit][metrics]") {
  histogram h{10, 100};
  for (std::uint64_t v : {0, 10, 11, 100, 101, 5000})
    h.observe(v);
  auto s = h.snapshot();
  CHECK(s.bounds == std::vector<std::uint64_t>{10, 100});
  CHECK(s.counts == std::vector<std::uint64_t>{2, 2, 2});
  CHECK(s.count == 6);
  CHECK(s.sum == 0 + 10 + 11 + 100 + 101 + 5000);
}

TEST_CASE("an empty histogram has zero buckets, sum and count", "[unit][metrics]") {
  histogram h{1, 2, 4};
  auto s = h.snapshot();
  CHECK(s.counts == std::vector<std::uint64_t>{0, 0, 0, 0});
  CHECK(s.count == 0);
  CHECK(s.sum == 0);
}

TEST_CASE("counters lose no increment when threads record at once", "[unit][metrics]") {
  metrics m;
  constexpr int threads = 4;
  constexpr int per_thread = 100000;
  std::vector<std::thread> ts;
  for (int t = 0; t < threads; ++t)
    ts.emplace_back([&] {
      for (int i = 0; i < per_thread; ++i) {
        m.events_appended.add(2);
        m.batch_appends.observe(3);
        m.command(0, false);
      }
    });
  for (auto& t : ts)
    t.join();
  auto s = m.snapshot();
  CHECK(s.events_appended == 2u * threads * per_thread);
  CHECK(s.batch_appends.count == std::uint64_t{threads} * per_thread);
  CHECK(s.batch_appends.sum == 3u * threads * per_thread);
  CHECK(s.commands_of(command_outcome::ok) == std::uint64_t{threads} * per_thread);
}

TEST_CASE("a gauge holds the last value set", "[unit][metrics]") {
  metrics m;
  m.live_aggregates.set(7);
  m.live_aggregates.set(3);
  CHECK(m.snapshot().live_aggregates == 3);
}

TEST_CASE("each reply code is counted under its own outcome", "[unit][metrics]") {
  metrics m;
  m.command(0, false);
  m.command(0, false);
  m.command(0, true);
  for (std::uint8_t code = 1; code <= 8; ++code)
    m.command(code, false);
  m.command(200, false); // no errc has this code
  auto s = m.snapshot();
  CHECK(s.commands_of(command_outcome::ok) == 2);
  CHECK(s.commands_of(command_outcome::duplicate) == 1);
  CHECK(s.commands_of(command_outcome::rejected) == 1);
  CHECK(s.commands_of(command_outcome::conflict) == 1);
  CHECK(s.commands_of(command_outcome::unavailable) == 1);
  CHECK(s.commands_of(command_outcome::overloaded) == 1);
  CHECK(s.commands_of(command_outcome::invalid_argument) == 1);
  CHECK(s.commands_of(command_outcome::corrupted) == 1);
  CHECK(s.commands_of(command_outcome::internal) == 2);
  CHECK(s.commands_of(command_outcome::truncated) == 1);
  CHECK(cairn::actors::to_string(command_outcome::invalid_argument) == "invalid_argument");
}

TEST_CASE("the Prometheus text of a known snapshot is exact", "[unit][metrics]") {
  metrics_snapshot s;
  s.commands[static_cast<std::size_t>(command_outcome::ok)] = 5;
  s.commands[static_cast<std::size_t>(command_outcome::rejected)] = 1;
  s.events_appended = 7;
  s.batch_appends = {{1, 4}, {1, 2, 0}, 6, 3};
  s.commit_us = {{100, 2500}, {1, 1, 1}, 50 + 2000 + 1000000, 3};
  s.commit_failures = 0;
  s.journal_syncs = 4;
  s.snapshots_written = 2;
  s.activations = 3;
  s.activation_failures = 1;
  s.passivations = 1;
  s.live_aggregates = 2;
  s.activation_us = {{10}, {0, 0}, 0, 0};
  s.subscribers.push_back({"audit", 4, 1500, 1, 9});
  s.subscribers.push_back({"odd\"name\\", 0, 0, 0, 0, true});
  const std::string expected = R"(# HELP cairn_commands_total Commands answered, by outcome.
# TYPE cairn_commands_total counter
cairn_commands_total{outcome="ok"} 5
cairn_commands_total{outcome="duplicate"} 0
cairn_commands_total{outcome="rejected"} 1
cairn_commands_total{outcome="conflict"} 0
cairn_commands_total{outcome="unavailable"} 0
cairn_commands_total{outcome="overloaded"} 0
cairn_commands_total{outcome="invalid_argument"} 0
cairn_commands_total{outcome="corrupted"} 0
cairn_commands_total{outcome="internal"} 0
cairn_commands_total{outcome="truncated"} 0
# HELP cairn_events_appended_total Events committed to the log, repeated command ids excluded.
# TYPE cairn_events_appended_total counter
cairn_events_appended_total 7
# HELP cairn_journal_batch_appends Appends per journal transaction (group commit).
# TYPE cairn_journal_batch_appends histogram
cairn_journal_batch_appends_bucket{le="1"} 1
cairn_journal_batch_appends_bucket{le="4"} 3
cairn_journal_batch_appends_bucket{le="+Inf"} 3
cairn_journal_batch_appends_sum 6
cairn_journal_batch_appends_count 3
# HELP cairn_journal_commit_duration_seconds Duration of each journal transaction.
# TYPE cairn_journal_commit_duration_seconds histogram
cairn_journal_commit_duration_seconds_bucket{le="0.0001"} 1
cairn_journal_commit_duration_seconds_bucket{le="0.0025"} 2
cairn_journal_commit_duration_seconds_bucket{le="+Inf"} 3
cairn_journal_commit_duration_seconds_sum 1.00205
cairn_journal_commit_duration_seconds_count 3
# HELP cairn_journal_commit_failures_total Journal transactions that failed.
# TYPE cairn_journal_commit_failures_total counter
cairn_journal_commit_failures_total 0
# HELP cairn_journal_syncs_total Flushes the journal made alone, when no commit came to carry the previous one's meta page to disk.
# TYPE cairn_journal_syncs_total counter
cairn_journal_syncs_total 4
# HELP cairn_replication_sync_timeouts_total Commands answered unavailable because the standby did not acknowledge their commit in time (sync replication).
# TYPE cairn_replication_sync_timeouts_total counter
cairn_replication_sync_timeouts_total 0
# HELP cairn_store_refusing_writes 1 once a failed flush made the store refuse every write until it is reopened: restart the runtime.
# TYPE cairn_store_refusing_writes gauge
cairn_store_refusing_writes 0
# HELP cairn_store_stale_readers_cleared_total Reader slots of dead processes the store cleared, so their snapshots stop pinning pages.
# TYPE cairn_store_stale_readers_cleared_total counter
cairn_store_stale_readers_cleared_total 0
# HELP cairn_snapshots_written_total Aggregate snapshots committed.
# TYPE cairn_snapshots_written_total counter
cairn_snapshots_written_total 2
# HELP cairn_aggregate_activations_total Aggregate actors spawned.
# TYPE cairn_aggregate_activations_total counter
cairn_aggregate_activations_total 3
# HELP cairn_aggregate_activation_failures_total Aggregate recoveries that failed and aggregate actors that stopped abnormally.
# TYPE cairn_aggregate_activation_failures_total counter
cairn_aggregate_activation_failures_total 1
# HELP cairn_aggregate_passivations_total Clean stops of aggregate actors.
# TYPE cairn_aggregate_passivations_total counter
cairn_aggregate_passivations_total 1
# HELP cairn_aggregates_live Aggregate actors running now.
# TYPE cairn_aggregates_live gauge
cairn_aggregates_live 2
# HELP cairn_aggregate_activation_duration_seconds Time an aggregate took to recover its state (snapshot and replay).
# TYPE cairn_aggregate_activation_duration_seconds histogram
cairn_aggregate_activation_duration_seconds_bucket{le="0.00001"} 0
cairn_aggregate_activation_duration_seconds_bucket{le="+Inf"} 0
cairn_aggregate_activation_duration_seconds_sum 0
cairn_aggregate_activation_duration_seconds_count 0
# HELP cairn_subscriber_lag_events Events of the log past the subscriber.
# TYPE cairn_subscriber_lag_events gauge
cairn_subscriber_lag_events{subscriber="audit"} 4
cairn_subscriber_lag_events{subscriber="odd\"name\\"} 0
# HELP cairn_subscriber_lag_seconds Age of the oldest event the subscriber has not handled.
# TYPE cairn_subscriber_lag_seconds gauge
cairn_subscriber_lag_seconds{subscriber="audit"} 1.5
cairn_subscriber_lag_seconds{subscriber="odd\"name\\"} 0
# HELP cairn_subscriber_dead_letters Dead letters of the subscriber.
# TYPE cairn_subscriber_dead_letters gauge
cairn_subscriber_dead_letters{subscriber="audit"} 1
cairn_subscriber_dead_letters{subscriber="odd\"name\\"} 0
# HELP cairn_subscriber_handled_total Events the subscriber handled since it started.
# TYPE cairn_subscriber_handled_total counter
cairn_subscriber_handled_total{subscriber="audit"} 9
cairn_subscriber_handled_total{subscriber="odd\"name\\"} 0
# HELP cairn_subscriber_held 1 while the subscriber is held: this node is a standby (docs/cluster.md).
# TYPE cairn_subscriber_held gauge
cairn_subscriber_held{subscriber="audit"} 0
cairn_subscriber_held{subscriber="odd\"name\\"} 1
)";
  CHECK(cairn::actors::to_prometheus(s) == expected);
}

TEST_CASE("a fresh registry renders every metric at zero", "[unit][metrics]") {
  metrics m;
  auto text = cairn::actors::to_prometheus(m.snapshot());
  CHECK(text.find("cairn_commands_total{outcome=\"ok\"} 0\n") != std::string::npos);
  CHECK(text.find("cairn_journal_commit_duration_seconds_bucket{le=\"1\"} 0\n")
        != std::string::npos);
  CHECK(text.find("cairn_journal_batch_appends_bucket{le=\"4096\"} 0\n") != std::string::npos);
  CHECK(text.find("cairn_aggregates_live 0\n") != std::string::npos);
}
