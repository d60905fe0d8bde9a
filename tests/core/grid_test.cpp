#include "core/grid.h"

#include <cmath>

#include "tests/test_util.h"

using namespace csst;

TEST_CASE("method grids have the paper's sizes, edges and steps", "[grid]") {
  const auto& in = InputGrid();
  REQUIRE(in.size() == 2238);
  CHECK(in.Edge(0) == Approx(4000.0).epsilon(1e-12));
  CHECK(in.Edge(2238) == Approx(7000.0).epsilon(1e-12));
  CHECK(in.step() == Approx(std::log(7000.0 / 4000.0) / 2238).epsilon(1e-12));
  CHECK(in.step() == Approx(2.5e-4).epsilon(1e-3));
  const auto& out = OutputGrid();
  REQUIRE(out.size() == 574);
  CHECK(out.Edge(574) == Approx(10500.0).epsilon(1e-12));
  CHECK(out.step() == Approx(2.5e-3).epsilon(1e-3));
  // Centres are geometric means of the edges on a log grid.
  for (int i : {0, 100, 573}) {
    CHECK(out.Centre(i) == Approx(std::sqrt(out.Edge(i) * out.Edge(i + 1))).epsilon(1e-12));
    CHECK(out.PixelFromWavelength(out.Centre(i)) == Approx(i).margin(1e-9));
  }
}

TEST_CASE("linear grid centres and edges", "[grid]") {
  WavelengthGrid g(GridKind::kLinear, 3000, 4000, 100);
  CHECK(g.step() == Approx(10.0));
  CHECK(g.Centre(0) == Approx(3005.0));
  CHECK(g.Edge(100) == Approx(4000.0));
  CHECK(g.PixelFromWavelength(3500.0) == Approx(49.5));
  CHECK_THROWS_WITH(WavelengthGrid(GridKind::kLinear, 4000, 3000, 10),
                    Catch::Contains("0 < first_edge < last_edge"));
}
