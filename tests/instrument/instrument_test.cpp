// The instrument layer: expected counts against hand calculations, the built-in throughputs against
// the published facts (and the CESS curves where ../shared has them), limiting magnitudes, CCM89.
#include "instrument/instrument.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "core/grid.h"
#include "instrument/counts.h"
#include "tests/test_util.h"

using namespace csst;

namespace {
constexpr double kC = 2.99792458e18;  // A/s
constexpr double kH = 6.62607015e-27;
}  // namespace

TEST_CASE("photon counts of a flat f_nu source match a hand calculation", "[csst]") {
  const Instrument inst(InstrumentOptions{});
  const auto& g = OutputGrid();
  std::vector<double> sed(g.size());
  const double m = 20.0;
  const double fnu = 3.631e-20 * std::pow(10.0, -0.4 * m);  // erg/s/cm2/Hz
  for (int k = 0; k < g.size(); ++k) sed[k] = fnu * kC / (g.Centre(k) * g.Centre(k));
  const auto counts = ExpectedCounts(inst, 1, sed);
  // Hand: N = A t T f_nu / (h lambda) d(lambda) (photons per unit wavelength of a flat f_nu
  // source).
  const int k = static_cast<int>(g.PixelFromWavelength(5600.0) + 0.5);
  const double lam = g.Centre(k), dl = g.Edge(k + 1) - g.Edge(k);
  const double hand =
      M_PI * 100.0 * 100.0 * 600.0 * inst.band(1).Throughput(lam) * fnu / (kH * lam) * dl;
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
  for (int b = 0; b < 3; ++b)
    o.throughput_file[b] = (dir / (std::string(names[b]) + ".Throughput.1st.fits")).string();
  const Instrument cess(o), builtin(InstrumentOptions{});
  for (int b = 0; b < 3; ++b) {
    std::vector<double> d;
    for (double l = builtin.band(b).lo; l <= builtin.band(b).hi; l += 10) {
      d.push_back(std::abs(builtin.band(b).Throughput(l) / cess.band(b).Throughput(l) - 1));
    }
    std::sort(d.begin(), d.end());
    const double med = d[d.size() / 2];
    std::printf("throughput %s: median |built-in / CESS - 1| over the band = %.3f\n", names[b],
                med);
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
      for (int k = 0; k < g.size(); ++k)
        sed[k] = 3.631e-20 * std::pow(10.0, -0.4 * m) * kC / (g.Centre(k) * g.Centre(k));
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

TEST_CASE("CCM89 extinction: A(V) / A(V) = 1 at V and A(B) / A(V) = 1 + 1 / R_V at B",
          "[instrument]") {
  // E(B-V) = A(B) - A(V) and R_V = A(V) / E(B-V) give A(B) / A(V) = 1 + 1 / R_V (Johnson B 4400 A,
  // V 5500 A); CCM89's own fit reproduces it to ~1 %.
  CHECK(ExtinctionCcm89(5495.0) == Approx(1.0).margin(0.01));
  CHECK(ExtinctionCcm89(4405.0) == Approx(1.0 + 1.0 / 3.1).epsilon(0.015));
  CHECK(ExtinctionCcm89(4405.0, 5.0) == Approx(1.0 + 1.0 / 5.0).epsilon(0.015));
  // Decreasing with wavelength through the optical and near infrared.
  for (double l = 3000; l < 10000; l += 250) CHECK(ExtinctionCcm89(l + 250) < ExtinctionCcm89(l));
}
