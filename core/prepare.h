// Preparation of a network input from an observed spectrum, exactly as the paper prescribes:
// mask bad pixels, shift to the rest frame, flux-conservingly resample onto the 2238-pixel input
// grid (4000-7000 A, log), and divide by the 51-pixel moving-average continuum. Errors are carried
// through every step (resampling: independent-error propagation; normalisation: divided by the
// continuum, whose own error is neglected).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/spectrum.h"

namespace csst {

struct PrepareOptions {
  int window = 51;            // moving-average continuum window [pixels] (paper: 51)
  double min_coverage = 0.9;  // minimum fraction of the input grid with good data
  void Validate() const;      // throws ConfigError naming the field
};

// Masked input pixels carry flux 1 and error kMaskedError so that the network sees "no
// information" there; `mask` marks them.
constexpr float kMaskedError = 1.0f;

struct PreparedInput {
  std::vector<float> flux;    // 2238 normalised flux values
  std::vector<float> err;     // 1-sigma of flux
  std::vector<uint8_t> mask;  // 1 = no usable data
  double coverage = 0;        // fraction of pixels with data
};

// Throws Error (with `what` in the message) when coverage < min_coverage.
PreparedInput PrepareNetworkInput(const Spectrum& observed, double z, const PrepareOptions& options,
                                  const std::string& what);

}  // namespace csst
