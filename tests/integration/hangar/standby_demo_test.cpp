// `hangar demo --cluster 3 --standby` end to end, as a user runs it: the
// hangar binary as a process (six node processes in all), its exit code, the
// lines that tell the story, and the stores it leaves, read here on their own.

#include <chrono>
#include <regex>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "cairn/persistence/event_store.hpp"
#include "cairn/persistence/replication.hpp"
#include "support/node_process.hpp"
#include "support/temp_dir.hpp"

using namespace std::chrono_literals;

namespace {

std::unique_ptr<cairn::persistence::event_store> open_read_only(const std::string& dir) {
  cairn::persistence::store_options o;
  o.read_only = true;
  auto s = cairn::persistence::open_store(dir, o);
  REQUIRE(s);
  return std::move(*s);
}

std::size_t count(const std::string& text, const std::string& what) {
  std::size_t n = 0;
  for (auto at = text.find(what); at != std::string::npos; at = text.find(what, at + 1))
    ++n;
  return n;
}

} // namespace

TEST_CASE("hangar demo --cluster 3 --standby kills an owner, promotes its standby, which serves "
          "its providers, and the old owner rejoins as its standby without losing an "
          "acknowledged event",
          "[integration][hangar][cluster][replication]") {
  cairn::test::temp_dir dir;
  const auto data = dir.sub("hangar-standby");
  cairn::test::node_process demo;
  REQUIRE(demo.start(HANGAR_PATH,
                     {"demo", "--cluster", "3", "--standby", "--seconds", "6", "--data", data}));
  auto last = demo.wait_line("every acknowledged event is there", 80s);
  (void)demo.wait_line("\x01", 2s); // drain what follows (nothing on success)
  const auto& out = demo.output();
  INFO(out);
  REQUIRE_FALSE(last.empty());
  CHECK(demo.stop(10s) == 0);

  CHECK(out.find("replication sync") != std::string::npos);
  CHECK(out.find("all 6 nodes up, every standby following") != std::string::npos);
  CHECK(out.find(">>> SIGKILL node B") != std::string::npos);
  CHECK(out.find("(pair B, served by B): unavailable: owner node B unreachable")
        != std::string::npos);
  CHECK(out.find("B2 answered: promoted: epoch 2") != std::string::npos);
  // Under sync the promoted node cannot acknowledge without a standby (the
  // probe fails on its own, or behind a command of B2's handlers that did) ...
  CHECK(out.find("(pair B, served by B2): unavailable: ") != std::string::npos);
  CHECK(out.find("standby B has not acknowledged position") != std::string::npos);
  // ... until the operator lets it serve alone, and back once B is its standby.
  CHECK(out.find("B2 answered: replication async") != std::string::npos);
  CHECK(out.find(">>> node B rejoined after") != std::string::npos);
  CHECK(out.find("B2 answered: replication sync") != std::string::npos);
  CHECK(out.find("B   standby of B2, following, epoch 2") != std::string::npos);
  CHECK(out.find("B2  serves, standby B connected, epoch 2") != std::string::npos);
  // Only B's providers failed, and only while B2 could not serve them.
  CHECK(out.find("(pair A, ") == std::string::npos);
  CHECK(out.find("(pair C, ") == std::string::npos);
  CHECK(out.find("LOST") == std::string::npos);
  CHECK(count(out, "… equal\n") == 3);
  CHECK(out.find("DIFFERENT") == std::string::npos);
  std::smatch m;
  REQUIRE(std::regex_search(out, m, std::regex{"B2 wrote ([0-9]+) acknowledged invocations"}));
  CHECK(std::stoull(m[1]) > 0);
  CHECK(out.find("B rejoined as its standby yes") != std::string::npos);

  // The stores on their own: B2 began epoch 2 after B's epoch 1, and B, now
  // its standby, holds the same log with the same epoch history.
  auto heir = open_read_only(data + "/node-B2");
  auto old = open_read_only(data + "/node-B");
  auto epochs = heir->epochs();
  REQUIRE(epochs);
  REQUIRE(epochs->size() == 2);
  CHECK((*epochs)[0].node == "B");
  CHECK((*epochs)[1].node == "B2");
  CHECK((*epochs)[1].epoch == 2);
  CHECK(*old->epochs() == *epochs);
  auto end = old->last_position();
  REQUIRE(end);
  CHECK(*end > (*epochs)[1].position); // B copied what B2 wrote after its promotion
  auto a = heir->digest_at(*end);
  auto b = old->digest_at(*end);
  REQUIRE(a);
  REQUIRE(b);
  CHECK(a->digest == b->digest);
  auto chain = old->check_chain(cairn::persistence::no_limit);
  REQUIRE(chain);
  CHECK(chain->first_broken == 0);
}

TEST_CASE("hangar demo --cluster 3 --standby --replication async promotes without switching "
          "modes and loses nothing but what the old owner cut",
          "[integration][hangar][cluster][replication]") {
  cairn::test::temp_dir dir;
  const auto data = dir.sub("hangar-standby-async");
  cairn::test::node_process demo;
  REQUIRE(demo.start(HANGAR_PATH, {"demo", "--cluster", "3", "--standby", "--replication", "async",
                                   "--seconds", "5", "--data", data}));
  auto last = demo.wait_line("key moments:", 80s);
  (void)demo.wait_line("\x01", 3s);
  const auto& out = demo.output();
  INFO(out);
  REQUIRE_FALSE(last.empty());
  CHECK(demo.stop(10s) == 0);
  CHECK(out.find("replication async") != std::string::npos);
  CHECK(out.find("B2 answered: promoted: epoch 2") != std::string::npos);
  // B2 serves B's providers at once: async needs no standby to acknowledge.
  CHECK(out.find("switch it to async") == std::string::npos);
  CHECK(out.find("B rejoined as its standby yes") != std::string::npos);
  CHECK(out.find("(pair A, ") == std::string::npos);
  CHECK(out.find("(pair C, ") == std::string::npos);
  // Whatever is missing was cut from B's tail and saved (exit 0 says so too).
  CHECK(out.find("LOSS:") == std::string::npos);
  CHECK((out.find("every acknowledged event is there") != std::string::npos
         || out.find("async failover lost") != std::string::npos));
}

TEST_CASE("hangar demo refuses --standby without --cluster and --replication without --standby",
          "[integration][hangar]") {
  for (std::vector<std::string> args :
       {std::vector<std::string>{"demo", "--standby"},
        std::vector<std::string>{"demo", "--cluster", "3", "--replication", "async"},
        std::vector<std::string>{"demo", "--cluster", "3", "--standby", "--replication", "fast"}}) {
    cairn::test::node_process demo;
    REQUIRE(demo.start(HANGAR_PATH, args));
    (void)demo.wait_line("\x01", 5s); // it exits at once: no output on stdout
    CHECK(demo.stop(10s) == 2);
  }
}
