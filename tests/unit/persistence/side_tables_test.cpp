// Key-value spaces (projection read models) and dead letters: written in the
// same transaction as appends and checkpoints, read from any thread.

#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "cairn/persistence/event_store.hpp"
#include "support/temp_dir.hpp"

#include "helpers.hpp"

using namespace cairn::persistence;
using cairn::errc;
using cairn::test::append_ok;
using cairn::test::contains;
using cairn::test::flip_in_file;
using cairn::test::numbered;
using cairn::test::open_ok;
using cairn::test::request;
using cairn::test::temp_dir;
using cairn::test::value_of;

namespace {

kv_op put(std::string space, std::string key, std::string value) {
  return kv_op{kv_op::kind::put, std::move(space), std::move(key), std::move(value)};
}

kv_op erase(std::string space, std::string key) {
  return kv_op{kv_op::kind::erase, std::move(space), std::move(key), {}};
}

kv_op clear(std::string space) { return kv_op{kv_op::kind::clear, std::move(space), {}, {}}; }

dead_letter letter(std::string subscriber, std::uint64_t position, std::string error) {
  dead_letter dl;
  dl.subscriber = std::move(subscriber);
  dl.position = position;
  dl.stream = "account-1";
  dl.version = 7;
  dl.type = "deposited";
  dl.error = std::move(error);
  dl.attempts = 5;
  dl.first_failure_ns = 1000;
  dl.last_failure_ns = 2000;
  return dl;
}

} // namespace

TEST_CASE("key-value writes commit with the checkpoint and read back", "[unit][kv]") {
  temp_dir dir;
  auto store = open_ok(dir.path());
  write_batch b;
  b.kv.push_back(put("balances", "a", "10"));
  b.kv.push_back(put("balances", "b", "20"));
  b.kv.push_back(put("balances", "c", "30"));
  b.kv.push_back(put("other", "a", "x"));
  b.kv.push_back(erase("balances", "c"));
  b.kv.push_back(erase("balances", "never-there"));
  b.checkpoints.push_back({"balances", 42});
  REQUIRE(store->append_batch(b));

  CHECK(value_of(store->kv_get("balances", "a")) == std::optional<std::string>{"10"});
  CHECK_FALSE(value_of(store->kv_get("balances", "c")).has_value());
  CHECK(value_of(store->kv_get("other", "a")) == std::optional<std::string>{"x"});
  CHECK(value_of(store->load_checkpoint("balances")) == std::optional<std::uint64_t>{42});

  auto all = value_of(store->kv_scan("balances", ""));
  REQUIRE(all.size() == 2);
  CHECK(all[0] == std::pair<std::string, std::string>{"a", "10"});
  CHECK(all[1] == std::pair<std::string, std::string>{"b", "20"});
  // Paging resumes after the last key; a space never leaks into its neighbour.
  auto page = value_of(store->kv_scan("balances", "", "a", 10));
  REQUIRE(page.size() == 1);
  CHECK(page[0].first == "b");
  CHECK(value_of(store->kv_scan("balances", "b")).size() == 1);
  CHECK(value_of(store->stats()).kv_entries == 3);
}

TEST_CASE("clearing a space removes its keys only, atomically with the rest", "[unit][kv]") {
  temp_dir dir;
  auto store = open_ok(dir.path());
  write_batch fill;
  for (int i = 0; i < 500; ++i)
    fill.kv.push_back(put("model", "k" + std::to_string(i), std::string(100, 'v')));
  fill.kv.push_back(put("model-2", "k1", "kept"));
  fill.kv.push_back(put("mode", "k1", "kept"));
  REQUIRE(store->append_batch(fill));

  write_batch reset;
  reset.kv.push_back(clear("model"));
  reset.kv.push_back(put("model", "fresh", "1")); // ops apply in order: after the clear
  reset.checkpoints.push_back({"model", 0});
  REQUIRE(store->append_batch(reset));
  auto left = value_of(store->kv_scan("model", ""));
  REQUIRE(left.size() == 1);
  CHECK(left[0].first == "fresh");
  CHECK(value_of(store->kv_get("model-2", "k1")) == std::optional<std::string>{"kept"});
  CHECK(value_of(store->kv_get("mode", "k1")) == std::optional<std::string>{"kept"});
}

TEST_CASE("a batch whose append fails its own check still writes its key-values", "[unit][kv]") {
  temp_dir dir;
  auto store = open_ok(dir.path());
  write_batch b;
  b.appends.push_back(request("s-1", expected_version::exact(5), numbered(1)));
  b.kv.push_back(put("p", "k", "v"));
  auto out = value_of(store->append_batch(b));
  REQUIRE_FALSE(out[0].has_value());
  CHECK(out[0].error().code == errc::conflict);
  CHECK(value_of(store->kv_get("p", "k")) == std::optional<std::string>{"v"});
}

TEST_CASE("bad key-value input is refused and nothing of the batch is written", "[unit][kv]") {
  temp_dir dir;
  auto store = open_ok(dir.path());
  auto refused = [&](kv_op op, const char* what) {
    write_batch b;
    b.appends.push_back(request("s-1", expected_version::any(), numbered(1)));
    b.kv.push_back(std::move(op));
    auto r = store->append_batch(b);
    INFO(what);
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error().code == errc::invalid_argument);
  };
  refused(put("", "k", "v"), "empty space");
  refused(put(std::string("a\0b", 3), "k", "v"), "0 byte in space");
  refused(put("p", "", "v"), "empty key");
  refused(put("p", std::string(256, 'k'), "v"), "key too long");
  refused(put("p", "k", std::string((1 << 20) + 1, 'v')), "value too large");
  CHECK(value_of(store->last_position()) == 0);
  CHECK_FALSE(store->kv_get("", "k").has_value());
  CHECK_FALSE(store->kv_scan(std::string("a\0b", 3), "").has_value());
}

TEST_CASE("a corrupted value is reported, not returned", "[unit][kv]") {
  temp_dir dir;
  {
    auto store = open_ok(dir.path());
    write_batch b;
    b.kv.push_back(put("p", "k", "value-marker-0123456789"));
    REQUIRE(store->append_batch(b));
  }
  REQUIRE(flip_in_file(dir.sub("data.mdb"), "value-marker-0123456789", 3) > 0);
  auto store = open_ok(dir.path());
  auto r = store->kv_get("p", "k");
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error().code == errc::corrupted);
  CHECK(contains(r.error().to_string(), "p/k"));
}

TEST_CASE("dead letters are stored, listed per subscriber, counted and removed",
          "[unit][dead-letters]") {
  temp_dir dir;
  auto store = open_ok(dir.path());
  write_batch b;
  b.dead_letters.push_back(letter("mailer", 9, "smtp down"));
  b.dead_letters.push_back(letter("mailer", 3, "bad address"));
  b.dead_letters.push_back(letter("mail", 4, "other subscriber, a prefix of the first"));
  b.checkpoints.push_back({"mailer", 9});
  REQUIRE(store->append_batch(b));

  auto mailer = value_of(store->list_dead_letters("mailer"));
  REQUIRE(mailer.size() == 2);
  CHECK(mailer[0].position == 3); // by position
  CHECK(mailer[0].error == "bad address");
  CHECK(mailer[1].position == 9);
  CHECK(mailer[1].subscriber == "mailer");
  CHECK(mailer[1].stream == "account-1");
  CHECK(mailer[1].version == 7);
  CHECK(mailer[1].type == "deposited");
  CHECK(mailer[1].attempts == 5);
  CHECK(mailer[1].first_failure_ns == 1000);
  CHECK(mailer[1].last_failure_ns == 2000);
  CHECK(value_of(store->count_dead_letters("mailer")) == 2);
  CHECK(value_of(store->count_dead_letters("mail")) == 1);
  CHECK(value_of(store->list_dead_letters("")).size() == 3);
  CHECK(value_of(store->list_dead_letters("", 2)).size() == 2);
  CHECK(value_of(store->stats()).dead_letters == 3);

  // Storing the same (subscriber, position) again updates it.
  write_batch again;
  auto updated = letter("mailer", 9, "still down");
  updated.attempts = 10;
  again.dead_letters.push_back(updated);
  again.dead_letter_removals.push_back({"mailer", 3});
  again.dead_letter_removals.push_back({"mailer", 12345}); // absent: fine
  REQUIRE(store->append_batch(again));
  mailer = value_of(store->list_dead_letters("mailer"));
  REQUIRE(mailer.size() == 1);
  CHECK(mailer[0].attempts == 10);
  CHECK(mailer[0].error == "still down");
}

TEST_CASE("bad dead letters are refused", "[unit][dead-letters]") {
  temp_dir dir;
  auto store = open_ok(dir.path());
  auto refused = [&](dead_letter dl) {
    write_batch b;
    b.dead_letters.push_back(std::move(dl));
    auto r = store->append_batch(b);
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error().code == errc::invalid_argument);
  };
  refused(letter("", 1, "e"));
  refused(letter("s", 0, "e"));
  refused(letter("s", 1, std::string(5000, 'e')));
  CHECK_FALSE(store->count_dead_letters("").has_value());
  CHECK(value_of(store->count_dead_letters("s")) == 0);
}

TEST_CASE("a read-only open sees key-values and dead letters written by the writer", "[unit][kv]") {
  temp_dir dir;
  {
    auto writer = open_ok(dir.path());
    append_ok(*writer, "s-1", numbered(1));
    write_batch b;
    b.kv.push_back(put("p", "k", "v"));
    b.dead_letters.push_back(letter("sub", 1, "e"));
    REQUIRE(writer->append_batch(b));
  }
  auto ro_opts = cairn::test::fast_options();
  ro_opts.read_only = true;
  auto reader = open_ok(dir.path(), ro_opts);
  CHECK(value_of(reader->kv_get("p", "k")) == std::optional<std::string>{"v"});
  CHECK(value_of(reader->count_dead_letters("sub")) == 1);
}
