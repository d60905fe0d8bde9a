// Public, torch-free interface of the UaRA-net: training, model files and prediction.
//
// A model is two files: MODEL.pt (torch::save archive of the ensemble's weights) and MODEL.json
// (sidecar: grids, scaling window, noise model, sigma calibration and training provenance).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace csst {

struct TrainOptions {
  std::string grid;                 // training grid FITS (simulation/training_grid.h)
  std::string out = "model";        // writes <out>.pt, <out>.json and <out>.ckpt* while training
  std::string init;                 // fine-tuning: start from this model (path without extension)
  int epochs = 200;                 // maximum epochs
  int batch = 2048;                 // paper: 2048 pre-training, 32 fine-tuning
  double lr = 1e-3;                 // Adam learning rate (paper)
  int ensemble = 1;                 // deep-ensemble members (1 = the paper's single network)
  int checkpoint_every = 5;         // epochs between checkpoints
  int patience = 40;                // early stopping on validation NLL
  double val_fraction = 0.1;        // of the training split, for early stopping and calibration
  std::vector<double> snr = {20, 25, 30, 35, 40};  // SNRs drawn for the fresh noise each epoch
  // SNRs of the validation noise for the sigma calibration: the paper's test SNRs, so that the
  // calibrated sigma holds where the network is used (LAMOST stars reach SNR 80 and beyond).
  std::vector<double> calibration_snr = {20, 25, 30, 35, 40, 80};
  std::string device = "auto";      // auto | cpu | cuda
  int threads = 0;                  // intra-op threads (0 = all cores)
  uint64_t seed = 42;
  double max_hours = 0;             // stop (with a checkpoint) after this wall time; 0 = no limit
  void Validate() const;
};

struct TrainSummary {
  int epochs_run = 0, best_epoch = 0;
  double final_train_nll = 0, best_val_nll = 0;
  double seconds_per_epoch = 0, spectra_per_second = 0;
  bool stopped_early = false, resumed = false;
  std::map<std::string, double> sigma_scale;  // per band, from the validation split
};

TrainSummary TrainNetwork(const TrainOptions& options);
// Recomputes the per-band sigma calibration of the model at options.out on the validation split of
// options.grid (the split TrainNetwork used) and rewrites <out>.json atomically; weights unchanged.
std::map<std::string, double> RecalibrateModel(const TrainOptions& options);

struct ModelInfo {
  int ensemble = 1;
  std::string variant = "paper";
  std::map<std::string, double> sigma_scale;  // GU, GV, GI multipliers of the total sigma
  std::map<std::string, double> systematic;   // GU, GV, GI: SED error common to all stars (ModelSidecar)
  std::string json;                           // the whole sidecar
};

// Writes the per-band systematic SED error (GU, GV, GI, each in [0, 1]) into MODEL.json with its
// source; weights and the rest of the sidecar unchanged.
void SetModelSystematic(const std::string& model, const std::map<std::string, double>& systematic,
                        const std::string& source);
// The sidecar MODEL.json alone (no weights loaded), checked like SedPredictor checks it.
ModelInfo ReadModelInfo(const std::string& model);

// Predictions for n stars: mu and sigma (relative, calibrated, aleatoric + epistemic) on the
// 574-pixel output grid, row-major n x 574.
struct SedPrediction {
  std::vector<float> mu, sigma;
  size_t n = 0;
};

class SedPredictor {
 public:
  // Loads MODEL.pt + MODEL.json once; checks that the sidecar's grids are the method's grids and
  // throws Error naming the mismatch otherwise. device: auto | cpu | cuda.
  SedPredictor(const std::string& model, const std::string& device = "auto", int threads = 0);
  ~SedPredictor();
  SedPredictor(const SedPredictor&) = delete;
  SedPredictor& operator=(const SedPredictor&) = delete;
  // flux, err: n x 2238 row-major. Runs in batches under c10::InferenceMode on the calling thread.
  SedPrediction Predict(const std::vector<float>& flux, const std::vector<float>& err, size_t n,
                        int batch = 2048) const;
  const ModelInfo& info() const;
  std::string device() const;

 private:
  struct Impl;
  Impl* impl_;
};

// Band wavelength ranges of the method (GU 2550-4200, GV 4000-6500, GI 6200-10000 A).
struct BandRange {
  const char* name;
  double lo, hi;
};
const std::vector<BandRange>& Bands();

}  // namespace csst

namespace csst {

// Evaluation on the test split in the paper's form (Table 2): for Teff bins (centre +- 250 K)
// and SNRs, the median and 1-sigma ((p84 - p16) / 2) of the relative residuals per band; the
// RMSAE distribution; coverage of |r| < sigma and < 2 sigma per band (all test stars, all SNRs).
struct EvaluateOptions {
  std::vector<double> teff_bins = {6000, 8000};
  double teff_half_width = 250;
  std::vector<double> snr = {20, 40, 80};
  uint64_t seed = 42;
  int batch = 2048;
};
// Returns the evaluation.json document (as text) and a text table in `table`.
std::string EvaluateNetwork(const SedPredictor& predictor, const std::string& grid_path,
                            const EvaluateOptions& options, std::string* table);

}  // namespace csst
