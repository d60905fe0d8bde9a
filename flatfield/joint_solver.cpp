#include "flatfield/joint_solver.h"

#include <ceres/ceres.h>
#include <tbb/parallel_for.h>

#include <Eigen/Dense>
#include <Eigen/SparseCholesky>
#include <algorithm>
#include <array>
#include <cmath>
#include <map>
#include <memory>

#include "core/errors.h"
#include "core/mpi_world.h"
#include "core/progress.h"
#include "flatfield/residuals.h"

namespace csst {
namespace {

using Eigen::MatrixXd;
using Eigen::VectorXd;

// The slices of one detector (contiguous in the problem: slices are sorted by detector).
struct DetectorBlock {
  size_t first = 0, last = 0;  // problem slices [first, last)
  std::vector<std::pair<size_t, size_t>>
      neighbours;  // smoothness pairs (k, k-1), problem slice indices
};

struct State {
  std::vector<VectorXd> c;  // per problem slice
  VectorXd t;               // per star
};

// Basis values of a term into b (nc values; nc <= kMaxCoeffs).
constexpr int kMaxCoeffs = (kMaxFlatOrder + 1) * (kMaxFlatOrder + 2) / 2;

// Legendre recurrence P_k = A_k u P_k-1 - C_k P_k-2, A_k = (2k - 1) / k, C_k = (k - 1) / k.
constexpr auto kLegendreA = [] {
  std::array<double, kMaxFlatOrder + 1> a{};
  for (int k = 1; k <= kMaxFlatOrder; ++k) a[k] = (2.0 * k - 1) / k;
  return a;
}();
constexpr auto kLegendreC = [] {
  std::array<double, kMaxFlatOrder + 1> c{};
  for (int k = 1; k <= kMaxFlatOrder; ++k) c[k] = (k - 1.0) / k;
  return c;
}();

constexpr int kJointTag = 14;  // MPI tag of the joint fit's block sums (core/mpi_world.h)

// O >= 0: the degree known at compile time (loops unrolled); -1: any degree.
template <int O>
class Solver {
 public:
  Solver(const JointProblem& p, FlatLoss loss)
      : p_(p),
        loss_(loss),
        nc_(p.NumCoeffs()),
        su_(p.nx > 1 ? 2.0 / (p.nx - 1) : 0.0),
        sv_(p.ny > 1 ? 2.0 / (p.ny - 1) : 0.0),
        ou_(p.nx > 1 ? -1.0 : 0.0),
        ov_(p.ny > 1 ? -1.0 : 0.0) {
    for (int32_t st : p.row_star)
      if (st < 0 || st >= p.n_stars)
        throw Error("joint fit: a row names star " + std::to_string(st));
    if ((O >= 0 && p.order != O) || p.order < 0 || p.order > kMaxFlatOrder)
      throw Error("joint fit: degree " + std::to_string(p.order) + " outside 0.." +
                  std::to_string(kMaxFlatOrder));
    term_offset_.assign(p.slices.size() + 1, 0);
    active_.assign(p.slices.size(), nc_);
    for (size_t i = 0; i < p.slices.size(); ++i) {
      const auto& s = p.slices[i];
      if (s.order > p.order)
        throw Error("joint fit: a slice of degree " + std::to_string(s.order) +
                    " in a problem of degree " + std::to_string(p.order));
      if (s.order >= 0) active_[i] = NumCoefficients(s.order);
      if (i > 0 && p.slices[i - 1].detector == s.detector && active_[i] != active_[i - 1] &&
          p.smoothness > 0)
        throw Error("joint fit: slices of detector " + std::to_string(s.detector) +
                    " differ in degree");
      if (blocks_.empty() || p.slices[blocks_.back().first].detector != s.detector) {
        for (const auto& b : blocks_)
          if (p.slices[b.first].detector == s.detector)
            throw Error("joint fit: slices of detector " + std::to_string(s.detector) +
                        " not in order");
        blocks_.push_back({i, i, {}});
      } else {
        const auto& prev = p.slices[i - 1];
        if (prev.slice >= s.slice)
          throw Error("joint fit: slices of detector " + std::to_string(s.detector) +
                      " not in order");
        if (p.smoothness > 0 && prev.slice + 1 == s.slice)
          blocks_.back().neighbours.emplace_back(i, i - 1);
      }
      blocks_.back().last = i + 1;
      for (const auto& t : *s.terms)
        if (t.row < 0 || t.row >= static_cast<int32_t>(p.row_star.size()))
          throw Error("joint fit: term names row " + std::to_string(t.row));
      term_offset_[i + 1] = term_offset_[i] + s.terms->size();
    }
  }

  double Cost(const State& x) const {
    std::vector<double> part(blocks_.size(), 0.0);
    const double w2 = p_.smoothness * p_.smoothness;
    tbb::parallel_for(size_t{0}, blocks_.size(), [&](size_t bi) {
      if (!Owned(bi)) return;
      const auto& blk = blocks_[bi];
      double cost = 0, b[kMaxCoeffs];
      for (size_t i = blk.first; i < blk.last; ++i) {
        for (const auto& t : *p_.slices[i].terms) {
          Basis(t, b);
          const double e = (t.ratio - x.t(Star(t)) * Dot(b, x.c[i])) / t.sigma;
          cost += 0.5 * LossRho(loss_, p_.loss_scale, e * e);
        }
      }
      for (const auto& [k, j] : blk.neighbours) cost += 0.5 * w2 * (x.c[k] - x.c[j]).squaredNorm();
      part[bi] = cost;
    });
    Exchange([&](ByteWriter& w, size_t bi) { w.Put(part[bi]); },
             [&](ByteReader& r, size_t bi) { part[bi] = r.Get<double>(); });
    double cost = 0;
    for (double c : part) cost += c;  // in block order: independent of the thread count
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
      CheckCancelled();  // a SIGINT/SIGTERM ends the fit within one iteration
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
          if (cost - trial_cost <= p_.function_tolerance * cost)
            converged = true, why = "cost change below tolerance";
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
    out.linear_iterations = linear_iterations_;
    out.termination = converged ? FitTermination::kConvergence : FitTermination::kNoConvergence;
    out.message = why + ", " + std::to_string(rejected_) + " rejected steps, " +
                  std::to_string(linear_iterations_) + " conjugate-gradient iterations";
    out.scale.assign(x.t.data(), x.t.data() + x.t.size());
    for (const auto& c : x.c) out.coeffs.emplace_back(c.data(), c.data() + c.size());
    return out;
  }

 private:
  // Whether this process makes block bi's sums (always with one process).
  bool Owned(size_t bi) const { return !p_.owns || p_.owns(p_.slices[blocks_[bi].first].detector); }
  // After a pass over the blocks in which each process made its own: every block's output on every
  // process (put writes block bi's output, get reads another process's). Nothing with one process.
  template <typename Put, typename Get>
  void Exchange(Put put, Get get) const {
    if (!p_.owns) return;
    ShareOwnedItems(
        blocks_.size(), kJointTag, [&](size_t bi) { return Owned(bi); }, put, get);
  }

  // FlatBasisInto at the term's (u, v), the recurrence's divisions folded into constants.
  void Basis(const JointTerm& t, double* b) const {
    // Arrays of the exact size at a known degree, so that they live in registers.
    constexpr int kSize = O >= 0 ? O + 1 : kMaxFlatOrder + 1;
    double pu[kSize], pv[kSize];
    const double u = t.x * su_ + ou_, v = t.y * sv_ + ov_;
    const int order = Order();
    pu[0] = pv[0] = 1.0;
    if (order >= 1) pu[1] = u, pv[1] = v;
#pragma GCC unroll 8
    for (int k = 2; k <= order; ++k) {
      pu[k] = kLegendreA[k] * u * pu[k - 1] - kLegendreC[k] * pu[k - 2];
      pv[k] = kLegendreA[k] * v * pv[k - 1] - kLegendreC[k] * pv[k - 2];
    }
    int at = 0;
#pragma GCC unroll 8
    for (int d = 0; d <= order; ++d)
#pragma GCC unroll 8
      for (int i = d; i >= 0; --i) b[at++] = pu[i] * pv[d - i];
  }
  int32_t Star(const JointTerm& t) const { return p_.row_star[static_cast<size_t>(t.row)]; }
  double Dot(const double* b, const VectorXd& c) const {
    double m = 0;
    for (int k = 0; k < Nc(); ++k) m += b[k] * c(k);
    return m;
  }
  Eigen::Index Off(size_t slice) const { return static_cast<Eigen::Index>(slice) * Nc(); }

  // Gauss-Newton normal equations at x: [A B; B^T D] [dc; dt] = [qc; qt] (q = minus the
  // gradient). A: per slice an nc x nc block (smoothness adds its coupling of neighbours); D:
  // diagonal, one entry per star; B: per term the column g * basis, kept as the scalar g.
  void Linearize(const State& x) {
    const size_t n_slices = p_.slices.size();
    a_.assign(n_slices, MatrixXd());
    qc_ = VectorXd::Zero(Off(n_slices));
    g_.assign(term_offset_.back(), 0.0);
    std::vector<VectorXd> d_part(blocks_.size()), qt_part(blocks_.size());
    const double w2 = p_.smoothness * p_.smoothness;
    tbb::parallel_for(size_t{0}, blocks_.size(), [&](size_t bi) {
      if (!Owned(bi)) return;
      const auto& blk = blocks_[bi];
      VectorXd& d = d_part[bi];
      VectorXd& qt = qt_part[bi];
      d = VectorXd::Zero(p_.n_stars);
      qt = VectorXd::Zero(p_.n_stars);
      double b[kMaxCoeffs];
      for (size_t i = blk.first; i < blk.last; ++i) {
        const VectorXd& c = x.c[i];
        MatrixXd& a = a_[i];
        a = MatrixXd::Zero(Nc(), Nc());
        // Coefficients beyond the slice's degree are not unknowns: an identity block and no
        // gradient keep them at 0 in every step.
        const int m = active_[i];
        for (int r = m; r < Nc(); ++r) a(r, r) = 1.0;
        double* qc = qc_.data() + Off(i);
        double* g = g_.data() + term_offset_[i];
        const auto& terms = *p_.slices[i].terms;
        for (size_t j = 0; j < terms.size(); ++j) {
          const auto& t = terms[j];
          Basis(t, b);
          const double ts = x.t(Star(t));
          const double model = Dot(b, c);
          const double e = (t.ratio - ts * model) / t.sigma;
          const double w = LossWeight(loss_, p_.loss_scale, e * e);
          const double h = LossCurvature(loss_, p_.loss_scale, e * e);
          const double jcs = ts / t.sigma;    // -de/dc = jcs * basis
          const double jt = model / t.sigma;  // -de/dt
          for (int r = 0; r < m; ++r) {
            const double hr = h * jcs * jcs * b[r];
            for (int q = 0; q <= r; ++q) a(r, q) += hr * b[q];
            qc[r] += w * e * jcs * b[r];
          }
          // Fixed stars do not move: their coupling is dropped.
          g[j] = p_.fixed[static_cast<size_t>(Star(t))] ? 0.0 : h * jt * jcs;
          d(Star(t)) += h * jt * jt;
          qt(Star(t)) += w * e * jt;
        }
        for (int r = 0; r < m; ++r)
          for (int q = r + 1; q < m; ++q) a(r, q) = a(q, r);
      }
      for (const auto& [k, j] : blk.neighbours) {
        const VectorXd diff = x.c[k] - x.c[j];
        a_[k].diagonal().array() += w2;
        a_[j].diagonal().array() += w2;
        qc_.segment(Off(k), Nc()) -= w2 * diff;
        qc_.segment(Off(j), Nc()) += w2 * diff;
      }
    });
    Exchange(
        [&](ByteWriter& w, size_t bi) {
          for (size_t i = blocks_[bi].first; i < blocks_[bi].last; ++i) {
            w.PutArray(a_[i].data(), static_cast<size_t>(a_[i].size()));
            w.PutArray(qc_.data() + Off(i), static_cast<size_t>(Nc()));
          }
          w.PutArray(d_part[bi].data(), static_cast<size_t>(p_.n_stars));
          w.PutArray(qt_part[bi].data(), static_cast<size_t>(p_.n_stars));
        },
        [&](ByteReader& r, size_t bi) {
          for (size_t i = blocks_[bi].first; i < blocks_[bi].last; ++i) {
            a_[i].resize(Nc(), Nc());
            r.GetArray(a_[i].data(), static_cast<size_t>(a_[i].size()));
            r.GetArray(qc_.data() + Off(i), static_cast<size_t>(Nc()));
          }
          d_part[bi].resize(p_.n_stars);
          qt_part[bi].resize(p_.n_stars);
          r.GetArray(d_part[bi].data(), static_cast<size_t>(p_.n_stars));
          r.GetArray(qt_part[bi].data(), static_cast<size_t>(p_.n_stars));
        });
    d_ = VectorXd::Zero(p_.n_stars);
    qt_ = VectorXd::Zero(p_.n_stars);
    for (size_t bi = 0; bi < blocks_.size(); ++bi) {  // in order: independent of the thread count
      d_ += d_part[bi];
      qt_ += qt_part[bi];
    }
  }

  // u = B^T v (per star), summed per block and then in block order.
  void CouplingT(const VectorXd& v, VectorXd* u) const {
    std::vector<VectorXd> part(blocks_.size());
    tbb::parallel_for(size_t{0}, blocks_.size(), [&](size_t bi) {
      if (!Owned(bi)) return;
      const auto& blk = blocks_[bi];
      VectorXd& acc = part[bi];
      acc = VectorXd::Zero(p_.n_stars);
      double b[kMaxCoeffs];
      for (size_t i = blk.first; i < blk.last; ++i) {
        const double* vi = v.data() + Off(i);
        const double* g = g_.data() + term_offset_[i];
        const auto& terms = *p_.slices[i].terms;
        for (size_t j = 0; j < terms.size(); ++j) {
          if (g[j] == 0) continue;
          Basis(terms[j], b);
          double s = 0;
          for (int r = 0; r < active_[i]; ++r) s += b[r] * vi[r];
          acc(Star(terms[j])) += g[j] * s;
        }
      }
    });
    Exchange([&](ByteWriter& w,
                 size_t bi) { w.PutArray(part[bi].data(), static_cast<size_t>(p_.n_stars)); },
             [&](ByteReader& r, size_t bi) {
               part[bi].resize(p_.n_stars);
               r.GetArray(part[bi].data(), static_cast<size_t>(p_.n_stars));
             });
    u->setZero(p_.n_stars);
    for (const auto& acc : part) *u += acc;
  }

  // out += sign * B u (per slice; each slice written by one task).
  void CouplingAdd(const VectorXd& u, double sign, VectorXd* out) const {
    tbb::parallel_for(size_t{0}, blocks_.size(), [&](size_t bi) {
      if (!Owned(bi)) return;
      const auto& blk = blocks_[bi];
      double b[kMaxCoeffs];
      for (size_t i = blk.first; i < blk.last; ++i) {
        double* o = out->data() + Off(i);
        const double* g = g_.data() + term_offset_[i];
        const auto& terms = *p_.slices[i].terms;
        for (size_t j = 0; j < terms.size(); ++j) {
          if (g[j] == 0) continue;
          Basis(terms[j], b);
          const double s = sign * g[j] * u(Star(terms[j]));
          for (int r = 0; r < active_[i]; ++r) o[r] += s * b[r];
        }
      }
    });
    Exchange(
        [&](ByteWriter& w, size_t bi) {
          for (size_t i = blocks_[bi].first; i < blocks_[bi].last; ++i)
            w.PutArray(out->data() + Off(i), static_cast<size_t>(Nc()));
        },
        [&](ByteReader& r, size_t bi) {
          for (size_t i = blocks_[bi].first; i < blocks_[bi].last; ++i)
            r.GetArray(out->data() + Off(i), static_cast<size_t>(Nc()));
        });
  }

  // out = S v with S = A_damped - B D_damped^-1 B^T, the reduced system in the coefficients.
  void ApplyReduced(const VectorXd& v, VectorXd* out) const {
    VectorXd u;
    CouplingT(v, &u);
    u.array() *= inv_d_.array();
    out->resize(v.size());
    for (size_t i = 0; i < ad_.size(); ++i)
      out->segment(Off(i), Nc()).noalias() = ad_[i] * v.segment(Off(i), Nc());
    const double w2 = p_.smoothness * p_.smoothness;
    for (const auto& blk : blocks_)
      for (const auto& [k, j] : blk.neighbours) {
        out->segment(Off(k), Nc()) -= w2 * v.segment(Off(j), Nc());
        out->segment(Off(j), Nc()) -= w2 * v.segment(Off(k), Nc());
      }
    CouplingAdd(u, -1.0, out);
  }

  // Solves the damped system by eliminating the star scales and solving the reduced system in the
  // coefficients by preconditioned conjugate gradients; false if a preconditioner block is not
  // positive definite. *predicted: the decrease of the Gauss-Newton model, 1/2 (step.q + mu
  // step.D.step).
  bool Step(double mu, State* x, double* step_norm, double* predicted) {
    const size_t n_slices = p_.slices.size();
    const Eigen::Index n = p_.n_stars;
    VectorXd dd(n);
    inv_d_.resize(n);
    for (Eigen::Index i = 0; i < n; ++i) {
      dd(i) = mu * std::clamp(d_(i), 1e-6, 1e32);
      inv_d_(i) = p_.fixed[static_cast<size_t>(i)] ? 0.0 : 1.0 / (d_(i) + dd(i));
    }
    ad_.assign(n_slices, MatrixXd());
    std::vector<MatrixXd> s_diag(n_slices);  // per slice: its diagonal block of S
    std::vector<Eigen::LLT<MatrixXd>> pre(n_slices);
    std::vector<char> ok(n_slices, 1);
    tbb::parallel_for(size_t{0}, blocks_.size(), [&](size_t bi) {
      const auto& blk = blocks_[bi];
      double b[kMaxCoeffs];
      for (size_t i = blk.first; i < blk.last; ++i) {
        MatrixXd a = a_[i];
        for (int r = 0; r < Nc(); ++r) a(r, r) += mu * std::clamp(a(r, r), 1e-6, 1e32);
        ad_[i] = a;
        if (!Owned(bi)) continue;  // its block of S comes from the process that owns it
        // Preconditioner: the slice's diagonal block of S.
        const double* g = g_.data() + term_offset_[i];
        const auto& terms = *p_.slices[i].terms;
        for (size_t j = 0; j < terms.size(); ++j) {
          if (g[j] == 0) continue;
          Basis(terms[j], b);
          const double s = g[j] * g[j] * inv_d_(Star(terms[j]));
          for (int r = 0; r < active_[i]; ++r)
            for (int q = 0; q <= r; ++q) a(r, q) -= s * b[r] * b[q];
        }
        s_diag[i] = std::move(a);
      }
    });
    Exchange(
        [&](ByteWriter& w, size_t bi) {
          for (size_t i = blocks_[bi].first; i < blocks_[bi].last; ++i)
            w.PutArray(s_diag[i].data(), static_cast<size_t>(s_diag[i].size()));
        },
        [&](ByteReader& r, size_t bi) {
          for (size_t i = blocks_[bi].first; i < blocks_[bi].last; ++i) {
            s_diag[i].resize(Nc(), Nc());
            r.GetArray(s_diag[i].data(), static_cast<size_t>(s_diag[i].size()));
          }
        });
    tbb::parallel_for(size_t{0}, n_slices, [&](size_t i) {
      pre[i].compute(s_diag[i]);  // reads the lower triangle
      if (pre[i].info() != Eigen::Success) ok[i] = 0;
    });
    for (char o : ok)
      if (!o) return false;
    auto precondition = [&](const VectorXd& r, VectorXd* z) {
      z->resize(r.size());
      for (size_t i = 0; i < n_slices; ++i)
        z->segment(Off(i), Nc()) = pre[i].solve(r.segment(Off(i), Nc()));
    };
    // Right-hand side qc - B D^-1 qt; conjugate gradients from dc = 0.
    VectorXd rhs = qc_;
    CouplingAdd(VectorXd(inv_d_.array() * qt_.array()), -1.0, &rhs);
    VectorXd dc = VectorXd::Zero(rhs.size()), r = rhs, z, p, sp;
    precondition(r, &z);
    p = z;
    double rz = r.dot(z);
    const double stop = p_.linear_tolerance * rhs.norm();
    for (int k = 0; k < p_.max_linear_iterations && r.norm() > stop; ++k) {
      CheckCancelled();
      ApplyReduced(p, &sp);
      const double psp = p.dot(sp);
      if (!(psp > 0)) break;  // no further descent in the Krylov space (rounding)
      const double alpha = rz / psp;
      dc += alpha * p;
      r -= alpha * sp;
      precondition(r, &z);
      const double rz_next = r.dot(z);
      p = z + (rz_next / rz) * p;
      rz = rz_next;
      ++linear_iterations_;
    }
    // Back-substitution: dt = D^-1 (qt - B^T dc).
    VectorXd btdc;
    CouplingT(dc, &btdc);
    const VectorXd dt = inv_d_.array() * (qt_ - btdc).array();
    double norm2 = dt.squaredNorm() + dc.squaredNorm();
    double pred = dt.dot(qt_) + dc.dot(qc_);
    for (Eigen::Index i = 0; i < n; ++i) pred += dd(i) * dt(i) * dt(i);
    for (size_t i = 0; i < n_slices; ++i)
      for (int q = 0; q < Nc(); ++q) {
        const double v = dc(Off(i) + q);
        pred += mu * std::clamp(a_[i](q, q), 1e-6, 1e32) * v * v;
      }
    x->t += dt;
    for (size_t i = 0; i < n_slices; ++i) x->c[i] += dc.segment(Off(i), Nc());
    *step_norm = std::sqrt(norm2);
    *predicted = 0.5 * pred;
    return std::isfinite(*step_norm) && std::isfinite(pred);
  }

  const JointProblem& p_;
  const FlatLoss loss_;
  int rejected_ = 0;
  long linear_iterations_ = 0;
  const int nc_;
  const double su_, sv_, ou_, ov_;  // x, y -> u, v in [-1, 1]: u = x su + ou (FlatBasisInto)
  int Nc() const {
    if constexpr (O >= 0) return (O + 1) * (O + 2) / 2;
    return nc_;
  }
  int Order() const {
    if constexpr (O >= 0) return O;
    return p_.order;
  }
  std::vector<DetectorBlock> blocks_;
  std::vector<size_t> term_offset_;  // first term of each slice in g_
  std::vector<int> active_;          // per slice: its number of free coefficients (its degree's)
  std::vector<MatrixXd> a_, ad_;     // per slice: the coefficient block, undamped and damped
  VectorXd qc_;                      // all coefficients stacked (slice i at i * nc)
  std::vector<double> g_;            // per term: the coupling scalar
  VectorXd d_, qt_, inv_d_;          // per star
};

// The solver for the problem's degree: unrolled for degrees 0-6, generic beyond.
JointSolution Solve(const JointProblem& p, FlatLoss loss, State x) {
  switch (p.order) {
    case 0:
      return Solver<0>(p, loss).Solve(std::move(x));
    case 1:
      return Solver<1>(p, loss).Solve(std::move(x));
    case 2:
      return Solver<2>(p, loss).Solve(std::move(x));
    case 3:
      return Solver<3>(p, loss).Solve(std::move(x));
    case 4:
      return Solver<4>(p, loss).Solve(std::move(x));
    case 5:
      return Solver<5>(p, loss).Solve(std::move(x));
    case 6:
      return Solver<6>(p, loss).Solve(std::move(x));
    default:
      return Solver<-1>(p, loss).Solve(std::move(x));
  }
}

void CheckProblem(const JointProblem& p, const std::vector<double>& scale) {
  if (p.order < 0) throw Error("joint fit: the degree must be >= 0");
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
  const auto c0 = StartCoeffs(problem.NumCoeffs());
  x.c.assign(problem.slices.size(), Eigen::Map<const VectorXd>(c0.data(), problem.NumCoeffs()));
  JointSolution ls = Solve(problem, FlatLoss::kNone, std::move(x));
  if (problem.loss == FlatLoss::kNone) return ls;
  // The robust fit starts from the least-squares solution.
  State y;
  y.t = Eigen::Map<const VectorXd>(ls.scale.data(), problem.n_stars);
  for (const auto& c : ls.coeffs)
    y.c.emplace_back(Eigen::Map<const VectorXd>(c.data(), problem.NumCoeffs()));
  JointSolution robust = Solve(problem, problem.loss, std::move(y));
  robust.iterations += ls.iterations;
  robust.initial_cost = ls.initial_cost;
  robust.message =
      "least squares: " + ls.message + "; " + ToString(problem.loss) + ": " + robust.message;
  if (ls.termination != FitTermination::kConvergence) robust.termination = ls.termination;
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
    for (const auto& t : *sl.terms) {
      std::vector<double> basis(static_cast<size_t>(p.NumCoeffs()));
      FlatBasisInto(t.x, t.y, p.nx, p.ny, p.order, basis.data());
      auto* cost = new ceres::DynamicAutoDiffCostFunction<RatioResidual<true>, 8>(
          new RatioResidual<true>(std::move(basis), t.ratio, t.sigma));
      cost->AddParameterBlock(p.NumCoeffs());
      cost->AddParameterBlock(1);
      cost->SetNumResiduals(1);
      prob.AddResidualBlock(
          cost, loss.get(), out.coeffs[i].data(),
          &out.scale[static_cast<size_t>(p.row_star[static_cast<size_t>(t.row)])]);
    }
    if (p.smoothness > 0 && i > 0 && p.slices[i - 1].detector == sl.detector &&
        p.slices[i - 1].slice + 1 == sl.slice && prob.HasParameterBlock(out.coeffs[i].data()) &&
        prob.HasParameterBlock(out.coeffs[i - 1].data())) {
      auto* cost = new ceres::DynamicAutoDiffCostFunction<SmoothResidual, 8>(
          new SmoothResidual(p.NumCoeffs(), p.smoothness));
      cost->AddParameterBlock(p.NumCoeffs());
      cost->AddParameterBlock(p.NumCoeffs());
      cost->SetNumResiduals(p.NumCoeffs());
      prob.AddResidualBlock(cost, nullptr, out.coeffs[i].data(), out.coeffs[i - 1].data());
    }
  }
  // A slice below the problem's degree: its higher coefficients held at 0.
  for (size_t i = 0; i < p.slices.size(); ++i) {
    const int active = p.slices[i].order >= 0 ? NumCoefficients(p.slices[i].order) : p.NumCoeffs();
    if (active >= p.NumCoeffs() || !prob.HasParameterBlock(out.coeffs[i].data())) continue;
    std::vector<int> constant;
    for (int k = active; k < p.NumCoeffs(); ++k) constant.push_back(k);
    prob.SetManifold(out.coeffs[i].data(), new ceres::SubsetManifold(p.NumCoeffs(), constant));
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
  out.termination = FitTerminationOf(summary.termination_type);
  out.message = summary.message;
  return out;
}
}  // namespace

JointSolution SolveJointCeres(const JointProblem& p, std::vector<double> scale) {
  CheckProblem(p, scale);
  if (scale.empty()) scale.assign(static_cast<size_t>(p.n_stars), 1.0);
  JointSolution start;
  start.scale = scale;
  start.coeffs.assign(p.slices.size(), StartCoeffs(p.NumCoeffs()));
  JointSolution ls = CeresPhase(p, FlatLoss::kNone, std::move(start));
  if (p.loss == FlatLoss::kNone) return ls;
  const double initial = ls.initial_cost;
  JointSolution robust = CeresPhase(p, p.loss, ls);
  robust.iterations += ls.iterations;
  robust.initial_cost = initial;
  return robust;
}

}  // namespace csst
