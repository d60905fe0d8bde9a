#include "core/enum_names.h"

#include <catch2/catch.hpp>
#include <set>
#include <stdexcept>
#include <string>

#include "core/log.h"
#include "io/ingest.h"
#include "io/library.h"

using namespace csst;

namespace {
enum class Fruit { kApple, kPear, kPlum };
inline constexpr EnumNames<Fruit, 3> kFruitNames = {
    {{Fruit::kApple, "apple"}, {Fruit::kPear, "pear"}, {Fruit::kPlum, "plum"}}};
constexpr const auto& NamesOf(Fruit) { return kFruitNames; }

// Every value 0..N-1 of an enum named exactly once, and each name parses back to its value.
template <class E>
void CheckTable(int expected_values) {
  const auto& names = NamesOf(E{});
  REQUIRE(static_cast<int>(names.size()) == expected_values);
  std::set<std::string> seen;
  for (int v = 0; v < expected_values; ++v) {
    const E e = static_cast<E>(v);
    const std::string name = ToString(e);
    CHECK(name != "?");
    CHECK(seen.insert(name).second);
    CHECK(EnumFromName<E>(name) == e);
  }
}
}  // namespace

TEST_CASE("enum names: one table gives ToString, the parse and the list", "[enum]") {
  static_assert(std::string_view(ToString(Fruit::kPear)) == "pear", "constexpr ToString");
  CHECK(std::string(ToString(Fruit::kPlum)) == "plum");
  CHECK(std::string(ToString(static_cast<Fruit>(7))) == "?");  // a value the table lacks
  CHECK(EnumFromName<Fruit>("apple") == Fruit::kApple);
  CHECK_FALSE(EnumFromName<Fruit>("Apple"));  // case-sensitive
  CHECK_FALSE(EnumFromName<Fruit>(""));
  CHECK(EnumNameList<Fruit>() == "apple, pear, plum");
  CHECK(EnumNameList<Fruit>(" | ") == "apple | pear | plum");
  CheckTable<Fruit>(3);
  // where a reader meets a name: the value, or an error naming the context, the value and the
  // choices
  CHECK(ParseEnumName<Fruit, std::runtime_error>("pear", "f.fits: FRUIT =") == Fruit::kPear);
  CHECK_THROWS_WITH((ParseEnumName<Fruit, std::runtime_error>("kiwi", "f.fits: FRUIT =")),
                    "f.fits: FRUIT = 'kiwi', expected apple, pear or plum");
}

TEST_CASE("enum names: the core choices (log level, SNR band, library kind) name every value",
          "[enum]") {
  CheckTable<LogLevel>(4);
  CheckTable<SnrBand>(2);
  CheckTable<LibraryKind>(3);
  CheckTable<IngestSource>(2);
  CHECK(EnumNameList<LogLevel>() == "debug, info, warn, error");
  CHECK(EnumFromName<SnrBand>("r") == SnrBand::kR);
}
