#include "instrument/counts.h"

#include <cmath>

#include "core/grid.h"

namespace csst {

double ExtinctionCcm89(double lambda, double rv) {
  const double x = 1e4 / lambda;  // inverse microns
  double a, b;
  if (x < 1.1) {
    a = 0.574 * std::pow(x, 1.61);
    b = -0.527 * std::pow(x, 1.61);
  } else if (x < 3.3) {
    const double y = x - 1.82;
    a = 1 +
        y * (0.17699 +
             y * (-0.50447 +
                  y * (-0.02427 + y * (0.72085 + y * (0.01979 + y * (-0.77530 + y * 0.32999))))));
    b = y * (1.41338 +
             y * (2.28305 +
                  y * (1.07233 + y * (-5.38434 + y * (-0.62251 + y * (5.30260 - y * 2.09002))))));
  } else {
    const double fa =
        x >= 5.9 ? -0.04473 * std::pow(x - 5.9, 2) - 0.009779 * std::pow(x - 5.9, 3) : 0.0;
    const double fb =
        x >= 5.9 ? 0.2130 * std::pow(x - 5.9, 2) + 0.1207 * std::pow(x - 5.9, 3) : 0.0;
    a = 1.752 - 0.316 * x - 0.104 / ((x - 4.67) * (x - 4.67) + 0.341) + fa;
    b = -3.090 + 1.825 * x + 1.206 / ((x - 4.62) * (x - 4.62) + 0.263) + fb;
  }
  return a + b / rv;
}

std::vector<double> ExpectedCounts(const Instrument& inst, int band,
                                   const std::vector<double>& sed_out) {
  const auto& g = OutputGrid();
  const BandOptics& b = inst.band(band);
  std::vector<double> out(g.size(), 0.0);
  for (int k = 0; k < g.size(); ++k) {
    const double lam = g.Centre(k);
    const double dl = g.Edge(k + 1) - g.Edge(k);
    out[k] =
        inst.area() * inst.total_time() * b.Throughput(lam) * sed_out[k] * dl * lam * 1e-8 / kHc;
  }
  return out;
}

}  // namespace csst
