// Stream heads: the heads table (buckets of fixed slots), the head log that
// takes the changed heads of each commit between rewrites of the table, the
// readers' index of that log, and the writer's cached heads.

#include <algorithm>
#include <cstring>
#include <iterator>

#include "lmdb/store_impl.hpp"

namespace cairn::persistence::detail {

using namespace format;

// -- the writer --------------------------------------------------------------------

lmdb_result<head_state*> lmdb_store::writer_head(MDB_txn* txn, std::string_view stream,
                                                 staging& st) {
  auto [it, inserted] = head_cache_.find_or_insert(stream);
  auto& entry = it->second;
  if (inserted) {
    auto stored = read_head(txn, stream, true);
    if (!stored) {
      head_cache_.erase_inserted(it);
      return lmdb_fail(MDB_CORRUPTED, stored.error());
    }
    if (*stored)
      entry.committed = **stored;
  }
  if (entry.staged_in != st.serial) {
    entry.staged = entry.committed;
    entry.staged_in = st.serial;
    st.touched.push_back(it);
  }
  return &entry.staged;
}

lmdb_result<lmdb_store::head_plan> lmdb_store::stage_heads(MDB_txn* txn, const staging& st) {
  head_plan plan;
  for (const auto* entry : st.touched)
    if (entry->second.staged.dirty)
      plan.changed.emplace_back(entry->second.staged.stream_no, entry->second.staged.last_position);
  if (plan.changed.empty())
    return plan;
  plan.rewrite = st.position - heads_at_ >= opts_.heads_flush_events;
  if (plan.rewrite) {
    if (auto ok = rewrite_heads(txn, plan.changed, st.position); !ok)
      return tl::unexpected(ok.error());
    return plan;
  }
  // Sequentially after the previous commit's entry.
  auto key = be64_key(st.position);
  if (auto ok = put_value(txn, head_log_, key, seal(key, encode_head_log(plan.changed)),
                          "write head log", MDB_APPEND);
      !ok)
    return tl::unexpected(ok.error());
  return plan;
}

lmdb_result<> lmdb_store::rewrite_heads(MDB_txn* txn, const head_pairs& changed,
                                        std::uint64_t position) {
  head_pairs heads;
  heads.reserve(unflushed_.size() + changed.size());
  for (auto [no, pos] : unflushed_)
    if (pos != 0) // 0: left by a failed commit, the table has the head
      heads.emplace_back(no, pos);
  heads.insert(heads.end(), changed.begin(), changed.end());
  if (auto ok = write_heads(txn, heads); !ok)
    return ok;
  if (int rc = mdb_drop(txn, head_log_, 0); rc != 0)
    return lmdb_fail(rc, "empty the head log");
  return put_value(txn, meta_, heads_at_key, seal(heads_at_key, u64_body(position)),
                   "write heads_at");
}

lmdb_result<> lmdb_store::write_heads(MDB_txn* txn, head_pairs& heads) {
  std::sort(heads.begin(), heads.end()); // by stream, then position: the last one wins
  std::string body(head_bucket_size, '\0');
  for (std::size_t i = 0; i < heads.size();) {
    auto bucket = bucket_of(heads[i].first);
    auto key = be64_key(bucket);
    MDB_val k = val_of(key), v;
    int rc = mdb_get(txn, heads_, &k, &v);
    if (rc == 0) {
      auto stored = decode_heads_bucket(key, view_of(v), "heads bucket " + std::to_string(bucket),
                                        "bucket " + std::to_string(bucket));
      if (!stored)
        return lmdb_fail(MDB_CORRUPTED, stored.error());
      body.assign(stored->data(), stored->size());
    } else if (rc == MDB_NOTFOUND) {
      body.assign(head_bucket_size, '\0');
    } else {
      return lmdb_fail(rc, "read heads bucket");
    }
    for (; i < heads.size() && bucket_of(heads[i].first) == bucket; ++i)
      put_le(reinterpret_cast<unsigned char*>(body.data()) + slot_of(heads[i].first),
             heads[i].second);
    MDB_val out{seal_size + head_bucket_size, nullptr};
    if (rc = mdb_put(txn, heads_, &k, &out, MDB_RESERVE); rc != 0)
      return lmdb_fail(rc, "write heads bucket");
    auto* dst = static_cast<unsigned char*>(out.mv_data);
    std::memcpy(dst + seal_size, body.data(), body.size());
    put_le(dst, seal_checksum(key, body));
  }
  return {};
}

result<void> lmdb_store::load_unflushed(MDB_txn* txn) {
  std::uint64_t highest = 0;
  auto scanned = scan_head_log(txn, heads_at_, no_limit, [&](std::uint64_t, const auto& pairs) {
    for (auto [no, pos] : pairs) {
      unflushed_[no] = pos;
      highest = std::max(highest, no);
    }
  });
  if (!scanned)
    return scanned;
  next_stream_no_ = std::max(next_stream_no_, highest + 1);
  return {};
}

// -- every reader ------------------------------------------------------------------

result<std::optional<head_state>> lmdb_store::read_head(MDB_txn* txn, std::string_view stream,
                                                        bool writer) const {
  auto no = stream_number(txn, stream);
  if (!no)
    return tl::unexpected(no.error());
  if (!*no)
    return std::optional<head_state>{};
  head_state h{**no, 0, 0};
  auto last = head_position(txn, stream, **no, writer);
  if (!last)
    return tl::unexpected(last.error());
  h.last_position = *last;
  auto version = version_at(txn, stream, h.last_position);
  if (!version)
    return tl::unexpected(version.error());
  h.version = *version;
  return std::optional<head_state>{h};
}

result<std::optional<std::uint64_t>> lmdb_store::stream_number(MDB_txn* txn,
                                                               std::string_view stream) const {
  MDB_val k = val_of(stream), v;
  int rc = mdb_get(txn, names_, &k, &v);
  if (rc == MDB_NOTFOUND)
    return std::optional<std::uint64_t>{};
  if (rc != 0)
    return tl::unexpected(lmdb_error(rc, "read stream name"));
  auto no = decode_u64(stream, view_of(v), "stream name entry of " + std::string{stream});
  if (!no)
    return tl::unexpected(no.error());
  return std::optional<std::uint64_t>{*no};
}

result<std::uint64_t> lmdb_store::head_position(MDB_txn* txn, std::string_view stream,
                                                std::uint64_t no, bool writer) const {
  std::uint64_t last = 0;
  if (writer) {
    if (auto it = unflushed_.find(no); it != unflushed_.end())
      last = it->second;
  } else {
    auto tail = tail_position(txn, no);
    if (!tail)
      return tl::unexpected(tail.error());
    last = *tail;
  }
  if (last == 0) { // not appended to since the heads rewrite: the table has it
    auto key = be64_key(bucket_of(no));
    MDB_val hk = val_of(key), hv;
    int rc = mdb_get(txn, heads_, &hk, &hv);
    if (rc == MDB_NOTFOUND)
      return fail(errc::corrupted, "stream has a name but no head", std::string{stream});
    if (rc != 0)
      return tl::unexpected(lmdb_error(rc, "read the head of " + std::string{stream}));
    auto body = decode_heads_bucket(key, view_of(hv), "heads bucket of " + std::string{stream},
                                    std::string{stream});
    if (!body)
      return tl::unexpected(body.error());
    last = head_in_bucket(*body, no);
  }
  if (last == 0)
    return fail(errc::corrupted, "stream has a name but an empty head", std::string{stream});
  return last;
}

result<std::uint64_t> lmdb_store::version_at(MDB_txn* txn, std::string_view stream,
                                             std::uint64_t position) const {
  // The version lives in the last record; its checksum and name vouch for the head.
  unsigned char kb[8];
  put_be64(kb, position);
  MDB_val lk{8, kb}, lv;
  if (int rc = mdb_get(txn, log_, &lk, &lv); rc == MDB_NOTFOUND)
    return fail(errc::corrupted, "head points at a missing log record",
                "position " + std::to_string(position));
  else if (rc != 0)
    return tl::unexpected(lmdb_error(rc, "read the last record of " + std::string{stream}));
  auto rec = decode_record(static_cast<const unsigned char*>(lv.mv_data), lv.mv_size, position);
  if (!rec)
    return tl::unexpected(rec.error());
  if (rec->stream != stream)
    return fail(errc::corrupted,
                "head of " + std::string{stream} + " points at an event of "
                  + std::string{rec->stream},
                "position " + std::to_string(position));
  return rec->version;
}

result<std::uint64_t> lmdb_store::tail_position(MDB_txn* txn, std::uint64_t stream_no) const {
  if (!has_head_log_)
    return format1_tail(txn);
  auto last = last_head_log_key(txn); // the last head-log entry this snapshot has
  if (!last)
    return tl::unexpected(last.error());
  if (!*last)
    return 0; // the heads table is complete in this snapshot
  auto heads_at = read_heads_at(txn);
  if (!heads_at)
    return tl::unexpected(heads_at.error());
  return indexed_tail(txn, stream_no, *heads_at, **last);
}

result<std::uint64_t> lmdb_store::format1_tail(MDB_txn* txn) const {
  // Its heads table is complete unless a writer has since upgraded the
  // store, which the heads_at entry tells.
  MDB_val k = val_of(heads_at_key), v;
  if (mdb_get(txn, meta_, &k, &v) == 0)
    return fail(errc::unavailable,
                "a writer upgraded this store to format 2 after it was opened read-only; "
                "reopen it",
                dir_);
  return 0;
}

result<std::uint64_t> lmdb_store::indexed_tail(MDB_txn* txn, std::uint64_t stream_no,
                                               std::uint64_t heads_at, std::uint64_t last) const {
  std::unique_lock lock{tail_mu_};
  if (tail_.base < heads_at) { // the heads were rewritten since the index was built
    tail_.positions.clear();
    tail_.base = tail_.scanned_to = heads_at;
  }
  if (tail_.base > heads_at) {
    // This snapshot predates the rewrite the index builds on: read its own head log.
    lock.unlock();
    std::uint64_t found = 0;
    auto scanned = scan_head_log(txn, heads_at, last, [&](std::uint64_t, const auto& pairs) {
      for (auto [no, pos] : pairs)
        if (no == stream_no)
          found = pos;
    });
    if (!scanned)
      return tl::unexpected(scanned.error());
    return found;
  }
  if (tail_.scanned_to < last) {
    auto scanned = scan_head_log(txn, tail_.scanned_to, last,
                                 [&](std::uint64_t key, const auto& pairs) {
                                   for (auto [no, pos] : pairs)
                                     tail_.positions[no].push_back(pos);
                                   tail_.scanned_to = key;
                                 });
    if (!scanned)
      return tl::unexpected(scanned.error());
  }
  auto it = tail_.positions.find(stream_no);
  if (it == tail_.positions.end())
    return 0;
  // The newest position at or before this snapshot's last commit.
  auto at = std::upper_bound(it->second.begin(), it->second.end(), last);
  return at == it->second.begin() ? 0 : *std::prev(at);
}

result<std::optional<std::uint64_t>> lmdb_store::last_head_log_key(MDB_txn* txn) const {
  cursor_guard cur;
  if (int rc = cur.open(txn, head_log_); rc != 0)
    return tl::unexpected(lmdb_error(rc, "cursor"));
  MDB_val k, v;
  int rc = mdb_cursor_get(cur.get(), &k, &v, MDB_LAST);
  if (rc == MDB_NOTFOUND)
    return std::optional<std::uint64_t>{};
  if (rc != 0)
    return tl::unexpected(lmdb_error(rc, "read head log"));
  if (k.mv_size != 8)
    return fail(errc::corrupted, "a head log key of the wrong size", dir_);
  return std::optional<std::uint64_t>{get_be64(static_cast<const unsigned char*>(k.mv_data))};
}

result<std::uint64_t> lmdb_store::read_heads_at(MDB_txn* txn) const {
  MDB_val k = val_of(heads_at_key), v;
  if (int rc = mdb_get(txn, meta_, &k, &v); rc == MDB_NOTFOUND)
    return fail(errc::corrupted, "a format 2 store without heads_at", dir_);
  else if (rc != 0)
    return tl::unexpected(lmdb_error(rc, "read heads_at"));
  return decode_u64(heads_at_key, view_of(v), "heads_at");
}

result<head_pairs> lmdb_store::head_log_entry(MDB_txn* txn, std::uint64_t prev_key,
                                              std::uint64_t key, std::string_view value) const {
  if (auto decoded = decode_head_log(key, value))
    return std::move(*decoded);
  // Damaged: the commit's log records say the same, each verified.
  head_pairs pairs;
  cursor_guard cur;
  if (int rc = cur.open(txn, log_); rc != 0)
    return tl::unexpected(lmdb_error(rc, "cursor"));
  for (auto pos = prev_key + 1; pos <= key; ++pos) {
    unsigned char kb[8];
    put_be64(kb, pos);
    MDB_val lk{8, kb}, lv;
    if (int rc = mdb_cursor_get(cur.get(), &lk, &lv, MDB_SET_KEY); rc != 0)
      return rc == MDB_NOTFOUND ? fail(errc::corrupted,
                                       "the head log entry at position " + std::to_string(key)
                                         + " fails its checksum and a log record is missing",
                                       "position " + std::to_string(pos))
                                : tl::unexpected(lmdb_error(rc, "read log"));
    auto rec = decode_record(static_cast<const unsigned char*>(lv.mv_data), lv.mv_size, pos);
    if (!rec)
      return tl::unexpected(rec.error());
    MDB_val nk = val_of(rec->stream), nv;
    if (int rc = mdb_get(txn, names_, &nk, &nv); rc != 0)
      return rc == MDB_NOTFOUND ? fail(errc::corrupted, "an event of a stream without a name entry",
                                       "position " + std::to_string(pos))
                                : tl::unexpected(lmdb_error(rc, "read stream name"));
    auto no = decode_u64(rec->stream, view_of(nv),
                         "stream name entry of " + std::string{rec->stream});
    if (!no)
      return tl::unexpected(no.error());
    pairs.emplace_back(*no, pos); // several per stream: positions ascend, the last counts
  }
  return pairs;
}

result<void> lmdb_store::scan_head_log(
  MDB_txn* txn, std::uint64_t after, std::uint64_t upto,
  const std::function<void(std::uint64_t, const head_pairs&)>& visit) const {
  cursor_guard cur;
  if (int rc = cur.open(txn, head_log_); rc != 0)
    return tl::unexpected(lmdb_error(rc, "cursor"));
  auto start = be64_key(after + 1);
  MDB_val k = val_of(start), v;
  std::uint64_t prev = after;
  int rc = mdb_cursor_get(cur.get(), &k, &v, MDB_SET_RANGE);
  for (; rc == 0; rc = mdb_cursor_get(cur.get(), &k, &v, MDB_NEXT)) {
    if (k.mv_size != 8)
      return fail(errc::corrupted, "a head log key of the wrong size", dir_);
    auto key = get_be64(static_cast<const unsigned char*>(k.mv_data));
    if (key > upto)
      break;
    auto pairs = head_log_entry(txn, prev, key, view_of(v));
    if (!pairs)
      return tl::unexpected(pairs.error());
    visit(key, *pairs);
    prev = key;
  }
  if (rc != 0 && rc != MDB_NOTFOUND)
    return tl::unexpected(lmdb_error(rc, "read head log"));
  return {};
}

} // namespace cairn::persistence::detail
