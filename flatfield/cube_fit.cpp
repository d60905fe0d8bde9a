#include "flatfield/cube_fit.h"

#include <tbb/parallel_for.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <functional>
#include <limits>
#include <memory>
#include <set>

#include "core/detectors.h"
#include "core/errors.h"
#include "core/grid.h"
#include "core/mpi_world.h"
#include "core/progress.h"
#include "core/spectrum.h"
#include "flatfield/joint_solver.h"

namespace csst {
namespace {

std::vector<DetectorFlat> MakeDetectors(const Instrument& inst) {
  std::vector<DetectorFlat> d;
  const int per = inst.options().detectors_per_band;
  const auto& g = OutputGrid();
  for (int b = 0; b < 3; ++b) {
    for (int k = 0; k < per; ++k) {
      DetectorFlat det;
      det.detector = b * per + k;
      det.band = b;
      det.name = Instrument::DetectorName(b, k);
      for (int p = 0; p < g.size(); ++p) {
        const double l = g.Centre(p);
        if (l >= inst.band(b).lo && l <= inst.band(b).hi) det.pixels.push_back(p);
      }
      d.push_back(det);
    }
  }
  return d;
}

// Points of one slice, divided by their row's scale (joint mode).
std::vector<RatioPoint> SlicePoints(const std::vector<JointTerm>& terms,
                                    const std::vector<double>* row_scale) {
  std::vector<RatioPoint> pts;
  pts.reserve(terms.size());
  for (const auto& t : terms) {
    const double sc = row_scale ? (*row_scale)[static_cast<size_t>(t.row)] : 1.0;
    pts.push_back({t.x, t.y, t.ratio / sc, t.sigma / sc});
  }
  return pts;
}

// Lack of fit, per band: the covariance of the fit residuals of *different* stars less than
// options.lack_of_fit_separation apart, pooled over the band's slices and detectors. Flat
// structure that the polynomial cannot follow is shared by neighbouring stars; errors of single
// stars (noise, their SED and E(B-V) errors, whether or not their sigma holds them) are not, so
// they add noise to the estimate but no bias. For a pair, E[r_i r_j] = C_structure(i, j) -
// cov(F_fit(x_i), F_fit(x_j)) (the residuals of a weighted linear fit have the noise covariance
// Sigma - A (A^T W A)^-1 A^T), so each product gets the fit's covariance added back. Products
// weighted 1 / (sigma_i^2 sigma_j^2); outliers left out.
struct LackOfFitSum {  // one detector's weighted pair products
  double sw = 0, swp = 0;
  long pairs = 0;
};
struct LackOfFitInput {
  const FlatFitOptions& o;
  const RatioTable& table;
  const std::vector<double>* row_scale;  // joint mode: per row; null in independent mode
  const FitShare& share;                 // only the detectors this process owns are measured
};
std::vector<LackOfFitSum> MeasureLackOfFit(const LackOfFitInput& in, const FlatCube& cube) {
  const FlatFitOptions& o = in.o;
  const RatioTable& table = in.table;
  const std::vector<double>* row_scale = in.row_scale;
  using Sum = LackOfFitSum;
  const size_t nd = cube.detectors.size();
  std::vector<Sum> per_det(nd);
  const double d2max = o.lack_of_fit_separation * o.lack_of_fit_separation;
  // Joint mode: a star's fitted scale is a weighted mean over all its points, so it takes up the
  // share W of the structure at its position on this detector that its points here carry in that
  // mean (weights 1/relative sigma^2); its residuals keep 1 - W of it, and a pair's product
  // (1 - W_i)(1 - W_j) of the shared covariance. Rows whose star keeps less than 0.2 are left out.
  const size_t rows = table.rows();
  std::vector<double> kept_of(rows, 1.0);
  if (row_scale) {
    std::map<int64_t, double> star_info;
    for (size_t r = 0; r < rows; ++r) star_info[table.obsid[r]] += table.info[r];
    for (size_t r = 0; r < rows; ++r) {
      const double all = star_info[table.obsid[r]];
      const double keep = all > 0 ? 1.0 - table.info[r] / all : 0.0;
      kept_of[r] = keep >= 0.2 ? keep : 0.0;
    }
  }
  tbb::parallel_for(size_t{0}, nd, [&](size_t d) {
    if (!in.share.Owns(d)) return;
    const auto& det = cube.detectors[d];
    Sum sum;
    struct P {
      double x, y, r, w, keep;
      size_t at;  // row of the point's basis values in `basis` and covariance products in `cb`
      int64_t obsid;
    };
    std::vector<P> pts;
    std::vector<double> z, abs_dev, basis, cb;
    for (size_t s = 0; s < det.slices.size(); ++s) {
      const auto& sl = det.slices[s];
      if (!sl.converged) continue;
      const size_t n = sl.coeffs.size();
      const bool has_cov = sl.covariance.size() == n * n;
      pts.clear();
      z.clear();
      basis.clear();
      for (const auto& t : table.points[d][s]) {
        const size_t row = static_cast<size_t>(t.row);
        if (kept_of[row] <= 0) continue;
        const double sc = row_scale ? (*row_scale)[row] : 1.0;
        const double ratio = t.ratio / sc, sigma = t.sigma / sc;
        if (!(sigma > 0) || !std::isfinite(ratio)) continue;
        const size_t at = pts.size();
        basis.resize((at + 1) * n);
        FlatBasisInto(t.x, t.y, sl.nx, sl.ny, sl.order, basis.data() + at * n);
        double f = 0;
        for (size_t k = 0; k < n; ++k) f += sl.coeffs[k] * basis[at * n + k];
        pts.push_back(
            {t.x, t.y, ratio - f, 1 / (sigma * sigma), kept_of[row], at, table.obsid[row]});
        z.push_back((ratio - f) / sigma);
      }
      if (pts.size() < 3) continue;
      // Outliers: |z - median| beyond 5 robust standard deviations of z (the structure itself
      // widens z, so the cut is not at 5 sigma).
      const double med = Median(z);  // Median takes a copy
      abs_dev.clear();
      for (double v : z) abs_dev.push_back(std::abs(v - med));
      const double cut = 5 * std::max(1.0, 1.4826 * Median(std::move(abs_dev)));
      size_t kept = 0;
      for (size_t i = 0; i < pts.size(); ++i)
        if (std::abs(z[i] - med) <= cut) pts[kept++] = pts[i];
      pts.resize(kept);
      // C b per point, so that a pair's b_i^T C b_j costs n products.
      cb.assign(basis.size(), 0.0);
      if (has_cov)
        for (const auto& q : pts)
          for (size_t a = 0; a < n; ++a)
            for (size_t b = 0; b < n; ++b)
              cb[q.at * n + a] += sl.covariance[a * n + b] * basis[q.at * n + b];
      // Sorted by x, a point's partners are the next ones until x differs by the separation.
      std::sort(pts.begin(), pts.end(), [](const P& u, const P& v) { return u.x < v.x; });
      for (size_t i = 0; i < pts.size(); ++i) {
        int partners = 0;
        for (size_t j = i + 1; j < pts.size() && pts[j].x - pts[i].x < o.lack_of_fit_separation &&
                               partners < o.lack_of_fit_partners;
             ++j) {
          const double dx = pts[i].x - pts[j].x, dy = pts[i].y - pts[j].y;
          if (dx * dx + dy * dy >= d2max) continue;
          if (pts[i].obsid == pts[j].obsid) continue;  // two spectra of one star share its errors
          ++partners;
          double cov = 0;
          for (size_t a = 0; a < n; ++a) cov += basis[pts[i].at * n + a] * cb[pts[j].at * n + a];
          const double k = pts[i].keep * pts[j].keep;
          const double w = pts[i].w * pts[j].w * k * k;
          sum.sw += w;
          sum.swp += w * (pts[i].r * pts[j].r + cov) / k;
          ++sum.pairs;
        }
      }
    }
    per_det[d] = sum;
  });
  return per_det;
}

// The lack of fit per band from its detectors' sums, reduced in detector order.
void ApplyLackOfFit(const std::vector<LackOfFitSum>& per_det, FlatCube* cube) {
  using Sum = LackOfFitSum;
  const size_t nd = cube->detectors.size();
  for (int b = 0; b < 3; ++b) {
    Sum band;
    for (size_t d = 0; d < nd; ++d) {
      if (cube->detectors[d].band != b) continue;
      band.sw += per_det[d].sw;
      band.swp += per_det[d].swp;
      band.pairs += per_det[d].pairs;
    }
    const double var = band.sw > 0 ? band.swp / band.sw : 0.0;
    const double lof = std::sqrt(std::max(var, 0.0));
    cube->summary.lack_of_fit[static_cast<size_t>(b)] = lof;
    cube->summary.lack_of_fit_pairs[static_cast<size_t>(b)] = band.pairs;
    for (auto& det : cube->detectors)
      if (det.band == b)
        for (auto& sl : det.slices) sl.lack_of_fit = sl.converged ? lof : 0.0;
  }
}

constexpr int kFitTag = 10;      // MPI tag of a detector's fitted slices (core/mpi_world.h)
constexpr int kHeldOutTag = 11;  // MPI tag of a rank's k-fold held-out costs
constexpr int kCountsTag = 12;   // MPI tag of a rank's point counts per slice
constexpr int kStarsTag = 13;    // MPI tag of a rank's stars with joint-fit terms

// Points per (detector, slice) of the whole table: this process's detectors' from its table, the
// others' from the processes that own them (FitShare).
std::vector<std::vector<size_t>> PointCounts(const RatioTable& table, const FitShare& share) {
  std::vector<std::vector<size_t>> counts(table.points.size());
  for (size_t d = 0; d < table.points.size(); ++d)
    for (const auto& terms : table.points[d]) counts[d].push_back(terms.size());
  if (share.ranks == 1) return counts;
  ShareOwnedItems(
      counts.size(), kCountsTag, [&](size_t d) { return share.Owns(d); },
      [&](ByteWriter& w, size_t d) { w.PutVector(counts[d]); },
      [&](ByteReader& r, size_t d) {
        auto c = r.GetVector<size_t>();
        if (c.size() != counts[d].size())
          throw Error("fit: a rank sent the point counts of detector " + std::to_string(d) +
                      " for another instrument (internal error)");
        counts[d] = std::move(c);
      });
  return counts;
}

void PutSlice(ByteWriter& w, const FlatSlice& sl) {
  w.PutVector(sl.coeffs);
  w.PutVector(sl.covariance);
  w.Put<uint8_t>(sl.converged ? 1 : 0);
  w.Put(sl.termination);
  w.PutString(sl.message);
  w.Put(sl.final_cost);
  w.Put(sl.n_points);
  w.Put(sl.lack_of_fit);
  w.Put(sl.nx);
  w.Put(sl.ny);
  w.Put(sl.order);
}
FlatSlice GetSlice(ByteReader& r) {
  FlatSlice sl;
  sl.coeffs = r.GetVector<double>();
  sl.covariance = r.GetVector<double>();
  sl.converged = r.Get<uint8_t>() != 0;
  sl.termination = r.Get<FitTermination>();
  sl.message = r.GetString();
  sl.final_cost = r.Get<double>();
  sl.n_points = r.Get<int>();
  sl.lack_of_fit = r.Get<double>();
  sl.nx = r.Get<double>();
  sl.ny = r.Get<double>();
  sl.order = r.Get<int>();
  return sl;
}

// A detector as its rank fitted it: its slices and lack-of-fit sums.
struct DetectorMessage {
  std::vector<FlatSlice> slices;
  LackOfFitSum lof;
};

// Rank 0 takes every detector from the rank that fitted it (detector d: rank d mod K, as
// FitShare::Owns).
void GatherDetectors(FlatCube* cube, std::vector<LackOfFitSum>* per_det) {
  ShareBlocks(
      cube->detectors.size(), kFitTag,
      [&](size_t d) {
        return DetectorMessage{std::move(cube->detectors[d].slices), (*per_det)[d]};
      },
      [&](size_t d, DetectorMessage&& m) {
        cube->detectors[d].slices = std::move(m.slices);
        (*per_det)[d] = m.lof;
      },
      [](ByteWriter& w, const DetectorMessage& m) {
        w.Put<uint64_t>(m.slices.size());
        for (const auto& sl : m.slices) PutSlice(w, sl);
        w.Put(m.lof);
      },
      [](ByteReader& r) {
        DetectorMessage m;
        m.slices.resize(r.Get<uint64_t>());
        for (auto& sl : m.slices) sl = GetSlice(r);
        m.lof = r.Get<LackOfFitSum>();
        return m;
      });
}

// The k-fold held-out costs of every slice on every rank: each rank's own detectors' (jobs in
// detector-major order, SelectFlatOrders').
void ShareHeldOutCosts(const FlatCube& cube, const FitShare& share,
                       std::vector<std::vector<double>>* cost, std::vector<long>* held) {
  std::vector<size_t> first_job;  // per detector
  size_t jobs = 0;
  for (const auto& det : cube.detectors) {
    first_job.push_back(jobs);
    jobs += det.pixels.size();
  }
  auto jobs_of = [&](size_t d) {
    return std::pair{first_job[d], first_job[d] + cube.detectors[d].pixels.size()};
  };
  ShareOwnedItems(
      cube.detectors.size(), kHeldOutTag, [&](size_t d) { return share.Owns(d); },
      [&](ByteWriter& w, size_t d) {
        for (auto [j, end] = jobs_of(d); j < end; ++j) {
          w.Put((*held)[j]);
          w.PutVector((*cost)[j]);
        }
      },
      [&](ByteReader& r, size_t d) {
        for (auto [j, end] = jobs_of(d); j < end; ++j) {
          (*held)[j] = r.Get<long>();
          (*cost)[j] = r.GetVector<double>();
        }
      });
}
}  // namespace

std::vector<int> GaugePixels() {
  std::vector<int> px;
  const auto& g = OutputGrid();
  for (int p = 0; p < g.size(); ++p)
    if (g.Centre(p) >= kScaleWindowMin && g.Centre(p) <= kScaleWindowMax) px.push_back(p);
  if (px.empty()) throw Error("joint fit: no output-grid pixel centre lies in the scaling window");
  return px;
}

RatioTable::RatioTable(const Instrument& inst) {
  const auto detectors = MakeDetectors(inst);
  slice_of_pixel.assign(detectors.size(),
                        std::vector<int>(static_cast<size_t>(OutputGrid().size()), -1));
  points.resize(detectors.size());
  extent.assign(detectors.size(), {1e30, -1e30, 1e30, -1e30});
  for (size_t d = 0; d < detectors.size(); ++d) {
    points[d].resize(detectors[d].pixels.size());
    for (size_t s = 0; s < detectors[d].pixels.size(); ++s)
      slice_of_pixel[d][static_cast<size_t>(detectors[d].pixels[s])] = static_cast<int>(s);
  }
}

double RatioTable::BytesPerStar(const Instrument& inst) {
  double slices = 0;  // over every detector; a star is on one detector per band
  for (const auto& d : MakeDetectors(inst)) slices += static_cast<double>(d.pixels.size());
  const double row = sizeof(int64_t) + sizeof(int32_t) + sizeof(float) + sizeof(double);
  return slices / inst.options().detectors_per_band * sizeof(JointTerm) + 3 * row;
}

void RatioTable::Add(const std::vector<StarRatios>& block) {
  for (const auto& rr : block) {
    const size_t r = obsid.size();
    const int d = rr.detector;
    if (d < 0 || d >= static_cast<int>(points.size())) {
      throw Error("fit: ratio row " + std::to_string(r) + " names detector " + std::to_string(d) +
                  ", which does not exist");
    }
    if (r >= static_cast<size_t>(std::numeric_limits<int32_t>::max()))
      throw Error("fit: more than 2^31 ratio rows");
    obsid.push_back(rr.obsid);
    detector.push_back(d);
    double row_info = 0;
    float y0 = std::numeric_limits<float>::quiet_NaN();
    const auto& slice_of = slice_of_pixel[static_cast<size_t>(d)];
    const bool keep = keep_detector.empty() || keep_detector[static_cast<size_t>(d)];
    auto& ext = extent[static_cast<size_t>(d)];
    for (size_t k = 0; k < rr.flag.size(); ++k) {
      if (rr.flag[k] != 0) continue;
      if (std::isnan(y0)) y0 = static_cast<float>(rr.y[k]);
      ext = {std::min(ext[0], rr.x[k]), std::max(ext[1], rr.x[k]), std::min(ext[2], rr.y[k]),
             std::max(ext[3], rr.y[k])};
      if (rr.sigma[k] > 0 && rr.ratio[k] > 0)
        row_info += rr.ratio[k] * rr.ratio[k] / (rr.sigma[k] * rr.sigma[k]);
      const int s = k < slice_of.size() ? slice_of[k] : -1;
      if (s < 0 || !keep) continue;
      points[static_cast<size_t>(d)][static_cast<size_t>(s)].push_back(
          {static_cast<int32_t>(r), static_cast<float>(rr.x[k]), static_cast<float>(rr.y[k]),
           static_cast<float>(rr.ratio[k]), static_cast<float>(rr.sigma[k])});
    }
    info.push_back(row_info);
    first_y.push_back(y0);
  }
}

RatioTable RatioTable::Of(const Instrument& inst, const std::vector<StarRatios>& ratios) {
  RatioTable t(inst);
  t.Add(ratios);
  return t;
}

FlatCube FitFlatCube(const Instrument& inst, const FlatFitOptions& o,
                     const std::vector<StarRatios>& ratios) {
  return FitFlatCube(inst, o, RatioTable::Of(inst, ratios));
}

FlatCube FitFlatCube(const Instrument& inst, const FlatFitOptions& o, const RatioTable& table,
                     const FitShare& share) {
  o.Validate();
  FlatCube cube;
  cube.mode = o.mode;
  cube.nx = inst.options().detector_nx;
  cube.ny = inst.options().detector_ny;
  cube.detectors = MakeDetectors(inst);
  if (table.points.size() != cube.detectors.size())
    throw Error("fit: the ratio table was made for another instrument");
  const size_t rows = table.rows();
  std::vector<double> row_scale(rows, 1.0);
  std::array<int, 3> band_order = {o.order, o.order, o.order};
  cube.order_select = o.order_select;

  // The degree per band from held-out stars (order_select kfold), on the ratios divided by the star
  // scales where the fit has them.
  auto select_orders = [&](const std::vector<double>* scale) {
    SliceSource src;
    src.nx = cube.nx;
    src.ny = cube.ny;
    for (const auto& det : cube.detectors) {
      src.band_of.push_back(det.band);
      src.slices_of.push_back(static_cast<int>(det.pixels.size()));
    }
    src.points_of = [&](size_t d, size_t s, std::vector<RatioPoint>* pts,
                        std::vector<int64_t>* ids) {
      const auto& terms = table.points[d][s];
      *pts = SlicePoints(terms, scale);
      ids->clear();
      for (const auto& t : terms) ids->push_back(table.obsid[static_cast<size_t>(t.row)]);
    };
    if (share.ranks > 1) {
      src.owns = [&](size_t d) { return share.Owns(d); };
      src.share = [&](std::vector<std::vector<double>>* cost, std::vector<long>* held) {
        ShareHeldOutCosts(cube, share, cost, held);
      };
    }
    cube.selection = SelectFlatOrders(o, src);
    band_order = cube.selection.order;
  };

  // The joint fit at one degree for every slice, from the given start scales (per star index;
  // empty: 1): fills row_scale, the star scales and the joint summary.
  std::vector<double> start_scale;
  auto run_joint = [&](int joint_order, bool per_band) {
    cube.summary.warnings.clear();
    // Per-star scale shared by all rows (bands) of the star.
    std::map<int64_t, int> star_index;
    for (int64_t id : table.obsid) star_index.emplace(id, static_cast<int>(star_index.size()));
    // Groups of detectors linked by shared stars: each has its own scale degeneracy, so one star
    // per group keeps its scale (provisional gauge) and the final gauge is imposed per group.
    std::vector<int> parent(cube.detectors.size());
    for (size_t d = 0; d < parent.size(); ++d) parent[d] = static_cast<int>(d);
    std::function<int(int)> root = [&](int a) {
      return parent[a] == a ? a : parent[a] = root(parent[a]);
    };
    std::map<int64_t, int> first_det;
    for (size_t r = 0; r < rows; ++r) {
      auto [it, fresh] = first_det.emplace(table.obsid[r], table.detector[r]);
      if (!fresh) parent[root(table.detector[r])] = root(it->second);
    }
    JointProblem jp;
    jp.order = joint_order;
    jp.n_stars = static_cast<int>(star_index.size());
    jp.loss = o.loss;
    jp.loss_scale = o.loss_scale;
    jp.smoothness = o.smoothness;
    jp.max_iterations = std::max(o.max_iterations, 100);
    jp.function_tolerance = o.joint_tolerance;
    jp.linear_tolerance = o.joint_linear_tolerance;
    jp.nx = cube.nx;
    jp.ny = cube.ny;
    jp.row_star.resize(rows);
    for (size_t r = 0; r < rows; ++r) jp.row_star[r] = star_index.at(table.obsid[r]);
    std::vector<std::pair<size_t, size_t>> where;  // (detector, slice) of each problem slice
    std::vector<char> has_terms(star_index.size(), 0);
    long nres = 0;
    // Under MPI each rank holds its own detectors' points: the problem's slices are chosen from
    // every detector's point counts, the same on every rank.
    const auto counts = PointCounts(table, share);
    for (size_t d = 0; d < cube.detectors.size(); ++d) {
      const auto& det = cube.detectors[d];
      for (size_t s = 0; s < det.pixels.size(); ++s) {
        const auto& terms = table.points[d][s];
        const size_t n_terms = counts[d][s];
        const int slice_order = per_band ? band_order[static_cast<size_t>(det.band)] : joint_order;
        const int ncoef = NumCoefficients(slice_order);
        // Without smoothness a slice with no more points than coefficients fits them exactly
        // whatever the scales: it carries no information on them and is left to the per-slice fit.
        if (n_terms == 0 || (o.smoothness == 0 && static_cast<int>(n_terms) <= ncoef)) continue;
        for (const auto& t : terms)
          has_terms[static_cast<size_t>(jp.row_star[static_cast<size_t>(t.row)])] = 1;
        nres += static_cast<long>(n_terms);
        where.emplace_back(d, s);
        jp.slices.push_back({static_cast<int>(d), static_cast<int>(s), &terms, slice_order});
      }
    }
    if (share.ranks > 1) {
      // A star has terms if it has them on any rank.
      for (const auto& part : MpiWorld::AllGather(kStarsTag, has_terms))
        for (size_t i = 0; i < has_terms.size() && i < part.size(); ++i) has_terms[i] |= part[i];
      jp.owns = [&](int d) { return share.Owns(static_cast<size_t>(d)); };
    }
    jp.fixed.assign(star_index.size(), false);
    {
      std::set<int> gauged;
      for (const auto& [id, idx] : star_index)  // the star of lowest obsid with data, per group
        if (has_terms[static_cast<size_t>(idx)] && gauged.insert(root(first_det.at(id))).second)
          jp.fixed[static_cast<size_t>(idx)] = true;
    }
    const auto t0 = std::chrono::steady_clock::now();
    const JointSolution sol = o.joint_solver == FlatJointSolver::kCeres
                                  ? SolveJointCeres(jp, start_scale)
                                  : SolveJoint(jp, start_scale);
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    cube.joint_termination = sol.termination;
    cube.joint_message = sol.message;
    cube.joint_cost = sol.final_cost;
    std::vector<double> scale = sol.scale;
    // Gauge: mean GV flat over the detector area (c_00) at the gauge pixels = 1, per group.
    const auto gauge_pixels = GaugePixels();
    std::map<int, std::pair<double, int>> gauge_of;  // component -> (sum c00, n)
    for (size_t i = 0; i < where.size(); ++i) {
      const auto& det = cube.detectors[where[i].first];
      if (det.band != 1) continue;
      const int px = det.pixels[where[i].second];
      if (std::find(gauge_pixels.begin(), gauge_pixels.end(), px) == gauge_pixels.end()) continue;
      auto& g = gauge_of[root(static_cast<int>(where[i].first))];
      g.first += sol.coeffs[i][0];
      ++g.second;
    }
    std::set<int> components;
    for (size_t d = 0; d < cube.detectors.size(); ++d) {
      cube.detectors[d].component = root(static_cast<int>(d));
      components.insert(cube.detectors[d].component);
    }
    if (components.size() > 1) {
      cube.summary.warnings.push_back(
          "joint fit: the detectors form " + std::to_string(components.size()) +
          " groups not linked by shared stars; each is gauged separately");
    }
    // A star seen at the same detector position in every band (each band looking at the field
    // through its own detector, no dithering) cannot separate its flux from a spatial flat common
    // to those detectors: that pattern is then degenerate with the star scales.
    {
      const int per = inst.options().detectors_per_band;
      std::map<int64_t, std::vector<std::pair<int, double>>> where;  // star -> (k, y) per band
      for (size_t r = 0; r < rows; ++r)
        if (!std::isnan(table.first_y[r]))
          where[table.obsid[r]].push_back({table.detector[r] % per, table.first_y[r]});
      long colocated = 0;
      for (const auto& [id, w] : where) {
        bool same = w.size() > 1;
        for (const auto& e : w)
          same =
              same && e.first == w[0].first && std::abs(e.second - w[0].second) < 0.005 * cube.ny;
        colocated += same;
      }
      if (colocated * 2 > static_cast<long>(where.size())) {
        cube.summary.warnings.push_back("joint fit: " + std::to_string(colocated) + " of " +
                                        std::to_string(where.size()) +
                                        " stars sit at the same detector position in every band; "
                                        "the spatial flat shared by those detectors is "
                                        "then degenerate with the star fluxes (needs stars seen at "
                                        "different positions per band, e.g. "
                                        "simulation.placement: random or dithered pointings)");
      }
    }
    for (const auto& [id, idx] : star_index) {
      const auto it = gauge_of.find(root(first_det.at(id)));
      const double gauge = it != gauge_of.end() && it->second.second > 0
                               ? it->second.first / it->second.second
                               : 1.0;
      scale[static_cast<size_t>(idx)] *= gauge;
    }
    double gauge = 0;
    for (const auto& [c, g] : gauge_of) gauge += g.first / g.second / gauge_of.size();
    for (const auto& [id, idx] : star_index) cube.star_scale[id] = scale[static_cast<size_t>(idx)];
    for (size_t r = 0; r < rows; ++r) row_scale[r] = scale[static_cast<size_t>(jp.row_star[r])];
    auto& sum = cube.summary;
    sum.solver = ToString(o.joint_solver);
    sum.residuals = nres;
    sum.stars = static_cast<int>(scale.size());
    sum.iterations = sol.iterations;
    sum.linear_iterations = sol.linear_iterations;
    sum.initial_cost = sol.initial_cost;
    sum.seconds = seconds;
    sum.gauge = gauge;
    if (sol.termination != FitTermination::kConvergence) {
      sum.warnings.push_back("joint fit did not converge: " +
                             std::string(ToString(sol.termination)) + " (" + sol.message + ")");
    }
    sum.joint_order = joint_order;
    start_scale = scale;
  };

  if (o.mode == FlatFitMode::kJoint) {
    run_joint(o.order, false);
    if (o.order_select == FlatOrderSelect::kKFold) {
      select_orders(&row_scale);
      // The scales again with each band at its chosen degree, so that the scales take up the same
      // structure as the per-slice fits below leave (the joint lack of fit counts on that).
      const int top = *std::max_element(band_order.begin(), band_order.end());
      if (band_order != std::array<int, 3>{o.order, o.order, o.order}) {
        const long first_iterations = cube.summary.iterations,
                   first_cg = cube.summary.linear_iterations;
        const double first_seconds = cube.summary.seconds;
        run_joint(top, true);
        cube.summary.iterations += static_cast<int>(first_iterations);
        cube.summary.linear_iterations += first_cg;
        cube.summary.seconds += first_seconds;
      }
    }
  } else if (o.order_select == FlatOrderSelect::kKFold) {
    select_orders(nullptr);
  }
  cube.band_order = band_order;
  cube.summary.band_order = band_order;
  cube.order = *std::max_element(band_order.begin(), band_order.end());

  // Per-slice fits (independent mode), or conditional fits given the scales (joint mode).
  std::vector<FlatFitter> fitters;  // per band, at its degree
  for (int b = 0; b < 3; ++b) {
    FlatFitOptions ob = o;
    ob.order = band_order[static_cast<size_t>(b)];
    fitters.emplace_back(ob);
  }
  for (auto& det : cube.detectors) det.order = band_order[static_cast<size_t>(det.band)];
  std::vector<std::pair<size_t, size_t>> jobs;
  for (size_t d = 0; d < cube.detectors.size(); ++d) {
    cube.detectors[d].slices.resize(cube.detectors[d].pixels.size());
    if (!share.Owns(d)) continue;
    for (size_t s = 0; s < cube.detectors[d].pixels.size(); ++s) jobs.emplace_back(d, s);
  }
  std::unique_ptr<Progress> progress;
  if (o.progress) progress = std::make_unique<Progress>("fit", static_cast<long>(jobs.size()));
  tbb::parallel_for(size_t{0}, jobs.size(), [&](size_t j) {
    CheckCancelled();  // also inside a Monte Carlo, where there is no progress
    const auto [d, s] = jobs[j];
    auto& det = cube.detectors[d];
    const auto pts =
        SlicePoints(table.points[d][s], o.mode == FlatFitMode::kJoint ? &row_scale : nullptr);
    const int ncoef = NumCoefficients(det.order);
    if (static_cast<int>(pts.size()) < std::max(o.min_points, ncoef)) {
      FlatSlice sl;
      sl.nx = cube.nx;
      sl.ny = cube.ny;
      sl.order = det.order;
      sl.coeffs.assign(ncoef, 0.0);
      sl.coeffs[0] = 1.0;
      sl.n_points = static_cast<int>(pts.size());
      sl.termination = FitTermination::kNotRun;
      sl.message = "too few points: " + std::to_string(pts.size()) + " < min_points " +
                   std::to_string(o.min_points);
      det.slices[s] = sl;
    } else {
      det.slices[s] = fitters[static_cast<size_t>(det.band)].Fit(pts, cube.nx, cube.ny);
    }
    if (progress) progress->Tick();
  });
  if (progress) progress->Finish();
  auto per_det = MeasureLackOfFit(
      {o, table, o.mode == FlatFitMode::kJoint ? &row_scale : nullptr, share}, cube);
  if (share.ranks > 1) {
    GatherDetectors(&cube, &per_det);
    if (share.rank != 0) return cube;  // a worker: its detectors are with rank 0
  }
  long failed = 0, slices = 0;
  for (const auto& det : cube.detectors) {
    for (const auto& sl : det.slices) failed += !sl.converged;
    slices += static_cast<long>(det.slices.size());
  }
  ApplyLackOfFit(per_det, &cube);
  cube.summary.slices = slices;
  cube.summary.failed_slices = failed;
  return cube;
}

std::string DescribeFit(const FlatCube& cube) {
  const auto& s = cube.summary;
  std::string out = std::to_string(s.slices) + " slices fitted, " +
                    std::to_string(s.failed_slices) + " not converged (flagged)";
  if (cube.mode == FlatFitMode::kJoint) {
    char buf[256];
    std::snprintf(
        buf, sizeof buf,
        "; joint fit (%s): %ld residuals, %d stars, %s (%d iterations, %ld CG steps, cost %.4g -> "
        "%.4g, %.2f s), gauge %.6f",
        s.solver.c_str(), s.residuals, s.stars, ToString(cube.joint_termination), s.iterations,
        s.linear_iterations, s.initial_cost, cube.joint_cost, s.seconds, s.gauge);
    out += buf;
  }
  out += cube.order_select == FlatOrderSelect::kKFold
             ? "; " + DescribeOrderSelection(cube.selection)
             : "; degree " + std::to_string(cube.band_order[0]) + " / " +
                   std::to_string(cube.band_order[1]) + " / " + std::to_string(cube.band_order[2]) +
                   " (fixed)";
  char lof[160];
  std::snprintf(lof, sizeof lof,
                "; lack of fit GU %.4f, GV %.4f, GI %.4f (from %ld / %ld / %ld star pairs)",
                s.lack_of_fit[0], s.lack_of_fit[1], s.lack_of_fit[2], s.lack_of_fit_pairs[0],
                s.lack_of_fit_pairs[1], s.lack_of_fit_pairs[2]);
  return out + lof;
}

namespace {
// The COEFFS keyword holding a band's degree: ORDER_GU, ORDER_GV, ORDER_GI.
std::string BandOrderKey(int band) { return std::string("ORDER_") + BandName(BandAt(band)); }
}  // namespace

void WriteFlatCoeffs(const std::string& path, const FlatCube& cube, const Provenance& prov) {
  // One COEFFS width for all rows: a band of lower degree has its coefficients (and covariance)
  // padded with zeros to the highest degree, which evaluates to the same flat (the basis is ordered
  // by degree); ORDER gives each row's own degree.
  const int nc = NumCoefficients(cube.order);
  std::vector<int32_t> det, band, pixel, npts, conv, chip, order;
  std::vector<std::string> name, term, msg;
  std::vector<double> wave, coeffs, cov, cost, lof;
  for (const auto& d : cube.detectors) {
    for (size_t s = 0; s < d.pixels.size(); ++s) {
      const auto& sl = d.slices[s];
      det.push_back(d.detector);
      band.push_back(d.band);
      name.push_back(d.name);
      chip.push_back(ChipIdOf(d.name));
      pixel.push_back(d.pixels[s]);
      wave.push_back(OutputGrid().Centre(d.pixels[s]));
      const size_t own = sl.coeffs.size();
      if (own > static_cast<size_t>(nc) || NumCoefficients(sl.order) != static_cast<int>(own))
        throw Error(path + ": detector " + d.name + " slice " + std::to_string(s) + " has " +
                    std::to_string(own) + " coefficients for degree " + std::to_string(sl.order) +
                    " (cube degree " + std::to_string(cube.order) + ")");
      order.push_back(sl.order);
      for (size_t k = 0; k < static_cast<size_t>(nc); ++k)
        coeffs.push_back(k < own ? sl.coeffs[k] : 0.0);
      const bool has_cov = sl.covariance.size() == own * own;
      for (size_t i = 0; i < static_cast<size_t>(nc); ++i)
        for (size_t j = 0; j < static_cast<size_t>(nc); ++j)
          cov.push_back(has_cov && i < own && j < own ? sl.covariance[i * own + j] : 0.0);
      npts.push_back(sl.n_points);
      conv.push_back(sl.converged ? 1 : 0);
      term.push_back(ToString(sl.termination));
      msg.push_back(sl.message.substr(0, 120));
      cost.push_back(sl.final_cost);
      lof.push_back(sl.lack_of_fit);
    }
  }
  FitsWriter w(path);
  Provenance p = prov;
  p.descrip = "fitted 2D Legendre flat coefficients per detector and wavelength";
  w.WritePrimary(p);
  w.WriteTable("COEFFS", {{"DETECTOR", "", det},
                          {"DETNAME", "", name},
                          {"CHIPID", "", chip},
                          {"BAND", "", band},
                          {"PIXEL", "", pixel},
                          {"WAVELENGTH", "Angstrom", wave},
                          {"ORDER", "", order},
                          {"COEFFS", "", coeffs, nc},
                          {"COVAR", "", cov, nc * nc},
                          {"NPOINTS", "", npts},
                          {"CONVERGED", "", conv},
                          {"TERMINAT", "", term},
                          {"MESSAGE", "", msg},
                          {"COST", "", cost},
                          {"LACKFIT", "", lof}});
  w.Standard(p, "");
  w.Key("FITORDER", static_cast<long>(cube.order),
        "highest total degree of the 2D Legendre polynomial");
  for (int b = 0; b < 3; ++b)
    w.Key(BandOrderKey(b), static_cast<long>(cube.band_order[static_cast<size_t>(b)]),
          "degree of this band's flat");
  w.Key("ORDERSEL", ToString(cube.order_select),
        "degree: fixed, or kfold (cross-validation over stars)");
  w.Key("FITMODE", ToString(cube.mode), "independent or joint");
  w.Key("DETNX", cube.nx, "[pixel] detector width");
  w.Key("DETNY", cube.ny, "[pixel] detector height");
  w.Comment(
      "F(x,y) = sum_k COEFFS_k P_i(u) P_j(v), u = 2x/(DETNX-1)-1, v = 2y/(DETNY-1)-1 (Legendre)");
  w.Comment(
      "coefficient order by degree d = i+j ascending, within d by decreasing i: "
      "(0,0),(1,0),(0,1),(2,0),(1,1),(0,2)");
  w.Comment(
      "a row of degree ORDER < FITORDER has zeros beyond its NumCoefficients(ORDER) = "
      "(ORDER+1)(ORDER+2)/2");
  if (cube.order_select == FlatOrderSelect::kKFold) {
    std::vector<std::string> bname;
    std::vector<int32_t> deg, chosen, nslices;
    std::vector<double> score;
    std::vector<int64_t> npoints;
    for (int b = 0; b < 3; ++b)
      for (size_t d = 0; d < cube.selection.score[static_cast<size_t>(b)].size(); ++d) {
        bname.push_back(BandName(BandAt(b)));
        deg.push_back(static_cast<int32_t>(d));
        score.push_back(cube.selection.score[static_cast<size_t>(b)][d]);
        chosen.push_back(static_cast<int>(d) == cube.band_order[static_cast<size_t>(b)]);
        npoints.push_back(cube.selection.points[static_cast<size_t>(b)]);
        nslices.push_back(cube.selection.slices[static_cast<size_t>(b)]);
      }
    w.WriteTable("ORDERSEL", {{"BAND", "", bname},
                              {"DEGREE", "", deg},
                              {"CVCOST", "", score},
                              {"CHOSEN", "", chosen},
                              {"NPOINTS", "", npoints},
                              {"NSLICES", "", nslices}});
    w.Standard(p, "");
    w.Key("NFOLDS", static_cast<long>(cube.selection.folds),
          "folds over stars (fold = hash of OBSID)");
    w.Comment(
        "CVCOST: held-out sum of w (ratio - F)^2 per held-out point, w = robust weight / sigma^2; "
        "NaN: not tried");
    w.Comment("the band's degree is the one of lowest CVCOST (CHOSEN = 1)");
  }
  if (cube.mode == FlatFitMode::kJoint) {
    w.Key("JOINTTRM", std::string(ToString(cube.joint_termination)),
          "Ceres termination of the joint fit");
    w.Key("JOINTCST", cube.joint_cost, "final cost of the joint fit");
    std::vector<int64_t> ids;
    std::vector<double> sc;
    for (const auto& [id, s] : cube.star_scale) {
      ids.push_back(id);
      sc.push_back(s);
    }
    w.WriteTable("SCALES", {{"OBSID", "", ids}, {"SCALE", "", sc}});
    w.Standard(p, "");
    w.Comment(
        "fitted per-star flux scale (true / assumed), gauge: mean GV flat in 5526-5586 A = 1");
  }
  w.Close();
}

namespace {
std::string FormatG(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.10g", v);
  return buf;
}
}  // namespace

FlatCube ReadFlatCoeffs(const std::string& path) {
  FitsReader r(path);
  r.MoveTo("COEFFS");
  FlatCube cube;
  cube.order = static_cast<int>(r.KeyLong("FITORDER"));
  cube.mode = ParseEnumName<FlatFitMode, IoError>(r.KeyString("FITMODE"),
                                                  path + ": COEFFS keyword FITMODE =");
  cube.nx = r.KeyDouble("DETNX");
  cube.ny = r.KeyDouble("DETNY");
  if (cube.order < 0 || cube.order > kMaxFlatOrder)
    throw IoError(path + ": COEFFS keyword FITORDER = " + std::to_string(cube.order) +
                  ", expected 0.." + std::to_string(kMaxFlatOrder));
  const int nc = NumCoefficients(cube.order);
  const auto det = r.ReadColumn("DETECTOR"), band = r.ReadColumn("BAND"),
             pixel = r.ReadColumn("PIXEL");
  const auto name = r.ReadStringColumn("DETNAME");
  const auto coeffs = r.ReadColumn("COEFFS"), cov = r.ReadColumn("COVAR"),
             npts = r.ReadColumn("NPOINTS");
  const auto conv = r.ReadColumn("CONVERGED"), cost = r.ReadColumn("COST"),
             lof = r.ReadColumn("LACKFIT");
  const auto term = r.ReadStringColumn("TERMINAT"), msg = r.ReadStringColumn("MESSAGE");
  // ORDER per row (files before per-band degrees: FITORDER for all)
  const auto row_order =
      r.HasColumn("ORDER") ? r.ReadColumn("ORDER") : std::vector<double>(det.size(), cube.order);
  cube.band_order = {cube.order, cube.order, cube.order};
  for (int b = 0; b < 3; ++b)
    if (r.HasKey(BandOrderKey(b)))
      cube.band_order[static_cast<size_t>(b)] = static_cast<int>(r.KeyLong(BandOrderKey(b)));
  if (r.HasKey("ORDERSEL")) {
    cube.order_select = ParseEnumName<FlatOrderSelect, IoError>(
        r.KeyString("ORDERSEL"), path + ": COEFFS keyword ORDERSEL =");
  }
  for (size_t i = 0; i < det.size(); ++i) {
    const size_t d = static_cast<size_t>(det[i]);
    if (cube.detectors.size() <= d) cube.detectors.resize(d + 1);
    auto& D = cube.detectors[d];
    D.detector = static_cast<int>(d);
    D.band = static_cast<int>(band[i]);
    D.name = name[i];
    D.pixels.push_back(static_cast<int>(pixel[i]));
    FlatSlice sl;
    sl.order = static_cast<int>(row_order[i]);
    if (sl.order < 0 || sl.order > cube.order || row_order[i] != sl.order)
      throw IoError(path + ": COEFFS row " + std::to_string(i + 1) + " has ORDER " +
                    FormatG(row_order[i]) +
                    ", expected an integer in 0..FITORDER = " + std::to_string(cube.order));
    if (D.slices.empty()) D.order = sl.order;
    if (sl.order != D.order)
      throw IoError(path + ": COEFFS row " + std::to_string(i + 1) + " has ORDER " +
                    std::to_string(sl.order) + " but detector " + D.name + " has degree " +
                    std::to_string(D.order) + " in its other rows");
    sl.nx = cube.nx;
    sl.ny = cube.ny;
    const size_t own = static_cast<size_t>(NumCoefficients(sl.order));
    sl.coeffs.assign(coeffs.begin() + i * nc, coeffs.begin() + i * nc + own);
    for (size_t a = 0; a < own; ++a)
      for (size_t b = 0; b < own; ++b) sl.covariance.push_back(cov[i * nc * nc + a * nc + b]);
    bool any = false;
    for (double v : sl.covariance) any |= v != 0;
    if (!any) sl.covariance.clear();
    sl.n_points = static_cast<int>(npts[i]);
    sl.converged = conv[i] != 0;
    sl.termination = ParseEnumName<FitTermination, IoError>(
        term[i], path + ": COEFFS row " + std::to_string(i + 1) + " has TERMINAT");
    sl.message = msg[i];
    sl.final_cost = cost[i];
    sl.lack_of_fit = lof[i];
    D.slices.push_back(sl);
  }
  return cube;
}

}  // namespace csst
