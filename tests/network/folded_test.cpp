// The folded CPU engine (network/folded.h) against LibTorch's modules on the same weights.
// (torch before Catch: c10's logging defines CHECK, which Catch's must replace.)
#include "network/folded.h"

#include <torch/torch.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <filesystem>

#include "core/rng.h"
#include "network/model.h"
#include "network/model_io.h"
#include "network/sed_network.h"
#include "simulation/stellar/synthesizer.h"
#include "tests/test_util.h"

using namespace csst;

namespace {

// n noisy network inputs of synthesized stars (4500-9500 K, SNR 10-100), flux and err row-major.
void Inputs(size_t n, std::vector<float>* flux, std::vector<float>* err) {
  const stellar::Synthesizer synth;
  const size_t ni = net::kInputPixels;
  flux->assign(n * ni, 0);
  err->assign(n * ni, 0);
  for (size_t i = 0; i < n; ++i) {
    Rng rng(11, "folded-test", i);
    const double teff = 4500 + 5000 * rng.Uniform(), snr = 10 + 90 * rng.Uniform();
    const auto in = stellar::MakeNetworkInput(synth.Synthesize(
        stellar::StellarParams{teff, 3.5 + 1.5 * rng.Uniform(), -1.5 + 2 * rng.Uniform(), 0.1}));
    for (size_t k = 0; k < ni; ++k) {
      (*flux)[i * ni + k] = static_cast<float>(in.flux[k] * (1 + rng.Normal() / snr));
      (*err)[i * ni + k] = static_cast<float>(in.flux[k] / snr);
    }
  }
}

// Largest |a - b| / max(|b|, floor) over all values.
double MaxRelative(const std::vector<float>& a, const std::vector<float>& b, double floor) {
  double worst = 0;
  for (size_t i = 0; i < a.size(); ++i)
    worst = std::max(worst, std::abs(static_cast<double>(a[i]) - b[i]) /
                                std::max(std::abs(static_cast<double>(b[i])), floor));
  return worst;
}

// Random BatchNorm statistics and affine parameters, so that folding is exercised (fresh modules
// have mean 0, var 1, gamma 1, beta 0, which folding would pass through unchanged).
void RandomiseBatchNorm(net::Ensemble& model) {
  torch::NoGradGuard ng;
  torch::manual_seed(5);
  for (auto& m : model->modules(false)) {
    if (auto* bn = dynamic_cast<torch::nn::BatchNorm1dImpl*>(m.get())) {
      bn->running_mean.uniform_(-0.5, 0.5);
      bn->running_var.uniform_(0.3, 3.0);
      bn->weight.uniform_(0.5, 1.5);
      bn->bias.uniform_(-0.3, 0.3);
    }
  }
}

}  // namespace

TEST_CASE("folded engine equals LibTorch on the shipped weights to 1e-5", "[network][folded]") {
  const std::string model = std::string(CSST_SOURCE_DIR) + "/network/models/uara_default";
  ModelSidecar side;
  auto ens = LoadModel(model, &side);
  ens->eval();
  const net::FoldedEnsemble folded(ens);
  REQUIRE(folded.members() == 3);
  const size_t n = 37;  // two full tiles of 16 and a partial one
  std::vector<float> flux, err;
  Inputs(n, &flux, &err);
  // References: LibTorch's modules in float, and in double precision (the exact function).
  torch::Tensor mu32, sigma32, mu64, sigma64;
  {
    torch::NoGradGuard ng;
    const auto f =
        torch::from_blob(flux.data(), {static_cast<int64_t>(n), net::kInputPixels}).clone();
    const auto e =
        torch::from_blob(err.data(), {static_cast<int64_t>(n), net::kInputPixels}).clone();
    EnsemblePredict(ens, f, e, &mu32, &sigma32);
    ens->to(torch::kDouble);
    EnsemblePredict(ens, f.to(torch::kDouble), e.to(torch::kDouble), &mu64, &sigma64);
  }
  auto floats = [](const torch::Tensor& t) {
    const auto c = t.to(torch::kFloat).contiguous();
    return std::vector<float>(c.data_ptr<float>(), c.data_ptr<float>() + c.numel());
  };
  const auto mr = floats(mu64), sr = floats(sigma64);
  // mu is the SED scaled to ~1 at 5556 A (values 0.05-3 here); sigma a relative error (~1e-3-0.3).
  const double dmu32 = MaxRelative(floats(mu32), mr, 1e-3),
               dsigma32 = MaxRelative(floats(sigma32), sr, 1e-3);
  std::vector<float> mu(n * net::kOutputPixels), sigma(mu.size());
  for (int threads : {1, 2}) {
    folded.Predict(flux.data(), err.data(), n, threads, mu.data(), sigma.data());
    const double dmu = MaxRelative(mu, mr, 1e-3), dsigma = MaxRelative(sigma, sr, 1e-3);
    INFO("threads " << threads << ": largest relative difference to double precision: folded mu "
                    << dmu << ", sigma " << dsigma << "; LibTorch float mu " << dmu32 << ", sigma "
                    << dsigma32);
    CHECK(dmu < 1e-5);
    // sigma, a relative error built from the members' spread (differences of nearly equal mu), is
    // conditioned worse: LibTorch's float forward pass itself is 1.5e-5 off here. Folded sigma must
    // equal the exact one to 1e-5 in absolute terms (1e-5 of the flux) and stay within 3x of
    // LibTorch's float error in relative terms.
    double dsigma_abs = 0;
    for (size_t i = 0; i < sigma.size(); ++i)
      dsigma_abs = std::max(dsigma_abs, std::abs(static_cast<double>(sigma[i]) - sr[i]));
    INFO("largest absolute difference of sigma " << dsigma_abs);
    CHECK(dsigma_abs < 1e-5);
    CHECK(dsigma < std::max(1e-5, 3 * dsigma32));
    // A broken engine is caught: the reference's own scale of values is far above these bounds.
    CHECK(MaxRelative(mr, std::vector<float>(mr.size(), 1.0f), 1e-3) > 1e-2);
  }
  // Thread count and tiling do not change a single bit.
  std::vector<float> mu1(mu.size()), s1(mu.size());
  folded.Predict(flux.data(), err.data(), n, 1, mu1.data(), s1.data());
  CHECK(mu1 == mu);
  CHECK(s1 == sigma);
}

TEST_CASE(
    "folded engine folds BatchNorm statistics: random statistics and one member and every output",
    "[network][folded]") {
  torch::manual_seed(3);
  net::Ensemble ens(1);
  net::HeInit(*ens->member(0));
  RandomiseBatchNorm(ens);
  ens->eval();
  const net::FoldedEnsemble folded(ens);
  const size_t n = 5;
  std::vector<float> flux, err;
  Inputs(n, &flux, &err);
  torch::NoGradGuard ng;
  const auto f =
      torch::from_blob(flux.data(), {static_cast<int64_t>(n), net::kInputPixels}).clone();
  const auto e = torch::from_blob(err.data(), {static_cast<int64_t>(n), net::kInputPixels}).clone();
  // The reference: LibTorch's modules in double precision; LibTorch in float for scale.
  const auto ref32 = ens->member(0)->forward(f, e);
  ens->to(torch::kDouble);
  const auto ref64 = ens->member(0)->forward(f.to(torch::kDouble), e.to(torch::kDouble));
  auto floats = [](const torch::Tensor& t) {
    const auto c = t.to(torch::kFloat).contiguous();
    return std::vector<float>(c.data_ptr<float>(), c.data_ptr<float>() + c.numel());
  };
  const auto mr = floats(ref64.mu), sr = floats(ref64.sigma), m32 = floats(ref32.mu),
             s32 = floats(ref32.sigma);
  std::vector<float> mu(n * net::kOutputPixels), sigma(mu.size());
  folded.PredictMember(0, flux.data(), err.data(), n, mu.data(), sigma.data());
  // He-initialised outputs are O(1-100) with either sign: relative to the largest value.
  const float scale = std::abs(*std::max_element(
      mr.begin(), mr.end(), [](float a, float b) { return std::abs(a) < std::abs(b); }));
  const double dmu = MaxRelative(mu, mr, scale * 1e-3), dsigma = MaxRelative(sigma, sr, 1e-3);
  const double dmu32 = MaxRelative(m32, mr, scale * 1e-3), dsigma32 = MaxRelative(s32, sr, 1e-3);
  INFO("largest relative difference to double precision: folded mu "
       << dmu << ", sigma " << dsigma << "; LibTorch float mu " << dmu32 << ", sigma " << dsigma32);
  // Random He-initialised weights amplify rounding: folded must stay within 3x of LibTorch's own
  // float error (and 1e-5 where that is smaller).
  CHECK(dmu < std::max(1e-5, 3 * dmu32));
  CHECK(dsigma < std::max(1e-5, 3 * dsigma32));
  // Without the folding (BatchNorm left out) the outputs differ grossly.
  net::Ensemble plain(1);
  torch::manual_seed(3);
  net::HeInit(*plain->member(0));
  plain->eval();
  const net::FoldedEnsemble unfolded(plain);
  std::vector<float> mu0(mu.size()), s0(mu.size());
  unfolded.PredictMember(0, flux.data(), err.data(), n, mu0.data(), s0.data());
  CHECK(MaxRelative(mu0, mr, scale * 1e-3) > 1e-2);
}

TEST_CASE(
    "SedPredictor: folded by default on CPU and libtorch on request with the same calibrated "
    "outputs",
    "[network][folded]") {
  const std::string model = std::string(CSST_SOURCE_DIR) + "/network/models/uara_default";
  PredictorOptions o;
  o.device = ComputeDevice::kCpu;
  o.threads = 2;
  const SedPredictor folded(model, o);
  CHECK(folded.engine() == InferenceEngine::kFolded);
  o.engine = InferenceEngine::kLibTorch;
  const SedPredictor libtorch(model, o);
  CHECK(libtorch.engine() == InferenceEngine::kLibTorch);
  std::vector<float> flux, err;
  Inputs(20, &flux, &err);
  const auto a = folded.Predict(flux, err, 20, 7), b = libtorch.Predict(flux, err, 20, 7);
  CHECK(MaxRelative(a.mu, b.mu, 1e-3) < 1e-5);
  CHECK(MaxRelative(a.sigma, b.sigma, 1e-3) < 1e-4);
  o.engine = InferenceEngine::kFolded;
  o.device = ComputeDevice::kCuda;
  if (!torch::cuda::is_available()) {
    CHECK_THROWS_WITH(SedPredictor(model, o), Catch::Contains("no CUDA device"));
  } else {
    CHECK_THROWS_WITH(SedPredictor(model, o),
                      Catch::Contains("network.engine = folded runs on the CPU"));
  }
}
