// Ceres cost functor shared by the per-slice and the joint flat fits (internal to flatfield/).
#pragma once

#include <ceres/types.h>

#include <vector>

#include "flatfield/flat_fitter.h"

namespace ceres {
class LossFunction;
}

namespace csst {

// Ceres' termination type as a FitTermination (the same name).
FitTermination FitTerminationOf(ceres::TerminationType type);

// The Ceres loss of a FlatLoss (nullptr for none); the caller owns it.
ceres::LossFunction* MakeCeresLoss(FlatLoss loss, double a);

// Residual (ratio - s * sum_k c_k B_k) / sigma for one ratio point; the basis values B_k are
// fixed data (Ceres examples/curve_fitting.cc). kScaled: a second parameter block holds the star's
// scale s (joint fit); otherwise s = 1.
template <bool kScaled>
struct RatioResidual {
  RatioResidual(std::vector<double> basis, double ratio, double sigma)
      : basis_(std::move(basis)), ratio_(ratio), inv_sigma_(1.0 / sigma) {}
  template <typename T>
  bool operator()(T const* const* params, T* residual) const {
    T model = T(0.0);
    for (size_t k = 0; k < basis_.size(); ++k) model += params[0][k] * basis_[k];
    if constexpr (kScaled) model *= params[1][0];
    residual[0] = (T(ratio_) - model) * inv_sigma_;
    return true;
  }
  std::vector<double> basis_;
  double ratio_, inv_sigma_;
};

}  // namespace csst
