// What the instrument makes of an SED: expected counts per output pixel, and the interstellar
// extinction curve applied to (simulation) or corrected from (compare) a star's SED.
#pragma once

#include <vector>

#include "instrument/instrument.h"

namespace csst {

constexpr double kHc = 1.98644586e-16;  // h c [erg cm]

// CCM89 extinction A(lambda) / A(V) for R_V = 3.1; lambda in A (valid 1250-33000 A).
double ExtinctionCcm89(double lambda, double rv = 3.1);

// Expected counts per output pixel for a given SED at Earth on the output grid (erg/s/cm2/A),
// with the flat set to 1: A t (lambda/hc) T(lambda) F(lambda) d(lambda) at pixel centres. Linear in
// the SED. Used by `compare` to turn a predicted SED into expected counts.
std::vector<double> ExpectedCounts(const Instrument& inst, int band,
                                   const std::vector<double>& sed_out);

}  // namespace csst
