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
#include <unordered_map>

#include "cairn/model/stream_name.hpp"
#include "cairn/tools/cli.hpp"
#include "output.hpp" // includes codec.hpp first: cereal's JSON archive configures rapidjson

#include <rapidjson/document.h>

namespace cairn::tools::detail {

namespace {

namespace fs = std::filesystem;
using persistence::append_request;
using persistence::checkpoint;

constexpr std::size_t export_page = 4096;
/// Events per import transaction: large enough that fsyncs do not dominate.
constexpr std::size_t import_batch_events = 8192;
constexpr std::uint64_t export_format = 1;

/// Reads the fields of one JSON line, naming the line in its errors.
class line_reader {
public:
  line_reader(const std::string& file, std::uint64_t line, const rapidjson::Value& v)
    : where_(file + " line " + std::to_string(line)), v_(v) {}

  [[nodiscard]] result<std::string> str(const char* key, bool required = true) const {
    auto it = v_.FindMember(key);
    if (it == v_.MemberEnd()) {
      if (required)
        return missing(key);
      return std::string{};
    }
    if (!it->value.IsString())
      return wrong(key, "a string");
    return std::string{it->value.GetString(), it->value.GetStringLength()};
  }

  [[nodiscard]] result<std::uint64_t> u64(const char* key) const {
    auto it = v_.FindMember(key);
    if (it == v_.MemberEnd())
      return missing(key);
    if (!it->value.IsUint64())
      return wrong(key, "a non-negative integer");
    return it->value.GetUint64();
  }

  [[nodiscard]] result<std::int64_t> i64(const char* key) const {
    auto it = v_.FindMember(key);
    if (it == v_.MemberEnd())
      return missing(key);
    if (!it->value.IsInt64())
      return wrong(key, "an integer");
    return it->value.GetInt64();
  }

  [[nodiscard]] bool has(const char* key) const { return v_.HasMember(key); }

  [[nodiscard]] error bad(std::string why) const {
    return error{errc::invalid_argument, std::move(why), where_};
  }

private:
  tl::unexpected<error> missing(const char* key) const {
    return tl::unexpected(bad(std::string{"no \""} + key + "\" field"));
  }
  tl::unexpected<error> wrong(const char* key, const char* what) const {
    return tl::unexpected(bad(std::string{"\""} + key + "\" is not " + what));
  }

  std::string where_;
  const rapidjson::Value& v_;
};

/// One exported event, ready to append.
struct imported_event {
  std::uint64_t position = 0;
  std::string stream;
  std::uint64_t version = 0;
  persistence::metadata meta;
  persistence::event_data data;
};

result<imported_event> parse_event(const line_reader& r) {
  imported_event e;
  auto position = r.u64("position");
  auto stream = r.str("stream");
  auto version = r.u64("version");
  auto id = r.str("id");
  auto ts = r.i64("timestamp_ns");
  auto type = r.str("type");
  auto schema = r.u64("schema_version");
  auto hex = r.str("payload_hex");
  for (const error* err :
       {position ? nullptr : &position.error(), stream ? nullptr : &stream.error(),
        version ? nullptr : &version.error(), id ? nullptr : &id.error(),
        ts ? nullptr : &ts.error(), type ? nullptr : &type.error(),
        schema ? nullptr : &schema.error(), hex ? nullptr : &hex.error()})
    if (err != nullptr)
      return tl::unexpected(*err);
  if (auto ok = validate_stream_name(*stream); !ok)
    return tl::unexpected(r.bad(ok.error().to_string()));
  auto parsed_id = persistence::event_id::parse(*id);
  if (!parsed_id)
    return tl::unexpected(r.bad("\"id\" is not 32 hex digits"));
  if (*schema == 0 || *schema > std::numeric_limits<std::uint32_t>::max())
    return tl::unexpected(r.bad("\"schema_version\" is out of range"));
  auto payload = from_hex(*hex);
  if (!payload)
    return tl::unexpected(r.bad("\"payload_hex\": " + payload.error().message));
  e.position = *position;
  e.stream = std::move(*stream);
  e.version = *version;
  e.data.type = std::move(*type);
  e.data.schema_version = static_cast<std::uint32_t>(*schema);
  e.data.payload = std::move(*payload);
  e.data.id = *parsed_id;
  e.data.timestamp_ns = *ts;
  std::string* fields[] = {&e.meta.correlation_id, &e.meta.causation_id, &e.meta.command_id,
                           &e.meta.tenant, &e.meta.user};
  const char* names[] = {"correlation_id", "causation_id", "command_id", "tenant", "user"};
  for (int i = 0; i < 5; ++i) {
    auto v = r.str(names[i], false);
    if (!v)
      return tl::unexpected(v.error());
    *fields[i] = std::move(*v);
  }
  return e;
}

/// Appends the requests of an import in batches, checking that each lands
/// exactly where the export had it.
class import_writer {
public:
  explicit import_writer(persistence::event_store& store) : store_(store) {}

  /// Adds one event: it joins the current request when it continues it (same
  /// stream, same metadata), so every original append, command id included,
  /// is written as one request again.
  result<void> add(imported_event e) {
    if (!pending_.events.empty()
        && (pending_.stream != e.stream || !(pending_.meta == e.meta))) {
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
        return fail(errc::internal,
                    "the events of " + req.stream + " landed at position "
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

std::int64_t ms_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now()
                                                               - start)
    .count();
}

} // namespace

/// export_log's work; runs in a child process.
static int export_here(const context& ctx, const std::string& dir, const std::string& file) {
  auto started = std::chrono::steady_clock::now();
  auto opened = open_read(dir);
  if (!opened)
    return report(opened.error());
  const auto& store = **opened;
  std::error_code ec;
  auto existing = fs::symlink_status(file, ec);
  if (fs::is_symlink(existing))
    return report(error{errc::invalid_argument,
                        "the export file is a symbolic link (export never follows one)", file});
  if (fs::exists(existing))
    return report(error{errc::invalid_argument, "the export file exists (export never overwrites)",
                        file});
  // Checkpoints first: each is then at or before the last position read next.
  auto side = store.read_side_tables();
  if (!side)
    return report(side.error());
  const auto* cps = &side->checkpoints;
  auto last = store.last_position();
  if (!last)
    return report(last.error());
  // Created here, never opened through a symlink planted since the check
  // above (O_EXCL), and readable by its owner only: it holds every event.
  int fd = ::open(file.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0) {
    int err = errno;
    if (fs::is_symlink(fs::symlink_status(file, ec)))
      return report(error{errc::invalid_argument,
                          "the export file is a symbolic link (export never follows one)", file});
    return report(error{err == EEXIST ? errc::invalid_argument : errc::unavailable,
                        std::string{"cannot create the export file: "} + std::strerror(err),
                        file});
  }
  __gnu_cxx::stdio_filebuf<char> file_buf(fd, std::ios::out | std::ios::binary);
  std::ostream out(&file_buf);
  auto failed = [&](const error& e) {
    file_buf.close();
    fs::remove(file, ec);
    return report(e);
  };
  out << json_object{}
           .add("cairn_export", export_format)
           .add("events", *last)
           .add("checkpoints", std::uint64_t{cps->size()})
           .str()
      << '\n';
  std::uint64_t written = 0;
  {
    progress bar{"export", *last};
    for (std::uint64_t pos = 1; pos <= *last;) {
      auto page = store.read_all(
        pos, static_cast<std::size_t>(std::min<std::uint64_t>(export_page, *last - pos + 1)));
      if (!page)
        return failed(page.error());
      if (page->events.empty())
        break;
      for (const auto& ev : page->events)
        out << event_json(ev, ctx.types, true) << '\n';
      written += page->events.size();
      pos = page->next_position;
      bar.update(written);
    }
  }
  if (written != *last)
    return failed(error{errc::corrupted,
                        "the log has gaps: " + std::to_string(written) + " events up to position "
                          + std::to_string(*last) + " (run cairn verify)",
                        dir});
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
            << count_of(side->dead_letters.size(), "dead letter") << " from " << dir << " to " << file << " ("
            << ms_since(started) << " ms)\n";
  return exit_ok;
}

int export_log(const context& ctx, const std::string& dir, const std::string& file) {
  // In a child process: a crash reading a damaged B-tree page is reported,
  // and the partial file removed, instead of killing the CLI.
  std::error_code ec;
  bool existed = fs::exists(fs::symlink_status(file, ec));
  return in_child([&] { return export_here(ctx, dir, file); },
                  [&](const std::string& message) {
                    if (!existed)
                      fs::remove(file, ec);
                    bool damaged = message.rfind("damaged", 0) == 0;
                    (void) report(
                      error{damaged ? errc::corrupted : errc::unavailable, message, dir});
                  });
}

int import_log(const context&, const std::string& dir, const std::string& file) {
  auto started = std::chrono::steady_clock::now();
  std::ifstream in(file, std::ios::binary);
  if (!in)
    return report(error{errc::invalid_argument, "cannot read the import file", file});
  std::string line;
  std::uint64_t line_no = 1;
  rapidjson::Document doc;
  if (!std::getline(in, line) || doc.Parse(line.c_str(), line.size()).HasParseError()
      || !doc.IsObject() || !doc.HasMember("cairn_export"))
    return report(error{errc::invalid_argument,
                        "not a cairn export (the first line is no cairn_export header)", file});
  line_reader header{file, line_no, doc};
  auto format = header.u64("cairn_export");
  auto total = header.u64("events");
  if (!format || !total)
    return report(format ? total.error() : format.error());
  if (*format != export_format)
    return report(error{errc::invalid_argument,
                        "export format " + std::to_string(*format) + " is not "
                          + std::to_string(export_format) + "; use a matching cairn",
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
  {
    progress bar{"import", *total};
    while (std::getline(in, line)) {
      ++line_no;
      if (line.empty())
        continue;
      doc.Parse(line.c_str(), line.size());
      line_reader r{file, line_no, doc};
      if (doc.HasParseError() || !doc.IsObject())
        return report(r.bad("not a JSON object"));
      if (r.has("checkpoint")) {
        auto name = r.str("checkpoint");
        auto pos = r.u64("position");
        if (!name || !pos)
          return report(name ? pos.error() : name.error());
        cps.push_back(checkpoint{std::move(*name), *pos});
        continue;
      }
      if (r.has("kv")) {
        auto space = r.str("kv");
        auto key = space ? r.str("key_hex") : space;
        auto value = key ? r.str("value_hex") : key;
        if (!value)
          return report(value.error());
        auto k = from_hex(*key);
        auto v = k ? from_hex(*value) : k;
        if (!v)
          return report(r.bad(v.error().message));
        side.kv.push_back({persistence::kv_op::kind::put, std::move(*space), std::move(*k),
                           std::move(*v)});
        continue;
      }
      if (r.has("dead_letter")) {
        persistence::dead_letter dl;
        auto who = r.str("dead_letter");
        auto pos = r.u64("position");
        auto stream = r.str("stream");
        auto version = r.u64("version");
        auto type = r.str("type");
        auto why = r.str("error");
        auto attempts = r.u64("attempts");
        auto first = r.i64("first_failure_ns");
        auto last_ns = r.i64("last_failure_ns");
        for (const auto* f : {&who, &stream, &type, &why})
          if (!*f)
            return report(f->error());
        for (const auto* f : {&pos, &version, &attempts})
          if (!*f)
            return report(f->error());
        if (!first || !last_ns)
          return report(first ? last_ns.error() : first.error());
        dl.subscriber = std::move(*who);
        dl.position = *pos;
        dl.stream = std::move(*stream);
        dl.version = *version;
        dl.type = std::move(*type);
        dl.error = std::move(*why);
        dl.attempts = static_cast<std::uint32_t>(*attempts);
        dl.first_failure_ns = *first;
        dl.last_failure_ns = *last_ns;
        dl.replay_requested = doc.HasMember("replay_requested")
                              && doc["replay_requested"].IsBool()
                              && doc["replay_requested"].GetBool();
        side.dead_letters.push_back(std::move(dl));
        continue;
      }
      if (!cps.empty() || !side.kv.empty() || !side.dead_letters.empty())
        return report(r.bad("an event after the checkpoints"));
      auto ev = parse_event(r);
      if (!ev)
        return report(ev.error());
      if (ev->position != next_position)
        return report(r.bad("position " + std::to_string(ev->position) + " where "
                            + std::to_string(next_position) + " was expected"));
      auto& v = versions[ev->stream];
      if (ev->version != v + 1)
        return report(r.bad(ev->stream + " version " + std::to_string(ev->version) + " where "
                            + std::to_string(v + 1) + " was expected"));
      v = ev->version;
      ++next_position;
      if (auto ok = writer.add(std::move(*ev)); !ok)
        return report(ok.error());
      bar.update(next_position - 1);
    }
  }
  if (next_position - 1 != *total)
    return report(error{errc::invalid_argument,
                        "the export is incomplete: its header announces " + std::to_string(*total)
                          + " events, it holds " + std::to_string(next_position - 1),
                        file});
  auto n_cps = cps.size(), n_kv = side.kv.size(), n_dl = side.dead_letters.size();
  if (auto ok = writer.finish(std::move(side)); !ok)
    return report(ok.error());
  std::cout << "imported " << count_of(writer.written(), "event") << " in "
            << count_of(versions.size(), "stream") << ", " << count_of(n_cps, "checkpoint")
            << ", " << count_of(n_kv, "read-model key") << " and "
            << count_of(n_dl, "dead letter")
            << " from " << file << " into " << dir << " (" << ms_since(started) << " ms)\n";
  return exit_ok;
}

} // namespace cairn::tools::detail
