#include "simulation/gpr/gpr.h"

#include <ceres/ceres.h>
#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>
#include <tbb/partitioner.h>

#include <algorithm>
#include <array>
#include <cmath>

#include "core/errors.h"

namespace csst {

namespace {
constexpr Eigen::Index kColumnBlock = 64;

// Column blocks of a dense result computed on TBB (Eigen's own products run on one thread here).
// simple_partitioner with a fixed grain gives the same blocks, hence the same bits, for any
// number of threads.
template <typename F>
void ForColumnBlocks(Eigen::Index cols, F&& f) {
  tbb::parallel_for(
      tbb::blocked_range<Eigen::Index>(0, cols, kColumnBlock),
      [&](const tbb::blocked_range<Eigen::Index>& r) { f(r.begin(), r.end() - r.begin()); },
      tbb::simple_partitioner());
}

Eigen::MatrixXd ParallelProduct(const Eigen::MatrixXd& a, const Eigen::MatrixXd& b) {
  Eigen::MatrixXd c(a.rows(), b.cols());
  ForColumnBlocks(b.cols(), [&](Eigen::Index j, Eigen::Index w) {
    c.middleCols(j, w).noalias() = a * b.middleCols(j, w);
  });
  return c;
}

Eigen::MatrixXd ParallelSolve(const Eigen::LLT<Eigen::MatrixXd>& llt, const Eigen::MatrixXd& b) {
  Eigen::MatrixXd x(b.rows(), b.cols());
  ForColumnBlocks(b.cols(), [&](Eigen::Index j, Eigen::Index w) {
    x.middleCols(j, w) = llt.solve(b.middleCols(j, w));
  });
  return x;
}

// Bounds of the log-parameters (enforced by clamping).
constexpr double kLnSigmaFMin = -10, kLnSigmaFMax = 5, kLnSigmaNMin = -12, kLnSigmaNMax = 2;
}  // namespace

Gpr::Gpr(Eigen::MatrixXd x, Eigen::MatrixXd y) : y_(std::move(y)) {
  if (x.rows() != y_.rows() || x.rows() < 2) {
    throw Error("GPR: need >= 2 training rows and as many outputs as inputs (got " +
                std::to_string(x.rows()) + " inputs, " + std::to_string(y_.rows()) + " outputs)");
  }
  if (!x.allFinite() || !y_.allFinite())
    throw Error("GPR: training inputs or outputs contain NaN or infinity");
  mean_ = x.colwise().mean();
  std_ = ((x.rowwise() - mean_).array().square().colwise().sum() / static_cast<double>(x.rows()))
             .sqrt();
  for (int j = 0; j < std_.size(); ++j)
    if (!(std_(j) > 0)) std_(j) = 1.0;
  x_ = (x.rowwise() - mean_).array().rowwise() / std_.array();
  const int n = static_cast<int>(x_.rows());
  sqdist_.resize(n, n);
  for (int i = 0; i < n; ++i)
    for (int j = 0; j < n; ++j) sqdist_(i, j) = (x_.row(i) - x_.row(j)).squaredNorm();
  s_ = ParallelProduct(y_, y_.transpose());
  SetHyper(hyper_);
}

Eigen::MatrixXd Gpr::KernelMatrix(const Eigen::MatrixXd& a, const Eigen::MatrixXd& b) const {
  Eigen::MatrixXd k(a.rows(), b.rows());
  const double f2 = hyper_.sigma_f * hyper_.sigma_f, l2 = hyper_.ell * hyper_.ell;
  for (int i = 0; i < a.rows(); ++i)
    for (int j = 0; j < b.rows(); ++j)
      k(i, j) = f2 * std::exp(-(a.row(i) - b.row(j)).squaredNorm() / (2 * l2));
  return k;
}

void Gpr::Factorise(const GprHyper& h, bool with_alpha) {
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
      throw Error("GPR: the kernel matrix is not positive definite even with jitter " +
                  std::to_string(jitter) + " (sigma_f = " + std::to_string(h.sigma_f) +
                  ", sigma_n = " + std::to_string(h.sigma_n) + ", l = " + std::to_string(h.ell) +
                  ")");
    }
  }
  hyper_ = h;
  kinv_ = ParallelSolve(llt_, Eigen::MatrixXd::Identity(n, n));
  const double m = static_cast<double>(y_.cols());
  logdet_ = 2 * llt_.matrixLLT().diagonal().array().log().sum();
  trace_ = (kinv_.array() * s_.array()).sum();  // tr(K^-1 S) = tr(Y^T K^-1 Y)
  lml_ = -0.5 * trace_ - 0.5 * m * logdet_ - 0.5 * n * m * std::log(2 * M_PI);
  if (with_alpha) alpha_ = ParallelSolve(llt_, y_);
}

void Gpr::SetHyper(const GprHyper& h) { Factorise(h, true); }

Eigen::Vector3d Gpr::Gradient() const {
  const double m = static_cast<double>(y_.cols());
  const double f2 = hyper_.sigma_f * hyper_.sigma_f, l2 = hyper_.ell * hyper_.ell;
  const Eigen::MatrixXd kf = (-sqdist_.array() / (2 * l2)).exp().matrix() * f2;
  // dL/dtheta = 1/2 tr((K^-1 S K^-1 - m K^-1) dK/dtheta)
  const Eigen::MatrixXd w = ParallelProduct(ParallelProduct(kinv_, s_), kinv_) - m * kinv_;
  Eigen::Vector3d g;
  g(0) = 0.5 * (w.array() * (2 * kf).array()).sum();                     // d/d ln sigma_f
  g(1) = 0.5 * w.trace() * 2 * hyper_.sigma_n * hyper_.sigma_n;          // d/d ln sigma_n
  g(2) = 0.5 * (w.array() * (kf.array() * sqdist_.array() / l2)).sum();  // d/d ln l
  return g;
}

// The log marginal likelihood with sigma_f^2 profiled out, over p = (ln eta, ln l), as a cost to
// minimise. With K = sigma_f^2 B, B = R + eta I, q = tr(B^-1 S): sigma_f^2 = q / (n m) and L_p =
// -nm/2 (1 + ln(q / nm) + ln 2 pi) - m/2 ln|B|; dL_p/dtheta = nm/2 tr(A dB)/q - m/2 tr(B^-1 dB), A
// = B^-1 S B^-1.
class GprProfiledObjective final : public ceres::FirstOrderFunction {
 public:
  GprProfiledObjective(Gpr* g, double min_ell, double max_ell, int* evaluations)
      : g_(g), lo_(std::log(min_ell)), hi_(std::log(max_ell)), evaluations_(evaluations) {}
  static constexpr double kLnEtaMin = 2 * (kLnSigmaNMin - kLnSigmaFMax), kLnEtaMax = 4;
  GprHyper Unit(const double* p) const {
    return {1.0, std::exp(0.5 * std::clamp(p[0], kLnEtaMin, kLnEtaMax)),
            std::exp(std::clamp(p[1], lo_, hi_))};
  }
  bool Evaluate(const double* p, double* cost, double* grad) const override {
    ++*evaluations_;
    const GprHyper h = Unit(p);
    try {
      g_->Factorise(h, false);
    } catch (const Error&) {
      return false;
    }
    const double n = static_cast<double>(g_->x_.rows()), m = static_cast<double>(g_->y_.cols());
    const double q = g_->trace_;
    if (!(q > 0)) return false;
    *cost = 0.5 * n * m * (1 + std::log(q / (n * m)) + std::log(2 * M_PI)) + 0.5 * m * g_->logdet_;
    if (grad) {
      const Eigen::MatrixXd& kinv = g_->kinv_;
      const Eigen::MatrixXd a = ParallelProduct(ParallelProduct(kinv, g_->s_), kinv);
      const double eta = h.sigma_n * h.sigma_n, l2 = h.ell * h.ell;
      const Eigen::ArrayXXd e =
          (-g_->sqdist_.array() / (2 * l2)).exp() * g_->sqdist_.array() / l2;  // dB/d ln l
      const double d_eta = 0.5 * n * m * eta * a.trace() / q - 0.5 * m * eta * kinv.trace();
      const double d_ell =
          0.5 * n * m * (a.array() * e).sum() / q - 0.5 * m * (kinv.array() * e).sum();
      const bool free_eta = p[0] > kLnEtaMin && p[0]<kLnEtaMax, free_ell = p[1]> lo_ && p[1] < hi_;
      grad[0] = free_eta ? -d_eta : 0.0;
      grad[1] = free_ell ? -d_ell : 0.0;
    }
    return true;
  }
  int NumParameters() const override { return 2; }

 private:
  Gpr* g_;
  double lo_, hi_;
  int* evaluations_;
};

GprOptimizeResult Gpr::Optimize(int starts, double min_ell, double max_ell) {
  GprOptimizeResult res;
  double best = -1e300;
  const double n = static_cast<double>(x_.rows()), m = static_cast<double>(y_.cols());
  std::vector<std::array<double, 2>> optima;
  for (int s = 0; s < starts; ++s) {
    // Deterministic starts spread in ln l (z-scored inputs: 0.5, 1, 2, 4, ...) and ln eta.
    auto* objective = new GprProfiledObjective(this, min_ell, max_ell, &res.evaluations);
    double p[2] = {std::log(1e-4) + 2.0 * (s % 2),
                   std::log(std::clamp(0.5 * std::pow(2.0, s), min_ell, max_ell))};
    ceres::GradientProblem problem(objective);
    ceres::GradientProblemSolver::Options o;
    o.line_search_direction_type = ceres::LBFGS;
    o.max_num_iterations = 200;
    o.logging_type = ceres::SILENT;
    ceres::GradientProblemSolver::Summary summary;
    ceres::Solve(o, problem, p, &summary);
    GprHyper h = objective->Unit(p);
    Factorise(h, false);
    const double f2 = trace_ / (n * m);
    h = {std::sqrt(f2), h.sigma_n * std::sqrt(f2), h.ell};
    // Keep sigma_f and sigma_n inside their bounds.
    h.sigma_f = std::clamp(h.sigma_f, std::exp(kLnSigmaFMin), std::exp(kLnSigmaFMax));
    h.sigma_n = std::clamp(h.sigma_n, std::exp(kLnSigmaNMin), std::exp(kLnSigmaNMax));
    Factorise(h, false);
    ++res.starts;
    if (lml_ > best) {
      best = lml_;
      res.best = h;
      res.termination = ceres::TerminationTypeToString(summary.termination_type);
    }
    // Two starts that end at the same optimum (to 1 % in eta and l) settle it: stop restarting.
    const std::array<double, 2> here = {std::log(h.sigma_n / h.sigma_f), std::log(h.ell)};
    bool agree = false;
    for (const auto& o : optima)
      agree = agree || (std::abs(o[0] - here[0]) < 0.01 && std::abs(o[1] - here[1]) < 0.01);
    optima.push_back(here);
    if (agree) break;
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
    const Eigen::VectorXd latent =
        (hyper_.sigma_f * hyper_.sigma_f - v.array().square().colwise().sum().transpose()).max(0.0);
    *var = latent.replicate(1, y_.cols());
  }
}

}  // namespace csst
