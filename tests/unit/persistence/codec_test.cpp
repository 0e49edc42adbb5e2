#include <algorithm>
#include <cstdint>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <variant>
#include <vector>

#include <cereal/types/map.hpp>
#include <cereal/types/optional.hpp>
#include <cereal/types/string.hpp>
#include <cereal/types/variant.hpp>
#include <cereal/types/vector.hpp>
#include <catch2/catch.hpp>

#include "cairn/persistence/codec.hpp"
#include "cairn/persistence/event_store.hpp"
#include "support/temp_dir.hpp"

#include "helpers.hpp"

using namespace cairn::persistence;
using cairn::errc;
using cairn::test::open_ok;
using cairn::test::request;
using cairn::test::temp_dir;

// -- event types of the tests ----------------------------------------------------------

namespace {

struct opened {
  std::string owner;
  std::int64_t limit = 0;
  template <class A> void serialize(A& a) { a(owner, limit); }
  bool operator==(const opened& o) const { return owner == o.owner && limit == o.limit; }
};

struct tagged {
  std::vector<std::string> tags;
  std::map<std::string, std::int32_t> counts;
  std::optional<double> ratio;
  std::variant<std::int64_t, std::string> ref; // a variant inside a payload
  template <class A> void serialize(A& a) { a(tags, counts, ratio, ref); }
  bool operator==(const tagged& o) const {
    return tags == o.tags && counts == o.counts && ratio == o.ratio && ref == o.ref;
  }
};

struct closed {
  template <class A> void serialize(A&) {}
  bool operator==(const closed&) const { return true; }
};

using account_event = std::variant<opened, tagged, closed>;

// Three generations of one event. The old C++ types stay only to read old payloads.
struct deposited_v1 {
  std::int32_t cents = 0;
  template <class A> void serialize(A& a) { a(cents); }
};
struct deposited_v2 {
  std::int64_t cents = 0;
  std::string currency;
  template <class A> void serialize(A& a) { a(cents, currency); }
};
struct deposited {
  std::int64_t cents = 0;
  std::string currency;
  std::string memo;
  template <class A> void serialize(A& a) { a(cents, currency, memo); }
};

struct unrelated {
  int x = 0;
  template <class A> void serialize(A& a) { a(x); }
};

} // namespace

// `deposited` is at schema version 3.
CEREAL_CLASS_VERSION(deposited, 3)

namespace {

event_registry account_registry() {
  event_registry reg;
  REQUIRE(reg.add<opened>("opened"));
  REQUIRE(reg.add<tagged>("tagged"));
  REQUIRE(reg.add<closed>("closed"));
  return reg;
}

/// A registry that reads deposited v1, v2 and v3.
event_registry deposit_registry() {
  event_registry reg;
  REQUIRE(reg.add<deposited>("deposited"));
  // Newest step first.
  REQUIRE(reg.add_upcaster<deposited_v2, deposited>("deposited", 2, [](const deposited_v2& o) {
    return deposited{o.cents, o.currency, "-"};
  }));
  REQUIRE(reg.add_upcaster<deposited_v1, deposited_v2>("deposited", 1, [](const deposited_v1& o) {
    return deposited_v2{o.cents, "EUR"};
  }));
  return reg;
}

template <class T> std::string encoded(const T& value) {
  std::string out;
  encode_payload(value, out);
  return out;
}

} // namespace

// -- payload round trips ---------------------------------------------------------------

TEST_CASE("payloads round-trip through encode and decode", "[unit][codec]") {
  opened o{"alice", -42};
  auto back = decode_payload<opened>(encoded(o));
  REQUIRE(back);
  CHECK(*back == o);

  tagged t{{"a", "", "ccc"}, {{"x", 1}, {"y", -2}}, 0.5, std::string{"ref-9"}};
  auto t_back = decode_payload<tagged>(encoded(t));
  REQUIRE(t_back);
  CHECK(*t_back == t);
  tagged t2{{}, {}, std::nullopt, std::int64_t{77}};
  auto t2_back = decode_payload<tagged>(encoded(t2));
  REQUIRE(t2_back);
  CHECK(*t2_back == t2);
  CHECK(std::get<std::int64_t>(t2_back->ref) == 77);

  auto c_back = decode_payload<closed>(encoded(closed{}));
  REQUIRE(c_back);
  CHECK(encoded(closed{}).empty());

  account_event v = tagged{{"z"}, {}, 1.25, std::int64_t{3}};
  auto v_back = decode_payload<account_event>(encoded(v));
  REQUIRE(v_back);
  CHECK(*v_back == v);
}

TEST_CASE("truncated payload bytes are corrupted, never a half-built value", "[unit][codec]") {
  auto bytes = encoded(tagged{{"alpha", "beta"}, {{"k", 5}}, 2.0, std::string{"gamma"}});
  REQUIRE(decode_payload<tagged>(bytes));
  for (std::size_t n = 0; n < bytes.size(); ++n) {
    INFO("first " << n << " of " << bytes.size() << " bytes");
    auto r = decode_payload<tagged>(std::string_view{bytes}.substr(0, n));
    REQUIRE_FALSE(r);
    CHECK(r.error().code == errc::corrupted);
  }
}

TEST_CASE("trailing bytes after a payload are corrupted", "[unit][codec]") {
  auto bytes = encoded(opened{"bob", 1}) + "xyz";
  auto r = decode_payload<opened>(bytes);
  REQUIRE_FALSE(r);
  CHECK(r.error().code == errc::corrupted);
  CHECK_THAT(r.error().message, Catch::Contains("3 trailing bytes"));
}

TEST_CASE("a registry encodes and decodes registered types and variants of them",
          "[unit][codec][registry]") {
  auto reg = account_registry();
  auto e = reg.encode(opened{"carol", 100});
  REQUIRE(e);
  CHECK(e->type == "opened");
  CHECK(e->schema_version == 1);
  CHECK(e->payload == encoded(opened{"carol", 100}));

  account_event v = tagged{{"t"}, {{"n", 1}}, std::nullopt, std::string{"r"}};
  auto ev = reg.encode(v);
  REQUIRE(ev);
  CHECK(ev->type == "tagged");
  auto as_variant = reg.decode<account_event>(ev->type, ev->schema_version, ev->payload);
  REQUIRE(as_variant);
  CHECK(*as_variant == v);
  auto as_type = reg.decode<tagged>(ev->type, ev->schema_version, ev->payload);
  REQUIRE(as_type);
  CHECK(*as_type == std::get<tagged>(v));

  auto closed_ev = reg.encode(account_event{closed{}});
  REQUIRE(closed_ev);
  CHECK(closed_ev->type == "closed");
  CHECK(std::holds_alternative<closed>(
    cairn::test::value_of(reg.decode<account_event>("closed", 1, closed_ev->payload))));

  CHECK(reg.name_of<opened>().value() == "opened");
  CHECK(reg.current_version("opened") == std::optional<std::uint32_t>{1});
  CHECK_FALSE(reg.current_version("nope").has_value());
  auto types = reg.types();
  REQUIRE(types.size() == 3);
  CHECK(types[0] == std::pair<std::string, std::uint32_t>{"closed", 1});
  CHECK(types[2] == std::pair<std::string, std::uint32_t>{"tagged", 1});
}

TEST_CASE("a registry refuses to encode or decode what it does not know",
          "[unit][codec][registry]") {
  auto reg = account_registry();
  auto e = reg.encode(unrelated{1});
  REQUIRE_FALSE(e);
  CHECK(e.error().code == errc::invalid_argument);
  auto unknown = reg.decode<opened>("mystery", 1, "");
  REQUIRE_FALSE(unknown);
  CHECK(unknown.error().code == errc::invalid_argument);
  auto payload = encoded(opened{"d", 1});
  auto wrong_type = reg.decode<tagged>("opened", 1, payload);
  REQUIRE_FALSE(wrong_type);
  CHECK(wrong_type.error().code == errc::invalid_argument);
  auto newer = reg.decode<opened>("opened", 2, payload);
  REQUIRE_FALSE(newer);
  CHECK(newer.error().code == errc::invalid_argument);
  auto truncated = reg.decode<account_event>("opened", 1, payload.substr(0, 3));
  REQUIRE_FALSE(truncated);
  CHECK(truncated.error().code == errc::corrupted);
  auto trailing = reg.decode<account_event>("opened", 1, payload + "!");
  REQUIRE_FALSE(trailing);
  CHECK(trailing.error().code == errc::corrupted);
}

TEST_CASE("decoding into a variant that lacks the stored type is invalid",
          "[unit][codec][registry]") {
  auto reg = account_registry();
  REQUIRE(reg.add<deposited>("deposited"));
  auto d = reg.encode(deposited{1, "EUR", ""});
  REQUIRE(d);
  auto r = reg.decode<account_event>(d->type, d->schema_version, d->payload);
  REQUIRE_FALSE(r);
  CHECK(r.error().code == errc::invalid_argument);
  CHECK(r.error().context == "deposited");
}

TEST_CASE("a registry refuses type names that the store would refuse", "[unit][codec][registry]") {
  // The store accepts 1-255 printable bytes without spaces; a name it will
  // refuse on every append should fail here, at registration.
  for (const char* name : {"has space", "tab\there", "nl\n", "caf\xc3\xa9"}) {
    INFO("name '" << name << "'");
    event_registry reg; // fresh, so only the name can be the problem
    auto r = reg.add<opened>(name);
    CHECK_FALSE(r);
  }
}

TEST_CASE("registering a name or a C++ type twice fails", "[unit][codec][registry]") {
  event_registry reg;
  REQUIRE(reg.add<opened>("opened"));
  auto same_name = reg.add<tagged>("opened");
  REQUIRE_FALSE(same_name);
  CHECK(same_name.error().code == errc::invalid_argument);
  CHECK_THAT(same_name.error().message, Catch::Contains("twice"));
  auto same_type = reg.add<opened>("opened_again");
  REQUIRE_FALSE(same_type);
  CHECK(same_type.error().code == errc::invalid_argument);
  CHECK_THAT(same_type.error().message, Catch::Contains("'opened'"));
  CHECK(reg.add<tagged>("").error().code == errc::invalid_argument);
  CHECK(reg.add<tagged>(std::string(256, 'n')).error().code == errc::invalid_argument);
  CHECK(reg.add<tagged>(std::string(255, 'n')));
  CHECK(reg.types().size() == 2);
}

// -- upcasting -------------------------------------------------------------------------

TEST_CASE("an upcaster chain v1 -> v2 -> v3 decodes old payloads", "[unit][codec][upcast]") {
  auto reg = deposit_registry();
  CHECK(reg.current_version("deposited") == std::optional<std::uint32_t>{3});
  auto v3 = reg.encode(deposited{500, "USD", "rent"});
  REQUIRE(v3);
  CHECK(v3->schema_version == 3);

  auto from_v1 = reg.decode<deposited>("deposited", 1, encoded(deposited_v1{250}));
  REQUIRE(from_v1);
  CHECK(from_v1->cents == 250);
  CHECK(from_v1->currency == "EUR");
  CHECK(from_v1->memo == "-");
  auto from_v2 = reg.decode<deposited>("deposited", 2, encoded(deposited_v2{99, "CHF"}));
  REQUIRE(from_v2);
  CHECK(from_v2->cents == 99);
  CHECK(from_v2->currency == "CHF");
  CHECK(from_v2->memo == "-");
  auto current = reg.decode<deposited>(v3->type, 3, v3->payload);
  REQUIRE(current);
  CHECK(current->memo == "rent");

  for (std::uint32_t v : {1u, 2u, 3u})
    CHECK(reg.can_decode("deposited", v));
  CHECK_FALSE(reg.can_decode("deposited", 0));
  CHECK_FALSE(reg.can_decode("deposited", 4));
  CHECK_FALSE(reg.can_decode("withdrawn", 1));

  // A broken old payload fails as corrupted, naming the step.
  auto broken = reg.decode<deposited>("deposited", 1, "\x01");
  REQUIRE_FALSE(broken);
  CHECK(broken.error().code == errc::corrupted);
  CHECK(broken.error().context == "deposited v1");
}

TEST_CASE("old events in a store decode through the upcasters", "[unit][codec][upcast][store]") {
  auto reg = deposit_registry();
  temp_dir dir;
  auto opts = cairn::test::fast_options();
  opts.registry = &reg;
  auto store = open_ok(dir.sub("s"), opts);
  event_data old1{"deposited", 1, encoded(deposited_v1{1}), std::nullopt, std::nullopt};
  event_data old2{"deposited", 2, encoded(deposited_v2{2, "GBP"}), std::nullopt, std::nullopt};
  auto now = reg.encode(deposited{3, "JPY", "new"});
  REQUIRE(now);
  REQUIRE(store->append(request("acct-1", expected_version::no_stream(), {old1, old2, *now})));
  auto events = store->read_stream("acct-1", 1, cairn::persistence::no_limit);
  REQUIRE(events);
  REQUIRE(events->size() == 3);
  std::vector<deposited> decoded;
  for (const auto& e : *events) {
    auto d = reg.decode<deposited>(e);
    REQUIRE(d);
    decoded.push_back(*d);
  }
  CHECK(decoded[0].cents == 1);
  CHECK(decoded[0].currency == "EUR");
  CHECK(decoded[1].currency == "GBP");
  CHECK(decoded[1].memo == "-");
  CHECK(decoded[2].memo == "new");
  auto cat = store->type_catalogue();
  REQUIRE(cat);
  using P = std::pair<std::string, std::uint32_t>;
  CHECK(*cat == std::vector<P>{{"deposited", 1}, {"deposited", 2}, {"deposited", 3}});
}

TEST_CASE("an upcaster step that would leave a hole in the chain fails at registration",
          "[unit][codec][upcast]") {
  event_registry reg;
  REQUIRE(reg.add<deposited>("deposited"));
  auto hole = reg.add_upcaster<deposited_v1, deposited_v2>("deposited", 1,
                                                           [](const deposited_v1& o) {
                                                             return deposited_v2{o.cents, "EUR"};
                                                           });
  REQUIRE_FALSE(hole);
  CHECK(hole.error().code == errc::invalid_argument);
  CHECK_THAT(hole.error().message, Catch::Contains("v2 -> v3"));
  CHECK_FALSE(reg.can_decode("deposited", 1));
  auto check = reg.check_decodable({{"deposited", 1}});
  REQUIRE_FALSE(check);
}

TEST_CASE("an upcaster that is out of range, repeated or for an unknown type fails",
          "[unit][codec][upcast]") {
  auto reg = deposit_registry();
  auto ok_step = [](std::string_view b) -> cairn::result<std::string> { return std::string{b}; };
  auto again = reg.add_upcaster("deposited", 2, ok_step);
  REQUIRE_FALSE(again);
  CHECK_THAT(again.error().message, Catch::Contains("twice"));
  CHECK(reg.add_upcaster("deposited", 3, ok_step).error().code == errc::invalid_argument);
  CHECK(reg.add_upcaster("deposited", 0, ok_step).error().code == errc::invalid_argument);
  CHECK(reg.add_upcaster("withdrawn", 1, ok_step).error().code == errc::invalid_argument);
  CHECK(reg.add_upcaster("deposited", 1, event_registry::upcast_fn{}).error().code
        == errc::invalid_argument);
}

TEST_CASE("check_decodable names every pair the registry cannot decode",
          "[unit][codec][registry]") {
  auto reg = deposit_registry();
  REQUIRE(reg.add<opened>("opened"));
  CHECK(reg.check_decodable({{"deposited", 1}, {"deposited", 3}, {"opened", 1}}));
  CHECK(reg.check_decodable({}));
  auto r = reg.check_decodable(
    {{"deposited", 2}, {"deposited", 4}, {"opened", 2}, {"mystery", 1}, {"opened", 1}});
  REQUIRE_FALSE(r);
  CHECK(r.error().code == errc::invalid_argument);
  CHECK_THAT(r.error().message, Catch::Contains("deposited v4"));
  CHECK_THAT(r.error().message, Catch::Contains("opened v2"));
  CHECK_THAT(r.error().message, Catch::Contains("mystery v1"));
  CHECK_THAT(r.error().message, !Catch::Contains("deposited v2"));
  CHECK_THAT(r.error().message, !Catch::Contains("opened v1"));
}

// -- the registry and the store's type catalogue ----------------------------------------

TEST_CASE("opening a store that holds types the registry lacks fails naming them",
          "[unit][codec][store][open]") {
  temp_dir dir;
  {
    auto store = open_ok(dir.sub("s"));
    REQUIRE(store->append(request("acct-1", expected_version::any(),
                                  {cairn::test::event("opened", encoded(opened{"a", 1})),
                                   cairn::test::event("mystery", "??")})));
    auto legacy = cairn::test::event("deposited", encoded(deposited_v1{5}));
    legacy.schema_version = 1;
    REQUIRE(store->append(request("acct-2", expected_version::any(), {legacy})));
  }
  event_registry reg;
  REQUIRE(reg.add<opened>("opened"));
  REQUIRE(reg.add<deposited>("deposited")); // v3, and no upcasters
  auto opts = cairn::test::fast_options();
  opts.registry = &reg;

  auto refused = open_store(dir.sub("s"), opts);
  REQUIRE_FALSE(refused);
  CHECK(refused.error().code == errc::invalid_argument);
  CHECK_THAT(refused.error().message, Catch::Contains("mystery v1"));
  CHECK_THAT(refused.error().message, Catch::Contains("deposited v1"));
  CHECK_THAT(refused.error().message, !Catch::Contains("opened"));
  CHECK(refused.error().context == dir.sub("s"));

  opts.allow_unknown_types = true;
  auto tool = open_ok(dir.sub("s"), opts);
  auto events = tool->read_stream("acct-1", 1, cairn::persistence::no_limit);
  REQUIRE(events);
  CHECK(events->size() == 2);
  auto cat = tool->type_catalogue();
  REQUIRE(cat);
  using P = std::pair<std::string, std::uint32_t>;
  CHECK(*cat == std::vector<P>{{"deposited", 1}, {"mystery", 1}, {"opened", 1}});
  // Appends still check the registry.
  auto more = tool->append(
    request("acct-1", expected_version::any(), {cairn::test::event("mystery", "again")}));
  REQUIRE_FALSE(more);
  CHECK(more.error().code == errc::invalid_argument);
}

TEST_CASE("a store whose types the registry knows opens with the registry",
          "[unit][codec][store][open]") {
  temp_dir dir;
  auto reg = account_registry();
  auto opts = cairn::test::fast_options();
  opts.registry = &reg;
  {
    auto store = open_ok(dir.sub("s"), opts);
    auto e = reg.encode(account_event{opened{"o", 1}});
    REQUIRE(e);
    REQUIRE(store->append(request("acct-1", expected_version::any(), {*e})));
  }
  auto store = open_ok(dir.sub("s"), opts);
  auto events = store->read_stream("acct-1", 1, 1);
  REQUIRE(events);
  REQUIRE(events->size() == 1);
  auto back = reg.decode<account_event>(events->front());
  REQUIRE(back);
  CHECK(std::get<opened>(*back).owner == "o");
}

namespace {
struct withdrawn_v2 {
  std::int64_t cents = 0;
  template <class A> void serialize(A& a) { a(cents); }
};
} // namespace
CEREAL_CLASS_VERSION(withdrawn_v2, 2)

TEST_CASE("a type versioned with CEREAL_CLASS_VERSION registers at that version",
          "[unit][codec][registry]") {
  event_registry reg;
  REQUIRE(reg.add<withdrawn_v2>("withdrawn"));
  CHECK(reg.current_version("withdrawn") == std::optional<std::uint32_t>{2});
  auto e = reg.encode(withdrawn_v2{7});
  REQUIRE(e);
  CHECK(e->schema_version == 2);
}

TEST_CASE("to_json writes a registered payload with cereal's JSON archive, upcasting old ones",
          "[unit][codec][json]") {
  auto reg = account_registry();
  auto ann = reg.encode(account_event{opened{"Ann \"A\"", 7}});
  REQUIRE(ann);
  auto json = reg.to_json(ann->type, ann->schema_version, ann->payload);
  REQUIRE(json);
  CHECK(*json == R"({"value0":"Ann \"A\"","value1":7})");
  auto empty = reg.encode(account_event{closed{}});
  REQUIRE(empty);
  CHECK(cairn::test::value_of(reg.to_json("closed", 1, empty->payload)) == "{}");

  auto deposits = deposit_registry();
  auto from_v1 = deposits.to_json("deposited", 1, encoded(deposited_v1{250}));
  REQUIRE(from_v1);
  CHECK_THAT(*from_v1, Catch::Contains(R"("value0":250,"value1":"EUR","value2":"-")"));

  auto unknown = reg.to_json("withdrawn", 1, "");
  REQUIRE_FALSE(unknown);
  CHECK(unknown.error().code == errc::invalid_argument);
  auto broken = reg.to_json("opened", 1, "\x01");
  REQUIRE_FALSE(broken);
  CHECK(broken.error().code == errc::corrupted);
}

// -- bounded decoding: hostile lengths --------------------------------------------------

namespace {

/// Refuses (and records) any allocation above 1 MiB, so a test sees what a
/// decode would have asked for without the machine paying for it.
inline std::size_t largest_request = 0;

template <class T> struct capped_allocator {
  using value_type = T;
  capped_allocator() = default;
  template <class U> capped_allocator(const capped_allocator<U>&) {}
  T* allocate(std::size_t n) {
    largest_request = std::max(largest_request, n * sizeof(T));
    if (n * sizeof(T) > (std::size_t{1} << 20))
      throw std::bad_alloc{};
    return std::allocator<T>{}.allocate(n);
  }
  void deallocate(T* p, std::size_t n) { std::allocator<T>{}.deallocate(p, n); }
  template <class U> bool operator==(const capped_allocator<U>&) const { return true; }
  template <class U> bool operator!=(const capped_allocator<U>&) const { return false; }
};

using capped_string = std::basic_string<char, std::char_traits<char>, capped_allocator<char>>;

struct with_string {
  capped_string text;
  template <class A> void serialize(A& a) { a(text); }
};

struct with_vector {
  std::vector<std::int64_t, capped_allocator<std::int64_t>> values;
  template <class A> void serialize(A& a) { a(values); }
};

struct with_names {
  std::vector<std::string, capped_allocator<std::string>> names;
  template <class A> void serialize(A& a) { a(names); }
};

struct with_map {
  std::map<std::string, std::int32_t> counts;
  template <class A> void serialize(A& a) { a(counts); }
};

/// A recursive type: each level costs 8 bytes of input.
struct tree {
  std::vector<tree> children;
  template <class A> void serialize(A& a) { a(children); }
};

/// A cereal length (little-endian uint64) followed by `filler` bytes.
std::string length_then(std::uint64_t length, std::size_t filler) {
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i)
    out[static_cast<std::size_t>(i)] = static_cast<char>(length >> (8 * i));
  return out + std::string(filler, 'x');
}

constexpr std::uint64_t four_gib = std::uint64_t{1} << 32;

} // namespace

TEST_CASE("a string length of 4 GiB in a 93-byte payload is corrupted and allocates nothing",
          "[unit][codec][bounded]") {
  largest_request = 0;
  auto bytes = length_then(four_gib, 85);
  REQUIRE(bytes.size() == 93);
  auto r = decode_payload<with_string>(bytes);
  REQUIRE_FALSE(r);
  CHECK(r.error().code == errc::corrupted);
  CHECK_THAT(r.error().message, Catch::Contains("with_string"));
  CHECK_THAT(r.error().message, Catch::Contains("93 bytes"));
  CHECK_THAT(r.error().message,
             Catch::Contains("a length of 4294967296 at byte 0 is beyond the 85 bytes left"));
  CHECK(largest_request <= 93);

  // The same bytes as a std::string: refused before any resize.
  auto plain = decode_payload<opened>(bytes);
  REQUIRE_FALSE(plain);
  CHECK(plain.error().code == errc::corrupted);
  CHECK_THAT(plain.error().message, Catch::Contains("beyond the 85 bytes left"));
}

TEST_CASE("a length that fits the input exactly decodes, one byte more is refused",
          "[unit][codec][bounded]") {
  auto ok = decode_payload<std::string>(length_then(85, 85));
  REQUIRE(ok);
  CHECK(ok->size() == 85);
  auto over = decode_payload<std::string>(length_then(86, 85));
  REQUIRE_FALSE(over);
  CHECK(over.error().code == errc::corrupted);
}

TEST_CASE("vector and map lengths beyond the input are corrupted and allocate nothing",
          "[unit][codec][bounded]") {
  largest_request = 0;
  for (std::uint64_t length :
       {four_gib, std::uint64_t{1} << 40, ~std::uint64_t{0}, std::uint64_t{86}}) {
    INFO("length " << length);
    auto bytes = length_then(length, 85);
    auto v = decode_payload<with_vector>(bytes);
    REQUIRE_FALSE(v);
    CHECK(v.error().code == errc::corrupted);
    CHECK_THAT(v.error().message, Catch::Contains("is beyond the 85 bytes left"));
    auto n = decode_payload<with_names>(bytes);
    REQUIRE_FALSE(n);
    CHECK(n.error().code == errc::corrupted);
    auto m = decode_payload<with_map>(bytes);
    REQUIRE_FALSE(m);
    CHECK(m.error().code == errc::corrupted);
    CHECK_THAT(m.error().message, Catch::Contains("is beyond the 85 bytes left"));
  }
  // A vector of int64 may claim as many elements as bytes follow: 85 * 8.
  CHECK(largest_request <= 85 * sizeof(std::int64_t));
}

TEST_CASE("a length inside a nested value is checked against the bytes left there",
          "[unit][codec][bounded]") {
  // tagged: a vector of 1 string whose length claims 4 GiB.
  auto bytes = length_then(1, 0) + length_then(four_gib, 40);
  auto r = decode_payload<tagged>(bytes);
  REQUIRE_FALSE(r);
  CHECK(r.error().code == errc::corrupted);
  CHECK_THAT(r.error().message,
             Catch::Contains("a length of 4294967296 at byte 8 is beyond the 40"));
}

TEST_CASE("a recursive type nested deeper than the bound is corrupted, not a stack overflow",
          "[unit][codec][bounded]") {
  auto nested = [](std::size_t levels) {
    std::string out;
    for (std::size_t i = 0; i < levels; ++i)
      out += length_then(1, 0);
    return out + length_then(0, 0);
  };
  auto shallow = decode_payload<tree>(nested(100));
  REQUIRE(shallow);
  CHECK(shallow->children.size() == 1);
  // 200 000 levels would need far more stack than a thread has.
  auto deep = decode_payload<tree>(nested(200'000));
  REQUIRE_FALSE(deep);
  CHECK(deep.error().code == errc::corrupted);
  CHECK_THAT(deep.error().message, Catch::Contains("nested deeper than 512"));
}

TEST_CASE("decode errors through a registry name the registered type", "[unit][codec][bounded]") {
  auto reg = account_registry();
  auto bytes = length_then(four_gib, 85);
  auto r = reg.decode<account_event>("opened", 1, bytes);
  REQUIRE_FALSE(r);
  CHECK(r.error().code == errc::corrupted);
  CHECK_THAT(r.error().message, Catch::StartsWith("payload of opened (93 bytes) does not decode"));
  auto j = reg.to_json("tagged", 1, bytes);
  REQUIRE_FALSE(j);
  CHECK(j.error().code == errc::corrupted);
  CHECK_THAT(j.error().message, Catch::StartsWith("payload of tagged (93 bytes)"));
}

TEST_CASE("the bounded archive reads exactly what cereal's binary archive reads",
          "[unit][codec][bounded]") {
  tagged t{{"a", "", "ccc"}, {{"x", 1}, {"y", -2}}, 0.5, std::string{"ref-9"}};
  auto bytes = encoded(t);
  tagged via_cereal;
  {
    std::istringstream is{bytes};
    cereal::BinaryInputArchive ar{is};
    ar(via_cereal);
  }
  tagged via_bounded;
  {
    cairn::persistence::detail::bounded_binary_input_archive ar{bytes};
    ar(via_bounded);
    CHECK(ar.remaining() == 0);
  }
  CHECK(via_cereal == t);
  CHECK(via_bounded == t);
}

TEST_CASE("check decodes a payload by type name, upcasting old versions, and keeps nothing",
          "[unit][codec][registry]") {
  auto reg = account_registry();
  auto ann = reg.encode(account_event{opened{"ann", 7}});
  REQUIRE(ann);
  CHECK(reg.check("opened", 1, ann->payload));
  auto unknown = reg.check("withdrawn", 1, ann->payload);
  REQUIRE_FALSE(unknown);
  CHECK(unknown.error().code == errc::invalid_argument);
  auto hostile = reg.check("opened", 1, length_then(four_gib, 85));
  REQUIRE_FALSE(hostile);
  CHECK(hostile.error().code == errc::corrupted);
  CHECK_THAT(hostile.error().message, Catch::StartsWith("payload of opened (93 bytes)"));

  auto deposits = deposit_registry();
  CHECK(deposits.check("deposited", 1, encoded(deposited_v1{250})));
  CHECK(deposits.check("deposited", 3, encoded(deposited{1, "EUR", "m"})));
  auto newer = deposits.check("deposited", 4, encoded(deposited{1, "EUR", "m"}));
  REQUIRE_FALSE(newer);
  CHECK(newer.error().code == errc::invalid_argument);
  auto broken_v1 = deposits.check("deposited", 1, "\x01");
  REQUIRE_FALSE(broken_v1);
  CHECK(broken_v1.error().code == errc::corrupted);
}
