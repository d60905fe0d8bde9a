#include <cmath>
#include <cstdio>

#include "core/fits.h"
#include "core/grid.h"
#include "core/rng.h"
#include "simulation/csst/instrument.h"
#include "simulation/csst/observe.h"
#include "simulation/csst/true_flat.h"
#include "tests/test_util.h"

using namespace csst;

namespace {
constexpr double kC = 2.99792458e18;  // A/s
constexpr double kH = 6.62607015e-27;

// A smooth SED: Planck-like shape at temperature t, scaled to 1 at 5556 A, on the truth grid.
std::vector<double> PlanckSed(double t) {
  std::vector<double> s;
  auto b = [&](double l) { return std::pow(l, -5) / std::expm1(1.4388e8 / (l * t)); };
  for (int i = 0; i < TruthGrid().size(); ++i) s.push_back(b(TruthGrid().Centre(i)) / b(5556.0));
  return s;
}

// Flat f_nu source of AB magnitude m: f_lambda = f_nu c / lambda^2, scaled to the window value.
std::vector<double> FlatFnuSed() {
  std::vector<double> s;
  for (int i = 0; i < TruthGrid().size(); ++i) s.push_back(std::pow(5556.0 / TruthGrid().Centre(i), 2));
  return s;
}
double WindowFluxAb(double m) { return 3.631e-20 * std::pow(10.0, -0.4 * m) * kC / (5556.0 * 5556.0); }
}  // namespace

TEST_CASE("photon counts of a flat f_nu source match a hand calculation", "[csst]") {
  const Instrument inst(InstrumentOptions{});
  const auto& g = OutputGrid();
  std::vector<double> sed(g.size());
  const double m = 20.0;
  const double fnu = 3.631e-20 * std::pow(10.0, -0.4 * m);  // erg/s/cm2/Hz
  for (int k = 0; k < g.size(); ++k) sed[k] = fnu * kC / (g.Centre(k) * g.Centre(k));
  const auto counts = ExpectedCounts(inst, 1, sed);
  // Hand: N = A t T f_nu / (h lambda) d(lambda) (photons per unit wavelength of a flat f_nu source).
  const int k = static_cast<int>(g.PixelFromWavelength(5600.0) + 0.5);
  const double lam = g.Centre(k), dl = g.Edge(k + 1) - g.Edge(k);
  const double hand = M_PI * 100.0 * 100.0 * 600.0 * inst.band(1).Throughput(lam) * fnu / (kH * lam) * dl;
  CHECK(counts[k] == Approx(hand).epsilon(1e-6));
  CHECK(inst.band(1).Throughput(5600.0) == Approx(0.410).epsilon(0.02));
}

TEST_CASE("built-in throughputs follow the published facts", "[csst]") {
  for (int b = 0; b < 3; ++b) {
    double peak = 0, at = 0;
    for (double l = 2000; l < 11500; l += 5) {
      const double t = BuiltinThroughput(b, l);
      if (t > peak) peak = t, at = l;
    }
    const double expect_peak[3] = {0.214, 0.410, 0.399}, expect_at[3] = {4000, 5600, 7500};
    INFO("band " << b);
    CHECK(peak == Approx(expect_peak[b]).epsilon(0.02));
    CHECK(std::abs(at - expect_at[b]) < 300);
  }
  CHECK(BuiltinThroughput(0, 2400.0) == 0.0);
  CHECK(BuiltinThroughput(2, 11000.0) == 0.0);
}

TEST_CASE("built-in throughputs against the CESS curves (reported)", "[csst][shared]") {
  const auto dir = test::SharedData("csst-cess/csst_sls_tp");
  CSST_REQUIRE_SHARED(dir);
  const char* names[3] = {"GU", "GV", "GI"};
  InstrumentOptions o;
  for (int b = 0; b < 3; ++b) o.throughput_file[b] = (dir / (std::string(names[b]) + ".Throughput.1st.fits")).string();
  const Instrument cess(o), builtin(InstrumentOptions{});
  for (int b = 0; b < 3; ++b) {
    std::vector<double> d;
    for (double l = builtin.band(b).lo; l <= builtin.band(b).hi; l += 10) {
      d.push_back(std::abs(builtin.band(b).Throughput(l) / cess.band(b).Throughput(l) - 1));
    }
    std::sort(d.begin(), d.end());
    const double med = d[d.size() / 2];
    std::printf("throughput %s: median |built-in / CESS - 1| over the band = %.3f\n", names[b], med);
    CHECK(med < 0.15);
  }
}

TEST_CASE("5-sigma limiting magnitudes near the published 23.2 / 23.4 / 23.2", "[csst]") {
  // Point source, flat f_nu; signal and noise summed over the band's nominal range with the box
  // extraction of the simulator (aperture_fwhm x PSF FWHM high), background-subtracted.
  const Instrument inst(InstrumentOptions{});
  const auto& g = OutputGrid();
  const double published[3] = {23.2, 23.4, 23.2};
  for (int b = 0; b < 3; ++b) {
    auto snr_at = [&](double m) {
      std::vector<double> sed(g.size());
      for (int k = 0; k < g.size(); ++k) sed[k] = 3.631e-20 * std::pow(10.0, -0.4 * m) * kC / (g.Centre(k) * g.Centre(k));
      const auto c = ExpectedCounts(inst, b, sed);
      double n = 0, var = 0;
      const auto& band = inst.band(b);
      for (int k = 0; k < g.size(); ++k) {
        if (g.Centre(k) < band.lo || g.Centre(k) > band.hi) continue;
        const double npix = inst.aperture_pixels() * (g.Edge(k + 1) - g.Edge(k)) / band.dispersion;
        n += c[k];
        var += c[k] + (band.sky + inst.options().dark) * inst.total_time() * npix +
               inst.options().n_exposures * npix * std::pow(inst.options().read_noise, 2);
      }
      return n / std::sqrt(var);
    };
    double lo = 18, hi = 28;
    for (int it = 0; it < 60; ++it) {
      const double mid = 0.5 * (lo + hi);
      (snr_at(mid) > 5 ? lo : hi) = mid;
    }
    std::printf("limiting magnitude (5 sigma, whole band, box 3 FWHM) %s: %.2f (published %.1f)\n",
                inst.band(b).name.c_str(), lo, published[b]);
    CHECK(std::abs(lo - published[b]) <= 0.5);
  }
}

TEST_CASE("the true flat has the requested rms and varies smoothly with wavelength", "[csst]") {
  const Instrument inst(InstrumentOptions{});
  for (const std::string model : {"polynomial", "grf"}) {
    TrueFlatOptions o;
    o.model = model;
    o.rms = 0.03;
    const auto f = TrueFlat::Draw(o, inst, 7);
    CHECK(f.detectors() == 12);
    double s = 0, s2 = 0;
    int n = 0;
    for (int i = 0; i <= 40; ++i)
      for (int j = 0; j <= 40; ++j) {
        const double v = f.Value(5, i / 40.0 * 9215, j / 40.0 * 9231, inst.band(1).lo);
        s += v, s2 += v * v, ++n;
      }
    CHECK(std::sqrt(s2 / n - (s / n) * (s / n)) == Approx(0.03).epsilon(1e-6));
    // Round trip through the truth file.
    const auto dir = test::TempDir("flat-rt");
    f.Write((dir / "t.fits").string(), {});
    const auto g = TrueFlat::Read((dir / "t.fits").string());
    CHECK(g.Value(3, 1234, 5678, 3000) == Approx(f.Value(3, 1234, 5678, 3000)).epsilon(1e-12));
  }
}

TEST_CASE("spectral-mode noise variance matches the reported sigma within 3%", "[csst]") {
  const Instrument inst(InstrumentOptions{});
  TrueFlatOptions fo;
  const auto flat = TrueFlat::Draw(fo, inst, 3);
  std::vector<StarRecord> stars(1);
  stars[0].obsid = 1;
  const std::vector<std::vector<double>> sed = {PlanckSed(6500)};
  const std::vector<double> wf = {WindowFluxAb(18.0)};
  ObserveOptions oo;
  const int n = 1000;
  const int k = static_cast<int>(OutputGrid().PixelFromWavelength(5200.0) + 0.5);
  double s = 0, s2 = 0, sigma = 0;
  for (int r = 0; r < n; ++r) {
    const auto obs = Observe(inst, flat, oo, stars, sed, wf, 11, "noise-" + std::to_string(r));
    const auto& bo = obs[0].band[1];
    const double d = bo.counts[k] - bo.expected[k];
    s += d, s2 += d * d;
    sigma = bo.sigma[k];
  }
  const double var = s2 / n - (s / n) * (s / n);
  CHECK(std::sqrt(var) == Approx(sigma).epsilon(0.03 + 3.0 / std::sqrt(2.0 * n)));
}

TEST_CASE("image mode: optimal extraction agrees with spectral expectations, stamps conserve counts", "[csst][image]") {
  InstrumentOptions io;
  const Instrument inst(io);
  TrueFlatOptions fo;
  const auto flat = TrueFlat::Draw(fo, inst, 5);
  const int n = 200;
  std::vector<StarRecord> stars(n);
  std::vector<std::vector<double>> sed;
  std::vector<double> wf;
  for (int i = 0; i < n; ++i) {
    stars[i].obsid = i + 1;
    sed.push_back(PlanckSed(5000 + 25.0 * i));
    wf.push_back(WindowFluxAb(19.5 + 0.01 * i));
  }
  ObserveOptions oo;
  oo.mode = "image";
  const auto obs = Observe(inst, flat, oo, stars, sed, wf, 21, "image-noise");
  double chi2 = 0, stamp_pull2 = 0;
  long dof = 0;
  int nstamp = 0;
  for (const auto& so : obs) {
    for (const auto& bo : so.band) {
      for (size_t k = 0; k < bo.counts.size(); ++k) {
        if (bo.flag[k]) continue;
        const double d = (bo.counts[k] - bo.expected[k]) / bo.sigma[k];
        chi2 += d * d;
        ++dof;
      }
      // Stamp sum against the rendered total: a pull of the Poisson + background + read noise.
      const double pull = (bo.counts_stamp_sum - bo.stamp_expected) / std::sqrt(bo.stamp_noise_var);
      stamp_pull2 += pull * pull;
      ++nstamp;
    }
  }
  INFO("chi2/dof = " << chi2 / dof << " over " << dof << " pixels, " << nstamp << " spectra");
  CHECK(chi2 / dof == Approx(1.0).margin(0.1));
  // Mean squared pull of 600 stamp sums: 1 within 4 standard errors (sqrt(2/600) = 0.058).
  CHECK(stamp_pull2 / nstamp == Approx(1.0).margin(0.23));
}
