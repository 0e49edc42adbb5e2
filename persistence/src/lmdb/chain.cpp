// The digest chain (docs/audit.md, docs/storage-format.md#digest-chain): the
// writer extends it in every commit (write.cpp); here it is extended at a
// writable open over records written without it, recomputed for digest_at,
// and checked against the log for cairn verify.

#include "lmdb/store_impl.hpp"

namespace cairn::persistence::detail {

using namespace format;

namespace {

/// Records one transaction of extend_chain or check_chain reads at most.
constexpr std::uint64_t per_txn = 65536;

std::string key_of(std::uint64_t position) { return be64_key(position); }

} // namespace

lmdb_result<> lmdb_store::stage_chain(MDB_txn* txn, const staging& st) {
  if (chain_prefixes_.empty())
    return {};
  auto key = key_of(st.position);
  MDB_val k = val_of(key);
  MDB_val v{seal_size + chain_entry_header_size + chain_prefixes_.size(), nullptr};
  // Keys grow with the log: each entry goes after the last one.
  if (int rc = mdb_put(txn, chain_, &k, &v, MDB_APPEND | MDB_RESERVE); rc != 0)
    return lmdb_fail(rc, "write digest chain");
  encode_chain_entry(static_cast<unsigned char*>(v.mv_data), key, st.chain, chain_prefixes_);
  return {};
}

result<void> lmdb_store::require_chain() const {
  if (has_chain_)
    return {};
  return fail(errc::invalid_argument,
              "the store has format " + std::to_string(format_version_)
                + ", which keeps no digest chain; open it for writing once to add one "
                  "(`cairn upgrade DIR`, or start the service on it)",
              dir_);
}

result<std::pair<std::uint64_t, digest>> lmdb_store::chain_base(MDB_txn* txn,
                                                                std::uint64_t position) const {
  cursor_guard cur;
  if (int rc = cur.open(txn, chain_); rc != 0)
    return tl::unexpected(lmdb_error(rc, "cursor"));
  auto key = key_of(position);
  MDB_val k = val_of(key), v;
  int rc = mdb_cursor_get(cur.get(), &k, &v, MDB_SET_RANGE);
  if (rc == 0 && view_of(k) != key)
    rc = mdb_cursor_get(cur.get(), &k, &v, MDB_PREV);
  else if (rc == MDB_NOTFOUND)
    rc = mdb_cursor_get(cur.get(), &k, &v, MDB_LAST);
  if (rc == MDB_NOTFOUND)
    return std::pair{std::uint64_t{0}, digest{}};
  if (rc != 0)
    return tl::unexpected(lmdb_error(rc, "read digest chain"));
  auto entry = decode_chain_entry(view_of(k), view_of(v));
  if (!entry)
    return tl::unexpected(entry.error());
  return std::pair{entry->position, entry->head};
}

result<void> lmdb_store::extend_chain() {
  for (;;) {
    lmdb_result<bool> done;
    try {
      done = extend_chain_step();
    } catch (const std::exception& e) { // bad_alloc; the txn was aborted
      return fail(errc::internal, std::string{"extending the digest chain failed: "} + e.what(),
                  dir_);
    }
    if (done && *done)
      return {};
    if (done)
      continue;
    if (done.error().rc != MDB_MAP_FULL)
      return tl::unexpected(done.error().err);
    if (auto grown = grow_map(); !grown)
      return grown;
  }
}

lmdb_result<bool> lmdb_store::extend_chain_step() {
  MDB_txn* raw = nullptr;
  if (int rc = mdb_txn_begin(env_, nullptr, 0, &raw); rc != 0)
    return lmdb_fail(rc, "begin write");
  txn_guard txn{raw};
  auto base = chain_base(raw, no_limit);
  if (!base)
    return lmdb_fail(MDB_CORRUPTED, base.error());
  // Named, not a structured binding: the flush lambda below captures `h`.
  auto at = base->first;
  auto h = base->second;
  if (at > last_position_)
    return lmdb_fail(MDB_CORRUPTED,
                     error{errc::corrupted,
                           "the digest chain reaches position " + std::to_string(at)
                             + " but the log ends at " + std::to_string(last_position_)
                             + ": records were removed; run cairn verify",
                           dir_});
  if (at == last_position_ || !opts_.digest_chain) {
    chain_head_ = h;
    chain_on_ = at == last_position_ && opts_.digest_chain;
    return true; // nothing written: the txn aborts
  }
  // A write transaction's cursor must be closed before it commits.
  std::optional<cursor_guard> cur{std::in_place};
  if (int rc = cur->open(raw, log_); rc != 0)
    return lmdb_fail(rc, "cursor");
  auto from = key_of(at + 1);
  MDB_val k = val_of(from), v;
  int rc = mdb_cursor_get(cur->get(), &k, &v, MDB_SET_RANGE);
  std::string prefixes;
  std::string entry;
  auto flush = [&](std::uint64_t last) -> lmdb_result<> {
    if (prefixes.empty())
      return {};
    auto key = key_of(last);
    entry.assign(seal_size + chain_entry_header_size + prefixes.size(), '\0');
    encode_chain_entry(reinterpret_cast<unsigned char*>(entry.data()), key, h, prefixes);
    prefixes.clear();
    return put_value(raw, chain_, key, entry, "write digest chain");
  };
  std::uint64_t pos = at;
  for (std::uint64_t n = 0; rc == 0 && n < per_txn; ++n) {
    auto p = get_be64(static_cast<const unsigned char*>(k.mv_data));
    if (p != pos + 1)
      return lmdb_fail(MDB_CORRUPTED,
                       error{errc::corrupted,
                             "position " + std::to_string(pos + 1)
                               + " is missing from the log, so the digest chain cannot "
                                 "be extended over it; run cairn verify",
                             dir_});
    auto* rec = static_cast<const unsigned char*>(v.mv_data);
    if (auto ok = decode_record(rec, v.mv_size, p); !ok)
      return lmdb_fail(MDB_CORRUPTED, ok.error());
    h = chain_next(h, rec, v.mv_size);
    prefixes.append(reinterpret_cast<const char*>(h.data()), digest_prefix_size);
    pos = p;
    if (prefixes.size() == chain_entry_span * digest_prefix_size)
      if (auto ok = flush(pos); !ok)
        return tl::unexpected(ok.error());
    rc = mdb_cursor_get(cur->get(), &k, &v, MDB_NEXT);
  }
  cur.reset();
  if (rc != 0 && rc != MDB_NOTFOUND)
    return lmdb_fail(rc, "read the log");
  if (auto ok = flush(pos); !ok)
    return tl::unexpected(ok.error());
  if (int crc = txn.commit(); crc != 0)
    return lmdb_fail(crc, "commit the digest chain");
  if (pos == last_position_) {
    chain_head_ = h;
    chain_on_ = true;
    return true;
  }
  return false;
}

result<log_digest> lmdb_store::digest_at(std::uint64_t position) const {
  if (auto ok = require_chain(); !ok)
    return tl::unexpected(ok.error());
  return with_read([&](MDB_txn* txn) -> result<log_digest> {
    cursor_guard cur;
    if (int rc = cur.open(txn, log_); rc != 0)
      return tl::unexpected(lmdb_error(rc, "cursor"));
    MDB_val k, v;
    std::uint64_t last = 0;
    if (int rc = mdb_cursor_get(cur.get(), &k, &v, MDB_LAST); rc == 0)
      last = get_be64(static_cast<const unsigned char*>(k.mv_data));
    else if (rc != MDB_NOTFOUND)
      return tl::unexpected(lmdb_error(rc, "read the log"));
    if (position == no_limit)
      position = last;
    if (position > last)
      return fail(errc::invalid_argument,
                  "position " + std::to_string(position) + " is past the end of the log ("
                    + std::to_string(last) + ")",
                  dir_);
    if (auto cut = log_cut(txn); !cut)
      return tl::unexpected(cut.error());
    else if (position + 1 < *cut) // the anchor at cut - 1 is the first digest known
      return fail(errc::truncated,
                  "the log before position " + std::to_string(*cut)
                    + " was removed by retention; digests are known from position "
                    + std::to_string(*cut - 1) + " (the chain's anchor at the cut) on",
                  "position " + std::to_string(position));
    auto base = chain_base(txn, position);
    if (!base)
      return tl::unexpected(base.error());
    auto [at, h] = *base;
    auto from = key_of(at + 1);
    k = val_of(from);
    int rc = at < position ? mdb_cursor_get(cur.get(), &k, &v, MDB_SET_RANGE) : MDB_NOTFOUND;
    for (auto pos = at; pos < position; rc = mdb_cursor_get(cur.get(), &k, &v, MDB_NEXT)) {
      if (rc != 0 && rc != MDB_NOTFOUND)
        return tl::unexpected(lmdb_error(rc, "read the log"));
      auto p = rc == 0 ? get_be64(static_cast<const unsigned char*>(k.mv_data)) : no_limit;
      if (p != pos + 1)
        return fail(errc::corrupted, "log record is missing",
                    "position " + std::to_string(pos + 1));
      auto* rec = static_cast<const unsigned char*>(v.mv_data);
      if (auto ok = decode_record(rec, v.mv_size, p); !ok)
        return tl::unexpected(ok.error());
      h = chain_next(h, rec, v.mv_size);
      pos = p;
    }
    return log_digest{position, h};
  });
}

result<chain_check> lmdb_store::check_chain(std::uint64_t upto) const {
  if (auto ok = require_chain(); !ok)
    return tl::unexpected(ok.error());
  chain_check out;
  digest h{};
  std::uint64_t pos = 0;      // the last record hashed (or the anchor the chain starts from)
  std::uint64_t from_pos = 1; // the first position checked
  bool started = false, done = false;
  bool reached = false; // the log goes on past `upto`
  auto broken = [&](std::uint64_t p, std::string why) {
    if (out.first_broken == 0) {
      out.first_broken = p;
      out.problem = std::move(why);
    }
  };
  while (!done) {
    auto chunk = with_read([&](MDB_txn* txn) -> result<void> {
      cursor_guard log, chain;
      if (int rc = log.open(txn, log_); rc != 0)
        return tl::unexpected(lmdb_error(rc, "cursor"));
      if (int rc = chain.open(txn, chain_); rc != 0)
        return tl::unexpected(lmdb_error(rc, "cursor"));
      MDB_val k, v, ck, cv;
      if (!started) {
        started = true;
        if (mdb_cursor_get(chain.get(), &ck, &cv, MDB_LAST) == 0)
          out.chained_to = get_be64(static_cast<const unsigned char*>(ck.mv_data));
        // A log cut by retention is checked from its cut on, after the
        // chain's anchor there; records kept below the cut (streams' newest)
        // are outside what the chain proves from the anchor.
        auto cut = log_cut(txn);
        if (!cut)
          return tl::unexpected(cut.error());
        if (*cut > 1) {
          auto base = chain_base(txn, *cut - 1);
          if (!base)
            return tl::unexpected(base.error());
          pos = *cut - 1;
          if (base->first == pos)
            h = base->second;
          else
            broken(*cut, "the digest chain has no anchor at the retention cut (position "
                           + std::to_string(pos) + ")");
        } else if (mdb_cursor_get(log.get(), &k, &v, MDB_FIRST) == 0) {
          auto first = get_be64(static_cast<const unsigned char*>(k.mv_data));
          if (first > 1) {
            auto base = chain_base(txn, first - 1);
            if (!base)
              return tl::unexpected(base.error());
            if (base->first == first - 1)
              std::tie(pos, h) = *base;
          }
        }
        from_pos = pos + 1;
      }
      auto from = key_of(pos + 1);
      k = val_of(from);
      int rc = mdb_cursor_get(log.get(), &k, &v, MDB_SET_RANGE);
      std::optional<chain_entry> entry; // points into this transaction's pages
      bool entries_left = true;
      for (std::uint64_t n = 0; rc == 0 && n < per_txn; ++n) {
        auto p = get_be64(static_cast<const unsigned char*>(k.mv_data));
        if (p > upto) {
          reached = true;
          break;
        }
        if (p != pos + 1)
          broken(pos + 1, p == pos + 2 ? "this record is missing from the log"
                                       : "records " + std::to_string(pos + 1) + " to "
                                           + std::to_string(p - 1) + " are missing from the log");
        auto* rec = static_cast<const unsigned char*>(v.mv_data);
        if (auto ok = decode_record(rec, v.mv_size, p); !ok)
          broken(p, ok.error().message);
        h = chain_next(h, rec, v.mv_size);
        ++out.records;
        pos = p;
        if (entries_left && (!entry || entry->position < p)) {
          auto key = key_of(p);
          ck = val_of(key);
          entry.reset();
          if (int crc = mdb_cursor_get(chain.get(), &ck, &cv, MDB_SET_RANGE); crc == 0) {
            auto e = decode_chain_entry(view_of(ck), view_of(cv));
            if (!e)
              broken(p, e.error().message + " (" + e.error().context + ")");
            else
              entry = *e;
          } else if (crc == MDB_NOTFOUND) {
            entries_left = false;
          } else {
            return tl::unexpected(lmdb_error(crc, "read digest chain"));
          }
        }
        if (entry && entry->covers(p)) {
          bool same = entry->prefix_of(p)
                      == std::string_view{reinterpret_cast<const char*>(h.data()),
                                          digest_prefix_size};
          if (same && p == entry->position)
            same = entry->head == h;
          if (!same)
            broken(p, "the record no longer matches the chain the writer computed: it was "
                      "changed after it was written, or a record before it was");
        }
        rc = mdb_cursor_get(log.get(), &k, &v, MDB_NEXT);
      }
      if (rc == MDB_NOTFOUND || reached)
        done = true;
      else if (rc != 0)
        return tl::unexpected(lmdb_error(rc, "read the log"));
      return {};
    });
    if (!chunk)
      return tl::unexpected(chunk.error());
  }
  out.log_end = pos;
  out.from = from_pos;
  if (!reached && out.chained_to > pos)
    broken(pos + 1, "the digest chain reaches position " + std::to_string(out.chained_to)
                      + " but the log ends before it: its last records were removed");
  if (upto == no_limit)
    out.at = log_digest{pos, h};
  else if (reached || upto == pos)
    out.at = log_digest{upto, h};
  return out;
}

} // namespace cairn::persistence::detail
