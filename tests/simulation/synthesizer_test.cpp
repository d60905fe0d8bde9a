#include "simulation/stellar/synthesizer.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "io/fits.h"
#include "io/spectrum_io.h"
#include "simulation/population.h"
#include "tests/test_util.h"

using namespace csst;
using stellar::StellarParams;

namespace {
const stellar::Synthesizer& Synth() {
  static const stellar::Synthesizer s;
  return s;
}
double MeanFlux(const Spectrum& s, double lo, double hi) {
  double sum = 0;
  int n = 0;
  for (size_t i = 0; i < s.size(); ++i)
    if (s.wave[i] >= lo && s.wave[i] <= hi) sum += s.flux[i], ++n;
  return sum / n;
}
// Equivalent width [A] of a hydrogen line in a normalised spectrum, +-w around the line.
double Ew(const Spectrum& norm, double l0, double w) {
  double ew = 0;
  for (size_t i = 1; i < norm.size(); ++i)
    if (std::abs(norm.wave[i] - l0) < w)
      ew += (1 - norm.flux[i]) * (norm.wave[i] - norm.wave[i - 1]);
  return ew;
}
// The upper of the two middle values for an even count (the figures quoted in the README).
double UpperMedian(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}
}  // namespace

TEST_CASE("synthetic spectra behave like stars", "[synth]") {
  const auto cool = Synth().Synthesize(StellarParams{5500, 4.5, 0, 0});
  const auto hot = Synth().Synthesize(StellarParams{9000, 4.0, 0, 0});
  // Hotter is bluer.
  CHECK(MeanFlux(hot, 4000, 4100) / MeanFlux(hot, 8000, 8100) >
        MeanFlux(cool, 4000, 4100) / MeanFlux(cool, 8000, 8100));
  // Balmer jump in an A star: flux just blueward of 3647 A well below redward.
  CHECK(MeanFlux(hot, 3550, 3630) < 0.7 * MeanFlux(hot, 3990, 4060));
  // Surface flux of order sigma T^4 / pi per unit wavelength at the peak.
  for (const auto* s : {&cool, &hot}) {
    double integral = 0;
    for (size_t i = 1; i < s->size(); ++i) integral += s->flux[i] * (s->wave[i] - s->wave[i - 1]);
    const double teff = s == &cool ? 5500 : 9000;
    const double total = 5.6704e-5 * std::pow(teff, 4);
    CHECK(integral / total > 0.45);  // 2400-10600 A holds most, not all, of the flux
    CHECK(integral / total < 1.05);
  }
  // Hydrogen lines strengthen from 5500 to 8000 K.
  const auto in55 = stellar::MakeNetworkInput(cool);
  const auto in80 = stellar::MakeNetworkInput(Synth().Synthesize(StellarParams{8000, 4.0, 0, 0}));
  CHECK(Ew(in80, 4862.7, 40) > Ew(in55, 4862.7, 40));
  // Normalised input has median ~1.
  std::vector<double> v(in55.flux.begin(), in55.flux.end());
  CHECK(std::abs(UpperMedian(v) - 1) < 0.03);
}

TEST_CASE("near-UV flux falls with metallicity at fixed Teff", "[synth]") {
  double prev = 1e300;
  for (double mh : {-2.0, -1.0, 0.0, 0.5}) {
    const auto sed = stellar::MakeTargetSed(Synth().Synthesize(StellarParams{6000, 4.3, mh, 0}));
    double uv = 0;
    for (int i = 0; i < OutputGrid().size(); ++i)
      if (OutputGrid().Centre(i) >= 3000 && OutputGrid().Centre(i) <= 3800) uv += sed.flux[i];
    INFO("[M/H] = " << mh);
    CHECK(uv < prev);
    prev = uv;
  }
}

TEST_CASE("invalid stellar parameters are rejected with the parameter named", "[synth]") {
  CHECK_THROWS_WITH(Synth().Synthesize(StellarParams{4000, 4.0, 0, 0}),
                    Catch::Contains("teff = 4000") && Catch::Contains("4500-10000 K"));
  CHECK_THROWS_WITH(Synth().Synthesize(StellarParams{6000, 4.0, 1.0, 0}), Catch::Contains("[M/H]"));
}

TEST_CASE("R=200 SEDs against Kurucz 1993 models (measured, see README)", "[synth][shared]") {
  const auto dir = test::SharedData("kurucz93/kp00");
  CSST_REQUIRE_SHARED(dir);
  const auto& og = OutputGrid();
  std::vector<double> worst_red, worst_uv;
  for (double teff : {5000.0, 5750.0, 6500.0, 7500.0, 8500.0, 9750.0}) {
    for (double logg : {4.0, 4.5}) {
      const auto sed = stellar::MakeTargetSed(Synth().Synthesize(StellarParams{teff, logg, 0, 0}));
      const auto ks = Kurucz93Sed(dir.string(), teff, logg);
      std::vector<double> red, uv;
      for (int i = 0; i < og.size(); ++i) {
        const double d = std::abs(sed.flux[i] / ks.flux[i] - 1), l = og.Centre(i);
        if (l >= 4000 && l <= 10000) red.push_back(d);
        if (l >= 2500 && l < 4000) uv.push_back(d);
      }
      std::printf(
          "Kurucz Teff %5.0f log g %.1f: median |d| 4000-10000 A = %.3f, 2500-4000 A = %.3f\n",
          teff, logg, UpperMedian(red), UpperMedian(uv));
      worst_red.push_back(UpperMedian(red));
      worst_uv.push_back(UpperMedian(uv));
    }
  }
  // Targets are 0.05 and 0.10; the built-in line haze reaches these only for Teff >= 5750 K
  // (optical) and >= 8500 K (UV). Regression bounds on the measured values:
  CHECK(*std::max_element(worst_red.begin(), worst_red.end()) < 0.08);
  CHECK(*std::max_element(worst_uv.begin(), worst_uv.end()) < 0.30);
  CHECK(UpperMedian(worst_red) < 0.05);
}

TEST_CASE("normalised spectra against MILES dwarfs at R=1500 (measured, see README)",
          "[synth][shared]") {
  const auto params_path = test::SharedData("miles/paramsMILES_v9.1.txt");
  CSST_REQUIRE_SHARED(params_path);
  const auto params = ReadMilesParams(params_path.string());
  std::vector<double> rms;
  std::vector<std::pair<double, double>> hb_miles, hb_synth;  // (teff, EW)
  int used = 0;
  for (const auto& p : params) {
    if (!(p.teff >= 5000 && p.teff <= 7000 && p.logg >= 4.0 && std::abs(p.feh) <= 0.3)) continue;
    char name[64];
    std::snprintf(name, sizeof(name), "miles/MILES_res2.50_star_m%04dV.fits", p.miles_id);
    const auto path = test::SharedData(name);
    if (!std::filesystem::exists(path)) continue;
    const auto m = ReadMiles(path.string());
    // MILES has FWHM = 2.5 A (R = 1600 at 4000 A, 2800 at 7000 A): both spectra are brought to a
    // common R = 1500 on the input grid before normalising.
    const auto mi = NormaliseContinuum(
        ResampleFluxConserving(DegradeToResolution(m.spectrum, 1500.0, 1600.0), InputGrid(), 0.6),
        51);
    const auto native = Synth().Synthesize(StellarParams{p.teff, std::min(p.logg, 5.0), p.feh, 0});
    const auto si = NormaliseContinuum(
        ResampleFluxConserving(DegradeToResolution(native, 1500.0), InputGrid(), 0.6), 51);
    double s = 0;
    int n = 0;
    for (int i = 0; i < InputGrid().size(); ++i)
      if (!mi.mask[i]) s += std::pow(mi.flux[i] - si.flux[i], 2), ++n;
    rms.push_back(std::sqrt(s / n));
    hb_miles.push_back({p.teff, Ew(mi, 4862.7, 30) + Ew(mi, 6564.6, 30)});
    hb_synth.push_back({p.teff, Ew(si, 4862.7, 30) + Ew(si, 6564.6, 30)});
    if (++used >= 24) break;
  }
  REQUIRE(used >= 10);
  std::printf(
      "MILES dwarfs 5000-7000 K: median RMS difference of normalised spectra %.4f over %d stars\n",
      UpperMedian(rms), used);
  CHECK(UpperMedian(rms) <= 0.05);
  // H-beta EW rises with Teff in both: Spearman-like check via the sign of the Teff slope.
  auto slope = [](const std::vector<std::pair<double, double>>& v) {
    double mt = 0, me = 0;
    for (auto [t, e] : v) mt += t, me += e;
    mt /= v.size(), me /= v.size();
    double num = 0, den = 0;
    for (auto [t, e] : v) num += (t - mt) * (e - me), den += (t - mt) * (t - mt);
    return num / den;
  };
  std::printf(
      "H-beta + H-alpha EW (+-30 A, normalised) slope vs Teff: MILES %.2e A/K, synthesizer %.2e "
      "A/K\n",
      slope(hb_miles), slope(hb_synth));
  CHECK(slope(hb_miles) > 0);
  CHECK(slope(hb_synth) > 0);
  CHECK(slope(hb_synth) / slope(hb_miles) ==
        Approx(1.0).margin(0.5));  // the trend within a factor 2
}
