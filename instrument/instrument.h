// CSST slitless-spectroscopy instrument model (GU, GV, GI first order).
//
// Built-in throughputs: a parametric model from the published facts (non-zero ranges GU 2410-4290,
// GV 3710-6790, GI 6010-10980 A; peaks 0.214 at 4000, 0.410 at 5600, 0.399 at 7500 A):
// T(lambda) = peak * [1 - c ((lambda - lambda_peak) / (hi - lo))^2] * L((lambda - on) / w_on) *
// L((off - lambda) / w_off), L the logistic function, with the filter edges (on, off, widths) and
// the curvature c per band chosen to follow the published band shapes (values in instrument.cpp);
// alternatively any FITS table with WAVELENGTH [A] and SENSITIVITY columns (throughput_file),
// e.g. the CESS curves.
// Defaults (configurable): 2 m aperture (collecting area pi * 100^2 cm^2, CESS), 0.074"/px,
// Gaussian PSF FWHM 0.3", resolving power 225 / 250 / 250 at the band centres 3375 / 5250 / 8100 A,
// dispersion D = (lambda_c / R) / (FWHM_psf / pixel) so that the PSF sets the resolution element
// (GU 3.70, GV 5.18, GI 8.14 A/px), sky 0.019 / 0.214 / 0.329 e-/s/px (Zhou et al. 2024), dark
// 0.02 e-/s/px, read noise 5 e- (gain 1 e-/ADU), 4 exposures of 150 s.
#pragma once

#include <array>
#include <string>
#include <vector>

#include "core/bands.h"

namespace csst {

struct InstrumentOptions {
  double aperture_radius_cm = 100.0;
  double pixel_scale = 0.074;    // arcsec / pixel
  double psf_fwhm = 0.3;         // arcsec
  double exposure_time = 150.0;  // s per exposure
  int n_exposures = 4;
  double dark = 0.02;          // e- / s / pixel
  double read_noise = 5.0;     // e- / pixel / exposure
  double gain = 1.0;           // e- / ADU
  double aperture_fwhm = 3.0;  // extraction aperture height in PSF FWHMs (box extraction)
  std::array<double, kNumBands> resolving_power = {225.0, 250.0, 250.0};
  std::array<double, kNumBands> sky = {0.019, 0.214, 0.329};          // e- / s / pixel
  std::array<std::string, kNumBands> throughput_file = {"", "", ""};  // "" = built-in model
  // Resolution varying across the band and the field (realistic case): FWHM multiplied by
  // 1 + r_slope (w - 0.5) + r_field u, w in [0,1] across the band, u in [-1,1] across the detector.
  double r_slope = 0.0, r_field = 0.0;
  // true: LSF FWHM = lambda / R(band) at every wavelength (constant resolving power, as the R=200
  // SEDs of the method); false: FWHM constant in wavelength, set by the PSF (physical slitless
  // case).
  bool constant_r = false;
  int detector_nx = 9216, detector_ny = 9232;
  int detectors_per_band = 4;
  void Validate() const;
};

// A band as the instrument sees it: the band table's limits (core/bands.h) with its optics.
struct BandOptics {
  std::string name;                        // kBands[index].name
  int index = 0;                           // 0, 1, 2
  double lo = 0, hi = 0;                   // the method's band limits (kBands) [A]
  double centre = 0;                       // A, where the trace reference x0 lies (kBands)
  double resolving_power = 0;              // at the centre
  double fwhm = 0;                         // A, LSF FWHM (constant in wavelength)
  double dispersion = 0;                   // A / pixel
  double sky = 0;                          // e- / s / pixel
  std::vector<double> tp_wave, tp_value;   // throughput curve
  double Throughput(double lambda) const;  // linear interpolation, 0 outside
  // [A] the first and last wavelengths where the throughput exceeds `fraction` of its peak.
  std::array<double, 2> TransmittingRange(double fraction = 1e-3) const;
};

class Instrument {
 public:
  explicit Instrument(InstrumentOptions options);  // validates, loads throughput files
  const InstrumentOptions& options() const { return options_; }
  const BandOptics& band(int i) const { return bands_[i]; }
  const std::array<BandOptics, kNumBands>& bands() const { return bands_; }
  double area() const;             // cm^2
  double total_time() const;       // s
  double psf_fwhm_pixels() const;  // pixels
  double aperture_pixels() const;  // extraction aperture height [pixels]
  // LSF FWHM [A] at wavelength lambda and detector coordinate u in [-1, 1].
  double LsfFwhm(const BandOptics& b, double lambda, double u) const;
  static std::string DetectorName(int band, int k);  // "GU1".."GI4"

 private:
  InstrumentOptions options_;
  std::array<BandOptics, kNumBands> bands_;
};

// The built-in parametric throughput of band i (0 GU, 1 GV, 2 GI) at lambda [A].
double BuiltinThroughput(int band, double lambda);

}  // namespace csst
