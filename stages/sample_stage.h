// Stage `sample`: the simulated LAMOST DR7-like sample (simulation/dr7_sample.h).
// Products: catalogue.fits, lamost/ (one DR7-layout file per star), truth.fits,
// lamost_truth.fits.
#pragma once

#include <cstddef>

#include "simulation/dr7_sample.h"
#include "stages/stage_run.h"

namespace csst {

struct SampleStageOptions {
  Dr7SampleOptions sample;
  Dr7SamplePaths out;
};

struct SampleStageResult {
  size_t stars = 0;
  double wall_seconds = 0;
  std::string BriefReport() const;  // one line: what it did (manifest.json "report")
};

SampleStageResult RunSampleStage(const SampleStageOptions& options, const StageRun& run);

}  // namespace csst
