// Data subjects in the LMDB store: the keys table (each subject's data key,
// wrapped by the master key), the subject index (which streams have events
// about a subject) and forgetting. docs/audit.md#forgetting-a-data-subject.

#include <sodium.h>

#include "lmdb/store_impl.hpp"

namespace cairn::persistence::detail {

using format::encode_forget_payload;
using format::forget_stream;
using format::forget_type;
using format::get_be64;
using format::pair_key;
using format::seal;

result<void> lmdb_store::open_key_tables(MDB_txn* txn) {
  // Format 3; created on a writable open, absent to a read-only open of an older store.
  unsigned flags = opts_.read_only ? 0 : MDB_CREATE;
  for (auto [name, dbi] : {std::pair{"keys", &keys_}, std::pair{"subjects", &subjects_}}) {
    int rc = mdb_dbi_open(txn, name, flags, dbi);
    if (rc == MDB_NOTFOUND && opts_.read_only) {
      has_key_tables_ = false;
      continue;
    }
    if (rc != 0)
      return tl::unexpected(lmdb_error(rc, std::string{"open table "} + name));
  }
  return {};
}

result<void> lmdb_store::open_key_ring() {
  auto master = load_master_key(opts_, dir_);
  if (!master)
    return tl::unexpected(master.error());
  if (!*master)
    return {};
  ring_ = std::make_unique<lmdb_key_ring>(
    **master, [this](std::string_view subject) -> result<std::optional<std::string>> {
      if (!has_key_tables_)
        return std::optional<std::string>{};
      return with_read([&](MDB_txn* txn) -> result<std::optional<std::string>> {
        MDB_val k = val_of(subject), v;
        int rc = mdb_get(txn, keys_, &k, &v);
        if (rc == MDB_NOTFOUND)
          return std::optional<std::string>{};
        if (rc != 0)
          return tl::unexpected(lmdb_error(rc, "read data key"));
        return std::optional<std::string>{std::string{view_of(v)}};
      });
    });
  auto& key = *master;
  sodium_memzero(key->data(), key->size());
  return {};
}

result<void> lmdb_store::validate_forget(span<std::string> subjects) const {
  for (const auto& s : subjects)
    if (s.empty() || s.size() > max_short_field)
      return fail(errc::invalid_argument, "a data subject to forget is 1-255 bytes", s);
  return {};
}

lmdb_result<> lmdb_store::stage_subject(MDB_txn* txn, const std::string& subject,
                                        const std::string& stream, staging& st) {
  auto key = format::subject_stream_key(subject, stream);
  if (auto ok = put_value(txn, subjects_, key, seal(key, {}), "write subject index"); !ok)
    return ok;
  if (!ring_)
    return {};
  // A key made for this subject since its last append goes into this
  // transaction: no event encrypted under it is durable without it.
  auto pending = ring_->pending(subject);
  if (!pending)
    return {};
  if (auto ok = put_value(txn, keys_, subject, pending->first, "write data key"); !ok)
    return ok;
  st.new_keys.emplace_back(subject, pending->second);
  return {};
}

namespace {

/// Calls `take(key, stream)` for each subject-index entry of `subject`
/// (whose key prefix is `prefix`) from `cur`; stops at the first error.
template <class F> int scan_subject(MDB_cursor* cur, const std::string& prefix, F&& take) {
  MDB_val k = val_of(prefix), v;
  int rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
  while (rc == 0) {
    auto found = view_of(k);
    if (found.size() <= prefix.size() || found.substr(0, prefix.size()) != prefix)
      return MDB_NOTFOUND;
    if (int trc = take(found.substr(prefix.size())); trc != 0)
      return trc;
    rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
  }
  return rc;
}

} // namespace

result<std::vector<std::string>> lmdb_store::subject_streams(std::string_view subject) const {
  if (!has_key_tables_ || subject.empty())
    return std::vector<std::string>{};
  return with_read([&](MDB_txn* txn) -> result<std::vector<std::string>> {
    std::vector<std::string> out;
    cursor_guard cur;
    if (int rc = cur.open(txn, subjects_); rc != 0)
      return tl::unexpected(lmdb_error(rc, "cursor"));
    std::string prefix{subject};
    prefix.push_back('\0');
    int rc = scan_subject(cur.get(), prefix, [&](std::string_view stream) {
      out.emplace_back(stream);
      return 0;
    });
    if (rc != MDB_NOTFOUND)
      return tl::unexpected(lmdb_error(rc, "read subject index"));
    return out;
  });
}

lmdb_result<> lmdb_store::stage_forget_record(MDB_txn* txn, const std::string& subject, staging& st,
                                              std::int64_t now) {
  auto head = writer_head(txn, forget_stream, st);
  if (!head)
    return tl::unexpected(head.error());
  // Through the append path, past validate_request (whose stream name check
  // refuses '$' to every user append), as begin_epoch writes epoch records.
  append_request req;
  req.stream = std::string{forget_stream};
  req.expected = expected_version::exact((*head)->version);
  auto& ev = req.events.emplace_back();
  ev.type = std::string{forget_type};
  ev.payload = encode_forget_payload(subject);
  auto staged = stage_append(txn, req, st, now);
  if (!staged)
    return tl::unexpected(staged.error());
  if (!*staged) // the writer's own stream at its own version: never refused
    return lmdb_fail(MDB_CORRUPTED, staged->error());
  return {};
}

lmdb_result<> lmdb_store::stage_forget(MDB_txn* txn, const std::string& subject) {
  if (ring_)
    ring_->forgetting(subject);
  if (auto ok = erase_value(txn, keys_, subject, "delete data key"); !ok)
    return ok;
  auto prefix = subject;
  prefix.push_back('\0');
  cursor_guard subjects;
  if (int rc = subjects.open(txn, subjects_); rc != 0)
    return lmdb_fail(rc, "cursor");
  std::optional<error> failed;
  int rc = scan_subject(subjects.get(), prefix, [&](std::string_view stream) -> int {
    auto no = stream_number(txn, stream);
    if (!no) {
      failed = no.error();
      return MDB_CORRUPTED;
    }
    if (*no) {
      // Snapshots may hold the subject's personal data in plain bytes: the
      // next activation replays the events instead, where it reads as absent.
      cursor_guard snaps;
      if (int src = snaps.open(txn, snapshots_); src != 0)
        return src;
      auto first = pair_key(**no, 0);
      MDB_val sk = val_of(first);
      MDB_val sv;
      int s = mdb_cursor_get(snaps.get(), &sk, &sv, MDB_SET_RANGE);
      while (s == 0 && sk.mv_size == 16
             && get_be64(static_cast<const unsigned char*>(sk.mv_data)) == **no) {
        if (int drc = mdb_cursor_del(snaps.get(), 0); drc != 0)
          return drc;
        s = mdb_cursor_get(snaps.get(), &sk, &sv, MDB_NEXT);
      }
      if (s != 0 && s != MDB_NOTFOUND)
        return s;
    }
    return mdb_cursor_del(subjects.get(), 0);
  });
  if (failed)
    return lmdb_fail(MDB_CORRUPTED, *failed);
  if (rc != MDB_NOTFOUND)
    return lmdb_fail(rc, "forget a data subject");
  return {};
}

} // namespace cairn::persistence::detail
