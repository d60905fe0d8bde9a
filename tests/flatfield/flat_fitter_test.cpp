#include "flatfield/flat_fitter.h"

#include <ceres/types.h>

#include <cmath>

#include "core/errors.h"
#include "core/rng.h"
#include "flatfield/residuals.h"
#include "tests/test_util.h"

using namespace csst;

namespace {
constexpr double kNx = 9216, kNy = 9232;
// A degree-2 flat with a few per cent structure, written with monomials (independent of the
// Legendre basis used by the fitter).
double TrueFlat(double x, double y) {
  const double u = 2 * x / (kNx - 1) - 1, v = 2 * y / (kNy - 1) - 1;
  return 1.0 + 0.02 * u - 0.015 * v + 0.03 * u * u - 0.01 * u * v + 0.02 * v * v;
}
std::vector<RatioPoint> Points(int n, double sigma, uint64_t seed, double outlier_frac = 0) {
  Rng rng(seed, "flat-test", 0);
  std::vector<RatioPoint> pts(n);
  for (auto& p : pts) {
    p.x = rng.Uniform(0, kNx - 1);
    p.y = rng.Uniform(0, kNy - 1);
    p.sigma = sigma;
    p.ratio = TrueFlat(p.x, p.y) + (sigma > 0 ? sigma * rng.Normal() : 0.0);
    if (outlier_frac > 0 && rng.Uniform() < outlier_frac)
      p.ratio += 20 * sigma;  // gross, one-sided
  }
  return pts;
}
}  // namespace

TEST_CASE("Legendre basis order and count", "[flat]") {
  CHECK(NumCoefficients(2) == 6);
  // At (u, v) = (1, -1): P_i(1) = 1, P_j(-1) = (-1)^j.
  const auto b = FlatBasis(kNx - 1, 0, kNx, kNy, 2);
  const std::vector<double> expect = {1, 1, -1, 1, -1, 1};
  for (int k = 0; k < 6; ++k) CHECK(b[k] == Approx(expect[k]));
}

TEST_CASE("noiseless ratios recover an injected degree-2 flat exactly", "[flat]") {
  auto pts = Points(400, 0.0, 1);
  for (auto& p : pts) p.sigma = 1e-3;  // weights only
  const auto s = FlatFitter(FlatFitOptions{}).Fit(pts, kNx, kNy);
  REQUIRE(s.converged);
  for (double x : {0.0, 1000.0, 4608.0, 9215.0})
    for (double y : {0.0, 3000.0, 9231.0})
      CHECK(std::abs(s.Evaluate(x, y) - TrueFlat(x, y)) < 1e-10);
}

TEST_CASE("pulls of the fitted flat have unit spread over 200 realizations", "[flat]") {
  FlatFitter fitter(FlatFitOptions{});
  std::vector<double> pulls;
  for (int r = 0; r < 200; ++r) {
    const auto pts = Points(400, 0.01, 1000 + r);
    const auto s = fitter.Fit(pts, kNx, kNy);
    REQUIRE(s.converged);
    for (auto [x, y] : {std::pair{100.0, 200.0}, {4600.0, 4600.0}, {9000.0, 300.0}}) {
      pulls.push_back((s.Evaluate(x, y) - TrueFlat(x, y)) / s.Sigma(x, y));
    }
  }
  double m = 0, v = 0;
  for (double p : pulls) m += p;
  m /= pulls.size();
  for (double p : pulls) v += (p - m) * (p - m);
  const double sd = std::sqrt(v / (pulls.size() - 1));
  CHECK(sd == Approx(1.0).margin(0.1));
  CHECK(std::abs(m) < 0.2);
}

TEST_CASE("robust loss resists 10% gross outliers where least squares does not", "[flat]") {
  const auto pts = Points(400, 0.01, 77, 0.10);
  FlatFitOptions plain;
  FlatFitOptions robust;  // Cauchy: the influence of a 20-sigma point is ~0.1 sigma
  robust.loss = FlatLoss::kCauchy;
  robust.loss_scale = 1.5;
  const auto a = FlatFitter(plain).Fit(pts, kNx, kNy);
  const auto b = FlatFitter(robust).Fit(pts, kNx, kNy);
  const double x = 4600, y = 4600;
  const double bias_plain = std::abs(a.Evaluate(x, y) - TrueFlat(x, y)) / a.Sigma(x, y);
  const double bias_robust = std::abs(b.Evaluate(x, y) - TrueFlat(x, y)) / b.Sigma(x, y);
  INFO("plain " << bias_plain << " sigma, robust " << bias_robust << " sigma");
  CHECK(bias_plain > 1.0);
  CHECK(bias_robust < 1.0);
}

TEST_CASE("too few points give an unconverged slice, not an exception", "[flat]") {
  auto pts = Points(4, 0.01, 3);
  const auto s = FlatFitter(FlatFitOptions{}).Fit(pts, kNx, kNy);
  CHECK_FALSE(s.converged);
  CHECK(s.termination == FitTermination::kNotRun);
  CHECK(s.message == "too few points: 4 usable for 6 coefficients");
  // one point more than coefficients: it runs
  CHECK(FlatFitter(FlatFitOptions{}).Fit(Points(7, 0.01, 3), kNx, kNy).termination ==
        FitTermination::kConvergence);
}

TEST_CASE("fit termination: every Ceres termination type keeps Ceres' name", "[flat]") {
  for (const auto t : {ceres::CONVERGENCE, ceres::NO_CONVERGENCE, ceres::FAILURE,
                       ceres::USER_SUCCESS, ceres::USER_FAILURE}) {
    CHECK(std::string(ToString(FitTerminationOf(t))) == ceres::TerminationTypeToString(t));
  }
  CHECK(EnumFromName<FitTermination>("NOT_RUN") == FitTermination::kNotRun);
  CHECK_FALSE(EnumFromName<FitTermination>("converged"));
}

TEST_CASE("flat fit options are validated", "[flat]") {
  FlatFitOptions o;
  o.order = -1;
  CHECK_THROWS_WITH(FlatFitter(o), "config error: flatfield.order = -1 violates 0 <= order <= 20");
  o.order = 21;  // beyond the basis' fixed-size arrays
  CHECK_THROWS_WITH(FlatFitter(o), "config error: flatfield.order = 21 violates 0 <= order <= 20");
  o.order = 2;
  o.lack_of_fit_partners = 0;
  CHECK_THROWS_WITH(FlatFitter(o), "config error: flatfield.lackfit_partners must be >= 1");
  o.lack_of_fit_partners = 32;
  o.loss_scale = 0;
  CHECK_THROWS_WITH(FlatFitter(o), "config error: flatfield.loss_scale must be > 0");
}

TEST_CASE("re-weighted robust fit and Ceres agree to 1e-8 for Huber and Cauchy", "[flat]") {
  // 400 points, 10% one-sided 20-sigma outliers and unequal errors: both losses down-weight the
  // outliers, so the minimum differs from least squares (checked) and both solvers must find it.
  auto pts = Points(400, 0.01, 91, 0.10);
  Rng rng(91, "sigma", 0);
  for (auto& p : pts) p.sigma *= rng.Uniform(0.5, 2.0);
  const auto plain = FlatFitter(FlatFitOptions{}).Fit(pts, kNx, kNy);
  for (const FlatLoss loss : {FlatLoss::kHuber, FlatLoss::kCauchy}) {
    FlatFitOptions o;
    o.loss = loss;
    o.loss_scale = 2.0;
    const FlatFitter fitter(o);
    const auto irls = fitter.Fit(pts, kNx, kNy);
    const auto ceres = fitter.FitWithCeres(pts, kNx, kNy);
    INFO(ToString(loss) << ": " << irls.message << " / " << ceres.message);
    CHECK(irls.message.find("re-weighted") != std::string::npos);
    REQUIRE(irls.converged);
    REQUIRE(ceres.converged);
    for (size_t k = 0; k < irls.coeffs.size(); ++k) {
      INFO("coefficient " << k);
      CHECK(std::abs(irls.coeffs[k] - ceres.coeffs[k]) < 1e-8);
    }
    for (size_t k = 0; k < irls.covariance.size(); ++k) {
      INFO("covariance element " << k);
      CHECK(std::abs(irls.covariance[k] - ceres.covariance[k]) <
            1e-6 * std::abs(ceres.covariance[0]));
    }
    CHECK(irls.final_cost == Approx(ceres.final_cost).epsilon(1e-8));
    CHECK(std::abs(irls.coeffs[0] - plain.coeffs[0]) > 1e-3);  // the loss changed the answer
  }
}

TEST_CASE("closed-form fit and Ceres agree to 1e-10 in coefficients and covariance", "[flat]") {
  // 400 points with unequal errors: the weighted least-squares minimum is unique; Ceres reaches it
  // iteratively, the QR solution directly.
  auto pts = Points(400, 0.01, 42);
  Rng rng(42, "sigma", 0);
  for (auto& p : pts) p.sigma *= rng.Uniform(0.5, 2.0);
  FlatFitOptions o;
  o.order = 2;
  const FlatFitter fitter(o);
  const auto closed = fitter.Fit(pts, kNx, kNy);
  const auto ceres = fitter.FitWithCeres(pts, kNx, kNy);
  CHECK(closed.message.find("closed form") != std::string::npos);
  REQUIRE(closed.converged);
  REQUIRE(ceres.converged);
  REQUIRE(closed.covariance.size() == 36);
  for (size_t k = 0; k < closed.coeffs.size(); ++k) {
    INFO("coefficient " << k);
    CHECK(std::abs(closed.coeffs[k] - ceres.coeffs[k]) < 1e-10);
  }
  for (size_t k = 0; k < closed.covariance.size(); ++k) {
    INFO("covariance element " << k);
    CHECK(std::abs(closed.covariance[k] - ceres.covariance[k]) <
          1e-10 * std::abs(ceres.covariance[0]) + 1e-16);
  }
  CHECK(closed.final_cost == Approx(ceres.final_cost).epsilon(1e-8));
  // And both recover the injected flat to its noise (a constant or the truth would not match both).
  CHECK(std::abs(closed.Evaluate(100, 100) - TrueFlat(100, 100)) <
        5 * closed.Sigma(100, 100) + 1e-12);
  // A design that cannot fix every coefficient (all points on one column) is flagged, not fitted.
  auto line = Points(50, 0.01, 7);
  for (auto& p : line) p.x = 1000;
  const auto deficient = fitter.Fit(line, kNx, kNy);
  CHECK_FALSE(deficient.converged);
  CHECK(deficient.message.find("rank-deficient") != std::string::npos);
}
