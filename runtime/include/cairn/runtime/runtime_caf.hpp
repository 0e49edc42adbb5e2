#pragma once

/// The CAF-native form of the runtime, for services that are CAF actors
/// themselves: send the registry a command_msg and get a reply_msg back,
/// without a bridge thread in between.
///
///   auto msg = rt.make_command<account>("42", deposit{100});
///   self->request(rt.handle(), caf::infinite, cairn::actors::command_atom::value, msg)
///     .then([&rt](cairn::actors::reply_msg& r) {
///       auto outcome = rt.decode_reply<account>(r); // result<outcome<account>>
///     });
///
/// Everything else is in runtime.hpp, which includes no CAF.

#include <caf/actor.hpp>
#include <caf/actor_system.hpp>

#include "cairn/actors/messages.hpp"
#include "cairn/runtime/runtime.hpp"
