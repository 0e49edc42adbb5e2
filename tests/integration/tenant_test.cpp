// Tenants through the runtime: subscribers and projections that filter by
// tenant, and commands whose tenant does not match their stream's.

#include <mutex>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "account.hpp"
#include "cairn/runtime/runtime.hpp"
#include "runtime_support.hpp"
#include "support/temp_dir.hpp"

using namespace std::chrono_literals;
using cairn::test::describe;

namespace {

cairn::command_options as_tenant(std::string tenant) {
  cairn::command_options o;
  o.tenant = std::move(tenant);
  return o;
}

/// Sends `cmd` to account `id` as `tenant`; returns the outcome.
cairn::result<cairn::outcome<bank::account>>
send_as(cairn::runtime& rt, const std::string& id, bank::account::command cmd, std::string tenant) {
  return rt.send<bank::account>(id, std::move(cmd), as_tenant(std::move(tenant))).get();
}

struct seen_events {
  std::mutex m;
  std::vector<std::uint64_t> positions;
  std::vector<std::string> tenants;
  void add(std::uint64_t p, std::string_view tenant) {
    std::lock_guard lock{m};
    positions.push_back(p);
    tenants.emplace_back(tenant);
  }
};

} // namespace

TEST_CASE("a subscriber with a tenant sees only that tenant's events and checkpoints past the "
          "others",
          "[integration][subscriber][tenant]") {
  cairn::test::temp_dir dir;
  auto rt = cairn::test::start_runtime(cairn::test::quick_options(dir.path()));
  cairn::test::register_ok<bank::account>(*rt);
  std::vector<std::uint64_t> acme_positions;
  for (int i = 0; i < 5; ++i) {
    auto a = send_as(*rt, "a" + std::to_string(i), bank::open_account{"owner"}, "acme");
    REQUIRE(a);
    acme_positions.push_back(a->last_position);
    REQUIRE(send_as(*rt, "g" + std::to_string(i), bank::open_account{"owner"}, "globex"));
    REQUIRE(send_as(*rt, "n" + std::to_string(i), bank::open_account{"owner"}, ""));
  }
  // The log ends with another tenant's events: the checkpoint must pass them.
  auto tail = send_as(*rt, "g0", bank::deposit{10}, "globex");
  REQUIRE(tail);
  auto last = tail->last_position;

  seen_events acme, projected;
  cairn::subscription_filter f;
  f.tenant = "acme";
  REQUIRE(rt->subscribe<bank::account::event>("acme-only", f, [&](const auto& e) {
    acme.add(e.position, e.meta.tenant);
    return cairn::result<void>{};
  }));
  REQUIRE(rt->project<bank::account::event>("acme-accounts", f,
                                            [&](const auto& e, cairn::read_model& model) {
                                              projected.add(e.position, e.meta.tenant);
                                              return model.put_as(std::string{e.stream},
                                                                  std::int64_t{1});
                                            }));
  for (auto name : {"acme-only", "acme-accounts"}) {
    auto waited = rt->wait_for(name, last, 30s);
    INFO(name << ": " << describe(waited));
    REQUIRE(waited);
    auto cp = rt->store().load_checkpoint(name);
    REQUIRE(cp);
    REQUIRE(cp->has_value());
    CHECK(**cp == last); // past globex's tail, which it never saw
  }
  CHECK(acme.positions == acme_positions);
  CHECK(projected.positions == acme_positions);
  for (const auto& t : acme.tenants)
    CHECK(t == "acme");
  auto model = rt->query_range<std::int64_t>("acme-accounts");
  REQUIRE(model);
  CHECK(model->size() == 5);

  // Live: a new acme event arrives, another tenant's does not.
  REQUIRE(send_as(*rt, "g1", bank::deposit{5}, "globex"));
  auto more = send_as(*rt, "a1", bank::deposit{5}, "acme");
  REQUIRE(more);
  REQUIRE(rt->wait_for("acme-only", more->last_position, 30s));
  std::lock_guard lock{acme.m};
  CHECK(acme.positions.back() == more->last_position);
  CHECK(acme.positions.size() == 6);
}

TEST_CASE("a command of another tenant than its aggregate's, or of none, is invalid_argument "
          "and changes nothing",
          "[integration][runtime][tenant]") {
  cairn::test::temp_dir dir;
  auto rt = cairn::test::start_runtime(cairn::test::quick_options(dir.path()));
  cairn::test::register_ok<bank::account>(*rt);
  REQUIRE(send_as(*rt, "alice", bank::open_account{"Alice"}, "acme"));
  for (std::string other : {"globex", ""}) {
    auto r = send_as(*rt, "alice", bank::deposit{10}, other);
    REQUIRE_FALSE(r);
    CHECK(r.error().code == cairn::errc::invalid_argument);
    CHECK_THAT(r.error().message, Catch::Contains("'acme'") && Catch::Contains("account-alice"));
  }
  auto ok = send_as(*rt, "alice", bank::deposit{10}, "acme");
  REQUIRE(ok);
  CHECK(ok->version == 2);
  auto state = rt->state<bank::account>("alice");
  REQUIRE(state);
  CHECK(state->balance == 10);
}
