#include <algorithm>
#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "core/bands.h"
#include "core/errors.h"
#include "core/grid.h"
#include "core/rng.h"
#include "core/spectrum.h"
#include "io/training_set.h"
#include "network/sed_network.h"

namespace csst {
using nlohmann::json;

std::string EvaluateNetwork(const SedPredictor& predictor, const std::string& grid_path,
                            const EvaluateOptions& o, std::string* table) {
  const TrainingGrid g = ReadTrainingGrid(grid_path);
  std::vector<int> test;
  for (size_t i = 0; i < g.size(); ++i)
    if (g.test[i]) test.push_back(static_cast<int>(i));
  if (test.empty()) throw Error(grid_path + ": the grid has no test stars");
  const int ni = InputGrid().size(), no = OutputGrid().size();
  const auto& og = OutputGrid();
  json rows = json::array(), at_wavelength = json::array(), common = json::array();
  std::string common_text;
  std::vector<int> wl_pixel;
  for (double w : o.wavelengths) {
    if (w < og.Centre(0) || w > og.Centre(no - 1)) {
      throw Error("evaluate: wavelength " + std::to_string(w) + " A is outside the output grid");
    }
    wl_pixel.push_back(static_cast<int>(std::lround(og.PixelFromWavelength(w))));
  }
  std::string wl_text;
  std::map<std::string, std::vector<double>> cover;  // band -> |r|/sigma
  std::vector<double> rmsae;
  char line[256];
  std::string text =
      "Relative residuals of the predicted SEDs on the test split (median / 1-sigma)\n";
  std::snprintf(line, sizeof(line), "%-8s %-5s %-22s %-22s %-22s\n", "Teff", "SNR", kBands[0].name,
                kBands[1].name, kBands[2].name);
  text += line;
  for (double snr : o.snr) {
    std::vector<float> flux(test.size() * ni), err(test.size() * ni);
    for (size_t t = 0; t < test.size(); ++t) {
      Rng rng(o.seed, "evaluate-noise",
              static_cast<uint64_t>(test[t]) * 1000 + static_cast<uint64_t>(snr));
      for (int k = 0; k < ni; ++k) {
        const double f = g.input[static_cast<size_t>(test[t]) * ni + k];
        flux[t * ni + k] = static_cast<float>(f * (1 + rng.Normal() / snr));
        err[t * ni + k] = static_cast<float>(std::abs(f) / snr);
      }
    }
    const auto pred = predictor.Predict(flux, err, test.size(), o.batch);
    // residuals per (star, band), and per output pixel with their |r| / sigma (stars in test order)
    std::vector<std::map<std::string, std::vector<double>>> per_star(test.size());
    std::vector<std::vector<double>> r_at(no), z_at(no);
    for (size_t t = 0; t < test.size(); ++t) {
      double ss = 0;
      int n = 0;
      for (int k = 0; k < no; ++k) {
        const size_t at = static_cast<size_t>(test[t]) * no + k;
        if (!g.target_mask[at] || !(g.target[at] > 0)) continue;
        const double y = g.target[at];
        const double r = (pred.mu[t * no + k] - y) / y;
        ss += r * r;
        ++n;
        const double z = std::abs(r) / pred.sigma[t * no + k];
        r_at[k].push_back(r);
        z_at[k].push_back(z);
        const double lam = og.Centre(k);
        for (const auto& b : kBands) {
          if (lam < b.lo || lam > b.hi) continue;
          per_star[t][b.name].push_back(r);
          cover[b.name].push_back(z);
        }
      }
      if (n > 0) rmsae.push_back(std::sqrt(ss / n));
    }
    // The error common to the stars: per pixel the median residual over the test stars that cover
    // it; per band its RMS over pixels, less (in quadrature) the sampling noise of a median of n
    // values, sqrt(pi / 2) sigma / sqrt(n), which a sample free of common error would show.
    for (const auto& b : kBands) {
      double ss = 0, noise2 = 0;
      int pixels = 0;
      for (int k = 0; k < no; ++k) {
        const double lam = og.Centre(k);
        const auto& r = r_at[k];
        if (lam < b.lo || lam > b.hi || r.size() < 5)
          continue;  // a median of fewer stars says little
        const double med = Quantile(r, 0.5),
                     sig = 0.5 * (Quantile(r, 0.8413) - Quantile(r, 0.1587));
        ss += med * med;
        noise2 += M_PI / 2 * sig * sig / static_cast<double>(r.size());
        ++pixels;
      }
      if (pixels == 0) continue;
      const double rms = std::sqrt(ss / pixels), noise = std::sqrt(noise2 / pixels);
      common.push_back({{"snr", snr},
                        {"band", b.name},
                        {"rms_median", rms},
                        {"median_noise", noise},
                        {"common_error", std::sqrt(std::max(0.0, rms * rms - noise * noise))},
                        {"pixels", pixels}});
      std::snprintf(line, sizeof(line), "%-5s %-5.0f %.4f   %.4f   %.4f  (%d px)\n", b.name, snr,
                    rms, noise, common.back()["common_error"].get<double>(), pixels);
      common_text += line;
    }
    // The relative residual and |r|/sigma at each chosen pixel, over the test stars that cover it.
    for (size_t w = 0; w < wl_pixel.size(); ++w) {
      const int k = wl_pixel[w];
      const auto& r = r_at[k];
      const auto& z = z_at[k];
      const double med = Quantile(r, 0.5), sig = 0.5 * (Quantile(r, 0.8413) - Quantile(r, 0.1587));
      const double c1 = r.empty() ? NAN
                                  : static_cast<double>(std::count_if(
                                        z.begin(), z.end(), [](double x) { return x < 1; })) /
                                        z.size();
      at_wavelength.push_back({{"wavelength", o.wavelengths[w]},
                               {"pixel_wavelength", og.Centre(k)},
                               {"snr", snr},
                               {"median", med},
                               {"sigma", sig},
                               {"coverage_1sigma", c1},
                               {"n", r.size()}});
      std::snprintf(line, sizeof(line), "%-8.0f %-5.0f %+.4f / %.4f   %.3f  (%zu)\n",
                    o.wavelengths[w], snr, med, sig, c1, r.size());
      wl_text += line;
    }
    for (double tc : o.teff_bins) {
      std::snprintf(line, sizeof(line), "%-8.0f %-5.0f", tc, snr);
      text += line;
      for (const auto& b : kBands) {
        std::vector<double> r;
        for (size_t t = 0; t < test.size(); ++t) {
          if (std::abs(g.teff[test[t]] - tc) > o.teff_half_width) continue;
          const auto& v = per_star[t][b.name];
          r.insert(r.end(), v.begin(), v.end());
        }
        const double med = Quantile(r, 0.5);
        const double sig = 0.5 * (Quantile(r, 0.8413) - Quantile(r, 0.1587));
        rows.push_back({{"teff", tc},
                        {"snr", snr},
                        {"band", b.name},
                        {"median", med},
                        {"sigma", sig},
                        {"n", r.size()}});
        std::snprintf(line, sizeof(line), " %+.4f / %.4f (%6zu)", med, sig, r.size());
        text += line;
      }
      text += "\n";
    }
  }
  json coverage = json::object();
  for (auto& [band, v] : cover) {
    const double c1 =
        static_cast<double>(std::count_if(v.begin(), v.end(), [](double x) { return x < 1; })) /
        v.size();
    const double c2 =
        static_cast<double>(std::count_if(v.begin(), v.end(), [](double x) { return x < 2; })) /
        v.size();
    coverage[band] = {{"1sigma", c1}, {"2sigma", c2}};
    std::snprintf(line, sizeof(line), "coverage %s: %.3f within 1 sigma, %.3f within 2 sigma\n",
                  band.c_str(), c1, c2);
    text += line;
  }
  if (!wl_text.empty()) {
    text +=
        "Per wavelength, all test stars (median / 1-sigma, 1-sigma coverage, stars)\nA        "
        "SNR\n" +
        wl_text;
  }
  text +=
      "Error common to the test stars (per band: RMS over pixels of the median residual, its "
      "sampling noise, the\n"
      "difference in quadrature)\nband  SNR   RMS      noise    common\n" +
      common_text;
  json rms = {{"median", Quantile(rmsae, 0.5)},
              {"p16", Quantile(rmsae, 0.16)},
              {"p84", Quantile(rmsae, 0.84)},
              {"p95", Quantile(rmsae, 0.95)},
              {"n", rmsae.size()}};
  std::snprintf(line, sizeof(line), "RMSAE over 2500-10500 A: median %.4f, 16-84%% %.4f-%.4f\n",
                rms["median"].get<double>(), rms["p16"].get<double>(), rms["p84"].get<double>());
  text += line;
  if (table) *table = text;
  json doc = {{"grid", grid_path},      {"test_stars", test.size()},
              {"table", rows},          {"coverage", coverage},
              {"rmsae", rms},           {"per_wavelength", at_wavelength},
              {"common_error", common}, {"model", json::parse(predictor.info().json)}};
  return doc.dump(1);
}

}  // namespace csst
