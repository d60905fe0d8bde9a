#include "core/spectrum.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "core/errors.h"
#include "core/rng.h"

namespace csst {
namespace {
constexpr double kFwhmToSigma = 2.354820045030949;
bool Good(const Spectrum& s, size_t i) { return s.mask.empty() || s.mask[i] == 0; }
}  // namespace

void Spectrum::Validate(const std::string& what) const {
  const size_t n = wave.size();
  if (flux.size() != n || (!err.empty() && err.size() != n) ||
      (!mask.empty() && mask.size() != n)) {
    throw Error(what + ": wave, flux, err and mask arrays differ in length");
  }
  for (size_t i = 0; i < n; ++i) {
    if (!(wave[i] > 0) || !std::isfinite(wave[i])) {
      throw Error(what + ": wavelength at pixel " + std::to_string(i) + " is not positive/finite");
    }
    if (i > 0 && !(wave[i] > wave[i - 1])) {
      throw Error(what + ": wavelengths are not strictly increasing at pixel " + std::to_string(i));
    }
  }
}

Spectrum MakeSpectrum(const std::vector<double>& wave, const std::vector<double>& flux) {
  Spectrum s;
  s.wave = wave;
  s.flux = flux;
  s.err.assign(wave.size(), 0.0);
  s.mask.assign(wave.size(), 0u);
  return s;
}

std::vector<double> EdgesFromCentres(const std::vector<double>& c) {
  const size_t n = c.size();
  std::vector<double> e(n + 1);
  if (n == 0) return e;
  if (n == 1) {
    e[0] = c[0] * (1 - 1e-4);
    e[1] = c[0] * (1 + 1e-4);
    return e;
  }
  for (size_t i = 1; i < n; ++i) e[i] = 0.5 * (c[i - 1] + c[i]);
  e[0] = c[0] - (e[1] - c[0]);
  e[n] = c[n - 1] + (c[n - 1] - e[n - 1]);
  return e;
}

Spectrum DegradeToResolution(const Spectrum& s, double r_out, double r_in) {
  if (!(r_out > 0)) throw Error("DegradeToResolution: r_out must be > 0");
  const double sig_out = 1.0 / (kFwhmToSigma * r_out);
  const double sig_in = r_in > 0 ? 1.0 / (kFwhmToSigma * r_in) : 0.0;
  if (sig_in >= sig_out)
    throw Error("DegradeToResolution: input resolution is already below target");
  const double sigma = std::sqrt(sig_out * sig_out - sig_in * sig_in);
  const size_t n = s.size();
  std::vector<double> x(n), dx(n);
  const auto edges = EdgesFromCentres(s.wave);
  for (size_t i = 0; i < n; ++i) {
    x[i] = std::log(s.wave[i]);
    dx[i] = std::log(edges[i + 1] / edges[i]);
  }
  Spectrum out = s;
  // Kernel-weighted mean of the good pixels j in [a, b) around pixel i; errors as independent.
  auto smooth = [&](size_t i, size_t a, size_t b, const auto& weight) {
    double wsum = 0, fsum = 0, vsum = 0;
    for (size_t j = a; j < b; ++j) {
      if (!Good(s, j)) continue;
      const double w = weight(j);
      wsum += w;
      fsum += w * s.flux[j];
      if (!s.err.empty()) vsum += w * w * s.err[j] * s.err[j];
    }
    if (wsum > 0) {
      out.flux[i] = fsum / wsum;
      if (!out.err.empty()) out.err[i] = std::sqrt(vsum) / wsum;
    } else {
      out.flux[i] = 0;
      if (out.mask.empty()) out.mask.assign(n, 0u);
      out.mask[i] |= kMaskBad;
    }
  };
  const double reach = 5.0 * sigma;
  // Fast path: uniform ln(lambda) sampling, so the kernel weights are the same for every pixel.
  const double step0 = n > 1 ? x[1] - x[0] : 0.0;
  if (n > 2 && std::abs((x[n - 1] - x[n - 2]) - step0) < 1e-6 * step0 &&
      std::abs((x[n - 1] - x[0]) / (n - 1) - step0) < 1e-6 * step0) {
    const size_t half = static_cast<size_t>(std::ceil(reach / step0));
    std::vector<double> w(2 * half + 1);
    for (size_t k = 0; k <= 2 * half; ++k) {
      const double d = (static_cast<double>(k) - static_cast<double>(half)) * step0 / sigma;
      w[k] = std::exp(-0.5 * d * d);
    }
    for (size_t i = 0; i < n; ++i) {
      const size_t a = i > half ? i - half : 0, b = std::min(n, i + half + 1);
      smooth(i, a, b, [&](size_t j) { return w[j + half - i]; });
    }
    return out;
  }
  size_t lo = 0, hi = 0;
  for (size_t i = 0; i < n; ++i) {
    while (lo < n && x[lo] < x[i] - reach) ++lo;
    if (hi < lo) hi = lo;
    while (hi < n && x[hi] <= x[i] + reach) ++hi;
    smooth(i, lo, hi, [&](size_t j) {
      const double u = (x[j] - x[i]) / sigma;
      return std::exp(-0.5 * u * u) * dx[j];
    });
  }
  return out;
}

Spectrum DegradeToGrid(const Spectrum& s, double r_out, const WavelengthGrid& grid,
                       double min_coverage) {
  const double sigma = 1.0 / (kFwhmToSigma * r_out);
  const double step = sigma / 4.0;
  const size_t n = s.size();
  const double native = n > 1 ? std::log(s.wave[n - 1] / s.wave[0]) / (n - 1) : step;
  if (native >= 0.5 * step)
    return ResampleFluxConserving(DegradeToResolution(s, r_out), grid, min_coverage);
  const auto e = EdgesFromCentres(s.wave);
  const int m = static_cast<int>(std::floor(std::log(e[n] / e[0]) / step));
  const WavelengthGrid mid(GridKind::kLog, e[0], e[0] * std::exp(step * m), m);
  return ResampleFluxConserving(DegradeToResolution(ResampleFluxConserving(s, mid, 0.5), r_out),
                                grid, min_coverage);
}

Spectrum ResampleFluxConserving(const Spectrum& s, const WavelengthGrid& grid,
                                double min_coverage) {
  const auto in_e = EdgesFromCentres(s.wave);
  const int m = grid.size();
  Spectrum out;
  out.wave = grid.Centres();
  out.flux.assign(m, 0.0);
  out.err.assign(m, 0.0);
  out.mask.assign(m, 0u);
  out.meta = s.meta;
  const size_t n = s.size();
  size_t j0 = 0;
  for (int k = 0; k < m; ++k) {
    const double a = grid.Edge(k), b = grid.Edge(k + 1);
    while (j0 < n && in_e[j0 + 1] <= a) ++j0;
    double cover = 0, fsum = 0, vsum = 0;
    uint32_t bits = 0;
    for (size_t j = j0; j < n && in_e[j] < b; ++j) {
      const double ov = std::min(b, in_e[j + 1]) - std::max(a, in_e[j]);
      if (ov <= 0) continue;
      if (!Good(s, j)) {
        bits |= s.mask[j];
        continue;
      }
      cover += ov;
      fsum += ov * s.flux[j];
      if (!s.err.empty()) vsum += ov * ov * s.err[j] * s.err[j];
    }
    const double width = b - a;
    if (cover < min_coverage * width || cover <= 0) {
      out.mask[k] = kMaskNoCoverage | bits;
      continue;
    }
    out.flux[k] = fsum / cover;
    out.err[k] = std::sqrt(vsum) / cover;
  }
  return out;
}

double AirFromVacuum(double lambda_vac) {
  const double s = 1e4 / lambda_vac;
  const double s2 = s * s;
  const double n = 1.0 + 0.0000834254 + 0.02406147 / (130.0 - s2) + 0.00015998 / (38.9 - s2);
  return lambda_vac / n;
}

double VacuumFromAir(double lambda_air) {
  double v = lambda_air * 1.00028;
  for (int it = 0; it < 20; ++it) {
    const double f = AirFromVacuum(v) - lambda_air;
    const double h = 1e-3;
    const double d = (AirFromVacuum(v + h) - AirFromVacuum(v - h)) / (2 * h);
    const double step = f / d;
    v -= step;
    if (std::abs(step) < 1e-12) break;
  }
  return v;
}

double RedshiftFromVelocity(double v_kms) {
  const double beta = v_kms / 299792.458;
  return std::sqrt((1 + beta) / (1 - beta)) - 1.0;
}

void ShiftToRestFrame(Spectrum& s, double z) {
  for (double& w : s.wave) w /= (1.0 + z);
}

std::vector<double> MovingAverageContinuum(const std::vector<double>& flux,
                                           const std::vector<uint32_t>& mask, int window) {
  const int n = static_cast<int>(flux.size());
  const int half = window / 2;
  // Prefix sums over good pixels make each window O(1).
  std::vector<double> ps(n + 1, 0.0), pc(n + 1, 0.0);
  for (int i = 0; i < n; ++i) {
    const bool good = mask.empty() || mask[i] == 0;
    ps[i + 1] = ps[i] + (good ? flux[i] : 0.0);
    pc[i + 1] = pc[i] + (good ? 1.0 : 0.0);
  }
  std::vector<double> c(n, 0.0);
  for (int i = 0; i < n; ++i) {
    const int a = std::max(0, i - half), b = std::min(n - 1, i + half);
    const double cnt = pc[b + 1] - pc[a];
    c[i] = cnt > 0 ? (ps[b + 1] - ps[a]) / cnt : 0.0;
  }
  return c;
}

Spectrum NormaliseContinuum(const Spectrum& s, int window) {
  if (window < 1 || window % 2 == 0) throw Error("NormaliseContinuum: window must be odd and >= 1");
  Spectrum out = s;
  if (out.mask.empty()) out.mask.assign(s.size(), 0u);
  if (out.err.empty()) out.err.assign(s.size(), 0.0);
  const auto c = MovingAverageContinuum(s.flux, s.mask, window);
  for (size_t i = 0; i < s.size(); ++i) {
    if (c[i] > 0 && std::isfinite(c[i])) {
      out.flux[i] = s.flux[i] / c[i];
      out.err[i] = out.err[i] / c[i];
    } else {
      out.flux[i] = 0;
      out.mask[i] |= kMaskBad;
    }
  }
  return out;
}

double MeanFluxInWindow(const Spectrum& s, double lo, double hi) {
  const auto e = EdgesFromCentres(s.wave);
  double cover = 0, sum = 0;
  for (size_t j = 0; j < s.size(); ++j) {
    const double ov = std::min(hi, e[j + 1]) - std::max(lo, e[j]);
    if (ov <= 0 || !Good(s, j)) continue;
    cover += ov;
    sum += ov * s.flux[j];
  }
  if (cover < 0.5 * (hi - lo)) {
    throw Error("scaling window " + std::to_string(lo) + "-" + std::to_string(hi) +
                " A is not covered by good pixels");
  }
  return sum / cover;
}

Spectrum ScaleSed(const Spectrum& s) {
  const double m = MeanFluxInWindow(s);
  if (!(m > 0)) throw Error("ScaleSed: mean flux in the scaling window is not positive");
  Spectrum out = s;
  for (auto& f : out.flux) f /= m;
  for (auto& e : out.err) e /= m;
  return out;
}

void AddRelativeNoise(Spectrum& s, double snr, Rng& rng) {
  if (!(snr > 0)) throw Error("AddRelativeNoise: snr must be > 0");
  s.err.resize(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    const double f = s.flux[i];
    s.flux[i] = f + rng.Normal() / snr * f;
    s.err[i] = std::abs(f) / snr;
  }
}

std::vector<double> RelativeResidual(const std::vector<double>& pred,
                                     const std::vector<double>& truth) {
  if (pred.size() != truth.size()) throw Error("RelativeResidual: sizes differ");
  std::vector<double> r(pred.size());
  for (size_t i = 0; i < pred.size(); ++i) {
    r[i] =
        truth[i] != 0 ? (pred[i] - truth[i]) / truth[i] : std::numeric_limits<double>::quiet_NaN();
  }
  return r;
}

double Median(std::vector<double> v) {
  if (v.empty()) return std::nan("");
  std::sort(v.begin(), v.end());
  const size_t h = v.size() / 2;
  return v.size() % 2 ? v[h] : 0.5 * (v[h - 1] + v[h]);
}

double Quantile(std::vector<double> v, double q) {
  if (v.empty()) return std::nan("");
  std::sort(v.begin(), v.end());
  const double pos = q * static_cast<double>(v.size() - 1);
  const size_t i = static_cast<size_t>(pos);
  const double f = pos - static_cast<double>(i);
  return i + 1 < v.size() ? v[i] * (1 - f) + v[i + 1] * f : v[i];
}

double Rmsae(const std::vector<double>& pred, const std::vector<double>& truth) {
  const auto r = RelativeResidual(pred, truth);
  double s = 0;
  int n = 0;
  for (double v : r) {
    if (std::isfinite(v)) {
      s += v * v;
      ++n;
    }
  }
  return n > 0 ? std::sqrt(s / n) : std::numeric_limits<double>::quiet_NaN();
}

}  // namespace csst
