// Stage `predict`: UaRA-net SEDs (mu, sigma) of the ingested stars -> seds.fits. With
// network.mode = paper_errors the "predictions" are the true SEDs perturbed by the paper's error
// table (to compare the flat-field part with the paper on its own).
#pragma once

#include <cstdint>
#include <string>
#include <array>
#include <vector>

#include "core/fits.h"
#include "network/sed_network.h"
#include "stages/stage_run.h"

namespace csst {

// Where the SEDs of stage predict come from (network.mode).
enum class SedSource {
  kModel,        // the UaRA-net (network.model)
  kPaperErrors,  // the true SEDs perturbed by the paper's error table
};
const char* ToString(SedSource s);

struct SedTable {
  std::vector<int64_t> obsid;
  std::vector<float> mu, sigma;  // n x 574
  // Per band (GU, GV, GI): the SED error common to all stars (the model's systematic_error; 0 for
  // paper_errors, whose errors are independent between stars). Header keys SYSERRU/V/I of SEDS.
  std::array<double, 3> systematic = {0, 0, 0};
  // The same for a flat fitted with free per-star scales (systematic_error_free_scale; SYSFREU/V/I).
  std::array<double, 3> systematic_free_scale = {0, 0, 0};
  // `predict FILE...` (spectra from anywhere) fills these too; the stage leaves them empty. FILE: each star's
  // source file; DOMAIN: "" inside the training domain, else why not (SNR, Teff); REJECTS: unusable files.
  std::vector<std::string> file, domain;
  std::vector<std::string> rejected_file, rejected_reason;
};
// The one writer of the SEDS product (the predict stage and `csst-flatcube predict`).
void WriteSeds(const std::string& path, const SedTable& t, const Provenance& p);
SedTable ReadSeds(const std::string& path);
// SYSERRU/V/I of SEDS, or SYSFREU/V/I for a flat fitted with free per-star scales (joint mode).
std::array<double, 3> ReadSedSystematic(const std::string& path, bool free_scale);
// Throws naming both files unless `seds` (read from seds_path) predicts exactly the stars `obsid`
// of stars_path, in their order.
void CheckSedsOfStars(const SedTable& seds, const std::string& seds_path, const std::vector<int64_t>& obsid,
                      const std::string& stars_path);

struct PredictStageOptions {
  SedSource mode = SedSource::kModel;
  std::string model;           // network.model (mode = model)
  PredictorOptions predictor;  // device, engine, threads
  int batch = 2048;
  std::string stars, truth;    // truth: mode = paper_errors only
  std::string seds_out;
};

struct PredictStageResult {
  size_t stars = 0;
  std::string device, engine;  // where the network ran (mode = model)
  double spectra_per_second = 0, wall_seconds = 0;
};

PredictStageResult RunPredictStage(const PredictStageOptions& options, const StageRun& run);

}  // namespace csst
