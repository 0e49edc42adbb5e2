// The read-only subcommands: streams, events, tail, stats, checkpoints, backup.

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <limits>
#include <map>
#include <optional>
#include <thread>
#include <unordered_map>

#include "cairn/model/stream_name.hpp"
#include "cairn/persistence/personal.hpp"
#include "cairn/tools/cli.hpp"
#include "output.hpp"

namespace cairn::tools::detail {

namespace {

namespace fs = std::filesystem;

/// Events read per call: bounds memory on long streams and logs.
constexpr std::size_t page_size = 1024;

std::string pad(std::string s, std::size_t width) {
  if (s.size() < width)
    s.append(width - s.size(), ' ');
  return s;
}

volatile std::sig_atomic_t stop_requested = 0;

extern "C" void on_stop_signal(int) { stop_requested = 1; }

/// Installs SIGINT and SIGTERM handlers for its lifetime, so `tail --follow`
/// ends cleanly (flushing its output) instead of being killed.
class stop_signals {
public:
  stop_signals() {
    stop_requested = 0;
    old_int_ = std::signal(SIGINT, on_stop_signal);
    old_term_ = std::signal(SIGTERM, on_stop_signal);
  }
  ~stop_signals() {
    std::signal(SIGINT, old_int_);
    std::signal(SIGTERM, old_term_);
  }
  stop_signals(const stop_signals&) = delete;
  stop_signals& operator=(const stop_signals&) = delete;

private:
  void (*old_int_)(int);
  void (*old_term_)(int);
};

void print_log_event(const context& ctx, const persistence::recorded_event& ev,
                     const persistence::key_ring* keys) {
  persistence::personal_scope scope{keys, ev.meta.subject};
  if (ctx.json)
    std::cout << event_json(ev, ctx.types, false) << '\n';
  else
    std::cout << '@' << ev.position << ' ' << ev.stream << " v" << ev.version << ' '
              << iso_time(ev.timestamp_ns) << ' ' << ev.type << '/' << ev.schema_version
              << metadata_text(ev.meta) << ' ' << payload_text(ev, ctx.types) << '\n';
}

/// The tenant of `stream` up to `version`, "" when it has none: the newest
/// non-empty one, read backward (only events appended around the runtime
/// lack it on a stream that has one, so this is one read nearly always).
result<std::string> tenant_of(const persistence::event_store& store, const std::string& stream,
                              std::uint64_t version) {
  for (auto down = version; down > 0;) {
    auto page = store.read_stream_backward(stream, down, page_size);
    if (!page)
      return tl::unexpected(page.error());
    for (const auto& ev : *page)
      if (!ev.meta.tenant.empty())
        return ev.meta.tenant;
    if (page->size() < page_size)
      break;
    down = page->back().version - 1;
  }
  return std::string{};
}

} // namespace

int streams(const context& ctx, const std::string& dir, const std::string& prefix,
            const std::string& tenant) {
  auto store = open_read(dir);
  if (!store)
    return report(store.error());
  auto list = (*store)->list_streams(prefix);
  if (!list)
    return report(list.error());
  if (!tenant.empty()) {
    std::vector<persistence::stream_info> kept;
    for (auto& s : *list) {
      auto t = tenant_of(**store, s.name, s.version);
      if (!t)
        return report(t.error());
      if (*t == tenant)
        kept.push_back(std::move(s));
    }
    *list = std::move(kept);
  }
  std::size_t width = 6;
  for (const auto& s : *list)
    width = std::max(width, s.name.size());
  if (!ctx.json)
    std::cout << pad("STREAM", width) << "  " << pad("VERSION", 8) << "  LAST EVENT\n";
  for (const auto& s : *list) {
    // The event at the listed version, not the newest: the writer may have moved on.
    auto last = (*store)->read_stream(s.name, s.version, 1);
    if (!last)
      return report(last.error());
    std::int64_t ts = last->empty() ? 0 : last->front().timestamp_ns;
    if (ctx.json)
      std::cout << json_object{}
                     .add("stream", s.name)
                     .add("version", s.version)
                     .add("last_timestamp", iso_time(ts))
                     .add("last_timestamp_ns", ts)
                     .str()
                << '\n';
    else
      std::cout << pad(s.name, width) << "  " << pad(std::to_string(s.version), 8) << "  "
                << iso_time(ts) << '\n';
  }
  if (!ctx.json)
    std::cout << count_of(list->size(), "stream") << '\n';
  return exit_ok;
}

namespace {

void print_event(const context& ctx, const persistence::recorded_event& ev,
                 const persistence::key_ring* keys) {
  persistence::personal_scope scope{keys, ev.meta.subject};
  if (ctx.json) {
    std::cout << event_json(ev, ctx.types, false) << '\n';
    return;
  }
  std::cout << 'v' << ev.version << " @" << ev.position << ' ' << iso_time(ev.timestamp_ns) << ' '
            << ev.type << '/' << ev.schema_version << " id=" << ev.id.to_string()
            << metadata_text(ev.meta) << "\n  " << payload_text(ev, ctx.types) << '\n';
}

} // namespace

int events(const context& ctx, const std::string& dir, const std::string& stream,
           std::uint64_t from, std::uint64_t to, const std::string& as_of,
           std::optional<std::uint64_t> last, const std::string& tenant) {
  auto shows = [&](const persistence::recorded_event& ev) {
    return tenant.empty() || ev.meta.tenant == tenant;
  };
  if (auto ok = validate_stream_name(stream); !ok)
    return report(ok.error());
  if (from == 0 || from > to)
    return report(error{errc::invalid_argument, "--from must be at least 1 and at most --to"});
  if (last && *last == 0)
    return report(error{errc::invalid_argument, "--last must be at least 1"});
  std::int64_t until = std::numeric_limits<std::int64_t>::max();
  if (!as_of.empty()) {
    auto t = parse_time(as_of);
    if (!t)
      return report(t.error());
    until = *t;
  }
  auto store = open_read(dir, ctx);
  if (!store)
    return report(store.error());
  auto version = (*store)->stream_version(stream);
  if (!version)
    return report(version.error());
  if (*version == 0)
    return report(error{errc::invalid_argument, "no such stream", stream});
  // Retention removes a prefix of a stream's versions: it reads from its
  // first kept one, which is said once when the range asked for begins below.
  std::uint64_t first = 1;
  auto info = (*store)->list_streams(stream, 1);
  if (!info)
    return report(info.error());
  if (!info->empty() && info->front().name == stream)
    first = info->front().first_version;
  if (from < first) {
    std::cerr << "cairn: retention removed versions 1-" << first - 1 << " of " << stream
              << "; it is complete from version " << first << std::endl;
    from = first;
  }
  std::uint64_t shown = 0;
  for (auto down = std::min(to, *version);
       last && shown < *last && down >= first;) { // newest first, a page at a time
    auto want = static_cast<std::size_t>(
      std::min<std::uint64_t>({page_size, *last - shown, down - first + 1}));
    auto page = (*store)->read_stream_backward(stream, down, want);
    if (!page)
      return report(page.error());
    for (const auto& ev : *page)
      if (shown < *last && shows(ev)) {
        print_event(ctx, ev, (*store)->personal_keys());
        ++shown;
      }
    if (page->size() < want)
      break;
    down = page->back().version - 1;
  }
  bool past_as_of = last.has_value();
  for (auto v = from; v <= to && !past_as_of;) {
    auto max = static_cast<std::size_t>(std::min<std::uint64_t>(page_size, to - v + 1));
    auto page = (*store)->read_stream(stream, v, max);
    if (!page)
      return report(page.error());
    for (const auto& ev : *page) {
      // As read_stream_until_time: the stream as it stood then is its leading
      // events up to the first one recorded later.
      if (ev.timestamp_ns > until) {
        past_as_of = true;
        break;
      }
      if (!shows(ev))
        continue;
      ++shown;
      print_event(ctx, ev, (*store)->personal_keys());
    }
    if (page->size() < max)
      break;
    v += page->size();
  }
  if (!ctx.json && shown == 0)
    std::cout << "no events\n";
  return exit_ok;
}

int tail(const context& ctx, const std::string& dir, const tail_options& opts) {
  for (const auto& c : opts.categories)
    if (c.empty() || c.find('-') != std::string::npos
        || !std::all_of(c.begin(), c.end(), is_stream_name_char))
      return report(error{errc::invalid_argument,
                          "a category is a stream name's part before the first '-'", c});
  auto store = open_read(dir, ctx);
  if (!store)
    return report(store.error());
  persistence::read_filter filter{opts.categories, opts.types, opts.tenant};
  std::optional<stop_signals> signals;
  if (opts.follow)
    signals.emplace();
  auto pos = std::max<std::uint64_t>(opts.from, 1);
  // Below retention's cut the log has holes: read the records kept there,
  // saying so once. Past the cut as it stood now, a cut made while this runs
  // is `truncated`, never a silent skip.
  auto cut = log_cut_of(**store);
  if (!cut)
    return report(cut.error());
  if (pos < cut->extent.first_position)
    std::cerr << "cairn: " << cut_note(*cut) << std::endl;
  while (stop_requested == 0) {
    filter.kept_below_cut = pos < cut->extent.first_position;
    auto page = (*store)->read_all(pos, page_size, filter);
    if (!page)
      return report(page.error());
    for (const auto& ev : page->events)
      print_log_event(ctx, ev, (*store)->personal_keys());
    bool at_end = page->events.empty() && page->next_position == pos;
    pos = page->next_position;
    if (!at_end)
      continue;
    if (!opts.follow)
      break;
    std::cout.flush();
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  std::cout.flush();
  return exit_ok;
}

namespace {

struct tenant_counts {
  std::uint64_t events = 0;
  std::uint64_t streams = 0;
};

/// Events and streams per tenant ("": none) up to position `last`, in one
/// pass of the log. A stream counts under its tenant (the one its events
/// name; a stream never mixes tenants), or under "" when none of its
/// events names one. Memory: one entry per stream.
result<std::map<std::string, tenant_counts>> count_tenants(const persistence::event_store& store,
                                                           std::uint64_t last) {
  std::map<std::string, tenant_counts> per;
  std::unordered_map<std::string, std::string> stream_tenant;
  // After retention, from its cut: below it the log is incomplete.
  auto first = store.first_position();
  if (!first)
    return tl::unexpected(first.error());
  for (std::uint64_t pos = *first; pos <= last;) {
    auto page = store.read_all(pos, static_cast<std::size_t>(
                                      std::min<std::uint64_t>(page_size, last - pos + 1)));
    if (!page)
      return tl::unexpected(page.error());
    if (page->next_position <= pos)
      break;
    for (const auto& ev : page->events) {
      ++per[ev.meta.tenant].events;
      auto [it, fresh] = stream_tenant.try_emplace(ev.stream, ev.meta.tenant);
      if (!fresh && it->second.empty())
        it->second = ev.meta.tenant;
    }
    pos = page->next_position;
  }
  for (const auto& [stream, tenant] : stream_tenant)
    ++per[tenant].streams;
  return per;
}

} // namespace

int stats(const context& ctx, const std::string& dir, bool tenants) {
  auto store = open_read(dir);
  if (!store)
    return report(store.error());
  auto& s = **store;
  auto st = s.stats();
  if (!st)
    return report(st.error());
  auto catalogue = s.type_catalogue();
  if (!catalogue)
    return report(catalogue.error());
  auto last = s.last_position();
  if (!last)
    return report(last.error());
  // The oldest and newest events (positions have no gaps from the first
  // position retention kept, 1 for a store never cut).
  std::optional<persistence::recorded_event> oldest, newest;
  auto first = s.first_position();
  if (!first)
    return report(first.error());
  if (*last > 0) {
    auto first_page = s.read_all(*first, 1);
    if (!first_page)
      return report(first_page.error());
    if (!first_page->events.empty())
      oldest = first_page->events.front();
    // A log may end in epoch records (a promoted node's does), which are not
    // events: step back over them. There are a few at most.
    for (auto p = *last; oldest && !newest && p >= oldest->position; --p) {
      auto page = s.read_all(p, 1);
      if (!page)
        return report(page.error());
      if (!page->events.empty())
        newest = page->events.front();
    }
  }
  std::map<std::string, tenant_counts> per_tenant;
  if (tenants) {
    auto counted = count_tenants(s, *last);
    if (!counted)
      return report(counted.error());
    per_tenant = std::move(*counted);
  }
  std::error_code ec;
  auto file_size = fs::file_size(fs::path(dir) / "data.mdb", ec);
  if (ec)
    file_size = 0;
  auto registered = [&](const std::string& type, std::uint32_t v) {
    return ctx.types.can_decode(type, v);
  };
  if (ctx.json) {
    std::string types = "[";
    for (const auto& [type, v] : *catalogue) {
      if (types.size() > 1)
        types += ',';
      types += json_object{}
                 .add("type", type)
                 .add("schema_version", v)
                 .add("decodable", registered(type, v))
                 .str();
    }
    types += ']';
    json_object o;
    o.add("path", dir)
      .add("format_version", st->format_version)
      .add("events", st->events)
      .add("streams", st->streams)
      .add("snapshots", st->snapshots)
      .add("checkpoints", st->checkpoints)
      .add("map_size", std::uint64_t{st->map_size})
      .add("map_used", std::uint64_t{st->map_used})
      .add("file_size", std::uint64_t{file_size})
      .add("oldest_position", oldest ? oldest->position : 0)
      .add("newest_position", newest ? newest->position : 0);
    if (oldest)
      o.add("oldest_timestamp", iso_time(oldest->timestamp_ns));
    if (newest)
      o.add("newest_timestamp", iso_time(newest->timestamp_ns));
    o.add_raw("types", types);
    if (tenants) {
      std::string list = "[";
      for (const auto& [tenant, n] : per_tenant) {
        if (list.size() > 1)
          list += ',';
        list += json_object{}
                  .add("tenant", tenant)
                  .add("events", n.events)
                  .add("streams", n.streams)
                  .str();
      }
      o.add_raw("tenants", list + ']');
    }
    std::cout << o.str() << '\n';
    return exit_ok;
  }
  auto pct = st->map_size == 0
               ? 0.0
               : 100.0 * static_cast<double>(st->map_used) / static_cast<double>(st->map_size);
  char usage[32];
  std::snprintf(usage, sizeof usage, "%.1f%%", pct);
  std::cout << "store        " << dir << '\n'
            << "format       " << st->format_version << '\n'
            << "events       " << st->events << '\n'
            << "streams      " << st->streams << '\n'
            << "snapshots    " << st->snapshots << '\n'
            << "checkpoints  " << st->checkpoints << '\n'
            << "map          " << human_bytes(st->map_used) << " used of "
            << human_bytes(st->map_size) << " (" << usage << ")\n"
            << "data.mdb     " << human_bytes(file_size) << " on disk\n";
  if (oldest)
    std::cout << "oldest       @" << oldest->position << ' ' << iso_time(oldest->timestamp_ns)
              << '\n';
  if (newest)
    std::cout << "newest       @" << newest->position << ' ' << iso_time(newest->timestamp_ns)
              << '\n';
  const char* label = "types        ";
  for (const auto& [type, v] : *catalogue) {
    std::cout << label << type << " v" << v
              << (registered(type, v) ? "" : " (not registered: shown as hex)") << '\n';
    label = "             ";
  }
  label = "tenants      ";
  std::size_t width = 6;
  for (const auto& [tenant, n] : per_tenant)
    width = std::max(width, tenant.size());
  for (const auto& [tenant, n] : per_tenant) {
    std::cout << label << pad(tenant.empty() ? "(none)" : tenant, width) << "  "
              << count_of(n.events, "event") << " in " << count_of(n.streams, "stream") << '\n';
    label = "             ";
  }
  if (tenants && per_tenant.empty())
    std::cout << label << "none: the log is empty\n";
  return exit_ok;
}

int checkpoints(const context& ctx, const std::string& dir) {
  auto store = open_read(dir);
  if (!store)
    return report(store.error());
  auto list = (*store)->list_checkpoints();
  if (!list)
    return report(list.error());
  auto last = (*store)->last_position();
  if (!last)
    return report(last.error());
  std::size_t width = 10;
  for (const auto& cp : *list)
    width = std::max(width, cp.name.size());
  if (!ctx.json)
    std::cout << pad("CHECKPOINT", width) << "  " << pad("POSITION", 10) << "  BEHIND\n";
  for (const auto& cp : *list) {
    auto behind = *last > cp.position ? *last - cp.position : 0;
    if (ctx.json)
      std::cout << json_object{}
                     .add("name", cp.name)
                     .add("position", cp.position)
                     .add("behind", behind)
                     .str()
                << '\n';
    else
      std::cout << pad(cp.name, width) << "  " << pad(std::to_string(cp.position), 10) << "  "
                << behind << '\n';
  }
  if (!ctx.json)
    std::cout << count_of(list->size(), "checkpoint") << ", log at position " << *last << '\n';
  return exit_ok;
}

int backup(const context&, const std::string& dir, const std::string& dest) {
  auto store = open_read(dir);
  if (!store)
    return report(store.error());
  auto started = std::chrono::steady_clock::now();
  if (auto ok = (*store)->copy_to(dest); !ok)
    return report(ok.error());
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now()
                                                                  - started)
              .count();
  std::error_code ec;
  auto size = fs::file_size(fs::path(dest) / "data.mdb", ec);
  std::cout << "backed up " << dir << " to " << dest << " (" << human_bytes(ec ? 0 : size) << ", "
            << ms << " ms)\n";
  return exit_ok;
}

} // namespace cairn::tools::detail
