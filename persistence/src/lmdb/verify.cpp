// check_indexes (cairn verify): the tables that point into the log, checked
// against it in read transactions of bounded length.

#include "lmdb/store_impl.hpp"

namespace cairn::persistence::detail {

using namespace format;

namespace {

/// Entries one read transaction of check_indexes checks at most.
constexpr std::size_t per_txn = 16384;

} // namespace

std::string lmdb_store::check_record(MDB_txn* txn, std::uint64_t pos, std::uint64_t no,
                                     std::uint64_t version, std::string_view command) const {
  unsigned char kb[8];
  put_be64(kb, pos);
  MDB_val k{8, kb}, v;
  if (int rc = mdb_get(txn, log_, &k, &v); rc != 0)
    return rc == MDB_NOTFOUND ? "no log record there" : lmdb_error(rc, "read").message;
  auto rec = decode_record(static_cast<const unsigned char*>(v.mv_data), v.mv_size, pos);
  if (!rec)
    return rec.error().message;
  MDB_val nk = val_of(rec->stream), nv;
  if (mdb_get(txn, names_, &nk, &nv) != 0)
    return "the record's stream " + std::string{rec->stream} + " has no number";
  auto rec_no = decode_u64(rec->stream, view_of(nv), "stream name entry");
  if (!rec_no || *rec_no != no || rec->version != version)
    return "the record is " + std::string{rec->stream} + " v" + std::to_string(rec->version)
           + ", not stream number " + std::to_string(no) + " v" + std::to_string(version);
  if (!command.empty() && rec->command_id != command)
    return "the record does not carry command id " + std::string{command};
  return {};
}

result<void> lmdb_store::scan_in_chunks(
  MDB_dbi dbi,
  const std::function<void(MDB_txn*, std::string_view, std::string_view)>& check) const {
  std::string after;
  bool first = true;
  for (bool done = false; !done; first = false) {
    auto chunk = with_read([&](MDB_txn* txn) -> result<void> {
      cursor_guard cur;
      if (int rc = cur.open(txn, dbi); rc != 0)
        return tl::unexpected(lmdb_error(rc, "cursor"));
      MDB_val k = val_of(after), v;
      int rc = first ? mdb_cursor_get(cur.get(), &k, &v, MDB_FIRST)
                     : mdb_cursor_get(cur.get(), &k, &v, MDB_SET_RANGE);
      if (rc == 0 && !first && view_of(k) == after)
        rc = mdb_cursor_get(cur.get(), &k, &v, MDB_NEXT);
      for (std::size_t n = 0; rc == 0 && n < per_txn; ++n) {
        after.assign(view_of(k));
        check(txn, view_of(k), view_of(v));
        rc = mdb_cursor_get(cur.get(), &k, &v, MDB_NEXT);
      }
      if (rc == MDB_NOTFOUND)
        done = true;
      else if (rc != 0)
        return tl::unexpected(lmdb_error(rc, "walk a table"));
      return {};
    });
    if (!chunk)
      return chunk;
  }
  return {};
}

void lmdb_store::check_index_entry(MDB_txn* txn, std::string_view key, std::string_view value,
                                   const problem_sink& problem) const {
  if (key.size() != 16) {
    problem(0, "a stream index entry has a key of " + std::to_string(key.size()) + " bytes");
    return;
  }
  auto no = get_be64(reinterpret_cast<const unsigned char*>(key.data()));
  auto version = get_be64(reinterpret_cast<const unsigned char*>(key.data()) + 8);
  auto what = "stream index entry of stream number " + std::to_string(no) + " v"
              + std::to_string(version);
  auto pos = decode_u64(key, value, what);
  if (!pos) {
    problem(0, pos.error().message);
    return;
  }
  if (version % index_interval != 0)
    problem(*pos, what + " is off the index interval");
  if (auto bad = check_record(txn, *pos, no, version, {}); !bad.empty())
    problem(*pos, what + " points at position " + std::to_string(*pos) + ": " + bad);
}

void lmdb_store::check_command_record(MDB_txn* txn, std::string_view key, std::string_view value,
                                      const problem_sink& problem) const {
  if (key.size() <= 8) {
    problem(0, "a command record has a key of " + std::to_string(key.size()) + " bytes");
    return;
  }
  auto no = get_be64(reinterpret_cast<const unsigned char*>(key.data()));
  auto command = key.substr(8);
  auto what = "command record " + std::string{command} + " of stream number " + std::to_string(no);
  auto r = decode_outcome(key, value, what);
  if (!r) {
    problem(0, r.error().message);
    return;
  }
  if (r->first_position == 0 || r->last_position < r->first_position
      || r->last_position - r->first_position != r->last_version - r->first_version) {
    problem(r->first_position, what + " holds an impossible range");
    return;
  }
  // Retention removed the stream's versions below its cut; the record stays
  // (a retried command is still recognised), its removed events are not checked.
  auto cut = stream_cut(txn, no);
  if (!cut) {
    problem(0, what + ": " + cut.error().message);
    return;
  }
  if (r->last_version < cut->first)
    return;
  if (r->first_version < cut->first) {
    if (auto last = check_record(txn, r->last_position, no, r->last_version, command);
        !last.empty())
      problem(r->last_position, what + ": " + last);
    return;
  }
  if (auto bad = check_record(txn, r->first_position, no, r->first_version, command); !bad.empty())
    problem(r->first_position, what + ": " + bad);
  else if (auto last = check_record(txn, r->last_position, no, r->last_version, command);
           !last.empty())
    problem(r->last_position, what + ": " + last);
}

result<event_store::index_check> lmdb_store::check_indexes(const problem_sink& problem) const {
  index_check out;
  auto index_ok = scan_in_chunks(index_, [&](MDB_txn* txn, auto key, auto value) {
    ++out.index_entries;
    check_index_entry(txn, key, value, problem);
  });
  if (!index_ok)
    return tl::unexpected(index_ok.error());
  auto commands_ok = scan_in_chunks(commands_, [&](MDB_txn* txn, auto key, auto value) {
    ++out.command_records;
    check_command_record(txn, key, value, problem);
  });
  if (!commands_ok)
    return tl::unexpected(commands_ok.error());
  return out;
}

} // namespace cairn::persistence::detail
