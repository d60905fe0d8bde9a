// Stellar population of the simulated LAMOST DR7-like sample (the embedded default input).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "io/catalogue.h"

namespace csst {

// Shape chosen to resemble the LAMOST DR7 LRS stellar-parameter catalogue inside the paper's cuts
// (SNR > 20, G > 14, 5000 <= Teff <= 9750 K): the DR7 Teff histogram of FGK/A stars falls roughly
// exponentially above ~5500 K, so Teff is drawn from a truncated exponential in Teff with scale
// `teff_scale`; dwarfs dominate (log g ~ N(4.2, 0.3), with a giant branch fraction for Teff < 5600
// K at log g ~ N(2.6, 0.4)); [M/H] ~ N(-0.2, 0.3) (thin-disc dominated); G uniform in magnitude
// between g_min and g_max weighted towards faint stars as counts rise (dN/dG ~ 10^(0.3 G)); SNR in
// g follows from G with a per-star scatter, floored at snr_min; radial velocity ~ N(0, 40) km/s.
struct PopulationOptions {
  int n_stars = 400;             // number of stars drawn
  double teff_min = 5000.0;      // K
  double teff_max = 9750.0;      // K
  double teff_scale = 1200.0;    // K, e-folding of the Teff distribution above teff_min
  double giant_fraction = 0.25;  // fraction of stars cooler than 5600 K that are giants
  double feh_mean = -0.2;        // dex
  double feh_sigma = 0.3;        // dex
  double g_min = 14.0;           // Gaia G [mag], brightest
  double g_max = 17.0;           // Gaia G [mag], faintest
  double snr_min = 20.0;         // minimum SNR in g (paper: SNR > 20)
  double snr_at_g_min = 150.0;   // median SNR of a G = g_min star
  double rv_sigma = 40.0;        // km/s
  double ebv_max = 0.0;          // E(B-V) drawn uniform in [0, ebv_max] (0 = no reddening)
  void Validate() const;         // throws ConfigError naming the field
};

// The population's [alpha/M] for a star of metallicity [M/H]: the thin/thick-disc trend, clamped to
// 0..0.4.
double AlphaForFeh(double feh);

// Draws the population; star i depends only on (seed, i).
std::vector<StarRecord> DrawPopulation(const PopulationOptions& options, uint64_t seed);

}  // namespace csst
