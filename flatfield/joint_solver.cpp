#include "flatfield/joint_solver.h"

#include <ceres/ceres.h>
#include <tbb/parallel_for.h>

#include <Eigen/Dense>
#include <Eigen/SparseCholesky>
#include <algorithm>
#include <cmath>
#include <map>
#include <memory>

#include "core/errors.h"
#include "flatfield/residuals.h"

namespace csst {
namespace {

using Eigen::MatrixXd;
using Eigen::VectorXd;

// The slices of one detector and the stars seen on it (local numbering).
struct DetectorBlock {
  std::vector<size_t> slices;           // indices into problem.slices, in slice order
  std::vector<int> stars;               // global star index per local index
  std::vector<std::vector<int>> local;  // per slice, per term: local star index
  std::vector<size_t> offset;  // first coefficient row of each slice in the detector system
  std::vector<std::pair<size_t, size_t>>
      neighbours;  // smoothness pairs (k, k-1) as local slice positions
  std::unique_ptr<Eigen::SimplicialLLT<Eigen::SparseMatrix<double>>> llt =
      std::make_unique<Eigen::SimplicialLLT<Eigen::SparseMatrix<double>>>();
  bool analysed = false;
  std::vector<Eigen::LLT<Eigen::MatrixXd>> chol;  // per slice, block-diagonal case
};

struct State {
  std::vector<VectorXd> c;  // per problem slice
  VectorXd t;               // per star
};

class Solver {
 public:
  Solver(const JointProblem& p, FlatLoss loss) : p_(p), loss_(loss), nc_(p.n_coeffs) {
    std::map<int, size_t> block_of;
    for (size_t i = 0; i < p.slices.size(); ++i) {
      const auto& s = p.slices[i];
      if (!block_of.count(s.detector)) {
        block_of[s.detector] = blocks_.size();
        blocks_.emplace_back();
      }
      auto& b = blocks_[block_of[s.detector]];
      if (!b.slices.empty()) {
        const auto& prev = p.slices[b.slices.back()];
        if (prev.slice >= s.slice)
          throw Error("joint fit: slices of detector " + std::to_string(s.detector) +
                      " not in order");
        if (p.smoothness > 0 && prev.slice + 1 == s.slice)
          b.neighbours.emplace_back(b.slices.size(), b.slices.size() - 1);
      }
      b.offset.push_back(b.slices.size() * static_cast<size_t>(nc_));
      b.slices.push_back(i);
    }
    for (auto& b : blocks_) {
      std::map<int, int> local_of;
      for (size_t i : b.slices)
        for (const auto& t : p.slices[i].terms) local_of.emplace(t.star, 0);
      for (auto& [g, l] : local_of) {
        l = static_cast<int>(b.stars.size());
        b.stars.push_back(g);
      }
      for (size_t i : b.slices) {
        std::vector<int> loc;
        for (const auto& t : p.slices[i].terms) {
          if (t.star < 0 || t.star >= p.n_stars)
            throw Error("joint fit: term names star " + std::to_string(t.star));
          if (static_cast<int>(t.basis.size()) != nc_)
            throw Error("joint fit: basis of the wrong length");
          loc.push_back(local_of.at(t.star));
        }
        b.local.push_back(std::move(loc));
      }
    }
  }

  double Cost(const State& x) const {
    double cost = 0;
    for (size_t i = 0; i < p_.slices.size(); ++i) {
      for (const auto& t : p_.slices[i].terms) {
        const double e = Residual(t, x.c[i], x.t(t.star));
        cost += 0.5 * LossRho(loss_, p_.loss_scale, e * e);
      }
    }
    if (p_.smoothness > 0) {
      const double w2 = p_.smoothness * p_.smoothness;
      for (const auto& b : blocks_)
        for (const auto& [k, j] : b.neighbours)
          cost += 0.5 * w2 * (x.c[b.slices[k]] - x.c[b.slices[j]]).squaredNorm();
    }
    return cost;
  }

  JointSolution Solve(State x) {
    JointSolution out;
    double cost = Cost(x);
    out.initial_cost = cost;
    // Levenberg-Marquardt with Nielsen's damping update (as Ceres): mu = 1 / trust radius.
    // Ceres' initial trust radius 1e4 (mu = 1e-4) for the least-squares phase. The robust phase
    // starts at the least-squares minimum, where the change of the weights is the whole step: a
    // trust radius of 1 there avoids most rejected first steps (realistic.yaml: 15 instead of 22
    // linear solves per fit, measured over 9 fits).
    double mu = loss_ == FlatLoss::kNone ? 1e-4 : 1.0;
    double nu = 2;
    bool converged = false;
    int it = 0;
    std::string why = "iteration limit";
    for (; it < p_.max_iterations && !converged; ++it) {
      Linearize(x);
      bool accepted = false;
      while (!accepted) {
        State trial = x;
        double step_norm = 0, predicted = 0;
        const bool solved = Step(mu, &trial, &step_norm, &predicted);
        const double trial_cost = solved ? Cost(trial) : NAN;
        if (solved && std::isfinite(trial_cost) && trial_cost <= cost) {
          double xnorm = x.t.squaredNorm();
          for (const auto& c : x.c) xnorm += c.squaredNorm();
          xnorm = std::sqrt(xnorm);
          if (cost - trial_cost <= p_.function_tolerance * cost) converged = true, why = "cost change below tolerance";
          if (step_norm <= 1e-12 * (xnorm + 1e-12)) converged = true, why = "step below 1e-12";
          const double rho = predicted > 0 ? (cost - trial_cost) / predicted : 0.0;
          x = std::move(trial);
          cost = trial_cost;
          mu = std::max(
              mu * (rho > 0.75 ? 0.1 : std::max(1.0 / 3.0, 1.0 - std::pow(2.0 * rho - 1.0, 3))),
              1e-16);
          nu = 2;
          accepted = true;
          continue;
        }
        ++rejected_;
        mu *= nu;
        nu *= 2;
        if (mu > 1e16) {  // no descent step left: at the minimum to working precision
          converged = true;
          why = "no descent step left (damping 1e16)";
          break;
        }
      }
    }
    out.iterations = it;
    out.final_cost = cost;
    out.termination = converged ? "CONVERGENCE" : "NO_CONVERGENCE";
    out.message = why + ", " + std::to_string(rejected_) + " rejected steps";
    out.scale.assign(x.t.data(), x.t.data() + x.t.size());
    for (const auto& c : x.c) out.coeffs.emplace_back(c.data(), c.data() + c.size());
    return out;
  }

 private:
  double Residual(const JointTerm& t, const VectorXd& c, double scale) const {
    double m = 0;
    for (int k = 0; k < nc_; ++k) m += t.basis[static_cast<size_t>(k)] * c(k);
    return (t.ratio - scale * m) / t.sigma;
  }

  // Gauss-Newton normal equations at x: per detector the coefficient block A (sparse), the
  // coupling B to the detector's stars and the coefficient gradient qc; per star D and qt.
  // (q = minus the gradient.)
  struct Linear {
    std::vector<MatrixXd> a;  // per slice: the nc x nc diagonal block (smoothness terms included)
    MatrixXd b;
    VectorXd qc;
  };
  void Linearize(const State& x) {
    lin_.assign(blocks_.size(), Linear{});
    d_ = VectorXd::Zero(p_.n_stars);
    qt_ = VectorXd::Zero(p_.n_stars);
    std::vector<VectorXd> d_part(blocks_.size()), qt_part(blocks_.size());
    const double w2 = p_.smoothness * p_.smoothness;
    tbb::parallel_for(size_t{0}, blocks_.size(), [&](size_t bi) {
      const auto& blk = blocks_[bi];
      auto& L = lin_[bi];
      const size_t m = blk.slices.size() * static_cast<size_t>(nc_);
      const size_t ns = blk.stars.size();
      L.b = MatrixXd::Zero(static_cast<Eigen::Index>(m), static_cast<Eigen::Index>(ns));
      L.qc = VectorXd::Zero(static_cast<Eigen::Index>(m));
      d_part[bi] = VectorXd::Zero(static_cast<Eigen::Index>(ns));
      qt_part[bi] = VectorXd::Zero(static_cast<Eigen::Index>(ns));
      L.a.assign(blk.slices.size(), MatrixXd());
      std::vector<double> jc(static_cast<size_t>(nc_));
      for (size_t k = 0; k < blk.slices.size(); ++k) {
        const auto& sl = p_.slices[blk.slices[k]];
        const VectorXd& c = x.c[blk.slices[k]];
        const Eigen::Index o = static_cast<Eigen::Index>(blk.offset[k]);
        MatrixXd& a = L.a[k];
        a = MatrixXd::Zero(nc_, nc_);
        double* bcol = nullptr;
        for (size_t j = 0; j < sl.terms.size(); ++j) {
          const auto& t = sl.terms[j];
          const int loc = blk.local[k][j];
          const double ts = x.t(t.star);
          double model = 0;
          for (int q = 0; q < nc_; ++q) model += t.basis[static_cast<size_t>(q)] * c(q);
          const double e = (t.ratio - ts * model) / t.sigma;
          const double w = LossWeight(loss_, p_.loss_scale, e * e);
          const double h = LossCurvature(loss_, p_.loss_scale, e * e);
          for (int q = 0; q < nc_; ++q)
            jc[static_cast<size_t>(q)] = ts * t.basis[static_cast<size_t>(q)] / t.sigma;  // -de/dc
          const double jt = model / t.sigma;                                              // -de/dt
          bcol = L.b.data() + loc * L.b.rows() + o;
          for (int r = 0; r < nc_; ++r) {
            const double hr = h * jc[static_cast<size_t>(r)];
            for (int q = 0; q <= r; ++q) a(r, q) += hr * jc[static_cast<size_t>(q)];
            bcol[r] += hr * jt;
            L.qc(o + r) += w * e * jc[static_cast<size_t>(r)];
          }
          d_part[bi](loc) += h * jt * jt;
          qt_part[bi](loc) += w * e * jt;
        }
        for (int r = 0; r < nc_; ++r)
          for (int q = r + 1; q < nc_; ++q) a(r, q) = a(q, r);
      }
      for (const auto& [k, j] : blk.neighbours) {
        const Eigen::Index ok = static_cast<Eigen::Index>(blk.offset[k]),
                           oj = static_cast<Eigen::Index>(blk.offset[j]);
        const VectorXd diff = x.c[blk.slices[k]] - x.c[blk.slices[j]];
        L.a[k].diagonal().array() += w2;
        L.a[j].diagonal().array() += w2;
        L.qc.segment(ok, nc_) -= w2 * diff;
        L.qc.segment(oj, nc_) += w2 * diff;
      }
      // Fixed stars do not move: their coupling columns are dropped.
      for (size_t l = 0; l < ns; ++l)
        if (p_.fixed[static_cast<size_t>(blk.stars[l])])
          L.b.col(static_cast<Eigen::Index>(l)).setZero();
    });
    for (size_t bi = 0; bi < blocks_.size(); ++bi)  // in order: independent of the thread count
      for (size_t l = 0; l < blocks_[bi].stars.size(); ++l) {
        d_(blocks_[bi].stars[l]) += d_part[bi](static_cast<Eigen::Index>(l));
        qt_(blocks_[bi].stars[l]) += qt_part[bi](static_cast<Eigen::Index>(l));
      }
  }

  // Solves the damped system by eliminating the coefficients; false if a factorisation failed.
  // *predicted: the decrease of the Gauss-Newton model, 1/2 (step.q + mu step.D.step).
  bool Step(double mu, State* x, double* step_norm, double* predicted) {
    const Eigen::Index n = p_.n_stars;
    std::vector<MatrixXd> xb(blocks_.size());
    std::vector<VectorXd> xq(blocks_.size());
    std::vector<char> ok(blocks_.size(), 1);
    std::vector<MatrixXd> s_part(blocks_.size());
    std::vector<VectorXd> v_part(blocks_.size());
    const double w2 = p_.smoothness * p_.smoothness;
    tbb::parallel_for(size_t{0}, blocks_.size(), [&](size_t bi) {
      auto& blk = blocks_[bi];
      const auto& L = lin_[bi];
      const Eigen::Index m = L.qc.size();
      const Eigen::Index ns = L.b.cols();
      auto damped = [&](size_t k) {
        MatrixXd a = L.a[k];
        for (int r = 0; r < nc_; ++r) a(r, r) += mu * std::clamp(a(r, r), 1e-6, 1e32);
        return a;
      };
      if (blk.neighbours.empty()) {
        // Block-diagonal coefficient system: per slice A_k = L_k L_k^T, Y_k = L_k^-1 B_k, so that
        // B^T A^-1 B = Y^T Y (one symmetric rank-k update) and B^T A^-1 q = Y^T z.
        MatrixXd& y = xb[bi];
        VectorXd& z = xq[bi];
        y.resize(m, ns);
        z.resize(m);
        blk.chol.resize(blk.slices.size());
        for (size_t k = 0; k < blk.slices.size(); ++k) {
          const Eigen::Index o = static_cast<Eigen::Index>(blk.offset[k]);
          blk.chol[k].compute(damped(k));
          if (blk.chol[k].info() != Eigen::Success) {
            ok[bi] = 0;
            return;
          }
          const auto lk = blk.chol[k].matrixL();
          y.middleRows(o, nc_) = lk.solve(L.b.middleRows(o, nc_));
          z.segment(o, nc_) = lk.solve(L.qc.segment(o, nc_));
        }
        s_part[bi] = MatrixXd::Zero(ns, ns);
        s_part[bi].selfadjointView<Eigen::Lower>().rankUpdate(y.transpose());
        s_part[bi].triangularView<Eigen::StrictlyUpper>() = s_part[bi].transpose();
        v_part[bi] = y.transpose() * z;
        return;
      }
      // Block-tridiagonal (smoothness): a sparse Cholesky of the detector's coefficient system.
      std::vector<Eigen::Triplet<double>> trip;
      trip.reserve(blk.slices.size() * static_cast<size_t>(nc_ * nc_) +
                   blk.neighbours.size() * 2 * static_cast<size_t>(nc_));
      for (size_t k = 0; k < blk.slices.size(); ++k) {
        const Eigen::Index o = static_cast<Eigen::Index>(blk.offset[k]);
        const MatrixXd a = damped(k);
        for (int r = 0; r < nc_; ++r)
          for (int q = 0; q < nc_; ++q) trip.emplace_back(o + r, o + q, a(r, q));
      }
      for (const auto& [k, j] : blk.neighbours) {
        const Eigen::Index ok2 = static_cast<Eigen::Index>(blk.offset[k]),
                           oj = static_cast<Eigen::Index>(blk.offset[j]);
        for (int q = 0; q < nc_; ++q) {
          trip.emplace_back(ok2 + q, oj + q, -w2);
          trip.emplace_back(oj + q, ok2 + q, -w2);
        }
      }
      Eigen::SparseMatrix<double> a(m, m);
      a.setFromTriplets(trip.begin(), trip.end());
      if (!blk.analysed) {
        blk.llt->analyzePattern(a);
        blk.analysed = true;
      }
      blk.llt->factorize(a);
      if (blk.llt->info() != Eigen::Success) {
        ok[bi] = 0;
        return;
      }
      xb[bi] = blk.llt->solve(L.b);
      xq[bi] = blk.llt->solve(L.qc);
      s_part[bi] = L.b.transpose() * xb[bi];
      v_part[bi] = L.b.transpose() * xq[bi];
    });
    for (char o : ok)
      if (!o) return false;
    MatrixXd s = MatrixXd::Zero(n, n);
    VectorXd rhs = qt_;
    for (Eigen::Index i = 0; i < n; ++i) s(i, i) = d_(i) + mu * std::clamp(d_(i), 1e-6, 1e32);
    for (size_t bi = 0; bi < blocks_.size(); ++bi) {
      const auto& st = blocks_[bi].stars;
      for (size_t i = 0; i < st.size(); ++i) {
        rhs(st[i]) -= v_part[bi](static_cast<Eigen::Index>(i));
        for (size_t j = 0; j < st.size(); ++j)
          s(st[i], st[j]) -= s_part[bi](static_cast<Eigen::Index>(i), static_cast<Eigen::Index>(j));
      }
    }
    for (Eigen::Index i = 0; i < n; ++i)
      if (p_.fixed[static_cast<size_t>(i)]) {
        s.row(i).setZero();
        s.col(i).setZero();
        s(i, i) = 1;
        rhs(i) = 0;
      }
    const Eigen::LLT<MatrixXd> llt(s);
    if (llt.info() != Eigen::Success) return false;
    const VectorXd dt = llt.solve(rhs);
    double norm2 = dt.squaredNorm();
    double pred = dt.dot(qt_);
    for (Eigen::Index i = 0; i < n; ++i) pred += mu * std::clamp(d_(i), 1e-6, 1e32) * dt(i) * dt(i);
    x->t += dt;
    for (size_t bi = 0; bi < blocks_.size(); ++bi) {
      const auto& blk = blocks_[bi];
      VectorXd dt_local(static_cast<Eigen::Index>(blk.stars.size()));
      for (size_t l = 0; l < blk.stars.size(); ++l)
        dt_local(static_cast<Eigen::Index>(l)) = dt(blk.stars[l]);
      VectorXd dc = xq[bi] - xb[bi] * dt_local;
      if (blk.neighbours.empty()) {  // xb, xq hold Y, z: dc_k = L_k^-T (z_k - Y_k dt)
        for (size_t k = 0; k < blk.slices.size(); ++k) {
          const Eigen::Index o = static_cast<Eigen::Index>(blk.offset[k]);
          dc.segment(o, nc_) = blk.chol[k].matrixU().solve(dc.segment(o, nc_));
        }
      }
      norm2 += dc.squaredNorm();
      pred += dc.dot(lin_[bi].qc);
      for (size_t k = 0; k < blk.slices.size(); ++k)
        for (int r = 0; r < nc_; ++r) {
          const double v = dc(static_cast<Eigen::Index>(blk.offset[k]) + r);
          pred += mu * std::clamp(lin_[bi].a[k](r, r), 1e-6, 1e32) * v * v;
        }
      for (size_t k = 0; k < blk.slices.size(); ++k)
        x->c[blk.slices[k]] += dc.segment(static_cast<Eigen::Index>(blk.offset[k]), nc_);
    }
    *step_norm = std::sqrt(norm2);
    *predicted = 0.5 * pred;
    return std::isfinite(*step_norm) && std::isfinite(pred);
  }

  const JointProblem& p_;
  const FlatLoss loss_;
  int rejected_ = 0;
  const int nc_;
  std::vector<DetectorBlock> blocks_;
  std::vector<Linear> lin_;
  VectorXd d_, qt_;
};

void CheckProblem(const JointProblem& p, const std::vector<double>& scale) {
  if (p.n_coeffs < 1) throw Error("joint fit: n_coeffs must be >= 1");
  if (static_cast<int>(p.fixed.size()) != p.n_stars)
    throw Error("joint fit: fixed flags do not match the star count");
  if (!scale.empty() && static_cast<int>(scale.size()) != p.n_stars)
    throw Error("joint fit: start scales do not match the star count");
}

std::vector<double> StartCoeffs(int nc) {
  std::vector<double> c(static_cast<size_t>(nc), 0.0);
  c[0] = 1.0;
  return c;
}

struct SmoothResidual {
  SmoothResidual(int n, double w) : n_(n), w_(w) {}
  template <typename T>
  bool operator()(T const* const* p, T* residual) const {
    for (int k = 0; k < n_; ++k) residual[k] = T(w_) * (p[0][k] - p[1][k]);
    return true;
  }
  int n_;
  double w_;
};

}  // namespace

JointSolution SolveJoint(const JointProblem& problem, std::vector<double> scale) {
  CheckProblem(problem, scale);
  if (scale.empty()) scale.assign(static_cast<size_t>(problem.n_stars), 1.0);
  State x;
  x.t = Eigen::Map<const VectorXd>(scale.data(), problem.n_stars);
  const auto c0 = StartCoeffs(problem.n_coeffs);
  x.c.assign(problem.slices.size(), Eigen::Map<const VectorXd>(c0.data(), problem.n_coeffs));
  JointSolution ls = Solver(problem, FlatLoss::kNone).Solve(std::move(x));
  if (problem.loss == FlatLoss::kNone) return ls;
  // The robust fit starts from the least-squares solution.
  State y;
  y.t = Eigen::Map<const VectorXd>(ls.scale.data(), problem.n_stars);
  for (const auto& c : ls.coeffs)
    y.c.emplace_back(Eigen::Map<const VectorXd>(c.data(), problem.n_coeffs));
  JointSolution robust = Solver(problem, problem.loss).Solve(std::move(y));
  robust.iterations += ls.iterations;
  robust.initial_cost = ls.initial_cost;
  robust.message =
      "least squares: " + ls.message + "; " + ToString(problem.loss) + ": " + robust.message;
  if (ls.termination != "CONVERGENCE") robust.termination = ls.termination;
  return robust;
}

namespace {
JointSolution CeresPhase(const JointProblem& p, FlatLoss loss_kind, JointSolution out) {
  std::unique_ptr<ceres::LossFunction> loss(MakeCeresLoss(loss_kind, p.loss_scale));
  ceres::Problem::Options po;
  po.loss_function_ownership = ceres::DO_NOT_TAKE_OWNERSHIP;
  ceres::Problem prob(po);
  for (size_t i = 0; i < p.slices.size(); ++i) {
    const auto& sl = p.slices[i];
    for (const auto& t : sl.terms) {
      auto* cost = new ceres::DynamicAutoDiffCostFunction<RatioResidual<true>, 8>(
          new RatioResidual<true>(t.basis, t.ratio, t.sigma));
      cost->AddParameterBlock(p.n_coeffs);
      cost->AddParameterBlock(1);
      cost->SetNumResiduals(1);
      prob.AddResidualBlock(cost, loss.get(), out.coeffs[i].data(),
                            &out.scale[static_cast<size_t>(t.star)]);
    }
    if (p.smoothness > 0 && i > 0 && p.slices[i - 1].detector == sl.detector &&
        p.slices[i - 1].slice + 1 == sl.slice && prob.HasParameterBlock(out.coeffs[i].data()) &&
        prob.HasParameterBlock(out.coeffs[i - 1].data())) {
      auto* cost = new ceres::DynamicAutoDiffCostFunction<SmoothResidual, 8>(
          new SmoothResidual(p.n_coeffs, p.smoothness));
      cost->AddParameterBlock(p.n_coeffs);
      cost->AddParameterBlock(p.n_coeffs);
      cost->SetNumResiduals(p.n_coeffs);
      prob.AddResidualBlock(cost, nullptr, out.coeffs[i].data(), out.coeffs[i - 1].data());
    }
  }
  for (int i = 0; i < p.n_stars; ++i)
    if (p.fixed[static_cast<size_t>(i)] &&
        prob.HasParameterBlock(&out.scale[static_cast<size_t>(i)]))
      prob.SetParameterBlockConstant(&out.scale[static_cast<size_t>(i)]);
  ceres::Solver::Options so;
  so.linear_solver_type = ceres::SPARSE_NORMAL_CHOLESKY;
  so.max_num_iterations = p.max_iterations;
  so.function_tolerance = 1e-14;
  so.gradient_tolerance = 1e-16;
  so.parameter_tolerance = 1e-14;
  so.num_threads = 2;
  so.logging_type = ceres::SILENT;
  ceres::Solver::Summary summary;
  ceres::Solve(so, &prob, &summary);
  out.initial_cost = summary.initial_cost;
  out.final_cost = summary.final_cost;
  out.iterations = static_cast<int>(summary.iterations.size());
  out.termination = ceres::TerminationTypeToString(summary.termination_type);
  out.message = summary.message;
  return out;
}
}  // namespace

JointSolution SolveJointCeres(const JointProblem& p, std::vector<double> scale) {
  CheckProblem(p, scale);
  if (scale.empty()) scale.assign(static_cast<size_t>(p.n_stars), 1.0);
  JointSolution start;
  start.scale = scale;
  start.coeffs.assign(p.slices.size(), StartCoeffs(p.n_coeffs));
  JointSolution ls = CeresPhase(p, FlatLoss::kNone, std::move(start));
  if (p.loss == FlatLoss::kNone) return ls;
  const double initial = ls.initial_cost;
  JointSolution robust = CeresPhase(p, p.loss, ls);
  robust.iterations += ls.iterations;
  robust.initial_cost = initial;
  return robust;
}

}  // namespace csst
