#include "core/spectrum.h"

#include <cmath>
#include <numeric>

#include "core/rng.h"
#include "tests/test_util.h"

using namespace csst;

namespace {
// Fine log grid (R_sampling ~ 100 000) between a and b.
std::vector<double> FineWave(double a, double b, double dln = 1e-5) {
  std::vector<double> w;
  for (double x = std::log(a); x < std::log(b); x += dln) w.push_back(std::exp(x));
  return w;
}
double SecondMomentWidth(const Spectrum& s) {
  const auto e = EdgesFromCentres(s.wave);
  double m0 = 0, m1 = 0, m2 = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    const double d = (e[i + 1] - e[i]) * s.flux[i];
    m0 += d;
    m1 += d * s.wave[i];
    m2 += d * s.wave[i] * s.wave[i];
  }
  const double mu = m1 / m0;
  return std::sqrt(m2 / m0 - mu * mu);
}
}  // namespace

TEST_CASE("degrading a Gaussian line adds the LSF width in quadrature", "[spectrum]") {
  const double lambda0 = 5500.0;
  for (double w : {0.3, 1.0, 2.5}) {
    for (double r : {2000.0, 200.0}) {
      const double half = r > 1000 ? 400 : 1500;
      const auto wave = FineWave(lambda0 - half, lambda0 + half, r > 1000 ? 1e-5 : 5e-5);
      std::vector<double> f(wave.size());
      for (size_t i = 0; i < wave.size(); ++i)
        f[i] = std::exp(-0.5 * std::pow((wave[i] - lambda0) / w, 2));
      const auto out = DegradeToResolution(MakeSpectrum(wave, f), r);
      const double expected = std::sqrt(w * w + std::pow(lambda0 / (2.354820045 * r), 2));
      INFO("w = " << w << " R = " << r);
      CHECK(SecondMomentWidth(out) == Approx(expected).epsilon(1e-3));
    }
  }
}

TEST_CASE("flux-conserving resampling conserves integrals over any span of output pixels",
          "[spectrum]") {
  Rng rng(1, "resample-test", 0);
  std::vector<double> wave, flux;
  for (double l = 3990.0; l < 7010.0; l += 0.9) {
    wave.push_back(l);
    flux.push_back(1.0 + 0.5 * rng.Uniform());
  }
  const auto in = MakeSpectrum(wave, flux);
  const auto& grid = InputGrid();
  const auto out = ResampleFluxConserving(in, grid);
  const auto e_in = EdgesFromCentres(wave);
  auto integral_in = [&](double a, double b) {
    double s = 0;
    for (size_t j = 0; j < wave.size(); ++j) {
      const double ov = std::min(b, e_in[j + 1]) - std::max(a, e_in[j]);
      if (ov > 0) s += ov * flux[j];
    }
    return s;
  };
  for (auto [k1, k2] : {std::pair{0, 2237}, {10, 11}, {500, 1733}, {2000, 2100}}) {
    double s = 0;
    for (int k = k1; k <= k2; ++k) s += out.flux[k] * (grid.Edge(k + 1) - grid.Edge(k));
    const double expect = integral_in(grid.Edge(k1), grid.Edge(k2 + 1));
    CHECK(std::abs(s / expect - 1) < 1e-6);
  }
  for (auto m : out.mask) CHECK(m == 0u);
}

TEST_CASE("resampling propagates independent errors and masks uncovered pixels", "[spectrum]") {
  // Two input pixels of equal width exactly filling one output pixel: sigma_out = sigma / sqrt(2).
  WavelengthGrid g(GridKind::kLinear, 100, 104, 1);
  Spectrum s = MakeSpectrum({101, 103}, {2.0, 4.0});
  s.err = {0.2, 0.2};
  const auto out = ResampleFluxConserving(s, g);
  CHECK(out.flux[0] == Approx(3.0));
  CHECK(out.err[0] == Approx(0.2 / std::sqrt(2.0)));
  WavelengthGrid g2(GridKind::kLinear, 90, 110, 2);
  const auto out2 = ResampleFluxConserving(s, g2);
  CHECK((out2.mask[0] & kMaskNoCoverage) != 0u);
}

TEST_CASE("air-vacuum conversion matches known lines and round-trips", "[spectrum]") {
  CHECK(AirFromVacuum(6564.61) == Approx(6562.80).margin(0.01));  // H-alpha
  CHECK(AirFromVacuum(4862.68) == Approx(4861.33).margin(0.01));  // H-beta
  for (double l : {3000.0, 4000.0, 5500.0, 7000.0, 10000.0}) {
    CHECK(std::abs(AirFromVacuum(VacuumFromAir(l)) - l) < 1e-9);
  }
}

TEST_CASE("Doppler shift to rest frame", "[spectrum]") {
  const double z = RedshiftFromVelocity(300.0);
  CHECK(z == Approx(300.0 / 299792.458 + 0.5 * std::pow(300.0 / 299792.458, 2)).epsilon(1e-6));
  Spectrum s = MakeSpectrum({5000.0, 6000.0}, {1, 1});
  ShiftToRestFrame(s, z);
  CHECK(s.wave[0] == Approx(5000.0 / (1 + z)).epsilon(1e-14));
}

TEST_CASE("continuum normalisation: moving average with truncated edge windows", "[spectrum]") {
  const int n = 300;
  std::vector<double> wave(n), flat(n, 3.7), line(n);
  for (int i = 0; i < n; ++i) {
    wave[i] = 4000 + i;
    line[i] = 2.0 + 0.01 * i;
  }
  const auto a = NormaliseContinuum(MakeSpectrum(wave, flat), 51);
  for (int i = 0; i < n; ++i) CHECK(std::abs(a.flux[i] - 1.0) < 1e-6);
  const auto b = NormaliseContinuum(MakeSpectrum(wave, line), 51);
  for (int i = 25; i < n - 25; ++i) CHECK(std::abs(b.flux[i] - 1.0) < 1e-6);
  // Pixel 0 has no pixels on its left: its window is pixels 0..25 (26 pixels).
  double m0 = 0;
  for (int i = 0; i <= 25; ++i) m0 += line[i];
  m0 /= 26;
  const auto c = MovingAverageContinuum(line, {}, 51);
  CHECK(c[0] == Approx(m0).epsilon(1e-12));
  // Pixel 10: 10 pixels on the left, 25 on the right.
  double m10 = 0;
  for (int i = 0; i <= 35; ++i) m10 += line[i];
  CHECK(c[10] == Approx(m10 / 36).epsilon(1e-12));
  CHECK_THROWS_WITH(NormaliseContinuum(MakeSpectrum(wave, flat), 50), Catch::Contains("odd"));
}

TEST_CASE("SED scaling divides by the mean flux in 5526-5586 A", "[spectrum]") {
  const auto& g = OutputGrid();
  std::vector<double> f(g.size());
  for (int i = 0; i < g.size(); ++i) f[i] = 4.0;
  const auto s = ScaleSed(MakeSpectrum(g.Centres(), f));
  for (double v : s.flux) CHECK(v == Approx(1.0));
  // A step inside the window: exact overlap weighting of the piecewise-constant pixels.
  auto w = g.Centres();
  const auto e = EdgesFromCentres(w);  // pixel edges are taken as midpoints of the centres
  for (int i = 0; i < g.size(); ++i) f[i] = w[i] < 5556 ? 1.0 : 3.0;
  double num = 0;
  for (int i = 0; i < g.size(); ++i) {
    const double ov = std::min(kScaleWindowMax, e[i + 1]) - std::max(kScaleWindowMin, e[i]);
    if (ov > 0) num += ov * f[i];
  }
  CHECK(MeanFluxInWindow(MakeSpectrum(w, f)) == Approx(num / 60.0).epsilon(1e-12));
}

TEST_CASE("relative noise model has the requested SNR and is seeded", "[spectrum]") {
  const int n = 200000;
  std::vector<double> w(n), f(n, 2.0);
  for (int i = 0; i < n; ++i) w[i] = 1000 + i;
  Spectrum a = MakeSpectrum(w, f), b = MakeSpectrum(w, f);
  Rng r1(7, "noise", 3), r2(7, "noise", 3);
  AddRelativeNoise(a, 20.0, r1);
  AddRelativeNoise(b, 20.0, r2);
  CHECK(a.flux == b.flux);
  double s = 0, s2 = 0;
  for (int i = 0; i < n; ++i) {
    const double r = (a.flux[i] - 2.0) / 2.0;
    s += r;
    s2 += r * r;
  }
  CHECK(std::abs(s / n) < 5 * 0.05 / std::sqrt(n));
  CHECK(std::sqrt(s2 / n) == Approx(0.05).epsilon(0.01));
  CHECK(a.err[0] == Approx(0.1));
}

TEST_CASE("relative residual and RMSAE", "[spectrum]") {
  const std::vector<double> truth = {1, 2, 4, 8};
  std::vector<double> pred = {1.1, 2.2, 3.6, 8.8};
  const auto r = RelativeResidual(pred, truth);
  CHECK(r[2] == Approx(-0.1));
  CHECK(Rmsae(pred, truth) == Approx(0.1));
}
