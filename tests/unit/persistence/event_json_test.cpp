// The one writer of an export line (persistence::event_json), used by `cairn
// export` and by truncate_after's saved tail: its bytes are a contract that
// import reads, so they are checked byte for byte here.

#include <string>

#include <catch2/catch.hpp>

#include "cairn/model/hex.hpp"
#include "cairn/model/iso_time.hpp"
#include "cairn/persistence/event_json.hpp"
#include "cairn/tools/text.hpp"

using namespace cairn::persistence;

namespace {

recorded_event deposit() {
  recorded_event ev;
  ev.position = 2;
  ev.stream = "account-alice";
  ev.version = 1;
  ev.id = event_id::parse("d700676c9ea3e8d25653de96e71a0300").value();
  ev.timestamp_ns = 1795514410000000000;
  ev.type = "money_deposited";
  ev.schema_version = 1;
  ev.meta.correlation_id = "corr-1";
  ev.meta.command_id = "dep-1";
  ev.meta.user = "teller";
  ev.payload = std::string{"\x64\0\0\0\0\0\0\0", 8};
  return ev;
}

const std::string deposit_line =
  R"({"position":2,"stream":"account-alice","version":1,"id":"d700676c9ea3e8d25653de96e71a0300",)"
  R"("timestamp":"2026-11-24T10:00:10.000000000Z","timestamp_ns":1795514410000000000,)"
  R"("type":"money_deposited","schema_version":1,"correlation_id":"corr-1","causation_id":"",)"
  R"("command_id":"dep-1","tenant":"","user":"teller","size":8,"payload_hex":"6400000000000000"})";

} // namespace

TEST_CASE("an export line of an unregistered type has every field and the payload's hex",
          "[unit][persistence][export]") {
  auto ev = deposit();
  CHECK(event_json(ev, nullptr, true) == deposit_line);
  // Without a registry nothing decodes, so the hex is there without with_hex too.
  CHECK(event_json(ev, nullptr, false) == deposit_line);
  // The CLI's writer is this one.
  event_registry none;
  CHECK(cairn::tools::event_json(ev, none, true) == deposit_line);
}

TEST_CASE("an export line names its data subject only when it has one",
          "[unit][persistence][export]") {
  auto ev = deposit();
  ev.meta.subject = "alice";
  auto line = event_json(ev, nullptr, true);
  CHECK(line.find(R"("user":"teller","subject":"alice","size":8,)") != std::string::npos);
}

TEST_CASE("iso_time and to_hex print times and bytes as every export line has them",
          "[unit][model][export]") {
  CHECK(cairn::iso_time(0) == "1970-01-01T00:00:00.000000000Z");
  CHECK(cairn::iso_time(-1) == "1969-12-31T23:59:59.999999999Z");
  CHECK(cairn::iso_time(1795514410000000000) == "2026-11-24T10:00:10.000000000Z");
  CHECK(cairn::days_from_civil(2026, 11, 24) == 20781);
  CHECK(cairn::to_hex(std::string{"\x01\xff\0", 3}) == "01ff00");
}
