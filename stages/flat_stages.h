// Stages `compare`, `fit`, `assemble` and `validate` (thin: they read products, call the
// flatfield library and write products).
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>

#include "flatfield/compare.h"
#include "flatfield/flat_fitter.h"
#include "flatfield/products.h"
#include "instrument/instrument.h"
#include "io/seds.h"
#include "network/sed_network.h"
#include "simulation/csst/observe.h"
#include "simulation/csst/true_flat.h"
#include "simulation/star_truth.h"
#include "stages/sed_source.h"
#include "stages/stage_run.h"
#include "validation/monte_carlo.h"
#include "validation/sed_bias.h"

namespace csst {

struct CompareStageOptions {
  InstrumentOptions instrument;
  CompareOptions compare;
  int star_block =
      2048;  // stars compared and written at a time (and the unit spread over MPI ranks)
  std::string observations, seds, stars;
  std::string ratios_out;
};
struct CompareStageResult {
  size_t stars = 0, stars_observed = 0, spectra = 0;  // spectra: star x band rows of ratios
  double wall_seconds = 0;
  std::string BriefReport() const;  // one line: what it did (manifest.json "report")
};
CompareStageResult RunCompareStage(const CompareStageOptions& options, const StageRun& run);

struct FitStageOptions {
  InstrumentOptions instrument;
  FlatFitOptions fit;
  // Under MPI every rank runs the stage and fits its detectors (FitShare); false: one process
  // fits every detector (the Ceres joint solver, which is not shared).
  bool spread = true;
  std::string ratios, coeffs_out;
};
struct FitStageResult {
  FitSummary summary;  // slices fitted and failed; joint mode: residuals, stars, iterations
  FitTermination termination =
      FitTermination::kNotRun;  // joint mode: the solver's; NOT_RUN otherwise
  double wall_seconds = 0;
  std::string BriefReport() const;  // one line: what it did (manifest.json "report")
};
FitStageResult RunFitStage(const FitStageOptions& options, const StageRun& run);

struct AssembleStageOptions {
  InstrumentOptions instrument;
  AssembleOptions assemble;
  std::string coeffs, ratios, seds;
  std::string true_flat;  // "" for observations from outside: no truth comparisons
  std::string dir_out;
};
struct AssembleStageResult {
  int detectors = 0;
  long slices = 0;  // detector x wavelength planes written
  bool truth_compared = false;
  double wall_seconds = 0;
  std::string BriefReport() const;  // one line: what it did (manifest.json "report")
};
AssembleStageResult RunAssembleStage(const AssembleStageOptions& options, const StageRun& run);

struct ValidateInputs {
  std::string stars, truth, lamost_truth, true_flat, flat_coeffs, flatcube, seds, config_path;
  SedSource network_mode = SedSource::kModel;
  std::string model;
  PredictorOptions predictor;
  int batch = 2048;
  PrepareOptions prepare;  // ingest's, so the Monte Carlo prepares its noisy inputs as ingest did
};
struct ValidateOutputs {
  std::string json, fits, report_dir;
};
struct ValidateStageOptions {
  InstrumentOptions instrument;
  ObserveOptions observe;
  CompareOptions compare;
  FlatFitOptions fit;
  MonteCarloOptions monte_carlo;
  uint64_t sim_seed = 0;  // the simulate stage's seed (StageRun::seed is the run's random_seed)
  ValidateInputs in;
  ValidateOutputs out;
};
struct ValidateStageResult {
  int realizations = 0;
  BandArray<std::optional<ShippedCubeSummary>>
      shipped;  // per band: the cube that ships against the truth
  double wall_seconds = 0;
  std::string BriefReport() const;  // one line: what it did (manifest.json "report")
};
ValidateStageResult RunValidateStage(const ValidateStageOptions& options, const StageRun& run);

// A run's predicted SEDs (seds.fits) against its truth, by star class (validation/sed_bias.h): the
// table that validate records and `evaluate --sample` prints. Throws naming the files unless
// seds.fits predicts st's stars.
std::vector<SedBiasRow> SampleSedBias(const StarTruth& st, const std::string& stars_path,
                                      const std::string& seds_path, const Instrument& inst);

}  // namespace csst
