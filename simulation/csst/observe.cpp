#include "simulation/csst/observe.h"

#include <tbb/parallel_for.h>

#include <algorithm>
#include <cmath>

#include "core/errors.h"
#include "core/grid.h"
#include "core/progress.h"
#include "core/rng.h"
#include "core/spectrum.h"

namespace csst {
namespace {

constexpr double kFwhm = 2.354820045;

double Phi(double z) { return 0.5 * std::erfc(-z / std::sqrt(2.0)); }

// Fraction of a Gaussian (centre c, sigma s) falling in [a, b].
double GaussFraction(double a, double b, double c, double s) {
  return Phi((b - c) / s) - Phi((a - c) / s);
}

}  // namespace

void ObserveOptions::Validate() const {
  auto fail = [](const std::string& m) { throw ConfigError("config error: " + m); };
  if (zeroth_order_fraction < 0 || zeroth_order_fraction > 1)
    fail("simulation.zeroth_order_fraction must be in [0, 1]");
  if (cosmic_ray_rate < 0) fail("simulation.cosmic_ray_rate must be >= 0");
  if (outlier_fraction < 0 || outlier_fraction > 1)
    fail("simulation.outlier_fraction must be in [0, 1]");
}

void PlaceStars(const Instrument& inst, const std::vector<StarRecord>& stars,
                StarPlacement placement, uint64_t seed, std::vector<StarObservation>& obs) {
  const auto& o = inst.options();
  const int per = o.detectors_per_band;
  double ra0 = 0, dec0 = 0, span_x = 1e-9, span_y = 1e-9;
  if (placement == StarPlacement::kSky && !stars.empty()) {
    for (const auto& s : stars) {
      ra0 += s.ra;
      dec0 += s.dec;
    }
    ra0 /= stars.size();
    dec0 /= stars.size();
    // Each axis is scaled to fill the mosaic: a catalogue spread wider in RA than in Dec (the
    // LAMOST footprint) would otherwise crowd into a strip of every detector.
    for (const auto& s : stars) {
      span_x = std::max(span_x, std::abs((s.ra - ra0) * std::cos(dec0 * M_PI / 180)));
      span_y = std::max(span_y, std::abs(s.dec - dec0));
    }
  }
  for (size_t i = 0; i < stars.size(); ++i) {
    Rng rng(seed, "placement", i);
    for (int b = 0; b < 3; ++b) {
      auto& bo = obs[i].band[b];
      bo.band = b;
      if (placement == StarPlacement::kRandom) {
        bo.detector = b * per + static_cast<int>(rng.Uniform() * per) % per;
        bo.x0 = rng.Uniform(0, o.detector_nx - 1);
        bo.y0 = rng.Uniform(20, o.detector_ny - 21);
      } else {
        // Tangent-plane offsets mapped onto a square mosaic of the band's detectors (each band
        // sees the same field through its own detectors; approximate layout).
        const int side = static_cast<int>(std::ceil(std::sqrt(per)));
        const double u =
            0.5 + 0.5 * (stars[i].ra - ra0) * std::cos(dec0 * M_PI / 180) / span_x * 0.999;
        const double v = 0.5 + 0.5 * (stars[i].dec - dec0) / span_y * 0.999;
        const int cx = std::min(side - 1, static_cast<int>(u * side)),
                  cy = std::min(side - 1, static_cast<int>(v * side));
        bo.detector = b * per + std::min(per - 1, cy * side + cx);
        bo.x0 = (u * side - cx) * (o.detector_nx - 1);
        bo.y0 = 20 + (v * side - cy) * (o.detector_ny - 41);
      }
    }
  }
}

namespace {

// Photons per fine pixel (true SED x throughput x flat x A t x lambda/hc), LSF-convolved or not.
struct FinePhotons {
  std::vector<double> lam, edge, photons;  // per fine pixel
  std::vector<uint8_t> on;                 // on the detector
};

// What a star sends: its true SED on TruthGrid() (scaled to 1 in the window), its window flux,
// the E(B-V) it is seen through (0: none) and its flux error factor (outliers).
struct StarLight {
  const std::vector<double>& sed_fine;
  double window_flux, ebv, flux_error;
};
StarLight LightOf(const StarObservation& so, const std::vector<double>& sed_fine,
                  const ObserveOptions& opt) {
  return {sed_fine, so.window_flux, opt.reddening ? so.ebv : 0.0, so.flux_error};
}

FinePhotons MakePhotons(const Instrument& inst, const TrueFlat& flat, const BandObservation& bo,
                        const StarLight& light, bool convolve) {
  const auto& [sed_fine, window_flux, ebv, flux_error] = light;
  const auto& tg = TruthGrid();
  const BandOptics& b = inst.band(bo.band);
  const auto& o = inst.options();
  FinePhotons fp;
  const int n = tg.size();
  std::vector<double> f(n);
  for (int j = 0; j < n; ++j) {
    const double lam = tg.Centre(j);
    double v = sed_fine[j] * window_flux * flux_error;
    if (ebv != 0) v *= std::pow(10.0, -0.4 * ebv * 3.1 * ExtinctionCcm89(lam));
    f[j] = v;
  }
  const double lo = b.lo - 400, hi = b.hi + 400;
  const double u0 = 2 * bo.x0 / (o.detector_nx - 1) - 1;
  for (int j = 0; j < n; ++j) {
    const double lam = tg.Centre(j);
    if (lam < lo || lam > hi) continue;
    const double tp = b.Throughput(lam);
    double val = f[j];
    if (convolve &&
        tp > 0) {  // Gaussian LSF of constant FWHM in wavelength (varying if r_slope/r_field)
      // The truth is already at R = kTruthResolution: convolve by the difference in quadrature.
      const double s_lsf = inst.LsfFwhm(b, lam, u0) / kFwhm,
                   s_truth = lam / (kTruthResolution * kFwhm);
      const double sigma = std::sqrt(std::max(s_lsf * s_lsf - s_truth * s_truth, 1e-6));
      double ws = 0, s = 0;
      for (int k = std::max(0, j - 60); k < std::min(n, j + 61); ++k) {
        const double d = (tg.Centre(k) - lam) / sigma;
        if (std::abs(d) > 5) continue;
        const double w = std::exp(-0.5 * d * d) * (tg.Edge(k + 1) - tg.Edge(k));
        ws += w;
        s += w * f[k];
      }
      val = s / ws;
    }
    const double x = bo.x0 + (lam - b.centre) / b.dispersion;
    const bool on = x >= -0.5 && x <= o.detector_nx - 0.5;
    const double dl = tg.Edge(j + 1) - tg.Edge(j);
    const double fl = on ? flat.Value(bo.detector, x, bo.y0, lam) : 0.0;
    fp.lam.push_back(lam);
    fp.edge.push_back(tg.Edge(j));
    fp.photons.push_back(inst.area() * inst.total_time() * tp * fl * val * dl * lam * 1e-8 / kHc);
    fp.on.push_back(on ? 1 : 0);
  }
  if (!fp.lam.empty()) {
    const auto& last = fp.lam.size() - 1;
    fp.edge.push_back(tg.Edge(static_cast<int>(tg.PixelFromWavelength(fp.lam[last]) + 0.5) + 1));
  }
  return fp;
}

// Integrates fine-pixel photons onto output pixel [a, b]; returns coverage by on-detector pixels.
// `j0` is a cursor into the fine pixels, advanced monotonically across calls with increasing a.
double IntegrateOutput(const FinePhotons& fp, double a, double b, double& counts, size_t& j0) {
  counts = 0;
  double on = 0, total = 0;
  while (j0 < fp.lam.size() && fp.edge[j0 + 1] <= a) ++j0;
  for (size_t j = j0; j < fp.lam.size() && fp.edge[j] < b; ++j) {
    const double ov = std::min(b, fp.edge[j + 1]) - std::max(a, fp.edge[j]);
    if (ov <= 0) continue;
    const double frac = ov / (fp.edge[j + 1] - fp.edge[j]);
    counts += fp.photons[j] * frac;
    total += ov;
    if (fp.on[j]) on += ov;
  }
  return total > 0 ? on / (b - a) : 0.0;
}

// Sizes and zeroes every per-pixel array of a band observation (n output pixels).
void ResetBand(BandObservation& bo, int n) {
  bo.x.assign(n, 0.0);
  bo.y.assign(n, bo.y0);
  bo.counts.assign(n, 0.0);
  bo.sigma.assign(n, 0.0);
  bo.expected.assign(n, 0.0);
  bo.flag.assign(n, 0);
}

// Expected counts and their sigma (the noiseless part; counts = expected until noise is drawn).
void ObserveSpectral(const Instrument& inst, const TrueFlat& flat, const ObserveOptions& opt,
                     const StarObservation& so, const std::vector<double>& sed_fine,
                     BandObservation& bo) {
  const auto& g = OutputGrid();
  const BandOptics& b = inst.band(bo.band);
  const auto& o = inst.options();
  const auto fp = MakePhotons(inst, flat, bo, LightOf(so, sed_fine, opt), true);
  const int n = g.size();
  ResetBand(bo, n);
  size_t cursor = 0;
  for (int k = 0; k < n; ++k) {
    const double lam = g.Centre(k);
    const double a = g.Edge(k), e = g.Edge(k + 1);
    bo.x[k] = bo.x0 + (lam - b.centre) / b.dispersion;
    if (lam < b.lo || lam > b.hi) bo.flag[k] |= kObsOutsideBand;
    double N = 0;
    const double cover = IntegrateOutput(fp, a, e, N, cursor);
    if (cover < 0.999) bo.flag[k] |= kObsOffDetector;
    const double npix = inst.aperture_pixels() * (e - a) / b.dispersion;
    const double bkg = (b.sky + o.dark) * inst.total_time() * npix;
    const double rn2 = o.n_exposures * npix * o.read_noise * o.read_noise;
    bo.expected[k] = N;
    bo.counts[k] = N;
    bo.sigma[k] = opt.photon_noise ? std::sqrt(std::max(N, 0.0) + bkg + rn2)
                                   : 1e-9 * std::max(std::abs(N), 1.0);
  }
}

// Cosmic rays and 0th orders of neighbours (truth-flagged), drawn after the band's noise.
void AddContaminants(const ObserveOptions& opt, BandObservation& bo, Rng& rng) {
  double median = 0;
  {
    std::vector<double> v;
    for (size_t k = 0; k < bo.expected.size(); ++k)
      if (!(bo.flag[k] & (kObsOutsideBand | kObsOffDetector))) v.push_back(bo.expected[k]);
    if (!v.empty()) {
      std::nth_element(v.begin(), v.begin() + v.size() / 2, v.end());
      median = v[v.size() / 2];
    }
  }
  for (size_t k = 0; k < bo.counts.size(); ++k) {
    const double hits = opt.cosmic_ray_rate > 0 ? rng.Poisson(opt.cosmic_ray_rate) : 0.0;
    if (hits > 0) {
      bo.counts[k] += hits * rng.Uniform(500.0, 5000.0);
      bo.flag[k] |= kObsCosmicRay;
    }
  }
  if (opt.zeroth_order_fraction > 0 && rng.Uniform() < opt.zeroth_order_fraction &&
      !bo.counts.empty()) {
    const size_t at = static_cast<size_t>(rng.Uniform() * bo.counts.size());
    const double extra = median * rng.Uniform(0.3, 3.0);
    for (size_t k = at; k < std::min(bo.counts.size(), at + 3); ++k) {
      bo.counts[k] += extra;
      bo.flag[k] |= kObsZerothOrder;
    }
  }
}

// The band `bo` of star `so` observed in 2-D (the band's stamp, then optimal extraction), its noise
// from `rng`.
struct ImageBand {
  const StarObservation& so;
  const std::vector<double>& sed_fine;
  BandObservation& bo;
};
void ObserveImage(const Instrument& inst, const TrueFlat& flat, const ObserveOptions& opt,
                  const ImageBand& band, Rng& rng) {
  const auto& [so, sed_fine, bo] = band;
  const auto& g = OutputGrid();
  const BandOptics& b = inst.band(bo.band);
  const auto& o = inst.options();
  const auto fp = MakePhotons(inst, flat, bo, LightOf(so, sed_fine, opt), false);
  const double s_px = inst.psf_fwhm_pixels() / kFwhm;
  const int half_rows = static_cast<int>(std::ceil(4 * inst.psf_fwhm_pixels()));
  const int yc = static_cast<int>(std::lround(bo.y0));
  const int rows = 2 * half_rows + 1;
  int c0 = o.detector_nx, c1 = -1;
  for (size_t j = 0; j < fp.lam.size(); ++j) {
    if (!fp.on[j] || fp.photons[j] <= 0) continue;
    const int c = static_cast<int>(std::lround(bo.x0 + (fp.lam[j] - b.centre) / b.dispersion));
    c0 = std::min(c0, c - 8);
    c1 = std::max(c1, c + 8);
  }
  const int n = g.size();
  ResetBand(bo, n);
  c0 = std::max(c0, 0);
  c1 = std::min(c1, o.detector_nx - 1);
  const int cols = c1 - c0 + 1;
  std::vector<double> model(static_cast<size_t>(std::max(cols, 0)) * rows, 0.0);
  std::vector<double> prof(rows);
  for (int r = 0; r < rows; ++r) {
    const double y = yc - half_rows + r;
    prof[r] = GaussFraction(y - 0.5, y + 0.5, bo.y0, s_px);
  }
  // Render: each fine pixel's photons spread by the PSF across columns (dispersion) and rows.
  for (size_t j = 0; j < fp.lam.size() && cols > 0; ++j) {
    if (!fp.on[j] || fp.photons[j] <= 0) continue;
    const double xc = bo.x0 + (fp.lam[j] - b.centre) / b.dispersion;
    const double sx =
        s_px * inst.LsfFwhm(b, fp.lam[j], 2 * bo.x0 / (o.detector_nx - 1) - 1) / b.fwhm;
    const int ca = std::max(c0, static_cast<int>(std::floor(xc - 5 * sx))),
              cb = std::min(c1, static_cast<int>(std::ceil(xc + 5 * sx)));
    for (int c = ca; c <= cb; ++c) {
      const double wx = GaussFraction(c - 0.5, c + 0.5, xc, sx) * fp.photons[j];
      for (int r = 0; r < rows; ++r) model[static_cast<size_t>(c - c0) * rows + r] += wx * prof[r];
    }
  }
  // Detector: background + Poisson + read noise; background-subtracted data.
  const double bkg = (b.sky + o.dark) * inst.total_time();
  const double rn2 = o.n_exposures * o.read_noise * o.read_noise;
  std::vector<double> data(model.size());
  for (size_t p = 0; p < model.size(); ++p) {
    const double total = model[p] + bkg;
    const double counts =
        opt.photon_noise ? rng.Poisson(total) + std::sqrt(rn2) * rng.Normal() : total;
    data[p] = counts - bkg;
  }
  // Optimal extraction (Horne 1986): known spatial profile, variance from the model, 2 passes.
  std::vector<double> fcol(std::max(cols, 0)), vcol(std::max(cols, 0));
  for (int c = 0; c < cols; ++c) {
    double box = 0;
    for (int r = 0; r < rows; ++r) box += data[static_cast<size_t>(c) * rows + r];
    double f = box;
    double var = 0;
    for (int pass = 0; pass < 2; ++pass) {
      double num = 0, den = 0;
      for (int r = 0; r < rows; ++r) {
        const double v = std::max(prof[r] * f, 0.0) + bkg + rn2;
        num += prof[r] * data[static_cast<size_t>(c) * rows + r] / v;
        den += prof[r] * prof[r] / v;
      }
      f = num / den;
      var = 1.0 / den;
    }
    // The profile sums to ~1 over the rows (the 8-FWHM window holds all the light).
    fcol[c] = f;
    vcol[c] = var;
  }
  double stamp_total = 0, stamp_model = 0;
  for (double d : data) stamp_total += d;
  for (double m : model) stamp_model += m;
  bo.counts_stamp_sum = stamp_total;
  bo.stamp_expected = stamp_model;
  bo.stamp_noise_var = stamp_model + static_cast<double>(model.size()) * (bkg + rn2);
  // Columns -> output pixels by wavelength overlap.
  const auto fine_expected = MakePhotons(inst, flat, bo, LightOf(so, sed_fine, opt), true);
  size_t cursor = 0;
  for (int k = 0; k < n; ++k) {
    const double lam = g.Centre(k), a = g.Edge(k), e = g.Edge(k + 1);
    bo.x[k] = bo.x0 + (lam - b.centre) / b.dispersion;
    if (lam < b.lo || lam > b.hi) bo.flag[k] |= kObsOutsideBand;
    double N = 0;
    if (IntegrateOutput(fine_expected, a, e, N, cursor) < 0.999) bo.flag[k] |= kObsOffDetector;
    bo.expected[k] = N;
    const double xa = bo.x0 + (a - b.centre) / b.dispersion,
                 xb = bo.x0 + (e - b.centre) / b.dispersion;
    double s = 0, v = 0;
    bool inside = true;
    for (int c = static_cast<int>(std::floor(xa + 0.5));
         c <= static_cast<int>(std::floor(xb + 0.5)); ++c) {
      const double ov = std::min(xb, c + 0.5) - std::max(xa, c - 0.5);
      if (ov <= 0) continue;
      if (c < c0 || c > c1) {
        inside = false;
        continue;
      }
      s += fcol[c - c0] * ov;
      v += vcol[c - c0] * ov * ov;
    }
    if (!inside) bo.flag[k] |= kObsOffDetector;
    bo.counts[k] = s;
    bo.sigma[k] =
        opt.photon_noise ? std::sqrt(std::max(v, 1e-30)) : 1e-9 * std::max(std::abs(s), 1.0);
  }
}

}  // namespace

std::vector<StarObservation> PlaceSample(const Instrument& inst, const ObserveOptions& opt,
                                         const std::vector<StarRecord>& stars,
                                         const std::vector<double>& window_flux, uint64_t seed) {
  opt.Validate();
  if (window_flux.size() != stars.size())
    throw Error("Observe: stars and window fluxes differ in number");
  std::vector<StarObservation> obs(stars.size());
  PlaceStars(inst, stars, opt.placement, seed, obs);
  for (size_t i = 0; i < stars.size(); ++i) {
    StarObservation& so = obs[i];
    so.obsid = stars[i].obsid;
    so.ra = stars[i].ra;
    so.dec = stars[i].dec;
    for (auto& bo : so.band) bo.exptime = inst.total_time();
    so.window_flux = window_flux[i];
    so.ebv = stars[i].ebv;
    Rng star_rng(seed, "star-properties", i);
    if (star_rng.Uniform() < opt.outlier_fraction)
      so.flux_error = std::max(0.1, 1.0 + opt.outlier_amplitude * star_rng.Normal());
  }
  return obs;
}

void ObserveBlock(const Instrument& inst, const TrueFlat& flat, const ObserveOptions& opt,
                  const ObserveBlockInput& block, Progress* progress) {
  const auto& [placed, sed_fine, count, first, seed, noise_stream] = block;
  tbb::parallel_for(size_t{0}, count, [&](size_t i) {
    StarObservation& so = placed[i];
    for (int b = 0; b < 3; ++b) {
      Rng rng(seed, noise_stream, (first + i) * 3 + static_cast<uint64_t>(b));
      auto& bo = so.band[b];
      if (opt.mode == ObserveMode::kSpectral) {
        ObserveSpectral(inst, flat, opt, so, sed_fine[i], bo);  // expected counts and sigma
        for (size_t k = 0; k < bo.counts.size(); ++k) {
          const double noise = rng.Normal();  // drawn whether used or not: one stream layout
          bo.counts[k] = opt.photon_noise ? bo.expected[k] + bo.sigma[k] * noise : bo.expected[k];
        }
      } else {
        ObserveImage(inst, flat, opt, ImageBand{so, sed_fine[i], bo}, rng);
      }
      AddContaminants(opt, bo, rng);
    }
    if (progress) progress->Tick();
  });
}

namespace {
std::vector<StarObservation> PlaceAndStart(const Instrument& inst, const ObserveOptions& opt,
                                           const std::vector<StarRecord>& stars,
                                           const std::vector<std::vector<double>>& sed_fine,
                                           const std::vector<double>& window_flux, uint64_t seed) {
  if (sed_fine.size() != stars.size())
    throw Error("Observe: stars, SEDs and window fluxes differ in number");
  return PlaceSample(inst, opt, stars, window_flux, seed);
}
}  // namespace

std::vector<StarObservation> ObserveExpected(const Instrument& inst, const TrueFlat& flat,
                                             const ObserveOptions& opt, const ObserveInput& in,
                                             uint64_t seed) {
  const auto& [stars, sed_fine, window_flux] = in;
  if (opt.mode != ObserveMode::kSpectral)
    throw Error("ObserveExpected: only spectral mode separates expectation and noise");
  auto obs = PlaceAndStart(inst, opt, stars, sed_fine, window_flux, seed);
  ObserveExpectedBlock(inst, flat, opt, obs.data(), sed_fine.data(), obs.size());
  return obs;
}

void ObserveExpectedBlock(const Instrument& inst, const TrueFlat& flat, const ObserveOptions& opt,
                          StarObservation* placed, const std::vector<double>* sed_fine,
                          size_t count) {
  if (opt.mode != ObserveMode::kSpectral)
    throw Error("ObserveExpected: only spectral mode separates expectation and noise");
  tbb::parallel_for(size_t{0}, count, [&](size_t i) {
    for (int b = 0; b < 3; ++b)
      ObserveSpectral(inst, flat, opt, placed[i], sed_fine[i], placed[i].band[b]);
  });
}

std::vector<StarObservation> DrawObservationNoise(const std::vector<StarObservation>& expected,
                                                  const ObserveOptions& opt, uint64_t seed,
                                                  const std::string& noise_stream) {
  return DrawObservationNoise(expected.data(), expected.size(), 0, opt, seed, noise_stream);
}

std::vector<StarObservation> DrawObservationNoise(const StarObservation* expected, size_t count,
                                                  size_t first, const ObserveOptions& opt,
                                                  uint64_t seed, const std::string& noise_stream) {
  std::vector<StarObservation> obs(expected, expected + count);
  tbb::parallel_for(size_t{0}, obs.size(), [&](size_t i) {
    for (int b = 0; b < 3; ++b) {
      Rng rng(seed, noise_stream, (first + i) * 3 + static_cast<uint64_t>(b));
      auto& bo = obs[i].band[b];
      for (size_t k = 0; k < bo.counts.size(); ++k) {
        const double noise = rng.Normal();  // drawn whether used or not: one stream layout
        bo.counts[k] = opt.photon_noise ? bo.expected[k] + bo.sigma[k] * noise : bo.expected[k];
      }
      AddContaminants(opt, bo, rng);
    }
  });
  return obs;
}

std::vector<StarObservation> Observe(const Instrument& inst, const TrueFlat& flat,
                                     const ObserveOptions& opt, const ObserveInput& in,
                                     uint64_t seed, const std::string& noise_stream) {
  const auto& [stars, sed_fine, window_flux] = in;
  auto obs = PlaceAndStart(inst, opt, stars, sed_fine, window_flux, seed);
  Progress progress("simulate", static_cast<long>(stars.size()));
  ObserveBlock(inst, flat, opt,
               ObserveBlockInput{obs.data(), sed_fine.data(), obs.size(), 0, seed, noise_stream},
               &progress);
  progress.Finish();
  return obs;
}

}  // namespace csst
