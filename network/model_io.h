// Model files, ensemble prediction and sigma calibration (internal to network/).
#pragma once

#include <torch/torch.h>

#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "io/training_set.h"
#include "network/model.h"
#include "network/sed_network.h"

namespace csst {

struct ModelSidecar {
  int ensemble = 1;
  int pca_components =
      0;  // output basis: 0 = 574 pixels, K = PCA basis of the log SED (net::UaraNet)
  std::string variant = "paper";
  BandArray<double> sigma_scale = BandArray<double>::Filled(1.0);
  std::map<std::string, std::map<std::string, double>> coverage_before, coverage_after;
  // Per band: the relative SED error common to all stars (it does not average down in a flat
  // fitted to many stars), added in quadrature to the cube's ERR. Measured on a calibration
  // simulation: the term that gives the shipped cube's ERR 68.27% coverage there
  // (validation.json shipped_cube.systematic_for_68; `csst-flatcube calibrate --systematic-from`).
  // Empty until then; kept by recalibration and fine-tuning.
  // Two terms, because a per-star scale fitted with the flat absorbs part of the error:
  // `systematic` for a flat fitted with known star fluxes (flatfield.mode independent),
  // `systematic_free_scale` for one with free per-star scales (joint; gauge at 5526-5586 A).
  std::optional<BandArray<double>> systematic, systematic_free_scale;  // none: {} in the sidecar
  // Conditional bias correction (issue #32): per output pixel k, ln(true / mu)_k is predicted as
  // sum_j bias_coeff[k * kBiasFeatures + j] f_j, f the BiasFeatures of the star's prediction and
  // input; predict multiplies mu by exp of it. Empty: no correction. Fitted on the validation split
  // (`calibrate` with train.bias_correction, or training's calibration), never on the test split.
  std::vector<double> bias_coeff;
  nlohmann::json bias_info = nullptr;  // what it was fitted on
  // the validation.json files each came from, with their config and seed
  std::string systematic_source, systematic_free_scale_source;
  nlohmann::json training = nlohmann::json::object();
  nlohmann::json ToJson() const;
  static ModelSidecar FromJson(const nlohmann::json& j, const std::string& path);
};

// What SedPredictor::info() and ReadModelInfo report of a sidecar.
ModelInfo ModelInfoOf(const ModelSidecar& side);

void SaveModel(net::Ensemble& model, const ModelSidecar& side, const std::string& prefix);
// Loads <prefix>.json (checking grids) and <prefix>.pt into a fresh ensemble of the right size.
net::Ensemble LoadModel(const std::string& prefix, ModelSidecar* side);
void LoadEnsembleWeights(net::Ensemble& model, const std::string& prefix);

// The torch device for network.device / train.device (`key` names the setting in the error when
// CUDA is asked for and LibTorch sees none).
torch::Device TorchDevice(ComputeDevice device, const std::string& key);

// Band of an output-grid pixel for the sigma scale: the band whose share of the axis holds it
// (BandOfShare: GU below 4100 A, GV up to 6350 A, GI above).
Band SigmaBandOfPixel(int pixel);
// A per-band value as a JSON object {"GU": .., "GV": .., "GI": ..}, and back: every band present,
// no other key, each value finite in [lo, hi]; errors name `path` and `key`.
nlohmann::json BandJson(const BandArray<double>& values);
BandArray<double> BandArrayFromJson(const nlohmann::json& j, const std::string& path,
                                    const std::string& key, double lo, double hi);

// Ensemble mean and total relative sigma (aleatoric + epistemic), before calibration.
void EnsemblePredict(net::Ensemble& model, const torch::Tensor& flux, const torch::Tensor& err,
                     torch::Tensor* mu, torch::Tensor* sigma);

// The features of the conditional bias correction, computed from what the network sees and says: 1;
// the predicted colours u = ln(mean mu over GU), i = ln(mean mu over GI) (mu is 1 in 5526-5586 A),
// u^2, u i, i^2; the input's SNR s = ln(median flux / err over its unmasked pixels / 30), s u, s^2.
constexpr int kBiasFeatures = 9;
constexpr double kMaxBiasCorrection = 0.5;  // |ln correction| applied at most
const std::vector<std::string>& BiasFeatureNames();
void BiasFeatures(const float* mu, const float* flux, const float* err, double* features);
// mu (n x 574) *= exp(correction), the correction clamped to +-kMaxBiasCorrection, in place; flux,
// err: the n inputs (n x 2238).
void ApplyBiasCorrection(const std::vector<double>& coeff, const float* flux, const float* err,
                         size_t n, float* mu);
// Per output pixel the least-squares coefficients (ridge 1e-6 of the feature scale) of log_ratio
// (rows x 574, NaN = no value) on features (rows x kBiasFeatures); pixels with no value get 0.
std::vector<double> FitBiasCoefficients(const std::vector<double>& features,
                                        const std::vector<float>& log_ratio, size_t rows);
// The stars a calibration is fitted on (not owned): stars `idx` of `grid`, each at every SNR of
// `snr` (noise seeded per star and SNR from `seed`), predicted by `model` on `device`.
struct CalibrationSet {
  net::Ensemble* model = nullptr;
  const TrainingGrid* grid = nullptr;
  const std::vector<int>* idx = nullptr;
  const std::vector<double>* snr = nullptr;
  uint64_t seed = 0;
  torch::Device device = torch::kCPU;
};
// The correction fitted (FitBiasCoefficients) on a calibration set; returns 574 x kBiasFeatures
// coefficients and fills `info` (stars, rows, RMS of ln(true/mu) before and after per band).
std::vector<double> FitBiasCorrection(const CalibrationSet& set, nlohmann::json* info);

// The scale s for values v = |r| / sigma that best meets both coverage targets: minimises
// max(|c1 - 68.27%| / 3%, |c2 - 95.45%| / 2%), c_k = fraction of v below k s.
double BalancedSigmaScale(std::vector<double> v);

// Per-band scale s of the total sigma from the validation stars (noise drawn at the given SNRs):
// the s that best meets both coverage targets, minimising max(|c1 - 68.27%| / 3%, |c2 - 95.45%| /
// 2%) over the 1- and 2-sigma coverages c1, c2 (the tolerances); fills the coverage per
// band before and after. bias_coeff: the conditional bias correction applied to mu before the
// residuals (empty: none).
BandArray<double> CalibrateSigma(const CalibrationSet& set,
                                 std::map<std::string, std::map<std::string, double>>* before,
                                 std::map<std::string, std::map<std::string, double>>* after,
                                 const std::vector<double>& bias_coeff = {});

}  // namespace csst
