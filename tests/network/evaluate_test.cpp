// `evaluate` against injected truths: targets made from the network's own prediction times known
// factors, so every residual, median and coverage it reports is known beforehand.
#include <torch/torch.h>  // before Catch: c10 defines its own CHECK, which Catch's must replace

#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <nlohmann/json.hpp>

#include "core/errors.h"
#include "core/grid.h"
#include "io/training_set.h"
#include "network/model.h"
#include "network/sed_network.h"
#include "simulation/stellar/synthesizer.h"
#include "tests/test_util.h"

using namespace csst;

namespace {
double MedianOf(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t h = v.size() / 2;
  return v.size() % 2 ? v[h] : 0.5 * (v[h - 1] + v[h]);
}
int NearestPixel(double lambda) {
  int best = 0;
  for (int k = 1; k < OutputGrid().size(); ++k)
    if (std::abs(OutputGrid().Centre(k) - lambda) < std::abs(OutputGrid().Centre(best) - lambda))
      best = k;
  return best;
}
// n = 41 synthesized stars (5000-9000 K; star 7 a training star, star 3 without 7000 A) whose
// targets are the network's own noiseless prediction divided by 1 + c(lambda) + d_i: the relative
// residual (mu - y) / y is then c(lambda) + d_i exactly, with d_i spread evenly over
// -spread..spread.
struct Injected {
  TrainingGrid g;
  SedPrediction p;
  std::vector<double> d;
  int k7000 = 0;
};
Injected InjectResiduals(const SedPredictor& pred, double spread, double (*c)(double)) {
  Injected out;
  const size_t n = 41, ni = net::kInputPixels, no = OutputGrid().size();
  const double snr = 1e6;  // evaluate's noise is then below 1e-5 of every pixel
  TrainingGrid& g = out.g;
  const stellar::Synthesizer synth;
  std::vector<float> flux(n * ni), err(n * ni);
  for (size_t i = 0; i < n; ++i) {
    const auto in = stellar::MakeNetworkInput(
        synth.Synthesize(stellar::StellarParams{5000 + 100.0 * i, 4.2, -0.3, 0.1}));
    for (size_t k = 0; k < ni; ++k) {
      flux[i * ni + k] = static_cast<float>(in.flux[k]);
      err[i * ni + k] = static_cast<float>(std::abs(in.flux[k]) / snr);
    }
    g.input.insert(g.input.end(), flux.begin() + i * ni, flux.begin() + (i + 1) * ni);
    g.teff.push_back(5000 + 100.0 * i), g.logg.push_back(4.2), g.mh.push_back(-0.3),
        g.alpha.push_back(0.1);
    g.test.push_back(i == 7 ? 0 : 1);  // star 7 is a training star: left out
    g.name.push_back("s" + std::to_string(i));
  }
  out.p = pred.Predict(flux, err, n);
  out.k7000 = NearestPixel(7000);
  out.d.resize(n);
  for (size_t i = 0; i < n; ++i) {
    out.d[i] = spread * (-1 + 2 * static_cast<double>((i * 17) % n) / (n - 1));
    for (size_t k = 0; k < no; ++k) {
      g.target.push_back(static_cast<float>(
          out.p.mu[i * no + k] / (1 + c(OutputGrid().Centre(static_cast<int>(k))) + out.d[i])));
      g.target_mask.push_back(
          !(i == 3 && static_cast<int>(k) == out.k7000));  // star 3 does not cover 7000 A
    }
  }
  return out;
}
double NoCommonError(double) { return 0; }
}  // namespace

TEST_CASE("evaluate reports per-wavelength medians, sigmas and coverage of injected residuals",
          "[network][evaluate]") {
  const std::string model = std::string(CSST_SOURCE_DIR) + "/network/models/uara_default";
  const SedPredictor pred(model);
  const size_t n = 41, no = OutputGrid().size();
  const auto inj = InjectResiduals(pred, 0.2, NoCommonError);
  const TrainingGrid& g = inj.g;
  const auto& p = inj.p;
  const auto& d = inj.d;
  const double snr = 1e6;
  const int k5000 = NearestPixel(5000), k7000 = inj.k7000;
  test::TempDir dir("evaluate");
  const auto path = (dir.path() / "grid.fits").string();
  WriteTrainingGrid(path, g, {});
  EvaluateOptions o;
  o.snr = {snr};
  o.wavelengths = {5000, 7000};
  std::string table;
  const auto doc = nlohmann::json::parse(EvaluateNetwork(pred, path, o, &table));
  REQUIRE(doc.at("per_wavelength").size() == 2);
  for (const auto& row : doc.at("per_wavelength")) {
    const bool at7000 = row.at("wavelength").get<double>() == 7000;
    const int k = at7000 ? k7000 : k5000;
    std::vector<double> r;
    long inside = 0;
    for (size_t i = 0; i < n; ++i) {
      if (i == 7 || (at7000 && i == 3)) continue;
      r.push_back(d[i]);
      inside += std::abs(d[i]) < p.sigma[i * no + k];
    }
    INFO("wavelength " << row.at("wavelength") << ": " << row.dump());
    CHECK(row.at("n").get<size_t>() == r.size());  // 40 test stars; 39 at 7000 A
    CHECK(row.at("pixel_wavelength").get<double>() == Approx(OutputGrid().Centre(k)));
    CHECK(row.at("median").get<double>() == Approx(MedianOf(r)).margin(1e-4));
    // Sigma = half the 15.87-84.13 % range of an evenly spread set: 0.6827 of its width 0.4 / 2.
    CHECK(row.at("sigma").get<double>() == Approx(0.5 * 0.6827 * 0.4).margin(0.01));
    CHECK(row.at("coverage_1sigma").get<double>() ==
          Approx(static_cast<double>(inside) / r.size()).margin(1e-9));
  }
  CHECK(table.find("Per wavelength") != std::string::npos);
  o.wavelengths = {2000};
  CHECK_THROWS_WITH(EvaluateNetwork(pred, path, o, nullptr),
                    Catch::Contains("outside the output grid"));
}

namespace {
// An error common to all stars: 2 % over 4300-6100 A, a 1 % ripple beyond 6600 A, none elsewhere.
double Common(double lambda) {
  return lambda >= 4300 && lambda <= 6100 ? 0.02
         : lambda > 6600                  ? 0.01 * std::sin(lambda / 200)
                                          : 0.0;
}
}  // namespace

TEST_CASE(
    "evaluate reports the error common to the test stars, less the sampling noise of the median",
    "[network][evaluate]") {
  const SedPredictor pred(std::string(CSST_SOURCE_DIR) + "/network/models/uara_default");
  const double spread = 0.02;
  const auto inj = InjectResiduals(pred, spread, Common);
  test::TempDir dir("evaluate-common");
  const auto path = (dir.path() / "grid.fits").string();
  WriteTrainingGrid(path, inj.g, {});
  EvaluateOptions o;
  o.snr = {1e6};
  std::string table;
  const auto doc = nlohmann::json::parse(EvaluateNetwork(pred, path, o, &table));
  REQUIRE(doc.at("common_error").size() == 3);
  // The 40 test stars' d: evenly spread over -0.02..0.02 without star 7's; residual = c + d.
  std::vector<double> d;
  for (size_t i = 0; i < inj.d.size(); ++i)
    if (i != 7) d.push_back(inj.d[i]);
  const double med_d = MedianOf(d);
  // Half the 16-84 % range of an even spread of width 0.04, and the noise of a median of 40 values.
  const double noise = std::sqrt(M_PI / 2) * 0.6827 * spread / std::sqrt(40.0);
  for (const auto& row : doc.at("common_error")) {
    const std::string band = row.at("band");
    const auto& b = *std::find_if(kBands.begin(), kBands.end(),
                                  [&](const BandSpec& x) { return band == x.name; });
    double ss = 0;
    int pixels = 0;
    for (int k = 0; k < OutputGrid().size(); ++k) {
      const double l = OutputGrid().Centre(k);
      if (l < b.lo || l > b.hi) continue;
      ss += std::pow(Common(l) + med_d, 2);
      ++pixels;
    }
    const double rms = std::sqrt(ss / pixels);
    INFO(row.dump());
    CHECK(row.at("pixels").get<int>() == pixels);
    CHECK(row.at("rms_median").get<double>() == Approx(rms).margin(2e-4));
    CHECK(row.at("median_noise").get<double>() == Approx(noise).epsilon(0.05));
    CHECK(row.at("common_error").get<double>() ==
          Approx(std::sqrt(std::max(0.0, rms * rms - noise * noise))).margin(3e-4));
  }
  // GU has no common error: what is left of its medians (|median d| = 5e-4) is below their noise.
  CHECK(doc.at("common_error")[0].at("common_error").get<double>() == 0);
  CHECK(doc.at("common_error")[1].at("common_error").get<double>() > 0.015);
  CHECK(table.find("Error common to the test stars") != std::string::npos);
}
