#include "network/model.h"

#include <stdexcept>

namespace csst::net {
namespace F = torch::nn::functional;

namespace {
torch::nn::Conv1d Conv(int64_t in, int64_t out, int64_t stride) {
  return torch::nn::Conv1d(torch::nn::Conv1dOptions(in, out, 3).stride(stride).padding(1));
}
}  // namespace

SubUnitImpl::SubUnitImpl(int64_t in_channels, int64_t out_channels, int64_t stride)
    : in_(in_channels), out_(out_channels), stride_(stride) {
  bn1_ = register_module("bn1", torch::nn::BatchNorm1d(in_channels));
  c1_ = register_module("c1", Conv(in_channels, out_channels, stride));
  bn2_ = register_module("bn2", torch::nn::BatchNorm1d(out_channels));
  c2_ = register_module("c2", Conv(out_channels, out_channels, 1));
  bn3_ = register_module("bn3", torch::nn::BatchNorm1d(out_channels));
  c3_ = register_module("c3", Conv(out_channels, out_channels, 1));
  bn4_ = register_module("bn4", torch::nn::BatchNorm1d(out_channels));
  c4_ = register_module("c4", Conv(out_channels, out_channels, 1));
  a1_ = register_module("a1", Conv(out_channels, out_channels, 1));
  a2_ = register_module("a2", Conv(out_channels, out_channels, 1));
  a3_ = register_module("a3", Conv(out_channels, out_channels, 1));
}

torch::Tensor SubUnitImpl::forward(const torch::Tensor& x) {
  auto m = c1_(torch::relu(bn1_(x)));
  m = c2_(torch::relu(bn2_(m)));
  m = c3_(torch::relu(bn3_(m)));
  m = c4_(torch::relu(bn4_(m)));
  // Attention / soft-threshold denoising.
  const auto absm = m.abs();
  const auto mc = torch::sigmoid(a3_(torch::relu(a2_(torch::relu(a1_(absm))))));
  const auto tau = mc * absm;
  const auto shrunk = torch::sign(m) * torch::clamp_min(absm - tau, 0.0);
  // Shortcut: subsample by the stride, zero-pad the new channels.
  auto sc = stride_ > 1 ? x.slice(2, 0, c10::nullopt, stride_) : x;
  if (sc.size(2) != shrunk.size(2)) sc = sc.slice(2, 0, shrunk.size(2));
  if (out_ > in_) {
    sc = torch::cat({sc, torch::zeros({sc.size(0), out_ - in_, sc.size(2)}, sc.options())}, 1);
  }
  return shrunk + sc;
}

UaraNetImpl::UaraNetImpl(int64_t pca_components) : pca_(pca_components) {
  if (pca_ < 0 || pca_ > kOutputPixels)
    throw std::invalid_argument("UaraNet: pca_components must be in 0..574");
  stem_ = register_module("stem", Conv(1, 4, 2));
  for (int i = 0; i < 6; ++i) {
    const SubUnitSpec& s = kSubUnits[i];
    units_.push_back(register_module("unit" + std::to_string(i), SubUnit(s.in, s.out, s.stride)));
  }
  bn_out_ = register_module("bn_out", torch::nn::BatchNorm1d(16));
  fc1_ = register_module("fc1", torch::nn::Linear(kSedWidths[0], kSedWidths[1]));
  fc2_ = register_module("fc2", torch::nn::Linear(kSedWidths[1], kSedWidths[2]));
  fc3_ = register_module("fc3", torch::nn::Linear(kSedWidths[2], kSedWidths[3]));
  fc4_ = register_module("fc4", torch::nn::Linear(kSedWidths[3], pca_ > 0 ? pca_ : kSedWidths[4]));
  if (pca_ > 0) {
    pca_mean_ = register_buffer("pca_mean", torch::zeros({kOutputPixels}));
    pca_basis_ = register_buffer("pca_basis", torch::zeros({pca_, kOutputPixels}));
  }
  u1_ = register_module("u1", torch::nn::Linear(kInputPixels, 16));
  u2_ = register_module("u2", torch::nn::Linear(32, 64));
  u3_ = register_module("u3", torch::nn::Linear(64, kOutputPixels));
}

UaraOutput UaraNetImpl::forward(const torch::Tensor& flux, const torch::Tensor& err,
                                bool keep_trace) {
  UaraOutput out;
  auto h = stem_(flux.unsqueeze(1));
  if (keep_trace) out.trace["stem"] = h;
  for (size_t i = 0; i < units_.size(); ++i) {
    h = units_[i](h);
    if (keep_trace) out.trace["unit" + std::to_string(i)] = h;
  }
  h = torch::relu(bn_out_(h));
  const auto z = h.mean(2);  // global average pooling -> [batch, 16]
  if (keep_trace) out.trace["z"] = z;
  auto s = torch::relu(fc1_(z));
  s = torch::relu(fc2_(s));
  s = torch::relu(fc3_(s));
  out.mu = pca_ > 0 ? torch::exp(pca_mean_ + torch::matmul(fc4_(s), pca_basis_)) : fc4_(s);
  auto u = torch::relu(u1_(err));
  u = torch::cat({u, z}, 1);
  if (keep_trace) out.trace["uncertainty_concat"] = u;
  u = torch::relu(u2_(u));
  out.sigma = F::softplus(u3_(u)) + 1e-4;
  return out;
}

void UaraNetImpl::SetOutputBasis(const torch::Tensor& mean, const torch::Tensor& basis) {
  if (pca_ == 0 || mean.sizes() != pca_mean_.sizes() || basis.sizes() != pca_basis_.sizes())
    throw std::invalid_argument(
        "UaraNet::SetOutputBasis: needs pca_components > 0, mean [574] and basis [K x 574]");
  torch::NoGradGuard ng;
  pca_mean_.copy_(mean);
  pca_basis_.copy_(basis);
}

EnsembleImpl::EnsembleImpl(int members, int64_t pca_components) {
  for (int k = 0; k < members; ++k)
    members_.push_back(register_module("member" + std::to_string(k), UaraNet(pca_components)));
}

namespace {
// The target with masked pixels set to 1, so that r = (mu - Y) / Y and log Y stay finite there.
torch::Tensor SafeTarget(const torch::Tensor& target, const torch::Tensor& mask) {
  return torch::where(mask > 0, target, torch::ones_like(target));
}
}  // namespace

torch::Tensor GaussianNll(const torch::Tensor& mu, const torch::Tensor& sigma,
                          const torch::Tensor& target, const torch::Tensor& mask, double beta) {
  const auto safe_y = SafeTarget(target, mask);
  const auto r = (mu - safe_y) / safe_y;
  auto per_pixel = r * r / (2.0 * sigma * sigma) + torch::log(sigma) + torch::log(safe_y);
  if (beta > 0) per_pixel = per_pixel * sigma.detach().pow(2.0 * beta);
  return (per_pixel * mask).sum(1).mean();
}

torch::Tensor RelativeMse(const torch::Tensor& mu, const torch::Tensor& target,
                          const torch::Tensor& mask) {
  const auto safe_y = SafeTarget(target, mask);
  const auto r = (mu - safe_y) / safe_y;
  return (r * r * mask).sum(1).mean();
}

void HeInit(torch::nn::Module& module) {
  for (auto& p : module.named_parameters(/*recurse=*/true)) {
    const auto& name = p.key();
    auto& t = p.value();
    torch::NoGradGuard ng;
    if (name.find("bn") != std::string::npos) continue;  // BatchNorm keeps gamma = 1, beta = 0
    if (name.size() >= 6 && name.substr(name.size() - 6) == "weight") {
      torch::nn::init::kaiming_normal_(t, 0.0, torch::kFanIn, torch::kReLU);
    } else if (name.size() >= 4 && name.substr(name.size() - 4) == "bias") {
      t.zero_();
    }
  }
}

}  // namespace csst::net
