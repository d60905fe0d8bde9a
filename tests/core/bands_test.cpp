#include "core/bands.h"

#include <catch2/catch.hpp>
#include <cmath>
#include <set>
#include <stdexcept>

using namespace csst;

TEST_CASE("band table: the method's limits and centres and the SLS chip ids", "[bands]") {
  // Independent expectations: ../shared/method.md (GU 255-420 nm, GV 400-650 nm, GI 620-1000 nm)
  // and the CSST SLS data model's chip ids.
  REQUIRE(kNumBands == 3);
  const char* names[3] = {"GU", "GV", "GI"};
  const double lo[3] = {2550, 4000, 6200}, hi[3] = {4200, 6500, 10000};
  const int chips[3][4] = {{3, 4, 27, 28}, {2, 5, 26, 29}, {1, 10, 21, 30}};
  std::set<int> seen;
  for (int b = 0; b < 3; ++b) {
    const BandSpec& s = kBands[static_cast<size_t>(b)];
    CHECK(Index(s.band) == b);
    CHECK(BandAt(b) == s.band);
    CHECK(std::string(BandName(s.band)) == names[b]);
    CHECK(BandFromName(names[b]) == s.band);
    CHECK(s.lo == lo[b]);
    CHECK(s.hi == hi[b]);
    CHECK(s.centre == (lo[b] + hi[b]) / 2);  // the middle of the band
    for (int k = 0; k < 4; ++k) {
      CHECK(s.chips[static_cast<size_t>(k)] == chips[b][k]);
      seen.insert(s.chips[static_cast<size_t>(k)]);
    }
  }
  CHECK(seen.size() == 12);
  CHECK_FALSE(BandFromName("GX"));
  CHECK_FALSE(BandFromName("gu"));
  CHECK_FALSE(BandFromName(""));
  CHECK_THROWS_AS(BandAt(3), std::out_of_range);
  CHECK_THROWS_AS(BandAt(-1), std::out_of_range);
  CHECK(BandNameList() == "GU, GV and GI");
}

TEST_CASE(
    "band table: shares of the axis where bands overlap, and the limits that hold a wavelength",
    "[bands]") {
  // The sigma scale's split (network sidecar "sigma_scale_bands"): GU below 4100 A, GV to 6350 A,
  // GI above.
  CHECK(BandOfShare(2000) == Band::kGU);
  CHECK(BandOfShare(4099.999) == Band::kGU);
  CHECK(BandOfShare(4100) == Band::kGV);
  CHECK(BandOfShare(6349.999) == Band::kGV);
  CHECK(BandOfShare(6350) == Band::kGI);
  CHECK(BandOfShare(20000) == Band::kGI);
  // Each share lies inside its band's limits: the split falls where the neighbours overlap.
  for (int b = 0; b + 1 < kNumBands; ++b) {
    const auto& s = kBands[static_cast<size_t>(b)];
    const auto& next = kBands[static_cast<size_t>(b + 1)];
    CHECK(s.share_hi > next.lo);
    CHECK(s.share_hi < s.hi);
  }
  // BandHolding: the first band whose [lo, hi] holds lambda (the overlap goes to the bluer band).
  CHECK_FALSE(BandHolding(2549.9));
  CHECK(BandHolding(2550) == Band::kGU);
  CHECK(BandHolding(4100) == Band::kGU);
  CHECK(BandHolding(4200.1) == Band::kGV);
  CHECK(BandHolding(6400) == Band::kGV);
  CHECK(BandHolding(6500.1) == Band::kGI);
  CHECK(BandHolding(10000) == Band::kGI);
  CHECK_FALSE(BandHolding(10000.1));
}

TEST_CASE("BandArray: indexed by band and by position, filled, compared", "[bands]") {
  BandArray<double> a(1.5, 2.5, 3.5);
  CHECK(a[Band::kGU] == 1.5);
  CHECK(a[Band::kGV] == 2.5);
  CHECK(a[Band::kGI] == 3.5);
  CHECK(a.at(2) == 3.5);
  CHECK_THROWS_AS(a.at(3), std::out_of_range);
  a[Band::kGV] = 7;
  double sum = 0;
  for (double v : a) sum += v;
  CHECK(sum == 12.0);
  CHECK(BandArray<int>::Filled(4) == BandArray<int>(4, 4, 4));
  CHECK(BandArray<int>::Filled(4) != BandArray<int>(4, 5, 4));
  constexpr BandArray<double> c(0.005, 0.0003, 0.0005);
  static_assert(c[Band::kGV] == 0.0003, "constexpr access");
}
