// UaRA-net in LibTorch (internal to network/: includes torch).
//
// SED branch (paper Sec. 3, ../shared/method.md): Conv(1->4, k3, s2) -> 1119; six sub-units
// (4,3,2)->560, (4,3,1)->560, (8,3,2)->280, (8,3,1)->280, (16,3,2)->140, (16,3,1)->140; BN, ReLU,
// global average pooling -> Z (16); FC 100 -> 200 -> 300 -> 574 = mu.
// Sub-unit: four pre-activation convolutions (BN, ReLU, Conv k3; the first with the sub-unit's
// stride and channel count) whose output M passes the attention/denoising step
// M_c = sigmoid(Conv(ReLU(Conv(ReLU(Conv(|M|)))))), tau = M_c * |M|, M' = sign(M) max(|M| - tau,
// 0), and is added to the shortcut (the input subsampled by the stride, channels zero-padded). The
// paper names "three sequential 1-D convolutions with ReLU"; the last activation here is a sigmoid
// so that tau <= |M| as in deep residual shrinkage networks (Zhao et al. 2020). Uncertainty branch:
// input errors (2238) -> FC'1 16; concat Z -> 32; FC'2 64; FC'3 574; sigma = softplus(.) + 1e-4
// (positive). Initialisation: He-normal (fan-in, ReLU) for all weights, zero biases. Output basis
// (train.pca_components; issue #15's ablation): with K = 0 fc4 gives the 574 pixels of mu (the
// paper). With K > 0 fc4 gives K coefficients c of a PCA basis of the log SED and mu = exp(m + c
// B): the mean m [574] and the components B [K x 574] (each scaled by its standard deviation over
// the training targets, so that c has unit variance there) are buffers, saved with the weights and
// not trained.
#pragma once

#include <torch/torch.h>

#include <map>
#include <string>
#include <vector>

namespace csst::net {

constexpr int64_t kInputPixels = 2238;
constexpr int64_t kOutputPixels = 574;

// The six sub-units (input channels, output channels, stride) and the widths of the SED branch's
// fully connected layers (Z -> fc1 -> fc2 -> fc3 -> fc4 = mu), as in the header comment.
struct SubUnitSpec {
  int64_t in, out, stride;
};
constexpr SubUnitSpec kSubUnits[6] = {{4, 4, 2}, {4, 4, 1},  {4, 8, 2},
                                      {8, 8, 1}, {8, 16, 2}, {16, 16, 1}};
constexpr int64_t kSedWidths[5] = {16, 100, 200, 300, kOutputPixels};

class SubUnitImpl : public torch::nn::Module {
 public:
  SubUnitImpl(int64_t in_channels, int64_t out_channels, int64_t stride);
  torch::Tensor forward(const torch::Tensor& x);

 private:
  int64_t in_, out_, stride_;
  torch::nn::BatchNorm1d bn1_{nullptr}, bn2_{nullptr}, bn3_{nullptr}, bn4_{nullptr};
  torch::nn::Conv1d c1_{nullptr}, c2_{nullptr}, c3_{nullptr}, c4_{nullptr};
  torch::nn::Conv1d a1_{nullptr}, a2_{nullptr}, a3_{nullptr};  // attention M_c
};
TORCH_MODULE(SubUnit);

struct UaraOutput {
  torch::Tensor mu, sigma;                     // [batch, 574]
  std::map<std::string, torch::Tensor> trace;  // intermediate tensors when requested
};

class UaraNetImpl : public torch::nn::Module {
 public:
  explicit UaraNetImpl(int64_t pca_components = 0);
  int64_t pca_components() const { return pca_; }
  // Sets the PCA output basis (K > 0 only): mean [574], basis [K x 574].
  void SetOutputBasis(const torch::Tensor& mean, const torch::Tensor& basis);
  // flux, err: [batch, 2238]. With `keep_trace`, records every intermediate shape for tests.
  UaraOutput forward(const torch::Tensor& flux, const torch::Tensor& err, bool keep_trace = false);

 private:
  torch::nn::Conv1d stem_{nullptr};
  std::vector<SubUnit> units_;
  torch::nn::BatchNorm1d bn_out_{nullptr};
  torch::nn::Linear fc1_{nullptr}, fc2_{nullptr}, fc3_{nullptr}, fc4_{nullptr};
  torch::nn::Linear u1_{nullptr}, u2_{nullptr}, u3_{nullptr};
  int64_t pca_ = 0;
  torch::Tensor pca_mean_, pca_basis_;  // buffers when pca_ > 0
};
TORCH_MODULE(UaraNet);

// K independently initialised members (deep ensemble); K = 1 is the paper's single network.
class EnsembleImpl : public torch::nn::Module {
 public:
  explicit EnsembleImpl(int members = 1, int64_t pca_components = 0);
  int size() const { return static_cast<int>(members_.size()); }
  int64_t pca_components() const { return members_.front()->pca_components(); }
  UaraNet member(int k) const { return members_[k]; }

 private:
  std::vector<UaraNet> members_;
};
TORCH_MODULE(Ensemble);

// The paper's loss, summed over pixels and averaged over the batch:
// L = sum_i [ r_i^2 / (2 sigma_i^2) + log sigma_i + log Y_i ], r_i = (mu_i - Y_i) / Y_i.
// Pixels with mask = 0 do not count (mask: 1 = use). Y <= 0 pixels must be masked.
// beta > 0 is beta-NLL (Seitzer et al. 2022): each pixel's term weighted by sigma^(2 beta), the
// weight held constant in the gradient (beta = 0: the paper's loss; beta = 1: the mean's gradient
// of an MSE).
torch::Tensor GaussianNll(const torch::Tensor& mu, const torch::Tensor& sigma,
                          const torch::Tensor& target, const torch::Tensor& mask, double beta = 0);
// Relative squared error of the mean alone, sum_i r_i^2 over unmasked pixels averaged over the
// batch (the warm-up loss of train.loss = mse_warmup; sigma gets no gradient).
torch::Tensor RelativeMse(const torch::Tensor& mu, const torch::Tensor& target,
                          const torch::Tensor& mask);

void HeInit(torch::nn::Module& module);

}  // namespace csst::net
