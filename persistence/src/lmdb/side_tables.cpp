// The side tables: snapshots, checkpoints, key-value read models and dead
// letters, their validation, their staging in a write transaction, and their reads.

#include "cairn/persistence/codec.hpp"
#include "cairn/model/stream_name.hpp"
#include "lmdb/store_impl.hpp"

namespace cairn::persistence::detail {

using namespace format;

namespace {

/// Snapshots kept per stream.
constexpr int snapshots_kept = 2;

} // namespace

// -- validation ----------------------------------------------------------------------

result<void> lmdb_store::validate_side_tables(const batch_view& b) const {
  for (const auto& op : b.kv) {
    if (!is_valid_space_name(op.space))
      return fail(errc::invalid_argument, "key-value space names are 1-255 bytes without a 0 byte",
                  op.space);
    if (op.op != kv_op::kind::clear && (op.key.empty() || op.key.size() > max_short_field))
      return fail(errc::invalid_argument, "keys are 1-255 bytes", op.space + "/" + op.key);
    if (op.value.size() > opts_.max_event_size)
      return fail(errc::invalid_argument,
                  "value of " + std::to_string(op.value.size()) + " bytes exceeds max_event_size "
                    + std::to_string(opts_.max_event_size),
                  op.space + "/" + op.key);
  }
  for (const auto& dl : b.dead_letters) {
    if (!is_valid_space_name(dl.subscriber) || dl.position == 0)
      return fail(errc::invalid_argument,
                  "a dead letter needs a subscriber name of 1-255 bytes without a 0 byte and a "
                  "position >= 1",
                  dl.subscriber);
    if (dl.stream.size() > max_short_field || dl.type.size() > max_short_field
        || dl.error.size() > max_dead_letter_error)
      return fail(errc::invalid_argument,
                  "a dead letter's stream and type are at most 255 bytes, its error at most "
                    + std::to_string(max_dead_letter_error),
                  dl.subscriber);
  }
  for (const auto& key : b.removals)
    if (!is_valid_space_name(key.subscriber))
      return fail(errc::invalid_argument, "subscriber names are 1-255 bytes without a 0 byte",
                  key.subscriber);
  for (const auto& cp : b.checkpoints) {
    if (cp.name.empty() || cp.name.size() > max_short_field)
      return fail(errc::invalid_argument, "checkpoint names are 1-255 bytes", cp.name);
    if (is_replicated_checkpoint_name(cp.name))
      return fail(errc::invalid_argument,
                  "checkpoint names beginning with " + std::string{replicated_checkpoint_prefix}
                    + " are the owner's checkpoints a standby copies",
                  cp.name);
  }
  return validate_snapshots(b.snapshots);
}

result<void> lmdb_store::validate_snapshots(span<snapshot> snapshots) const {
  for (const auto& s : snapshots) {
    if (auto ok = validate_stream_name(s.stream); !ok)
      return tl::unexpected(ok.error());
    if (s.version == 0 || s.schema_version == 0 || !is_valid_type_name(s.state_type))
      return fail(errc::invalid_argument,
                  "a snapshot needs a version >= 1, a schema version >= 1 and a state type of "
                  "1-255 printable bytes without spaces",
                  s.stream);
    if (s.data.size() > opts_.max_snapshot_size)
      return fail(errc::invalid_argument,
                  "snapshot of " + std::to_string(s.data.size())
                    + " bytes exceeds max_snapshot_size " + std::to_string(opts_.max_snapshot_size),
                  s.stream);
  }
  return {};
}

// -- staging ---------------------------------------------------------------------------

lmdb_result<> lmdb_store::stage_snapshot(MDB_txn* txn, const snapshot& snap, staging& st) {
  auto head = writer_head(txn, snap.stream, st);
  if (!head)
    return tl::unexpected(head.error());
  if (snap.version > (*head)->version)
    return lmdb_fail(EINVAL,
                     error{errc::invalid_argument,
                           "snapshot version " + std::to_string(snap.version)
                             + " is past the stream's version " + std::to_string((*head)->version),
                           snap.stream});
  auto key = pair_key((*head)->stream_no, snap.version);
  if (auto ok = put_value(txn, snapshots_, key, seal(key, encode_snapshot(snap)), "write snapshot");
      !ok)
    return ok;
  return prune_snapshots(txn, (*head)->stream_no);
}

lmdb_result<> lmdb_store::prune_snapshots(MDB_txn* txn, std::uint64_t stream_no) {
  cursor_guard cur;
  if (int rc = cur.open(txn, snapshots_); rc != 0)
    return lmdb_fail(rc, "cursor");
  auto last = pair_key(stream_no, no_limit);
  MDB_val ck = val_of(last), cv;
  int rc = mdb_cursor_get(cur.get(), &ck, &cv, MDB_SET_RANGE);
  rc = rc == 0 ? mdb_cursor_get(cur.get(), &ck, &cv, MDB_PREV)
               : mdb_cursor_get(cur.get(), &ck, &cv, MDB_LAST);
  int seen = 0;
  while (rc == 0 && ck.mv_size == 16
         && get_be64(static_cast<const unsigned char*>(ck.mv_data)) == stream_no) {
    if (++seen > snapshots_kept)
      if (int drc = mdb_cursor_del(cur.get(), 0); drc != 0)
        return lmdb_fail(drc, "prune snapshots");
    rc = mdb_cursor_get(cur.get(), &ck, &cv, MDB_PREV);
  }
  return {};
}

lmdb_result<> lmdb_store::stage_side_tables(MDB_txn* txn, const batch_view& b) {
  for (const auto& op : b.kv)
    if (auto ok = stage_kv(txn, op); !ok)
      return ok;
  for (const auto& dl : b.dead_letters) {
    auto key = dead_letter_store_key(dl.subscriber, dl.position);
    if (auto ok = put_value(txn, dead_letters_, key, seal(key, encode_dead_letter(dl)),
                            "write dead letter");
        !ok)
      return ok;
  }
  for (const auto& dk : b.removals)
    if (auto ok = erase_value(txn, dead_letters_, dead_letter_store_key(dk.subscriber, dk.position),
                              "remove dead letter");
        !ok)
      return ok;
  for (const auto& cp : b.checkpoints)
    if (auto ok = put_value(txn, checkpoints_, cp.name, seal(cp.name, u64_body(cp.position)),
                            "write checkpoint");
        !ok)
      return ok;
  return {};
}

lmdb_result<> lmdb_store::stage_kv(MDB_txn* txn, const kv_op& op) {
  if (op.op == kv_op::kind::clear)
    return clear_space(txn, op.space);
  auto key = space_key(op.space, op.key);
  if (op.op == kv_op::kind::put)
    return put_value(txn, kv_, key, seal(key, op.value), "write key-value");
  return erase_value(txn, kv_, key, "erase key-value");
}

lmdb_result<> lmdb_store::clear_space(MDB_txn* txn, std::string_view space) {
  cursor_guard cur;
  if (int rc = cur.open(txn, kv_); rc != 0)
    return lmdb_fail(rc, "cursor");
  auto prefix = space_key(space, {});
  MDB_val k = val_of(prefix), v;
  int rc = mdb_cursor_get(cur.get(), &k, &v, MDB_SET_RANGE);
  while (rc == 0 && view_of(k).substr(0, prefix.size()) == prefix) {
    if (rc = mdb_cursor_del(cur.get(), 0); rc != 0)
      break;
    k = val_of(prefix); // seek again: plain, where cursor state after a delete is subtle
    rc = mdb_cursor_get(cur.get(), &k, &v, MDB_SET_RANGE);
  }
  if (rc != 0 && rc != MDB_NOTFOUND)
    return lmdb_fail(rc, "clear key-value space");
  return {};
}

// -- reads -------------------------------------------------------------------------------

result<std::optional<snapshot>> lmdb_store::load_snapshot(std::string_view stream,
                                                          std::uint64_t max_version) const {
  if (auto ok = validate_stream_name(stream); !ok)
    return tl::unexpected(ok.error());
  return with_read([&](MDB_txn* txn) -> result<std::optional<snapshot>> {
    auto head = read_head(txn, stream);
    if (!head)
      return tl::unexpected(head.error());
    if (!*head || max_version == 0)
      return std::optional<snapshot>{};
    auto no = (*head)->stream_no;
    cursor_guard cur;
    if (int rc = cur.open(txn, snapshots_); rc != 0)
      return tl::unexpected(lmdb_error(rc, "cursor"));
    auto target = pair_key(no, max_version);
    MDB_val k = val_of(target), v;
    int rc = mdb_cursor_get(cur.get(), &k, &v, MDB_SET_RANGE);
    if (rc == 0 && view_of(k) != target)
      rc = mdb_cursor_get(cur.get(), &k, &v, MDB_PREV);
    else if (rc == MDB_NOTFOUND)
      rc = mdb_cursor_get(cur.get(), &k, &v, MDB_LAST);
    if (rc == MDB_NOTFOUND
        || (rc == 0
            && (k.mv_size != 16 || get_be64(static_cast<const unsigned char*>(k.mv_data)) != no)))
      return std::optional<snapshot>{};
    if (rc != 0)
      return tl::unexpected(lmdb_error(rc, "read snapshot"));
    auto s = decode_snapshot(view_of(k), view_of(v), stream);
    if (!s)
      return tl::unexpected(s.error());
    return std::optional<snapshot>{std::move(*s)};
  });
}

result<std::optional<std::uint64_t>> lmdb_store::load_checkpoint(std::string_view name) const {
  // A copy of an owner's checkpoint has the prefix on top of its 255 bytes.
  auto limit = max_short_field
               + (is_replicated_checkpoint_name(name) ? replicated_checkpoint_prefix.size() : 0);
  if (name.empty() || name.size() > limit)
    return fail(errc::invalid_argument, "checkpoint names are 1-255 bytes", std::string{name});
  return with_read([&](MDB_txn* txn) -> result<std::optional<std::uint64_t>> {
    MDB_val k = val_of(name), v;
    int rc = mdb_get(txn, checkpoints_, &k, &v);
    if (rc == MDB_NOTFOUND)
      return std::optional<std::uint64_t>{};
    if (rc != 0)
      return tl::unexpected(lmdb_error(rc, "read checkpoint"));
    auto pos = decode_u64(name, view_of(v), "checkpoint " + std::string{name});
    if (!pos)
      return tl::unexpected(pos.error());
    return std::optional<std::uint64_t>{*pos};
  });
}

result<std::vector<checkpoint>> lmdb_store::list_checkpoints() const {
  return with_read([&](MDB_txn* txn) -> result<std::vector<checkpoint>> {
    std::vector<checkpoint> out;
    cursor_guard cur;
    if (int rc = cur.open(txn, checkpoints_); rc != 0)
      return tl::unexpected(lmdb_error(rc, "cursor"));
    MDB_val k, v;
    for (int rc = mdb_cursor_get(cur.get(), &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur.get(), &k, &v, MDB_NEXT)) {
      auto name = view_of(k);
      auto pos = decode_u64(name, view_of(v), "checkpoint " + std::string{name});
      if (!pos)
        return tl::unexpected(pos.error());
      out.push_back(checkpoint{std::string{name}, *pos});
    }
    return out;
  });
}

result<std::optional<std::string>> lmdb_store::kv_get(std::string_view space,
                                                      std::string_view key) const {
  if (!is_valid_space_name(space) || key.empty() || key.size() > max_short_field)
    return fail(errc::invalid_argument,
                "key-value spaces are 1-255 bytes without a 0 byte, keys 1-255 bytes",
                std::string{space} + "/" + std::string{key});
  if (!has_side_tables_)
    return std::optional<std::string>{};
  return with_read([&](MDB_txn* txn) -> result<std::optional<std::string>> {
    auto k = space_key(space, key);
    MDB_val kv = val_of(k), v;
    int rc = mdb_get(txn, kv_, &kv, &v);
    if (rc == MDB_NOTFOUND)
      return std::optional<std::string>{};
    if (rc != 0)
      return tl::unexpected(lmdb_error(rc, "read key-value"));
    auto body = unseal(k, view_of(v), "value " + std::string{space} + "/" + std::string{key});
    if (!body)
      return tl::unexpected(body.error());
    return std::optional<std::string>{std::string{*body}};
  });
}

result<std::vector<std::pair<std::string, std::string>>>
lmdb_store::kv_scan(std::string_view space, std::string_view prefix, std::string_view after,
                    std::size_t max) const {
  using entries = std::vector<std::pair<std::string, std::string>>;
  if (!is_valid_space_name(space))
    return fail(errc::invalid_argument, "key-value spaces are 1-255 bytes without a 0 byte",
                std::string{space});
  if (!has_side_tables_)
    return entries{};
  return with_read([&](MDB_txn* txn) -> result<entries> {
    entries out;
    cursor_guard cur;
    if (int rc = cur.open(txn, kv_); rc != 0)
      return tl::unexpected(lmdb_error(rc, "cursor"));
    auto full_prefix = space_key(space, prefix);
    auto start = after.empty() || after < prefix ? full_prefix : space_key(space, after);
    auto head = space.size() + 1;
    MDB_val k = val_of(start), v;
    int rc = mdb_cursor_get(cur.get(), &k, &v, MDB_SET_RANGE);
    for (; rc == 0 && out.size() < max; rc = mdb_cursor_get(cur.get(), &k, &v, MDB_NEXT)) {
      auto key = view_of(k);
      if (key.substr(0, full_prefix.size()) != full_prefix)
        break;
      if (!after.empty() && key.substr(head) == after)
        continue;
      auto body = unseal(key, view_of(v),
                         "value " + std::string{space} + "/" + std::string{key.substr(head)});
      if (!body)
        return tl::unexpected(body.error());
      out.emplace_back(std::string{key.substr(head)}, std::string{*body});
    }
    if (rc != 0 && rc != MDB_NOTFOUND)
      return tl::unexpected(lmdb_error(rc, "scan key-value"));
    return out;
  });
}

result<std::vector<dead_letter>> lmdb_store::list_dead_letters(std::string_view subscriber,
                                                               std::size_t max) const {
  if (!subscriber.empty() && !is_valid_space_name(subscriber))
    return fail(errc::invalid_argument, "subscriber names are 1-255 bytes without a 0 byte",
                std::string{subscriber});
  if (!has_side_tables_)
    return std::vector<dead_letter>{};
  return with_read([&](MDB_txn* txn) -> result<std::vector<dead_letter>> {
    std::vector<dead_letter> out;
    cursor_guard cur;
    if (int rc = cur.open(txn, dead_letters_); rc != 0)
      return tl::unexpected(lmdb_error(rc, "cursor"));
    auto prefix = subscriber.empty() ? std::string{} : space_key(subscriber, {});
    MDB_val k = val_of(prefix), v;
    int rc = prefix.empty() ? mdb_cursor_get(cur.get(), &k, &v, MDB_FIRST)
                            : mdb_cursor_get(cur.get(), &k, &v, MDB_SET_RANGE);
    for (; rc == 0 && out.size() < max; rc = mdb_cursor_get(cur.get(), &k, &v, MDB_NEXT)) {
      auto key = view_of(k);
      if (key.substr(0, prefix.size()) != prefix)
        break;
      auto dl = decode_dead_letter(key, view_of(v));
      if (!dl)
        return tl::unexpected(dl.error());
      out.push_back(std::move(*dl));
    }
    if (rc != 0 && rc != MDB_NOTFOUND)
      return tl::unexpected(lmdb_error(rc, "scan dead letters"));
    return out;
  });
}

result<std::uint64_t> lmdb_store::count_dead_letters(std::string_view subscriber) const {
  if (!is_valid_space_name(subscriber))
    return fail(errc::invalid_argument, "subscriber names are 1-255 bytes without a 0 byte",
                std::string{subscriber});
  if (!has_side_tables_)
    return std::uint64_t{0};
  return with_read([&](MDB_txn* txn) -> result<std::uint64_t> {
    cursor_guard cur;
    if (int rc = cur.open(txn, dead_letters_); rc != 0)
      return tl::unexpected(lmdb_error(rc, "cursor"));
    auto prefix = space_key(subscriber, {});
    MDB_val k = val_of(prefix), v;
    std::uint64_t n = 0;
    int rc = mdb_cursor_get(cur.get(), &k, &v, MDB_SET_RANGE);
    for (; rc == 0 && view_of(k).substr(0, prefix.size()) == prefix;
         rc = mdb_cursor_get(cur.get(), &k, &v, MDB_NEXT))
      ++n;
    if (rc != 0 && rc != MDB_NOTFOUND)
      return tl::unexpected(lmdb_error(rc, "count dead letters"));
    return n;
  });
}

result<void> lmdb_store::for_each_entry(
  MDB_txn* txn, MDB_dbi dbi,
  const std::function<result<void>(std::string_view, std::string_view)>& take) {
  cursor_guard cur;
  if (int rc = cur.open(txn, dbi); rc != 0)
    return tl::unexpected(lmdb_error(rc, "cursor"));
  MDB_val k, v;
  int rc = mdb_cursor_get(cur.get(), &k, &v, MDB_FIRST);
  for (; rc == 0; rc = mdb_cursor_get(cur.get(), &k, &v, MDB_NEXT))
    if (auto ok = take(view_of(k), view_of(v)); !ok)
      return ok;
  if (rc != MDB_NOTFOUND)
    return tl::unexpected(lmdb_error(rc, "scan"));
  return {};
}

result<event_store::side_tables> lmdb_store::read_side_tables() const {
  return with_read([&](MDB_txn* txn) -> result<side_tables> {
    side_tables out;
    auto cps = for_each_entry(txn, checkpoints_, [&](auto key, auto value) -> result<void> {
      auto pos = decode_u64(key, value, "checkpoint " + std::string{key});
      if (!pos)
        return tl::unexpected(pos.error());
      out.checkpoints.push_back(checkpoint{std::string{key}, *pos});
      return {};
    });
    if (!cps)
      return tl::unexpected(cps.error());
    if (!has_side_tables_)
      return out;
    auto kv = for_each_entry(txn, kv_, [&](auto key, auto value) -> result<void> {
      auto sep = key.find('\0');
      auto body = unseal(key, value, "value " + std::string{key.substr(0, sep)});
      if (!body)
        return tl::unexpected(body.error());
      out.kv.push_back(kv_op{kv_op::kind::put, std::string{key.substr(0, sep)},
                             std::string{key.substr(sep + 1)}, std::string{*body}});
      return {};
    });
    if (!kv)
      return tl::unexpected(kv.error());
    auto dls = for_each_entry(txn, dead_letters_, [&](auto key, auto value) -> result<void> {
      auto dl = decode_dead_letter(key, value);
      if (!dl)
        return tl::unexpected(dl.error());
      out.dead_letters.push_back(std::move(*dl));
      return {};
    });
    if (!dls)
      return tl::unexpected(dls.error());
    return out;
  });
}

} // namespace cairn::persistence::detail
