#include "simulation/paper_errors.h"

#include <algorithm>
#include <cmath>

#include "core/bands.h"
#include "core/grid.h"
#include "core/rng.h"

namespace csst {

double PaperSigma(int band, double teff, double snr) {
  // [teff 6000, 8000][snr 20, 40, 80][band]
  static const double table[2][3][3] = {
      {{0.0425, 0.0025, 0.0029}, {0.0207, 0.0013, 0.0015}, {0.0151, 0.0011, 0.0011}},
      {{0.0117, 0.0016, 0.0024}, {0.0064, 0.0008, 0.0014}, {0.0052, 0.0007, 0.0012}}};
  const double t = std::clamp((teff - 6000.0) / 2000.0, 0.0, 1.0);
  const double ls =
      std::clamp(std::log(snr / 20.0) / std::log(2.0), 0.0, 2.0);  // 0, 1, 2 at 20, 40, 80
  const int i = std::min(1, static_cast<int>(ls));
  const double f = ls - i;
  auto at = [&](int ti) { return table[ti][i][band] * (1 - f) + table[ti][i + 1][band] * f; };
  return at(0) * (1 - t) + at(1) * t;
}

void PaperErrorPredictions(const PaperErrorStars& stars, uint64_t seed, uint64_t realization,
                           float* mu, float* sigma) {
  const auto& [truth, teff, snr, count, first] = stars;
  const auto& g = OutputGrid();
  const size_t no = g.size();
  for (size_t i = 0; i < count; ++i) {
    Rng rng(seed, "paper-errors", realization * 1000003ULL + first + i);
    for (size_t k = 0; k < no; ++k) {
      const int band = Index(BandOfShare(g.Centre(static_cast<int>(k))));
      const double s = PaperSigma(band, teff[i], snr[i]);
      mu[i * no + k] = static_cast<float>(truth[i][k] * (1 + s * rng.Normal()));
      sigma[i * no + k] = static_cast<float>(s);
    }
  }
}

}  // namespace csst
