// GPR against scikit-learn (fixture made by tools/gpr_reference.py with Debian python3-sklearn).
#include "simulation/gpr/gpr.h"

#include <cmath>
#include <nlohmann/json.hpp>

#include "core/files.h"
#include "tests/test_util.h"

using namespace csst;

namespace {
Eigen::MatrixXd Matrix(const nlohmann::json& j) {
  Eigen::MatrixXd m(j.size(), j[0].size());
  for (size_t i = 0; i < j.size(); ++i)
    for (size_t k = 0; k < j[i].size(); ++k) m(i, k) = j[i][k];
  return m;
}
}  // namespace

TEST_CASE("GPR matches scikit-learn: fixed hyper-parameters and optimised ones", "[gpr]") {
  const auto ref = nlohmann::json::parse(
      ReadText(std::string(CSST_SOURCE_DIR) + "/tests/data/gpr_reference.json"));
  Gpr gp(Matrix(ref["x"]), Matrix(ref["y"]));
  const auto& f = ref["fixed"];
  gp.SetHyper({f["sigma_f"], f["sigma_n"], f["ell"]});
  // scikit-learn adds alpha = 1e-10 to the diagonal: agreement to ~1e-8 relative.
  CHECK(gp.LogMarginalLikelihood() == Approx(ref["fixed_lml"].get<double>()).epsilon(1e-6));
  Eigen::MatrixXd mean, var;
  gp.Predict(Matrix(ref["xq"]), &mean, &var);
  const auto mref = Matrix(ref["fixed_mean"]), sref = Matrix(ref["fixed_std_with_noise"]);
  const double sn2 = std::pow(f["sigma_n"].get<double>(), 2);
  for (int i = 0; i < mean.rows(); ++i)
    for (int k = 0; k < mean.cols(); ++k) {
      CHECK(mean(i, k) == Approx(mref(i, k)).epsilon(1e-6));
      CHECK(std::sqrt(var(i, k) + sn2) == Approx(sref(i, k)).epsilon(1e-6));
    }
  // Analytic gradient against central differences of the log marginal likelihood.
  const auto g = gp.Gradient();
  const double h = 1e-5;
  const double lf = std::log(f["sigma_f"].get<double>()), ln = std::log(f["sigma_n"].get<double>()),
               ll = std::log(f["ell"].get<double>());
  auto lml = [&](double a, double b, double c) {
    gp.SetHyper({std::exp(a), std::exp(b), std::exp(c)});
    return gp.LogMarginalLikelihood();
  };
  CHECK(g(0) == Approx((lml(lf + h, ln, ll) - lml(lf - h, ln, ll)) / (2 * h)).epsilon(1e-5));
  CHECK(g(1) == Approx((lml(lf, ln + h, ll) - lml(lf, ln - h, ll)) / (2 * h)).epsilon(1e-5));
  CHECK(g(2) == Approx((lml(lf, ln, ll + h) - lml(lf, ln, ll - h)) / (2 * h)).epsilon(1e-5));
  // Optimisation.
  const auto res = gp.Optimize(5);
  const auto& o = ref["optimised"];
  INFO("C++: sigma_f " << res.best.sigma_f << " sigma_n " << res.best.sigma_n << " l "
                       << res.best.ell << " LML " << res.log_marginal_likelihood << " ("
                       << res.termination << ")");
  CHECK(res.best.sigma_f == Approx(o["sigma_f"].get<double>()).epsilon(0.05));
  CHECK(res.best.sigma_n == Approx(o["sigma_n"].get<double>()).epsilon(0.05));
  CHECK(res.best.ell == Approx(o["ell"].get<double>()).epsilon(0.05));
  CHECK(res.log_marginal_likelihood ==
        Approx(o["log_marginal_likelihood"].get<double>()).epsilon(1e-3));
}

TEST_CASE("GPR rejects mismatched inputs", "[gpr]") {
  CHECK_THROWS_WITH(Gpr(Eigen::MatrixXd::Zero(3, 2), Eigen::MatrixXd::Zero(2, 1)),
                    Catch::Contains("need >= 2 training rows"));
}
