// Stage `simulate`: CSST slitless observations of the ingested stars through the injected true
// flat -> observations.fits and true_flat.fits.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "instrument/instrument.h"
#include "simulation/csst/observe.h"
#include "simulation/csst/true_flat.h"
#include "simulation/dr7_sample.h"
#include "simulation/star_truth.h"
#include "stages/stage_run.h"

namespace csst {

struct SimulateStageOptions {
  InstrumentOptions instrument;
  TrueFlatOptions flat;
  ObserveOptions observe;
  uint64_t flat_seed =
      0;  // the true flat is drawn from it; star placement and noise from StageRun::seed
  int star_block =
      2048;  // stars observed and written at a time (and the unit spread over MPI ranks)
  std::string stars, truth;
  std::string observations_out, true_flat_out;
};

struct SimulateStageResult {
  size_t stars = 0;
  double wall_seconds = 0;
  std::string BriefReport() const;  // one line: what it did (manifest.json "report")
};

SimulateStageResult RunSimulateStage(const SimulateStageOptions& options, const StageRun& run);

}  // namespace csst
