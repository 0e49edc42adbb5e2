// The write transaction: validation, the retry loop around it (a full map
// grows the map), the staging of appends, the commit, and what the writer's
// caches learn from it. Every step returns an lmdb_result: its failure carries
// the LMDB code the loop acts on.

#include <cstring>
#include <exception>
#include <set>

#include "cairn/model/clock.hpp"
#include "cairn/persistence/codec.hpp"
#include "cairn/model/stream_name.hpp"
#include "lmdb/store_impl.hpp"

namespace cairn::persistence::detail {

using namespace format;

namespace {

/// The writer's head cache is dropped when it grows past this many streams.
constexpr std::size_t head_cache_limit = std::size_t{1} << 20;
/// The writer clears the reader slots of dead processes (mdb_reader_check)
/// after this many commits, after reader_check_period, and before it grows
/// the map: a slot left by a reader killed inside a read transaction pins
/// the pages of that snapshot, so the file would otherwise grow forever.
constexpr std::uint64_t reader_check_commits = 1024;
constexpr std::chrono::seconds reader_check_period{10};

/// Checks what can be checked without the store's state.
result<void> validate_request(const append_request& req, const store_options& opts) {
  if (auto ok = validate_stream_name(req.stream); !ok)
    return ok;
  const metadata& m = req.meta;
  for (const std::string* f :
       {&m.correlation_id, &m.causation_id, &m.command_id, &m.tenant, &m.user})
    if (f->size() > max_short_field)
      return fail(errc::invalid_argument, "metadata fields are at most 255 bytes", req.stream);
  if (req.command && req.command->size() > opts.max_event_size)
    return fail(errc::invalid_argument,
                "command of " + std::to_string(req.command->size())
                  + " bytes exceeds max_event_size " + std::to_string(opts.max_event_size),
                req.stream);
  if (m.subject.size() > max_short_field)
    return fail(errc::invalid_argument,
                "a data subject is at most 255 bytes (got " + std::to_string(m.subject.size())
                  + ")",
                req.stream);
  for (std::size_t i = 0; i < req.events.size(); ++i) {
    const auto& ev = req.events[i];
    auto ctx = [&] { return req.stream + " event " + std::to_string(i); }; // on failure only
    if (!is_valid_type_name(ev.type))
      return fail(errc::invalid_argument,
                  "event type names are 1-255 printable bytes without spaces", ctx());
    if (ev.schema_version == 0)
      return fail(errc::invalid_argument, "schema versions start at 1", ctx());
    if (ev.payload.size() > opts.max_event_size)
      return fail(errc::invalid_argument,
                  "event of " + std::to_string(ev.payload.size()) + " bytes exceeds max_event_size "
                    + std::to_string(opts.max_event_size),
                  ctx());
    if (opts.registry != nullptr && !opts.registry->can_decode(ev.type, ev.schema_version))
      return fail(errc::invalid_argument,
                  "unknown event type " + ev.type + " v" + std::to_string(ev.schema_version)
                    + " (not in the registry)",
                  ctx());
  }
  return {};
}

} // namespace

result<lmdb_store::append_results> lmdb_store::write(const batch_view& b, bool defer) {
  if (opts_.read_only)
    return fail(errc::invalid_argument, "the store is open read-only", dir_);
  if (broken_)
    return tl::unexpected(*broken_);
  if (auto ok = validate_side_tables(b); !ok)
    return tl::unexpected(ok.error());
  if (auto ok = validate_forget(b.forget); !ok)
    return tl::unexpected(ok.error());
  // However the write ends, the key ring stops treating these subjects as
  // being forgotten (stage_forget starts that).
  struct forget_done {
    lmdb_key_ring* ring;
    span<std::string> subjects;
    ~forget_done() {
      if (ring != nullptr)
        for (const auto& s : subjects)
          ring->forgotten(s);
    }
  } forget_done{ring_.get(), b.forget};
  for (;;) {
    lmdb_result<append_results> done;
    try {
      done = try_write(b);
    } catch (const std::exception& e) { // bad_alloc; the txn was aborted
      return fail(errc::internal, std::string{"write failed: "} + e.what(), dir_);
    }
    if (done) {
      if (++commits_since_reader_check_ >= reader_check_commits
          || std::chrono::steady_clock::now() - last_reader_check_ >= reader_check_period)
        (void)check_readers();
      if (auto ok = after_commit(defer); !ok)
        return tl::unexpected(ok.error());
      return std::move(*done);
    }
    if (auto again = before_retry(done.error()); !again)
      return tl::unexpected(again.error());
  }
}

lmdb_result<lmdb_store::append_results> lmdb_store::try_write(const batch_view& b) {
  // Held for the whole transaction, not only its commit: LMDB writes pages
  // before the commit too. A transaction that dirties more pages than its
  // dirty list holds (MDB_IDL_UM_MAX, 131072) spills some to the file
  // (mdb_page_spill), at page numbers past the last commit's end, where the
  // preallocator would otherwise write zeros over them.
  std::optional<preallocator::guard> guard;
  if (prealloc_)
    guard.emplace(prealloc_.get());
  MDB_txn* raw = nullptr;
  if (int rc = mdb_txn_begin(env_, nullptr, 0, &raw); rc != 0)
    return lmdb_fail(rc, "begin write");
  txn_guard txn{raw};
  if (head_cache_.size() > head_cache_limit || tenants_.size() > head_cache_limit) {
    head_cache_.clear(); // only here: staging points into the cache
    tenants_.clear();    // and the cached heads into this
  }
  staging st = begin_staging();
  auto out = stage_appends(raw, b.appends, st);
  if (!out)
    return out;
  // One forget record per subject, after the appends (the order stage_forget
  // below follows too), so the log says it and a standby does it.
  {
    std::set<std::string_view> recorded;
    auto now = wall_now_ns();
    for (const auto& subject : b.forget)
      if (recorded.insert(subject).second)
        if (auto ok = stage_forget_record(raw, subject, st, now); !ok)
          return tl::unexpected(ok.error());
  }
  if (auto ok = stage_chain(raw, st); !ok)
    return tl::unexpected(ok.error());
  for (const auto& snap : b.snapshots)
    if (auto ok = stage_snapshot(raw, snap, st); !ok)
      return tl::unexpected(ok.error());
  auto plan = stage_heads(raw, st);
  if (!plan)
    return tl::unexpected(plan.error());
  if (auto ok = stage_names_and_types(raw, st); !ok)
    return tl::unexpected(ok.error());
  if (auto ok = stage_side_tables(raw, b); !ok)
    return tl::unexpected(ok.error());
  for (const auto& subject : b.forget)
    if (auto ok = stage_forget(raw, subject); !ok)
      return tl::unexpected(ok.error());
  if (auto ok = commit_staged(txn, guard, st, *plan); !ok)
    return tl::unexpected(ok.error());
  for (const auto& [subject, id] : st.new_keys)
    ring_->stored(subject, id);
  return out;
}

lmdb_result<> lmdb_store::commit_staged(txn_guard& txn, std::optional<preallocator::guard>& guard,
                                        staging& st, const head_plan& plan) {
  // Allocate now what the caches need after the commit, so nothing after it
  // can throw: a commit must never be reported as failed, nor half-learned.
  // A 0 position means "in the heads table", which stays true if the commit fails.
  if (!plan.rewrite)
    for (auto [no, pos] : plan.changed)
      unflushed_.try_emplace(no, 0);
  if (auto ok = commit(txn); !ok)
    return ok;
  if (guard) {
    guard->committed(data_end());
    guard.reset();
  }
  learn_commit(st, plan);
  return {};
}

lmdb_store::staging lmdb_store::begin_staging() {
  staging st;
  st.serial = ++txn_serial_;
  st.position = last_position_;
  st.next_stream_no = next_stream_no_;
  st.chain = chain_head_;
  chain_prefixes_.clear();
  st.next_command = next_command_;
  return st;
}

lmdb_result<lmdb_store::append_results>
lmdb_store::stage_appends(MDB_txn* txn, span<append_request> reqs, staging& st) {
  append_results out(reqs.size, result<append_result>{});
  auto now = wall_now_ns();
  for (std::size_t i = 0; i < reqs.size; ++i) {
    if (auto ok = validate_request(reqs.data[i], opts_); !ok) {
      out[i] = tl::unexpected(ok.error());
      continue;
    }
    auto staged = stage_append(txn, reqs.data[i], st, now);
    if (!staged)
      return tl::unexpected(staged.error());
    out[i] = std::move(*staged);
  }
  return out;
}

lmdb_result<result<append_result>> lmdb_store::stage_append(MDB_txn* txn, const append_request& req,
                                                            staging& st, std::int64_t now) {
  auto staged_head = writer_head(txn, req.stream, st);
  if (!staged_head)
    return tl::unexpected(staged_head.error());
  head_state* head = *staged_head;
  if (auto same = check_tenant(txn, req, *head); !same)
    return tl::unexpected(same.error());
  else if (!*same)
    return result<append_result>{tl::unexpected(same->error())};
  // A stream without a number has no events, so no command was recorded for it.
  const bool records_command = !req.meta.command_id.empty() && !req.events.empty();
  std::string cmd_key;
  if (records_command && head->stream_no != 0) {
    cmd_key = command_key(head->stream_no, req.meta.command_id);
    auto earlier = earlier_outcome(txn, st, cmd_key, *head, req.stream);
    if (!earlier)
      return tl::unexpected(earlier.error());
    if (*earlier) // a retry of a command this stream has recorded
      return std::move(**earlier);
  }
  if (!req.expected.admits(head->version))
    return fail(errc::conflict,
                "expected version " + req.expected.to_string() + ", actual "
                  + std::to_string(head->version),
                req.stream);
  append_result r;
  r.first_version = head->version + 1;
  r.last_version = head->version + req.events.size();
  if (req.events.empty()) {
    if (req.command)
      if (auto ok = stage_command(txn, req, r, st, now); !ok)
        return tl::unexpected(ok.error());
    return r;
  }
  head->dirty = true;
  if (head->stream_no == 0) {
    // Numbered only now, so a new stream whose first append fails uses up no number.
    head->stream_no = st.next_stream_no++;
    if (records_command)
      cmd_key = command_key(head->stream_no, req.meta.command_id);
  }
  r.first_position = st.position + 1;
  for (const auto& ev : req.events)
    if (auto ok = stage_event(txn, req, ev, *head, st, now); !ok)
      return tl::unexpected(ok.error());
  r.last_position = st.position;
  note_tenant(req, *head);
  if (req.command)
    if (auto ok = stage_command(txn, req, r, st, now); !ok)
      return tl::unexpected(ok.error());
  if (!req.meta.subject.empty())
    if (auto ok = stage_subject(txn, req.meta.subject, req.stream, st); !ok)
      return tl::unexpected(ok.error());
  if (!cmd_key.empty())
    if (auto ok = stage_outcome(txn, std::move(cmd_key), r, st); !ok)
      return tl::unexpected(ok.error());
  return r;
}

lmdb_result<result<void>> lmdb_store::check_tenant(MDB_txn* txn, const append_request& req,
                                                   head_state& head) {
  // An append without a tenant claims none, so it mixes none (events written
  // before tenants existed, tools); the aggregate actor refuses such a
  // command for a stream with a tenant (docs/audit.md#tenants).
  if (req.meta.tenant.empty() || head.version == 0)
    return result<void>{};
  if (head.tenant == nullptr) {
    auto learned = stream_tenant(txn, req.stream, head.last_position);
    if (!learned)
      return tl::unexpected(learned.error());
    head.tenant = &*tenants_.insert(std::move(*learned)).first;
  }
  if (head.tenant->empty() || *head.tenant == req.meta.tenant)
    return result<void>{};
  return result<void>{fail(errc::invalid_argument,
                           "tenant '" + req.meta.tenant + "' does not match tenant '" + *head.tenant
                             + "' of stream " + req.stream + " (a stream never mixes tenants)",
                           req.stream)};
}

void lmdb_store::note_tenant(const append_request& req, head_state& head) {
  const std::string& t = req.meta.tenant;
  if (!t.empty()) {
    if (head.tenant == nullptr || head.tenant->empty()) // a new stream, or one adopting t
      head.tenant = &*tenants_.insert(t).first;
  } else if (head.tenant == nullptr && head.version == req.events.size()) {
    head.tenant = &*tenants_.insert(std::string{}).first; // a new stream without one
  }
}

lmdb_result<std::string> lmdb_store::stream_tenant(MDB_txn* txn, std::string_view stream,
                                                   std::uint64_t position) const {
  // Only what runs outside the runtime appends without a tenant to a stream
  // that has one, so the newest record nearly always answers.
  while (position != 0) {
    unsigned char kb[8];
    put_be64(kb, position);
    MDB_val k{8, kb}, v;
    int rc = mdb_get(txn, log_, &k, &v);
    if (rc == MDB_NOTFOUND) // the chain's older part is gone: what is left decides
      break;
    if (rc != 0)
      return lmdb_fail(rc, "read a record of " + std::string{stream});
    auto rec = decode_record(static_cast<const unsigned char*>(v.mv_data), v.mv_size, position);
    if (!rec)
      return lmdb_fail(MDB_CORRUPTED, rec.error());
    if (rec->stream != stream || rec->prev_position >= position)
      return lmdb_fail(MDB_CORRUPTED,
                       error{errc::corrupted,
                             "the chain of " + std::string{stream} + " leads to another record",
                             "position " + std::to_string(position)});
    if (!rec->tenant.empty())
      return std::string{rec->tenant};
    position = rec->prev_position;
  }
  return std::string{};
}

lmdb_result<std::optional<result<append_result>>>
lmdb_store::earlier_outcome(MDB_txn* txn, const staging& st, const std::string& key,
                            const head_state& head, const std::string& stream) const {
  using found = std::optional<result<append_result>>;
  if (auto it = st.commands.find(key); it != st.commands.end())
    return found{it->second};
  if (head.version == 0)
    return found{};
  MDB_val k = val_of(key), v;
  int rc = mdb_get(txn, commands_, &k, &v);
  if (rc == MDB_NOTFOUND)
    return found{};
  if (rc != 0)
    return lmdb_fail(rc, "read command record");
  return found{decode_outcome(key, view_of(v), stream)};
}

lmdb_result<> lmdb_store::stage_event(MDB_txn* txn, const append_request& req, const event_data& ev,
                                      head_state& head, staging& st, std::int64_t now) {
  record_fields f;
  f.version = ++head.version;
  f.prev_position = head.last_position;
  f.timestamp_ns = ev.timestamp_ns.value_or(now);
  f.id = ev.id ? *ev.id : new_event_id();
  auto pos = ++st.position;
  unsigned char kb[8];
  put_be64(kb, pos);
  MDB_val k{8, kb};
  MDB_val v{record_size(req.stream, ev, req.meta), nullptr};
  if (int rc = mdb_put(txn, log_, &k, &v, MDB_APPEND | MDB_RESERVE); rc != 0)
    return lmdb_fail(rc, "write log record");
  auto* rec = static_cast<unsigned char*>(v.mv_data);
  encode_record(rec, pos, req.stream, ev, req.meta, f);
  if (chain_on_) {
    st.chain = chain_next(st.chain, rec, v.mv_size);
    chain_prefixes_.append(reinterpret_cast<const char*>(st.chain.data()), digest_prefix_size);
  }
  head.last_position = pos;
  if (f.version % index_interval == 0) {
    auto key = pair_key(head.stream_no, f.version);
    if (auto ok = put_value(txn, index_, key, seal(key, u64_body(pos)), "write stream index"); !ok)
      return ok;
  }
  // Most events repeat the previous type: skip the set (and its key copy).
  if (ev.schema_version != last_type_version_ || ev.type != last_type_) {
    if (known_types_.count({ev.type, ev.schema_version}) == 0)
      st.new_types.emplace(ev.type, ev.schema_version);
    else {
      last_type_ = ev.type;
      last_type_version_ = ev.schema_version;
    }
  }
  return {};
}

event_id lmdb_store::new_event_id() {
  event_id id;
  auto a = rng_(), b = rng_();
  std::memcpy(id.bytes.data(), &a, 8);
  std::memcpy(id.bytes.data() + 8, &b, 8);
  return id;
}

lmdb_result<> lmdb_store::stage_outcome(MDB_txn* txn, std::string key, const append_result& r,
                                        staging& st) {
  if (auto ok = put_value(txn, commands_, key, seal(key, encode_outcome(r)),
                          "write command record");
      !ok)
    return ok;
  auto dup = r;
  dup.duplicate = true;
  st.commands.emplace(std::move(key), dup);
  return {};
}

lmdb_result<> lmdb_store::stage_names_and_types(MDB_txn* txn, const staging& st) {
  for (const auto* entry : st.touched) {
    const auto& [name, head] = *entry;
    if (!head.staged.dirty || head.committed.stream_no != 0)
      continue; // not new, or staged by a request that wrote nothing
    auto no = u64_body(head.staged.stream_no);
    if (auto ok = put_value(txn, names_, name, seal(name, no), "write stream name"); !ok)
      return ok;
  }
  for (const auto& [type, version] : st.new_types) {
    auto key = type_key(type, version);
    if (auto ok = put_value(txn, types_, key, seal(key, {}), "write type catalogue"); !ok)
      return ok;
  }
  return {};
}

lmdb_result<> lmdb_store::commit(txn_guard& txn) {
  int rc = txn.commit();
  if (rc == 0)
    return {};
  auto err = lmdb_error(rc, "commit");
  // An I/O error (a positive errno) may have come from the flush that was
  // to carry an unflushed meta page, and Linux reports such an error once:
  // a later flush may succeed without that page on the disk.
  if (rc > 0 && commits_.durable != commits_.last)
    broken_ = error{errc::unavailable,
                    err.message
                      + " while earlier commits waited for their flush; they may "
                        "be lost on a power loss, so the store takes no more "
                        "writes: reopen it",
                    dir_};
  return lmdb_fail(rc, std::move(err));
}

void lmdb_store::learn_commit(staging& st, const head_plan& plan) {
  last_position_ = st.position;
  next_stream_no_ = st.next_stream_no;
  if (chain_on_)
    chain_head_ = st.chain;
  next_command_ = st.next_command;
  for (auto* entry : st.touched) {
    auto& head = entry->second;
    if (!head.staged.dirty)
      continue;
    head.committed = head.staged;
    head.committed.dirty = false;
  }
  if (plan.rewrite) {
    unflushed_.clear();
    heads_at_ = st.position;
  } else {
    for (auto [no, pos] : plan.changed)
      unflushed_.find(no)->second = pos;
  }
  known_types_.merge(st.new_types); // moves the nodes: no allocation
}

} // namespace cairn::persistence::detail
