// Spectrum value type and the operations of the method (../shared/method.md, "Spectra and grids").
// Conventions: wavelengths in Angstrom (vacuum unless a function says otherwise); flux is a per-A
// density in arbitrary or stated units; `err` is the 1-sigma error of flux (0 or +inf = unknown /
// unusable); `mask` holds bit flags, 0 = good.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "core/grid.h"

namespace csst {

class Rng;

enum MaskBit : uint32_t {
  kMaskBad = 1u << 0,         // flagged by the data source (andmask/ormask, ivar = 0)
  kMaskNoCoverage = 1u << 1,  // outside the source's wavelength coverage
  kMaskNonFinite = 1u << 2,   // NaN/Inf in flux or error
};

struct Spectrum {
  std::vector<double> wave;    // pixel centres [A], strictly increasing
  std::vector<double> flux;    // per-A flux density
  std::vector<double> err;     // 1-sigma error of flux (same units)
  std::vector<uint32_t> mask;  // MaskBit flags
  std::map<std::string, std::string> meta;

  size_t size() const { return wave.size(); }
  // Throws Error naming `what` if sizes differ, wavelengths are not strictly increasing or
  // positive.
  void Validate(const std::string& what) const;
};

// Pixel edges from centres: midpoints inside, mirrored half-steps at the ends.
std::vector<double> EdgesFromCentres(const std::vector<double>& centres);

// Degrades to constant resolving power: convolves in ln(lambda) with a Gaussian of
// FWHM = lambda / r_out (sigma_ln = 1 / (2.3548 r_out)); if the input already has resolution
// r_in > r_out, the kernel is sigma = sqrt(sigma_out^2 - sigma_in^2). Masked pixels carry no
// weight. Returns values on the input wavelengths. Errors are propagated as independent
// (the result's errors are correlated over the kernel width).
// Spectra on a uniform ln(lambda) grid take a fast path (fixed kernel weights).
Spectrum DegradeToResolution(const Spectrum& s, double r_out, double r_in = 0.0);

// Degrades to resolving power r_out and resamples flux-conservingly onto `grid`. When the input is
// sampled much more finely than the kernel, it is first rebinned (flux-conserving) onto an
// intermediate log grid of step sigma/4, which adds a boxcar of 1/16 of the kernel's variance
// (0.5 % in width, neglected); the result equals ResampleFluxConserving(DegradeToResolution(s))
// to that accuracy at a fraction of the cost.
Spectrum DegradeToGrid(const Spectrum& s, double r_out, const WavelengthGrid& grid,
                       double min_coverage = 0.999);

// Flux-conserving rebinning onto `grid`: each input pixel is a constant density over its edges;
// the output density is the overlap-weighted mean, so the integral over any span of whole output
// pixels is conserved. Errors propagated as independent (approximate: ignores the covariance the
// rebinning creates). Output pixels with less than `min_coverage` of their width covered by good
// input pixels get kMaskNoCoverage and flux 0.
Spectrum ResampleFluxConserving(const Spectrum& s, const WavelengthGrid& grid,
                                double min_coverage = 0.999);

// Vacuum -> air (Morton 2000, ApJS 130, 403, eq. 3; the IAU standard used by SDSS/VALD).
double AirFromVacuum(double lambda_vac);
// Air -> vacuum: exact inverse of AirFromVacuum by Newton iteration (round trip < 1e-9 A).
double VacuumFromAir(double lambda_air);

// Rest-frame wavelengths: lambda_rest = lambda_obs / (1 + z). Flux densities are left as they are
// (normalised spectra are insensitive to the (1+z) factor).
void ShiftToRestFrame(Spectrum& s, double z);
// Redshift from radial velocity [km/s] (relativistic Doppler).
double RedshiftFromVelocity(double v_kms);

// Continuum = moving average of `window` pixels (odd; paper: 51) over good pixels; where fewer
// than window/2 pixels exist on one side, all pixels on that side are used. Returns
// flux / continuum and err / continuum; pixels whose window holds no good pixel get kMaskBad.
Spectrum NormaliseContinuum(const Spectrum& s, int window = 51);
std::vector<double> MovingAverageContinuum(const std::vector<double>& flux,
                                           const std::vector<uint32_t>& mask, int window);

// Mean flux density over [lo, hi] A (overlap-weighted over pixel edges, good pixels only).
// Throws Error if the window is not covered.
double MeanFluxInWindow(const Spectrum& s, double lo = kScaleWindowMin,
                        double hi = kScaleWindowMax);
// Divides flux and err by MeanFluxInWindow (the paper's SED scaling).
Spectrum ScaleSed(const Spectrum& s);

// Noise model of the paper: F' = F + r F, r ~ N(0, (1/snr)^2) per pixel; err = F / snr.
void AddRelativeNoise(Spectrum& s, double snr, Rng& rng);

// r_i = (pred_i - truth_i) / truth_i and RMSAE = sqrt(mean r^2) over pixels with truth != 0.
std::vector<double> RelativeResidual(const std::vector<double>& pred,
                                     const std::vector<double>& truth);
double Rmsae(const std::vector<double>& pred, const std::vector<double>& truth);
// Median (mean of the two middle values for an even count); NaN when empty.
double Median(std::vector<double> v);
// The q-quantile (0 <= q <= 1), linear between order statistics (numpy's default); NaN when empty.
double Quantile(std::vector<double> v, double q);

// A spectrum on a grid with zero errors and no mask.
Spectrum MakeSpectrum(const std::vector<double>& wave, const std::vector<double>& flux);

}  // namespace csst
