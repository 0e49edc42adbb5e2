// Reads of the log and of streams. A stream is read backward along the
// back-pointer chain in its records, from its head or the nearest sparse
// index entry.

#include <algorithm>
#include <cstring>

#include "cairn/model/stream_name.hpp"
#include "lmdb/store_impl.hpp"

namespace cairn::persistence::detail {

using namespace format;

namespace {

/// Records one read_all call scans at most, so a read transaction stays short.
constexpr std::size_t max_scan_per_read = 65536;

/// A view of the verified record `r` at position `p`, valid while its transaction is.
event_view event_view_of(const record_view& r, std::uint64_t p) {
  event_view v;
  v.stream = r.stream;
  v.version = r.version;
  v.position = p;
  v.id = r.id;
  v.timestamp_ns = r.timestamp_ns;
  v.type = r.type;
  v.schema_version = r.schema_version;
  v.correlation_id = r.correlation_id;
  v.causation_id = r.causation_id;
  v.command_id = r.command_id;
  v.tenant = r.tenant;
  v.user = r.user;
  v.subject = r.subject;
  v.payload = r.payload;
  return v;
}

} // namespace

result<std::pair<std::uint64_t, std::uint64_t>> lmdb_store::walk_start(MDB_txn* txn,
                                                                       std::string_view stream,
                                                                       const head_state& head,
                                                                       std::uint64_t top) const {
  auto anchor = (top + index_interval - 1) / index_interval * index_interval;
  if (anchor >= head.version)
    return std::pair{head.version, head.last_position};
  auto key = pair_key(head.stream_no, anchor);
  MDB_val k = val_of(key), v;
  if (int rc = mdb_get(txn, index_, &k, &v); rc != 0)
    return fail(errc::corrupted, "stream index entry missing for version " + std::to_string(anchor),
                std::string{stream});
  auto p = decode_u64(key, view_of(v), "stream index entry of " + std::string{stream});
  if (!p)
    return tl::unexpected(p.error());
  return std::pair{anchor, *p};
}

template <class F>
result<void> lmdb_store::walk(MDB_txn* txn, std::string_view stream, const head_state& head,
                              std::uint64_t top, std::uint64_t keep_top, std::uint64_t bottom,
                              F&& emit) const {
  auto start = walk_start(txn, stream, head, top);
  if (!start)
    return tl::unexpected(start.error());
  auto [version, pos] = *start;
  cursor_guard cur;
  if (int rc = cur.open(txn, log_); rc != 0)
    return tl::unexpected(lmdb_error(rc, "cursor"));
  unsigned char kb[8];
  std::uint64_t at = 0; // where the cursor stands
  for (; version >= bottom && version > 0; --version) {
    if (pos == 0)
      return fail(errc::corrupted, "back-pointer chain ends at version " + std::to_string(version),
                  std::string{stream});
    put_be64(kb, pos);
    MDB_val k{8, kb}, v;
    // A stream written alone is contiguous in the log: step the cursor back.
    // Otherwise MDB_SET, which on an initialised cursor searches the current
    // page first, so neighbouring positions cost no tree descent.
    int rc = at == pos + 1 ? mdb_cursor_get(cur.get(), &k, &v, MDB_PREV)
                           : mdb_cursor_get(cur.get(), &k, &v, MDB_SET);
    if (rc == 0
        && (k.mv_size != 8 || get_be64(static_cast<const unsigned char*>(k.mv_data)) != pos))
      rc = MDB_NOTFOUND;
    at = pos;
    if (rc != 0)
      return fail(errc::corrupted, "log record missing", "position " + std::to_string(pos));
    auto rec = decode_record(static_cast<const unsigned char*>(v.mv_data), v.mv_size, pos);
    if (!rec)
      return tl::unexpected(rec.error());
    if (rec->stream != stream || rec->version != version)
      return fail(errc::corrupted,
                  "back-pointer leads to " + std::string{rec->stream} + " v"
                    + std::to_string(rec->version) + " instead of " + std::string{stream} + " v"
                    + std::to_string(version),
                  "position " + std::to_string(pos));
    if (version <= keep_top)
      if (!emit(*rec, pos))
        break;
    pos = rec->prev_position;
  }
  return {};
}

result<std::vector<recorded_event>>
lmdb_store::read_stream(std::string_view stream, std::uint64_t from, std::size_t max) const {
  std::vector<recorded_event> out;
  auto visited = visit_stream(stream, from, max, [&](const event_view& v) {
    auto& e = out.emplace_back();
    e.stream.assign(v.stream);
    e.version = v.version;
    e.position = v.position;
    std::memcpy(e.id.bytes.data(), v.id, 16);
    e.timestamp_ns = v.timestamp_ns;
    e.type.assign(v.type);
    e.schema_version = v.schema_version;
    e.meta = metadata{std::string{v.correlation_id}, std::string{v.causation_id},
                      std::string{v.command_id},     std::string{v.tenant},
                      std::string{v.user},           std::string{v.subject}};
    e.payload.assign(v.payload);
    return true;
  });
  if (!visited)
    return tl::unexpected(visited.error());
  return out;
}

result<std::uint64_t>
lmdb_store::visit_stream(std::string_view stream, std::uint64_t from, std::size_t max,
                         const std::function<bool(const event_view&)>& visit) const {
  if (auto ok = validate_stream_name(stream); !ok)
    return tl::unexpected(ok.error());
  return with_read([&](MDB_txn* txn) -> result<std::uint64_t> {
    auto head = read_head(txn, stream);
    if (!head)
      return tl::unexpected(head.error());
    from = std::max<std::uint64_t>(from, 1);
    if (!*head)
      return std::uint64_t{0};
    if (auto cut = stream_cut(txn, (*head)->stream_no); !cut)
      return tl::unexpected(cut.error());
    else if (from < cut->first)
      return tl::unexpected(truncated_stream(stream, from, cut->first));
    if (from > (*head)->version || max == 0)
      return std::uint64_t{0};
    auto to = (*head)->version - from + 1 <= max ? (*head)->version : from + max - 1;
    // The chain runs backward; collect views (valid for this txn), then visit forward.
    std::vector<event_view> views(static_cast<std::size_t>(to - from + 1));
    auto slot = views.size();
    auto ok = walk(txn, stream, **head, to, to, from, [&](const record_view& r, std::uint64_t p) {
      views[--slot] = event_view_of(r, p);
      return true;
    });
    if (!ok)
      return tl::unexpected(ok.error());
    std::uint64_t n = 0;
    for (const auto& v : views) {
      ++n;
      if (!visit(v))
        break;
    }
    return n;
  });
}

result<std::vector<recorded_event>> lmdb_store::read_stream_backward(std::string_view stream,
                                                                     std::uint64_t from,
                                                                     std::size_t max) const {
  if (auto ok = validate_stream_name(stream); !ok)
    return tl::unexpected(ok.error());
  return with_read([&](MDB_txn* txn) -> result<std::vector<recorded_event>> {
    auto head = read_head(txn, stream);
    if (!head)
      return tl::unexpected(head.error());
    std::vector<recorded_event> out;
    if (!*head || max == 0 || from == 0)
      return out;
    auto top = std::min(from, (*head)->version);
    auto bottom = top >= max ? top - max + 1 : 1;
    // Fewer events than asked for must mean the stream's start, never a cut.
    if (auto cut = stream_cut(txn, (*head)->stream_no); !cut)
      return tl::unexpected(cut.error());
    else if (bottom < cut->first)
      return tl::unexpected(truncated_stream(stream, bottom, cut->first));
    out.reserve(static_cast<std::size_t>(top - bottom + 1));
    auto ok = walk(txn, stream, **head, top, top, bottom,
                   [&](const record_view& r, std::uint64_t p) {
                     to_event(r, p, out.emplace_back());
                     return true;
                   });
    if (!ok)
      return tl::unexpected(ok.error());
    return out;
  });
}

result<std::vector<recorded_event>> lmdb_store::read_stream_until_time(std::string_view stream,
                                                                       std::int64_t ts) const {
  std::vector<recorded_event> out;
  constexpr std::size_t page = 4096;
  for (std::uint64_t from = 1;; from += page) {
    auto chunk = read_stream(stream, from, page);
    if (!chunk)
      return chunk;
    for (auto& ev : *chunk) {
      if (ev.timestamp_ns > ts)
        return out;
      out.push_back(std::move(ev));
    }
    if (chunk->size() < page)
      return out;
  }
}

result<std::uint64_t> lmdb_store::stream_version(std::string_view stream) const {
  if (auto ok = validate_stream_name(stream); !ok)
    return tl::unexpected(ok.error());
  return with_read([&](MDB_txn* txn) -> result<std::uint64_t> {
    auto head = read_head(txn, stream);
    if (!head)
      return tl::unexpected(head.error());
    return *head ? (*head)->version : 0;
  });
}

result<log_page> lmdb_store::read_all(std::uint64_t from, std::size_t max,
                                      const read_filter& filter) const {
  return with_read([&](MDB_txn* txn) -> result<log_page> {
    log_page page;
    page.next_position = std::max<std::uint64_t>(from, 1);
    if (auto cut = log_cut(txn); !cut)
      return tl::unexpected(cut.error());
    else if (page.next_position < *cut && !filter.kept_below_cut)
      return tl::unexpected(truncated_log(page.next_position, *cut));
    if (max == 0)
      return page;
    page.events.reserve(std::min<std::size_t>(max, 1024));
    cursor_guard cur;
    if (int rc = cur.open(txn, log_); rc != 0)
      return tl::unexpected(lmdb_error(rc, "cursor"));
    unsigned char kb[8];
    put_be64(kb, page.next_position);
    MDB_val k{8, kb}, v;
    std::size_t scanned = 0;
    int rc = mdb_cursor_get(cur.get(), &k, &v, MDB_SET_RANGE);
    for (; rc == 0 && page.events.size() < max && scanned < max_scan_per_read;
         rc = mdb_cursor_get(cur.get(), &k, &v, MDB_NEXT), ++scanned) {
      auto pos = get_be64(static_cast<const unsigned char*>(k.mv_data));
      auto rec = decode_record(static_cast<const unsigned char*>(v.mv_data), v.mv_size, pos);
      if (!rec)
        return tl::unexpected(rec.error());
      page.next_position = pos + 1;
      if (!filter.include_system && is_system_stream(rec->stream))
        continue; // the store's own records (epochs): no reader's business
      auto matches = [](const std::vector<std::string>& allowed, std::string_view x) {
        return allowed.empty() || std::find(allowed.begin(), allowed.end(), x) != allowed.end();
      };
      if (matches(filter.categories, category_of(rec->stream)) && matches(filter.types, rec->type)
          && (filter.tenant.empty() || rec->tenant == filter.tenant))
        to_event(*rec, pos, page.events.emplace_back());
    }
    if (rc != 0 && rc != MDB_NOTFOUND)
      return tl::unexpected(lmdb_error(rc, "scan the log"));
    return page;
  });
}

result<std::optional<append_result>> lmdb_store::find_command(std::string_view stream,
                                                              std::string_view command_id) const {
  if (auto ok = validate_stream_name(stream); !ok)
    return tl::unexpected(ok.error());
  if (command_id.empty() || command_id.size() > max_short_field)
    return fail(errc::invalid_argument, "command ids are 1-255 bytes", std::string{stream});
  return with_read([&](MDB_txn* txn) -> result<std::optional<append_result>> {
    auto head = read_head(txn, stream);
    if (!head)
      return tl::unexpected(head.error());
    if (!*head)
      return std::optional<append_result>{};
    auto key = command_key((*head)->stream_no, command_id);
    MDB_val k = val_of(key), v;
    int rc = mdb_get(txn, commands_, &k, &v);
    if (rc == MDB_NOTFOUND)
      return std::optional<append_result>{};
    if (rc != 0)
      return tl::unexpected(lmdb_error(rc, "read command record"));
    auto r = decode_outcome(key, view_of(v), std::string{stream});
    if (!r)
      return tl::unexpected(r.error());
    return std::optional<append_result>{*r};
  });
}

result<std::uint64_t> lmdb_store::last_position() const {
  return with_read([&](MDB_txn* txn) -> result<std::uint64_t> {
    cursor_guard cur;
    if (int rc = cur.open(txn, log_); rc != 0)
      return tl::unexpected(lmdb_error(rc, "cursor"));
    MDB_val k, v;
    int rc = mdb_cursor_get(cur.get(), &k, &v, MDB_LAST);
    if (rc == MDB_NOTFOUND)
      return std::uint64_t{0};
    if (rc != 0)
      return tl::unexpected(lmdb_error(rc, "read last position"));
    return get_be64(static_cast<const unsigned char*>(k.mv_data));
  });
}

result<std::vector<stream_info>> lmdb_store::list_streams(std::string_view prefix,
                                                          std::size_t max) const {
  return with_read([&](MDB_txn* txn) -> result<std::vector<stream_info>> {
    std::vector<stream_info> out;
    cursor_guard cur;
    if (int rc = cur.open(txn, names_); rc != 0)
      return tl::unexpected(lmdb_error(rc, "cursor"));
    MDB_val k = val_of(prefix), v;
    int rc = prefix.empty() ? mdb_cursor_get(cur.get(), &k, &v, MDB_FIRST)
                            : mdb_cursor_get(cur.get(), &k, &v, MDB_SET_RANGE);
    for (; rc == 0 && out.size() < max; rc = mdb_cursor_get(cur.get(), &k, &v, MDB_NEXT)) {
      auto name = view_of(k);
      if (name.substr(0, prefix.size()) != prefix)
        break;
      if (is_system_stream(name))
        continue; // the store's own streams ("$epoch") are no user's
      auto head = read_head(txn, name);
      if (!head)
        return tl::unexpected(head.error());
      std::uint64_t first = 1;
      if (*head) {
        auto cut = stream_cut(txn, (*head)->stream_no);
        if (!cut)
          return tl::unexpected(cut.error());
        first = cut->first;
      }
      out.push_back(stream_info{std::string{name}, *head ? (*head)->version : 0, first});
    }
    if (rc != 0 && rc != MDB_NOTFOUND)
      return tl::unexpected(lmdb_error(rc, "list streams"));
    return out;
  });
}

result<std::vector<std::pair<std::string, std::uint32_t>>> lmdb_store::type_catalogue() const {
  return with_read([&](MDB_txn* txn) -> result<std::vector<std::pair<std::string, std::uint32_t>>> {
    std::vector<std::pair<std::string, std::uint32_t>> out;
    cursor_guard cur;
    if (int rc = cur.open(txn, types_); rc != 0)
      return tl::unexpected(lmdb_error(rc, "cursor"));
    MDB_val k, v;
    for (int rc = mdb_cursor_get(cur.get(), &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur.get(), &k, &v, MDB_NEXT)) {
      auto key = view_of(k);
      auto type = decode_type_key(key);
      if (!type || !unseal(key, view_of(v), "type catalogue entry"))
        return fail(errc::corrupted, "bad type catalogue entry", std::string{key});
      if (is_system_type(type->first))
        continue; // the store's own record types, never a registry's
      out.emplace_back(std::string{type->first}, type->second);
    }
    return out;
  });
}

result<store_stats> lmdb_store::stats() const {
  return with_read([&](MDB_txn* txn) -> result<store_stats> {
    store_stats s;
    MDB_stat st;
    auto entries = [&](MDB_dbi dbi) -> std::uint64_t {
      return mdb_stat(txn, dbi, &st) == 0 ? st.ms_entries : 0;
    };
    s.events = entries(log_);
    s.streams = entries(names_);
    { // less the store's own streams, whose '$' sorts them first
      cursor_guard cur;
      MDB_val k, v;
      int rc = cur.open(txn, names_) == 0 ? mdb_cursor_get(cur.get(), &k, &v, MDB_FIRST) : 1;
      for (; rc == 0 && is_system_stream(view_of(k)) && s.streams > 0;
           rc = mdb_cursor_get(cur.get(), &k, &v, MDB_NEXT))
        --s.streams;
    }
    s.snapshots = entries(snapshots_);
    s.checkpoints = entries(checkpoints_);
    if (has_side_tables_) {
      s.kv_entries = entries(kv_);
      s.dead_letters = entries(dead_letters_);
    }
    MDB_envinfo info;
    mdb_env_info(env_, &info);
    MDB_stat env_stat;
    mdb_env_stat(env_, &env_stat);
    s.map_size = info.me_mapsize;
    s.map_used = (info.me_last_pgno + 1) * env_stat.ms_psize;
    s.format_version = format_version_;
    return s;
  });
}

} // namespace cairn::persistence::detail
