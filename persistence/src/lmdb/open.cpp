// Opening the store: the environment, the tables, the format (upgraded from
// formats 1 and 2 on a writable open), and what the writer keeps in memory.

#include <algorithm>

#include "cairn/persistence/codec.hpp"
#include "lmdb/store_impl.hpp"

namespace cairn::persistence::detail {

using namespace format;

result<void> lmdb_store::init(bool create) {
  if (auto ok = open_env(); !ok)
    return ok;
  MDB_txn* raw = nullptr;
  if (int rc = mdb_txn_begin(env_, nullptr, opts_.read_only ? MDB_RDONLY : 0, &raw); rc != 0)
    return tl::unexpected(lmdb_error(rc, "begin"));
  txn_guard txn{raw};
  if (!create && !opts_.read_only)
    create = holds_no_tables(raw);
  if (auto ok = open_tables(raw, create); !ok)
    return ok;
  std::uint32_t stored_version = current_version;
  if (create) { // format and heads_at are written by open_heads, as for an upgrade
    if (auto ok = write_store_id(raw); !ok)
      return ok;
  } else {
    auto version = read_format_version(raw);
    if (!version)
      return tl::unexpected(version.error());
    stored_version = *version;
  }
  if (auto ok = load_log_end(raw); !ok)
    return ok;
  if (auto ok = load_command_log_end(raw); !ok)
    return ok;
  if (auto ok = load_epoch(raw); !ok)
    return ok;
  if (auto ok = open_heads(raw, create, stored_version); !ok)
    return ok;
  if (opts_.read_only) {
    format_version_ = stored_version;
    // Format 3 added the digest chain; extend_chain fills it after a writable open.
    if (stored_version < 3)
      has_chain_ = false;
  } else if (create || stored_version < current_version) {
    auto version = seal(format_version_key, encode_format_version(current_version));
    if (auto ok = put_value(raw, meta_, format_version_key, version, "write meta"); !ok)
      return tl::unexpected(ok.error().err);
  }
  if (auto ok = load_type_catalogue(raw); !ok)
    return ok;
  if (auto ok = check_registry(); !ok)
    return ok;
  if (int rc = txn.commit(); rc != 0)
    return tl::unexpected(lmdb_error(rc, "commit at open"));
  if (opts_.read_only)
    return {};
  return after_commit(false);
}

result<void> lmdb_store::open_env() {
  if (int rc = mdb_env_create(&env_); rc != 0)
    return tl::unexpected(lmdb_error(rc, "mdb_env_create"));
  (void)mdb_env_set_maxdbs(env_, 32); // 17 tables in use: room for more
  (void)mdb_env_set_maxreaders(env_, opts_.max_readers);
  if (!opts_.read_only)
    (void)mdb_env_set_mapsize(env_, opts_.initial_map_size);
  unsigned flags = MDB_NOTLS;
  if (opts_.read_only)
    flags |= MDB_RDONLY;
  // Under `sync` as well: the store flushes the meta page itself (after_commit),
  // so that append_batch_deferred can leave it to the next commit.
  if (opts_.durability != durability::no_sync)
    flags |= MDB_NOMETASYNC;
  if (opts_.durability == durability::no_sync)
    flags |= MDB_NOSYNC;
  if (int rc = mdb_env_open(env_, dir_.c_str(), flags, file_mode); rc != 0) {
    auto err = lmdb_error(rc, "mdb_env_open");
    err.context = dir_;
    if (rc == MDB_INVALID || rc == MDB_VERSION_MISMATCH)
      err = error{errc::invalid_argument, "not a cairn store (data.mdb is not an LMDB file)", dir_};
    return tl::unexpected(err);
  }
  (void)check_readers(); // slots left by killed readers
  MDB_envinfo info;
  mdb_env_info(env_, &info);
  map_size_ = info.me_mapsize;
  return {};
}

bool lmdb_store::holds_no_tables(MDB_txn* txn) const {
  MDB_stat st;
  MDB_dbi main_dbi = 0;
  return mdb_dbi_open(txn, nullptr, 0, &main_dbi) == 0 && mdb_stat(txn, main_dbi, &st) == 0
         && st.ms_entries == 0;
}

namespace {

struct named_table {
  const char* name;
  MDB_dbi* dbi;
};

} // namespace

result<void> lmdb_store::open_tables(MDB_txn* txn, bool create) {
  unsigned flags = create ? MDB_CREATE : 0;
  for (auto [name, dbi] :
       {named_table{"meta", &meta_}, named_table{"log", &log_},
        named_table{"stream_names", &names_}, named_table{"heads", &heads_},
        named_table{"stream_index", &index_}, named_table{"commands", &commands_},
        named_table{"snapshots", &snapshots_}, named_table{"checkpoints", &checkpoints_},
        named_table{"types", &types_}}) {
    int rc = mdb_dbi_open(txn, name, flags, dbi);
    if (rc == MDB_NOTFOUND || rc == MDB_INCOMPATIBLE)
      return fail(errc::invalid_argument,
                  std::string{"not a cairn store (no '"} + name + "' table in data.mdb)", dir_);
    if (rc != 0)
      return tl::unexpected(lmdb_error(rc, std::string{"open table "} + name));
  }
  return open_later_tables(txn);
}

result<void> lmdb_store::open_later_tables(MDB_txn* txn) {
  // Created on a writable open; a read-only open of an older store sees none.
  unsigned flags = opts_.read_only ? 0 : MDB_CREATE;
  for (auto [name, dbi] : {named_table{"kv", &kv_}, named_table{"dead_letters", &dead_letters_}}) {
    int rc = mdb_dbi_open(txn, name, flags, dbi);
    if (rc == MDB_NOTFOUND && opts_.read_only) {
      has_side_tables_ = false;
      continue;
    }
    if (rc != 0)
      return tl::unexpected(lmdb_error(rc, std::string{"open table "} + name));
  }
  // Format 2: a format 1 store gets it on a writable open (open_heads).
  if (int rc = mdb_dbi_open(txn, "head_log", flags, &head_log_);
      rc == MDB_NOTFOUND && opts_.read_only)
    has_head_log_ = false;
  else if (rc != 0)
    return tl::unexpected(lmdb_error(rc, "open table head_log"));
  // Format 3: an older store gets it on a writable open (extend_chain fills it).
  if (int rc = mdb_dbi_open(txn, "chain", flags, &chain_); rc == MDB_NOTFOUND && opts_.read_only)
    has_chain_ = false;
  else if (rc != 0)
    return tl::unexpected(lmdb_error(rc, "open table chain"));
  // Format 3 (what-if replay); code that predates it ignores the table.
  if (int rc = mdb_dbi_open(txn, "command_log", flags, &command_log_);
      rc == MDB_NOTFOUND && opts_.read_only)
    has_command_log_ = false;
  else if (rc != 0)
    return tl::unexpected(lmdb_error(rc, "open table command_log"));
  // Retention's cuts; a store without the table was never cut.
  if (int rc = mdb_dbi_open(txn, "retention", flags, &retention_);
      rc == MDB_NOTFOUND && opts_.read_only)
    has_retention_ = false;
  else if (rc != 0)
    return tl::unexpected(lmdb_error(rc, "open table retention"));
  return open_key_tables(txn);
}

result<void> lmdb_store::write_store_id(MDB_txn* txn) {
  std::string id(16, '\0');
  for (auto& c : id)
    c = static_cast<char>(rng_());
  if (auto ok = put_value(txn, meta_, store_id_key, seal(store_id_key, id), "write meta"); !ok)
    return tl::unexpected(ok.error().err);
  return {};
}

result<std::uint32_t> lmdb_store::read_format_version(MDB_txn* txn) const {
  MDB_val k = val_of(format_version_key), v;
  if (mdb_get(txn, meta_, &k, &v) != 0)
    return fail(errc::invalid_argument, "not a cairn store (no format version)", dir_);
  auto version = decode_format_version(view_of(v), dir_);
  if (version && *version > current_version)
    return fail(errc::invalid_argument,
                "the store has format version " + std::to_string(*version)
                  + ", newer than this cairn reads (" + std::to_string(current_version)
                  + "); use a newer cairn",
                dir_);
  return version;
}

result<void> lmdb_store::load_log_end(MDB_txn* txn) {
  MDB_val k, v;
  {
    cursor_guard cur;
    if (int rc = cur.open(txn, log_); rc != 0)
      return tl::unexpected(lmdb_error(rc, "cursor"));
    if (mdb_cursor_get(cur.get(), &k, &v, MDB_LAST) == 0)
      last_position_ = get_be64(static_cast<const unsigned char*>(k.mv_data));
  }
  cursor_guard cur;
  if (int rc = cur.open(txn, heads_); rc != 0)
    return tl::unexpected(lmdb_error(rc, "cursor"));
  if (mdb_cursor_get(cur.get(), &k, &v, MDB_LAST) != 0)
    return {};
  auto key = view_of(k);
  auto bucket = decode_heads_bucket(key, view_of(v), "the last heads bucket", dir_);
  if (!bucket)
    return tl::unexpected(bucket.error());
  // Every stored stream has version >= 1, so the highest used slot ends the numbering.
  auto base = get_be64(reinterpret_cast<const unsigned char*>(key.data())) * heads_per_bucket;
  for (std::uint64_t i = 0; i < heads_per_bucket; ++i)
    if (head_in_bucket(*bucket, i) != 0)
      next_stream_no_ = base + i + 1;
  return {};
}

result<void> lmdb_store::open_heads(MDB_txn* txn, bool create, std::uint32_t stored_version) {
  // A format 1 store's heads table is complete; a writable open makes it
  // format 2 with an empty head log. The writer reads the head log once.
  if (stored_version < 2 && opts_.read_only) {
    has_head_log_ = false;
  } else if (!has_head_log_) {
    return fail(errc::corrupted, "a format 2 store without its head_log table", dir_);
  }
  if (opts_.read_only)
    return {};
  if (create || stored_version < 2) { // init writes the format version
    auto at = seal(heads_at_key, u64_body(last_position_));
    if (auto ok = put_value(txn, meta_, heads_at_key, at, "write meta"); !ok)
      return tl::unexpected(ok.error().err);
    heads_at_ = last_position_;
  } else {
    auto at = read_heads_at(txn);
    if (!at)
      return tl::unexpected(at.error());
    heads_at_ = *at;
  }
  return load_unflushed(txn);
}

result<void> lmdb_store::load_type_catalogue(MDB_txn* txn) {
  cursor_guard cur;
  MDB_val k, v;
  if (int rc = cur.open(txn, types_); rc != 0)
    return tl::unexpected(lmdb_error(rc, "cursor"));
  for (int rc = mdb_cursor_get(cur.get(), &k, &v, MDB_FIRST); rc == 0;
       rc = mdb_cursor_get(cur.get(), &k, &v, MDB_NEXT)) {
    auto key = view_of(k);
    auto type = decode_type_key(key);
    if (!type || !unseal(key, view_of(v), "type catalogue entry"))
      return fail(errc::corrupted, "bad type catalogue entry", dir_);
    known_types_.emplace(std::string{type->first}, type->second);
  }
  return {};
}

result<void> lmdb_store::check_registry() const {
  if (opts_.registry == nullptr || opts_.allow_unknown_types)
    return {};
  std::vector<std::pair<std::string, std::uint32_t>> cat;
  for (const auto& t : known_types_)
    if (!is_system_type(t.first)) // the store's own types, never the registry's
      cat.push_back(t);
  if (auto ok = opts_.registry->check_decodable(cat); !ok) {
    auto err = ok.error();
    err.context = dir_;
    return tl::unexpected(err);
  }
  return {};
}

} // namespace cairn::persistence::detail
