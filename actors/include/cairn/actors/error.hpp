#pragma once

/// cairn errors inside CAF errors, so an errc survives every actor boundary.
/// An actor that answers a request with an error answers
/// `to_caf_error(err)`; the caller gets the same code, message and context
/// back with `from_caf_error`:
///
///   return to_caf_error({errc::unavailable, "map full", name});
///   ...
///   [&](caf::error& e) { if (auto err = from_caf_error(e)) handle(*err); }
///
/// CAF's own errors (request_timeout, request_receiver_down, …) carry no
/// errc; the caller decides what they mean.

#include <optional>

#include <caf/actor_system_config.hpp>
#include <caf/atom.hpp>
#include <caf/error.hpp>

#include "cairn/model/error.hpp"

namespace cairn::actors {

/// The CAF error category of cairn errors: the code is the errc, the context
/// the message and the context strings.
constexpr caf::atom_value error_category = caf::atom("cairn");

/// `e` as a CAF error of the `cairn` category.
[[nodiscard]] caf::error to_caf_error(const cairn::error& e);

/// The cairn error `e` holds, or nothing when it is none of cairn's (CAF's own).
[[nodiscard]] std::optional<cairn::error> from_caf_error(const caf::error& e);

/// Registers the `cairn` category with `cfg`, so `actor_system::render`
/// prints a cairn error as `cairn::error::to_string` does.
void add_error_category(caf::actor_system_config& cfg);

} // namespace cairn::actors
