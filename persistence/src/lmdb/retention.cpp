// Retention (docs/audit.md#retention): planning which prefixes of streams go,
// removing them in bounded write transactions, and the cuts readers check.
//
// The `retention` table holds the cuts: under BE64 0 the position from which
// the log is complete (first_position), under BE64 stream number the first
// version the stream keeps and its position. A stream loses only a prefix of
// its versions, and every transaction that removes records moves the cuts
// and the chain's anchor with them, so each commit is consistent alone.

#include <algorithm>
#include <limits>
#include <map>
#include <memory>
#include <set>

#include "cairn/model/stream_name.hpp"
#include "lmdb/store_impl.hpp"

namespace cairn::persistence::detail {

using namespace format;

namespace {

/// Records (and stale chain entries) one retention transaction removes at most.
constexpr std::size_t per_txn = 10000;
/// Events plan_retention and apply_retention read per read transaction.
constexpr std::size_t read_page = 65536;

} // namespace

// -- the cuts ------------------------------------------------------------------

result<std::uint64_t> lmdb_store::log_cut(MDB_txn* txn) const {
  if (!has_retention_)
    return std::uint64_t{1};
  auto key = be64_key(0);
  MDB_val k = val_of(key), v;
  int rc = mdb_get(txn, retention_, &k, &v);
  if (rc == MDB_NOTFOUND)
    return std::uint64_t{1};
  if (rc != 0)
    return tl::unexpected(lmdb_error(rc, "read the retention cut"));
  return decode_u64(key, view_of(v), "the log's retention cut");
}

result<std::pair<std::uint64_t, std::uint64_t>> lmdb_store::stream_cut(MDB_txn* txn,
                                                                       std::uint64_t no) const {
  if (!has_retention_)
    return std::pair{std::uint64_t{1}, std::uint64_t{0}};
  auto key = be64_key(no);
  MDB_val k = val_of(key), v;
  int rc = mdb_get(txn, retention_, &k, &v);
  if (rc == MDB_NOTFOUND)
    return std::pair{std::uint64_t{1}, std::uint64_t{0}};
  if (rc != 0)
    return tl::unexpected(lmdb_error(rc, "read a stream's retention cut"));
  return decode_stream_cut(key, view_of(v));
}

error lmdb_store::truncated_log(std::uint64_t from, std::uint64_t first) const {
  return error{errc::truncated,
               "the log before position " + std::to_string(first)
                 + " was removed by retention; it is complete from position "
                 + std::to_string(first),
               "position " + std::to_string(from)};
}

error lmdb_store::truncated_stream(std::string_view stream, std::uint64_t from,
                                   std::uint64_t first) const {
  return error{errc::truncated,
               "versions before " + std::to_string(first) + " of " + std::string{stream}
                 + " were removed by retention; it reads from version " + std::to_string(first)
                 + " (asked from version " + std::to_string(from) + ")",
               std::string{stream}};
}

result<std::uint64_t> lmdb_store::first_position() const {
  return with_read([&](MDB_txn* txn) { return log_cut(txn); });
}

result<log_extent> lmdb_store::extent() const {
  return with_read([&](MDB_txn* txn) -> result<log_extent> {
    log_extent e;
    auto cut = log_cut(txn);
    if (!cut)
      return tl::unexpected(cut.error());
    e.first_position = *cut;
    MDB_stat st;
    if (int rc = mdb_stat(txn, log_, &st); rc != 0)
      return tl::unexpected(lmdb_error(rc, "count the log's records"));
    e.records = st.ms_entries;
    cursor_guard cur;
    if (int rc = cur.open(txn, log_); rc != 0)
      return tl::unexpected(lmdb_error(rc, "cursor"));
    MDB_val k, v;
    int rc = mdb_cursor_get(cur.get(), &k, &v, MDB_LAST);
    if (rc != 0 && rc != MDB_NOTFOUND)
      return tl::unexpected(lmdb_error(rc, "read last position"));
    if (rc == 0)
      e.last_position = get_be64(static_cast<const unsigned char*>(k.mv_data));
    return e;
  });
}

// -- plan ------------------------------------------------------------------------

namespace {

/// What one stream's walk found, for plan_retention.
struct stream_walk {
  std::uint64_t rule_to = 0; ///< The last version the rule alone lets go (0: none).
  std::uint64_t cp_to = 0;   ///< The last version below the least checkpoint.
  std::uint64_t to_position = 0;
  std::uint64_t from_position = 0;
  std::uint64_t next_position = 0;
};

} // namespace

result<retention_plan> lmdb_store::plan_retention(const retention_policy& policy,
                                                  std::int64_t now_ns) const {
  retention_plan plan;
  plan.policy = policy;
  plan.now_ns = now_ns;
  auto first = first_position();
  if (!first)
    return tl::unexpected(first.error());
  plan.first_position = plan.new_first_position = *first;
  auto cps = list_checkpoints();
  if (!cps)
    return tl::unexpected(cps.error());
  // A subscriber resumes after the further of its own checkpoint and the
  // owner's copy a standby keeps ("$owner:<name>", replication.hpp): only
  // that one holds events back, so a copy frozen by a promotion does not
  // hold them forever once the subscriber's own checkpoint passed it.
  std::map<std::string, checkpoint, std::less<>> resume;
  for (const auto& cp : *cps) {
    auto name = is_replicated_checkpoint_name(cp.name)
                  ? cp.name.substr(replicated_checkpoint_prefix.size())
                  : cp.name;
    auto it = resume.find(name);
    if (it == resume.end())
      resume.emplace(std::move(name), cp);
    else if (cp.position > it->second.position)
      it->second = cp;
  }
  std::uint64_t limit_pos = no_limit; // every event that goes lies below it
  for (const auto& [name, cp] : resume)
    if (cp.position < limit_pos) {
      limit_pos = cp.position;
      plan.limiting_checkpoint = cp.name;
      plan.limiting_position = cp.position;
    }
  for (const auto& rule : policy.rules) {
    auto& cat = plan.categories.emplace_back();
    cat.category = rule.category;
    auto names = list_streams(rule.category + "-", no_limit);
    if (!names)
      return tl::unexpected(names.error());
    for (const auto& info : *names) {
      if (category_of(info.name) != rule.category)
        continue;
      // The head, the stream's cut, and the newest record naming a tenant.
      struct head_facts {
        std::uint64_t version = 0, first = 1, first_pos = 0, tenant_version = 0;
      };
      auto facts = with_read([&](MDB_txn* txn) -> result<head_facts> {
        head_facts f;
        auto head = read_head(txn, info.name);
        if (!head)
          return tl::unexpected(head.error());
        if (!*head)
          return f;
        f.version = (*head)->version;
        auto cut = stream_cut(txn, (*head)->stream_no);
        if (!cut)
          return tl::unexpected(cut.error());
        std::tie(f.first, f.first_pos) = *cut;
        // Walk back from the head to the newest record naming a tenant; a
        // stream without one walks to its cut (the writer learns the tenant
        // the same way, write.cpp stream_tenant).
        auto pos = (*head)->last_position;
        for (auto v = f.version; v >= f.first && pos != 0; --v) {
          unsigned char kb[8];
          put_be64(kb, pos);
          MDB_val k{8, kb}, val;
          if (int rc = mdb_get(txn, log_, &k, &val); rc != 0)
            return fail(errc::corrupted, "log record missing", "position " + std::to_string(pos));
          auto rec = decode_record(static_cast<const unsigned char*>(val.mv_data), val.mv_size,
                                   pos);
          if (!rec)
            return tl::unexpected(rec.error());
          if (!rec->tenant.empty()) {
            f.tenant_version = v;
            break;
          }
          pos = rec->prev_position;
        }
        return f;
      });
      if (!facts)
        return tl::unexpected(facts.error());
      auto& f = *facts;
      if (f.version <= f.first)
        continue; // nothing but the newest record is left
      std::uint64_t rule_cap = f.version;
      if (rule.keep_newest)
        rule_cap = f.version > *rule.keep_newest ? f.version - *rule.keep_newest : 0;
      if (rule_cap < f.first)
        continue; // the rule keeps everything the stream still has
      // Walk forward from the cut up to rule_cap (and one more, for the next
      // position), in pages.
      stream_walk w;
      std::int64_t cutoff = std::numeric_limits<std::int64_t>::max(); // events before it go
      if (rule.max_age && __builtin_sub_overflow(now_ns, rule.max_age->count(), &cutoff))
        cutoff = std::numeric_limits<std::int64_t>::min();
      bool rule_done = false;
      std::uint64_t want_to = std::min(rule_cap, f.version);
      for (std::uint64_t from = f.first; from <= want_to && !rule_done;) {
        std::size_t n =
          static_cast<std::size_t>(std::min<std::uint64_t>(read_page, want_to - from + 1));
        std::uint64_t seen = 0;
        auto visited = visit_stream(info.name, from, n, [&](const event_view& e) {
          ++seen;
          if (e.version == f.first)
            w.from_position = e.position;
          if (!rule_done && e.version <= rule_cap && e.timestamp_ns < cutoff) {
            w.rule_to = e.version;
            if (e.position < limit_pos)
              w.cp_to = e.version;
          } else {
            rule_done = true;
          }
          return true;
        });
        if (!visited)
          return tl::unexpected(visited.error());
        if (seen == 0)
          break;
        from += seen;
      }
      if (w.rule_to < f.first)
        continue;
      std::uint64_t snap_to = 0;
      auto snap = load_snapshot(info.name, no_limit);
      if (snap && *snap)
        snap_to = (*snap)->version;
      else if (!snap && snap.error().code != errc::corrupted)
        return tl::unexpected(snap.error());
      // The limits besides the rule, in the order a tie is reported.
      std::pair<std::uint64_t, retention_hold> limits[] = {
        {snap_to, retention_hold::snapshot},
        {w.cp_to, retention_hold::checkpoint},
        {f.tenant_version == 0 ? no_limit : f.tenant_version - 1, retention_hold::tenant},
        {f.version - 1, retention_hold::newest},
      };
      std::uint64_t to = w.rule_to;
      retention_hold hold = retention_hold::none;
      for (auto [cap, why] : limits)
        if (cap < to) {
          to = cap;
          hold = why;
        }
      std::uint64_t held = w.rule_to - std::max(to, f.first - 1);
      if (held > 0) {
        plan.held.push_back({info.name, held, hold});
        cat.held += held;
      }
      if (to < f.first)
        continue;
      // Positions of `to` and `to + 1` (the first kept afterwards).
      retention_stream s;
      s.stream = info.name;
      s.from_version = f.first;
      s.to_version = to;
      s.first_position = w.from_position;
      s.held = held;
      s.hold = hold;
      auto ends = visit_stream(info.name, to, 2, [&](const event_view& e) {
        (e.version == to ? s.last_position : s.next_position) = e.position;
        return true;
      });
      if (!ends)
        return tl::unexpected(ends.error());
      ++cat.streams;
      cat.events += s.events();
      if (cat.first_position == 0 || s.first_position < cat.first_position)
        cat.first_position = s.first_position;
      cat.last_position = std::max(cat.last_position, s.last_position);
      plan.events += s.events();
      plan.new_first_position = std::max(plan.new_first_position, s.last_position + 1);
      plan.streams.push_back(std::move(s));
    }
  }
  auto by_name = [](const auto& a, const auto& b) { return a.stream < b.stream; };
  std::sort(plan.streams.begin(), plan.streams.end(), by_name);
  std::sort(plan.held.begin(), plan.held.end(), by_name);
  return plan;
}

// -- apply -------------------------------------------------------------------------

result<void> lmdb_store::retention_write(const std::function<lmdb_result<bool>(MDB_txn*)>& stage,
                                         bool& committed) {
  committed = false;
  if (opts_.read_only)
    return fail(errc::invalid_argument, "the store is open read-only", dir_);
  if (broken_)
    return tl::unexpected(*broken_);
  for (;;) {
    lmdb_result<bool> done;
    try {
      std::optional<preallocator::guard> guard; // as in try_write: pages may spill
      if (prealloc_)
        guard.emplace(prealloc_.get());
      MDB_txn* raw = nullptr;
      if (int rc = mdb_txn_begin(env_, nullptr, 0, &raw); rc != 0) {
        done = lmdb_fail(rc, "begin write");
      } else {
        txn_guard txn{raw};
        done = stage(raw);
        if (done && *done) {
          if (auto ok = commit(txn); !ok)
            done = tl::unexpected(ok.error());
          else if (guard)
            guard->committed(data_end());
        }
      }
    } catch (const std::exception& e) { // bad_alloc; the txn was aborted
      return fail(errc::internal, std::string{"retention failed: "} + e.what(), dir_);
    }
    if (done) {
      if (!*done)
        return {}; // nothing to write: the txn was aborted
      committed = true;
      return after_commit(false);
    }
    if (auto again = before_retry(done.error()); !again)
      return tl::unexpected(again.error());
  }
}

lmdb_result<> lmdb_store::move_log_cut(MDB_txn* txn, std::uint64_t cut, std::uint64_t new_cut) {
  // The anchor: h at new_cut - 1, from the nearest chain entry at or below
  // it. Every record between that entry and new_cut - 1 is still here: all
  // records removed so far lie below `cut`, where the previous anchor is.
  auto base = chain_base(txn, new_cut - 1);
  if (!base)
    return lmdb_fail(MDB_CORRUPTED, base.error());
  auto [at, h] = *base;
  if (at + 1 < cut)
    return lmdb_fail(MDB_CORRUPTED, error{errc::corrupted,
                                          "the digest chain has no anchor at the retention cut "
                                            + std::to_string(cut - 1) + "; run cairn verify",
                                          dir_});
  for (auto p = at + 1; p < new_cut; ++p) {
    unsigned char kb[8];
    put_be64(kb, p);
    MDB_val k{8, kb}, v;
    if (int rc = mdb_get(txn, log_, &k, &v); rc != 0)
      return lmdb_fail(rc == MDB_NOTFOUND ? MDB_CORRUPTED : rc,
                       error{errc::corrupted, "log record missing below the retention cut",
                             "position " + std::to_string(p)});
    auto* rec = static_cast<const unsigned char*>(v.mv_data);
    if (auto ok = decode_record(rec, v.mv_size, p); !ok)
      return lmdb_fail(MDB_CORRUPTED, ok.error());
    h = chain_next(h, rec, v.mv_size);
  }
  auto key = be64_key(new_cut - 1);
  std::string entry(seal_size + chain_entry_header_size, '\0');
  encode_chain_entry(reinterpret_cast<unsigned char*>(entry.data()), key, h, {});
  if (auto ok = put_value(txn, chain_, key, entry, "write the chain's anchor"); !ok)
    return ok;
  auto cut_key = be64_key(0);
  if (auto ok = put_value(txn, retention_, cut_key, seal(cut_key, u64_body(new_cut)),
                          "write the retention cut");
      !ok)
    return ok;
  return {};
}

lmdb_result<std::size_t> lmdb_store::drop_stale_chain(MDB_txn* txn, std::uint64_t cut) {
  // Chain entries below the anchor at cut - 1 describe records that are gone
  // (or kept below the cut, outside what the chain proves from the anchor).
  if (cut <= 1)
    return std::size_t{0};
  std::optional<cursor_guard> cur{std::in_place};
  if (int rc = cur->open(txn, chain_); rc != 0)
    return lmdb_fail(rc, "cursor");
  MDB_val k, v;
  std::size_t n = 0;
  int rc = 0;
  for (; n < per_txn; ++n) {
    // From the first entry each time: a cursor right after a delete is not
    // safe to ask for its current entry.
    rc = mdb_cursor_get(cur->get(), &k, &v, MDB_FIRST);
    if (rc != 0 || k.mv_size != 8
        || get_be64(static_cast<const unsigned char*>(k.mv_data)) >= cut - 1)
      break;
    if (int drc = mdb_cursor_del(cur->get(), 0); drc != 0)
      return lmdb_fail(drc, "drop a digest chain entry");
  }
  if (rc != 0 && rc != MDB_NOTFOUND)
    return lmdb_fail(rc, "walk the digest chain");
  return n;
}

namespace {

/// Part of one stream's removal that goes into one transaction: versions
/// from_version + [begin, end) of the plan's stream, at positions[begin, end).
struct retention_piece {
  const retention_stream* stream = nullptr;
  std::shared_ptr<const std::vector<std::uint64_t>> positions; ///< from_version .. to_version + 1
  std::size_t begin = 0, end = 0;
};

} // namespace

result<retention_result> lmdb_store::apply_retention(const retention_plan& plan) {
  retention_result out;
  std::set<std::string> skipped, cut;
  // Pieces of several streams share a transaction of at most per_txn
  // records, so many short streams cost few commits.
  std::vector<retention_piece> batch;
  std::size_t batch_records = 0;
  auto flush = [&]() -> result<void> {
    if (batch.empty())
      return {};
    std::vector<bool> valid;
    std::uint64_t removed = 0;
    bool committed = false;
    auto ok = retention_write(
      [&](MDB_txn* txn) -> lmdb_result<bool> {
        valid.assign(batch.size(), false);
        removed = 0;
        std::uint64_t least_cp = no_limit;
        {
          cursor_guard cur;
          if (int rc = cur.open(txn, checkpoints_); rc != 0)
            return lmdb_fail(rc, "cursor");
          MDB_val k, v;
          for (int rc = mdb_cursor_get(cur.get(), &k, &v, MDB_FIRST); rc == 0;
               rc = mdb_cursor_get(cur.get(), &k, &v, MDB_NEXT)) {
            auto p = decode_u64(view_of(k), view_of(v), "checkpoint");
            if (!p)
              return lmdb_fail(MDB_CORRUPTED, p.error());
            least_cp = std::min(least_cp, *p);
          }
        }
        // Check again, in this transaction, what allowed the plan.
        std::vector<std::uint64_t> numbers(batch.size(), 0);
        std::uint64_t top = 0; // the greatest position that goes
        for (std::size_t b = 0; b < batch.size(); ++b) {
          const auto& piece = batch[b];
          const auto& s = *piece.stream;
          auto no = stream_number(txn, s.stream);
          if (!no)
            return lmdb_fail(MDB_CORRUPTED, no.error());
          if (!*no)
            continue;
          auto head = read_head(txn, s.stream, true);
          if (!head)
            return lmdb_fail(MDB_CORRUPTED, head.error());
          auto stream_from = stream_cut(txn, **no);
          if (!stream_from)
            return lmdb_fail(MDB_CORRUPTED, stream_from.error());
          std::uint64_t snap_to = 0;
          {
            cursor_guard cur;
            if (int rc = cur.open(txn, snapshots_); rc != 0)
              return lmdb_fail(rc, "cursor");
            auto key = pair_key(**no, no_limit);
            MDB_val k = val_of(key), v;
            int rc = mdb_cursor_get(cur.get(), &k, &v, MDB_SET_RANGE);
            rc = rc == 0 ? mdb_cursor_get(cur.get(), &k, &v, MDB_PREV)
                         : mdb_cursor_get(cur.get(), &k, &v, MDB_LAST);
            if (rc == 0 && k.mv_size == 16
                && get_be64(static_cast<const unsigned char*>(k.mv_data)) == **no)
              snap_to = get_be64(static_cast<const unsigned char*>(k.mv_data) + 8);
            else if (rc != 0 && rc != MDB_NOTFOUND)
              return lmdb_fail(rc, "read snapshots");
          }
          if (!*head || (*head)->version <= s.to_version
              || stream_from->first != s.from_version + piece.begin || snap_to < s.to_version
              || least_cp <= s.last_position)
            continue;
          valid[b] = true;
          numbers[b] = **no;
          top = std::max(top, (*piece.positions)[piece.end - 1]);
        }
        if (top == 0)
          return false; // nothing left to do: the txn aborts
        auto log_from = log_cut(txn);
        if (!log_from)
          return lmdb_fail(MDB_CORRUPTED, log_from.error());
        auto new_cut = std::max(*log_from, top + 1);
        // The anchor first: it is computed from records this txn removes.
        if (new_cut > *log_from)
          if (auto moved = move_log_cut(txn, *log_from, new_cut); !moved)
            return tl::unexpected(moved.error());
        for (std::size_t b = 0; b < batch.size(); ++b) {
          if (!valid[b])
            continue;
          const auto& piece = batch[b];
          const auto& positions = *piece.positions;
          for (std::size_t i = piece.begin; i < piece.end; ++i) {
            auto key = be64_key(positions[i]);
            MDB_val k = val_of(key);
            if (int rc = mdb_del(txn, log_, &k, nullptr); rc != 0)
              return lmdb_fail(rc, "remove a log record");
            auto version = piece.stream->from_version + i;
            if (version % index_interval == 0)
              if (auto e = erase_value(txn, index_, pair_key(numbers[b], version),
                                       "remove an index entry");
                  !e)
                return tl::unexpected(e.error());
            ++removed;
          }
          auto key = be64_key(numbers[b]);
          auto body = encode_stream_cut(piece.stream->from_version + piece.end,
                                        positions[piece.end]);
          if (auto put = put_value(txn, retention_, key, seal(key, body),
                                   "write a stream's retention cut");
              !put)
            return tl::unexpected(put.error());
        }
        if (auto dropped = drop_stale_chain(txn, new_cut); !dropped)
          return tl::unexpected(dropped.error());
        return true;
      },
      committed);
    if (!ok)
      return ok;
    for (std::size_t b = 0; b < batch.size(); ++b)
      (valid[b] && committed ? cut : skipped).insert(batch[b].stream->stream);
    if (committed) {
      ++out.transactions;
      out.events += removed;
    }
    batch.clear();
    batch_records = 0;
    return {};
  };
  for (const auto& s : plan.streams) {
    if (s.to_version < s.from_version)
      return fail(errc::invalid_argument, "a retention plan removes nothing from " + s.stream,
                  s.stream);
    // The positions of versions from_version .. to_version + 1, read once:
    // records below a cut never change, and only this writer removes any.
    auto positions = std::make_shared<std::vector<std::uint64_t>>();
    positions->reserve(static_cast<std::size_t>(s.events() + 1));
    bool changed = false;
    for (auto from = s.from_version; from <= s.to_version + 1;) {
      auto n =
        static_cast<std::size_t>(std::min<std::uint64_t>(read_page, s.to_version + 2 - from));
      std::uint64_t seen = 0;
      auto visited = visit_stream(s.stream, from, n, [&](const event_view& e) {
        ++seen;
        positions->push_back(e.position);
        return true;
      });
      if (!visited) {
        if (visited.error().code != errc::truncated)
          return tl::unexpected(visited.error());
        changed = true; // cut since the plan
        break;
      }
      if (seen == 0)
        break;
      from += seen;
    }
    if (changed || positions->size() != s.events() + 1 || positions->front() != s.first_position
        || (*positions)[positions->size() - 2] != s.last_position
        || positions->back() != s.next_position) {
      skipped.insert(s.stream);
      continue;
    }
    for (std::size_t done = 0; done < s.events();) {
      auto take = std::min<std::size_t>(per_txn - batch_records,
                                        static_cast<std::size_t>(s.events()) - done);
      batch.push_back({&s, positions, done, done + take});
      batch_records += take;
      done += take;
      if (batch_records == per_txn)
        if (auto ok = flush(); !ok)
          return tl::unexpected(ok.error());
    }
  }
  if (auto ok = flush(); !ok)
    return tl::unexpected(ok.error());
  for (const auto& name : skipped)
    if (cut.count(name) == 0)
      out.skipped.push_back(name);
  out.streams = cut.size();
  // Chain entries left below the anchor by transactions that hit their bound.
  for (bool more = true; more;) {
    more = false;
    bool committed = false;
    auto ok = retention_write(
      [&](MDB_txn* txn) -> lmdb_result<bool> {
        auto log_from = log_cut(txn);
        if (!log_from)
          return lmdb_fail(MDB_CORRUPTED, log_from.error());
        auto dropped = drop_stale_chain(txn, *log_from);
        if (!dropped)
          return tl::unexpected(dropped.error());
        more = *dropped == per_txn;
        return *dropped > 0;
      },
      committed);
    if (!ok)
      return tl::unexpected(ok.error());
    if (committed)
      ++out.transactions;
  }
  auto first = first_position();
  if (!first)
    return tl::unexpected(first.error());
  out.first_position = *first;
  return out;
}

} // namespace cairn::persistence::detail
