#include "flatfield/flat_fitter.h"

#include <ceres/ceres.h>

#include <Eigen/Dense>
#include <algorithm>
#include <cmath>

#include "core/errors.h"
#include "flatfield/residuals.h"

namespace csst {
namespace {

// The usable points' basis values and ratios divided by their sigma (n_points rows).
void WhitenedDesign(const std::vector<RatioPoint>& points, const FlatSlice& slice, int order,
                    Eigen::MatrixXd* a, Eigen::VectorXd* b) {
  const int n = NumCoefficients(order);
  a->resize(slice.n_points, n);
  b->resize(slice.n_points);
  std::vector<double> basis(static_cast<size_t>(n));
  int row = 0;
  for (const auto& p : points) {
    if (!(p.sigma > 0 && std::isfinite(p.ratio) && std::isfinite(p.sigma))) continue;
    FlatBasisInto(p.x, p.y, slice.nx, slice.ny, order, basis.data());
    const double inv = 1.0 / p.sigma;
    for (int k = 0; k < n; ++k) (*a)(row, k) = basis[static_cast<size_t>(k)] * inv;
    (*b)(row) = p.ratio / p.sigma;
    ++row;
  }
}

}  // namespace

ceres::LossFunction* MakeCeresLoss(FlatLoss loss, double a) {
  if (loss == FlatLoss::kHuber) return new ceres::HuberLoss(a);
  if (loss == FlatLoss::kCauchy) return new ceres::CauchyLoss(a);
  return nullptr;
}

FitTermination FitTerminationOf(ceres::TerminationType type) {
  const auto t = EnumFromName<FitTermination>(ceres::TerminationTypeToString(type));
  return t ? *t : FitTermination::kFailure;
}

// Ceres' HuberLoss(a): rho = s for s <= a^2, 2 a sqrt(s) - a^2 beyond; CauchyLoss(a): a^2 log(1 +
// s/a^2).
double LossRho(FlatLoss loss, double a, double s) {
  const double b = a * a;
  switch (loss) {
    case FlatLoss::kHuber:
      return s > b ? 2.0 * std::sqrt(b * s) - b : s;
    case FlatLoss::kCauchy:
      return b * std::log1p(s / b);
    default:
      return s;
  }
}

double LossWeight(FlatLoss loss, double a, double s) {
  const double b = a * a;
  switch (loss) {
    case FlatLoss::kHuber:
      return s > b ? std::sqrt(b / s) : 1.0;
    case FlatLoss::kCauchy:
      return 1.0 / (1.0 + s / b);
    default:
      return 1.0;
  }
}

double LossCurvature(FlatLoss loss, double a, double s) {
  const double b = a * a;
  double c = 1.0;
  switch (loss) {
    case FlatLoss::kHuber:
      c = s > b ? 0.0 : 1.0;
      break;
    case FlatLoss::kCauchy:
      c = (1.0 - s / b) / ((1.0 + s / b) * (1.0 + s / b));
      break;
    default:
      break;
  }
  return std::max(c, 1e-3 * LossWeight(loss, a, s));
}

void FlatFitOptions::Validate() const {
  auto fail = [](const std::string& m) { throw ConfigError("config error: " + m); };
  if (order < 0 || order > kMaxFlatOrder)
    fail("flatfield.order = " + std::to_string(order) +
         " violates 0 <= order <= " + std::to_string(kMaxFlatOrder));
  if (order_max < 0 || order_max > kMaxFlatOrder)
    fail("flatfield.order_max = " + std::to_string(order_max) +
         " violates 0 <= order_max <= " + std::to_string(kMaxFlatOrder));
  if (order_folds < 2 || order_folds > 50)
    fail("flatfield.order_folds = " + std::to_string(order_folds) +
         " violates 2 <= order_folds <= 50");
  if (!(loss_scale > 0)) fail("flatfield.loss_scale must be > 0");
  if (max_iterations < 1) fail("flatfield.max_iterations must be >= 1");
  if (smoothness < 0) fail("flatfield.smoothness must be >= 0");
  if (min_points < 1) fail("flatfield.min_points must be >= 1");
  if (lack_of_fit_partners < 1) fail("flatfield.lackfit_partners must be >= 1");
  if (!(lack_of_fit_separation > 0))
    fail("flatfield.lackfit_separation must be > 0 (detector pixels)");
}

int NumCoefficients(int order) { return (order + 1) * (order + 2) / 2; }

std::vector<double> FlatBasis(double x, double y, double nx, double ny, int order) {
  std::vector<double> b(static_cast<size_t>(NumCoefficients(order)));
  FlatBasisInto(x, y, nx, ny, order, b.data());
  return b;
}

double FlatSlice::Evaluate(double x, double y) const {
  const size_t n = coeffs.size();
  if (n == static_cast<size_t>(NumCoefficients(order)) && n <= 16) {
    double b[16];
    FlatBasisInto(x, y, nx, ny, order, b);
    double s = 0;
    for (size_t k = 0; k < n; ++k) s += coeffs[k] * b[k];
    return s;
  }
  return EvaluateBasis(FlatBasis(x, y, nx, ny, order));
}

double FlatSlice::Sigma(double x, double y) const {
  return SigmaBasis(FlatBasis(x, y, nx, ny, order));
}

double FlatSlice::EvaluateBasis(const std::vector<double>& b) const {
  double s = 0;
  for (size_t k = 0; k < b.size() && k < coeffs.size(); ++k) s += coeffs[k] * b[k];
  return s;
}

double FlatSlice::SigmaBasis(const std::vector<double>& b) const {
  const size_t n = coeffs.size();
  if (covariance.size() != n * n || b.size() < n) return 0.0;
  double v = 0;
  for (size_t i = 0; i < n; ++i)
    for (size_t j = 0; j < n; ++j) v += b[i] * covariance[i * n + j] * b[j];
  return v > 0 ? std::sqrt(v) : 0.0;
}

FlatFitter::FlatFitter(FlatFitOptions options) : options_(std::move(options)) {
  options_.Validate();
}

// Without a robust loss the fit is linear: weighted least squares in closed form (column-pivoting
// Householder QR of the whitened design, covariance (A^T A)^-1 from R), the same minimum Ceres
// finds iteratively (tested to 1e-10) at a fraction of the cost.
FlatSlice FlatFitter::FitClosedForm(const std::vector<RatioPoint>& points, FlatSlice slice) const {
  const int n = NumCoefficients(options_.order);
  Eigen::MatrixXd a;
  Eigen::VectorXd b;
  WhitenedDesign(points, slice, options_.order, &a, &b);
  const Eigen::ColPivHouseholderQR<Eigen::MatrixXd> qr(a);
  const bool full_rank = qr.rank() == n;
  const Eigen::VectorXd c = qr.solve(b);
  for (int k = 0; k < n; ++k) slice.coeffs[static_cast<size_t>(k)] = c(k);
  const Eigen::VectorXd z = b - a * c;
  slice.final_cost = 0.5 * z.squaredNorm();
  slice.termination = FitTermination::kConvergence;
  slice.message = "closed form (weighted least squares, QR)";
  if (full_rank) {
    // (A^T A)^-1 = P R^-1 R^-T P^T.
    const Eigen::MatrixXd r = qr.matrixR().topLeftCorner(n, n).triangularView<Eigen::Upper>();
    const Eigen::MatrixXd r_inv =
        r.triangularView<Eigen::Upper>().solve(Eigen::MatrixXd::Identity(n, n));
    const Eigen::MatrixXd cov_p = r_inv * r_inv.transpose();
    const auto& perm = qr.colsPermutation();
    const Eigen::MatrixXd cov = perm * cov_p * perm.transpose();
    slice.covariance.assign(static_cast<size_t>(n) * n, 0.0);
    for (int i = 0; i < n; ++i)
      for (int j = 0; j < n; ++j) slice.covariance[static_cast<size_t>(i) * n + j] = cov(i, j);
  } else {
    slice.message += "; covariance failed (rank-deficient design?)";
  }
  slice.converged = full_rank;
  return slice;
}

// Robust loss: Gauss-Newton on the re-weighted problem (weights w = rho'(e^2)), which is the step
// Ceres takes for losses with rho'' <= 0 (its Corrector then only scales by sqrt(rho')), here with
// a Levenberg-Marquardt safeguard so that the robust cost never increases. Converged when the cost
// changes by less than 1e-14 relative, or the step by less than 1e-12 (Ceres' tolerances, tighter).
// Covariance: (sum w b b^T / sigma^2)^-1 at the solution, which is what ceres::Covariance gives.
FlatSlice FlatFitter::FitReweighted(const std::vector<RatioPoint>& points, FlatSlice slice) const {
  const int n = NumCoefficients(options_.order);
  const int m = slice.n_points;
  Eigen::MatrixXd a;  // whitened design
  Eigen::VectorXd b;
  WhitenedDesign(points, slice, options_.order, &a, &b);
  const FlatLoss loss = options_.loss;
  const double scale = options_.loss_scale;
  auto cost_of = [&](const Eigen::VectorXd& c, Eigen::VectorXd* w) {
    const Eigen::VectorXd e = b - a * c;
    double cost = 0;
    for (int i = 0; i < m; ++i) {
      const double s2 = e(i) * e(i);
      cost += 0.5 * LossRho(loss, scale, s2);
      if (w) (*w)(i) = LossWeight(loss, scale, s2);
    }
    return cost;
  };
  Eigen::VectorXd c = Eigen::Map<const Eigen::VectorXd>(slice.coeffs.data(), n);
  Eigen::VectorXd w(m);
  double cost = cost_of(c, &w);
  double mu =
      1e-4;  // LM damping relative to the normal matrix's diagonal (Ceres' initial radius 1e4)
  int iterations = 0;
  bool converged = false;
  for (; iterations < options_.max_iterations && !converged; ++iterations) {
    const Eigen::MatrixXd wa = w.asDiagonal() * a;
    const Eigen::MatrixXd h = a.transpose() * wa;
    const Eigen::VectorXd g = wa.transpose() * (b - a * c);  // minus the gradient
    bool accepted = false;
    while (!accepted) {
      Eigen::MatrixXd hd = h;
      for (int k = 0; k < n; ++k) hd(k, k) += mu * std::clamp(h(k, k), 1e-6, 1e32);
      const Eigen::VectorXd step = hd.ldlt().solve(g);
      const Eigen::VectorXd trial = c + step;
      Eigen::VectorXd w_trial(m);
      const double trial_cost = cost_of(trial, &w_trial);
      if (std::isfinite(trial_cost) && trial_cost <= cost) {
        converged = cost - trial_cost <= 1e-14 * cost || step.norm() <= 1e-12 * (c.norm() + 1e-12);
        c = trial;
        w = w_trial;
        cost = trial_cost;
        mu = std::max(mu / 3.0, 1e-16);
        accepted = true;
      } else {
        mu *= 10.0;
        if (mu > 1e16) {
          converged = true;  // no descent direction left: at the minimum to working precision
          break;
        }
      }
    }
  }
  for (int k = 0; k < n; ++k) slice.coeffs[static_cast<size_t>(k)] = c(k);
  slice.final_cost = cost;
  slice.termination = converged ? FitTermination::kConvergence : FitTermination::kNoConvergence;
  slice.message = "re-weighted least squares (" + std::string(ToString(loss)) + " loss), " +
                  std::to_string(iterations) + " iterations";
  const Eigen::MatrixXd h = a.transpose() * w.asDiagonal() * a;
  const Eigen::LDLT<Eigen::MatrixXd> ldlt(h);
  const bool full_rank = ldlt.info() == Eigen::Success && ldlt.isPositive() &&
                         ldlt.vectorD().minCoeff() > 0 &&
                         ldlt.vectorD().minCoeff() > 1e-13 * ldlt.vectorD().maxCoeff();
  if (full_rank) {
    const Eigen::MatrixXd cov = ldlt.solve(Eigen::MatrixXd::Identity(n, n));
    slice.covariance.assign(static_cast<size_t>(n) * n, 0.0);
    for (int i = 0; i < n; ++i)
      for (int j = 0; j < n; ++j) slice.covariance[static_cast<size_t>(i) * n + j] = cov(i, j);
  } else {
    slice.message += "; covariance failed (rank-deficient design?)";
  }
  slice.converged = converged && full_rank;
  return slice;
}

FlatSlice FlatFitter::Prepare(const std::vector<RatioPoint>& points, double nx, double ny) const {
  FlatSlice slice;
  slice.nx = nx;
  slice.ny = ny;
  slice.order = options_.order;
  const int n = NumCoefficients(options_.order);
  slice.coeffs.assign(n, 0.0);
  slice.coeffs[0] = 1.0;
  int used = 0;
  for (const auto& p : points)
    used += (p.sigma > 0 && std::isfinite(p.ratio) && std::isfinite(p.sigma));
  slice.n_points = used;
  slice.termination = FitTermination::kNoConvergence;  // until a solver says otherwise
  if (used < n) {
    slice.termination = FitTermination::kNotRun;
    slice.message = "too few points: " + std::to_string(used) + " usable for " + std::to_string(n) +
                    " coefficients";
  }
  return slice;
}

FlatSlice FlatFitter::Fit(const std::vector<RatioPoint>& points, double nx, double ny) const {
  FlatSlice slice = Prepare(points, nx, ny);
  if (slice.termination == FitTermination::kNotRun) return slice;
  if (options_.loss != FlatLoss::kNone) return FitReweighted(points, std::move(slice));
  return FitClosedForm(points, std::move(slice));
}

FlatSlice FlatFitter::FitWithCeres(const std::vector<RatioPoint>& points, double nx,
                                   double ny) const {
  FlatSlice slice = Prepare(points, nx, ny);
  if (slice.termination == FitTermination::kNotRun) return slice;
  const int n = NumCoefficients(options_.order);
  ceres::Problem problem;
  for (const auto& p : points) {
    if (!(p.sigma > 0 && std::isfinite(p.ratio) && std::isfinite(p.sigma))) continue;
    auto* cost = new ceres::DynamicAutoDiffCostFunction<RatioResidual<false>, 8>(
        new RatioResidual<false>(FlatBasis(p.x, p.y, nx, ny, options_.order), p.ratio, p.sigma));
    cost->AddParameterBlock(n);
    cost->SetNumResiduals(1);
    problem.AddResidualBlock(cost, MakeCeresLoss(options_.loss, options_.loss_scale),
                             slice.coeffs.data());
  }
  ceres::Solver::Options so;
  so.linear_solver_type = ceres::DENSE_QR;
  so.max_num_iterations = options_.max_iterations;
  so.function_tolerance = 1e-15;  // the reference: converged further than the closed forms' 1e-14
  so.gradient_tolerance = 1e-16;
  so.parameter_tolerance = 1e-15;
  so.num_threads = 1;  // parallelism is over slices
  so.logging_type = ceres::SILENT;
  ceres::Solver::Summary summary;
  ceres::Solve(so, &problem, &summary);
  slice.termination = FitTerminationOf(summary.termination_type);
  slice.message = summary.message;
  slice.final_cost = summary.final_cost;

  ceres::Covariance::Options co;
  co.algorithm_type = ceres::DENSE_SVD;
  co.num_threads = 1;
  ceres::Covariance cov(co);
  std::vector<std::pair<const double*, const double*>> blocks = {
      {slice.coeffs.data(), slice.coeffs.data()}};
  bool cov_ok = cov.Compute(blocks, &problem);
  if (cov_ok) {
    slice.covariance.assign(static_cast<size_t>(n) * n, 0.0);
    cov_ok =
        cov.GetCovarianceBlock(slice.coeffs.data(), slice.coeffs.data(), slice.covariance.data());
  }
  if (!cov_ok) {
    slice.covariance.clear();
    slice.message += "; covariance failed (rank-deficient design?)";
  }
  slice.converged = summary.termination_type == ceres::CONVERGENCE && cov_ok;
  return slice;
}

}  // namespace csst
