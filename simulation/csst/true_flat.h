// The injected true large-scale flat F_true(x, y, lambda) of every slitless detector. Stored as
// truth for validation; never read by the fitting stages.
//
// F = 1 + (1 - w) P_lo(u, v) + w P_hi(u, v), w = (lambda - lo) / (hi - lo) clamped to [0, 1] over
// the band, u, v the detector coordinates mapped to [-1, 1]. P_hi = c P_lo + sqrt(1 - c^2) P_new
// with c = 1 - lambda_variation, so the pattern changes smoothly with wavelength.
// Patterns: "polynomial" (monomials u^i v^j, 0 < i + j <= order, Gaussian coefficients) or "grf"
// (Gaussian random field: sum of `grf_modes` random Fourier modes with wavevectors ~ N(0, 1/l^2),
// l = grf_correlation in units of the detector half-size); each pattern scaled to the given rms
// over the detector.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/enum_names.h"
#include "instrument/instrument.h"
#include "io/fits.h"

namespace csst {

// simulation.flat_model: a 2D polynomial per wavelength pattern, or a Gaussian random field.
enum class FlatModel { kPolynomial, kGrf };
inline constexpr EnumNames<FlatModel, 2> kFlatModelNames = {
    {{FlatModel::kPolynomial, "polynomial"}, {FlatModel::kGrf, "grf"}}};
constexpr const auto& NamesOf(FlatModel) { return kFlatModelNames; }

struct TrueFlatOptions {
  FlatModel model = FlatModel::kPolynomial;
  int order = 2;
  double rms = 0.02;
  double lambda_variation = 0.5;  // 0: same pattern at every wavelength
  double grf_correlation = 0.6;
  int grf_modes = 48;
  double level = 1.0;  // overall multiplicative level of every flat (a throughput error)
  double detector_level_rms = 0.0;  // rms of per-detector gain offsets (detector-to-detector QE)
  void Validate() const;
};

class TrueFlat {
 public:
  static TrueFlat Draw(const TrueFlatOptions& options, const Instrument& instrument, uint64_t seed);
  // Detector index d = band * detectors_per_band + k.
  double Value(int detector, double x, double y, double lambda) const;
  int detectors() const { return static_cast<int>(det_.size()); }
  void Write(const std::string& path, const Provenance& provenance) const;
  static TrueFlat Read(const std::string& path);

 private:
  struct Pattern {
    std::vector<double> coeff;               // polynomial: per (i, j) in order of terms
    std::vector<double> kx, ky, phase, amp;  // grf
  };
  struct Detector {
    int band = 0;
    double lo = 0, hi = 0, nx = 1, ny = 1;
    double gain = 1.0;  // level x (1 + per-detector offset)
    Pattern low, high;
  };
  double Eval(const Pattern& p, double u, double v) const;
  FlatModel model_ = FlatModel::kPolynomial;
  int order_ = 2;
  std::vector<Detector> det_;
};

}  // namespace csst
