// The validation layer's statistics (the Monte Carlo itself runs end to end in tests/pipeline).
#include "validation/monte_carlo.h"

#include <array>
#include <cmath>
#include <vector>

#include "core/rng.h"
#include "tests/test_util.h"

using namespace csst;

TEST_CASE("the quadrature term that gives an ERR 68% coverage is recovered from injected errors",
          "[cube][err]") {
  // Errors drawn from N(0, sqrt(a^2 + s^2)) with the fit part a known: the term found is s.
  for (const double s_true : {0.0, 0.005, 0.02}) {
    Rng rng(11, "coverage", static_cast<uint64_t>(s_true * 1e4));
    std::vector<std::array<double, 2>> pts;
    for (int i = 0; i < 40000; ++i) {
      const double a = rng.Uniform(0.005, 0.015);
      pts.push_back({std::abs(std::sqrt(a * a + s_true * s_true) * rng.Normal()), a * a});
    }
    const double s = QuadratureTermForCoverage(pts, 0.6827);
    INFO("injected " << s_true << ", found " << s);
    CHECK(std::abs(s - s_true) < 0.1 * s_true + 1.5e-3);
  }
  CHECK(QuadratureTermForCoverage({}, 0.6827) == 0);
}
