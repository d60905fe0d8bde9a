#include "instrument/instrument.h"

#include <algorithm>
#include <cmath>

#include "core/errors.h"
#include "io/fits.h"
#include "io/observations.h"

namespace csst {
namespace {
struct BuiltinShape {
  double peak, lambda_peak, lo, hi;        // published facts
  double curvature, on, w_on, off, w_off;  // chosen shape (README "Instrument")
};
// lo/hi: published non-zero range; on/off: half-transmission edges placed inside that range.
constexpr BuiltinShape kShapes[3] = {
    {0.214, 4000.0, 2410.0, 4290.0, 0.69, 2500.0, 20.0, 4110.0, 25.0},
    {0.410, 5600.0, 3710.0, 6790.0, 1.55, 3930.0, 30.0, 6390.0, 45.0},
    {0.399, 7500.0, 6010.0, 10980.0, 3.0, 6160.0, 25.0, 10700.0, 150.0},
};

double Logistic(double x) { return 1.0 / (1.0 + std::exp(-x)); }
}  // namespace

double BuiltinThroughput(int band, double lambda) {
  const auto& s = kShapes[band];
  if (lambda < s.lo || lambda > s.hi) return 0.0;
  const double x = (lambda - s.lambda_peak) / (s.hi - s.lo);
  const double plateau = std::max(0.0, 1.0 - s.curvature * x * x);
  // Normalise so that the curve peaks at `peak` near lambda_peak.
  const double norm =
      Logistic((s.lambda_peak - s.on) / s.w_on) * Logistic((s.off - s.lambda_peak) / s.w_off);
  return s.peak * plateau * Logistic((lambda - s.on) / s.w_on) *
         Logistic((s.off - lambda) / s.w_off) / norm;
}

void InstrumentOptions::Validate() const {
  auto fail = [](const std::string& m) { throw ConfigError("config error: " + m); };
  if (!(aperture_radius_cm > 0)) fail("instrument.aperture_radius_cm must be > 0");
  if (!(pixel_scale > 0) || !(psf_fwhm > 0))
    fail("instrument.pixel_scale and psf_fwhm must be > 0");
  if (!(exposure_time > 0) || n_exposures < 1)
    fail("instrument.exposure_time must be > 0 and n_exposures >= 1");
  if (dark < 0 || read_noise < 0 || !(gain > 0))
    fail("instrument.dark, read_noise >= 0 and gain > 0 required");
  for (double r : resolving_power)
    if (!(r >= 50)) fail("instrument.resolving_power values must be >= 50");
  if (detector_nx < 100 || detector_ny < 100) fail("instrument.detector_nx/ny must be >= 100");
  if (detectors_per_band < 1) fail("instrument.detectors_per_band must be >= 1");
}

double BandOptics::Throughput(double lambda) const {
  if (tp_wave.empty() || lambda <= tp_wave.front() || lambda >= tp_wave.back()) return 0.0;
  const auto it = std::upper_bound(tp_wave.begin(), tp_wave.end(), lambda);
  const size_t i = static_cast<size_t>(it - tp_wave.begin());
  const double f = (lambda - tp_wave[i - 1]) / (tp_wave[i] - tp_wave[i - 1]);
  return std::max(0.0, tp_value[i - 1] + f * (tp_value[i] - tp_value[i - 1]));
}

std::array<double, 2> BandOptics::TransmittingRange(double fraction) const {
  double peak = 0;
  for (double v : tp_value) peak = std::max(peak, v);
  std::array<double, 2> r = {0, 0};
  bool any = false;
  for (size_t k = 0; k < tp_wave.size(); ++k) {
    if (!(tp_value[k] > fraction * peak)) continue;
    if (!any) r[0] = k > 0 ? tp_wave[k - 1] : tp_wave[k];
    r[1] = k + 1 < tp_wave.size() ? tp_wave[k + 1] : tp_wave[k];
    any = true;
  }
  return r;
}

Instrument::Instrument(InstrumentOptions o) : options_(std::move(o)) {
  options_.Validate();
  for (int i = 0; i < kNumBands; ++i) {
    BandOptics& b = bands_[i];
    const BandSpec& spec = kBands[static_cast<size_t>(i)];
    b.name = spec.name;
    b.index = i;
    b.lo = spec.lo;
    b.hi = spec.hi;
    b.centre = spec.centre;
    b.resolving_power = options_.resolving_power[i];
    b.fwhm = b.centre / b.resolving_power;
    b.dispersion = b.fwhm / psf_fwhm_pixels();
    b.sky = options_.sky[i];
    if (options_.throughput_file[i].empty()) {
      for (double l = 2000.0; l <= 11500.0; l += 5.0) {
        b.tp_wave.push_back(l);
        b.tp_value.push_back(BuiltinThroughput(i, l));
      }
    } else {
      const auto& path = options_.throughput_file[i];
      FitsReader r(path);
      if (r.NumHdus() < 2)
        throw IoError(path + ": missing table HDU with WAVELENGTH and SENSITIVITY");
      r.MoveTo(2);
      b.tp_wave = r.ReadColumn("WAVELENGTH");
      b.tp_value = r.ReadColumn("SENSITIVITY");
      for (size_t k = 1; k < b.tp_wave.size(); ++k) {
        if (!(b.tp_wave[k] > b.tp_wave[k - 1]))
          throw IoError(path + ": WAVELENGTH not increasing at row " + std::to_string(k + 1));
      }
      for (size_t k = 0; k < b.tp_value.size(); ++k) {
        if (!std::isfinite(b.tp_value[k]) || b.tp_value[k] < 0 || b.tp_value[k] > 1) {
          throw IoError(path + ": SENSITIVITY at row " + std::to_string(k + 1) +
                        " is not in [0, 1]");
        }
      }
    }
  }
}

double Instrument::area() const {
  return M_PI * options_.aperture_radius_cm * options_.aperture_radius_cm;
}
double Instrument::total_time() const { return options_.exposure_time * options_.n_exposures; }
double Instrument::psf_fwhm_pixels() const { return options_.psf_fwhm / options_.pixel_scale; }
double Instrument::aperture_pixels() const { return options_.aperture_fwhm * psf_fwhm_pixels(); }

double Instrument::LsfFwhm(const BandOptics& b, double lambda, double u) const {
  const double w = (lambda - b.lo) / (b.hi - b.lo);
  const double base = options_.constant_r ? lambda / b.resolving_power : b.fwhm;
  return base * std::max(0.2, 1.0 + options_.r_slope * (w - 0.5) + options_.r_field * u);
}

std::string Instrument::DetectorName(int band, int k) { return csst::DetectorName(band, k); }

}  // namespace csst
