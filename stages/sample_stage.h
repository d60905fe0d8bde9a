// Stage `sample`: the simulated LAMOST DR7-like sample (simulation/dr7_sample.h).
// Products: catalogue.fits, lamost/ (one DR7-layout file per star), truth.fits,
// lamost_truth.fits.
#pragma once

#include <cstdint>
#include <string>

#include "simulation/dr7_sample.h"

namespace csst {

void RunSampleStage(const Dr7SampleOptions& options, uint64_t seed, const std::string& config_hash,
                    const Dr7SamplePaths& paths);

}  // namespace csst
