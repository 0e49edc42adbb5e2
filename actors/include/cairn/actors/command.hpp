#pragma once

/// A command for one aggregate and its reply, as plain structs with cereal
/// payloads: what the runtime's facade builds and what crosses between
/// actors (messages.hpp makes them CAF messages) and, later, nodes.

#include <cstdint>
#include <string>
#include <vector>

#include "cairn/model/error.hpp"

namespace cairn::actors {

/// A command (or, with `query`, a read of the live state) for one aggregate.
struct command_msg {
  std::string category; ///< The aggregate type, e.g. "account".
  std::string id;       ///< The aggregate id; the stream is "<category>-<id>".
  std::string payload;  ///< cereal bytes of the aggregate's command variant.
  std::string command_id, correlation_id, causation_id, tenant, user;
  std::string subject;          ///< The data subject of the events (personal.hpp).
  std::int64_t deadline_ns = 0; ///< steady_clock ns; 0 = none.
  bool query = false;           ///< Read the confirmed state instead of deciding.
  /// With `query`: replay the state from the store instead (time travel, on
  /// the node that owns the stream): up to `to_version`, and of the events
  /// recorded at or before `as_of_ns` when that is not 0.
  bool replay = false;
  std::uint64_t to_version = 0;
  std::int64_t as_of_ns = 0;
};

/// One appended event as a reply carries it: encoded, as the store holds it.
struct reply_event {
  std::string type;
  std::uint32_t schema_version = 1;
  std::string payload;
};

/// The answer to a command_msg: an error (code != 0) or what was appended.
struct reply_msg {
  std::uint8_t code = 0; ///< 0 = ok, else a cairn::errc.
  std::string message;   ///< For `rejected`: the domain's reason, as decide gave it.
  std::string context;   ///< Where: a stream, a position.
  std::uint64_t first_version = 0;
  std::uint64_t last_version = 0; ///< The aggregate's version after the command.
  std::uint64_t first_position = 0;
  std::uint64_t last_position = 0;
  bool duplicate = false; ///< The command id was applied before: the original outcome.
  std::vector<reply_event> events;
  std::string state; ///< For a query: cereal bytes of the state at last_version.

  [[nodiscard]] bool ok() const { return code == 0; }
  [[nodiscard]] cairn::error error() const {
    return cairn::error{static_cast<errc>(code), message, context};
  }
};

/// A reply that carries only an error.
[[nodiscard]] reply_msg error_reply(const cairn::error& e);

} // namespace cairn::actors
