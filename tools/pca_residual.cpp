// Development tool (issue #15): how well a model's PCA output basis can represent the target SEDs
// of training grids. For each star, its log target over the valid pixels is fitted by least squares
// with the basis (pca_mean + c pca_basis, plus a free log offset for the flux normalisation); the
// RMS left per band (core/bands.h kBands) is the best any network with that output basis can do on
// that star. Prints its median and 84th percentile over the stars of each grid. Usage:
// csst-pca-residual MODEL GRID.fits [GRID.fits ...]
#include <Eigen/Dense>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "core/bands.h"
#include "core/errors.h"
#include "core/grid.h"
#include "core/spectrum.h"
#include "io/training_set.h"
#include "network/sed_network.h"

using namespace csst;

int main(int argc, char** argv) try {
  if (argc < 3) {
    std::fprintf(stderr, "usage: csst-pca-residual MODEL GRID.fits [GRID.fits ...]\n");
    return 2;
  }
  const PcaBasis pca = ReadPcaBasis(argv[1]);
  const int no = OutputGrid().size(), k = pca.components;
  const Eigen::Map<const Eigen::VectorXd> mean(pca.mean.data(), no);
  const Eigen::Map<const Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>>
      basis(pca.basis.data(), k, no);
  const auto& og = OutputGrid();
  for (int a = 2; a < argc; ++a) {
    const TrainingGrid g = ReadTrainingGrid(argv[a]);
    std::vector<std::vector<double>> rms(kBands.size());
    for (size_t i = 0; i < g.size(); ++i) {
      std::vector<int> ok;
      for (int p = 0; p < no; ++p)
        if (g.target_mask[i * no + p] && g.target[i * no + p] > 0) ok.push_back(p);
      if (ok.size() < 50) continue;
      const Eigen::Index m = static_cast<Eigen::Index>(ok.size());
      Eigen::MatrixXd x(m, k + 1);
      Eigen::VectorXd y(m);
      for (Eigen::Index j = 0; j < m; ++j) {
        x.row(j).head(k) = basis.col(ok[j]).transpose();
        x(j, k) = 1;
        y(j) = std::log(static_cast<double>(g.target[i * no + ok[j]])) - mean(ok[j]);
      }
      const Eigen::VectorXd r = y - x * x.colPivHouseholderQr().solve(y);
      for (size_t b = 0; b < kBands.size(); ++b) {
        double ss = 0;
        int n = 0;
        for (Eigen::Index j = 0; j < m; ++j) {
          const double lam = og.Centre(ok[j]);
          if (lam < kBands[b].lo || lam > kBands[b].hi) continue;
          ss += r(j) * r(j);
          ++n;
        }
        if (n > 5) rms[b].push_back(std::sqrt(ss / n));
      }
    }
    std::printf("%s: %zu stars; RMS log residual", argv[a], g.size());
    for (double q : {0.5, 0.84}) {
      std::printf(q == 0.5 ? ", median" : ", 84%%");
      for (size_t b = 0; b < kBands.size(); ++b)
        std::printf(" %s %.4f", kBands[b].name, Quantile(rms[b], q));
    }
    std::printf("\n");
  }
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "csst-pca-residual: %s\n", e.what());
  return 1;
}
