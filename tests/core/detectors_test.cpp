#include "core/detectors.h"

#include <catch2/catch.hpp>
#include <cstdio>
#include <set>

using namespace csst;

TEST_CASE("CSST chip ids: the SLS data model's numbering, and either form parses back",
          "[detectors]") {
  // Independent expectation: the CSST SLS data model (GI 1, 10, 21, 30; GV 2, 5, 26, 29; GU 3, 4,
  // 27, 28).
  const int expected[3][4] = {{3, 4, 27, 28}, {2, 5, 26, 29}, {1, 10, 21, 30}};
  std::set<int> seen;
  for (int b = 0; b < 3; ++b)
    for (int k = 0; k < 4; ++k) {
      CHECK(ChipId(b, k) == expected[b][k]);
      seen.insert(ChipId(b, k));
      const std::string name = DetectorName(b, k);
      int band = -1, idx = -1;
      REQUIRE(ParseDetectorName(name, &band, &idx));
      CHECK(band == b);
      CHECK(idx == k);
      char two[8];
      std::snprintf(two, sizeof(two), "%02d", expected[b][k]);
      CHECK(ChipKeyword(name) == two);
      for (const std::string form :
           {std::string(two), std::to_string(expected[b][k]), "CHIP" + std::string(two)}) {
        band = idx = -1;
        REQUIRE(ParseDetectorName(form, &band, &idx));
        CHECK(band == b);
        CHECK(idx == k);
      }
    }
  CHECK(seen.size() == 12);
  CHECK(DetectorName(1, 0) == "GV1");
  CHECK(ChipKeyword("GV1") == "02");
  CHECK(ChipKeyword("GI1") == "01");
}

TEST_CASE("CSST chip ids: imaging chips and malformed names are refused", "[detectors]") {
  int b = 0, k = 0;
  for (const std::string bad :
       {"6", "07", "31", "0", "CHIP", "GX1", "GV0", "GV", "", "GV1a", "CHIP99"})
    CHECK_FALSE(ParseDetectorName(bad, &b, &k));
  CHECK(ChipId(1, 4) == 0);            // no CSST chip for a fifth detector
  CHECK(ChipKeyword("GV5") == "GV5");  // then DETECTOR keeps the name
}
