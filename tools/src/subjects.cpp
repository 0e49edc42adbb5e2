// cairn forget and cairn export --subject: erasure and access for one data
// subject (docs/audit.md#forgetting-a-data-subject).

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ext/stdio_filebuf.h>
#include <filesystem>
#include <iostream>

#include "cairn/persistence/personal.hpp"
#include "cairn/tools/cli.hpp"
#include "output.hpp"

namespace cairn::tools::detail {

namespace {

namespace fs = std::filesystem;

constexpr std::size_t page_size = 4096;

result<void> check_subject(const std::string& subject) {
  if (subject.empty() || subject.size() > 255)
    return fail(errc::invalid_argument, "a data subject is 1-255 bytes", subject);
  return {};
}

} // namespace

int forget(const context& ctx, const std::string& dir, const std::string& subject) {
  if (auto ok = check_subject(subject); !ok)
    return report(ok.error());
  std::error_code ec;
  if (!fs::is_directory(dir, ec))
    return report(error{errc::invalid_argument, "no such directory", dir});
  if (!fs::exists(fs::path(dir) / "data.mdb", ec))
    return report(error{errc::invalid_argument, "no cairn store here (no data.mdb)", dir});
  persistence::store_options opts;
  opts.master_key_file = ctx.master_key_file;
  opts.master_key_env = ctx.master_key_env;
  auto store = persistence::open_store(dir, opts);
  if (!store && store.error().code == errc::unavailable)
    return report(error{errc::unavailable,
                        "the store is open for writing by a running service: forget through "
                        "its runtime (runtime::forget), or stop it first",
                        dir});
  if (!store)
    return report(store.error());
  auto streams = (*store)->subject_streams(subject);
  if (!streams)
    return report(streams.error());
  persistence::write_batch batch;
  batch.forget.push_back(subject);
  auto written = (*store)->append_batch(batch);
  if (!written)
    return report(written.error());
  if (ctx.json)
    std::cout
      << json_object{}.add("subject", subject).add("streams", std::uint64_t{streams->size()}).str()
      << '\n';
  else
    std::cout << "forgot data subject " << subject << ": its data key is deleted and the "
              << "snapshots of " << count_of(streams->size(), "stream")
              << " about it; its personal data now reads as absent. The old bytes stay on "
                 "free pages of data.mdb until `cairn backup` writes a compacted copy "
                 "(docs/audit.md)\n";
  return exit_ok;
}

int export_subject(const context& ctx, const std::string& dir, const std::string& subject,
                   const std::string& file) {
  if (auto ok = check_subject(subject); !ok)
    return report(ok.error());
  auto opened = open_read(dir, ctx);
  if (!opened)
    return report(opened.error());
  const auto& store = **opened;
  std::error_code ec;
  if (fs::exists(fs::symlink_status(file, ec)))
    return report(
      error{errc::invalid_argument, "the export file exists (export never overwrites)", file});
  // After retention the log has holes below its cut; the subject's events
  // kept there are listed too (Article 15: every event still stored).
  auto cut = log_cut_of(store);
  if (!cut)
    return report(cut.error());
  const auto last = cut->extent.last_position;
  // Readable by its owner only: it holds the subject's personal data in the clear.
  int fd = ::open(file.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0)
    return report(error{errno == EEXIST ? errc::invalid_argument : errc::unavailable,
                        std::string{"cannot create the export file: "} + std::strerror(errno),
                        file});
  __gnu_cxx::stdio_filebuf<char> file_buf(fd, std::ios::out | std::ios::binary);
  std::ostream out(&file_buf);
  const auto* keys = store.personal_keys();
  json_object header;
  header.add("cairn_subject_export", std::uint64_t{1})
    .add("subject", subject)
    .add("decrypted", keys != nullptr);
  if (cut->cut()) // only then: the header of a whole log's export stays as it was
    header.add("first_position", cut->extent.first_position).add("kept_below", cut->kept_below);
  out << header.str() << '\n';
  if (cut->cut())
    std::cerr << "cairn: " << cut_note(*cut) << std::endl;
  // The whole log, not the subject index: the index is deleted by forget,
  // and an access request after an erasure still lists the events.
  std::uint64_t found = 0;
  persistence::read_filter every;
  for (std::uint64_t pos = 1; pos <= last;) {
    every.kept_below_cut = pos < cut->extent.first_position;
    auto page = store.read_all(pos, page_size, every);
    if (!page) {
      file_buf.close();
      fs::remove(file, ec);
      return report(page.error());
    }
    if (page->next_position <= pos)
      break;
    for (const auto& ev : page->events) {
      if (ev.meta.subject != subject)
        continue;
      persistence::personal_scope scope{keys, ev.meta.subject};
      out << event_json(ev, ctx.types, false) << '\n';
      ++found;
    }
    pos = page->next_position;
  }
  out.flush();
  if (!out) {
    file_buf.close();
    fs::remove(file, ec);
    return report(error{errc::unavailable, "cannot write the export file", file});
  }
  std::cout << "exported " << count_of(found, "event") << " about " << subject << " to " << file
            << (keys ? "" : " (no master key: personal data shows as absent)") << '\n';
  return exit_ok;
}

} // namespace cairn::tools::detail
