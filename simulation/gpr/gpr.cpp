#include "simulation/gpr/gpr.h"

#include <ceres/ceres.h>

#include <cmath>

#include "core/errors.h"

namespace csst {

Gpr::Gpr(Eigen::MatrixXd x, Eigen::MatrixXd y) : y_(std::move(y)) {
  if (x.rows() != y_.rows() || x.rows() < 2) {
    throw Error("GPR: need >= 2 training rows and as many outputs as inputs (got " + std::to_string(x.rows()) +
                " inputs, " + std::to_string(y_.rows()) + " outputs)");
  }
  mean_ = x.colwise().mean();
  std_ = ((x.rowwise() - mean_).array().square().colwise().sum() / static_cast<double>(x.rows())).sqrt();
  for (int j = 0; j < std_.size(); ++j)
    if (!(std_(j) > 0)) std_(j) = 1.0;
  x_ = (x.rowwise() - mean_).array().rowwise() / std_.array();
  const int n = static_cast<int>(x_.rows());
  sqdist_.resize(n, n);
  for (int i = 0; i < n; ++i)
    for (int j = 0; j < n; ++j) sqdist_(i, j) = (x_.row(i) - x_.row(j)).squaredNorm();
  SetHyper(hyper_);
}

Eigen::MatrixXd Gpr::KernelMatrix(const Eigen::MatrixXd& a, const Eigen::MatrixXd& b) const {
  Eigen::MatrixXd k(a.rows(), b.rows());
  const double f2 = hyper_.sigma_f * hyper_.sigma_f, l2 = hyper_.ell * hyper_.ell;
  for (int i = 0; i < a.rows(); ++i)
    for (int j = 0; j < b.rows(); ++j) k(i, j) = f2 * std::exp(-(a.row(i) - b.row(j)).squaredNorm() / (2 * l2));
  return k;
}

void Gpr::SetHyper(const GprHyper& h) {
  hyper_ = h;
  const int n = static_cast<int>(x_.rows());
  const double f2 = h.sigma_f * h.sigma_f;
  Eigen::MatrixXd k = (-sqdist_.array() / (2 * h.ell * h.ell)).exp().matrix() * f2;
  k.diagonal().array() += h.sigma_n * h.sigma_n;
  double jitter = 0;
  for (int attempt = 0; attempt < 6; ++attempt) {
    Eigen::MatrixXd kj = k;
    kj.diagonal().array() += jitter;
    llt_.compute(kj);
    if (llt_.info() == Eigen::Success) break;
    jitter = jitter == 0 ? 1e-12 * f2 : jitter * 10;
    if (attempt == 5) {
      throw Error("GPR: the kernel matrix is not positive definite even with jitter " + std::to_string(jitter) +
                  " (sigma_f = " + std::to_string(h.sigma_f) + ", sigma_n = " + std::to_string(h.sigma_n) +
                  ", l = " + std::to_string(h.ell) + ")");
    }
  }
  alpha_ = llt_.solve(y_);
  const double m = static_cast<double>(y_.cols());
  double logdet = 0;
  const Eigen::MatrixXd l = llt_.matrixL();
  for (int i = 0; i < n; ++i) logdet += 2 * std::log(l(i, i));
  lml_ = -0.5 * (y_.array() * alpha_.array()).sum() - 0.5 * m * logdet - 0.5 * n * m * std::log(2 * M_PI);
}

Eigen::Vector3d Gpr::Gradient() const {
  const int n = static_cast<int>(x_.rows());
  const double m = static_cast<double>(y_.cols());
  const double f2 = hyper_.sigma_f * hyper_.sigma_f, l2 = hyper_.ell * hyper_.ell;
  const Eigen::MatrixXd kf = (-sqdist_.array() / (2 * l2)).exp().matrix() * f2;
  const Eigen::MatrixXd kinv = llt_.solve(Eigen::MatrixXd::Identity(n, n));
  // dL/dtheta = 1/2 tr((alpha alpha^T - m K^-1) dK/dtheta)
  const Eigen::MatrixXd w = alpha_ * alpha_.transpose() - m * kinv;
  Eigen::Vector3d g;
  g(0) = 0.5 * (w.array() * (2 * kf).array()).sum();                          // d/d ln sigma_f
  g(1) = 0.5 * w.trace() * 2 * hyper_.sigma_n * hyper_.sigma_n;               // d/d ln sigma_n
  g(2) = 0.5 * (w.array() * (kf.array() * sqdist_.array() / l2)).sum();       // d/d ln l
  return g;
}

namespace {
class NegLml final : public ceres::FirstOrderFunction {
 public:
  NegLml(Gpr* g, double lo_ell, double hi_ell) : g_(g), lo_(std::log(lo_ell)), hi_(std::log(hi_ell)) {}
  bool Evaluate(const double* p, double* cost, double* grad) const override {
    // Bounds by clamping: ln sigma_f in [-10, 5], ln sigma_n in [-12, 2], ln l in [lo, hi].
    const double lf = std::clamp(p[0], -10.0, 5.0), ln = std::clamp(p[1], -12.0, 2.0), ll = std::clamp(p[2], lo_, hi_);
    try {
      g_->SetHyper({std::exp(lf), std::exp(ln), std::exp(ll)});
    } catch (const Error&) {
      return false;
    }
    *cost = -g_->LogMarginalLikelihood();
    if (grad) {
      const auto gr = g_->Gradient();
      grad[0] = p[0] == lf ? -gr(0) : 0.0;
      grad[1] = p[1] == ln ? -gr(1) : 0.0;
      grad[2] = p[2] == ll ? -gr(2) : 0.0;
    }
    return true;
  }
  int NumParameters() const override { return 3; }

 private:
  Gpr* g_;
  double lo_, hi_;
};
}  // namespace

GprOptimizeResult Gpr::Optimize(int starts, double min_ell, double max_ell) {
  GprOptimizeResult res;
  double best = -1e300;
  const double sy = std::sqrt((y_.array() - y_.mean()).square().mean());
  for (int s = 0; s < starts; ++s) {
    // Deterministic starts spread in ln l and ln sigma_f.
    double p[3] = {std::log(std::max(sy, 1e-6)) + 0.5 * (s % 3 - 1), std::log(std::max(0.01 * sy, 1e-6)),
                   std::log(std::clamp(0.5 * std::pow(2.0, s), min_ell, max_ell))};
    ceres::GradientProblem problem(new NegLml(this, min_ell, max_ell));
    ceres::GradientProblemSolver::Options o;
    o.line_search_direction_type = ceres::LBFGS;
    o.max_num_iterations = 200;
    o.logging_type = ceres::SILENT;
    ceres::GradientProblemSolver::Summary summary;
    ceres::Solve(o, problem, p, &summary);
    const GprHyper h{std::exp(std::clamp(p[0], -10.0, 5.0)), std::exp(std::clamp(p[1], -12.0, 2.0)),
                     std::exp(std::clamp(p[2], std::log(min_ell), std::log(max_ell)))};
    SetHyper(h);
    ++res.starts;
    if (lml_ > best) {
      best = lml_;
      res.best = h;
      res.termination = ceres::TerminationTypeToString(summary.termination_type);
    }
  }
  SetHyper(res.best);
  res.log_marginal_likelihood = lml_;
  return res;
}

void Gpr::Predict(const Eigen::MatrixXd& xq, Eigen::MatrixXd* mean, Eigen::MatrixXd* var) const {
  const Eigen::MatrixXd z = (xq.rowwise() - mean_).array().rowwise() / std_.array();
  const Eigen::MatrixXd ks = KernelMatrix(z, x_);  // q x n
  *mean = ks * alpha_;
  if (var) {
    const Eigen::MatrixXd v = llt_.matrixL().solve(ks.transpose());  // n x q
    const Eigen::VectorXd latent = (hyper_.sigma_f * hyper_.sigma_f - v.array().square().colwise().sum().transpose()).max(0.0);
    *var = latent.replicate(1, y_.cols());
  }
}

}  // namespace csst
