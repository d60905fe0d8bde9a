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
#include "stages/stage_run.h"

namespace csst {

struct SimulateStageOptions {
  InstrumentOptions instrument;
  TrueFlatOptions flat;
  ObserveOptions observe;
  uint64_t flat_seed = 0;
  int star_block =
      2048;  // stars observed and written at a time (and the unit spread over MPI ranks)  // the
             // true flat is drawn from it; star placement and noise from StageRun::seed
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
// both files. The fine true SEDs (24 kB a star) are not held: SedFine reads a block of stars' rows.
struct StarTruth {
  std::vector<StarRecord> stars;
  std::vector<double> z;
  std::vector<std::vector<double>> sed;  // R = 200 on OutputGrid() (empty unless loaded with_sed)
  std::vector<double> window_flux;
  std::string star_set;                      // StarSetId of stars.fits
  std::vector<long> truth_row;               // each star's row in the truth file
  std::shared_ptr<SampleTruthReader> truth;  // that file, for the rows read on demand
  // The true SEDs on TruthGrid() (R = 1000), or on OutputGrid() (R = 200), of stars first .. first
  // + count - 1.
  std::vector<std::vector<double>> SedFine(size_t first, size_t count) const;
  std::vector<std::vector<double>> ReadSed(size_t first, size_t count) const;
};
StarTruth LoadStarTruth(const std::string& stars, const std::string& truth, bool with_sed = true);

}  // namespace csst
