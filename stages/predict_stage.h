// Stage `predict`: UaRA-net SEDs (mu, sigma) of the ingested stars -> seds.fits. With
// network.mode = paper_errors the "predictions" are the true SEDs perturbed by the paper's error
// table (to compare the flat-field part with the paper on its own).
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "core/enum_names.h"
#include "io/fits.h"
#include "io/seds.h"
#include "network/sed_network.h"
#include "stages/sed_source.h"
#include "stages/stage_run.h"

namespace csst {

struct PredictStageOptions {
  SedSource mode = SedSource::kModel;
  std::string model;           // network.model (mode = model)
  PredictorOptions predictor;  // device, engine, threads
  int batch = 2048;
  int star_block = 2048;  // stars read, predicted and written at a time (rounded to whole batches)
  std::string stars, truth;  // truth: mode = paper_errors only
  std::string seds_out;
};

struct PredictStageResult {
  size_t stars = 0;
  std::string device, engine;  // where the network ran (mode = model)
  double spectra_per_second = 0, wall_seconds = 0;
  std::string BriefReport() const;  // one line: what it did (manifest.json "report")
};

PredictStageResult RunPredictStage(const PredictStageOptions& options, const StageRun& run);

}  // namespace csst
