// `cairn export --subject` and `cairn forget` through run_cli (the CLI as a
// library, with a registry that knows the customer's events), on a store a
// runtime wrote.

#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <sstream>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "cairn/tools/cli.hpp"
#include "integration/customer.hpp"
#include "integration/runtime_support.hpp"
#include "support/temp_dir.hpp"

using cairn::test::temp_dir;

namespace {

struct cli_run {
  int code = -1;
  std::string out;
};

/// Runs `cairn ARGS...` in this process, capturing stdout.
cli_run cli(const cairn::persistence::event_registry& types, std::vector<std::string> args) {
  args.insert(args.begin(), "cairn");
  std::vector<char*> argv;
  for (auto& a : args)
    argv.push_back(a.data());
  argv.push_back(nullptr);
  std::ostringstream captured;
  auto* old = std::cout.rdbuf(captured.rdbuf());
  cli_run r;
  r.code = cairn::tools::run_cli(static_cast<int>(args.size()), argv.data(), types);
  std::cout.rdbuf(old);
  r.out = captured.str();
  return r;
}

std::vector<std::string> lines_of(const std::string& path) {
  std::ifstream in(path);
  std::vector<std::string> out;
  for (std::string line; std::getline(in, line);)
    out.push_back(line);
  return out;
}

bool contains(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}

} // namespace

TEST_CASE("cairn export --subject writes the subject's events decrypted, and absent after "
          "cairn forget",
          "[integration][cli][personal]") {
  temp_dir keys, dir, out;
  auto key_file = keys.path() + "/master.key";
  std::ofstream{key_file} << std::string(64, '7') << '\n';
  {
    auto o = cairn::test::quick_options(dir.path());
    o.store.master_key_file = key_file;
    auto rt = cairn::test::start_runtime(o);
    cairn::aggregate_options agg;
    agg.snapshot_interval = 1;
    cairn::test::register_ok<crm::customer>(*rt, agg);
    cairn::command_options ann, bob;
    ann.subject = "ann";
    bob.subject = "bob";
    auto a = rt->send<crm::customer>("7", crm::register_customer{"Ann", "ann@mail.test", "gold"},
                                     ann);
    auto b = rt->send<crm::customer>("8", crm::register_customer{"Bob", "bob@mail.test", "tin"},
                                     bob);
    REQUIRE(cairn::test::await(a));
    REQUIRE(cairn::test::await(b));
    auto c = rt->send<crm::customer>("7", crm::rename_customer{"Ann Z"}, ann);
    REQUIRE(cairn::test::await(c));
    REQUIRE(cairn::test::eventually([&] {
      auto s = rt->store().load_snapshot("customer-7");
      return s && *s && (*s)->version == 2;
    }));
  }
  cairn::persistence::event_registry types;
  REQUIRE(cairn::persistence::register_event_types<crm::customer::event>(types));

  auto before = out.path() + "/before.jsonl";
  auto r = cli(types, {"export", dir.path(), before, "--subject", "ann", "--master-key", key_file});
  INFO(r.out);
  REQUIRE(r.code == cairn::tools::exit_ok);
  CHECK(contains(r.out, "exported 2 events about ann"));
  auto lines = lines_of(before);
  REQUIRE(lines.size() == 3);
  CHECK(contains(lines[0], "\"subject\":\"ann\""));
  CHECK(contains(lines[0], "\"decrypted\":true"));
  CHECK(contains(lines[1], "\"subject\":\"ann\""));
  CHECK(contains(lines[1], "\"stream\":\"customer-7\""));
  CHECK(contains(lines[1], "{\"personal\":\"Ann\"}"));
  CHECK(contains(lines[1], "{\"personal\":\"ann@mail.test\"}"));
  CHECK(contains(lines[1], "\"tier\":\"gold\""));
  CHECK(contains(lines[2], "{\"personal\":\"Ann Z\"}"));
  for (const auto& l : lines)
    CHECK_FALSE(contains(l, "Bob"));

  auto keyless = out.path() + "/keyless.jsonl";
  r = cli(types, {"export", dir.path(), keyless, "--subject", "ann"});
  REQUIRE(r.code == cairn::tools::exit_ok);
  CHECK(contains(r.out, "no master key"));
  auto unkeyed = lines_of(keyless);
  REQUIRE(unkeyed.size() == 3);
  CHECK(contains(unkeyed[1], "\"name\":{\"absent\":true}"));
  CHECK_FALSE(contains(unkeyed[1], "Ann"));

  r = cli(types, {"forget", dir.path(), "ann", "--master-key", key_file});
  INFO(r.out);
  REQUIRE(r.code == cairn::tools::exit_ok);
  CHECK(contains(r.out, "forgot data subject ann"));
  CHECK(contains(r.out, "1 stream"));

  auto after = out.path() + "/after.jsonl";
  r = cli(types, {"export", dir.path(), after, "--subject", "ann", "--master-key", key_file});
  REQUIRE(r.code == cairn::tools::exit_ok);
  auto forgotten = lines_of(after);
  REQUIRE(forgotten.size() == 3); // the events stay, with their metadata
  CHECK(contains(forgotten[1], "\"name\":{\"absent\":true}"));
  CHECK(contains(forgotten[1], "\"email\":{\"absent\":true}"));
  CHECK(contains(forgotten[1], "\"tier\":\"gold\""));
  for (const auto& l : forgotten) {
    CHECK_FALSE(contains(l, "Ann"));
    CHECK_FALSE(contains(l, "ann@mail.test"));
  }
  // Bob is untouched.
  auto bobs = out.path() + "/bob.jsonl";
  r = cli(types, {"export", dir.path(), bobs, "--subject", "bob", "--master-key", key_file});
  REQUIRE(r.code == cairn::tools::exit_ok);
  auto bob_lines = lines_of(bobs);
  REQUIRE(bob_lines.size() == 2);
  CHECK(contains(bob_lines[1], "{\"personal\":\"Bob\"}"));

  // The snapshot of ann's stream is gone, bob's is kept.
  auto store = cairn::persistence::open_store(dir.path(), {});
  REQUIRE(store);
  CHECK_FALSE((*store)->load_snapshot("customer-7")->has_value());
  CHECK((*store)->load_snapshot("customer-8")->has_value());
}

TEST_CASE("cairn forget refuses a bad subject and an existing export file is never overwritten",
          "[integration][cli][personal]") {
  temp_dir dir, out;
  {
    auto store = cairn::persistence::open_store(dir.path(), {});
    REQUIRE(store);
  }
  cairn::persistence::event_registry types;
  auto r = cli(types, {"forget", dir.path(), std::string(256, 's')});
  CHECK(r.code == cairn::tools::exit_usage);
  auto file = out.path() + "/x.jsonl";
  std::ofstream{file} << "keep";
  r = cli(types, {"export", dir.path(), file, "--subject", "ann"});
  CHECK(r.code == cairn::tools::exit_usage);
  CHECK(lines_of(file) == std::vector<std::string>{"keep"});
}

TEST_CASE("after cairn forget the log holds a forget record that verify checks and readers skip",
          "[integration][cli][forget]") {
  temp_dir dir, out;
  {
    auto store = cairn::persistence::open_store(dir.path(), {});
    REQUIRE(store);
    cairn::persistence::append_request req;
    req.stream = "customer-7";
    req.meta.subject = "ann";
    req.events.push_back(cairn::persistence::event_data{"noted", 1, "x", {}, {}});
    cairn::persistence::write_batch b;
    b.appends.push_back(std::move(req));
    REQUIRE((*store)->append_batch(b));
  }
  cairn::persistence::event_registry types;
  auto r = cli(types, {"forget", dir.path(), "ann"});
  INFO(r.out);
  REQUIRE(r.code == cairn::tools::exit_ok);
  {
    auto store = cairn::persistence::open_store(dir.path(), {});
    REQUIRE(store);
    CHECK((*store)->last_position().value() == 2);
  }
  r = cli(types, {"verify", dir.path()});
  INFO(r.out);
  CHECK(r.code == cairn::tools::exit_ok);
  CHECK_FALSE(contains(r.out, "problem"));
  auto file = out.path() + "/all.jsonl";
  r = cli(types, {"export", dir.path(), file});
  INFO(r.out);
  REQUIRE(r.code == cairn::tools::exit_ok);
  auto lines = lines_of(file);
  REQUIRE(lines.size() == 2); // the header and the one event
  CHECK_FALSE(contains(lines[1], "$forget"));
}
