// `cairn export` and `cairn import`: the log as JSON lines, lossless.
//
// Line 1 is a header ({"cairn_export":1,...}); then one event per line in
// position order, with the raw payload in "payload_hex" (so any type round
// trips byte for byte) and "data" when the type is registered; then one
// {"checkpoint":name,"position":p} line per checkpoint, one {"kv":space,...}
// line per read-model entry and one {"dead_letter":subscriber,...} line per
// dead letter, all three read in one transaction so a projection's
// checkpoint and its read model agree.

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <ext/stdio_filebuf.h>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <limits>
#include <map>
#include <unordered_map>

#include "cairn/tools/cli.hpp"
#include "cairn/persistence/personal.hpp"
#include "cairn/tools/import_line.hpp"
#include "output.hpp"

namespace cairn::tools::detail {

namespace {

namespace fs = std::filesystem;
using persistence::append_request;
using persistence::checkpoint;

constexpr std::size_t export_page = 4096;
/// Events per import transaction: large enough that fsyncs do not dominate.
constexpr std::size_t import_batch_events = 8192;

/// Appends the requests of an import in batches, checking that each lands
/// exactly where the export had it.
class import_writer {
public:
  explicit import_writer(persistence::event_store& store) : store_(store) {}

  /// Adds one event: it joins the current request when it continues it (same
  /// stream, same metadata), so every original append, command id included,
  /// is written as one request again.
  result<void> add(imported_event e) {
    if (!pending_.events.empty() && (pending_.stream != e.stream || !(pending_.meta == e.meta))) {
      if (auto ok = close_request(); !ok)
        return ok;
    }
    if (pending_.events.empty()) {
      pending_.stream = std::move(e.stream);
      pending_.meta = std::move(e.meta);
      pending_.expected = persistence::expected_version::exact(e.version - 1);
      pending_first_ = e.position;
    }
    pending_.events.push_back(std::move(e.data));
    return {};
  }

  /// Writes everything still pending, with the checkpoints, read models and
  /// dead letters (one transaction: a projection never sees one without the other).
  result<void> finish(persistence::event_store::side_tables side) {
    if (!pending_.events.empty())
      if (auto ok = close_request(); !ok)
        return ok;
    batch_.checkpoints = std::move(side.checkpoints);
    batch_.kv = std::move(side.kv);
    batch_.dead_letters = std::move(side.dead_letters);
    return commit();
  }

  [[nodiscard]] std::uint64_t written() const { return written_; }

private:
  result<void> close_request() {
    batch_events_ += pending_.events.size();
    firsts_.push_back(pending_first_);
    batch_.appends.push_back(std::move(pending_));
    pending_ = append_request{};
    if (batch_events_ >= import_batch_events)
      return commit();
    return {};
  }

  result<void> commit() {
    auto slots = store_.append_batch(batch_);
    if (!slots)
      return tl::unexpected(slots.error());
    for (std::size_t i = 0; i < slots->size(); ++i) {
      const auto& slot = (*slots)[i];
      const auto& req = batch_.appends[i];
      if (!slot)
        return tl::unexpected(slot.error());
      if (slot->duplicate || slot->first_position != firsts_[i])
        return fail(errc::internal, "the events of " + req.stream + " landed at position "
                                      + std::to_string(slot->first_position) + " instead of "
                                      + std::to_string(firsts_[i]));
      written_ += req.events.size();
    }
    batch_ = persistence::write_batch{};
    firsts_.clear();
    batch_events_ = 0;
    return {};
  }

  persistence::event_store& store_;
  append_request pending_;
  std::uint64_t pending_first_ = 0;
  persistence::write_batch batch_;
  std::vector<std::uint64_t> firsts_; // first position of each request in batch_
  std::size_t batch_events_ = 0;
  std::uint64_t written_ = 0;
};

/// The lines of a file, each at most `max_import_line` bytes: a file without
/// newlines cannot make import read it whole.
class line_source {
public:
  explicit line_source(std::istream& in) : in_(in), buf_(std::size_t{1} << 20) {}

  /// The next line, without its '\n', into `line`; false at the end. `invalid_argument` when it
  /// is longer than the bound.
  [[nodiscard]] result<bool> next(std::string& line) {
    line.clear();
    bool any = false;
    for (;;) {
      if (at_ == end_ && !fill())
        return any;
      any = true;
      const char* nl = static_cast<const char*>(std::memchr(at_, '\n', end_ - at_));
      const auto n = static_cast<std::size_t>((nl != nullptr ? nl : end_) - at_);
      if (line.size() + n > max_import_line)
        return fail(errc::invalid_argument,
                    "the line is longer than " + std::to_string(max_import_line >> 20) + " MiB");
      line.append(at_, n);
      at_ += n;
      if (nl != nullptr) {
        ++at_;
        return true;
      }
    }
  }

private:
  bool fill() {
    in_.read(buf_.data(), static_cast<std::streamsize>(buf_.size()));
    at_ = buf_.data();
    end_ = at_ + in_.gcount();
    return at_ != end_;
  }

  std::istream& in_;
  std::vector<char> buf_;
  const char* at_ = nullptr;
  const char* end_ = nullptr;
};

std::int64_t ms_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now()
                                                               - start)
    .count();
}

} // namespace

/// export_log's work; runs in a child process.
static int export_here(const context& ctx, const std::string& dir, const std::string& file,
                       const export_options& opts) {
  auto started = std::chrono::steady_clock::now();
  auto opened = open_read(dir, ctx);
  if (!opened)
    return report(opened.error());
  const auto& store = **opened;
  std::error_code ec;
  auto existing = fs::symlink_status(file, ec);
  if (fs::is_symlink(existing))
    return report(error{errc::invalid_argument,
                        "the export file is a symbolic link (export never follows one)", file});
  if (fs::exists(existing))
    return report(
      error{errc::invalid_argument, "the export file exists (export never overwrites)", file});
  // Checkpoints first: each is then at or before the last position read next.
  auto side = store.read_side_tables();
  if (!side)
    return report(side.error());
  const auto* cps = &side->checkpoints;
  // After retention the log has holes below its cut: every record kept there
  // is exported too, and the header says where the cut is (import refuses
  // such a file: see import_log). The store's own records (epochs) are not
  // exported: they are not events.
  auto cut = log_cut_of(store);
  if (!cut)
    return report(cut.error());
  const auto* last = &cut->extent.last_position;
  persistence::read_filter filter;
  filter.tenant = opts.tenant;
  auto read_page = [&](std::uint64_t pos) {
    filter.kept_below_cut = pos < cut->extent.first_position;
    return store.read_all(
      pos, static_cast<std::size_t>(std::min<std::uint64_t>(export_page, *last - pos + 1)), filter);
  };
  const bool one_tenant = !opts.tenant.empty();
  // One tenant's export is a log of its own, renumbered from position 1; its
  // header counts its events, so they are counted first (a pass more).
  std::uint64_t expected = cut->events;
  if (one_tenant) {
    expected = 0;
    for (std::uint64_t pos = 1; pos <= *last;) {
      auto page = read_page(pos);
      if (!page)
        return report(page.error());
      if (page->next_position <= pos)
        break;
      expected += page->events.size();
      pos = page->next_position;
    }
    cps = nullptr;
  }
  // Created here, never opened through a symlink planted since the check
  // above (O_EXCL), and readable by its owner only: it holds every event.
  int fd = ::open(file.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0) {
    int err = errno;
    if (fs::is_symlink(fs::symlink_status(file, ec)))
      return report(error{errc::invalid_argument,
                          "the export file is a symbolic link (export never follows one)", file});
    return report(error{err == EEXIST ? errc::invalid_argument : errc::unavailable,
                        std::string{"cannot create the export file: "} + std::strerror(err), file});
  }
  __gnu_cxx::stdio_filebuf<char> file_buf(fd, std::ios::out | std::ios::binary);
  std::ostream out(&file_buf);
  auto failed = [&](const error& e) {
    file_buf.close();
    fs::remove(file, ec);
    return report(e);
  };
  json_object header;
  header.add("cairn_export", export_format)
    .add("events", expected)
    .add("checkpoints", std::uint64_t{cps ? cps->size() : 0});
  if (one_tenant)
    header.add("tenant", opts.tenant);
  if (cut->cut()) // only then: the header of a whole log stays as it was
    header.add("first_position", cut->extent.first_position).add("kept_below", cut->kept_below);
  out << header.str() << '\n';
  if (cut->cut())
    std::cerr << "cairn: " << cut_note(*cut) << std::endl;
  std::uint64_t written = 0;
  {
    progress bar{"export", expected};
    for (std::uint64_t pos = 1; pos <= *last;) {
      auto page = read_page(pos);
      if (!page)
        return failed(page.error());
      if (page->next_position <= pos)
        break;
      for (auto& ev : page->events) {
        if (one_tenant)
          ev.position = written + 1; // the original is in the source store; the id stays
        // "data" shows personal data decrypted with --master-key; payload_hex
        // (what import reads) keeps the ciphertext.
        persistence::personal_scope scope{store.personal_keys(), ev.meta.subject};
        out << event_json(ev, ctx.types, true) << '\n';
        ++written;
      }
      pos = page->next_position;
      bar.update(written);
    }
  }
  if (written != expected)
    return failed(error{errc::corrupted,
                        "the log has gaps: " + std::to_string(written) + " events up to position "
                          + std::to_string(*last) + " (run cairn verify)",
                        dir});
  if (one_tenant) {
    out.flush();
    bool ok = static_cast<bool>(out);
    if (file_buf.close() == nullptr || !ok)
      return failed(error{errc::unavailable, "cannot write the export file", file});
    std::cout << "exported " << count_of(written, "event") << " of tenant " << opts.tenant
              << " from " << dir << " to " << file << " (" << ms_since(started) << " ms)\n";
    return exit_ok;
  }
  for (const auto& cp : *cps)
    out << json_object{}.add("checkpoint", cp.name).add("position", cp.position).str() << '\n';
  for (const auto& kv : side->kv)
    out << json_object{}
             .add("kv", kv.space)
             .add("key_hex", to_hex(kv.key))
             .add("value_hex", to_hex(kv.value))
             .str()
        << '\n';
  for (const auto& dl : side->dead_letters)
    out << dead_letter_json(dl, "dead_letter") << '\n';
  out.flush();
  bool written_out = static_cast<bool>(out);
  if (file_buf.close() == nullptr || !written_out)
    return failed(error{errc::unavailable, "cannot write the export file", file});
  std::cout << "exported " << count_of(written, "event") << ", "
            << count_of(cps->size(), "checkpoint") << ", "
            << count_of(side->kv.size(), "read-model key") << " and "
            << count_of(side->dead_letters.size(), "dead letter") << " from " << dir << " to "
            << file << " (" << ms_since(started) << " ms)\n";
  return exit_ok;
}

int export_log(const context& ctx, const std::string& dir, const std::string& file,
               const export_options& opts) {
  // In a child process: a crash reading a damaged B-tree page is reported,
  // and the partial file removed, instead of killing the CLI.
  std::error_code ec;
  bool existed = fs::exists(fs::symlink_status(file, ec));
  return in_child(
    [&] { return export_here(ctx, dir, file, opts); },
    [&](const std::string& message) {
      if (!existed)
        fs::remove(file, ec);
      bool damaged = message.rfind("damaged", 0) == 0;
      (void)report(error{damaged ? errc::corrupted : errc::unavailable, message, dir});
    });
}

int import_log(const context& ctx, const std::string& dir, const std::string& file,
               const import_options& opts) {
  auto started = std::chrono::steady_clock::now();
  std::ifstream in(file, std::ios::binary);
  if (!in)
    return report(error{errc::invalid_argument, "cannot read the import file", file});
  line_source lines{in};
  std::string line;
  std::uint64_t line_no = 1;
  auto where = [&] { return file + " line " + std::to_string(line_no); };
  auto first = lines.next(line);
  if (!first || !*first)
    return report(error{errc::invalid_argument,
                        "not a cairn export (the first line is no cairn_export header)", file});
  auto header = parse_import_header(line, where());
  if (!header)
    return report(header.error());
  if (header->format != export_format)
    return report(error{errc::invalid_argument,
                        "export format " + std::to_string(header->format) + " is not "
                          + std::to_string(export_format) + "; use a matching cairn",
                        file});
  // A cut log cannot be written again: appends number positions and versions
  // from 1 without holes, and an export holds no snapshots, which the
  // streams retention cut need for their state. `cairn backup` copies such a
  // store whole.
  if (header->first_position > 1)
    return report(error{errc::invalid_argument,
                        "the export is of a store that retention cut before position "
                          + std::to_string(header->first_position)
                          + ": its log has holes, its cut streams begin past version 1, and "
                            "an export holds no snapshots to rebuild their state from, so an "
                            "import cannot recreate it; copy a cut store with cairn backup",
                        file});

  auto opened = persistence::open_store(dir, {});
  if (!opened)
    return report(opened.error());
  auto& store = **opened;
  auto st = store.stats();
  if (!st)
    return report(st.error());
  if (st->events != 0 || st->streams != 0 || st->checkpoints != 0 || st->snapshots != 0)
    return report(error{errc::invalid_argument,
                        "the store is not empty (" + std::to_string(st->events)
                          + " events); import needs an empty or new directory",
                        dir});

  import_writer writer{store};
  std::unordered_map<std::string, std::uint64_t> versions;
  persistence::event_store::side_tables side;
  auto& cps = side.checkpoints;
  std::uint64_t next_position = 1;
  std::map<std::string, std::uint64_t> unchecked; // "type vN" -> events imported undecoded
  auto bad = [&](std::string why) {
    return report(error{errc::invalid_argument, std::move(why), where()});
  };
  auto beyond_log = [&](std::uint64_t pos) { return pos >= next_position; };
  {
    progress bar{"import", header->events};
    for (;;) {
      ++line_no;
      auto more = lines.next(line);
      if (!more) {
        more.error().context = where();
        return report(more.error());
      }
      if (!*more)
        break;
      if (line.empty())
        continue;
      auto rec = parse_import_line(line, where());
      if (!rec)
        return report(rec.error());
      if (auto* cp = std::get_if<checkpoint>(&*rec)) {
        if (beyond_log(cp->position))
          return bad("checkpoint " + cp->name + " at position " + std::to_string(cp->position)
                     + " is beyond the imported log, which ends at "
                     + std::to_string(next_position - 1));
        cps.push_back(std::move(*cp));
        continue;
      }
      if (auto* kv = std::get_if<persistence::kv_op>(&*rec)) {
        side.kv.push_back(std::move(*kv));
        continue;
      }
      if (auto* dl = std::get_if<persistence::dead_letter>(&*rec)) {
        if (beyond_log(dl->position))
          return bad("dead letter of " + dl->subscriber + " at position "
                     + std::to_string(dl->position) + " is beyond the imported log, which ends at "
                     + std::to_string(next_position - 1));
        side.dead_letters.push_back(std::move(*dl));
        continue;
      }
      auto& ev = std::get<imported_event>(*rec);
      if (!cps.empty() || !side.kv.empty() || !side.dead_letters.empty())
        return bad("an event after the checkpoints");
      if (ev.position != next_position)
        return bad("position " + std::to_string(ev.position) + " where "
                   + std::to_string(next_position) + " was expected");
      auto& v = versions[ev.stream];
      if (ev.version != v + 1)
        return bad(ev.stream + " version " + std::to_string(ev.version) + " where "
                   + std::to_string(v + 1) + " was expected");
      const auto& data = ev.data;
      auto type = data.type + " v" + std::to_string(data.schema_version);
      if (!ctx.types.can_decode(data.type, data.schema_version)) {
        if (!opts.allow_unknown_types)
          return bad("position " + std::to_string(ev.position) + " (" + ev.stream + "): event type "
                     + type
                     + " is unknown to this cairn's registry, so its payload cannot be checked"
                       " (--allow-unknown-types imports it unchecked)");
        ++unchecked[type];
      } else if (auto ok = ctx.types.check(data.type, data.schema_version, data.payload); !ok) {
        return bad("position " + std::to_string(ev.position) + " (" + ev.stream + " version "
                   + std::to_string(ev.version) + "): " + ok.error().to_string());
      }
      v = ev.version;
      ++next_position;
      if (auto ok = writer.add(std::move(ev)); !ok)
        return report(ok.error());
      bar.update(next_position - 1);
    }
  }
  if (next_position - 1 != header->events)
    return report(error{errc::invalid_argument,
                        "the export is incomplete: its header announces "
                          + std::to_string(header->events) + " events, it holds "
                          + std::to_string(next_position - 1),
                        file});
  auto n_cps = cps.size(), n_kv = side.kv.size(), n_dl = side.dead_letters.size();
  if (auto ok = writer.finish(std::move(side)); !ok)
    return report(ok.error());
  std::cout << "imported " << count_of(writer.written(), "event") << " in "
            << count_of(versions.size(), "stream") << ", " << count_of(n_cps, "checkpoint") << ", "
            << count_of(n_kv, "read-model key") << " and " << count_of(n_dl, "dead letter")
            << " from " << file << " into " << dir << " (" << ms_since(started) << " ms)\n";
  for (const auto& [type, n] : unchecked)
    std::cout << "unchecked: " << count_of(n, "event") << " of " << type
              << ", a type this cairn does not register\n";
  return exit_ok;
}

} // namespace cairn::tools::detail
