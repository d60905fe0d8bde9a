// Gaussian process regression of spectra on stellar parameters (paper App. C).
//
// Inputs x (Teff, log g, [Fe/H]) are z-scored with the training set's mean and standard deviation.
// Kernel k(x, x') = sigma_f^2 exp(-|x - x'|^2 / (2 l^2)) + sigma_n^2 delta(x, x'); one set of
// hyper-parameters for all outputs (multi-output, as in the paper): Y is n x m, each column an
// independent GP with the same kernel. Predictive mean k*^T K^-1 Y and variance
// sigma_f^2 - k*^T K^-1 k* (+ sigma_n^2 for a new noisy observation) per output.
// Log marginal likelihood summed over outputs:
// L = -1/2 tr(Y^T K^-1 Y) - m/2 ln|K| - n m/2 ln(2 pi), with analytic gradients in the
// log-parameters. L depends on Y only through S = Y Y^T (n x n, computed once), so an evaluation
// costs O(n^3) whatever the number of outputs; the n x n products run on TBB.
// Optimisation: sigma_f^2 is profiled out analytically (K = sigma_f^2 B with B = R(l) + eta I,
// eta = sigma_n^2 / sigma_f^2: the optimum is sigma_f^2 = tr(B^-1 S) / (n m)), leaving a 2-D
// problem in (ln eta, ln l), maximised with Ceres' L-BFGS (GradientProblem) from several starts
// within bounds (enforced by clamping the log-parameters); restarting stops once two starts reach
// the same optimum.
#pragma once

#include <Eigen/Dense>
#include <string>
#include <vector>

namespace csst {

struct GprHyper {
  double sigma_f = 1.0, sigma_n = 0.01, ell = 1.0;
};

struct GprOptimizeResult {
  GprHyper best;
  double log_marginal_likelihood = 0;
  std::string termination;  // Ceres termination of the best start
  int starts = 0;           // starts made (fewer than asked when two agreed)
  int evaluations = 0;      // of the likelihood, over all starts
};

class Gpr {
 public:
  // Throws Error if X and Y row counts differ or n < 2.
  Gpr(Eigen::MatrixXd x, Eigen::MatrixXd y);
  // Factorises K for `h` (Cholesky; jitter up to 1e-6 sigma_f^2 added on failure, then Error).
  void SetHyper(const GprHyper& h);
  const GprHyper& hyper() const { return hyper_; }
  double LogMarginalLikelihood() const { return lml_; }
  // Gradient of L with respect to (ln sigma_f, ln sigma_n, ln l).
  Eigen::Vector3d Gradient() const;
  // Maximises L over the log-parameters from `starts` starting points within the bounds.
  GprOptimizeResult Optimize(int starts = 3, double min_ell = 0.05, double max_ell = 50.0);
  // Predictive mean (rows: query points) and variance (latent function, without sigma_n^2).
  void Predict(const Eigen::MatrixXd& xq, Eigen::MatrixXd* mean, Eigen::MatrixXd* var) const;
  const Eigen::RowVectorXd& x_mean() const { return mean_; }
  const Eigen::RowVectorXd& x_std() const { return std_; }

 private:
  friend class GprProfiledObjective;
  Eigen::MatrixXd KernelMatrix(const Eigen::MatrixXd& a, const Eigen::MatrixXd& b) const;
  // Factorises K and computes L and K^-1 (alpha = K^-1 Y only when `with_alpha`).
  void Factorise(const GprHyper& h, bool with_alpha);
  Eigen::MatrixXd x_, y_;  // z-scored inputs; outputs
  Eigen::MatrixXd s_;      // Y Y^T
  Eigen::RowVectorXd mean_, std_;
  GprHyper hyper_;
  Eigen::LLT<Eigen::MatrixXd> llt_;
  Eigen::MatrixXd alpha_, sqdist_, kinv_;
  double lml_ = 0, logdet_ = 0, trace_ = 0;  // L, ln|K|, tr(K^-1 S)
};

}  // namespace csst
