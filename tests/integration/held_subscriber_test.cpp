// A side-effect subscriber on an owner and on its standby, two
// cairn-test-node processes on 127.0.0.1 (docs/cluster.md#what-is-copied):
// the owner's handles the events, the standby's is held and handles none;
// the owner killed and the standby promoted, the standby's resumes from the
// owner's replicated checkpoint, and every event is handled at least once.

#include <signal.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <set>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "cairn/persistence/event_store.hpp"
#include "cairn/persistence/replication.hpp"
#include "support/eventually.hpp"
#include "support/node_process.hpp"
#include "support/temp_dir.hpp"
#include "support/test_cluster.hpp"

namespace {

using namespace std::chrono_literals;
using cairn::test::node_process;
namespace cp = cairn::persistence;

/// The positions the "effects" subscriber wrote to `file`, in order.
std::vector<std::uint64_t> effects_in(const std::string& file) {
  std::vector<std::uint64_t> out;
  std::ifstream in{file};
  std::string line;
  while (std::getline(in, line))
    if (!line.empty())
      out.push_back(std::stoull(line));
  return out;
}

std::unique_ptr<cp::event_store> open_read_only(const std::string& dir) {
  cp::store_options o;
  o.read_only = true;
  auto s = cp::open_store(dir, o);
  REQUIRE(s);
  return std::move(*s);
}

/// The checkpoint `name` in the store in `dir` (0 when none), read while its
/// node runs.
std::uint64_t checkpoint_in(const std::string& dir, const std::string& name) {
  auto s = open_read_only(dir);
  auto cp = s->load_checkpoint(name);
  REQUIRE(cp);
  return cp->value_or(0);
}

/// The positions of the tally events in the store in `dir`.
std::vector<std::uint64_t> tally_positions(const std::string& dir) {
  auto s = open_read_only(dir);
  std::vector<std::uint64_t> out;
  cp::read_filter f;
  f.categories = {"tally"};
  auto last = s->last_position();
  REQUIRE(last);
  for (std::uint64_t from = 1; from <= *last;) {
    auto page = s->read_all(from, 1000, f);
    REQUIRE(page);
    for (const auto& e : page->events)
      out.push_back(e.position);
    REQUIRE(page->next_position > from);
    from = page->next_position;
  }
  return out;
}

/// A node's "subscriber effects" answer.
std::string effects_status(node_process& p) {
  if (!p.write_line("subscriber effects"))
    return {};
  return p.wait_line("subscriber", 5s);
}

void send(node_process& p, int id, int seq) {
  REQUIRE(p.write_line("send " + std::to_string(id) + " " + std::to_string(seq)));
  REQUIRE(p.wait_line("sent", 10s) == "sent ok");
}

} // namespace

TEST_CASE("a standby's side-effect subscriber is held, and after promotion resumes the owner's",
          "[integration][cluster][replication][standby]") {
  cairn::test::temp_dir dir;
  const std::uint16_t a_port = cairn::test::free_port(), s_port = cairn::test::free_port();
  auto args = [&](const std::string& id) {
    return cairn::test::test_node_args(id, {{"A", a_port}, {"S", s_port}}, dir.sub(id),
                                       cairn::test::standby_args("A", "S", "async"));
  };
  const auto a_file = dir.sub("effects-A.txt"), s_file = dir.sub("effects-S.txt");
  node_process a, s;
  cairn::test::start_test_node(a, args("A"));
  cairn::test::start_test_node(s, args("S"));
  INFO(a.output());
  INFO(s.output());
  REQUIRE(a.write_line("effects " + a_file));
  REQUIRE(a.wait_line("effects", 10s) == "effects ok");
  REQUIRE(s.write_line("effects " + s_file));
  REQUIRE(s.wait_line("effects", 10s) == "effects ok");
  auto held = effects_status(s);
  CHECK(held.find("state=held") != std::string::npos);
  CHECK(held.find("why=held: this node is the standby of A") != std::string::npos);
  CHECK(cairn::test::eventually(
    [&] { return effects_status(a).find("state=live") != std::string::npos; }, 10s));

  // The owner's subscriber acts on every event; the standby's on none.
  for (int i = 1; i <= 60; ++i)
    send(a, i % 5, i);
  REQUIRE(cairn::test::eventually([&] { return effects_in(a_file).size() >= 60; }, 20s));
  const auto owner_last = effects_in(a_file).back();
  // The owner's checkpoint reaches the replica (it checkpoints every 50 ms,
  // its source sends what moved every 100 ms).
  REQUIRE(cairn::test::eventually(
    [&] {
      return checkpoint_in(dir.sub("S"), cp::replicated_checkpoint_name("effects")) >= owner_last;
    },
    20s));
  CHECK(effects_in(s_file).empty());
  CHECK(effects_status(s).find("state=held") != std::string::npos);

  // More events, then the owner dies at once: its subscriber may or may not
  // have handled or checkpointed them.
  for (int i = 61; i <= 80; ++i)
    send(a, i % 5, i);
  a.kill(SIGKILL);
  CHECK(effects_in(s_file).empty());
  REQUIRE(s.write_line("promote"));
  REQUIRE(s.wait_line("promoted", 30s) == "promoted epoch=2");
  for (int i = 81; i <= 90; ++i)
    send(s, i % 5, i);
  REQUIRE(cairn::test::eventually(
    [&] { return effects_status(s).find("state=live") != std::string::npos; }, 20s));
  // Every event acknowledged (A's first 60 reached S before the checkpoint
  // did; of A's last 20, async, those S holds).
  auto all = tally_positions(dir.sub("S"));
  REQUIRE(all.size() >= 70);
  REQUIRE(cairn::test::eventually(
    [&] {
      auto e = effects_in(s_file);
      return !e.empty() && e.back() == all.back();
    },
    20s));
  REQUIRE(s.stop(20s) == 0);

  auto from_owner = effects_in(a_file);
  auto from_standby = effects_in(s_file);
  REQUIRE_FALSE(from_standby.empty());
  const auto resumed_after = checkpoint_in(dir.sub("S"), cp::replicated_checkpoint_name("effects"));
  // Not from the beginning: from the owner's checkpoint, which had reached
  // at least the 60 events the owner handled before.
  CHECK(resumed_after >= owner_last);
  CHECK(from_standby.front() == *std::upper_bound(all.begin(), all.end(), resumed_after));
  CHECK(from_standby.front() > owner_last);
  // No event of the owner's was handled on the standby before the promotion,
  // and together they handled every event at least once.
  std::set<std::uint64_t> handled{from_owner.begin(), from_owner.end()};
  handled.insert(from_standby.begin(), from_standby.end());
  for (auto p : all) {
    INFO("position " << p);
    CHECK(handled.count(p) == 1);
  }
  // At-least-once, not more than the owner's uncheckpointed tail again.
  std::uint64_t twice = 0;
  for (auto p : from_standby)
    twice += std::count(from_owner.begin(), from_owner.end(), p);
  CHECK(twice <= 20);
}
