// What a standby copies (docs/cluster.md#replica-store): frames of the log,
// read on the owner in one short read transaction and applied on the replica
// in one write transaction that maintains every table an append does; the
// epoch records in the log; and the removal of a divergent tail for rejoin.

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <map>
#include <set>

#include "cairn/model/clock.hpp"
#include "cairn/model/stream_name.hpp"
#include "cairn/persistence/codec.hpp"
#include "cairn/persistence/event_json.hpp"
#include "cairn/persistence/personal.hpp"
#include "lmdb/store_impl.hpp"

namespace cairn::persistence::detail {

using namespace format;

namespace {

/// The writer's head cache is dropped when it grows past this many streams
/// (as in write.cpp).
constexpr std::size_t head_cache_limit = std::size_t{1} << 20;
/// Events read per page while the removed tail is saved.
constexpr std::size_t save_page = 4096;

std::string at_position(std::uint64_t p) { return "position " + std::to_string(p); }

/// What a copied record must be besides its checksum and layout: a user
/// record of a valid stream name and type, or an epoch or forget record
/// that decodes.
result<void> check_copied(const record_view& r, std::uint64_t p) {
  if (r.stream == forget_stream) {
    if (r.type != forget_type)
      return fail(errc::corrupted, "a forget record of another type", at_position(p));
    if (auto subject = decode_forget_payload(r.payload); !subject) {
      auto err = subject.error();
      err.context = at_position(p);
      return tl::unexpected(err);
    }
    return {};
  }
  if (is_system_stream(r.stream)) {
    if (r.stream != epoch_stream || r.type != epoch_type)
      return fail(errc::corrupted,
                  "log record of an unknown system stream " + std::string{r.stream.substr(0, 64)},
                  at_position(p));
    auto e = decode_epoch_payload(r.payload);
    if (!e) {
      auto err = e.error();
      err.context = at_position(p);
      return tl::unexpected(err);
    }
    if (e->previous_position != r.prev_position)
      return fail(errc::corrupted,
                  "epoch record names a previous epoch record at position "
                    + std::to_string(e->previous_position) + " but follows "
                    + std::to_string(r.prev_position),
                  at_position(p));
    return {};
  }
  if (auto ok = validate_stream_name(r.stream); !ok)
    return fail(errc::corrupted, "log record has an " + ok.error().message, at_position(p));
  if (!is_valid_type_name(r.type))
    return fail(errc::corrupted, "log record has an invalid type name", at_position(p));
  return {};
}

/// The subject field of a stored record, its checksum unverified (the
/// replica verifies it); empty when it has none or a wrong layout.
std::string_view record_subject(const unsigned char* rec, std::size_t size) {
  record_view v;
  return parse_record(rec, size, v) == nullptr ? v.subject : std::string_view{};
}

/// Writes all of `text` to `fd`; false on an error (errno tells).
bool write_all(int fd, std::string_view text) {
  while (!text.empty()) {
    auto n = ::write(fd, text.data(), text.size());
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      return false;
    text.remove_prefix(static_cast<std::size_t>(n));
  }
  return true;
}

} // namespace

// -- the write loop ------------------------------------------------------------------

template <class T>
result<T> lmdb_store::replication_write(const std::function<lmdb_result<T>()>& attempt) {
  if (opts_.read_only)
    return fail(errc::invalid_argument, "the store is open read-only", dir_);
  if (broken_)
    return tl::unexpected(*broken_);
  for (;;) {
    lmdb_result<T> done;
    try {
      done = attempt();
    } catch (const std::exception& e) { // bad_alloc; the txn was aborted
      return fail(errc::internal, std::string{"write failed: "} + e.what(), dir_);
    }
    if (done) {
      if (auto ok = after_commit(false); !ok)
        return tl::unexpected(ok.error());
      return std::move(*done);
    }
    if (auto again = before_retry(done.error()); !again)
      return tl::unexpected(again.error());
  }
}

// -- reads ------------------------------------------------------------------------------

result<log_frame> lmdb_store::read_frame(std::uint64_t from, std::size_t max_bytes) const {
  if (from == 0)
    return fail(errc::invalid_argument, "log positions start at 1", dir_);
  return with_read([&](MDB_txn* txn) -> result<log_frame> {
    // Retention removed what is below the cut: a standby that needs it must
    // be seeded from a backup (docs/cluster.md#standby).
    if (auto cut = log_cut(txn); !cut)
      return tl::unexpected(cut.error());
    else if (from < *cut)
      return tl::unexpected(truncated_log(from, *cut));
    log_frame out;
    out.first_position = from;
    cursor_guard cur;
    if (int rc = cur.open(txn, log_); rc != 0)
      return tl::unexpected(lmdb_error(rc, "cursor"));
    unsigned char kb[8];
    put_be64(kb, from);
    MDB_val k{8, kb}, v;
    std::size_t bytes = 0;
    // The data keys of the records' subjects, from this same snapshot: the
    // keys table as of the log's end here, which is at or past the frame's
    // last record (apply_frame says why that converges).
    std::map<std::string, std::string, std::less<>> keys;
    int rc = mdb_cursor_get(cur.get(), &k, &v, MDB_SET_RANGE);
    for (; rc == 0; rc = mdb_cursor_get(cur.get(), &k, &v, MDB_NEXT)) {
      auto p = get_be64(static_cast<const unsigned char*>(k.mv_data));
      if (p != out.first_position + out.records.size())
        return fail(errc::corrupted, "log record is missing",
                    at_position(out.first_position + out.records.size()));
      auto subject = record_subject(static_cast<const unsigned char*>(v.mv_data), v.mv_size);
      std::size_t added = v.mv_size;
      std::optional<std::string> key; // the subject's stored key, when new to the frame
      if (!subject.empty() && has_key_tables_ && keys.find(subject) == keys.end()) {
        MDB_val sk = val_of(subject), sv;
        int krc = mdb_get(txn, keys_, &sk, &sv);
        if (krc != 0 && krc != MDB_NOTFOUND)
          return tl::unexpected(lmdb_error(krc, "read data key"));
        if (krc == 0) {
          key.emplace(view_of(sv));
          added += subject.size() + key->size();
        }
      }
      if (!out.records.empty() && bytes + added > max_bytes)
        break;
      out.records.emplace_back(static_cast<const char*>(v.mv_data), v.mv_size);
      if (key)
        keys.emplace(std::string{subject}, std::move(*key));
      bytes += added;
    }
    if (rc != 0 && rc != MDB_NOTFOUND)
      return tl::unexpected(lmdb_error(rc, "read the log"));
    out.keys.reserve(keys.size());
    for (auto& [subject, wrapped] : keys)
      out.keys.push_back(subject_key{subject, std::move(wrapped)});
    return out;
  });
}

result<void> lmdb_store::walk_system_records(
  MDB_txn* txn, std::string_view stream,
  const std::function<result<void>(const format::record_view&, std::uint64_t)>& each) const {
  auto head = read_head(txn, stream);
  if (!head)
    return tl::unexpected(head.error());
  if (!*head)
    return {};
  for (auto pos = (*head)->last_position; pos != 0;) {
    unsigned char kb[8];
    put_be64(kb, pos);
    MDB_val k{8, kb}, v;
    if (int rc = mdb_get(txn, log_, &k, &v); rc == MDB_NOTFOUND)
      break; // older records were removed from the front of the log
    else if (rc != 0)
      return tl::unexpected(lmdb_error(rc, "read a " + std::string{stream} + " record"));
    auto rec = decode_record(static_cast<const unsigned char*>(v.mv_data), v.mv_size, pos);
    if (!rec)
      return tl::unexpected(rec.error());
    if (rec->stream != stream || rec->prev_position >= pos)
      return fail(errc::corrupted,
                  "the chain of " + std::string{stream} + " records leads to another record",
                  at_position(pos));
    if (auto ok = each(*rec, pos); !ok) {
      auto err = ok.error();
      err.context = at_position(pos);
      return tl::unexpected(err);
    }
    pos = rec->prev_position;
  }
  return {};
}

result<std::vector<epoch_info>> lmdb_store::epochs() const {
  return with_read([&](MDB_txn* txn) -> result<std::vector<epoch_info>> {
    std::vector<epoch_info> out;
    auto walked = walk_system_records(
      txn, epoch_stream, [&](const format::record_view& rec, std::uint64_t pos) -> result<void> {
        auto e = decode_epoch_payload(rec.payload);
        if (!e)
          return tl::unexpected(e.error());
        out.push_back(epoch_info{e->epoch, pos, std::string{e->node}, rec.timestamp_ns});
        return {};
      });
    if (!walked)
      return tl::unexpected(walked.error());
    std::reverse(out.begin(), out.end());
    return out;
  });
}

result<std::vector<forget_info>> lmdb_store::forgets() const {
  return with_read([&](MDB_txn* txn) -> result<std::vector<forget_info>> {
    std::vector<forget_info> out;
    auto walked = walk_system_records(
      txn, forget_stream, [&](const format::record_view& rec, std::uint64_t pos) -> result<void> {
        auto subject = decode_forget_payload(rec.payload);
        if (!subject)
          return tl::unexpected(subject.error());
        out.push_back(forget_info{std::string{*subject}, pos, rec.timestamp_ns});
        return {};
      });
    if (!walked)
      return tl::unexpected(walked.error());
    std::reverse(out.begin(), out.end());
    return out;
  });
}

result<std::uint64_t> lmdb_store::current_epoch() const {
  return with_read([&](MDB_txn* txn) -> result<std::uint64_t> {
    MDB_val k = val_of(epoch_key), v;
    int rc = mdb_get(txn, meta_, &k, &v);
    if (rc == MDB_NOTFOUND)
      return std::uint64_t{0};
    if (rc != 0)
      return tl::unexpected(lmdb_error(rc, "read the epoch"));
    auto e = decode_epoch_header(view_of(v));
    if (!e)
      return tl::unexpected(e.error());
    return e->first;
  });
}

result<void> lmdb_store::load_epoch(MDB_txn* txn) {
  MDB_val k = val_of(epoch_key), v;
  int rc = mdb_get(txn, meta_, &k, &v);
  if (rc == MDB_NOTFOUND)
    return {};
  if (rc != 0)
    return tl::unexpected(lmdb_error(rc, "read the epoch"));
  auto e = decode_epoch_header(view_of(v));
  if (!e)
    return tl::unexpected(e.error());
  epoch_ = e->first;
  epoch_position_ = e->second;
  return {};
}

result<std::pair<std::uint64_t, std::uint64_t>>
lmdb_store::newest_epoch_record(MDB_txn* txn) const {
  using found = std::pair<std::uint64_t, std::uint64_t>;
  auto head = read_head(txn, epoch_stream);
  if (!head)
    return tl::unexpected(head.error());
  if (!*head)
    return found{0, 0};
  auto pos = (*head)->last_position;
  unsigned char kb[8];
  put_be64(kb, pos);
  MDB_val k{8, kb}, v;
  if (int rc = mdb_get(txn, log_, &k, &v); rc != 0)
    return tl::unexpected(lmdb_error(rc, "read the newest epoch record"));
  auto rec = decode_record(static_cast<const unsigned char*>(v.mv_data), v.mv_size, pos);
  if (!rec)
    return tl::unexpected(rec.error());
  auto e = decode_epoch_payload(rec->payload);
  if (!e) {
    auto err = e.error();
    err.context = at_position(pos);
    return tl::unexpected(err);
  }
  return found{e->epoch, pos};
}

// -- apply_frame -----------------------------------------------------------------------

result<std::uint64_t> lmdb_store::apply_frame(const log_frame& frame) {
  if (opts_.read_only)
    return fail(errc::invalid_argument, "the store is open read-only", dir_);
  // The owner's checkpoints come from another node: checked like its records.
  if (auto ok = check_frame_checkpoints(frame); !ok)
    return tl::unexpected(ok.error());
  if (frame.records.empty() && frame.checkpoints.empty())
    return last_position_;
  if (frame.records.empty()) {
    auto done = replication_write<result<std::uint64_t>>([&]() { return try_apply(frame, {}); });
    if (!done)
      return tl::unexpected(done.error());
    return std::move(*done);
  }
  if (frame.first_position == 0)
    return fail(errc::invalid_argument, "log positions start at 1", dir_);
  if (frame.records.size() > no_limit - frame.first_position)
    return fail(errc::invalid_argument, "the frame runs past the largest position", dir_);
  // Verified before any transaction: a bad frame is refused, never half-written.
  std::vector<record_view> records;
  records.reserve(frame.records.size());
  for (std::size_t i = 0; i < frame.records.size(); ++i) {
    auto p = frame.first_position + i;
    const auto& bytes = frame.records[i];
    auto rec = decode_record(reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size(), p);
    if (!rec)
      return tl::unexpected(rec.error());
    if (auto ok = check_copied(*rec, p); !ok)
      return tl::unexpected(ok.error());
    records.push_back(*rec);
  }
  // The keys too, and they must open with this store's master key: a
  // replica that stored keys it cannot open would read every personal field
  // as absent after a promotion, as if each subject had been forgotten.
  for (const auto& k : frame.keys) {
    if (k.subject.empty() || k.subject.size() > max_short_field)
      return fail(errc::corrupted,
                  "the frame carries a data key of a subject that is not 1-255 bytes", dir_);
    if (auto w = decode_wrapped_key(k.subject, k.wrapped); !w) {
      auto err = w.error();
      err.context = "the data key of subject " + k.subject + " in the frame";
      return tl::unexpected(err);
    }
    if (!ring_)
      return fail(
        errc::invalid_argument,
        "the owner's log has personal data (the frame carries data keys) but this "
        "replica has no master key: open the standby with the owner's master key "
        "(store_options::master_key_file or master_key_env, the node's --master-key-file)",
        dir_);
    if (!ring_->opens(k.subject, k.wrapped))
      return fail(errc::invalid_argument,
                  "the owner's data keys do not open with this replica's master key (subject "
                    + k.subject
                    + "): open the standby with the same master key as its owner, or its personal "
                      "data reads as forgotten after a promotion",
                  dir_);
  }
  if (frame.first_position > last_position_ + 1)
    return fail(errc::invalid_argument,
                "the frame starts at position " + std::to_string(frame.first_position)
                  + " but the replica ends at position " + std::to_string(last_position_)
                  + ": the positions between are missing",
                dir_);
  auto done = replication_write<result<std::uint64_t>>([&]() { return try_apply(frame, records); });
  if (!done)
    return tl::unexpected(done.error());
  return std::move(*done);
}

lmdb_result<result<std::uint64_t>> lmdb_store::try_apply(const log_frame& frame,
                                                         const std::vector<record_view>& records) {
  using refused = result<std::uint64_t>;
  // The key ring reads no key of a subject whose key this transaction
  // deletes or replaces, and afterwards asks the table again (as write.cpp
  // does around a forget).
  struct ring_settled {
    lmdb_key_ring* ring;
    std::vector<std::string> subjects;
    ~ring_settled() {
      if (ring != nullptr)
        for (const auto& s : subjects)
          ring->forgotten(s);
    }
  } settled{ring_.get(), {}};
  auto unsettle = [&](std::string_view subject) {
    if (settled.ring == nullptr)
      return;
    settled.ring->forgetting(subject);
    settled.subjects.emplace_back(subject);
  };
  std::optional<preallocator::guard> guard; // held for the whole transaction, as in write.cpp
  if (prealloc_)
    guard.emplace(prealloc_.get());
  MDB_txn* raw = nullptr;
  if (int rc = mdb_txn_begin(env_, nullptr, 0, &raw); rc != 0)
    return lmdb_fail(rc, "begin write");
  txn_guard txn{raw};
  if (head_cache_.size() > head_cache_limit || tenants_.size() > head_cache_limit) {
    head_cache_.clear(); // only here: staging points into the cache
    tenants_.clear();
  }
  staging st = begin_staging();
  // The command records this frame writes or extends: an append's records
  // are consecutive, and a frame may end inside one.
  std::map<std::string, append_result> commands;
  std::optional<std::pair<std::uint64_t, std::uint64_t>> new_epoch;
  std::uint64_t epoch_now = epoch_;
  for (std::size_t i = 0; i < records.size(); ++i) {
    const auto p = frame.first_position + i;
    const auto& bytes = frame.records[i];
    const auto& r = records[i];
    unsigned char kb[8];
    put_be64(kb, p);
    MDB_val k{8, kb}, v;
    if (p <= st.position) { // already here: the same bytes, or a divergent history
      int rc = mdb_get(raw, log_, &k, &v);
      if (rc == MDB_NOTFOUND)
        continue; // removed from the front of the log: nothing left to compare
      if (rc != 0)
        return lmdb_fail(rc, "read the log");
      if (view_of(v) != bytes)
        return refused{fail(errc::conflict,
                            "the record at position " + std::to_string(p)
                              + " differs from the replica's: the two logs diverged there "
                                "(truncate the replica's tail to rejoin)",
                            at_position(p))};
      continue;
    }
    auto staged_head = writer_head(raw, r.stream, st);
    if (!staged_head)
      return tl::unexpected(staged_head.error());
    head_state* head = *staged_head;
    if (r.version != head->version + 1 || r.prev_position != head->last_position)
      return refused{fail(errc::corrupted,
                          "the record is version " + std::to_string(r.version) + " of "
                            + std::string{r.stream} + " after position "
                            + std::to_string(r.prev_position) + ", but the replica's stream is at "
                            + "version " + std::to_string(head->version) + ", position "
                            + std::to_string(head->last_position),
                          at_position(p))};
    head->dirty = true;
    if (head->stream_no == 0)
      head->stream_no = st.next_stream_no++;
    v = MDB_val{bytes.size(), nullptr};
    if (int rc = mdb_put(raw, log_, &k, &v, MDB_APPEND | MDB_RESERVE); rc != 0)
      return lmdb_fail(rc, "write log record");
    std::memcpy(v.mv_data, bytes.data(), bytes.size());
    if (chain_on_) {
      st.chain = chain_next(st.chain, static_cast<const unsigned char*>(v.mv_data), v.mv_size);
      chain_prefixes_.append(reinterpret_cast<const char*>(st.chain.data()), digest_prefix_size);
    }
    head->version = r.version;
    head->last_position = p;
    st.position = p;
    if (r.version % index_interval == 0) {
      auto key = pair_key(head->stream_no, r.version);
      if (auto ok = put_value(raw, index_, key, seal(key, u64_body(p)), "write stream index"); !ok)
        return tl::unexpected(ok.error());
    }
    std::pair<std::string, std::uint32_t> type{std::string{r.type}, r.schema_version};
    if (known_types_.count(type) == 0)
      st.new_types.insert(std::move(type));
    // The stream's tenant, as note_tenant (write.cpp) keeps it.
    if (!r.tenant.empty()) {
      if (head->tenant == nullptr || head->tenant->empty())
        head->tenant = &*tenants_.insert(std::string{r.tenant}).first;
    } else if (head->tenant == nullptr && r.version == 1) {
      head->tenant = &*tenants_.insert(std::string{}).first;
    }
    if (!r.command_id.empty()) {
      auto key = command_key(head->stream_no, r.command_id);
      std::optional<append_result> known;
      if (auto it = commands.find(key); it != commands.end()) {
        known = it->second;
      } else if (r.version > 1) {
        MDB_val ck = val_of(key), cv;
        int rc = mdb_get(raw, commands_, &ck, &cv);
        if (rc != 0 && rc != MDB_NOTFOUND)
          return lmdb_fail(rc, "read command record");
        if (rc == 0) {
          auto stored = decode_outcome(key, view_of(cv), std::string{r.stream});
          if (!stored)
            return refused{tl::unexpected(stored.error())};
          known = *stored;
        }
      }
      if (!known) {
        commands[key] = append_result{r.version, r.version, p, p, false};
      } else if (known->last_position + 1 == p && known->last_version + 1 == r.version) {
        known->last_version = r.version;
        known->last_position = p;
        commands[key] = *known;
      } else {
        return refused{
          fail(errc::corrupted,
               "command id " + std::string{r.command_id} + " of " + std::string{r.stream}
                 + " is recorded for positions " + std::to_string(known->first_position) + "-"
                 + std::to_string(known->last_position) + " already; an append never repeats one",
               at_position(p))};
      }
    }
    if (!r.subject.empty()) {
      auto key = subject_stream_key(r.subject, r.stream);
      if (auto ok = put_value(raw, subjects_, key, seal(key, {}), "write subject index"); !ok)
        return tl::unexpected(ok.error());
    }
    if (r.stream == epoch_stream) {
      auto e = decode_epoch_payload(r.payload); // verified before the transaction
      if (!e || e->epoch <= epoch_now)
        return refused{
          fail(errc::corrupted,
               "the epoch record does not begin a newer epoch than " + std::to_string(epoch_now),
               at_position(p))};
      epoch_now = e->epoch;
      new_epoch = std::pair{e->epoch, p};
    }
    if (r.stream == forget_stream) { // as the owner's forget: key, subject index, snapshots
      auto subject = decode_forget_payload(r.payload); // verified before the transaction
      if (!subject)
        return refused{tl::unexpected(subject.error())};
      std::string name{*subject};
      if (settled.ring != nullptr) // stage_forget tells the ring it is forgetting
        settled.subjects.push_back(name);
      if (auto ok = stage_forget(raw, name); !ok)
        return tl::unexpected(ok.error());
    }
  }
  if (st.position == last_position_ && frame.checkpoints.empty())
    return refused{last_position_}; // nothing new: the transaction aborts
  // The frame's keys go in after its records, forget records included. Why
  // this ends with the owner's keys: the keys were read in the owner's read
  // transaction of the records, at a log end E >= the frame's last position,
  // and the owner replaces a subject's key only after a forget. A frame
  // that brings a new record was read after everything the replica holds
  // (the replica's end < the frame's last <= E), so its keys are never older
  // than the replica's. For a subject S of the frame:
  //  - no forget of S after E: the key the frame carries is the owner's
  //    key for good (until a later forget, whose record a later frame brings
  //    and which deletes it here too);
  //  - a forget of S up to E: the frame carries the key made after that
  //    forget, or none when S has none at E. A forget record in this frame
  //    deleted the old key above, before this stores the new one; a forget
  //    record in a later frame deletes what this stores, and the frame that
  //    holds the record about S that made the new key carries it again.
  // So the replica never keeps a key the owner had deleted when the frame
  // was read; it may drop or replace a key a little before the forget
  // record arrives, never after. A frame that brings nothing new stores no
  // key (the test below): a resent old frame cannot bring back a key a
  // later forget deleted.
  const bool brings_records = st.position != last_position_;
  for (const auto& k : frame.keys) {
    if (!brings_records)
      break;
    MDB_val sk = val_of(k.subject), sv;
    int rc = mdb_get(raw, keys_, &sk, &sv);
    if (rc != 0 && rc != MDB_NOTFOUND)
      return lmdb_fail(rc, "read data key");
    if (rc == 0 && view_of(sv) == k.wrapped)
      continue;
    unsettle(k.subject);
    if (auto ok = put_value(raw, keys_, k.subject, k.wrapped, "write data key"); !ok)
      return tl::unexpected(ok.error());
  }
  // The owner's checkpoints, never past what the replica holds with this
  // frame: the owner read them after the records, and they may be ahead.
  for (const auto& cp : frame.checkpoints) {
    auto name = replicated_checkpoint_name(cp.name);
    if (auto ok = put_value(raw, checkpoints_, name,
                            seal(name, u64_body(std::min(cp.position, st.position))),
                            "write a replicated checkpoint");
        !ok)
      return tl::unexpected(ok.error());
  }
  for (const auto& [key, outcome] : commands)
    if (auto ok = put_value(raw, commands_, key, seal(key, encode_outcome(outcome)),
                            "write command record");
        !ok)
      return tl::unexpected(ok.error());
  if (auto ok = stage_chain(raw, st); !ok)
    return tl::unexpected(ok.error());
  auto plan = stage_heads(raw, st);
  if (!plan)
    return tl::unexpected(plan.error());
  if (auto ok = stage_names_and_types(raw, st); !ok)
    return tl::unexpected(ok.error());
  if (new_epoch)
    if (auto ok =
          put_value(raw, meta_, epoch_key,
                    seal(epoch_key, encode_epoch_header(new_epoch->first, new_epoch->second)),
                    "write the epoch");
        !ok)
      return tl::unexpected(ok.error());
  if (auto ok = commit_staged(txn, guard, st, *plan); !ok)
    return tl::unexpected(ok.error());
  if (new_epoch) {
    epoch_ = new_epoch->first;
    epoch_position_ = new_epoch->second;
  }
  return refused{last_position_};
}

// -- begin_epoch -----------------------------------------------------------------------

result<epoch_info> lmdb_store::begin_epoch(std::uint64_t epoch, std::string_view node) {
  if (opts_.read_only)
    return fail(errc::invalid_argument, "the store is open read-only", dir_);
  if (node.empty() || node.size() > max_epoch_node)
    return fail(errc::invalid_argument, "a node name is 1-255 bytes", dir_);
  if (epoch <= epoch_)
    return fail(errc::conflict,
                "epoch " + std::to_string(epoch) + " is not newer than the store's epoch "
                  + std::to_string(epoch_),
                dir_);
  auto done = replication_write<result<epoch_info>>([&]() { return try_begin_epoch(epoch, node); });
  if (!done)
    return tl::unexpected(done.error());
  return std::move(*done);
}

lmdb_result<result<epoch_info>> lmdb_store::try_begin_epoch(std::uint64_t epoch,
                                                            std::string_view node) {
  std::optional<preallocator::guard> guard;
  if (prealloc_)
    guard.emplace(prealloc_.get());
  MDB_txn* raw = nullptr;
  if (int rc = mdb_txn_begin(env_, nullptr, 0, &raw); rc != 0)
    return lmdb_fail(rc, "begin write");
  txn_guard txn{raw};
  staging st = begin_staging();
  auto head = writer_head(raw, epoch_stream, st);
  if (!head)
    return tl::unexpected(head.error());
  // The system record goes through the append path, past validate_request
  // (whose stream name check refuses '$' to every user append).
  append_request req;
  req.stream = std::string{epoch_stream};
  req.expected = expected_version::exact((*head)->version);
  auto& ev = req.events.emplace_back();
  ev.type = std::string{epoch_type};
  ev.payload = encode_epoch_payload(epoch_payload{epoch, (*head)->last_position, node});
  auto now = wall_now_ns();
  auto staged = stage_append(raw, req, st, now);
  if (!staged)
    return tl::unexpected(staged.error());
  if (!*staged)
    return result<epoch_info>{tl::unexpected(staged->error())};
  const auto position = (*staged)->last_position;
  if (auto ok = stage_chain(raw, st); !ok)
    return tl::unexpected(ok.error());
  auto plan = stage_heads(raw, st);
  if (!plan)
    return tl::unexpected(plan.error());
  if (auto ok = stage_names_and_types(raw, st); !ok)
    return tl::unexpected(ok.error());
  if (auto ok = put_value(raw, meta_, epoch_key,
                          seal(epoch_key, encode_epoch_header(epoch, position)), "write the epoch");
      !ok)
    return tl::unexpected(ok.error());
  if (auto ok = commit_staged(txn, guard, st, *plan); !ok)
    return tl::unexpected(ok.error());
  epoch_ = epoch;
  epoch_position_ = position;
  return result<epoch_info>{epoch_info{epoch, position, std::string{node}, now}};
}

// -- truncate_after ----------------------------------------------------------------------

result<truncation> lmdb_store::truncate_after(std::uint64_t position,
                                              const std::string& save_file) {
  if (opts_.read_only)
    return fail(errc::invalid_argument, "the store is open read-only", dir_);
  if (broken_)
    return tl::unexpected(*broken_);
  truncation out;
  if (position >= last_position_)
    return out;
  out.first_removed = position + 1;
  out.last_removed = last_position_;
  out.records = last_position_ - position;
  out.saved_to = save_file;
  // The removed events go to the file first, durably: the store forgets them next.
  if (save_file.empty())
    return fail(errc::invalid_argument, "truncate_after needs a file to save the removed events to",
                dir_);
  int fd = ::open(save_file.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0) {
    int err = errno;
    return fail(err == EEXIST ? errc::invalid_argument : errc::unavailable,
                std::string{"cannot create the file for the removed events: "} + std::strerror(err)
                  + (err == EEXIST ? " (it is never overwritten)" : ""),
                save_file);
  }
  auto saved = [&]() -> result<void> {
    std::string header = "{\"cairn_export\":1,\"events\":" + std::to_string(out.records)
                         + ",\"checkpoints\":0,\"truncated_after\":" + std::to_string(position)
                         + "}\n";
    if (!write_all(fd, header))
      return fail(errc::unavailable, std::string{"cannot write: "} + std::strerror(errno),
                  save_file);
    read_filter every;
    every.include_system = true;
    std::uint64_t written = 0;
    for (auto pos = position + 1; pos <= out.last_removed;) {
      auto page = read_all(pos, save_page, every);
      if (!page)
        return tl::unexpected(page.error());
      std::string lines;
      for (const auto& ev : page->events) {
        if (ev.position > out.last_removed)
          break;
        personal_scope scope{personal_keys(), ev.meta.subject};
        lines += event_json(ev, opts_.registry, true);
        lines += '\n';
        ++written;
      }
      if (!write_all(fd, lines))
        return fail(errc::unavailable, std::string{"cannot write: "} + std::strerror(errno),
                    save_file);
      if (page->next_position <= pos)
        break;
      pos = page->next_position;
    }
    if (written != out.records)
      return fail(errc::corrupted,
                  "the log has gaps after position " + std::to_string(position) + ": "
                    + std::to_string(written) + " records instead of " + std::to_string(out.records)
                    + " (run cairn verify)",
                  dir_);
    if (::fsync(fd) != 0)
      return fail(errc::unavailable, std::string{"cannot flush: "} + std::strerror(errno),
                  save_file);
    return {};
  }();
  ::close(fd);
  if (!saved) {
    std::error_code ec;
    std::filesystem::remove(save_file, ec);
    return tl::unexpected(saved.error());
  }
  { // the file's name survives a power loss too
    auto parent = std::filesystem::absolute(save_file).parent_path();
    int dfd = ::open(parent.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
      (void)::fsync(dfd); // best effort
      ::close(dfd);
    }
  }
  auto done = replication_write<result<truncation>>([&]() { return try_truncate(position, out); });
  if (!done)
    return tl::unexpected(done.error());
  return std::move(*done);
}

lmdb_result<result<truncation>> lmdb_store::try_truncate(std::uint64_t position, truncation out) {
  using refused = result<truncation>;
  std::optional<preallocator::guard> guard;
  if (prealloc_)
    guard.emplace(prealloc_.get());
  MDB_txn* raw = nullptr;
  if (int rc = mdb_txn_begin(env_, nullptr, 0, &raw); rc != 0)
    return lmdb_fail(rc, "begin write");
  txn_guard txn{raw};
  // What the removed records touched, per stream: learned in one pass over
  // them before anything is deleted (record views do not outlive a write).
  struct cut_stream {
    std::uint64_t no = 0;
    std::uint64_t version = 0;  ///< Its version after the cut (0: the stream goes).
    std::uint64_t position = 0; ///< Its head after the cut.
    std::set<std::string> commands, subjects;
    std::vector<std::uint64_t> indexed; ///< Removed versions with a stream index entry.
  };
  std::map<std::string, cut_stream> streams;
  std::vector<std::uint64_t> removed;
  {
    cursor_guard cur;
    if (int rc = cur.open(raw, log_); rc != 0)
      return lmdb_fail(rc, "cursor");
    unsigned char kb[8];
    put_be64(kb, position + 1);
    MDB_val k{8, kb}, v;
    int rc = mdb_cursor_get(cur.get(), &k, &v, MDB_SET_RANGE);
    for (; rc == 0; rc = mdb_cursor_get(cur.get(), &k, &v, MDB_NEXT)) {
      auto p = get_be64(static_cast<const unsigned char*>(k.mv_data));
      auto rec = decode_record(static_cast<const unsigned char*>(v.mv_data), v.mv_size, p);
      if (!rec)
        return refused{tl::unexpected(rec.error())};
      auto [it, first] = streams.try_emplace(std::string{rec->stream});
      auto& s = it->second;
      if (first) {
        auto no = stream_number(raw, rec->stream);
        if (!no)
          return refused{tl::unexpected(no.error())};
        if (!*no)
          return refused{
            fail(errc::corrupted, "an event of a stream without a name entry", at_position(p))};
        s.no = **no;
        s.version = rec->version - 1;
        s.position = rec->prev_position;
      }
      if (rec->version % index_interval == 0)
        s.indexed.push_back(rec->version);
      if (!rec->command_id.empty())
        s.commands.emplace(rec->command_id);
      if (!rec->subject.empty())
        s.subjects.emplace(rec->subject);
      removed.push_back(p);
    }
    if (rc != 0 && rc != MDB_NOTFOUND)
      return lmdb_fail(rc, "read the log");
  }
  for (auto p : removed)
    if (auto ok = erase_value(raw, log_, be64_key(p), "remove a log record"); !ok)
      return tl::unexpected(ok.error());
  std::uint64_t next_stream_no = next_stream_no_;
  head_pairs heads;
  std::map<std::uint64_t, std::uint64_t> kept_heads; // stream number -> head, every changed one
  for (auto [no, pos] : unflushed_)
    if (pos != 0) // 0: left by a failed commit, the table has the head
      kept_heads[no] = pos;
  for (auto& [name, s] : streams) {
    kept_heads[s.no] = s.position; // 0 empties the slot
    for (auto version : s.indexed)
      if (auto ok = erase_value(raw, index_, pair_key(s.no, version), "remove an index entry"); !ok)
        return tl::unexpected(ok.error());
    for (const auto& id : s.commands) {
      auto key = command_key(s.no, id);
      MDB_val ck = val_of(key), cv;
      int rc = mdb_get(raw, commands_, &ck, &cv);
      if (rc == MDB_NOTFOUND)
        continue;
      if (rc != 0)
        return lmdb_fail(rc, "read command record");
      auto r = decode_outcome(key, view_of(cv), name);
      if (!r)
        return refused{tl::unexpected(r.error())};
      if (r->first_position > position) {
        if (auto ok = erase_value(raw, commands_, key, "remove a command record"); !ok)
          return tl::unexpected(ok.error());
      } else if (r->last_position > position) { // the cut splits its append: keep the front
        r->last_version = r->first_version + (position - r->first_position);
        r->last_position = position;
        r->duplicate = false;
        if (auto ok = put_value(raw, commands_, key, seal(key, encode_outcome(*r)),
                                "write command record");
            !ok)
          return tl::unexpected(ok.error());
      }
    }
    for (const auto& subject : s.subjects) {
      // Kept when an event the cut keeps is about the subject too.
      bool kept = false;
      for (auto pos = s.position; pos != 0 && !kept;) {
        unsigned char kb[8];
        put_be64(kb, pos);
        MDB_val k{8, kb}, v;
        int rc = mdb_get(raw, log_, &k, &v);
        if (rc == MDB_NOTFOUND)
          break; // the older part was removed from the front of the log
        if (rc != 0)
          return lmdb_fail(rc, "read the log");
        auto rec = decode_record(static_cast<const unsigned char*>(v.mv_data), v.mv_size, pos);
        if (!rec)
          return refused{tl::unexpected(rec.error())};
        if (rec->prev_position >= pos)
          return refused{
            fail(errc::corrupted, "a back-pointer that does not point back", at_position(pos))};
        kept = rec->subject == subject;
        pos = rec->prev_position;
      }
      if (!kept)
        if (auto ok = erase_value(raw, subjects_, subject_stream_key(subject, name),
                                  "remove a subject index entry");
            !ok)
          return tl::unexpected(ok.error());
    }
    { // snapshots of versions past the stream's new head
      cursor_guard snaps;
      if (int rc = snaps.open(raw, snapshots_); rc != 0)
        return lmdb_fail(rc, "cursor");
      auto from = pair_key(s.no, s.version + 1);
      MDB_val sk = val_of(from), sv;
      int rc = mdb_cursor_get(snaps.get(), &sk, &sv, MDB_SET_RANGE);
      while (rc == 0 && sk.mv_size == 16
             && get_be64(static_cast<const unsigned char*>(sk.mv_data)) == s.no) {
        if (int drc = mdb_cursor_del(snaps.get(), 0); drc != 0)
          return lmdb_fail(drc, "remove a snapshot");
        ++out.snapshots_dropped;
        rc = mdb_cursor_get(snaps.get(), &sk, &sv, MDB_NEXT); // the one after the deleted
      }
      if (rc != 0 && rc != MDB_NOTFOUND)
        return lmdb_fail(rc, "read snapshots");
    }
    if (s.version == 0) { // the stream began in the tail: it goes, and its number is free
      if (auto ok = erase_value(raw, names_, name, "remove a stream name"); !ok)
        return tl::unexpected(ok.error());
      next_stream_no = std::min(next_stream_no, s.no);
    }
  }
  // The heads table takes every head and the head log starts over at the cut.
  heads.assign(kept_heads.begin(), kept_heads.end());
  if (auto ok = write_heads(raw, heads); !ok)
    return tl::unexpected(ok.error());
  // Buckets left with no stream go: an open numbers new streams from the
  // highest slot in use in the last bucket, and the removed streams had the
  // highest numbers (streams are numbered in the order of their first event).
  for (;;) {
    cursor_guard cur;
    if (int rc = cur.open(raw, heads_); rc != 0)
      return lmdb_fail(rc, "cursor");
    MDB_val k, v;
    int rc = mdb_cursor_get(cur.get(), &k, &v, MDB_LAST);
    if (rc == MDB_NOTFOUND)
      break;
    if (rc != 0)
      return lmdb_fail(rc, "read heads");
    auto key = view_of(k);
    auto bucket = decode_heads_bucket(key, view_of(v), "the last heads bucket", dir_);
    if (!bucket)
      return refused{tl::unexpected(bucket.error())};
    if (bucket->find_first_not_of('\0') != std::string_view::npos)
      break;
    if (int drc = mdb_cursor_del(cur.get(), 0); drc != 0)
      return lmdb_fail(drc, "remove an empty heads bucket");
  }
  if (int rc = mdb_drop(raw, head_log_, 0); rc != 0)
    return lmdb_fail(rc, "empty the head log");
  if (auto ok = put_value(raw, meta_, heads_at_key, seal(heads_at_key, u64_body(position)),
                          "write heads_at");
      !ok)
    return tl::unexpected(ok.error());
  // The digest chain ends exactly at the cut: entries past it go, and one
  // that covered the cut is replaced by one for its kept part.
  std::vector<std::string> chain_keys;
  {
    cursor_guard cur;
    if (int rc = cur.open(raw, chain_); rc != 0)
      return lmdb_fail(rc, "cursor");
    auto from = be64_key(position + 1);
    MDB_val k = val_of(from), v;
    int rc = mdb_cursor_get(cur.get(), &k, &v, MDB_SET_RANGE);
    for (; rc == 0; rc = mdb_cursor_get(cur.get(), &k, &v, MDB_NEXT))
      chain_keys.emplace_back(view_of(k));
    if (rc != MDB_NOTFOUND)
      return lmdb_fail(rc, "read digest chain");
  }
  for (const auto& key : chain_keys)
    if (auto ok = erase_value(raw, chain_, key, "remove a digest chain entry"); !ok)
      return tl::unexpected(ok.error());
  auto base = chain_base(raw, position);
  if (!base)
    return refused{tl::unexpected(base.error())};
  digest h = base->second;
  if (chain_on_ && base->first < position) {
    std::string prefixes;
    for (auto pos = base->first + 1; pos <= position; ++pos) {
      unsigned char kb[8];
      put_be64(kb, pos);
      MDB_val k{8, kb}, v;
      if (int rc = mdb_get(raw, log_, &k, &v); rc != 0)
        return rc == MDB_NOTFOUND ? lmdb_result<refused>{refused{
                 fail(errc::corrupted, "log record is missing", at_position(pos))}}
                                  : lmdb_fail(rc, "read the log");
      auto* rec = static_cast<const unsigned char*>(v.mv_data);
      if (auto ok = decode_record(rec, v.mv_size, pos); !ok)
        return refused{tl::unexpected(ok.error())};
      h = chain_next(h, rec, v.mv_size);
      prefixes.append(reinterpret_cast<const char*>(h.data()), digest_prefix_size);
    }
    auto key = be64_key(position);
    std::string entry(seal_size + chain_entry_header_size + prefixes.size(), '\0');
    encode_chain_entry(reinterpret_cast<unsigned char*>(entry.data()), key, h, prefixes);
    if (auto ok = put_value(raw, chain_, key, entry, "write digest chain"); !ok)
      return tl::unexpected(ok.error());
  }
  // Checkpoints past the cut stand at it; dead letters of removed events go.
  std::vector<checkpoint> lowered;
  std::vector<std::string> letters;
  {
    cursor_guard cur;
    if (int rc = cur.open(raw, checkpoints_); rc != 0)
      return lmdb_fail(rc, "cursor");
    MDB_val k, v;
    int rc = mdb_cursor_get(cur.get(), &k, &v, MDB_FIRST);
    for (; rc == 0; rc = mdb_cursor_get(cur.get(), &k, &v, MDB_NEXT)) {
      auto name = view_of(k);
      auto at = decode_u64(name, view_of(v), "checkpoint " + std::string{name});
      if (!at)
        return refused{tl::unexpected(at.error())};
      if (*at > position)
        lowered.push_back(checkpoint{std::string{name}, *at});
    }
    if (rc != MDB_NOTFOUND)
      return lmdb_fail(rc, "read checkpoints");
  }
  if (has_side_tables_) {
    cursor_guard cur;
    if (int rc = cur.open(raw, dead_letters_); rc != 0)
      return lmdb_fail(rc, "cursor");
    MDB_val k, v;
    int rc = mdb_cursor_get(cur.get(), &k, &v, MDB_FIRST);
    for (; rc == 0; rc = mdb_cursor_get(cur.get(), &k, &v, MDB_NEXT)) {
      auto key = view_of(k);
      if (key.size() >= 9
          && get_be64(reinterpret_cast<const unsigned char*>(key.data() + key.size() - 8))
               > position)
        letters.emplace_back(key);
    }
    if (rc != MDB_NOTFOUND)
      return lmdb_fail(rc, "read dead letters");
  }
  for (const auto& cp : lowered)
    if (auto ok = put_value(raw, checkpoints_, cp.name, seal(cp.name, u64_body(position)),
                            "write checkpoint");
        !ok)
      return tl::unexpected(ok.error());
  for (const auto& key : letters)
    if (auto ok = erase_value(raw, dead_letters_, key, "remove a dead letter"); !ok)
      return tl::unexpected(ok.error());
  out.lowered = std::move(lowered);
  out.dead_letters_dropped = letters.size();
  // The command log forgets the commands whose events were removed, and the
  // commands without events recorded after the first of them.
  std::uint64_t next_command = next_command_;
  if (has_command_log_) {
    std::vector<std::string> keys;
    std::uint64_t first_cut = 0;
    cursor_guard cur;
    if (int rc = cur.open(raw, command_log_); rc != 0)
      return lmdb_fail(rc, "cursor");
    MDB_val k, v;
    int rc = mdb_cursor_get(cur.get(), &k, &v, MDB_LAST);
    for (; rc == 0; rc = mdb_cursor_get(cur.get(), &k, &v, MDB_PREV)) {
      auto c = decode_command(view_of(k), view_of(v));
      if (!c)
        return refused{tl::unexpected(c.error())};
      if (c->first_position != 0 && c->first_position <= position)
        break;
      keys.emplace_back(view_of(k));
      if (c->first_position != 0)
        first_cut = get_be64(static_cast<const unsigned char*>(k.mv_data));
    }
    if (rc != 0 && rc != MDB_NOTFOUND)
      return lmdb_fail(rc, "read the command log");
    for (const auto& key : keys) {
      auto seq = get_be64(reinterpret_cast<const unsigned char*>(key.data()));
      if (first_cut == 0 || seq < first_cut)
        continue;
      if (auto ok = erase_value(raw, command_log_, key, "remove a command log entry"); !ok)
        return tl::unexpected(ok.error());
      next_command = std::min(next_command, seq);
    }
  }
  // The header's epoch: the newest epoch record kept.
  auto epoch = newest_epoch_record(raw);
  if (!epoch)
    return refused{tl::unexpected(epoch.error())};
  if (epoch->first == 0) {
    if (auto ok = erase_value(raw, meta_, epoch_key, "remove the epoch"); !ok)
      return tl::unexpected(ok.error());
  } else if (auto ok = put_value(raw, meta_, epoch_key,
                                 seal(epoch_key, encode_epoch_header(epoch->first, epoch->second)),
                                 "write the epoch");
             !ok) {
    return tl::unexpected(ok.error());
  }
  if (auto ok = commit(txn); !ok)
    return tl::unexpected(ok.error());
  if (guard) {
    guard->committed(data_end());
    guard.reset();
  }
  // The writer's state as a fresh open would load it.
  last_position_ = position;
  next_stream_no_ = next_stream_no;
  next_command_ = next_command;
  heads_at_ = position;
  unflushed_.clear();
  head_cache_.clear();
  tenants_.clear();
  if (chain_on_)
    chain_head_ = h;
  epoch_ = epoch->first;
  epoch_position_ = epoch->second;
  {
    std::lock_guard lock{tail_mu_}; // the readers' index of the dropped head log
    tail_ = tail_index{};
  }
  return refused{std::move(out)};
}

} // namespace cairn::persistence::detail
