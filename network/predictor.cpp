#include <ATen/Parallel.h>
#include <c10/core/InferenceMode.h>
#include <torch/torch.h>

#include <algorithm>
#include <memory>

#include "core/errors.h"
#include "core/log.h"
#include "network/folded.h"
#include "network/model_io.h"
#include "network/sed_network.h"

namespace csst {

struct SedPredictor::Impl {
  net::Ensemble model{nullptr};
  ModelSidecar side;
  ModelInfo info;
  torch::Device device{torch::kCPU};
  std::vector<float> scale;  // per output pixel
  InferenceEngine engine = InferenceEngine::kLibTorch;
  std::unique_ptr<net::FoldedEnsemble> folded;
  int threads = 0;
  // LibTorch's modules in batches of `batch`, uncalibrated sigma, into out (sized n x 574).
  void PredictLibTorch(const std::vector<float>& flux, const std::vector<float>& err, size_t n,
                       int batch, SedPrediction* out);
};

void SetNetworkThreads(int threads) {
  if (threads > 0) at::set_num_threads(threads);
}

SedPredictor::SedPredictor(const std::string& model, const PredictorOptions& options)
    : impl_(new Impl) {
  try {
    impl_->threads = options.threads;
    impl_->model = LoadModel(model, &impl_->side);
    impl_->device = TorchDevice(options.device, "network.device");
    if (options.engine == InferenceEngine::kFolded && impl_->device.is_cuda())
      throw Error(
          "network.engine = folded runs on the CPU; with network.device = cuda use libtorch or "
          "auto");
    impl_->engine =
        options.engine == InferenceEngine::kAuto
            ? (impl_->device.is_cuda() ? InferenceEngine::kLibTorch : InferenceEngine::kFolded)
            : options.engine;
    impl_->model->eval();
    if (impl_->engine == InferenceEngine::kFolded)
      impl_->folded = std::make_unique<net::FoldedEnsemble>(impl_->model);
    impl_->model->to(impl_->device);
    impl_->info = ModelInfoOf(impl_->side);
    for (int k = 0; k < net::kOutputPixels; ++k) {
      impl_->scale.push_back(static_cast<float>(impl_->side.sigma_scale[SigmaBandOfPixel(k)]));
    }
  } catch (...) {
    delete impl_;
    throw;
  }
  Logger("network")->info("loaded {} ({} member(s)) on {}, {} engine", model, impl_->info.ensemble,
                          impl_->device.is_cuda() ? "cuda" : "cpu", ToString(impl_->engine));
}

SedPredictor::~SedPredictor() { delete impl_; }

const ModelInfo& SedPredictor::info() const { return impl_->info; }
ComputeDevice SedPredictor::device() const {
  return impl_->device.is_cuda() ? ComputeDevice::kCuda : ComputeDevice::kCpu;
}
InferenceEngine SedPredictor::engine() const { return impl_->engine; }

SedPrediction SedPredictor::Predict(const std::vector<float>& flux, const std::vector<float>& err,
                                    size_t n, int batch) const {
  const int64_t ni = net::kInputPixels, no = net::kOutputPixels;
  if (flux.size() != n * ni || err.size() != n * ni) {
    throw Error("SedPredictor::Predict: expected " + std::to_string(n) +
                " x 2238 flux and err values");
  }
  SedPrediction out;
  out.n = n;
  out.mu.resize(n * no);
  out.sigma.resize(n * no);
  if (impl_->folded) {
    impl_->folded->Predict(flux.data(), err.data(), n, impl_->threads, out.mu.data(),
                           out.sigma.data());
  } else {
    impl_->PredictLibTorch(flux, err, n, batch, &out);
  }
  // The conditional bias correction, then the per-band sigma calibration of the sidecar.
  if (!impl_->side.bias_coeff.empty())
    ApplyBiasCorrection(impl_->side.bias_coeff, flux.data(), err.data(), n, out.mu.data());
  for (size_t r = 0; r < n; ++r)
    for (int64_t k = 0; k < no; ++k) out.sigma[r * no + k] *= impl_->scale[k];
  return out;
}

void SedPredictor::Impl::PredictLibTorch(const std::vector<float>& flux,
                                         const std::vector<float>& err, size_t n, int batch,
                                         SedPrediction* out) {
  const int64_t ni = net::kInputPixels, no = net::kOutputPixels;
  c10::InferenceMode guard;  // thread-local: opened on the calling (worker) thread
  for (size_t a = 0; a < n; a += static_cast<size_t>(batch)) {
    const int64_t m = static_cast<int64_t>(std::min(n, a + static_cast<size_t>(batch)) - a);
    auto f = torch::from_blob(const_cast<float*>(flux.data()) + a * ni, {m, ni}, torch::kFloat)
                 .to(device);
    auto e = torch::from_blob(const_cast<float*>(err.data()) + a * ni, {m, ni}, torch::kFloat)
                 .to(device);
    torch::Tensor mu, sigma;
    EnsemblePredict(model, f, e, &mu, &sigma);
    mu = mu.cpu().contiguous();
    sigma = sigma.cpu().contiguous();
    std::copy(mu.data_ptr<float>(), mu.data_ptr<float>() + m * no,
              out->mu.begin() + static_cast<long>(a * no));
    std::copy(sigma.data_ptr<float>(), sigma.data_ptr<float>() + m * no,
              out->sigma.begin() + static_cast<long>(a * no));
  }
}

}  // namespace csst
