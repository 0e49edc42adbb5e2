#include "cairn/actors/metrics.hpp"

#include <cassert>

namespace cairn::actors {

histogram::histogram(std::initializer_list<std::uint64_t> bounds)
    : bounds_(bounds), counts_(new std::atomic<std::uint64_t>[bounds.size() + 1]) {
  for (std::size_t i = 0; i <= bounds_.size(); ++i)
    counts_[i].store(0, std::memory_order_relaxed);
  for (std::size_t i = 1; i < bounds_.size(); ++i)
    assert(bounds_[i - 1] < bounds_[i] && "histogram bounds must ascend");
}

histogram_snapshot histogram::snapshot() const {
  histogram_snapshot s;
  s.bounds = bounds_;
  s.counts.reserve(bounds_.size() + 1);
  for (std::size_t i = 0; i <= bounds_.size(); ++i) {
    s.counts.push_back(counts_[i].load(std::memory_order_relaxed));
    s.count += s.counts.back();
  }
  s.sum = sum_.load(std::memory_order_relaxed);
  return s;
}

std::string_view to_string(command_outcome o) noexcept {
  switch (o) {
    case command_outcome::ok: return "ok";
    case command_outcome::duplicate: return "duplicate";
    case command_outcome::rejected: return "rejected";
    case command_outcome::conflict: return "conflict";
    case command_outcome::unavailable: return "unavailable";
    case command_outcome::overloaded: return "overloaded";
    case command_outcome::invalid_argument: return "invalid_argument";
    case command_outcome::corrupted: return "corrupted";
    case command_outcome::internal: return "internal";
    case command_outcome::truncated: return "truncated";
  }
  return "internal";
}

command_outcome outcome_of(std::uint8_t code, bool duplicate) noexcept {
  if (code == 0)
    return duplicate ? command_outcome::duplicate : command_outcome::ok;
  switch (static_cast<errc>(code)) {
    case errc::rejected: return command_outcome::rejected;
    case errc::conflict: return command_outcome::conflict;
    case errc::unavailable: return command_outcome::unavailable;
    case errc::overloaded: return command_outcome::overloaded;
    case errc::invalid_argument: return command_outcome::invalid_argument;
    case errc::corrupted: return command_outcome::corrupted;
    case errc::internal: return command_outcome::internal;
    case errc::truncated: return command_outcome::truncated;
  }
  return command_outcome::internal; // a code no errc names: a bug somewhere
}

// Buckets: batch sizes in powers of two up to the journal's usual ceiling;
// durations in µs from a no_sync commit (tens of µs) to a stalled fsync (1 s).
metrics::metrics()
    : batch_appends{1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096},
      commit_us{50, 100, 250, 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 1000000},
      activation_us{10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 25000, 100000, 1000000} {}

metrics_snapshot metrics::snapshot() const {
  metrics_snapshot s;
  for (std::size_t i = 0; i < command_outcome_count; ++i)
    s.commands[i] = commands_[i].value();
  s.events_appended = events_appended.value();
  s.batch_appends = batch_appends.snapshot();
  s.commit_us = commit_us.snapshot();
  s.commit_failures = commit_failures.value();
  s.journal_syncs = journal_syncs.value();
  s.replication_sync_timeouts = replication_sync_timeouts.value();
  s.store_refusing_writes = store_refusing_writes.value();
  s.store_stale_readers_cleared = store_stale_readers_cleared.value();
  s.snapshots_written = snapshots_written.value();
  s.activations = activations.value();
  s.activation_failures = activation_failures.value();
  s.passivations = passivations.value();
  s.live_aggregates = live_aggregates.value();
  s.activation_us = activation_us.snapshot();
  return s;
}

// -- Prometheus text format 0.0.4 ---------------------------------------------

namespace {

/// `v` / 10^digits as an exact decimal, trailing zeros dropped: µs (6) or
/// ms (3) in seconds without the rounding of a double.
std::string decimal(std::uint64_t v, unsigned digits) {
  if (digits == 0)
    return std::to_string(v);
  std::uint64_t scale = 1;
  for (unsigned i = 0; i < digits; ++i)
    scale *= 10;
  auto out = std::to_string(v / scale);
  auto frac = std::to_string(v % scale);
  frac.insert(0, digits - frac.size(), '0');
  while (!frac.empty() && frac.back() == '0')
    frac.pop_back();
  if (!frac.empty())
    out += '.' + frac;
  return out;
}

std::string label_value(std::string_view v) {
  std::string out;
  for (char c : v) {
    if (c == '\\')
      out += "\\\\";
    else if (c == '"')
      out += "\\\"";
    else if (c == '\n')
      out += "\\n";
    else
      out += c;
  }
  return out;
}

class writer {
public:
  void header(std::string_view name, std::string_view type, std::string_view help) {
    out_.append("# HELP ").append(name).append(" ").append(help).append("\n");
    out_.append("# TYPE ").append(name).append(" ").append(type).append("\n");
  }

  void sample(std::string_view name, std::string_view labels, const std::string& value) {
    out_.append(name);
    if (!labels.empty())
      out_.append("{").append(labels).append("}");
    out_.append(" ").append(value).append("\n");
  }

  void scalar(std::string_view name, std::string_view type, std::string_view help,
              const std::string& value) {
    header(name, type, help);
    sample(name, {}, value);
  }

  /// `digits`: 6 renders µs observations in seconds, 0 leaves them as they are.
  void histogram(std::string_view name, std::string_view help, const histogram_snapshot& h,
                 unsigned digits) {
    header(name, "histogram", help);
    std::string bucket{name};
    bucket += "_bucket";
    std::uint64_t cumulative = 0;
    for (std::size_t i = 0; i < h.bounds.size(); ++i) {
      cumulative += h.counts[i];
      sample(bucket, "le=\"" + decimal(h.bounds[i], digits) + "\"", std::to_string(cumulative));
    }
    sample(bucket, "le=\"+Inf\"", std::to_string(h.count));
    sample(std::string{name} + "_sum", {}, decimal(h.sum, digits));
    sample(std::string{name} + "_count", {}, std::to_string(h.count));
  }

  std::string take() { return std::move(out_); }

private:
  std::string out_;
};

} // namespace

std::string to_prometheus(const metrics_snapshot& s) {
  writer w;
  w.header("cairn_commands_total", "counter", "Commands answered, by outcome.");
  for (std::size_t i = 0; i < command_outcome_count; ++i)
    w.sample("cairn_commands_total",
             "outcome=\"" + std::string{to_string(static_cast<command_outcome>(i))} + "\"",
             std::to_string(s.commands[i]));
  w.scalar("cairn_events_appended_total", "counter",
           "Events committed to the log, repeated command ids excluded.",
           std::to_string(s.events_appended));
  w.histogram("cairn_journal_batch_appends", "Appends per journal transaction (group commit).",
              s.batch_appends, 0);
  w.histogram("cairn_journal_commit_duration_seconds", "Duration of each journal transaction.",
              s.commit_us, 6);
  w.scalar("cairn_journal_commit_failures_total", "counter", "Journal transactions that failed.",
           std::to_string(s.commit_failures));
  w.scalar("cairn_journal_syncs_total", "counter",
           "Flushes the journal made alone, when no commit came to carry the previous one's "
           "meta page to disk.",
           std::to_string(s.journal_syncs));
  w.scalar("cairn_replication_sync_timeouts_total", "counter",
           "Commands answered unavailable because the standby did not acknowledge their commit "
           "in time (sync replication).",
           std::to_string(s.replication_sync_timeouts));
  w.scalar("cairn_store_refusing_writes", "gauge",
           "1 once a failed flush made the store refuse every write until it is reopened: "
           "restart the runtime.",
           std::to_string(s.store_refusing_writes));
  w.scalar("cairn_store_stale_readers_cleared_total", "counter",
           "Reader slots of dead processes the store cleared, so their snapshots stop pinning "
           "pages.",
           std::to_string(s.store_stale_readers_cleared));
  w.scalar("cairn_snapshots_written_total", "counter", "Aggregate snapshots committed.",
           std::to_string(s.snapshots_written));
  w.scalar("cairn_aggregate_activations_total", "counter", "Aggregate actors spawned.",
           std::to_string(s.activations));
  w.scalar("cairn_aggregate_activation_failures_total", "counter",
           "Aggregate recoveries that failed and aggregate actors that stopped abnormally.",
           std::to_string(s.activation_failures));
  w.scalar("cairn_aggregate_passivations_total", "counter", "Clean stops of aggregate actors.",
           std::to_string(s.passivations));
  w.scalar("cairn_aggregates_live", "gauge", "Aggregate actors running now.",
           std::to_string(s.live_aggregates));
  w.histogram("cairn_aggregate_activation_duration_seconds",
              "Time an aggregate took to recover its state (snapshot and replay).", s.activation_us,
              6);
  auto per_subscriber = [&](std::string_view name, std::string_view type, std::string_view help,
                            auto value) {
    w.header(name, type, help);
    for (const auto& sub : s.subscribers)
      w.sample(name, "subscriber=\"" + label_value(sub.name) + "\"", value(sub));
  };
  per_subscriber("cairn_subscriber_lag_events", "gauge", "Events of the log past the subscriber.",
                 [](const subscriber_metrics& m) { return std::to_string(m.lag); });
  per_subscriber("cairn_subscriber_lag_seconds", "gauge",
                 "Age of the oldest event the subscriber has not handled.",
                 [](const subscriber_metrics& m) {
                   return decimal(static_cast<std::uint64_t>(m.lag_ms > 0 ? m.lag_ms : 0), 3);
                 });
  per_subscriber("cairn_subscriber_dead_letters", "gauge", "Dead letters of the subscriber.",
                 [](const subscriber_metrics& m) { return std::to_string(m.dead_letters); });
  per_subscriber("cairn_subscriber_handled_total", "counter",
                 "Events the subscriber handled since it started.",
                 [](const subscriber_metrics& m) { return std::to_string(m.handled); });
  per_subscriber("cairn_subscriber_held", "gauge",
                 "1 while the subscriber is held: this node is a standby (docs/cluster.md).",
                 [](const subscriber_metrics& m) { return m.held ? "1" : "0"; });
  return w.take();
}

} // namespace cairn::actors
