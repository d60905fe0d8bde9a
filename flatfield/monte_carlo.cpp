#include "flatfield/monte_carlo.h"

#include <tbb/parallel_for.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <mutex>
#include <nlohmann/json.hpp>

#include "core/errors.h"
#include "core/grid.h"
#include "core/log.h"
#include "core/prepare.h"
#include "core/progress.h"
#include "core/rng.h"
#include "flatfield/cube_fit.h"

namespace csst {

void MonteCarloOptions::Validate() const {
  if (realizations < 0) throw ConfigError("config error: validate.realizations must be >= 0");
  if (sample_points < 2) throw ConfigError("config error: validate.sample_points must be >= 2");
}

namespace {
struct Accum {                                        // per detector, slice, point
  std::vector<std::vector<std::vector<double>>> fit;  // fitted value per realization appended later
};
}  // namespace

MonteCarloResult RunMonteCarlo(const Instrument& inst, const TrueFlat& truth,
                               const ObserveOptions& observe, const CompareOptions& compare,
                               const FlatFitOptions& fit, const MonteCarloOptions& mc,
                               const MonteCarloInputs& in, const PredictFn& predict, uint64_t seed,
                               uint64_t placement_seed) {
  mc.Validate();
  auto log = Logger("validate");
  const size_t n = in.stars.size();
  const int ni = InputGrid().size();
  const int sp = mc.sample_points;
  const double nx = inst.options().detector_nx, ny = inst.options().detector_ny;
  MonteCarloResult res;
  res.realizations = mc.realizations;
  res.n_stars = n;
  // With unknown star fluxes (joint fit) the flat is determined up to the gauge "mean GV flat over
  // the detector area in 5526-5586 A = 1", imposed separately on every group of detectors linked by
  // shared stars: the truth is compared under the same gauge, per realization and group.
  const int per_band = inst.options().detectors_per_band;
  std::vector<double> gv_mean(static_cast<size_t>(3 * per_band),
                              1.0);  // mean true flat in the window, GV detectors
  for (int d = per_band; d < 2 * per_band; ++d) {
    double sum = 0;
    int cnt = 0;
    for (double l = kScaleWindowMin; l <= kScaleWindowMax; l += 10)
      for (int j = 0; j < 32; ++j)
        for (int i = 0; i < 32; ++i) {
          sum += truth.Value(d, (i + 0.5) / 32 * (nx - 1), (j + 0.5) / 32 * (ny - 1), l);
          ++cnt;
        }
    gv_mean[static_cast<size_t>(d)] = sum / cnt;
  }
  // Truth gauge of every detector of a fitted cube (1 in independent mode).
  auto truth_gauges = [&](const FlatCube& cube) {
    std::vector<double> g(cube.detectors.size(), 1.0);
    if (fit.mode != "joint") return g;
    for (size_t d = 0; d < cube.detectors.size(); ++d) {
      double sum = 0;
      int cnt = 0;
      for (const auto& e : cube.detectors)
        if (e.band == 1 && e.component == cube.detectors[d].component)
          sum += gv_mean[static_cast<size_t>(e.detector)], ++cnt;
      g[d] = cnt > 0 ? sum / cnt : 1.0;
    }
    return g;
  };
  // Per realization: per detector, slice, point: (fitted, sigma, true).
  struct RealOut {
    std::vector<std::vector<std::vector<double>>> fitted, sigma;  // [det][slice][point]
    std::vector<std::vector<int>> pixels;
    std::vector<double> gauge;  // per detector: the truth's value of the fit's gauge
    std::vector<double> residuals;
    std::vector<float> mu, sig;
    std::vector<StarObservation> obs;
    std::array<double, 6> seconds{};  // prepare, predict, observe, ratios, fit, compare
  };
  std::vector<RealOut> outs(mc.realizations);
  // What does not change between realizations is computed once: with fixed positions in spectral
  // mode the expected counts of every star through the instrument and the true flat (only the
  // noise is drawn per realization; identical to a full Observe per realization).
  const bool reuse_expected = observe.mode == "spectral" && !mc.fresh_positions;
  std::vector<StarObservation> expected;
  if (reuse_expected) {
    expected = ObserveExpected(inst, truth, observe, in.stars, in.sed_fine, in.window_flux,
                               placement_seed);
  }
  // The comparison points and their basis values (one detector geometry for all detectors).
  std::vector<std::array<double, 2>> point(static_cast<size_t>(sp * sp));
  std::vector<std::vector<double>> point_basis(point.size());
  for (int q = 0; q < sp * sp; ++q) {
    const int i = q % sp, j = q / sp;
    point[static_cast<size_t>(q)] = {(i + 0.5) / sp * (nx - 1), (j + 0.5) / sp * (ny - 1)};
    point_basis[static_cast<size_t>(q)] = FlatBasis(point[q][0], point[q][1], nx, ny, fit.order);
  }
  std::mutex predict_mu;
  std::vector<char> done(static_cast<size_t>(mc.realizations), 0);
  // Realizations run in chunks and are reduced in realization order as each chunk ends, so memory
  // stays bounded for any number of realizations and the result does not depend on threads.
  const int per = inst.options().detectors_per_band;
  const char* names[3] = {"GU", "GV", "GI"};
  std::vector<std::vector<int>> pixels0;  // [det][slice] of realization 0
  std::vector<std::vector<std::array<double, 5>>>
      acc;  // [det][slice]: sum e, sum e2, n, covered, sum u2
  std::vector<std::vector<std::vector<double>>> sum_f, sum_f2, true_value;  // [det][slice][point]
  std::array<double, 6> seconds{};
  auto reduce = [&](RealOut& o) {
    if (pixels0.empty()) {
      pixels0 = o.pixels;
      acc.resize(pixels0.size());
      sum_f.resize(pixels0.size());
      sum_f2.resize(pixels0.size());
      true_value.resize(pixels0.size());
      for (size_t d = 0; d < pixels0.size(); ++d) {
        const size_t ns = pixels0[d].size();
        acc[d].assign(ns, {0, 0, 0, 0, 0});
        sum_f[d].assign(ns, std::vector<double>(point.size(), 0.0));
        sum_f2[d].assign(ns, std::vector<double>(point.size(), 0.0));
        true_value[d].resize(ns);
        for (size_t s = 0; s < ns; ++s) {
          const double lambda = OutputGrid().Centre(pixels0[d][s]);
          for (const auto& pt : point)
            true_value[d][s].push_back(truth.Value(static_cast<int>(d), pt[0], pt[1], lambda));
        }
      }
    }
    if (o.pixels != pixels0)
      throw Error("Monte Carlo: realizations fitted different slices (internal error)");
    for (size_t d = 0; d < pixels0.size(); ++d) {
      for (size_t s = 0; s < pixels0[d].size(); ++s) {
        auto& a = acc[d][s];
        for (size_t q = 0; q < point.size(); ++q) {
          const double t = true_value[d][s][q] / o.gauge[d];
          const double f = o.fitted[d][s][q];
          const double e = (f - t) / t;
          a[0] += e;
          a[1] += e * e;
          a[2] += 1;
          a[3] += std::abs(f - t) < o.sigma[d][s][q] ? 1 : 0;
          a[4] += (1 - t) * (1 - t) / (t * t);  // what F = 1 (no flat at all) would score
          sum_f[d][s][q] += f;
          sum_f2[d][s][q] += f * f;
        }
      }
    }
    for (size_t k = 0; k < seconds.size(); ++k) seconds[k] += o.seconds[k];
  };
  const int chunk = 32;
  Progress progress("validate", mc.realizations);
  for (int start = 0; start < mc.realizations; start += chunk) {
    const int end = std::min(mc.realizations, start + chunk);
    tbb::parallel_for(start, end, [&](int r) {
      RealOut& o = outs[r];
      auto t0 = std::chrono::steady_clock::now();
      auto lap = [&](int phase) {
        const auto t1 = std::chrono::steady_clock::now();
        o.seconds[static_cast<size_t>(phase)] += std::chrono::duration<double>(t1 - t0).count();
        t0 = t1;
      };
      // 1. Fresh LAMOST noise -> prepared inputs.
      std::vector<float> flux(n * ni), err(n * ni);
      PrepareOptions po = in.prepare;
      po.min_coverage = 0.0;
      for (size_t i = 0; i < n && in.inputs_needed; ++i) {
        Spectrum s = in.lamost_noiseless[i];
        Rng rng(seed, "mc-lamost", static_cast<uint64_t>(r) * 1000003ULL + i);
        for (size_t k = 0; k < s.size(); ++k) {
          if (s.mask[k]) continue;
          s.flux[k] += s.err[k] * rng.Normal();
        }
        const auto p =
            PrepareNetworkInput(s, in.z[i], po, "star " + std::to_string(in.stars[i].obsid));
        std::copy(p.flux.begin(), p.flux.end(), flux.begin() + i * ni);
        std::copy(p.err.begin(), p.err.end(), err.begin() + i * ni);
      }
      lap(0);
      // 2. Predictions.
      std::vector<float> mu, sigma;
      {
        std::lock_guard<std::mutex> lock(predict_mu);
        predict(r, flux, err, n, &mu, &sigma);
      }
      lap(1);
      // 3. Fresh CSST noise (and positions).
      const uint64_t pseed = mc.fresh_positions
                                 ? Mix64(placement_seed + static_cast<uint64_t>(r) + 1)
                                 : placement_seed;
      const std::string stream = "mc-noise-" + std::to_string(r);
      const auto obs = reuse_expected ? DrawObservationNoise(expected, observe, pseed, stream)
                                      : Observe(inst, truth, observe, in.stars, in.sed_fine,
                                                in.window_flux, pseed, stream);
      lap(2);
      // 4-5. Ratios and fit.
      const auto ratios = ComputeRatios(inst, compare, obs, in.stars, in.window_flux, mu, sigma,
                                        Mix64(seed + static_cast<uint64_t>(r)));
      lap(3);
      const auto cube = FitFlatCube(inst, fit, ratios);
      lap(4);
      // 6. Compare with the truth at the sample points.
      o.gauge = truth_gauges(cube);
      o.fitted.resize(cube.detectors.size());
      o.sigma.resize(cube.detectors.size());
      o.pixels.resize(cube.detectors.size());
      for (size_t d = 0; d < cube.detectors.size(); ++d) {
        const auto& det = cube.detectors[d];
        o.pixels[d] = det.pixels;
        for (size_t s = 0; s < det.slices.size(); ++s) {
          std::vector<double> f, e;
          for (size_t q = 0; q < point.size(); ++q) {
            f.push_back(det.slices[s].EvaluateBasis(point_basis[q]));
            e.push_back(det.slices[s].SigmaBasis(point_basis[q]));
            if (r == 0) {
              const double t = truth.Value(det.detector, point[q][0], point[q][1],
                                           OutputGrid().Centre(det.pixels[s])) /
                               o.gauge[d];
              o.residuals.push_back((f.back() - t) / t);
            }
          }
          o.fitted[d].push_back(std::move(f));
          o.sigma[d].push_back(std::move(e));
        }
      }
      if (r == 0) {
        o.mu = mu;
        o.sig = sigma;
        o.obs = obs;
      }
      lap(5);
      done[static_cast<size_t>(r)] = 1;
      progress.Tick();
    });
    CheckCancelled();
    // A cancelled task group (another stage failed) ends parallel_for early without an exception.
    const long finished = std::count(done.begin(), done.end(), 1);
    if (finished != end) {
      throw Error("Monte Carlo stopped after " + std::to_string(finished) + " of " +
                  std::to_string(mc.realizations) + " realizations (cancelled)");
    }
    for (int r = start; r < end; ++r) {
      reduce(outs[r]);
      if (r > 0) outs[r] = RealOut{};  // realization 0 stays for the report
    }
  }
  progress.Finish();
  if (mc.realizations == 0) return res;
  const double n_r = mc.realizations;
  log->info(
      "per realization (thread-seconds): prepare {:.3f}, predict {:.3f}, observe {:.3f}, ratios "
      "{:.3f}, "
      "fit {:.3f}, compare {:.3f}",
      seconds[0] / n_r, seconds[1] / n_r, seconds[2] / n_r, seconds[3] / n_r, seconds[4] / n_r,
      seconds[5] / n_r);
  std::map<std::string, std::map<int, std::array<double, 5>>>
      per_pixel;  // band -> pixel -> acc (over detectors)
  res.detector_names.resize(pixels0.size());
  res.detector_wavelengths.resize(pixels0.size());
  res.err_mc.resize(pixels0.size());
  for (size_t d = 0; d < pixels0.size(); ++d) {
    const int band = static_cast<int>(d) / per;
    res.detector_names[d] = Instrument::DetectorName(band, static_cast<int>(d) % per);
    res.err_mc[d].resize(pixels0[d].size());
    for (size_t s = 0; s < pixels0[d].size(); ++s) {
      const int pix = pixels0[d][s];
      res.detector_wavelengths[d].push_back(OutputGrid().Centre(pix));
      auto& total = per_pixel[names[band]][pix];
      for (size_t k = 0; k < total.size(); ++k) total[k] += acc[d][s][k];
      auto& em = res.err_mc[d][s];
      for (size_t q = 0; q < point.size(); ++q) {
        const double m = sum_f[d][s][q] / n_r;
        em.push_back(mc.realizations > 1
                         ? std::sqrt(std::max(0.0, (sum_f2[d][s][q] - n_r * m * m) / (n_r - 1)))
                         : 0.0);
      }
    }
  }
  for (const auto& [band, pixels] : per_pixel) {
    BandSummary bs;
    for (const auto& [pix, a] : pixels) {
      bs.wavelength.push_back(OutputGrid().Centre(pix));
      bs.precision_by_wavelength.push_back(std::sqrt(a[1] / a[2]));
      bs.bias_by_wavelength.push_back(a[0] / a[2]);
      bs.coverage_by_wavelength.push_back(a[3] / a[2]);
    }
    std::vector<double> unit;
    for (const auto& [pix, a] : pixels) unit.push_back(std::sqrt(a[4] / a[2]));
    bs.unit_flat_precision = Median(unit);
    bs.precision = Median(bs.precision_by_wavelength);
    bs.bias = Median(bs.bias_by_wavelength);
    double c = 0;
    for (double v : bs.coverage_by_wavelength) c += v;
    bs.coverage = bs.coverage_by_wavelength.empty() ? NAN : c / bs.coverage_by_wavelength.size();
    res.bands[band] = bs;
    log->info("{}: precision {:.2e}, bias {:+.2e}, coverage(1 sigma) {:.3f} over {} realizations",
              band, bs.precision, bs.bias, bs.coverage, mc.realizations);
  }
  res.residual_sample = std::move(outs[0].residuals);
  res.fitted0 = outs[0].fitted;
  res.mu0 = std::move(outs[0].mu);
  res.sigma0 = std::move(outs[0].sig);
  res.obs0 = std::move(outs[0].obs);
  return res;
}

std::string MonteCarloJson(const MonteCarloResult& r, const std::string& config_path,
                           uint64_t seed) {
  nlohmann::json bands = nlohmann::json::object();
  for (const auto& [name, b] : r.bands) {
    nlohmann::json pbw = nlohmann::json::array();
    for (size_t i = 0; i < b.wavelength.size(); ++i)
      pbw.push_back({b.wavelength[i], b.precision_by_wavelength[i]});
    bands[name] = {{"precision", b.precision},
                   {"bias", b.bias},
                   {"coverage_1sigma", b.coverage},
                   {"unit_flat_precision", b.unit_flat_precision},
                   {"precision_by_wavelength", pbw}};
  }
  nlohmann::json j = {{"realizations", r.realizations},
                      {"n_stars", r.n_stars},
                      {"bands", bands},
                      {"config", config_path},
                      {"seed", seed}};
  return j.dump(1);
}

void WriteMonteCarloFits(const std::string& path, const MonteCarloResult& r, int sp, double nx,
                         double ny, const Provenance& prov) {
  FitsWriter w(path);
  w.WriteEmptyPrimary();
  Provenance p = prov;
  p.descrip = "Monte Carlo precision of the fitted flat against the injected truth";
  w.Standard(p, "");
  w.Key("NREAL", static_cast<long>(r.realizations), "realizations");
  w.Key("NSTARS", static_cast<long>(r.n_stars), "stars");
  std::vector<std::string> band;
  std::vector<double> wave, prec, bias, cov;
  for (const auto& [name, b] : r.bands) {
    for (size_t i = 0; i < b.wavelength.size(); ++i) {
      band.push_back(name);
      wave.push_back(b.wavelength[i]);
      prec.push_back(b.precision_by_wavelength[i]);
      bias.push_back(b.bias_by_wavelength[i]);
      cov.push_back(b.coverage_by_wavelength[i]);
    }
  }
  w.WriteTable("PRECISION", {{"BAND", "", band},
                             {"WAVELENGTH", "Angstrom", wave},
                             {"PRECISION", "", prec},
                             {"BIAS", "", bias},
                             {"COVERAGE_1SIGMA", "", cov}});
  w.Standard(p, "");
  for (size_t d = 0; d < r.err_mc.size(); ++d) {
    const long nl = static_cast<long>(r.err_mc[d].size());
    std::vector<float> cube;
    for (const auto& s : r.err_mc[d])
      for (double v : s) cube.push_back(static_cast<float>(v));
    w.WriteImage("ERR_MC_" + r.detector_names[d], {sp, sp, nl}, cube);
    Provenance q = p;
    q.detector = r.detector_names[d];
    q.filter = r.detector_names[d].substr(0, 2);
    q.descrip = "Monte Carlo 1-sigma of the fitted flat at sample points";
    w.Standard(q, "");
    w.Key("CTYPE1", "DET_X", "");
    w.Key("CTYPE2", "DET_Y", "");
    w.Key("CTYPE3", "WAVE-TAB", "see WAVELENGTH_<DET>");
    w.Key("CRPIX1", 1.0, "");
    w.Key("CRPIX2", 1.0, "");
    w.Key("CRVAL1", 0.5 / sp * (nx - 1), "[pixel]");
    w.Key("CRVAL2", 0.5 / sp * (ny - 1), "[pixel]");
    w.Key("CDELT1", (nx - 1) / sp, "[pixel]");
    w.Key("CDELT2", (ny - 1) / sp, "[pixel]");
    w.Key("CUNIT1", "pixel", "");
    w.Key("CUNIT2", "pixel", "");
    w.WriteTable("WAVELENGTH_" + r.detector_names[d],
                 {{"WAVELENGTH", "Angstrom", r.detector_wavelengths[d]}});
    w.Standard(q, "");
  }
  w.Close();
}

}  // namespace csst
