#include "output.hpp"

#include <unistd.h>

#include <cinttypes>
#include <cstdio>
#include <filesystem>
#include <iostream>

#include "cairn/tools/cli.hpp"

namespace cairn::tools::detail {

namespace fs = std::filesystem;

int report(const error& e) {
  std::cout.flush();
  std::cerr << "cairn: " << e.to_string() << std::endl;
  return e.code == errc::invalid_argument ? exit_usage : exit_failure;
}

result<std::unique_ptr<persistence::event_store>> open_read(const std::string& dir) {
  std::error_code ec;
  auto status = fs::status(dir, ec);
  if (!fs::exists(status))
    return fail(errc::invalid_argument, "no such directory", dir);
  if (!fs::is_directory(status))
    return fail(errc::invalid_argument, "not a directory", dir);
  persistence::store_options opts;
  opts.read_only = true;
  return persistence::open_store(dir, opts);
}

result<std::unique_ptr<persistence::event_store>> open_read(const std::string& dir,
                                                            const context& ctx) {
  std::error_code ec;
  auto status = fs::status(dir, ec);
  if (!fs::exists(status))
    return fail(errc::invalid_argument, "no such directory", dir);
  if (!fs::is_directory(status))
    return fail(errc::invalid_argument, "not a directory", dir);
  persistence::store_options opts;
  opts.read_only = true;
  opts.master_key_file = ctx.master_key_file;
  opts.master_key_env = ctx.master_key_env;
  return persistence::open_store(dir, opts);
}

result<log_cut> log_cut_of(const persistence::event_store& store) {
  log_cut c;
  auto extent = store.extent();
  if (!extent)
    return tl::unexpected(extent.error());
  c.extent = *extent;
  // The store's own records (epochs, forgets) are no reader's events;
  // retention never removes them. Those written after the extent was read
  // lie past its last position.
  auto epochs = store.epochs();
  if (!epochs)
    return tl::unexpected(epochs.error());
  auto forgets = store.forgets();
  if (!forgets)
    return tl::unexpected(forgets.error());
  std::uint64_t system = 0, system_below = 0;
  auto count = [&](std::uint64_t position) {
    system += position <= c.extent.last_position ? 1 : 0;
    system_below += position < c.extent.first_position ? 1 : 0;
  };
  for (const auto& e : *epochs)
    count(e.position);
  for (const auto& f : *forgets)
    count(f.position);
  c.events = c.extent.records > system ? c.extent.records - system : 0;
  auto below = c.extent.kept_below();
  c.kept_below = below > system_below ? below - system_below : 0;
  return c;
}

std::string cut_note(const log_cut& cut) {
  return "retention removed events before position " + std::to_string(cut.extent.first_position)
         + " (the log is complete from there); " + count_of(cut.kept_below, "kept event")
         + (cut.kept_below == 1 ? " lies" : " lie") + " below it";
}

std::string count_of(std::uint64_t n, std::string_view noun) {
  return std::to_string(n) + ' ' + std::string{noun} + (n == 1 ? "" : "s");
}

std::string human_bytes(std::uint64_t bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(bytes);
  int u = 0;
  while (v >= 1024 && u < 4) {
    v /= 1024;
    ++u;
  }
  char buf[32];
  if (u == 0)
    std::snprintf(buf, sizeof buf, "%" PRIu64 " B", bytes);
  else
    std::snprintf(buf, sizeof buf, "%.1f %s", v, units[u]);
  return buf;
}

std::string payload_text(const persistence::recorded_event& ev,
                         const persistence::event_registry& types) {
  if (types.current_version(ev.type)) {
    auto data = types.to_json(ev.type, ev.schema_version, ev.payload);
    if (data)
      return *data;
  }
  constexpr std::size_t shown = 32;
  auto out = std::to_string(ev.payload.size()) + " bytes " + to_hex(ev.payload.substr(0, shown));
  if (ev.payload.size() > shown)
    out += "...";
  return out;
}

std::string metadata_text(const persistence::metadata& m) {
  std::string out;
  auto field = [&](const char* name, const std::string& v) {
    if (!v.empty())
      out += std::string{" "} + name + "=" + v;
  };
  field("correlation", m.correlation_id);
  field("causation", m.causation_id);
  field("command", m.command_id);
  field("tenant", m.tenant);
  field("user", m.user);
  field("subject", m.subject);
  return out;
}

progress::progress(std::string label, std::uint64_t total)
    : label_(std::move(label)), total_(total), enabled_(::isatty(STDERR_FILENO) == 1) {
  // nop
}

progress::~progress() {
  if (drawn_)
    std::fprintf(stderr, "\r\033[K");
}

void progress::update(std::uint64_t done) {
  if (!enabled_)
    return;
  auto now = std::chrono::steady_clock::now();
  if (drawn_ && now - last_ < std::chrono::milliseconds(100))
    return;
  last_ = now;
  drawn_ = true;
  if (total_ > 0)
    std::fprintf(stderr, "\r\033[K%s: %" PRIu64 " / %" PRIu64 " (%u%%)", label_.c_str(), done,
                 total_, static_cast<unsigned>(done * 100 / total_));
  else
    std::fprintf(stderr, "\r\033[K%s: %" PRIu64, label_.c_str(), done);
  std::fflush(stderr);
}

} // namespace cairn::tools::detail
