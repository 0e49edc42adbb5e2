#pragma once

/// aggregate_type: one aggregate type's pure functions behind a non-template
/// interface, so the actor that runs it (aggregate_actor.cpp) is compiled
/// once for all types. typed_aggregate<A> is the small adapter that holds
/// A's initial/decide/evolve and codecs; the core sees states and decided
/// events only as boxes.
///
///   auto type = std::make_shared<cairn::actors::typed_aggregate<account>>(events);
///   auto s = type->initial("account-42");               // result<unique_ptr<state_box>>
///   auto d = type->decide(**s, command_bytes, "account-42");
///   if (d) type->evolve(**s, *d->events, "account-42");
///
/// Every call runs user code guarded: what it throws comes back as
/// `internal` naming the call, never as an exception. No CAF in here.

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "cairn/model/aggregate.hpp"
#include "cairn/model/error.hpp"
#include "cairn/model/match.hpp"
#include "cairn/persistence/codec.hpp"
#include "cairn/persistence/event_store.hpp"
#include "cairn/persistence/personal.hpp"

namespace cairn::actors {

/// An aggregate's state, held without its type.
struct state_box {
  virtual ~state_box() = default;
};

/// The events one command decided, held typed without their type, for evolve.
struct events_box {
  virtual ~events_box() = default;
};

/// What a command decided: its events encoded for the store, and typed.
struct decided {
  std::vector<persistence::event_data> encoded;
  std::unique_ptr<events_box> events;
};

class aggregate_type {
public:
  virtual ~aggregate_type() = default;

  /// "account": the category of its streams.
  [[nodiscard]] const std::string& category() const noexcept { return category_; }
  /// Name under which the state is snapshotted: "<category>.state".
  [[nodiscard]] const std::string& state_type() const noexcept { return state_type_; }
  /// The state's schema version; a snapshot of another version is not used.
  [[nodiscard]] std::uint32_t state_schema() const noexcept { return state_schema_; }

  // `where` names the stream (and version) for the errors.
  [[nodiscard]] virtual result<std::unique_ptr<state_box>>
  initial(const std::string& where) const = 0;
  [[nodiscard]] virtual result<std::unique_ptr<state_box>> copy(const state_box& s,
                                                                const std::string& where) const = 0;
  /// `corrupted` when the bytes are not a state of this schema.
  [[nodiscard]] virtual result<std::unique_ptr<state_box>>
  decode_state(std::string_view bytes) const = 0;
  [[nodiscard]] virtual result<void> encode_state(const state_box& s, std::string& out,
                                                  const std::string& where) const = 0;
  /// Decodes the command and decides it against `s`: `invalid_argument` when
  /// it does not decode or its events carry personal data that cannot be
  /// encrypted (the caller's personal_scope), `rejected` with the domain's
  /// reason as message.
  [[nodiscard]] virtual result<decided> decide(const state_box& s, std::string_view command,
                                               const std::string& where) const = 0;
  /// Applies events decide returned. On an error `s` is lost.
  [[nodiscard]] virtual result<void> evolve(state_box& s, const events_box& events,
                                            const std::string& where) const = 0;
  /// Decodes one stored event (upcasting it) and applies it. On an error `s` is lost.
  [[nodiscard]] virtual result<void> evolve_stored(state_box& s, const persistence::event_view& e,
                                                   const std::string& where) const = 0;

protected:
  aggregate_type(std::string category, std::uint32_t state_schema)
      : category_(std::move(category)), state_type_(category_ + ".state"),
        state_schema_(state_schema) {}

private:
  std::string category_;
  std::string state_type_;
  std::uint32_t state_schema_;
};

/// A state recovered from the store.
struct recovered_state {
  std::unique_ptr<state_box> state;
  std::uint64_t version = 0;  ///< The stream version it includes.
  std::uint64_t replayed = 0; ///< Events applied after the snapshot.
  /// The stream's tenant as far as recovery saw it: the newest non-empty
  /// tenant of the events it replayed or, when none had one, of the event at
  /// the snapshot's version. "" when none of them had one.
  std::string tenant;
};

/// Rebuilds the state of `stream` from the latest usable snapshot (checksum,
/// state type, schema version) plus the events after it, else by full replay.
[[nodiscard]] result<recovered_state> recover(const persistence::event_store& store,
                                              const aggregate_type& type,
                                              const std::string& stream);

/// Applies to `state` the events of `stream` after `after_version`, up to
/// `max_version`, stopping before the first event `keep` refuses (no `keep`:
/// all). The one replay fold: recovery and time travel both use it. Returns
/// the last version applied (`after_version` when none).
[[nodiscard]] result<std::uint64_t>
fold_stream(const persistence::event_store& store, const aggregate_type& type, state_box& state,
            const std::string& stream, std::uint64_t after_version,
            std::uint64_t max_version = persistence::no_limit,
            const std::function<bool(const persistence::event_view&)>& keep = {});

/// The adapter of aggregate type A (model/aggregate.hpp).
template <class A> class typed_aggregate final : public aggregate_type {
public:
  using state_t = typename A::state;
  using event_t = typename A::event;
  using command_t = typename A::command;

  struct state_holder final : state_box {
    explicit state_holder(state_t v) : value(std::move(v)) {}
    state_t value;
  };
  struct events_holder final : events_box {
    explicit events_holder(std::vector<event_t> v) : value(std::move(v)) {}
    std::vector<event_t> value;
  };

  /// `events` decodes A's stored events; it outlives this adapter.
  explicit typed_aggregate(std::shared_ptr<const persistence::event_registry> events)
      : aggregate_type(A::category, persistence::schema_version_of<state_t>()),
        events_(std::move(events)) {}

  /// The typed state in a box this adapter made.
  [[nodiscard]] static const state_t& get(const state_box& s) {
    return static_cast<const state_holder&>(s).value;
  }
  [[nodiscard]] static state_t& get(state_box& s) { return static_cast<state_holder&>(s).value; }

  result<std::unique_ptr<state_box>> initial(const std::string& where) const override {
    try {
      return std::unique_ptr<state_box>{std::make_unique<state_holder>(A::initial())};
    } catch (...) {
      return tl::unexpected(thrown_error("initial", where));
    }
  }

  result<std::unique_ptr<state_box>> copy(const state_box& s,
                                          const std::string& where) const override {
    try {
      return std::unique_ptr<state_box>{std::make_unique<state_holder>(get(s))};
    } catch (...) {
      return tl::unexpected(thrown_error("copying the state", where));
    }
  }

  result<std::unique_ptr<state_box>> decode_state(std::string_view bytes) const override {
    // decode_payload turns what a serialize throws into `corrupted` itself.
    auto v = persistence::decode_payload<state_t>(bytes);
    if (!v)
      return tl::unexpected(v.error());
    return std::unique_ptr<state_box>{std::make_unique<state_holder>(std::move(*v))};
  }

  result<void> encode_state(const state_box& s, std::string& out,
                            const std::string& where) const override {
    try {
      // A state keeps personal data in plain bytes (docs/audit.md: snapshots).
      persistence::personal_scope scope{persistence::personal_context::kind::state};
      persistence::encode_payload(get(s), out);
      return {};
    } catch (...) {
      return tl::unexpected(thrown_error("serializing the state", where));
    }
  }

  result<decided> decide(const state_box& s, std::string_view command,
                         const std::string& where) const override {
    auto cmd = persistence::decode_payload<command_t>(command);
    if (!cmd)
      return fail(errc::invalid_argument, "command does not decode: " + cmd.error().message, where);
    decision<event_t> d;
    try {
      d = decide_with<A>(get(s), *cmd);
    } catch (...) {
      return tl::unexpected(thrown_error("decide", where));
    }
    if (!d)
      return fail(errc::rejected, std::move(d.error().reason), where);
    decided out;
    out.encoded.reserve(d->size());
    for (const auto& ev : *d) {
      result<persistence::event_data> data = fail(errc::internal, "not encoded");
      try {
        data = events_->encode(ev);
      } catch (const persistence::personal_error& e) { // no master key or no subject
        data = fail(errc::invalid_argument, e.what());
      } catch (...) {
        data = tl::unexpected(thrown_error("serializing an event", where));
      }
      if (!data)
        return tl::unexpected(data.error());
      out.encoded.push_back(std::move(*data));
    }
    out.events = std::make_unique<events_holder>(std::move(*d));
    return out;
  }

  result<void> evolve(state_box& s, const events_box& events,
                      const std::string& where) const override {
    auto& state = get(s);
    try {
      for (const auto& ev : static_cast<const events_holder&>(events).value)
        state = evolve_with<A>(std::move(state), ev);
      return {};
    } catch (...) {
      return tl::unexpected(thrown_error("evolve", where));
    }
  }

  result<void> evolve_stored(state_box& s, const persistence::event_view& e,
                             const std::string& where) const override {
    // Decoding and upcasting turn what user code throws into errors themselves.
    auto ev = events_->decode<event_t>(e.type, e.schema_version, e.payload);
    if (!ev) {
      auto err = ev.error();
      err.context = where;
      return tl::unexpected(std::move(err));
    }
    auto& state = get(s);
    try {
      state = evolve_with<A>(std::move(state), *ev);
      return {};
    } catch (...) {
      return tl::unexpected(thrown_error("evolve of " + std::string{e.type}, where));
    }
  }

private:
  std::shared_ptr<const persistence::event_registry> events_;
};

} // namespace cairn::actors
