// The predicted SEDs of a sample against its true SEDs, by star class: the mean SED error that a
// flat fitted from these stars inherits (issue #32's table). Per star and band the median over the
// band's output pixels of mu / sed - 1; per row the mean of that over the row's stars.
#pragma once

#include <array>
#include <string>
#include <vector>

#include "instrument/instrument.h"

namespace csst {

struct SedBiasRow {
  std::string label;                       // "all", "Teff 5000-5750 K", ..., "SNR >= 80"
  double teff_lo = 0, teff_hi = 0;         // [K), the last range closed
  double snr_min = 0;                      // stars with snr_g >= snr_min
  long n = 0;                              // stars in the row
  std::array<double, 3> bias = {0, 0, 0};  // GU, GV, GI; NaN when the row is empty
};

struct SedBiasInput {
  const std::vector<float>* mu = nullptr;                 // n x 574 predicted SEDs (OutputGrid)
  const std::vector<std::vector<double>>* sed = nullptr;  // n true SEDs on OutputGrid, same scaling
  std::vector<double> teff, snr;  // per star (the catalogue's Teff and snr_g)
};

// Rows: all stars; Teff 5000-5750, 5750-6500, 6500-7500, 7500-10000 K; SNR >= 80 (any Teff).
// Throws Error when the sizes disagree.
std::vector<SedBiasRow> SedBiasTable(const SedBiasInput& in,
                                     const std::array<BandOptics, kNumBands>& bands);
std::string SedBiasText(const std::vector<SedBiasRow>& rows);
// JSON array of {label, teff_lo, teff_hi, snr_min, n, GU, GV, GI} (nlohmann-compatible text).
std::string SedBiasJson(const std::vector<SedBiasRow>& rows);

}  // namespace csst
