#include "simulation/lamost_sim.h"

#include <cmath>

#include "core/errors.h"
#include "core/rng.h"

namespace csst {

void LamostSimOptions::Validate() const {
  if (!(resolving_power > 0))
    throw ConfigError("config error: sample.lamost_resolution must be > 0");
  if (n_pixels < 100) throw ConfigError("config error: LAMOST grid needs >= 100 pixels");
}

std::array<double, 5> LamostBandSnr(const StarRecord& s) {
  return {0.15 * s.snr_g, s.snr_g, s.snr_r, 1.3 * s.snr_r, 1.07 * s.snr_r};
}

namespace {
// The body of NoiselessLamost; `kernel_r_in` is the input resolution DegradeToResolution subtracts
// (0: none).
Spectrum NoiselessLamostWith(const Spectrum& native, double kernel_r_in, const StarRecord& star,
                             const LamostSimOptions& o) {
  Spectrum shifted = native;
  const double z = RedshiftFromVelocity(star.rv);
  for (double& w : shifted.wave) w *= (1.0 + z);
  const double scale = WindowFluxFromG(star.gmag) / MeanFluxInWindow(native) / 1e-17;
  for (double& f : shifted.flux) f *= scale;
  const auto degraded = DegradeToResolution(shifted, o.resolving_power, kernel_r_in);
  // LAMOST pixels: centres 10^(coeff0 + coeff1 i); edges half a step either side.
  const double c_first = std::pow(10.0, o.coeff0 - 0.5 * o.coeff1);
  const double c_last = std::pow(10.0, o.coeff0 + (o.n_pixels - 0.5) * o.coeff1);
  const WavelengthGrid grid(GridKind::kLog, c_first, c_last, o.n_pixels);
  Spectrum out = ResampleFluxConserving(degraded, grid, 0.5);
  // SNR per pixel interpolated in log wavelength between the LAMOST band centres.
  const auto snr = LamostBandSnr(star);
  const double centres[5] = {3560, 4680, 6180, 7500, 8900};
  for (size_t i = 0; i < out.size(); ++i) {
    const double l = out.wave[i];
    double s;
    if (l <= centres[0])
      s = snr[0];
    else if (l >= centres[4])
      s = snr[4];
    else {
      int k = 0;
      while (l > centres[k + 1]) ++k;
      const double t = std::log(l / centres[k]) / std::log(centres[k + 1] / centres[k]);
      s = snr[k] * std::pow(snr[k + 1] / snr[k], t);
    }
    // SNR is quoted for the band's median flux; photon-noise-like scaling with sqrt(flux) is
    // neglected, so sigma = F / SNR per pixel.
    out.err[i] = out.mask[i] ? 0.0 : std::abs(out.flux[i]) / std::max(s, 1e-3);
  }
  return out;
}
}  // namespace

Spectrum NoiselessLamost(const Spectrum& native, double native_r, const StarRecord& star,
                         const LamostSimOptions& o) {
  return NoiselessLamostWith(native, native_r > 2 * o.resolving_power ? 0.0 : native_r, star, o);
}

Spectrum NoiselessLamostFromResolved(const Spectrum& spectrum, double r_in, const StarRecord& star,
                                     const LamostSimOptions& o) {
  if (!(r_in > o.resolving_power)) {
    throw Error("NoiselessLamostFromResolved: the input's resolving power " + std::to_string(r_in) +
                " is not above the LAMOST resolution " + std::to_string(o.resolving_power));
  }
  return NoiselessLamostWith(spectrum, r_in, star, o);
}

PreparedInput NoiselessNetworkInput(const Spectrum& native, double native_r, const StarRecord& star,
                                    const LamostSimOptions& options, const std::string& what) {
  return PrepareNetworkInput(NoiselessLamost(native, native_r, star, options),
                             RedshiftFromVelocity(star.rv), PrepareOptions{}, what);
}

LamostSpectrum ObserveLamost(const Spectrum& noiseless, const StarRecord& star,
                             const LamostSimOptions& o, Rng& rng) {
  LamostSpectrum out;
  out.spectrum = noiseless;
  auto& s = out.spectrum;
  out.andmask.assign(s.size(), 0);
  out.ormask.assign(s.size(), 0);
  for (size_t i = 0; i < s.size(); ++i) {
    const double noise = rng.Normal();
    const bool bad = rng.Uniform() < o.bad_pixel_fraction;
    if (s.mask[i] || bad) {
      s.mask[i] |= kMaskBad;
      out.andmask[i] = 1;
      out.ormask[i] = 1;
      s.err[i] = 0.0;
      continue;
    }
    s.flux[i] += s.err[i] * noise;
  }
  auto& h = out.header;
  h.obsid = star.obsid;
  h.designation = "LAMOST " + star.designation;
  h.object_class = "STAR";
  h.subclass = SubclassFromTeff(star.teff);
  h.ra = star.ra;
  h.dec = star.dec;
  h.z = RedshiftFromVelocity(star.rv);
  h.z_err = 1e-5;
  const auto snr = LamostBandSnr(star);
  for (int i = 0; i < 5; ++i) h.snr[i] = snr[i];
  h.mag.fill(99.0);
  h.mag[1] = star.gmag;  // stored as MAG2 (g-like); catalogue holds Gaia G
  h.vacuum = true;
  return out;
}

std::string SubclassFromTeff(double teff) {
  struct Row {
    double t;
    const char* sub;
  };
  static const Row rows[] = {{9800, "A0"}, {9000, "A2"}, {8500, "A5"}, {8000, "A7"}, {7400, "F0"},
                             {6900, "F2"}, {6550, "F5"}, {6250, "F8"}, {6000, "G0"}, {5800, "G2"},
                             {5650, "G5"}, {5450, "G8"}, {5250, "K0"}, {4950, "K2"}, {4600, "K4"}};
  for (const auto& r : rows)
    if (teff >= r.t - 150) return r.sub;
  return "K5";
}

}  // namespace csst
