// Old data still loads: the committed bytes of provider_started v1 upcast to
// v2, a version-1 provider state decodes into the version-2 state, and the
// current encodings have not drifted.

#include <fstream>
#include <iterator>
#include <string>

#include <catch2/catch.hpp>

#include "cairn/persistence/codec.hpp"
#include "cairn/runtime/runtime.hpp"
#include "golden_values.hpp"
#include "hangar/provider_group.hpp"

using namespace hangar;

namespace {

std::string golden(const std::string& name) {
  const std::string path = std::string{CAIRN_GOLDEN_DIR} + "/hangar/" + name;
  std::ifstream in{path, std::ios::binary};
  REQUIRE(in.good());
  return std::string{std::istreambuf_iterator<char>{in}, std::istreambuf_iterator<char>{}};
}

template <class T> std::string bytes_of(const T& value) {
  std::string out;
  cairn::persistence::encode_payload(value, out);
  return out;
}

/// The registry as register_aggregate<provider>() builds it.
cairn::persistence::event_registry provider_registry() {
  cairn::persistence::event_registry reg;
  REQUIRE(cairn::persistence::register_event_types<provider::event>(reg));
  REQUIRE(provider::upcasters(reg));
  return reg;
}

} // namespace

TEST_CASE("provider_started v1 bytes upcast to v2 with empty tags", "[unit][hangar][golden]") {
  auto reg = provider_registry();
  CHECK(reg.current_version("provider_started") == 2u);
  CHECK(reg.can_decode("provider_started", 1));
  auto ev = reg.decode<provider::event>("provider_started", 1, golden("provider_started_v1.bin"));
  REQUIRE(ev);
  const auto& started = std::get<provider_started>(*ev);
  CHECK(started.mode == provider_mode::remote);
  CHECK(started.tools_count == 7);
  CHECK(started.startup_ms == 1234);
  CHECK(started.tags.empty());
}

TEST_CASE("provider state v1 bytes decode into the v3 state", "[unit][hangar][golden]") {
  auto s = cairn::persistence::decode_payload<provider::state>(golden("provider_state_v1.bin"));
  REQUIRE(s);
  const auto want = hangar_golden::state_v1();
  CHECK(s->registered);
  CHECK(s->id == "math");
  CHECK(s->source == "config");
  CHECK(s->mode == provider_mode::subprocess);
  CHECK(s->config == want.config);
  CHECK(s->options == provider_options{600, 30, 4});
  CHECK(s->status == provider_state::degraded);
  CHECK(s->tools_count == 7);
  CHECK(s->consecutive_failures == 4);
  CHECK(s->total_failures == 9);
  CHECK(s->total_invocations == 120);
  CHECK(s->last_success_ns == hangar_golden::t0);
  CHECK(s->last_failure_ns == hangar_golden::t0 + 100);
  CHECK(s->last_used_ns == hangar_golden::t0 + 50);
  CHECK(s->last_error == "no pong");
  REQUIRE(s->pending.size() == 1);
  CHECK(s->pending.at("c9").tool == "add");
  CHECK(s->pending.at("c9").timeout_ms == 30000);
  CHECK(s->pending.at("c9").requested_at_ns == hangar_golden::t0 + 90);
  // What versions 2 and 3 added starts empty.
  CHECK(s->tags.empty());
  CHECK(s->last_state_change_ns == 0);
  CHECK(s->waiting.empty());
}

TEST_CASE("provider state v2 bytes decode into the v3 state", "[unit][hangar][golden]") {
  auto s = cairn::persistence::decode_payload<provider::state>(golden("provider_state_v2.bin"));
  REQUIRE(s);
  CHECK(s->id == "math");
  CHECK(s->status == provider_state::degraded);
  CHECK(s->pending.size() == 1);
  CHECK(s->tags == std::vector<std::string>{"math"});
  CHECK(s->last_state_change_ns == hangar_golden::t0 + 95);
  CHECK(s->waiting.empty()); // what version 3 added starts empty
}

TEST_CASE("the current encodings match the committed bytes", "[unit][hangar][golden]") {
  CHECK(bytes_of(hangar_golden::started_v2()) == golden("provider_started_v2.bin"));
  CHECK(bytes_of(hangar_golden::state_v3()) == golden("provider_state_v3.bin"));
  CHECK(bytes_of(hangar_golden::started_v1()) == golden("provider_started_v1.bin"));
  CHECK(bytes_of(hangar_golden::state_v1()) == golden("provider_state_v1.bin"));
  CHECK(bytes_of(hangar_golden::state_v2()) == golden("provider_state_v2.bin"));
  // And the v3 file reads back as the value it was written from.
  auto s = cairn::persistence::decode_payload<provider::state>(golden("provider_state_v3.bin"));
  REQUIRE(s);
  CHECK(s->tags == std::vector<std::string>{"math"});
  CHECK(s->last_state_change_ns == hangar_golden::t0 + 95);
  REQUIRE(s->waiting.size() == 1);
  CHECK(s->waiting.front() == hangar_golden::state_v3().waiting.front());
  CHECK(bytes_of(*s) == golden("provider_state_v3.bin"));
}

TEST_CASE("the snapshot schemas are provider 3 and group 2; provider_started is version 2",
          "[unit][hangar][golden]") {
  CHECK(cairn::persistence::schema_version_of<provider::state>() == 3u);
  CHECK(cairn::persistence::schema_version_of<provider_started>() == 2u);
  CHECK(cairn::persistence::schema_version_of<provider_group::state>() == 2u);
}

TEST_CASE("the group state round-trips with its members' lifecycle", "[unit][hangar][golden]") {
  provider_group::state g;
  g.created = true;
  g.id = "tools";
  g.members["a"].lifecycle = member_lifecycle::stopped;
  g.members["b"].in_rotation = false;
  auto back = cairn::persistence::decode_payload<provider_group::state>(bytes_of(g));
  REQUIRE(back);
  CHECK(back->members.at("a").lifecycle == member_lifecycle::stopped);
  CHECK_FALSE(back->members.at("b").in_rotation);
  CHECK(bytes_of(*back) == bytes_of(g));
}
