// Stages `compare`, `fit`, `assemble` and `validate` (thin: they read products, call the
// flatfield library and write products).
#pragma once

#include <cstdint>
#include <string>

#include "flatfield/compare.h"
#include "flatfield/flat_fitter.h"
#include "validation/monte_carlo.h"
#include "flatfield/products.h"
#include "instrument/instrument.h"
#include "simulation/csst/observe.h"
#include "simulation/csst/true_flat.h"
#include "stages/predict_stage.h"

namespace csst {

void RunCompareStage(const InstrumentOptions& instrument, const CompareOptions& options, uint64_t seed,
                     const std::string& config_hash, const std::string& observations, const std::string& seds,
                     const std::string& stars, const std::string& ratios_out);

void RunFitStage(const InstrumentOptions& instrument, const FlatFitOptions& options, uint64_t seed,
                 const std::string& config_hash, const std::string& ratios, const std::string& coeffs_out);

void RunAssembleStage(const InstrumentOptions& instrument, const AssembleOptions& options, uint64_t seed,
                      const std::string& config_hash, const std::string& coeffs, const std::string& ratios,
                      const std::string& seds, const std::string& true_flat, const std::string& dir_out);

struct ValidateInputs {
  std::string stars, truth, lamost_truth, true_flat, flat_coeffs, flatcube, seds, config_path;
  SedSource network_mode = SedSource::kModel;
  std::string model, device;
  int batch = 2048, threads = 0;
  PrepareOptions prepare;  // ingest's, so the Monte Carlo prepares its noisy inputs as ingest did
};
struct ValidateOutputs {
  std::string json, fits, report_dir;
};
void RunValidateStage(const InstrumentOptions& instrument, const ObserveOptions& observe, const CompareOptions& compare,
                      const FlatFitOptions& fit, const MonteCarloOptions& mc, uint64_t seed, uint64_t sim_seed,
                      const std::string& config_hash, const ValidateInputs& in, const ValidateOutputs& out);

}  // namespace csst
