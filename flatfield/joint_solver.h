// The joint flat fit (unknown absolute fluxes), solved by exploiting its structure.
//
// Unknowns: the Legendre coefficients c_ds of every slice s of every detector d, and one scale t_i
// per star. Residual of star i in slice (d, s): e = (ratio - t_i * b(x, y) . c_ds) / sigma, with a
// robust loss rho on e^2, plus optional smoothness residuals w (c_ds - c_d,s-1). Cost
// 1/2 sum rho(e^2) + 1/2 sum |w (c_ds - c_d,s-1)|^2, Ceres' definition.
//
// Levenberg-Marquardt on the Gauss-Newton normal equations with the robust loss as iteratively
// re-weighted least squares (weights rho'(e^2): Ceres' own treatment of losses with rho'' <= 0,
// such as Huber and Cauchy). Each step eliminates the coefficients detector by detector (their
// normal matrix is block-diagonal, block-tridiagonal with smoothness: a sparse Cholesky per
// detector) and solves the dense Schur complement in the star scales (one per star, a few hundred),
// the reduction Ceres calls DENSE_SCHUR. One star per group of detectors linked by shared stars
// keeps its scale fixed (gauge).
//
// SolveJointCeres poses the same problem to Ceres (SPARSE_NORMAL_CHOLESKY) as the reference the
// tests compare against (same minimum to 1e-8).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "flatfield/flat_fitter.h"

namespace csst {

// One ratio point of the joint problem.
struct JointTerm {
  int star = 0;  // index into the scale vector
  double ratio = 1, sigma = 1;
  std::vector<double> basis;  // FlatBasis at the point (NumCoefficients(order) values)
};

struct JointSliceTerms {
  int detector = 0,
      slice = 0;  // slice: index into the detector's pixel list (adjacent = neighbours)
  std::vector<JointTerm> terms;
};

struct JointProblem {
  int n_coeffs = 6;
  int n_stars = 0;
  std::vector<JointSliceTerms> slices;  // sorted by (detector, slice)
  std::vector<bool> fixed;              // per star: scale held fixed (gauge); size n_stars
  FlatLoss loss = FlatLoss::kNone;
  double loss_scale = 3.0;
  double smoothness = 0.0;  // weight of the (c_s - c_s-1) residuals within a detector
  int max_iterations = 100;
  // Converged when a step lowers the cost by less than this fraction of it (or the step is below
  // 1e-12 of the parameters). Ceres' default is 1e-6.
  double function_tolerance = 1e-14;
};

struct JointSolution {
  std::vector<std::vector<double>> coeffs;  // per problem slice
  std::vector<double> scale;                // per star
  double initial_cost = 0, final_cost = 0;
  int iterations = 0;
  std::string termination;  // CONVERGENCE | NO_CONVERGENCE | FAILURE
  std::string message;
};

// Starts from c = (1, 0, ...), t = `scale` (size n_stars; empty = all 1). With a robust loss the
// least-squares problem is solved first and the robust fit starts from its solution (the usual
// start of a robust fit: from c = 1, t = 1 a Cauchy loss sees the stars' 5-10% flux errors as
// outliers and the normal matrix degenerates). Both solvers do the same.
JointSolution SolveJoint(const JointProblem& problem, std::vector<double> scale = {});
JointSolution SolveJointCeres(const JointProblem& problem, std::vector<double> scale = {});

}  // namespace csst
