#include "simulation/gpr/library_gpr.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <numeric>
#include <sstream>

#include "core/errors.h"
#include "core/files.h"
#include "core/grid.h"
#include "core/log.h"
#include "core/rng.h"
#include "instrument/counts.h"

namespace csst {
namespace fs = std::filesystem;

namespace {
Eigen::MatrixXd Parameters(const std::vector<const LibraryStar*>& stars) {
  Eigen::MatrixXd x(static_cast<Eigen::Index>(stars.size()), 3);
  for (size_t i = 0; i < stars.size(); ++i)
    x.row(static_cast<Eigen::Index>(i)) << stars[i]->teff, stars[i]->logg, stars[i]->feh;
  return x;
}

// Seeded assignment of n items to `folds` groups of (nearly) equal size.
std::vector<int> AssignFolds(size_t n, int folds, uint64_t seed) {
  std::vector<std::pair<double, size_t>> key(n);
  for (size_t i = 0; i < n; ++i) key[i] = {Rng(seed, "gpr-fold", i).Uniform(), i};
  std::sort(key.begin(), key.end());
  std::vector<int> fold(n);
  for (size_t r = 0; r < n; ++r)
    fold[key[r].second] = static_cast<int>(r % static_cast<size_t>(folds));
  return fold;
}

nlohmann::json FitJson(const GprOptimizeResult& f) {
  return {{"sigma_f", f.best.sigma_f},
          {"sigma_n", f.best.sigma_n},
          {"ell", f.best.ell},
          {"log_marginal_likelihood", f.log_marginal_likelihood},
          {"termination", f.termination},
          {"starts", f.starts},
          {"evaluations", f.evaluations}};
}
}  // namespace

long GprCleanResult::n_kept() const { return std::count(kept.begin(), kept.end(), uint8_t{1}); }

Spectrum LibraryTargetSed(const Spectrum& spectrum) {
  return ScaleSed(DegradeToGrid(spectrum, 200.0, OutputGrid(), 0.9));
}

Eigen::RowVectorXd LibraryInput(const LibraryStar& star) {
  const auto s = NormaliseContinuum(ResampleFluxConserving(star.spectrum, InputGrid(), 0.6), 51);
  Eigen::RowVectorXd v(InputGrid().size());
  int masked = 0;
  for (int i = 0; i < InputGrid().size(); ++i) {
    const bool bad = !s.mask.empty() && s.mask[i] != 0;
    masked += bad;
    v(i) = bad ? 1.0 : s.flux[i];
  }
  if (masked > InputGrid().size() / 100) {
    throw Error(star.name + ": " + std::to_string(masked) +
                " of the 2238 input pixels (4000-7000 A) are not covered");
  }
  return v;
}

GprCleanResult GprClean(const std::vector<LibraryStar>& stars, const GprCleanOptions& o) {
  if (o.folds < 2) throw ConfigError("gpr clean: folds must be >= 2");
  GprCleanResult r;
  std::vector<const LibraryStar*> usable;
  std::vector<Spectrum> sed;
  for (const auto& star : stars) {
    try {
      sed.push_back(LibraryTargetSed(star));
      usable.push_back(&star);
    } catch (const Error& e) {
      r.unusable.push_back({star.name, e.what()});
    }
  }
  const size_t n = usable.size();
  if (n < static_cast<size_t>(2 * o.folds)) {
    throw Error("gpr clean: " + std::to_string(n) + " usable library stars, need at least " +
                std::to_string(2 * o.folds));
  }
  // The pixels every star covers.
  std::vector<uint8_t> common(OutputGrid().size(), 1);
  for (size_t i = 0; i < n; ++i) {
    for (int k = 0; k < OutputGrid().size(); ++k)
      if ((!sed[i].mask.empty() && sed[i].mask[k]) || !(sed[i].flux[k] > 0)) common[k] = 0;
  }
  for (int k = 0; k < OutputGrid().size(); ++k)
    if (common[k]) r.pixels.push_back(k);
  if (r.pixels.empty()) throw Error("gpr clean: no output pixel is covered by every library star");
  const auto npix = static_cast<Eigen::Index>(r.pixels.size());
  Eigen::MatrixXd y(static_cast<Eigen::Index>(n), npix);
  for (size_t i = 0; i < n; ++i) {
    for (Eigen::Index k = 0; k < npix; ++k)
      y(static_cast<Eigen::Index>(i), k) = sed[i].flux[r.pixels[k]];
  }
  const Eigen::MatrixXd x = Parameters(usable);
  r.fold = AssignFolds(n, o.folds, o.seed);
  std::vector<uint8_t> use(n, 1);  // training stars of this round
  auto rows = [&](bool in_fold, int f, bool only_used) {
    std::vector<Eigen::Index> idx;
    for (size_t i = 0; i < n; ++i)
      if ((r.fold[i] == f) == in_fold && (!only_used || use[i]))
        idx.push_back(static_cast<Eigen::Index>(i));
    return idx;
  };
  r.residual.resize(static_cast<Eigen::Index>(n), npix);
  r.rmsae.assign(n, 0);
  for (r.rounds = 1;; ++r.rounds) {
    // Hyper-parameters from the training part (4/5) of the first split.
    const auto fit_rows = rows(false, 0, true);
    if (fit_rows.size() < 2)
      throw Error("gpr clean: fewer than 2 stars left to fit after flagging");
    Gpr fit(x(fit_rows, Eigen::all), y(fit_rows, Eigen::all));
    r.fit = fit.Optimize(o.starts);
    r.n_fit = static_cast<int>(fit_rows.size());
    for (int f = 0; f < o.folds; ++f) {
      const auto tr = rows(false, f, true), te = rows(true, f, false);
      Gpr g(x(tr, Eigen::all), y(tr, Eigen::all));
      g.SetHyper(r.fit.best);
      Eigen::MatrixXd mean;
      g.Predict(x(te, Eigen::all), &mean, nullptr);
      for (size_t j = 0; j < te.size(); ++j) {
        const Eigen::Index i = te[j];
        r.residual.row(i) =
            (mean.row(static_cast<Eigen::Index>(j)).array() - y.row(i).array()) / y.row(i).array();
        r.rmsae[static_cast<size_t>(i)] = std::sqrt(r.residual.row(i).array().square().mean());
      }
    }
    std::vector<uint8_t> next(n);
    for (size_t i = 0; i < n; ++i) next[i] = r.rmsae[i] <= o.cut ? 1 : 0;
    const bool stable = next == use;
    use = next;
    if (stable || r.rounds >= o.max_rounds) break;
  }
  for (size_t i = 0; i < n; ++i) {
    r.name.push_back(usable[i]->name);
    r.teff.push_back(usable[i]->teff);
    r.logg.push_back(usable[i]->logg);
    r.feh.push_back(usable[i]->feh);
    r.kept.push_back(use[i]);
  }
  std::vector<double> lambda;
  for (int k : r.pixels) lambda.push_back(OutputGrid().Centre(k));
  for (size_t i = 0; i < n; ++i)
    r.ebv.push_back(RelativeColourExcess(lambda, r.residual.row(static_cast<Eigen::Index>(i))));
  return r;
}

double RelativeColourExcess(const std::vector<double>& lambda, const Eigen::RowVectorXd& residual) {
  if (residual.size() != static_cast<Eigen::Index>(lambda.size()))
    throw Error("colour excess: one residual per pixel needed");
  constexpr double kRv = 3.1;
  std::vector<double> x, y;  // pixels where the prediction is positive (1 + r > 0): ln is defined
  for (size_t k = 0; k < lambda.size(); ++k) {
    const double r = residual(static_cast<Eigen::Index>(k));
    if (!(1 + r > 0)) continue;
    x.push_back(-0.4 * std::log(10.0) * kRv * ExtinctionCcm89(lambda[k], kRv));
    y.push_back(-std::log1p(r));
  }
  if (x.size() < 2) return NAN;  // the prediction is not positive anywhere: no colour to measure
  const auto n = static_cast<Eigen::Index>(x.size());
  Eigen::MatrixXd a(n, 2);
  a.col(0).setOnes();
  a.col(1) = Eigen::Map<const Eigen::VectorXd>(x.data(), n);
  if (a.col(1).maxCoeff() - a.col(1).minCoeff() < 1e-9)
    throw Error("colour excess: the pixels span no colour");
  return a.colPivHouseholderQr().solve(Eigen::Map<const Eigen::VectorXd>(y.data(), n))(1);
}

void WriteGprClean(const std::string& dir, const std::string& library, const GprCleanOptions& o,
                   const GprCleanResult& r, const Provenance& prov) {
  fs::create_directories(dir);
  std::ostringstream csv;
  csv << "file,teff,logg,feh,fold,rmsae,kept,ebv_rel\n";
  csv.precision(8);
  for (size_t i = 0; i < r.name.size(); ++i) {
    csv << r.name[i] << ',' << r.teff[i] << ',' << r.logg[i] << ',' << r.feh[i] << ',' << r.fold[i]
        << ',' << r.rmsae[i] << ',' << int(r.kept[i]) << ',' << r.ebv[i] << '\n';
  }
  WriteTextAtomically(fs::path(dir) / "kept.csv", csv.str());
  {
    AtomicOutput out(fs::path(dir) / "residuals.fits");
    FitsWriter w(out.temp().string());
    Provenance p = prov;
    p.descrip = "GPR cleaning of the " + library +
                " library: relative residuals of GPR-predicted R=200 SEDs";
    w.WritePrimary(p);
    const auto npix = r.residual.cols();
    std::vector<double> resid(static_cast<size_t>(r.residual.size()));
    for (Eigen::Index i = 0; i < r.residual.rows(); ++i)
      for (Eigen::Index k = 0; k < npix; ++k)
        resid[static_cast<size_t>(i * npix + k)] = r.residual(i, k);
    std::vector<int32_t> fold(r.fold.begin(), r.fold.end());
    w.WriteTable("GPRCLEAN", {{"NAME", "", r.name},
                              {"TEFF", "K", r.teff},
                              {"LOGG", "dex", r.logg},
                              {"FEH", "dex", r.feh},
                              {"FOLD", "", fold},
                              {"RMSAE", "", r.rmsae},
                              {"KEPT", "", r.kept},
                              {"RESID", "", resid, static_cast<long>(npix)}});
    w.Standard(p, "");
    w.Key("RMSCUT", o.cut, "RMSAE above which a star is flagged");
    w.Key("GPSIGF", r.fit.best.sigma_f, "GPR sigma_f");
    w.Key("GPSIGN", r.fit.best.sigma_n, "GPR sigma_n");
    w.Key("GPELL", r.fit.best.ell, "GPR length scale (z-scored inputs)");
    w.Comment(
        "RESID: (GPR prediction - library) / library on the WAVELENGTH pixels (R=200, scaled at "
        "5526-5586 A)");
    std::vector<double> wave;
    for (int k : r.pixels) wave.push_back(OutputGrid().Centre(k));
    w.WriteTable("WAVELENGTH", {{"WAVELENGTH", "Angstrom", wave}});
    w.Standard(p, "");
    w.Comment(
        "vacuum wavelengths of the RESID pixels (R=200 574-pixel output grid, covered by every "
        "star)");
    w.Close();
    out.Commit();
  }
  std::vector<double> rms = r.rmsae;
  const nlohmann::json j = {
      {"library", library},
      {"stars", r.name.size()},
      {"kept", r.n_kept()},
      {"cut", o.cut},
      {"folds", o.folds},
      {"fit_stars", r.n_fit},
      {"rounds", r.rounds},
      {"unusable", r.unusable},
      {"hyper", FitJson(r.fit)},
      {"median_rmsae", Median(rms)},
      {"wavelength_range",
       {OutputGrid().Centre(r.pixels.front()), OutputGrid().Centre(r.pixels.back())}},
      {"paper",
       {{"miles",
         {{"sigma_f", 0.883}, {"sigma_n", 0.001}, {"ell", 4.27}, {"kept", 265}, {"of", 316}}},
        {"ngsl", {{"sigma_f", 0.613}, {"sigma_n", 0.0003}, {"ell", 2.57}}}}}};
  WriteTextAtomically(fs::path(dir) / "summary.json", j.dump(1) + "\n");
}

InputGenerator::InputGenerator(const std::vector<LibraryStar>& stars, int starts) {
  std::vector<const LibraryStar*> used;
  std::vector<Eigen::RowVectorXd> in;
  for (const auto& s : stars) {
    try {
      in.push_back(LibraryInput(s));
      used.push_back(&s);
    } catch (const Error& e) {
      Logger("gpr")->warn("not used for input generation: {}", e.what());
      ++n_skipped_;
    }
  }
  if (in.size() < 2) {
    throw Error("GPR input generation: " + std::to_string(in.size()) +
                " library stars with a usable 4000-7000 A input, need >= 2");
  }
  Eigen::MatrixXd y(static_cast<Eigen::Index>(in.size()), InputGrid().size());
  for (size_t i = 0; i < in.size(); ++i) y.row(static_cast<Eigen::Index>(i)) = in[i];
  gpr_ = std::make_unique<Gpr>(Parameters(used), std::move(y));
  fit_ = gpr_->Optimize(starts);
  n_train_ = static_cast<int>(used.size());
}

void InputGenerator::Generate(const Eigen::MatrixXd& params, Eigen::MatrixXd* flux,
                              Eigen::MatrixXd* sigma) const {
  if (params.cols() != 3)
    throw Error("InputGenerator: parameters must be rows of (Teff, log g, [Fe/H])");
  Eigen::MatrixXd var;
  gpr_->Predict(params, flux, sigma ? &var : nullptr);
  if (sigma) *sigma = var.array().sqrt();
}

InputHoldout EvaluateInputGenerator(const std::vector<LibraryStar>& stars, double test_fraction,
                                    uint64_t seed, int starts) {
  if (!(test_fraction > 0 && test_fraction < 1))
    throw ConfigError("gpr generate: test fraction must be in (0, 1)");
  std::vector<LibraryStar> train;
  std::vector<const LibraryStar*> test;
  std::vector<Eigen::RowVectorXd> truth;
  for (size_t i = 0; i < stars.size(); ++i) {
    if (Rng(seed, "gpr-holdout", i).Uniform() >= test_fraction) {
      train.push_back(stars[i]);
      continue;
    }
    try {
      truth.push_back(LibraryInput(stars[i]));
      test.push_back(&stars[i]);
    } catch (const Error& e) {
      Logger("gpr")->warn("held-out star not evaluated: {}", e.what());
    }
  }
  if (test.empty())
    throw Error("gpr generate: no held-out star (library too small for the test fraction)");
  const InputGenerator gen(train, starts);
  Eigen::MatrixXd flux;
  gen.Generate(Parameters(test), &flux, nullptr);
  InputHoldout h;
  h.fit = gen.fit();
  h.n_train = gen.n_train();
  std::vector<double> dwarfs;
  for (size_t j = 0; j < test.size(); ++j) {
    const auto& s = *test[j];
    const double rms = std::sqrt(
        ((flux.row(static_cast<Eigen::Index>(j)).array() - truth[j].array()) / truth[j].array())
            .square()
            .mean());
    h.name.push_back(s.name);
    h.teff.push_back(s.teff);
    h.logg.push_back(s.logg);
    h.feh.push_back(s.feh);
    h.rms.push_back(rms);
    if (s.teff >= 5000 && s.teff <= 7000 && s.logg >= 4.0) dwarfs.push_back(rms);
  }
  h.n_dwarfs = static_cast<int>(dwarfs.size());
  h.median_rms_dwarfs = Median(dwarfs);
  return h;
}

void WriteGeneratedInputs(const std::string& path, const std::vector<std::string>& names,
                          const Eigen::MatrixXd& params, const Eigen::MatrixXd& flux,
                          const Eigen::MatrixXd& sigma, const Provenance& prov) {
  const auto n = params.rows(), m = static_cast<Eigen::Index>(InputGrid().size());
  if (static_cast<Eigen::Index>(names.size()) != n || flux.rows() != n || flux.cols() != m ||
      sigma.rows() != n) {
    throw Error(path + ": generated inputs have inconsistent sizes");
  }
  std::vector<double> teff, logg, feh, f, s;
  for (Eigen::Index i = 0; i < n; ++i) {
    teff.push_back(params(i, 0));
    logg.push_back(params(i, 1));
    feh.push_back(params(i, 2));
    for (Eigen::Index k = 0; k < m; ++k) f.push_back(flux(i, k)), s.push_back(sigma(i, k));
  }
  AtomicOutput out(path);
  FitsWriter w(out.temp().string());
  Provenance p = prov;
  p.descrip = "GPR-generated normalised R=2000 network inputs (2238 px, 4000-7000 A)";
  w.WritePrimary(p);
  w.WriteTable("GENERATED", {{"NAME", "", names},
                             {"TEFF", "K", teff},
                             {"LOGG", "dex", logg},
                             {"FEH", "dex", feh},
                             {"FLUX", "", f, static_cast<long>(m)},
                             {"SIGMA", "", s, static_cast<long>(m)}});
  w.Standard(p, "");
  w.Comment(
      "FLUX: GPR predictive mean of flux / 51-px moving-average continuum; SIGMA: predictive std");
  w.WriteTable("WAVELENGTH", {{"WAVELENGTH", "Angstrom", InputGrid().Centres()}});
  w.Standard(p, "");
  w.Comment("vacuum wavelengths of the 2238-pixel log-lambda input grid");
  w.Close();
  out.Commit();
}

}  // namespace csst
