// What-if replay on a real LMDB store: the command log written beside the
// events (record_commands), and runtime::what_if re-running another decide
// over it (docs/audit.md#what-if-replay).

#include <cstdint>
#include <string>
#include <variant>
#include <vector>

#include <cereal/types/string.hpp>
#include <cereal/types/variant.hpp>

#include "account.hpp"
#include "cairn/model/match.hpp"
#include "runtime_support.hpp"
#include "support/temp_dir.hpp"
#include "unit/persistence/helpers.hpp"

namespace {

using namespace cairn;
using cairn::test::await;
using cairn::test::quick_options;
using cairn::test::register_ok;
using cairn::test::start_runtime;

// A tally: `add` emits one event, `note` none (an accepted command that
// changes nothing, which what-if must see too). The note's text is in no
// event, so a test can find the command's bytes in the file.
struct add {
  std::int64_t amount = 0;
  template <class Ar> void serialize(Ar& ar) { ar(amount); }
};
struct note {
  std::string text;
  template <class Ar> void serialize(Ar& ar) { ar(text); }
};
struct added {
  static constexpr const char* type_name = "tally_added";
  std::int64_t amount = 0;
  template <class Ar> void serialize(Ar& ar) { ar(amount); }
};

struct tally {
  static constexpr const char* category = "tally";
  struct state {
    std::int64_t total = 0;
    template <class Ar> void serialize(Ar& ar) { ar(total); }
  };
  using command = std::variant<add, note>;
  using event = std::variant<added>;
  static state initial() { return {}; }
  static decision<event> decide(const state&, const add& c) {
    if (c.amount <= 0)
      return reject("not_positive");
    return emit<event>(added{c.amount});
  }
  static decision<event> decide(const state&, const note&) { return std::vector<event>{}; }
  static state evolve(state s, const added& e) {
    s.total += e.amount;
    return s;
  }
};

/// The recorded rule, unchanged.
decision<tally::event> same_rule(const tally::state& s, const tally::command& c) {
  return decide_with<tally>(s, c);
}

/// Stricter: the total may not pass 100.
decision<tally::event> capped(const tally::state& s, const tally::command& c) {
  if (auto* a = std::get_if<add>(&c); a != nullptr && s.total + a->amount > 100)
    return reject("over_cap");
  return decide_with<tally>(s, c);
}

runtime_options recording(const std::string& dir) {
  auto opts = quick_options(dir);
  opts.record_commands = true;
  return opts;
}

template <class A> void send_ok(runtime& rt, const std::string& id, const typename A::command& c) {
  auto f = rt.send<A>(id, c);
  auto r = await(f);
  INFO((r ? std::string{} : r.error().to_string()));
  REQUIRE(r);
}

std::int64_t amount_of(const tally::event& e) { return std::get<added>(e).amount; }

TEST_CASE("what-if with the recorded decide finds no difference", "[integration][what_if]") {
  cairn::test::temp_dir dir;
  auto rt = start_runtime(recording(dir.path()));
  register_ok<tally>(*rt);
  for (int i = 0; i < 5; ++i) {
    send_ok<tally>(*rt, "a", add{10});
    send_ok<tally>(*rt, "b", add{30});
  }
  send_ok<tally>(*rt, "a", note{"checked"});
  auto report = rt->what_if<tally>(same_rule);
  INFO((report ? std::string{} : report.error().to_string()));
  REQUIRE(report);
  CHECK(report->commands == 11);
  CHECK(report->differing() == 0);
  REQUIRE(report->streams.size() == 2);
  CHECK(report->streams[0].stream == "tally-a");
  CHECK(report->streams[0].id == "a");
  CHECK(report->streams[0].commands == 6);
  CHECK(report->streams[0].from_version == 0);
  CHECK(report->streams[0].events_replayed == 0);
  CHECK(report->streams[1].commands == 5);
}

TEST_CASE("a stricter decide names the first differing command with both event lists",
          "[integration][what_if]") {
  cairn::test::temp_dir dir;
  auto rt = start_runtime(recording(dir.path()));
  register_ok<tally>(*rt);
  auto last = rt->store().last_position();
  REQUIRE(last);
  for (int i = 0; i < 4; ++i)
    send_ok<tally>(*rt, "a", add{30}); // the fourth passes 100
  send_ok<tally>(*rt, "b", add{50});
  command_options once;
  once.command_id = "c-5";
  once.correlation_id = "corr-5";
  once.tenant = "t1";
  once.user = "u1";
  auto f = rt->send<tally>("a", add{1}, once);
  REQUIRE(await(f));

  auto report = rt->what_if<tally>(capped);
  REQUIRE(report);
  REQUIRE(report->streams.size() == 2);
  CHECK(report->differing() == 1);
  const auto& a = report->streams[0];
  REQUIRE(a.difference);
  CHECK(a.commands == 4); // stopped at the differing one
  CHECK(a.difference->version == 3);
  CHECK(std::get<add>(a.difference->command).amount == 30);
  REQUIRE(a.difference->recorded.size() == 1);
  CHECK(amount_of(a.difference->recorded[0]) == 30);
  REQUIRE(!a.difference->alternative);
  CHECK(a.difference->alternative.error().reason == "over_cap");
  CHECK_FALSE(report->streams[1].difference);

  // The filter: only b, or only ids starting with "a".
  what_if_filter only_b;
  only_b.ids = {"b"};
  auto b = rt->what_if<tally>(capped, only_b);
  REQUIRE(b);
  REQUIRE(b->streams.size() == 1);
  CHECK(b->streams[0].id == "b");
  what_if_filter prefix;
  prefix.id_prefix = "a";
  auto pa = rt->what_if<tally>(capped, prefix);
  REQUIRE(pa);
  REQUIRE(pa->streams.size() == 1);
  CHECK(pa->streams[0].id == "a");

  // The metadata is recorded with the command.
  auto page = rt->store().read_commands(1, 100, "tally-a");
  REQUIRE(page);
  REQUIRE(page->commands.size() == 5);
  const auto& c5 = page->commands.back();
  CHECK(c5.meta.command_id == "c-5");
  CHECK(c5.meta.correlation_id == "corr-5");
  CHECK(c5.meta.tenant == "t1");
  CHECK(c5.meta.user == "u1");
  CHECK(c5.version_before == 4);
  CHECK(c5.event_count == 1);
  CHECK(c5.first_position == *last + 6);
}

TEST_CASE("a command that emitted no event is recorded, and what-if compares it",
          "[integration][what_if]") {
  cairn::test::temp_dir dir;
  auto rt = start_runtime(recording(dir.path()));
  register_ok<tally>(*rt);
  send_ok<tally>(*rt, "a", add{5});
  send_ok<tally>(*rt, "a", note{"first look"});
  send_ok<tally>(*rt, "a", add{7});
  auto page = rt->store().read_commands(1, 100);
  REQUIRE(page);
  REQUIRE(page->commands.size() == 3);
  CHECK(page->commands[1].event_count == 0);
  CHECK(page->commands[1].first_position == 0);
  CHECK(page->commands[1].version_before == 1);
  CHECK(page->commands[2].version_before == 1);

  // An alternative that records every note as an event differs there.
  auto noisy = [](const tally::state& s, const tally::command& c) -> decision<tally::event> {
    if (std::holds_alternative<note>(c))
      return emit<tally::event>(added{0});
    return decide_with<tally>(s, c);
  };
  auto report = rt->what_if<tally>(noisy);
  REQUIRE(report);
  REQUIRE(report->streams.size() == 1);
  const auto& d = report->streams[0].difference;
  REQUIRE(d);
  CHECK(d->sequence == page->commands[1].sequence);
  CHECK(std::get<note>(d->command).text == "first look");
  CHECK(d->recorded.empty());
  REQUIRE(d->alternative);
  REQUIRE(d->alternative->size() == 1);
  CHECK(amount_of(d->alternative->front()) == 0);
}

TEST_CASE("what-if over a store written without recording is a clear error",
          "[integration][what_if]") {
  cairn::test::temp_dir dir;
  auto rt = start_runtime(quick_options(dir.path()));
  register_ok<tally>(*rt);
  send_ok<tally>(*rt, "a", add{5});
  auto report = rt->what_if<tally>(same_rule);
  REQUIRE_FALSE(report);
  CHECK(report.error().code == errc::invalid_argument);
  CHECK(report.error().message.find("no recorded command of tally") != std::string::npos);
  CHECK(report.error().message.find("record_commands") != std::string::npos);

  auto unknown =
    rt->what_if<bank::account>([](const bank::account::state& s, const bank::account::command& c) {
      return decide_with<bank::account>(s, c);
    });
  REQUIRE_FALSE(unknown);
  CHECK(unknown.error().code == errc::invalid_argument);
  CHECK(unknown.error().message.find("not registered") != std::string::npos);

  what_if_filter bad;
  bad.ids = {"no spaces allowed"};
  auto invalid = rt->what_if<tally>(same_rule, bad);
  REQUIRE_FALSE(invalid);
  CHECK(invalid.error().code == errc::invalid_argument);
}

TEST_CASE("recording survives a reopen, and turned on later starts from the replayed state",
          "[integration][what_if]") {
  cairn::test::temp_dir dir;
  {
    auto rt = start_runtime(quick_options(dir.path())); // not recording yet
    register_ok<tally>(*rt);
    send_ok<tally>(*rt, "a", add{60});
    send_ok<tally>(*rt, "a", add{30});
  }
  {
    auto rt = start_runtime(recording(dir.path()));
    register_ok<tally>(*rt);
    send_ok<tally>(*rt, "a", add{5});
    send_ok<tally>(*rt, "c", add{1});
  }
  auto rt = start_runtime(recording(dir.path()));
  register_ok<tally>(*rt);
  send_ok<tally>(*rt, "a", add{10}); // 105 in all: over the cap
  auto page = rt->store().read_commands(1, 100);
  REQUIRE(page);
  REQUIRE(page->commands.size() == 3);
  for (std::size_t i = 0; i < page->commands.size(); ++i)
    CHECK(page->commands[i].sequence == i + 1); // numbering goes on after the reopen

  auto report = rt->what_if<tally>(capped);
  REQUIRE(report);
  REQUIRE(report->streams.size() == 2);
  const auto& a = report->streams[0];
  CHECK(a.from_version == 2);
  CHECK(a.events_replayed == 2); // the 90 before recording, from the stored events
  REQUIRE(a.difference);
  CHECK(a.difference->version == 3);
  CHECK(std::get<add>(a.difference->command).amount == 10);
  CHECK_FALSE(report->streams[1].difference);
}

TEST_CASE("a damaged command log entry makes what-if fail as corrupted", "[integration][what_if]") {
  cairn::test::temp_dir dir;
  {
    auto rt = start_runtime(recording(dir.path()));
    register_ok<tally>(*rt);
    send_ok<tally>(*rt, "a", add{5});
    send_ok<tally>(*rt, "a", note{"MARK-what-if-bytes"});
  }
  REQUIRE(cairn::test::flip_in_file(dir.sub("data.mdb"), "MARK-what-if-bytes", 5) >= 1);
  auto rt = start_runtime(recording(dir.path()));
  register_ok<tally>(*rt);
  auto report = rt->what_if<tally>(same_rule);
  REQUIRE_FALSE(report);
  CHECK(report.error().code == errc::corrupted);
  CHECK(report.error().message.find("command log entry") != std::string::npos);
  CHECK(report.error().context == "sequence 2");
}

} // namespace
