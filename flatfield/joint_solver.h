// The joint flat fit (unknown absolute fluxes), solved by exploiting its structure.
//
// Unknowns: the Legendre coefficients c_ds of every slice s of every detector d, and one scale t_i
// per star. Residual of star i in slice (d, s): e = (ratio - t_i * b(x, y) . c_ds) / sigma, with a
// robust loss rho on e^2, plus optional smoothness residuals w (c_ds - c_d,s-1). Cost
// 1/2 sum rho(e^2) + 1/2 sum |w (c_ds - c_d,s-1)|^2, Ceres' definition.
//
// Levenberg-Marquardt on the Gauss-Newton normal equations with the robust loss as iteratively
// re-weighted least squares (weights rho'(e^2): Ceres' own treatment of losses with rho'' <= 0,
// such as Huber and Cauchy). Each step eliminates the star scales (their normal matrix is
// diagonal) and solves the Schur complement in the flat coefficients by conjugate gradients,
// preconditioned by its slice-diagonal blocks (Ceres' ITERATIVE_SCHUR with SCHUR_JACOBI). The
// complement is never formed: each product costs one pass over the terms, so memory and time per
// iteration grow linearly with the stars and their footprint (a dense complement in the scales, as
// before, grew as N^2 in memory and N^3 in time; one in the coefficients as the square of a star's
// footprint). Products are summed per detector and then in detector order, so the solution is the
// same for any thread count. One star per group of detectors linked by shared stars keeps its
// scale fixed (gauge).
//
// SolveJointCeres poses the same problem to Ceres (SPARSE_NORMAL_CHOLESKY) as the reference the
// tests compare against (same minimum to 1e-8).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "flatfield/flat_fitter.h"

namespace csst {

// One ratio point: 20 bytes, so that 10^5 stars' ~6e7 points fit in memory (the basis is
// recomputed from x, y where it is needed: a few multiplications at low degree). Single precision
// holds a pixel position to 1e-3 px and a ratio to 6e-8, far below their errors.
struct JointTerm {
  int32_t row = 0;     // the ratios row it comes from (JointProblem::row_star gives its star)
  float x = 0, y = 0;  // detector pixel
  float ratio = 1, sigma = 1;
};

struct JointSliceTerms {
  int detector = 0,
      slice = 0;  // slice: index into the detector's pixel list (adjacent = neighbours)
  const std::vector<JointTerm>* terms =
      nullptr;  // not owned: the points stay where they were gathered
  // This slice's degree, at most the problem's (-1: the problem's): its coefficients beyond
  // NumCoefficients(order) stay 0 (per-band degrees in one problem; the returned vector keeps the
  // problem's length).
  int order = -1;
};

// The joint fit spread over processes (the fit stage under MPI): each process holds the terms of
// the detectors it owns (JointProblem::owns) and makes their blocks' sums (cost, normal equations,
// products with the coupling); every process then receives every other block's sums
// (ShareOwnedItems), adds them in block order as one process does and takes the same steps: the
// same solution, bit for bit. The slices of the problem are the same on every process (a slice of
// a detector not owned has no terms there).
struct JointProblem {
  int order = 2;          // polynomial degree of every slice's flat (FlatBasisInto)
  double nx = 1, ny = 1;  // detector size [pixels] the basis refers to
  int n_stars = 0;
  std::vector<int32_t> row_star;        // per ratios row: its star (index into the scales)
  std::vector<JointSliceTerms> slices;  // sorted by (detector, slice)
  std::vector<bool> fixed;              // per star: scale held fixed (gauge); size n_stars
  FlatLoss loss = FlatLoss::kNone;
  double loss_scale = 3.0;
  double smoothness = 0.0;  // weight of the (c_s - c_s-1) residuals within a detector
  int max_iterations = 100;
  // Converged when a step lowers the cost by less than this fraction of it (or the step is below
  // 1e-12 of the parameters). Ceres' default is 1e-6.
  double function_tolerance = 1e-14;
  // Each step's conjugate gradients end when the residual of the reduced system falls below this
  // fraction of its right-hand side (or after max_linear_iterations).
  double linear_tolerance = 1e-10;
  int max_linear_iterations = 500;
  // Spread over MPI ranks: whether this process owns a detector's terms. Null: one process holds
  // every term.
  std::function<bool(int detector)> owns;
  int NumCoeffs() const { return NumCoefficients(order); }
};

struct JointSolution {
  std::vector<std::vector<double>> coeffs;  // per problem slice
  std::vector<double> scale;                // per star
  double initial_cost = 0, final_cost = 0;
  int iterations = 0;
  FitTermination termination = FitTermination::kNotRun;
  std::string message;
  long linear_iterations = 0;  // conjugate-gradient iterations of all steps (SolveJoint)
};

// Starts from c = (1, 0, ...), t = `scale` (size n_stars; empty = all 1). With a robust loss the
// least-squares problem is solved first and the robust fit starts from its solution (the usual
// start of a robust fit: from c = 1, t = 1 a Cauchy loss sees the stars' 5-10% flux errors as
// outliers and the normal matrix degenerates). Both solvers do the same.
JointSolution SolveJoint(const JointProblem& problem, std::vector<double> scale = {});
JointSolution SolveJointCeres(const JointProblem& problem, std::vector<double> scale = {});

}  // namespace csst
