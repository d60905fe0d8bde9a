// Stage `simulate`: CSST slitless observations of the ingested stars through the injected true
// flat -> observations.fits and true_flat.fits.
#pragma once

#include <cstdint>
#include <string>

#include "instrument/instrument.h"
#include "simulation/csst/observe.h"
#include "simulation/csst/true_flat.h"
#include "stages/stage_run.h"

namespace csst {

struct SimulateStageOptions {
  InstrumentOptions instrument;
  TrueFlatOptions flat;
  ObserveOptions observe;
  uint64_t flat_seed = 0;  // the true flat is drawn from it; star placement and noise from StageRun::seed
  std::string stars, truth;
  std::string observations_out, true_flat_out;
};

struct SimulateStageResult {
  size_t stars = 0;
  double wall_seconds = 0;
};

SimulateStageResult RunSimulateStage(const SimulateStageOptions& options, const StageRun& run);

// Loads what simulate/validate need about the ingested stars: records (with the catalogue's E(B-V)
// as ingest kept it), true SEDs and window fluxes, in the ingest order. Each star is joined to its
// truth by identity (obsid and SpectrumDataHash); a star the truth did not make is an error naming
// both files.
struct StarTruth {
  std::vector<StarRecord> stars;
  std::vector<double> z;
  std::vector<std::vector<double>> sed, sed_fine;
  std::vector<double> window_flux;
  std::string star_set;  // StarSetId of stars.fits
};
StarTruth LoadStarTruth(const std::string& stars, const std::string& truth);

}  // namespace csst
