#include "flatfield/order_select.h"

#include <tbb/parallel_for.h>

#include <Eigen/Dense>
#include <cmath>
#include <cstdio>
#include <limits>

#include "core/detectors.h"
#include "core/progress.h"
#include "core/rng.h"

namespace csst {
namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

using RowMatrix = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

// Solves the leading nd x nd block of h for the leading nd entries of g; false if singular.
bool SolveLeading(const Eigen::MatrixXd& h, const Eigen::VectorXd& g, int nd, Eigen::VectorXd* c) {
  const Eigen::LDLT<Eigen::MatrixXd> ldlt(h.topLeftCorner(nd, nd));
  if (ldlt.info() != Eigen::Success || !ldlt.isPositive()) return false;
  const auto d = ldlt.vectorD();
  if (!(d.minCoeff() > 0) || !(d.minCoeff() > 1e-13 * d.maxCoeff())) return false;
  *c = ldlt.solve(g.head(nd));
  return true;
}

// Normal equations of the rows `rows` of the basis, whitened by sqrt(w * robust): a = X^T X (full,
// symmetric), g = X^T y and sy = y^T y, with y = (ratio - 1) whitened the same way.
struct NormalSystem {
  Eigen::MatrixXd a;
  Eigen::VectorXd g;
  double sy = 0;
};
NormalSystem NormalEquations(const RowMatrix& basis, const std::vector<double>& rr,
                             const std::vector<double>& w, const std::vector<double>& robust,
                             const std::vector<Eigen::Index>& rows) {
  const Eigen::Index n = basis.cols();
  RowMatrix x(static_cast<Eigen::Index>(rows.size()), n);
  Eigen::VectorXd y(static_cast<Eigen::Index>(rows.size()));
  for (size_t q = 0; q < rows.size(); ++q) {
    const size_t i = static_cast<size_t>(rows[q]);
    const double s = std::sqrt(w[i] * robust[i]);
    x.row(static_cast<Eigen::Index>(q)) = basis.row(rows[q]) * s;
    y(static_cast<Eigen::Index>(q)) = rr[i] * s;
  }
  Eigen::MatrixXd h = Eigen::MatrixXd::Zero(n, n);
  h.selfadjointView<Eigen::Lower>().rankUpdate(x.transpose());
  NormalSystem s;
  s.a = h.selfadjointView<Eigen::Lower>();
  s.g = x.transpose() * y;
  s.sy = y.squaredNorm();
  return s;
}

}  // namespace

int FoldOf(int64_t obsid, int folds) {
  return static_cast<int>(Mix64(static_cast<uint64_t>(obsid) ^ 0x6b666f6c64ULL) %
                          static_cast<uint64_t>(folds));
}

std::vector<double> SliceHeldOutCost(const std::vector<RatioPoint>& points,
                                     const std::vector<int64_t>& obsid, double nx, double ny,
                                     const FlatFitOptions& o, long* held_out) {
  const int top = o.order_max, n = NumCoefficients(top), folds = o.order_folds;
  std::vector<double> out(static_cast<size_t>(top + 1), kNaN);
  if (held_out) *held_out = 0;
  // Usable points: basis rows, r - 1 (the flat's departure from 1, which keeps the held-out sums
  // free of cancellation), 1 / sigma^2 and the fold of their star.
  std::vector<int> fold_of;
  std::vector<double> rr, w;
  RowMatrix basis;
  {
    std::vector<size_t> use;
    for (size_t i = 0; i < points.size(); ++i)
      if (points[i].sigma > 0 && std::isfinite(points[i].ratio) && std::isfinite(points[i].sigma))
        use.push_back(i);
    basis.resize(static_cast<Eigen::Index>(use.size()), n);
    for (size_t k = 0; k < use.size(); ++k) {
      const auto& p = points[use[k]];
      FlatBasisInto(p.x, p.y, nx, ny, top, basis.row(static_cast<Eigen::Index>(k)).data());
      rr.push_back(p.ratio - 1.0);
      w.push_back(1.0 / (p.sigma * p.sigma));
      fold_of.push_back(FoldOf(obsid[use[k]], folds));
    }
  }
  const Eigen::Index m = basis.rows();
  if (m == 0) return out;
  // A robust loss: the weights rho'(e^2) of the robust fit at order_max on all points (FlatFitter's
  // re-weighted fit, Ceres' treatment of Huber and Cauchy), held fixed in every training fit and
  // held-out cost.
  std::vector<double> robust(static_cast<size_t>(m), 1.0);
  if (o.loss != FlatLoss::kNone && m >= n) {
    FlatFitOptions at_top = o;
    at_top.order = top;
    const FlatSlice fit = FlatFitter(at_top).Fit(points, nx, ny);
    if (fit.termination != FitTermination::kNotRun) {
      const Eigen::Map<const Eigen::VectorXd> c(fit.coeffs.data(), n);
      const Eigen::VectorXd f = basis * c;  // the flat at each usable point
      for (Eigen::Index i = 0; i < m; ++i) {
        const size_t k = static_cast<size_t>(i);
        const double e = rr[k] + 1.0 - f(i);
        robust[k] = LossWeight(o.loss, o.loss_scale, e * e * w[k]);
      }
    }
  }
  // Per-fold normal equations at order_max: A_k = X_k^T X_k, g_k = X_k^T y_k, S_k = y_k^T y_k.
  std::vector<Eigen::MatrixXd> a(static_cast<size_t>(folds), Eigen::MatrixXd::Zero(n, n));
  std::vector<Eigen::VectorXd> g(static_cast<size_t>(folds), Eigen::VectorXd::Zero(n));
  std::vector<double> sy(static_cast<size_t>(folds), 0.0);
  std::vector<long> count(static_cast<size_t>(folds), 0);
  for (int k = 0; k < folds; ++k) {
    std::vector<Eigen::Index> rows;
    for (Eigen::Index i = 0; i < m; ++i)
      if (fold_of[static_cast<size_t>(i)] == k) rows.push_back(i);
    count[static_cast<size_t>(k)] = static_cast<long>(rows.size());
    if (rows.empty()) continue;
    NormalSystem s = NormalEquations(basis, rr, w, robust, rows);
    a[static_cast<size_t>(k)] = std::move(s.a);
    g[static_cast<size_t>(k)] = std::move(s.g);
    sy[static_cast<size_t>(k)] = s.sy;
  }
  Eigen::MatrixXd a_all = Eigen::MatrixXd::Zero(n, n);
  Eigen::VectorXd g_all = Eigen::VectorXd::Zero(n);
  for (int k = 0; k < folds; ++k)
    a_all += a[static_cast<size_t>(k)], g_all += g[static_cast<size_t>(k)];
  for (int d = 0; d <= top; ++d) {
    const int nd = NumCoefficients(d);
    const long need = std::max<long>(o.min_points, 2L * nd);
    bool ok = true;
    double cost = 0;
    for (int k = 0; k < folds && ok; ++k) {
      const size_t kk = static_cast<size_t>(k);
      if (m - count[kk] < need) {
        ok = false;
        break;
      }
      if (count[kk] == 0) continue;
      Eigen::VectorXd c;
      ok = SolveLeading(a_all - a[kk], g_all - g[kk], nd, &c);
      if (!ok) break;
      // Held out: sum (y - X c)^2 = S - 2 c.g + c^T A c over the fold's leading block.
      cost += sy[kk] - 2.0 * c.dot(g[kk].head(nd)) + c.dot(a[kk].topLeftCorner(nd, nd) * c);
    }
    if (ok) out[static_cast<size_t>(d)] = cost;
  }
  if (held_out) *held_out = static_cast<long>(m);
  return out;
}

OrderSelection SelectFlatOrders(const FlatFitOptions& o, const SliceSource& src) {
  o.Validate();
  OrderSelection sel;
  sel.folds = o.order_folds;
  const int top = o.order_max;
  std::vector<std::pair<size_t, size_t>> jobs;
  for (size_t d = 0; d < src.band_of.size(); ++d)
    for (size_t s = 0; s < static_cast<size_t>(src.slices_of[d]); ++s) jobs.emplace_back(d, s);
  std::vector<std::vector<double>> cost(jobs.size());
  std::vector<long> held(jobs.size(), 0);
  tbb::parallel_for(size_t{0}, jobs.size(), [&](size_t j) {
    if (src.owns && !src.owns(jobs[j].first)) return;
    CheckCancelled();
    std::vector<RatioPoint> pts;
    std::vector<int64_t> ids;
    src.points_of(jobs[j].first, jobs[j].second, &pts, &ids);
    cost[j] = SliceHeldOutCost(pts, ids, src.nx, src.ny, o, &held[j]);
  });
  if (src.share) src.share(&cost, &held);
  // Reduced in job order: the same sums for any thread count.
  for (int b = 0; b < 3; ++b) {
    sel.order[static_cast<size_t>(b)] = std::min(o.order, top);
    sel.score[static_cast<size_t>(b)].assign(static_cast<size_t>(top + 1), kNaN);
    std::vector<size_t> with_points;
    for (size_t j = 0; j < jobs.size(); ++j)
      if (src.band_of[jobs[j].first] == b && held[j] > 0) with_points.push_back(j);
    if (with_points.empty()) continue;
    // The highest degree at which at least half of the slices with points can be scored.
    int ceiling = -1;
    for (int d = top; d >= 0 && ceiling < 0; --d) {
      size_t ok = 0;
      for (size_t j : with_points) ok += std::isfinite(cost[j][static_cast<size_t>(d)]);
      if (2 * ok >= with_points.size()) ceiling = d;
    }
    sel.ceiling[static_cast<size_t>(b)] = ceiling;
    if (ceiling < 0) continue;
    std::vector<double> total(static_cast<size_t>(ceiling + 1), 0.0);
    long points = 0;
    int slices = 0;
    for (size_t j : with_points) {
      bool all = true;
      for (int d = 0; d <= ceiling; ++d)
        all = all && std::isfinite(cost[j][static_cast<size_t>(d)]);
      if (!all) continue;
      for (int d = 0; d <= ceiling; ++d)
        total[static_cast<size_t>(d)] += cost[j][static_cast<size_t>(d)];
      points += held[j];
      ++slices;
    }
    if (slices == 0) continue;
    int best = 0;
    for (int d = 1; d <= ceiling; ++d)
      if (total[static_cast<size_t>(d)] < total[static_cast<size_t>(best)]) best = d;
    sel.order[static_cast<size_t>(b)] = best;
    sel.points[static_cast<size_t>(b)] = points;
    sel.slices[static_cast<size_t>(b)] = slices;
    for (int d = 0; d <= ceiling; ++d)
      sel.score[static_cast<size_t>(b)][static_cast<size_t>(d)] =
          total[static_cast<size_t>(d)] / static_cast<double>(points);
  }
  return sel;
}

std::string DescribeOrderSelection(const OrderSelection& s) {
  std::string out = "degree";
  for (int b = 0; b < 3; ++b) {
    char buf[160];
    const auto& sc = s.score[static_cast<size_t>(b)];
    const int o = s.order[static_cast<size_t>(b)];
    const double at2 = sc.size() > 2 ? sc[2] : kNaN,
                 at = static_cast<size_t>(o) < sc.size() ? sc[static_cast<size_t>(o)] : kNaN;
    std::snprintf(buf, sizeof buf,
                  "%s %s %d (held-out cost per point %.4g, degree 2: %.4g, tried to %d)",
                  b ? "," : "", BandName(BandAt(b)), o, at, at2, s.ceiling[static_cast<size_t>(b)]);
    out += buf;
  }
  return out + " by " + std::to_string(s.folds) + "-fold cross-validation over stars";
}

}  // namespace csst
