// `cairn verify`: reads every record of the log and every stream through its
// own index, checks the tables that point into the log and every kept
// snapshot, and reports every problem it finds rather than the first.
//
// LMDB has no page checksums: a damaged B-tree page can make it read wild
// memory. So the checks run in a child process, and a child killed by a
// signal is reported as a damaged B-tree page (exit_damaged) instead of
// killing the CLI.

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <iostream>
#include <map>
#include <set>
#include <string>
#include <unordered_map>

#include "cairn/tools/cli.hpp"
#include "cairn/persistence/format.hpp"
#include "output.hpp"

namespace cairn::tools::detail {

namespace {

constexpr std::size_t scan_page = 4096;
/// Events of one stream read per call: a long stream is walked in pages.
constexpr std::size_t stream_page = 65536;

/// The position a store error names ("position N"), or 0.
std::uint64_t position_of(const error& e) {
  static constexpr std::string_view prefix = "position ";
  if (e.context.compare(0, prefix.size(), prefix) != 0)
    return 0;
  try {
    return std::stoull(e.context.substr(prefix.size()));
  } catch (const std::exception&) {
    return 0;
  }
}

struct finding {
  std::uint64_t position = 0; ///< 0 when the problem has no position.
  std::string message;
};

class report_builder {
public:
  void problem(std::uint64_t position, std::string message) {
    problems_.push_back(finding{position, std::move(message)});
  }
  void warning(std::string message) { warnings_.push_back(finding{0, std::move(message)}); }
  [[nodiscard]] const std::vector<finding>& problems() const { return problems_; }
  [[nodiscard]] const std::vector<finding>& warnings() const { return warnings_; }

private:
  std::vector<finding> problems_;
  std::vector<finding> warnings_;
};

std::string describe(const finding& f) {
  return f.position == 0 ? f.message : "position " + std::to_string(f.position) + ": " + f.message;
}

/// The checks themselves; runs in the child process.
int verify_here(const context& ctx, const std::string& dir, const published_options& published) {
  // A signed digest's signature first: a forged one proves nothing.
  std::optional<published_digest> pub;
  if (published.given()) {
    auto p = published_from(published);
    if (!p)
      return report(p.error());
    pub = *p;
  }
  auto opened = open_read(dir);
  if (!opened)
    return report(opened.error());
  const auto& store = **opened;
  // A runtime may be appending: check the log up to the position read here,
  // and compare with counts taken before it.
  auto st = store.stats();
  if (!st)
    return report(st.error());
  auto last = store.last_position();
  if (!last)
    return report(last.error());
  report_builder out;

  // 1. The global log: checksums, gap-free positions, versions per stream,
  //    the types it holds, payloads that decode.
  std::unordered_map<std::string, std::uint64_t> versions; // stream -> last version seen
  std::map<std::pair<std::string, std::uint32_t>, std::uint64_t> types; // -> first position
  std::set<std::uint64_t> corrupted;
  // After retention the log is complete from its cut on; records kept below
  // it (streams without a rule, streams' newest) are checked through their
  // streams in step 2.
  auto log_from = store.first_position();
  if (!log_from)
    return report(log_from.error());
  std::uint64_t records = 0, expected_pos = *log_from;
  auto note_position = [&](std::uint64_t p) {
    ++records;
    if (p != expected_pos)
      out.problem(p, "positions " + std::to_string(expected_pos) + " to " + std::to_string(p - 1)
                       + " are missing");
    expected_pos = p + 1;
  };
  auto check_event = [&](const persistence::recorded_event& ev) {
    note_position(ev.position);
    if (persistence::format::is_system_stream(ev.stream)) {
      // The store's own records (epochs, forgets): checked by their own
      // decoders, not listed with the user streams below, whose reads refuse
      // their names.
      if (!persistence::format::is_known_system_record(ev.stream, ev.type, ev.payload))
        out.problem(ev.position, "a system record of " + ev.stream + " that does not decode");
      return;
    }
    auto [at, fresh] = versions.try_emplace(ev.stream, 0);
    auto& v = at->second;
    if ((!fresh || *log_from == 1) && ev.version != v + 1)
      out.problem(ev.position, ev.stream + " has version " + std::to_string(ev.version)
                                 + " after version " + std::to_string(v));
    v = ev.version;
    types.try_emplace({ev.type, ev.schema_version}, ev.position);
    if (ctx.types.can_decode(ev.type, ev.schema_version)) {
      // check() decodes (bounded by the payload's size) without writing JSON.
      if (auto ok = ctx.types.check(ev.type, ev.schema_version, ev.payload); !ok)
        out.problem(ev.position,
                    ev.stream + " v" + std::to_string(ev.version) + ": " + ok.error().to_string());
    }
  };
  persistence::read_filter every; // the log as stored, system records included
  every.include_system = true;
  {
    progress bar{"verify: log", *last};
    for (std::uint64_t pos = *log_from; pos <= *last;) {
      auto page = store.read_all(pos, scan_page, every);
      if (page) {
        if (page->events.empty())
          break;
        for (const auto& ev : page->events)
          check_event(ev);
        pos = page->next_position;
        bar.update(pos - 1);
        continue;
      }
      auto bad = position_of(page.error());
      if (page.error().code != errc::corrupted || bad < pos) {
        // Not one record we can step over: nothing further is reachable.
        out.problem(bad, page.error().to_string());
        break;
      }
      // The records before the bad one, one at a time (a gap may precede it).
      bool stuck = false;
      while (pos < bad) {
        auto one = store.read_all(pos, 1, every);
        if (!one && position_of(one.error()) == bad)
          break;
        if (!one || one->events.empty()) {
          out.problem(one ? pos : position_of(one.error()),
                      one ? "the log ends early" : one.error().to_string());
          stuck = true;
          break;
        }
        check_event(one->events.front());
        pos = one->next_position;
      }
      if (stuck)
        break;
      note_position(bad);
      out.problem(bad, page.error().message);
      corrupted.insert(bad);
      pos = bad + 1;
    }
  }
  if (expected_pos <= *last)
    out.problem(expected_pos, "positions " + std::to_string(expected_pos) + " to "
                                + std::to_string(*last) + " are unreadable or missing");

  // 2. Every stream through its head and back-pointer chain, in pages (each
  //    page starts from a sparse index entry), and every kept snapshot.
  std::uint64_t snapshots = 0;
  // (stream, first version kept, last version): from the log scan, or after
  // retention from the store's list, since the scan began at the cut.
  std::vector<persistence::stream_info> to_walk;
  if (*log_from == 1) {
    for (const auto& [name, version] : versions)
      to_walk.push_back({name, version, 1});
  } else if (auto listed = store.list_streams({}); listed) {
    to_walk = std::move(*listed);
  } else {
    out.problem(0, listed.error().to_string());
  }
  {
    progress bar{"verify: streams", to_walk.size()};
    std::uint64_t done = 0;
    for (const auto& entry : to_walk) {
      const auto& stream = entry.name;
      const auto version = entry.version;
      bar.update(++done);
      std::uint64_t seen = entry.first_version - 1;
      bool failed = false;
      while (seen < version) {
        auto before = seen;
        auto visited =
          store.visit_stream(stream, seen + 1, std::min<std::uint64_t>(stream_page, version - seen),
                             [&](const persistence::event_view& ev) {
                               if (ev.version != seen + 1)
                                 out.problem(ev.position,
                                             stream + " reads version " + std::to_string(ev.version)
                                               + " after version " + std::to_string(seen));
                               seen = ev.version;
                               return true;
                             });
        if (!visited) {
          auto bad = position_of(visited.error());
          if (corrupted.count(bad) == 0) // not reported already by the log scan
            out.problem(bad, stream + ": " + visited.error().to_string());
          failed = true;
          break;
        }
        if (seen == before)
          break; // the stream ends early
      }
      if (failed)
        continue;
      if (seen != version)
        out.problem(0, stream + " reads " + std::to_string(seen - entry.first_version + 1)
                         + " events through its index but the log holds "
                         + std::to_string(version - entry.first_version + 1));
      // The kept snapshots, newest first: each must pass its checksum, lie
      // within the stream and, when its type is registered, decode.
      for (std::uint64_t below = version; below > 0;) {
        auto snap = store.load_snapshot(stream, below);
        if (!snap) {
          out.problem(0, stream + ": " + snap.error().to_string());
          break;
        }
        if (!snap->has_value())
          break;
        const auto& s = **snap;
        ++snapshots;
        if (s.version == 0 || s.version > below) {
          out.problem(0, stream + ": a snapshot at version " + std::to_string(s.version)
                           + " answers a request for version " + std::to_string(below)
                           + " or below");
          break;
        }
        if (ctx.types.can_decode(s.state_type, s.schema_version)) {
          auto json = ctx.types.to_json(s.state_type, s.schema_version, s.data);
          if (!json)
            out.problem(0, stream + ": the snapshot at version " + std::to_string(s.version)
                             + " does not decode: " + json.error().to_string());
        }
        below = s.version - 1;
      }
    }
  }
  // 2b. The tables that point into the log: the sparse stream index and the
  //     idempotency (command id) records.
  persistence::event_store::index_check indexes;
  {
    auto checked = store.check_indexes([&](std::uint64_t position, std::string message) {
      if (corrupted.count(position) == 0)
        out.problem(position, std::move(message));
    });
    if (!checked)
      out.problem(0, checked.error().to_string());
    else
      indexes = *checked;
  }
  // 2c. The digest chain: recomputed over the log and compared with the
  //     chain the writer stored, then with the published digest, if any.
  std::optional<persistence::chain_check> chain;
  if (auto checked = store.check_chain(persistence::no_limit); !checked) {
    if (checked.error().code == errc::invalid_argument) // no chain yet: says how to add one
      out.warning(checked.error().message);
    else
      out.problem(0, checked.error().to_string());
  } else {
    chain = *checked;
    if (chain->first_broken != 0 && corrupted.count(chain->first_broken) == 0) // else reported
      out.problem(chain->first_broken, "first broken link of the digest chain: " + chain->problem);
    else if (chain->chained_to < chain->log_end)
      out.warning("the stored digest chain ends at position " + std::to_string(chain->chained_to)
                  + "; the " + count_of(chain->log_end - chain->chained_to, "record")
                  + " after it were written with the chain off and join it at the next "
                    "writable open");
  }
  std::optional<bool> digest_matches;
  if (pub) {
    auto differs = compare_published(store, *pub);
    digest_matches = !differs;
    if (differs)
      out.problem(differs->first, differs->second);
  }

  // A corrupted record hides its stream, so the counts then differ anyway.
  if (corrupted.empty() && *log_from == 1 && versions.size() < st->streams)
    out.problem(0, "the store names " + std::to_string(st->streams) + " streams but the log holds "
                     + std::to_string(versions.size()));

  // 3. Checkpoints, compared with the end of the log read after them.
  auto cps = store.list_checkpoints();
  auto end = store.last_position();
  if (!cps || !end)
    out.problem(0, (cps ? end.error() : cps.error()).to_string());
  else
    for (const auto& cp : *cps)
      if (cp.position > *end)
        out.problem(0, "checkpoint " + cp.name + " is at position " + std::to_string(cp.position)
                         + ", past the end of the log");

  // 4. The type catalogue (read after the scan: a commit writes its types with
  //    its events): it lists every type in the log, and the registry decodes it.
  auto catalogue_list = store.type_catalogue();
  if (!catalogue_list)
    return report(catalogue_list.error());
  std::set<std::pair<std::string, std::uint32_t>> catalogue(catalogue_list->begin(),
                                                            catalogue_list->end());
  for (const auto& [type, first] : types)
    if (catalogue.count(type) == 0)
      out.problem(first, type.first + " v" + std::to_string(type.second)
                           + " is missing from the type catalogue");
  for (const auto& [type, v] : *catalogue_list) {
    if (!ctx.types.current_version(type))
      out.warning(type + " v" + std::to_string(v) + " is not registered: payloads not checked");
    else if (!ctx.types.can_decode(type, v))
      out.problem(0, type + " v" + std::to_string(v)
                       + " cannot be decoded by the registry (no upcaster to the current v"
                       + std::to_string(*ctx.types.current_version(type)) + ")");
  }

  bool ok = out.problems().empty();
  if (ctx.json) {
    auto list = [](const std::vector<finding>& items) {
      std::string s = "[";
      for (const auto& f : items) {
        if (s.size() > 1)
          s += ',';
        json_object o;
        if (f.position != 0)
          o.add("position", f.position);
        s += o.add("message", f.message).str();
      }
      return s + "]";
    };
    std::cout << json_object{}
                   .add("ok", ok)
                   .add("events", records)
                   .add("streams", std::uint64_t{to_walk.size()})
                   .add("first_position", *log_from)
                   .add("checkpoints", std::uint64_t{cps ? cps->size() : 0})
                   .add("snapshots", snapshots)
                   .add("index_entries", indexes.index_entries)
                   .add("command_records", indexes.command_records)
                   .add("types", std::uint64_t{catalogue_list->size()})
                   .add_raw("digest", chain && chain->at
                                        ? "\""
                                            + format_published_digest(
                                              {chain->at->position, chain->at->digest})
                                            + "\""
                                        : std::string{"null"})
                   .add_raw("digest_matches",
                            digest_matches ? (*digest_matches ? "true" : "false") : "null")
                   .add_raw("problems", list(out.problems()))
                   .add_raw("warnings", list(out.warnings()))
                   .str()
              << '\n';
  } else {
    for (const auto& f : out.problems())
      std::cout << "problem: " << describe(f) << '\n';
    for (const auto& f : out.warnings())
      std::cout << "warning: " << describe(f) << '\n';
    if (chain && chain->at)
      std::cout << "digest: " << format_published_digest({chain->at->position, chain->at->digest})
                << '\n';
    if (digest_matches && *digest_matches)
      std::cout << "published digest: matches, the log up to position " << pub->position
                << " is the one it was taken from\n";
    if (*log_from > 1)
      std::cout << "retention: the log is complete from position " << *log_from
                << "; the digest chain is checked from its anchor at position " << *log_from - 1
                << ", records kept below it through their streams\n";
    std::cout << "also checked: " << count_of(snapshots, "snapshot") << ", "
              << count_of(indexes.index_entries, "stream index record") << ", "
              << count_of(indexes.command_records, "command record") << '\n';
    std::cout << (ok ? "ok: " : "FAILED: ") << count_of(records, "event") << ", "
              << count_of(to_walk.size(), "stream") << ", "
              << count_of(cps ? cps->size() : 0, "checkpoint") << ", "
              << count_of(catalogue_list->size(), "type") << " checked; "
              << count_of(out.problems().size(), "problem") << ", "
              << count_of(out.warnings().size(), "warning") << '\n';
  }
  return ok ? exit_ok : exit_failure;
}

} // namespace

namespace {

/// verify's report when its check crashed.
void report_damage(const context& ctx, const std::string& message) {
  bool damaged = message.rfind("damaged", 0) == 0;
  if (ctx.json)
    std::cout << json_object{}
                   .add("ok", false)
                   .add("damaged", damaged)
                   .add_raw("problems", "[" + json_object{}.add("message", message).str() + "]")
                   .str()
              << '\n';
  else
    std::cout << "problem: " << message
              << "\nFAILED: " << (damaged ? "damaged B-tree page" : "the check did not finish")
              << '\n';
}

} // namespace

int in_child(const std::function<int()>& work,
             const std::function<void(const std::string&)>& crashed) {
  std::cout.flush();
  std::cerr.flush();
  pid_t child = ::fork();
  if (child < 0) // no child: run here, unguarded
    return work();
  if (child == 0) {
    int code = exit_failure;
    try {
      code = work();
    } catch (...) {
    }
    std::cout.flush();
    std::cerr.flush();
    ::_exit(code);
  }
  int status = 0;
  while (::waitpid(child, &status, 0) < 0)
    if (errno != EINTR) {
      crashed(std::string{"waitpid: "} + std::strerror(errno));
      return exit_failure;
    }
  if (WIFEXITED(status))
    return WEXITSTATUS(status);
  if (int sig = WTERMSIG(status); sig == SIGKILL || sig == SIGTERM || sig == SIGINT) {
    // Stopped from outside (the OOM killer, an operator), not a crash.
    crashed(std::string{"the work was stopped by a signal ("} + strsignal(sig)
            + "; out of memory?) before it finished");
    return exit_failure;
  }
  crashed("damaged B-tree page: reading the store crashed (signal "
          + std::string{strsignal(WTERMSIG(status))}
          + "); LMDB has no page checksums, so this is damage it could not report. Restore a "
            "backup, or export what still reads");
  return exit_damaged;
}

int verify(const context& ctx, const std::string& dir, const published_options& published) {
  return in_child([&] { return verify_here(ctx, dir, published); },
                  [&](const std::string& message) { report_damage(ctx, message); });
}

} // namespace cairn::tools::detail
