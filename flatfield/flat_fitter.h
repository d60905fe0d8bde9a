// Per-wavelength fit of the large-scale flat over a detector (paper Sec. 5: a 2nd-order 2D
// polynomial fitted to observed / predicted flux ratios).
//
// Model: F(x, y) = sum_{i + j <= order} c_ij P_i(u) P_j(v), with u, v the detector coordinates
// mapped to [-1, 1] (u = 2 x / (nx - 1) - 1 over pixel indices 0..nx-1) and P_k the Legendre
// polynomials. Coefficient order: by total degree d = i + j ascending, and within a degree by
// decreasing power of u: (0,0), (1,0), (0,1), (2,0), (1,1), (0,2), ... where (i, j) = (power of u,
// power of v). Legendre rather than monomials keeps the normal matrix well conditioned.
#pragma once

#include <string>
#include <vector>

#include "core/enum_names.h"

namespace csst {

// Robust loss on the normalised residual e (Ceres' HuberLoss / CauchyLoss of scale a on s = e^2).
enum class FlatLoss { kNone, kHuber, kCauchy };
inline constexpr EnumNames<FlatLoss, 3> kFlatLossNames = {
    {{FlatLoss::kNone, "none"}, {FlatLoss::kHuber, "huber"}, {FlatLoss::kCauchy, "cauchy"}}};
constexpr const auto& NamesOf(FlatLoss) { return kFlatLossNames; }
// independent: one fit per (detector, wavelength), absolute fluxes known; joint: per-star scales
// fitted too (unknown flux).
enum class FlatFitMode { kIndependent, kJoint };
inline constexpr EnumNames<FlatFitMode, 2> kFlatFitModeNames = {
    {{FlatFitMode::kIndependent, "independent"}, {FlatFitMode::kJoint, "joint"}}};
constexpr const auto& NamesOf(FlatFitMode) { return kFlatFitModeNames; }
// Solver of the joint fit (flatfield/joint_solver.h): the structured LM (schur) or the same problem
// posed to Ceres (ceres; the reference, ~15x slower).
enum class FlatJointSolver { kSchur, kCeres };
inline constexpr EnumNames<FlatJointSolver, 2> kFlatJointSolverNames = {
    {{FlatJointSolver::kSchur, "schur"}, {FlatJointSolver::kCeres, "ceres"}}};
constexpr const auto& NamesOf(FlatJointSolver) { return kFlatJointSolverNames; }
// The flat's degree: `order` for every band (fixed), or per band by k-fold cross-validation over
// stars among 0..order_max (kfold, flatfield/order_select.h).
enum class FlatOrderSelect { kFixed, kKFold };
inline constexpr EnumNames<FlatOrderSelect, 2> kFlatOrderSelectNames = {
    {{FlatOrderSelect::kFixed, "fixed"}, {FlatOrderSelect::kKFold, "kfold"}}};
constexpr const auto& NamesOf(FlatOrderSelect) { return kFlatOrderSelectNames; }
// How a fit ended: Ceres' termination types, by Ceres' names (the structured solvers use the same),
// and NOT_RUN for a fit that did not run (too few points; a cube's joint termination in independent
// mode).
enum class FitTermination {
  kConvergence,
  kNoConvergence,
  kFailure,
  kUserSuccess,
  kUserFailure,
  kNotRun
};
inline constexpr EnumNames<FitTermination, 6> kFitTerminationNames = {
    {{FitTermination::kConvergence, "CONVERGENCE"},
     {FitTermination::kNoConvergence, "NO_CONVERGENCE"},
     {FitTermination::kFailure, "FAILURE"},
     {FitTermination::kUserSuccess, "USER_SUCCESS"},
     {FitTermination::kUserFailure, "USER_FAILURE"},
     {FitTermination::kNotRun, "NOT_RUN"}}};
constexpr const auto& NamesOf(FitTermination) { return kFitTerminationNames; }
// rho(s) and rho'(s) of the loss at scale a, s = e^2 (Ceres' definitions).
double LossRho(FlatLoss loss, double a, double s);
double LossWeight(FlatLoss loss, double a, double s);
// The curvature weight of a residual in the Newton step: d^2 rho(e^2) / 2 de^2 = rho' + 2 s rho'',
// floored at 1e-3 rho' so that the normal matrix stays positive definite (points beyond a Cauchy
// or Huber scale then carry almost no curvature; the gradient keeps the exact rho').
double LossCurvature(FlatLoss loss, double a, double s);

struct FlatFitOptions {
  int order =
      2;  // total polynomial degree (paper: 2); kfold: the degree of the joint fit's first pass
  FlatOrderSelect order_select = FlatOrderSelect::kFixed;
  int order_max = 6;    // kfold: highest degree tried
  int order_folds = 5;  // kfold: folds over stars
  FlatLoss loss = FlatLoss::kNone;
  double loss_scale = 3.0;   // robust loss scale in units of each point's sigma
  int max_iterations = 100;  // iteration limit per fit (the joint fit uses at least 100)
  FlatFitMode mode = FlatFitMode::kIndependent;
  FlatJointSolver joint_solver = FlatJointSolver::kSchur;
  // joint: the fit ends when a step lowers the cost by less than this fraction of it. 1e-8 (Ceres:
  // 1e-6) leaves the solution within ~0.05 sigma of the exact minimum (realistic.yaml: cost 1.4e5,
  // so a change of 1.4e-3 in chi^2); the validation figures agree with 1e-14 to 3 digits
  // (measured).
  double joint_tolerance = 1e-8;
  // joint: each step's conjugate gradients end when the reduced system's residual falls below this
  // fraction of its right-hand side.
  double joint_linear_tolerance = 1e-10;
  double smoothness = 0.0;  // joint: weight of (c_k - c_k+1) / sigma_smooth penalties, 0 = off
  int min_points = 12;      // fewer usable points: slice not fitted (flagged)
  // Star pairs closer than this [detector pixels] measure the lack of fit (FitFlatCube): short
  // against the flat structure's scale, long enough for pairs among ~100 stars per detector.
  double lack_of_fit_separation = 600;
  // ... and each point pairs with at most this many partners (the nearest in x first), so that the
  // measurement costs O(N), not O(N^2), when a detector holds thousands of stars (400 stars: ~1
  // partner per point, so no cap is reached).
  int lack_of_fit_partners = 32;
  bool progress = true;   // FitFlatCube shows progress (off inside a Monte Carlo)
  void Validate() const;  // throws ConfigError naming the field
};

// One ratio measurement: observed / predicted flux at detector pixel (x, y).
struct RatioPoint {
  double x = 0, y = 0;  // detector pixel coordinates (0-based)
  double ratio = 1;     // observed / expected counts
  double sigma = 0;     // 1-sigma of ratio (> 0)
};

struct FlatSlice {
  std::vector<double> coeffs;      // see the coefficient order above
  std::vector<double> covariance;  // n x n row-major, from ceres::Covariance (empty if failed)
  bool converged = false;          // Ceres reported CONVERGENCE and covariance succeeded
  FitTermination termination = FitTermination::kNotRun;
  std::string message;  // Ceres' message
  double final_cost = 0;
  int n_points = 0;
  // 1-sigma of the flat's structure that the polynomial cannot follow (lack of fit), from the
  // covariance of neighbouring stars' residuals over the band (FitFlatCube); it does not average
  // down with more stars, so the shipped ERR adds it in quadrature.
  double lack_of_fit = 0;
  double Evaluate(double x, double y) const;
  double Sigma(double x, double y) const;  // 1-sigma from the covariance (0 if unavailable)
  // The same from a precomputed FlatBasis(x, y, nx, ny, order) (many slices, one point).
  double EvaluateBasis(const std::vector<double>& basis) const;
  double SigmaBasis(const std::vector<double>& basis) const;
  // Detector geometry the coefficients refer to.
  double nx = 1, ny = 1;
  int order = 2;
};

constexpr int kMaxFlatOrder = 20;  // flatfield.order's upper limit
int NumCoefficients(int order);
// Basis values for (x, y) on a detector of nx * ny pixels, in the documented coefficient order.
std::vector<double> FlatBasis(double x, double y, double nx, double ny, int order);
// The same into b[0..NumCoefficients(order)) (no allocation, inline: the joint fit evaluates it
// for every point in every product of its conjugate gradients). order <= kMaxFlatOrder.
// At the mapped coordinates u, v in [-1, 1] themselves:
inline void FlatBasisAtUV(double u, double v, int order, double* b) {
  double pu[kMaxFlatOrder + 1], pv[kMaxFlatOrder + 1];  // Legendre P_0..P_order at u and v
  pu[0] = pv[0] = 1.0;
  if (order >= 1) pu[1] = u, pv[1] = v;
  for (int k = 2; k <= order; ++k) {
    pu[k] = ((2 * k - 1) * u * pu[k - 1] - (k - 1) * pu[k - 2]) / k;
    pv[k] = ((2 * k - 1) * v * pv[k - 1] - (k - 1) * pv[k - 2]) / k;
  }
  int at = 0;
  for (int d = 0; d <= order; ++d)
    for (int i = d; i >= 0; --i) b[at++] = pu[i] * pv[d - i];
}
inline void FlatBasisInto(double x, double y, double nx, double ny, int order, double* b) {
  FlatBasisAtUV(nx > 1 ? 2.0 * x / (nx - 1) - 1.0 : 0.0, ny > 1 ? 2.0 * y / (ny - 1) - 1.0 : 0.0,
                order, b);
}

class FlatFitter {
 public:
  explicit FlatFitter(FlatFitOptions options);  // validates
  // Weighted (1/sigma^2) least squares: closed form (QR) without a robust loss; with one,
  // iteratively re-weighted closed-form solves (weights rho'(e^2), Ceres' own treatment of these
  // losses), converged to the same minimum as Ceres (tested to 1e-8). Fewer points than
  // coefficients gives an unconverged slice (message says why), never an exception.
  FlatSlice Fit(const std::vector<RatioPoint>& points, double nx, double ny) const;
  // The same fit by Ceres whatever the loss (for tests and benchmarks of the closed form).
  FlatSlice FitWithCeres(const std::vector<RatioPoint>& points, double nx, double ny) const;

 private:
  FlatSlice Prepare(const std::vector<RatioPoint>& points, double nx, double ny) const;
  FlatSlice FitClosedForm(const std::vector<RatioPoint>& points, FlatSlice slice) const;
  FlatSlice FitReweighted(const std::vector<RatioPoint>& points, FlatSlice slice) const;
  FlatFitOptions options_;
};

}  // namespace csst
