// Public, torch-free interface of the UaRA-net: training, model files and prediction.
//
// A model is two files: MODEL.pt (torch::save archive of the ensemble's weights) and MODEL.json
// (sidecar: grids, scaling window, noise model, sigma calibration and training provenance).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "core/bands.h"
#include "core/enum_names.h"

namespace csst {

// network.device / train.device: CUDA when LibTorch sees a device (auto), or the one named.
enum class ComputeDevice { kAuto, kCpu, kCuda };
inline constexpr EnumNames<ComputeDevice, 3> kComputeDeviceNames = {
    {{ComputeDevice::kAuto, "auto"}, {ComputeDevice::kCpu, "cpu"}, {ComputeDevice::kCuda, "cuda"}}};
constexpr const auto& NamesOf(ComputeDevice) { return kComputeDeviceNames; }

// train.loss: the paper's Gaussian NLL; beta-NLL (train.beta); or train.warmup_epochs of relative
// MSE on the mean, then the NLL.
enum class TrainLoss { kNll, kBetaNll, kMseWarmup };
inline constexpr EnumNames<TrainLoss, 3> kTrainLossNames = {
    {{TrainLoss::kNll, "nll"},
     {TrainLoss::kBetaNll, "beta_nll"},
     {TrainLoss::kMseWarmup, "mse_warmup"}}};
constexpr const auto& NamesOf(TrainLoss) { return kTrainLossNames; }
// train.schedule: constant learning rate, or cosine decay from train.lr to 0 over train.epochs.
enum class LrSchedule { kConstant, kCosine };
inline constexpr EnumNames<LrSchedule, 2> kLrScheduleNames = {
    {{LrSchedule::kConstant, "constant"}, {LrSchedule::kCosine, "cosine"}}};
constexpr const auto& NamesOf(LrSchedule) { return kLrScheduleNames; }

struct TrainOptions {
  std::string grid;           // training grid FITS (simulation/training_grid.h)
  std::string out = "model";  // writes <out>.pt, <out>.json and <out>.ckpt* while training
  std::string init;           // fine-tuning: start from this model (path without extension)
  int epochs = 200;           // maximum epochs
  int batch = 2048;           // paper: 2048 pre-training, 32 fine-tuning
  double lr = 1e-3;           // Adam learning rate (paper)
  TrainLoss loss = TrainLoss::kNll;
  double beta = 0.5;      // beta-NLL exponent (Seitzer et al. 2022 recommend 0.5)
  int warmup_epochs = 5;  // mse_warmup: epochs of MSE before the NLL
  LrSchedule schedule = LrSchedule::kConstant;
  int ensemble = 1;  // deep-ensemble members (1 = the paper's single network)
  // Output basis: 0 = the paper's 574 output pixels; K > 0 = K coefficients of a PCA basis of the
  // log SED computed from the training stars' targets (network/model.h). Fine-tuning (init) keeps
  // the initial model's basis and needs the same value.
  int pca_components = 0;
  int checkpoint_every = 5;   // epochs between checkpoints
  int patience = 40;          // early stopping on validation NLL
  double val_fraction = 0.1;  // of the training split, for early stopping and calibration
  std::vector<double> snr = {20, 25, 30, 35, 40};  // SNRs drawn for the fresh noise each epoch
  // SNRs of the validation noise for the sigma calibration: the paper's test SNRs, so that the
  // calibrated sigma holds where the network is used (LAMOST stars reach SNR 80 and beyond).
  std::vector<double> calibration_snr = {20, 25, 30, 35, 40, 80};
  // Fit the conditional bias correction (model_io.h BiasFeatures) on the validation split at
  // calibration_snr before the sigma calibration (issue #32); false: none (the sidecar's is
  // dropped).
  bool bias_correction = false;
  ComputeDevice device = ComputeDevice::kAuto;
  int threads = 0;  // intra-op threads (0 = all cores): the caller's SetNetworkThreads
  uint64_t seed = 42;
  double max_hours = 0;  // stop (with a checkpoint) after this wall time; 0 = no limit
  void Validate() const;
};

struct TrainSummary {
  int epochs_run = 0, best_epoch = 0;
  double final_train_nll = 0, best_val_nll = 0;
  double seconds_per_epoch = 0, spectra_per_second = 0;
  bool stopped_early = false, resumed = false;
  BandArray<double> sigma_scale =
      BandArray<double>::Filled(1.0);  // per band, from the validation split
};

// LibTorch's intra-op threads for the whole process (0 or less: LibTorch's default, every core).
// Process state, so the library never sets it: the pipeline does, once per run or command
// (pipeline/engine.cpp, the network commands), from `threads` / train.threads.
void SetNetworkThreads(int threads);

TrainSummary TrainNetwork(const TrainOptions& options);
// Recomputes the per-band sigma calibration of the model at options.out on the validation split of
// options.grid (the split TrainNetwork used) and rewrites <out>.json atomically; weights unchanged.
BandArray<double> RecalibrateModel(const TrainOptions& options);

struct ModelInfo {
  int ensemble = 1;
  int pca_components = 0;  // 0: 574 output pixels; K: PCA basis of the log SED
  std::string variant = "paper";
  BandArray<double> sigma_scale = BandArray<double>::Filled(1.0);  // multipliers of the total sigma
  // SED error common to all stars (ModelSidecar); none until `calibrate --systematic-from` sets it
  std::optional<BandArray<double>> systematic;
  std::optional<BandArray<double>> systematic_free_scale;  // the same after a free per-star scale
  std::string json;                                        // the whole sidecar
};

// Writes the per-band systematic SED error (GU, GV, GI, each in [0, 1]) into MODEL.json with its
// source, as the term for known star fluxes or (free_scale) for free per-star scales; weights and
// the rest of the sidecar unchanged.
void SetModelSystematic(const std::string& model, const BandArray<double>& systematic,
                        const std::string& source, bool free_scale);
// The sidecar MODEL.json alone (no weights loaded), checked like SedPredictor checks it.
ModelInfo ReadModelInfo(const std::string& model);
// The PCA output basis of a model trained with train.pca_components = K > 0: the mean log SED (574)
// and K basis rows of 574, row-major (net::UaraNet's pca_mean and pca_basis, member 0). Throws
// Error naming MODEL.pt for a model with 574 output pixels.
struct PcaBasis {
  int components = 0;
  std::vector<double> mean, basis;
};
PcaBasis ReadPcaBasis(const std::string& model);

// Predictions for n stars: mu and sigma (relative, calibrated, aleatoric + epistemic) on the
// 574-pixel output grid, row-major n x 574.
struct SedPrediction {
  std::vector<float> mu, sigma;
  size_t n = 0;
};

// network.engine: how the ensemble runs. folded: the CPU engine of network/folded.h (BatchNorm
// folded into the convolutions, one cache-resident pass per sub-unit, TBB over tiles of spectra);
// libtorch: LibTorch's modules, on CPU or CUDA; auto: folded on CPU, libtorch on CUDA.
enum class InferenceEngine { kAuto, kLibTorch, kFolded };
inline constexpr EnumNames<InferenceEngine, 3> kInferenceEngineNames = {
    {{InferenceEngine::kAuto, "auto"},
     {InferenceEngine::kFolded, "folded"},
     {InferenceEngine::kLibTorch, "libtorch"}}};
constexpr const auto& NamesOf(InferenceEngine) { return kInferenceEngineNames; }

struct PredictorOptions {
  ComputeDevice device = ComputeDevice::kAuto;
  InferenceEngine engine = InferenceEngine::kAuto;
  // CPU threads of the folded engine's TBB arena (0 = all cores); LibTorch's intra-op threads are
  // the process's (SetNetworkThreads)
  int threads = 0;
};

class SedPredictor {
 public:
  // Loads MODEL.pt + MODEL.json once; checks that the sidecar's grids are the method's grids and
  // throws Error naming the mismatch otherwise. The folded engine needs the CPU: asking for it on
  // CUDA is an Error.
  explicit SedPredictor(const std::string& model, const PredictorOptions& options = {});
  ~SedPredictor();
  SedPredictor(const SedPredictor&) = delete;
  SedPredictor& operator=(const SedPredictor&) = delete;
  // flux, err: n x 2238 row-major. LibTorch: runs in batches of `batch` under c10::InferenceMode on
  // the calling thread. Folded: the whole call in tiles of 8 spectra over the TBB arena (`batch`
  // does not change the result or the memory, which is per tile).
  SedPrediction Predict(const std::vector<float>& flux, const std::vector<float>& err, size_t n,
                        int batch = 2048) const;
  const ModelInfo& info() const;
  ComputeDevice device() const;  // where it runs: kCpu or kCuda
  InferenceEngine engine() const;

 private:
  struct Impl;
  Impl* impl_;
};

}  // namespace csst

namespace csst {

// Evaluation on the test split in the paper's form (Table 2): for Teff bins (centre +- 250 K)
// and SNRs, the median and 1-sigma ((p84 - p16) / 2) of the relative residuals per band; the
// RMSAE distribution; coverage of |r| < sigma and < 2 sigma per band (all test stars, all SNRs).
struct EvaluateOptions {
  // Paper's cells 6000 and 8000 K, and the cool and hot stars that pipeline samples hold (issue
  // #32).
  std::vector<double> teff_bins = {5000, 5500, 6000, 7000, 8000, 9000};
  double teff_half_width = 250;
  std::vector<double> snr = {20, 40, 80};
  // Per-wavelength errors over all test stars (any Teff) at the output pixel nearest each
  // wavelength [A]: the paper's MILES verification reports them at these five.
  std::vector<double> wavelengths = {3600, 4500, 5000, 6000, 7000};
  uint64_t seed = 42;
  int batch = 2048;
};
// Returns the evaluation.json document (as text) and a text table in `table`.
std::string EvaluateNetwork(const SedPredictor& predictor, const std::string& grid_path,
                            const EvaluateOptions& options, std::string* table);

}  // namespace csst
