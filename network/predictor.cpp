#include <ATen/Parallel.h>
#include <c10/core/InferenceMode.h>
#include <torch/torch.h>

#include "core/errors.h"
#include "core/log.h"
#include "network/model_io.h"
#include "network/sed_network.h"

namespace csst {

struct SedPredictor::Impl {
  net::Ensemble model{nullptr};
  ModelSidecar side;
  ModelInfo info;
  torch::Device device{torch::kCPU};
  std::vector<float> scale;  // per output pixel
};

SedPredictor::SedPredictor(const std::string& model, const std::string& device, int threads)
    : impl_(new Impl) {
  if (device != "auto" && device != "cpu" && device != "cuda") {
    delete impl_;
    throw ConfigError("config error: network.device = " + device +
                      " violates device in {auto, cpu, cuda}");
  }
  try {
    if (threads > 0) at::set_num_threads(threads);
    impl_->model = LoadModel(model, &impl_->side);
    if (device == "cuda" || (device == "auto" && torch::cuda::is_available())) {
      if (!torch::cuda::is_available())
        throw Error("network.device = cuda but LibTorch sees no CUDA device");
      impl_->device = torch::Device(torch::kCUDA);
    }
    impl_->model->to(impl_->device);
    impl_->model->eval();
    impl_->info = ModelInfoOf(impl_->side);
    for (int k = 0; k < net::kOutputPixels; ++k) {
      impl_->scale.push_back(static_cast<float>(impl_->side.sigma_scale.at(SigmaBandOfPixel(k))));
    }
  } catch (...) {
    delete impl_;
    throw;
  }
  Logger("network")->info("loaded {} ({} member(s)) on {}", model, impl_->info.ensemble,
                          impl_->device.is_cuda() ? "cuda" : "cpu");
}

SedPredictor::~SedPredictor() { delete impl_; }

const ModelInfo& SedPredictor::info() const { return impl_->info; }
std::string SedPredictor::device() const { return impl_->device.is_cuda() ? "cuda" : "cpu"; }

SedPrediction SedPredictor::Predict(const std::vector<float>& flux, const std::vector<float>& err,
                                    size_t n, int batch) const {
  const int64_t ni = net::kInputPixels, no = net::kOutputPixels;
  if (flux.size() != n * ni || err.size() != n * ni) {
    throw Error("SedPredictor::Predict: expected " + std::to_string(n) +
                " x 2238 flux and err values");
  }
  c10::InferenceMode guard;  // thread-local: opened on the calling (worker) thread
  SedPrediction out;
  out.n = n;
  out.mu.resize(n * no);
  out.sigma.resize(n * no);
  for (size_t a = 0; a < n; a += static_cast<size_t>(batch)) {
    const int64_t m = static_cast<int64_t>(std::min(n, a + static_cast<size_t>(batch)) - a);
    auto f = torch::from_blob(const_cast<float*>(flux.data()) + a * ni, {m, ni}, torch::kFloat)
                 .to(impl_->device);
    auto e = torch::from_blob(const_cast<float*>(err.data()) + a * ni, {m, ni}, torch::kFloat)
                 .to(impl_->device);
    torch::Tensor mu, sigma;
    EnsemblePredict(impl_->model, f, e, &mu, &sigma);
    mu = mu.cpu().contiguous();
    sigma = sigma.cpu().contiguous();
    const float* pm = mu.data_ptr<float>();
    const float* ps = sigma.data_ptr<float>();
    for (int64_t r = 0; r < m; ++r) {
      for (int64_t k = 0; k < no; ++k) {
        out.mu[(a + r) * no + k] = pm[r * no + k];
        out.sigma[(a + r) * no + k] = ps[r * no + k] * impl_->scale[k];
      }
    }
  }
  return out;
}

}  // namespace csst
