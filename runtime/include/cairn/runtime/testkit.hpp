#pragma once

/// Given/when/then for aggregates, without actors or a store:
///
///   cairn::testkit::given_when_then<account> t{{account_opened{"Ann"}, money_deposited{50}}};
///   auto d = t.when(withdraw{80});
///   REQUIRE(!d);
///   CHECK(d.error().reason == "insufficient_funds");
///   auto ok = t.when(withdraw{20});             // applies the events to t.state()
///   CHECK(t.state().balance == 30);
///
/// Every event given or emitted, and the state after each step, goes through
/// the codec (encode, decode, encode again) and must come back byte for byte,
/// so a type that does not survive storage fails the test that uses it. Such
/// a failure throws std::logic_error: this is test code, and the test
/// framework reports it with the offending type's name.
///
/// Events are about one data subject (`subject()`, default "subject"): their
/// `cairn::personal<T>` fields are encrypted under its key in a key ring of
/// the kit's own, as the store would do. `forget()` simulates
/// `runtime::forget`: it deletes the key and replays the stored history, so
/// state() shows what recovery would rebuild with the personal data absent.
///
///   t.forget();
///   CHECK_FALSE(t.history()[0].name.has_value());  // a personal<std::string>

#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "cairn/model/aggregate.hpp"
#include "cairn/model/match.hpp"
#include "cairn/persistence/codec.hpp"
#include "cairn/persistence/personal.hpp"

namespace cairn::testkit {

template <class A> class given_when_then {
public:
  using state_type = typename A::state;
  using event_type = typename A::event;
  using command_type = typename A::command;

  /// Starts from A::initial() with `history` applied in order.
  explicit given_when_then(std::vector<event_type> history = {}) {
    if (auto ok = persistence::register_event_types<event_type>(registry_); !ok)
      throw std::logic_error(ok.error().to_string());
    state_ = A::initial();
    for (const auto& e : history)
      apply(e);
    check_state();
  }

  /// Decides `cmd` against the current state. On success the events are
  /// applied, so the next `when` sees them; a rejection changes nothing.
  decision<event_type> when(const command_type& cmd) {
    std::string bytes;
    persistence::encode_payload(cmd, bytes);
    auto back = persistence::decode_payload<command_type>(bytes);
    if (!back)
      throw std::logic_error("the command does not survive its codec: " + back.error().message);
    auto d = decide_with<A>(state_, *back);
    if (d) {
      for (const auto& e : *d)
        apply(e);
      check_state();
    }
    return d;
  }

  [[nodiscard]] const state_type& state() const { return state_; }

  /// The data subject of the events from now on. Default: "subject".
  void subject(std::string s) { subject_ = std::move(s); }
  [[nodiscard]] const std::string& subject() const { return subject_; }

  /// Forgets the current subject (its key), then rebuilds the state and the
  /// history from the stored events, as recovery would after runtime::forget.
  void forget() {
    keys_.forget(subject_);
    auto stored = std::move(stored_);
    stored_.clear();
    history_.clear();
    state_ = A::initial();
    for (const auto& [subject, data] : stored) {
      persistence::personal_scope scope{&keys_, subject};
      auto decoded = registry_.decode<event_type>(data.type, data.schema_version, data.payload);
      if (!decoded)
        throw std::logic_error("event " + data.type
                               + " does not decode after forget: " + decoded.error().message);
      state_ = evolve_with<A>(std::move(state_), *decoded);
      history_.push_back(std::move(*decoded));
      stored_.emplace_back(subject, data);
    }
    check_state();
  }

  /// Every event applied so far, given and emitted, in order.
  [[nodiscard]] const std::vector<event_type>& history() const { return history_; }

private:
  /// Encodes in plain bytes: encryption draws a random nonce, so only the
  /// plain form can be compared byte for byte.
  result<persistence::event_data> plain(const event_type& e) const {
    persistence::personal_scope scope{persistence::personal_context::kind::state};
    return registry_.encode(e);
  }

  void apply(const event_type& e) {
    result<persistence::event_data> encoded = fail(errc::internal, "not encoded");
    result<event_type> decoded = fail(errc::internal, "not decoded");
    {
      persistence::personal_scope scope{&keys_, subject_};
      try {
        encoded = registry_.encode(e);
      } catch (const persistence::personal_error& err) {
        throw std::logic_error(err.what());
      }
      if (!encoded)
        throw std::logic_error(encoded.error().to_string());
      decoded = registry_.decode<event_type>(encoded->type, encoded->schema_version,
                                             encoded->payload);
    }
    if (!decoded)
      throw std::logic_error("event " + encoded->type
                             + " does not decode: " + decoded.error().message);
    auto first = plain(e);
    auto again = plain(*decoded);
    if (!first || !again || again->payload != first->payload)
      throw std::logic_error("event " + encoded->type + " changes in a codec round trip");
    stored_.emplace_back(subject_, std::move(*encoded));
    state_ = evolve_with<A>(std::move(state_), *decoded);
    history_.push_back(std::move(*decoded));
  }

  void check_state() const {
    persistence::personal_scope scope{persistence::personal_context::kind::state};
    std::string bytes, again;
    persistence::encode_payload(state_, bytes);
    auto decoded = persistence::decode_payload<state_type>(bytes);
    if (!decoded)
      throw std::logic_error("the state does not decode: " + decoded.error().message);
    persistence::encode_payload(*decoded, again);
    if (again != bytes)
      throw std::logic_error("the state changes in a codec round trip");
  }

  persistence::event_registry registry_;
  persistence::memory_key_ring keys_;
  std::string subject_ = "subject";
  state_type state_;
  std::vector<event_type> history_;
  /// Every event applied, encrypted as the store would hold it, with its subject.
  std::vector<std::pair<std::string, persistence::event_data>> stored_;
};

} // namespace cairn::testkit
