#include <string>

#include <catch2/catch.hpp>

#include "cairn/runtime/testkit.hpp"
#include "integration/customer.hpp"

using kit = cairn::testkit::given_when_then<crm::customer>;

TEST_CASE("the test kit encrypts personal data and simulates forgetting its subject",
          "[unit][testkit][personal]") {
  kit t{{crm::customer_registered{std::string{"Ann"}, std::string{"ann@mail.test"}, "gold"}}};
  REQUIRE(t.when(crm::rename_customer{"Ann Z"}));
  CHECK(t.state().name.value_or("") == "Ann Z");
  t.forget();
  CHECK_FALSE(t.state().name.has_value());
  CHECK(t.state().tier == "gold");
  CHECK(t.state().renames == 1);
  REQUIRE(t.history().size() == 2);
  CHECK_FALSE(std::get<crm::customer_registered>(t.history()[0]).email.has_value());
  // A later event about the subject gets a new key and stays readable.
  REQUIRE(t.when(crm::rename_customer{"Ann Y"}));
  CHECK(t.state().name.value_or("") == "Ann Y");
}

TEST_CASE("the test kit forgets only its current subject", "[unit][testkit][personal]") {
  kit t;
  t.subject("bob");
  REQUIRE(t.when(crm::register_customer{"Bob", "bob@mail.test", "tin"}));
  t.subject("ann");
  REQUIRE(t.when(crm::rename_customer{"Ann"}));
  t.forget();
  CHECK(std::get<crm::customer_registered>(t.history()[0]).name.value_or("") == "Bob");
  CHECK_FALSE(std::get<crm::customer_renamed>(t.history()[1]).name.has_value());
}
