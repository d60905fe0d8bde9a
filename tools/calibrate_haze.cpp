// Calibrates the line-blanketing constants of the built-in synthesizer (atmosphere.h,
// HazeCalibration: line-haze cross-sections, their wavelength scales, the Fe I excitation and the
// surface cooling) on Kurucz (1993) [M/H] = 0 SEDs from ../shared/data/kurucz93.
// Residuals: ln(synthesizer / Kurucz) per output-grid pixel over 2500-7000 A, both SEDs degraded
// to R = 200 and scaled at 5526-5586 A, for Teff 5000-9750 K and log g 4.0, 4.5. Solved with Ceres
// (Levenberg-Marquardt, central numeric derivatives, bounds).
// Usage: csst-calibrate-haze KURUCZ_KP00_DIR   (prints the fitted constants for atmosphere.h)
#include <ceres/ceres.h>
#include <tbb/parallel_for.h>

#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "core/spectrum.h"
#include "io/fits.h"
#include "io/spectrum_io.h"
#include "simulation/stellar/synthesizer.h"

using namespace csst;

namespace {
constexpr int kK = stellar::HazeCalibration::kKnots;
constexpr int kP = 2 * kK + 3;  // ln sigma_I at knots, ln sigma_II at knots, cool, ln tau_cool, chi

struct Target {
  stellar::StellarParams p;
  std::vector<double> kurucz;
};

std::vector<double> KuruczSed(const std::string& dir, double teff, double logg) {
  return Kurucz93Sed(dir, teff, logg).flux;
}

stellar::HazeCalibration FromParams(const double* x) {
  stellar::HazeCalibration h;
  for (int k = 0; k < kK; ++k) {
    h.ln_s1[k] = x[k];
    h.ln_s2[k] = x[kK + k];
  }
  h.cool = x[2 * kK];
  h.tau_cool = std::exp(x[2 * kK + 1]);
  h.chi = x[2 * kK + 2];
  return h;
}

struct SedResiduals {
  const std::vector<Target>* targets;
  const stellar::Synthesizer* synth;
  std::vector<int> pixels;
  bool operator()(const double* x, double* r) const {
    const auto h = FromParams(x);
    std::atomic<bool> ok{true};
    tbb::parallel_for(size_t{0}, targets->size(), [&](size_t ti) {
      const auto& t = (*targets)[ti];
      try {
        const auto sed =
            stellar::MakeTargetSed(synth->Synthesize(stellar::Atmosphere::Build(t.p, h)));
        size_t k = ti * pixels.size();
        for (int i : pixels) r[k++] = std::log(sed.flux[i] / t.kurucz[i]);
      } catch (const std::exception&) {
        ok = false;  // Ceres treats the step as unsuccessful
      }
    });
    return ok;
  }
};
}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s KURUCZ_KP00_DIR\n", argv[0]);
    return 2;
  }
  std::vector<Target> targets;
  for (double teff : {5000.0, 5500.0, 6000.0, 6500.0, 7000.0, 7500.0, 8500.0, 9750.0})
    for (double logg : {4.0, 4.5})
      targets.push_back({{teff, logg, 0, 0}, KuruczSed(argv[1], teff, logg)});
  stellar::SynthOptions so;
  so.resolving_power = 4000;  // SED-level calibration: a coarse native grid suffices
  const stellar::Synthesizer synth(so);
  auto* functor = new SedResiduals{&targets, &synth, {}};
  const auto& og = OutputGrid();
  for (int i = 0; i < og.size(); ++i)
    if (og.Centre(i) >= 2500 && og.Centre(i) <= 7000) functor->pixels.push_back(i);
  const int nres = static_cast<int>(functor->pixels.size() * targets.size());
  // Start from the current constants; bounds keep the search physical.
  const stellar::HazeCalibration h0;
  double x[kP], lo[kP], hi[kP];
  for (int k = 0; k < kK; ++k) {
    x[k] = h0.ln_s1[k];
    x[kK + k] = h0.ln_s2[k];
    lo[k] = lo[kK + k] = std::log(1e-30);
    hi[k] = hi[kK + k] = std::log(1e-14);
  }
  x[2 * kK] = h0.cool, lo[2 * kK] = 0.0, hi[2 * kK] = 0.7;
  x[2 * kK + 1] = std::log(h0.tau_cool), lo[2 * kK + 1] = std::log(1e-4),
             hi[2 * kK + 1] = std::log(1.0);
  x[2 * kK + 2] = h0.chi, lo[2 * kK + 2] = 0.0, hi[2 * kK + 2] = 4.0;
  auto* cost = new ceres::NumericDiffCostFunction<SedResiduals, ceres::CENTRAL, ceres::DYNAMIC, kP>(
      functor, ceres::TAKE_OWNERSHIP, nres);
  ceres::Problem problem;
  problem.AddResidualBlock(cost, nullptr, x);
  for (int k = 0; k < kP; ++k) {
    problem.SetParameterLowerBound(x, k, lo[k]);
    problem.SetParameterUpperBound(x, k, hi[k]);
  }
  ceres::Solver::Options o;
  o.max_num_iterations = 40;
  o.minimizer_progress_to_stdout = true;
  o.num_threads = 1;
  ceres::Solver::Summary summary;
  ceres::Solve(o, &problem, &summary);
  std::printf("%s\n", summary.BriefReport().c_str());
  const auto h = FromParams(x);
  std::printf("rms ln ratio %.4f over %d residuals\n", std::sqrt(2 * summary.final_cost / nres),
              nres);
  std::printf("  double ln_s1[kKnots] = {");
  for (int k = 0; k < kK; ++k) std::printf("%s%.3f", k ? ", " : "", h.ln_s1[k]);
  std::printf("};\n  double ln_s2[kKnots] = {");
  for (int k = 0; k < kK; ++k) std::printf("%s%.3f", k ? ", " : "", h.ln_s2[k]);
  std::printf("};\n  double chi = %.3f;\n  double cool = %.4f, tau_cool = %.4g;\n", h.chi, h.cool,
              h.tau_cool);
}
