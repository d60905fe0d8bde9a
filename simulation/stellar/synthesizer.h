// Built-in stellar spectrum synthesizer: LTE plane-parallel model atmosphere (atmosphere.h),
// continuum + line opacities, and the formal solution for the emergent flux.
//
// Lines: the metal line list of linelist.cpp with Voigt profiles (Doppler: thermal + micro-
// turbulence; damping: radiative (classical), quadratic Stark neglected, van der Waals after
// Unsold with the usual enhancement factor 2); hydrogen Balmer (n_lower = 2, n_upper 3..30) and
// Paschen (3, 7..30) lines with linear-Stark (Holtsmark-type) profiles,
// phi_S = w^1.5 / (2.3963 (dl^2 + w^2)^1.25), w = 1.478 K F0, F0 = 1.25e-9 ne^(2/3) esu,
// K = 5.5e-5 n^4 m^4 / (m^2 - n^2) A/esu (Underhill & Waddell 1959 via Gray 2005 eq. 11.53),
// whose far wings match the Holtsmark asymptote 0.75 (K F0)^1.5 dl^-2.5, convolved with the
// Doppler profile near the core by 10-point Gauss-Hermite quadrature.
// Emergent flux: F_lambda = 2 pi int S E2(tau) dtau with S = B_lambda(T) piecewise linear in tau.
//
// Sampling: pixels of constant resolving power `resolving_power` (default 20 000) between
// lambda_min and lambda_max; where a line core is narrower than a pixel, extra samples resolve it
// and the pixel value is the average of the flux over the pixel, so the output can be degraded to
// any R <= resolving_power / 2 and resampled flux-conservingly.
#pragma once

#include "core/spectrum.h"
#include "simulation/stellar/atmosphere.h"

namespace csst::stellar {

struct SynthOptions {
  double lambda_min = 2400.0;        // A (vacuum)
  double lambda_max = 10600.0;       // A
  double resolving_power = 20000.0;  // pixel lambda / d(lambda)
  bool lines = true;                 // false: continuum (with haze) only
};

class Synthesizer {
 public:
  explicit Synthesizer(SynthOptions options = {});
  // Surface flux F_lambda [erg s^-1 cm^-2 A^-1] on vacuum wavelengths; Spectrum::meta holds the
  // parameters. Re-entrant (const); throws Error for parameters outside the valid ranges.
  Spectrum Synthesize(const StellarParams& params) const;
  Spectrum Synthesize(const Atmosphere& atmosphere) const;
  const WavelengthGrid& grid() const { return grid_; }

 private:
  struct PreparedLine {
    double lambda;  // vacuum [A]
    int element;    // index into Elements()
    int stage;      // 0 neutral, 1 singly ionised
    double chi;     // eV
    double gf;
    double c6;     // van der Waals C6 (Unsold) [cgs]
    double c6_04;  // c6^0.4, the factor of the van der Waals width
  };
  SynthOptions options_;
  WavelengthGrid grid_;
  std::vector<PreparedLine> lines_;
};

// The two products of the method from a native synthetic spectrum:
// input: degraded to R = 2000, resampled onto InputGrid(), continuum-normalised (51 px);
// target: degraded to R = 200, resampled onto OutputGrid(), scaled at 5526-5586 A.
Spectrum MakeNetworkInput(const Spectrum& native, double r_native = 20000.0);
Spectrum MakeTargetSed(const Spectrum& native, double r_native = 20000.0);

}  // namespace csst::stellar
