// An invocation's id is its command id, which the store deduplicates for
// good: a service started again on the same store (or another node of the
// cluster) must not hand out an id it handed out before, or the new
// invocation is answered as the old one and never recorded.

#include <set>
#include <string>

#include <catch2/catch.hpp>

#include "hangar/service.hpp"
#include "support/temp_dir.hpp"

TEST_CASE("a service started again on its store never reuses an invocation's id",
          "[integration][hangar]") {
  cairn::test::temp_dir dir;
  hangar::service_options so;
  so.data_dir = dir.sub("hangar");
  so.durability = cairn::persistence::durability::no_sync;
  std::set<std::string> ids;
  for (int start = 1; start <= 2; ++start) {
    CAPTURE(start);
    auto started = hangar::service::start(so);
    REQUIRE(started);
    auto& s = **started;
    if (start == 1)
      REQUIRE(
        s.register_provider("a", hangar::provider_mode::remote, {{}, "https://x/mcp", {}}, {}));
    for (int i = 0; i < 2; ++i) {
      auto id = s.invoke("a", "add", "{}");
      REQUIRE(id);
      CHECK(ids.insert(*id).second);
    }
    auto events = s.runtime().store().read_stream("provider-a", 1, 100000);
    REQUIRE(events);
    std::set<std::string> recorded; // the invocations', not "register-a"
    for (const auto& e : *events)
      if (e.meta.correlation_id.rfind("c", 0) == 0)
        recorded.insert(e.meta.correlation_id);
    CHECK(recorded == ids);
  }
}
