// The command log (what-if replay): each recorded command with its metadata
// and the place of its events, keyed by a sequence in commit order. Written
// with MDB_APPEND like the log, so recording adds a sequential value per
// command, not a random insert (docs/storage-format.md#command_log).

#include <algorithm>

#include "lmdb/store_impl.hpp"

namespace cairn::persistence::detail {

using namespace format;

namespace {

/// Entries one read_commands call scans at most (it then returns a short page).
constexpr std::size_t max_commands_scanned = 65536;

} // namespace

result<void> lmdb_store::load_command_log_end(MDB_txn* txn) {
  if (!has_command_log_)
    return {};
  cursor_guard cur;
  if (int rc = cur.open(txn, command_log_); rc != 0)
    return tl::unexpected(lmdb_error(rc, "cursor"));
  MDB_val k, v;
  int rc = mdb_cursor_get(cur.get(), &k, &v, MDB_LAST);
  if (rc == MDB_NOTFOUND)
    return {};
  if (rc != 0)
    return tl::unexpected(lmdb_error(rc, "read the command log's end"));
  if (k.mv_size != 8)
    return fail(errc::corrupted, "command log key has the wrong size", dir_);
  next_command_ = get_be64(static_cast<const unsigned char*>(k.mv_data)) + 1;
  return {};
}

lmdb_result<> lmdb_store::stage_command(MDB_txn* txn, const append_request& req,
                                        const append_result& r, staging& st, std::int64_t now) {
  command_view c;
  c.stream = req.stream;
  c.version_before = r.first_version - 1;
  c.first_position = r.first_position;
  c.event_count = static_cast<std::uint32_t>(req.events.size());
  c.timestamp_ns = now;
  c.correlation_id = req.meta.correlation_id;
  c.causation_id = req.meta.causation_id;
  c.command_id = req.meta.command_id;
  c.tenant = req.meta.tenant;
  c.user = req.meta.user;
  c.payload = *req.command;
  unsigned char kb[8];
  put_be64(kb, st.next_command);
  MDB_val k{8, kb};
  MDB_val v{command_value_size(c), nullptr};
  if (int rc = mdb_put(txn, command_log_, &k, &v, MDB_APPEND | MDB_RESERVE); rc != 0)
    return lmdb_fail(rc, "write command log entry");
  encode_command(static_cast<unsigned char*>(v.mv_data),
                 std::string_view{reinterpret_cast<const char*>(kb), 8}, c);
  ++st.next_command;
  return {};
}

result<command_page> lmdb_store::read_commands(std::uint64_t from, std::size_t max,
                                               std::string_view stream_prefix) const {
  command_page page;
  page.next_sequence = std::max<std::uint64_t>(from, 1);
  if (max == 0 || !has_command_log_)
    return page;
  return with_read([&](MDB_txn* txn) -> result<command_page> {
    page.commands.reserve(std::min<std::size_t>(max, 1024));
    cursor_guard cur;
    if (int rc = cur.open(txn, command_log_); rc != 0)
      return tl::unexpected(lmdb_error(rc, "cursor"));
    unsigned char kb[8];
    put_be64(kb, page.next_sequence);
    MDB_val k{8, kb}, v;
    std::size_t scanned = 0;
    int rc = mdb_cursor_get(cur.get(), &k, &v, MDB_SET_RANGE);
    for (; rc == 0 && page.commands.size() < max && scanned < max_commands_scanned;
         rc = mdb_cursor_get(cur.get(), &k, &v, MDB_NEXT), ++scanned) {
      auto key = view_of(k);
      auto c = decode_command(key, view_of(v));
      if (!c)
        return tl::unexpected(c.error());
      auto seq = get_be64(reinterpret_cast<const unsigned char*>(key.data()));
      page.next_sequence = seq + 1;
      if (c->stream.substr(0, stream_prefix.size()) == stream_prefix)
        to_command(*c, seq, page.commands.emplace_back());
    }
    if (rc != 0 && rc != MDB_NOTFOUND)
      return tl::unexpected(lmdb_error(rc, "scan the command log"));
    return std::move(page);
  });
}

} // namespace cairn::persistence::detail
