// The flat's degree per band by k-fold cross-validation over stars (flatfield/order_select.h).
#include <fitsio.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <filesystem>
#include <functional>
#include <map>
#include <numeric>

#include "core/errors.h"
#include "core/grid.h"
#include "core/rng.h"
#include "flatfield/cube_fit.h"
#include "flatfield/products.h"
#include "io/fits.h"
#include "tests/test_util.h"

using namespace csst;
namespace fs = std::filesystem;

namespace {

// A flat of total degree `degree` in Legendre P_i(u) P_j(v), every term of degree d with amplitude
// 0.02 / d (so the highest terms are well above the noise), slowly varying in wavelength.
double PolyFlat(int degree, int det, double x, double y, double lambda) {
  const double u = 2 * x / 9215 - 1, v = 2 * y / 9231 - 1, w = (lambda - 2500) / 8000;
  std::vector<double> b(static_cast<size_t>(NumCoefficients(degree)));
  FlatBasisAtUV(u, v, degree, b.data());
  double f = 1.0 + 0.001 * det;
  size_t k = 1;
  for (int d = 1; d <= degree; ++d)
    for (int i = 0; i <= d; ++i, ++k)
      f += (0.02 / d) * (1 + 0.3 * w) * ((i + d + det) % 2 ? 1 : -1) * b[k];
  return f;
}

// Stars on random detectors and positions of every band, ratio = scale * flat * (1 + noise), each
// band's flat of its own degree.
struct Cube {
  std::array<int, 3> degree;
  std::vector<StarRatios> ratios;
  double Flat(int det, double x, double y, double l) const {
    return PolyFlat(degree[det / 4], det, x, y, l);
  }
};

Cube MakeCube(const Instrument& inst, std::array<int, 3> degree, int n_stars, double noise,
              bool scales) {
  Cube c;
  c.degree = degree;
  const auto& g = OutputGrid();
  for (int i = 0; i < n_stars; ++i) {
    Rng rng(11, "order-select-test", i);
    const double scale = scales ? rng.Uniform(0.8, 1.2) : 1.0;
    for (int b = 0; b < 3; ++b) {
      StarRatios r;
      r.obsid = 5000 + i;
      r.band = b;
      r.detector = b * 4 + static_cast<int>(rng.Uniform() * 4) % 4;
      const double x0 = rng.Uniform(0, 9215), y0 = rng.Uniform(0, 9231);
      for (int k = 0; k < g.size(); ++k) {
        const double l = g.Centre(k);
        const double x = x0 + (l - inst.band(b).centre) / inst.band(b).dispersion;
        const bool ok = x >= 0 && x <= 9215 && l >= inst.band(b).lo && l <= inst.band(b).hi;
        const double f = ok ? c.Flat(r.detector, x, y0, l) : 1.0;
        r.x.push_back(x);
        r.y.push_back(y0);
        r.ratio.push_back(scale * f * (1 + noise * rng.Normal()));
        r.sigma.push_back(noise * scale * f);
        r.flag.push_back(ok ? 0 : kRatioOffDetector);
      }
      c.ratios.push_back(r);
    }
  }
  return c;
}

FlatFitOptions KFold(int order_max = 6) {
  FlatFitOptions o;
  o.order_select = FlatOrderSelect::kKFold;
  o.order_max = order_max;
  o.progress = false;
  return o;
}

// Largest |fit - truth| over a grid of points and every slice of every detector.
double WorstError(const FlatCube& cube, const Cube& c) {
  double worst = 0;
  for (const auto& d : cube.detectors)
    for (size_t s = 0; s < d.slices.size(); s += 7)
      for (double x : {800.0, 4600.0, 8400.0})
        for (double y : {800.0, 4600.0, 8400.0})
          worst =
              std::max(worst, std::abs(d.slices[s].Evaluate(x, y) -
                                       c.Flat(d.detector, x, y, OutputGrid().Centre(d.pixels[s]))));
  return worst;
}

}  // namespace

TEST_CASE("held-out cost from per-fold normal equations equals refitting every fold",
          "[cube][order]") {
  // One slice: 400 points of a degree-3 flat with 0.2 % noise; the cost of degree d is compared
  // with an independent computation: for each fold, FlatFitter (QR) of degree d on the other folds'
  // points, then the held-out sum of ((ratio - F) / sigma)^2.
  std::vector<RatioPoint> pts;
  std::vector<int64_t> ids;
  for (int i = 0; i < 400; ++i) {
    Rng rng(3, "held-out", i);
    const double x = rng.Uniform(0, 9215), y = rng.Uniform(0, 9231);
    const double f = PolyFlat(3, 1, x, y, 5000);
    pts.push_back({x, y, f * (1 + 0.002 * rng.Normal()), 0.002 * f});
    ids.push_back(7000 + i);
  }
  FlatFitOptions o = KFold(5);
  o.order_folds = 4;
  long held = 0;
  const auto cost = SliceHeldOutCost(pts, ids, 9216, 9232, o, &held);
  CHECK(held == 400);
  REQUIRE(cost.size() == 6);
  for (int d = 0; d <= 5; ++d) {
    FlatFitOptions od;
    od.order = d;
    const FlatFitter fitter(od);
    double expect = 0;
    for (int k = 0; k < o.order_folds; ++k) {
      std::vector<RatioPoint> train, test;
      for (size_t i = 0; i < pts.size(); ++i)
        (FoldOf(ids[i], o.order_folds) == k ? test : train).push_back(pts[i]);
      REQUIRE(!test.empty());
      const auto sl = fitter.Fit(train, 9216, 9232);
      REQUIRE(sl.converged);
      for (const auto& p : test) expect += std::pow((p.ratio - sl.Evaluate(p.x, p.y)) / p.sigma, 2);
    }
    INFO("degree " << d);
    CHECK(std::abs(cost[static_cast<size_t>(d)] - expect) <= 1e-8 * expect);
  }
  // Degree 3 (the truth) beats 2 by far (the left-out degree-3 terms, ~0.003 rms, against 0.002
  // noise) and 4, 5 only add free terms (held-out cost rises by about one unit per term).
  CHECK(cost[3] < 0.5 * cost[2]);
  CHECK(cost[3] < cost[4]);
  // Too few training points for a degree: not tried (min_points 400 > the 300 of each training
  // set).
  FlatFitOptions strict = o;
  strict.min_points = 400;
  const auto none = SliceHeldOutCost(pts, ids, 9216, 9232, strict);
  for (double v : none) CHECK(std::isnan(v));
  // Every star in the same fold as its other points: folds are by star, not by point.
  CHECK(FoldOf(7001, 4) == FoldOf(7001, 4));
  std::array<int, 4> per_fold{};
  for (int64_t id : ids) ++per_fold[static_cast<size_t>(FoldOf(id, 4))];
  for (int n : per_fold) CHECK(std::abs(n - 100) < 35);  // a fair split: 100 +- 3.5 sigma
}

TEST_CASE(
    "k-fold over stars picks each band's injected degree and follows the flat degree 2 cannot",
    "[cube][order]") {
  // GU degree 1, GV degree 3, GI degree 5; 1 200 stars (~300 per detector and slice), 0.3 % noise.
  const Instrument inst(InstrumentOptions{});
  const auto c = MakeCube(inst, {1, 3, 5}, 1200, 0.003, false);
  const auto cube = FitFlatCube(inst, KFold(6), c.ratios);
  INFO(DescribeFit(cube));
  CHECK(cube.band_order[0] == 1);
  CHECK(cube.band_order[1] == 3);
  CHECK(cube.band_order[2] == 5);
  CHECK(cube.order == 5);
  for (const auto& d : cube.detectors) {
    CHECK(d.order == cube.band_order[static_cast<size_t>(d.band)]);
    for (const auto& sl : d.slices)
      CHECK(sl.coeffs.size() == static_cast<size_t>(NumCoefficients(d.order)));
  }
  for (int b = 0; b < 3; ++b) {
    const auto& sc = cube.selection.score[static_cast<size_t>(b)];
    REQUIRE(sc.size() == 7);
    CHECK(cube.selection.ceiling[static_cast<size_t>(b)] == 6);
    // At the true degree the held-out cost per point is that of pure noise (sigma is the noise's)
    // plus the variance of a fit of p terms from n_train points: 1 + p / n_train, n_train = (K - 1)
    // / K of a slice's points.
    const double n_train = static_cast<double>(cube.selection.points[static_cast<size_t>(b)]) /
                           cube.selection.slices[static_cast<size_t>(b)] *
                           (cube.selection.folds - 1) / cube.selection.folds;
    const double expect = 1.0 + NumCoefficients(c.degree[b]) / n_train;
    INFO("band " << b << ": expected " << expect);
    CHECK(sc[static_cast<size_t>(c.degree[b])] == Approx(expect).epsilon(0.03));
    if (c.degree[b] > 0) CHECK(sc[static_cast<size_t>(c.degree[b] - 1)] > 1.2);
  }
  // Against the fixed degree 2: the chosen degrees follow the flat (noise of a slice fit ~0.001).
  FlatFitOptions fixed2;
  fixed2.progress = false;
  const auto cube2 = FitFlatCube(inst, fixed2, c.ratios);
  const double err_k = WorstError(cube, c), err_2 = WorstError(cube2, c);
  INFO("worst error kfold " << err_k << ", degree 2 " << err_2);
  CHECK(err_k < 0.006);
  CHECK(err_2 > 3 * err_k);
}

TEST_CASE(
    "joint fit with k-fold degrees: scales unknown, the flat of degree 4 recovered up to the gauge",
    "[cube][order][joint]") {
  const Instrument inst(InstrumentOptions{});
  const auto c = MakeCube(inst, {4, 4, 4}, 800, 0.003, true);
  FlatFitOptions o = KFold(6);
  o.mode = FlatFitMode::kJoint;
  const auto cube = FitFlatCube(inst, o, c.ratios);
  INFO(DescribeFit(cube));
  CHECK(cube.band_order == std::array<int, 3>{4, 4, 4});
  CHECK(cube.summary.joint_order == 4);  // the scales refitted at the chosen degree
  CHECK(cube.joint_termination == FitTermination::kConvergence);
  // Up to the gauge (one factor for all detectors, linked by shared stars): the ratio fit / truth
  // is the same constant everywhere to within the noise.
  std::vector<double> q;
  for (const auto& d : cube.detectors)
    for (size_t s = 0; s < d.slices.size(); s += 11)
      for (double x : {1500.0, 7700.0})
        for (double y : {1500.0, 7700.0})
          q.push_back(d.slices[s].Evaluate(x, y) /
                      c.Flat(d.detector, x, y, OutputGrid().Centre(d.pixels[s])));
  const double mean = std::accumulate(q.begin(), q.end(), 0.0) / q.size();
  double worst = 0;
  for (double v : q) worst = std::max(worst, std::abs(v / mean - 1));
  CHECK(worst < 0.006);
}

TEST_CASE(
    "joint solver with per-band degrees in one problem: higher coefficients stay 0, Ceres' minimum "
    "met",
    "[cube][order][joint]") {
  // Bands of degree 1, 3, 5 in a problem of degree 5, scales 0.8-1.2 unknown, least squares: the
  // structured solver (identity blocks for the coefficients beyond a slice's degree) against Ceres
  // with those coefficients held constant (SubsetManifold).
  const Instrument inst(InstrumentOptions{});
  const auto c = MakeCube(inst, {1, 3, 5}, 240, 0.01, true);
  const auto table = RatioTable::Of(inst, c.ratios);
  JointProblem jp;
  jp.order = 5;
  jp.nx = 9216;
  jp.ny = 9232;
  std::map<int64_t, int> star;
  for (int64_t id : table.obsid) star.emplace(id, static_cast<int>(star.size()));
  for (int64_t id : table.obsid) jp.row_star.push_back(star.at(id));
  jp.n_stars = static_cast<int>(star.size());
  jp.fixed.assign(star.size(), false);
  jp.fixed[0] = true;
  for (size_t d = 0; d < table.points.size(); ++d)
    for (size_t s = 0; s < table.points[d].size(); s += 3)
      if (table.points[d][s].size() > 21)
        jp.slices.push_back(
            {static_cast<int>(d), static_cast<int>(s), &table.points[d][s], c.degree[d / 4]});
  REQUIRE(jp.slices.size() > 200);
  const auto fast = SolveJoint(jp), ref = SolveJointCeres(jp);
  INFO(fast.message << " / " << ref.message);
  REQUIRE(fast.termination == FitTermination::kConvergence);
  REQUIRE(ref.termination == FitTermination::kConvergence);
  CHECK(fast.final_cost == Approx(ref.final_cost).epsilon(1e-9));
  double worst_scale = 0, worst_coeff = 0, beyond = 0;
  for (size_t i = 0; i < fast.scale.size(); ++i)
    worst_scale = std::max(worst_scale, std::abs(fast.scale[i] - ref.scale[i]));
  for (size_t i = 0; i < jp.slices.size(); ++i) {
    const size_t active = static_cast<size_t>(NumCoefficients(jp.slices[i].order));
    REQUIRE(fast.coeffs[i].size() == 21);
    for (size_t k = 0; k < 21; ++k) {
      if (k < active)
        worst_coeff = std::max(worst_coeff, std::abs(fast.coeffs[i][k] - ref.coeffs[i][k]));
      else
        beyond = std::max({beyond, std::abs(fast.coeffs[i][k]), std::abs(ref.coeffs[i][k])});
    }
  }
  INFO("worst scale difference " << worst_scale << ", coefficient " << worst_coeff);
  CHECK(worst_scale < 1e-7);
  CHECK(worst_coeff < 1e-6);
  CHECK(beyond == 0.0);
  // The same problem with every slice free to degree 5 has a lower cost (the bands of degree 1 and
  // 3 were really held below it).
  auto free = jp;
  for (auto& sl : free.slices) sl.order = -1;
  CHECK(SolveJoint(free).final_cost < fast.final_cost - 10);
}

TEST_CASE("per-band degrees survive flat_coeffs.fits and reach both cube forms",
          "[cube][order][products]") {
  const Instrument inst(InstrumentOptions{});
  const auto c = MakeCube(inst, {1, 3, 5}, 1200, 0.003, false);
  const auto cube = FitFlatCube(inst, KFold(6), c.ratios);
  REQUIRE(cube.band_order == std::array<int, 3>{1, 3, 5});
  const auto dir = test::TempDir("order-select");
  const std::string path = (dir / "flat_coeffs.fits").string();
  WriteFlatCoeffs(path, cube, Provenance{});
  const auto back = ReadFlatCoeffs(path);
  CHECK(back.order == 5);
  CHECK(back.band_order == cube.band_order);
  CHECK(back.order_select == FlatOrderSelect::kKFold);
  double worst = 0, worst_sigma = 0;
  for (size_t d = 0; d < cube.detectors.size(); ++d) {
    CHECK(back.detectors[d].order == cube.detectors[d].order);
    for (size_t s = 0; s < cube.detectors[d].slices.size(); s += 5) {
      const auto &a = cube.detectors[d].slices[s], &b = back.detectors[d].slices[s];
      REQUIRE(b.coeffs.size() == a.coeffs.size());
      for (double x : {10.0, 5000.0})
        for (double y : {20.0, 9000.0}) {
          worst = std::max(worst, std::abs(a.Evaluate(x, y) - b.Evaluate(x, y)));
          worst_sigma = std::max(worst_sigma, std::abs(a.Sigma(x, y) - b.Sigma(x, y)));
        }
    }
  }
  CHECK(worst < 1e-12);
  CHECK(worst_sigma < 1e-12);
  {
    FitsReader r(path);
    r.MoveTo("COEFFS");
    CHECK(r.KeyLong("ORDER_GU") == 1);
    CHECK(r.KeyLong("ORDER_GV") == 3);
    CHECK(r.KeyLong("ORDER_GI") == 5);
    CHECK(r.KeyString("ORDERSEL") == "kfold");
    r.MoveTo("ORDERSEL");
    const auto chosen = r.ReadColumn("CHOSEN"), degree = r.ReadColumn("DEGREE");
    const auto band = r.ReadStringColumn("BAND");
    std::map<std::string, double> picked;
    for (size_t i = 0; i < chosen.size(); ++i)
      if (chosen[i] != 0) picked[band[i]] = degree[i];
    CHECK(picked == std::map<std::string, double>{{"GU", 1}, {"GV", 3}, {"GI", 5}});
  }
  // Both cube forms carry the band's degree and agree with each other.
  AssembleOptions ao;
  ao.axe_binning = 256;
  ao.cube_binning = 512;
  WriteFlatProducts(dir.string(), FlatProductsInput{&back}, inst, ao, Provenance{});
  for (const auto& [det, degree] : std::map<std::string, int>{{"GU2", 1}, {"GV3", 3}, {"GI1", 5}}) {
    FitsReader axe((dir / AxeFileName(det, 256)).string());
    CHECK(axe.KeyLong("FITORDER") == degree);
    FitsReader ref((dir / ("flat_" + det + ".fits")).string());
    ref.MoveTo("SCI");
    CHECK(ref.KeyLong("FITORDER") == degree);
  }
  double apart = 0;
  for (double x : {255.5, 4863.5})
    for (double y : {255.5, 5375.5})
      for (int k : {430, 470, 510}) {  // GI wavelengths
        const double l = OutputGrid().Centre(k);
        apart =
            std::max(apart, std::abs(ApplyFlat((dir / AxeFileName("GI1", 256)).string(), x, y, l) -
                                     ApplyFlat((dir / "flat_GI1.fits").string(), x, y, l)));
      }
  CHECK(apart < 1e-4);
}

TEST_CASE("a flat_coeffs row whose ORDER contradicts FITORDER or its detector is refused by name",
          "[cube][order][bad-input]") {
  const Instrument inst(InstrumentOptions{});
  const auto c = MakeCube(inst, {2, 2, 2}, 200, 0.003, false);
  FlatFitOptions o;
  o.progress = false;
  auto cube = FitFlatCube(inst, o, c.ratios);
  const auto dir = test::TempDir("order-bad");
  const std::string path = (dir / "c.fits").string();
  WriteFlatCoeffs(path, cube, Provenance{});
  CHECK(ReadFlatCoeffs(path).band_order == std::array<int, 3>{2, 2, 2});
  auto set_order = [&](long row, int value) {
    fitsfile* f = nullptr;
    int status = 0, col = 0;
    fits_open_file(&f, path.c_str(), READWRITE, &status);
    fits_movnam_hdu(f, BINARY_TBL, const_cast<char*>("COEFFS"), 0, &status);
    fits_get_colnum(f, CASEINSEN, const_cast<char*>("ORDER"), &col, &status);
    fits_write_col(f, TINT, col, row, 1, 1, &value, &status);
    fits_close_file(f, &status);
    REQUIRE(status == 0);
  };
  auto error_of = [&] {
    try {
      ReadFlatCoeffs(path);
    } catch (const IoError& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  set_order(1, 7);
  CHECK(error_of() == path + ": COEFFS row 1 has ORDER 7, expected an integer in 0..FITORDER = 2");
  set_order(1, 2);
  set_order(
      2, 1);  // a lower degree is a valid row, but not beside rows of degree 2 of the same detector
  CHECK(error_of() ==
        path + ": COEFFS row 2 has ORDER 1 but detector GU1 has degree 2 in its other rows");
  // A cube whose slice claims a degree its coefficients do not have is not written.
  cube.detectors[0].slices[0].order = 4;
  CHECK_THROWS_WITH(WriteFlatCoeffs((dir / "d.fits").string(), cube, Provenance{}),
                    Catch::Contains("has 6 coefficients for degree 4"));
}
