// GPR subcommands (paper App. C): `gpr clean` flags abnormal library spectra, `gpr generate` makes
// normalised R=2000 inputs from stellar parameters.
#include <cmath>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/errors.h"
#include "core/files.h"
#include "core/grid.h"
#include "core/log.h"
#include "io/library.h"
#include "pipeline/commands.h"
#include "simulation/gpr/library_gpr.h"

namespace csst {
namespace fs = std::filesystem;

namespace {
struct LibraryArgs {
  std::string library, dir, params;  // library: a LibraryKind name (checked by the option)
  LibrarySelection selection;
  int starts = 3;
  uint64_t seed = 1;
};
std::shared_ptr<LibraryArgs> AddLibraryArgs(CLI::App* cmd, bool library_required) {
  auto a = std::make_shared<LibraryArgs>();
  std::vector<std::string> kinds;
  for (const auto& k : NamesOf(LibraryKind{})) kinds.push_back(k.name);
  auto* lib = cmd->add_option("--library", a->library, EnumNameList<LibraryKind>(" | "))
                  ->check(CLI::IsMember(kinds));
  if (library_required)
    lib->required();
  else
    a->library = ToString(LibraryKind::kMiles);
  cmd->add_option("--dir", a->dir,
                  "directory of the library's FITS files (and MILES's paramsMILES_v9.1.txt)")
      ->required();
  cmd->add_option("--params", a->params,
                  "CSV file,teff,logg,feh overriding/adding the library's parameters");
  cmd->add_option("--teff-min", a->selection.teff_min, "use library stars with Teff >= this [K]");
  cmd->add_option("--teff-max", a->selection.teff_max, "use library stars with Teff <= this [K]");
  cmd->add_option("--starts", a->starts, "hyper-parameter optimiser starts")
      ->check(CLI::Range(1, 20));
  cmd->add_option("--seed", a->seed, "seed of the random splits");
  return a;
}

LibraryKind KindOf(const LibraryArgs& a) {
  return ParseEnumName<LibraryKind, ConfigError>(a.library, "--library");
}

Library Load(const LibraryArgs& a) {
  auto lib = LoadLibrary(KindOf(a), a.dir, a.params, a.selection);
  auto log = Logger("gpr");
  for (const auto& [file, why] : lib.skipped) log->debug("skipped {}: {}", file, why);
  log->info("{}: {} stars with parameters used, {} skipped (--log-level debug lists them)",
            a.library, lib.stars.size(), lib.skipped.size());
  return lib;
}
}  // namespace

CommandAction AddGprCommand(CLI::App& app) {
  auto* gpr = app.add_subcommand(
      "gpr", "Gaussian process regression on an empirical library (paper App. C)");
  gpr->require_subcommand(1);

  auto* clean = gpr->add_subcommand(
      "clean", "flag library stars whose SED the GPR cannot predict from its parameters");
  auto ca = AddLibraryArgs(clean, true);
  auto copt = std::make_shared<GprCleanOptions>();
  auto cut = std::make_shared<double>(std::nan(""));
  auto cout_dir = std::make_shared<std::string>();
  clean->add_option("--cut", *cut,
                    "RMSAE cut (default: 0.05 miles, 0.068 ngsl and stelib, as the paper's NGSL)");
  clean->add_option("--folds", copt->folds, "cross-prediction folds (5 = the paper's 4:1 split)")
      ->check(CLI::Range(2, 50));
  clean
      ->add_option("--rounds", copt->max_rounds,
                   "refits without the flagged stars, at most (1 = a single pass)")
      ->check(CLI::Range(1, 20));
  clean->add_option("--out", *cout_dir, "output directory (kept.csv, residuals.fits, summary.json)")
      ->required();

  auto* gen =
      gpr->add_subcommand("generate", "generate normalised R=2000 inputs from stellar parameters");
  auto ga = AddLibraryArgs(gen, false);
  auto targets = std::make_shared<std::string>();
  auto single = std::make_shared<std::vector<double>>();
  auto holdout = std::make_shared<double>(0.2);
  auto gout = std::make_shared<std::string>();
  gen->add_option("--targets", *targets, "CSV name,teff,logg,feh of the stars to generate");
  gen->add_option("--star", *single, "one star: TEFF LOGG FEH")->expected(3);
  gen->add_option("--holdout", *holdout,
                  "fraction of library stars held out to measure the generation error (0 = skip)")
      ->check(CLI::Range(0.0, 0.9));
  gen->add_option("--out", *gout,
                  "output FITS (GENERATED table); the hold-out report goes to OUT.holdout.json")
      ->required();

  return [gpr, clean, ca, copt, cut, cout_dir, gen, ga, targets, single, holdout, gout]() -> int {
    if (!*gpr) return -1;
    auto log = Logger("gpr");
    Provenance prov;
    if (*clean) {
      const auto lib = Load(*ca);
      copt->cut = std::isfinite(*cut) ? *cut : (KindOf(*ca) == LibraryKind::kMiles ? 0.05 : 0.068);
      copt->starts = ca->starts;
      copt->seed = ca->seed;
      prov.seed = ca->seed;
      prov.history.push_back("csst-flatcube gpr clean --library " + ca->library + " --dir " +
                             ca->dir);
      const auto r = GprClean(lib.stars, *copt);
      for (const auto& [name, why] : r.unusable)
        log->warn("not used (no R=200 SED): {}: {}", name, why);
      WriteGprClean(*cout_dir, ca->library, *copt, r, prov);
      log->info(
          "hyper-parameters (round {}, from {} stars): sigma_f {:.4g}, sigma_n {:.4g}, l {:.4g} "
          "(log ML {:.6g}, {})",
          r.rounds, r.n_fit, r.fit.best.sigma_f, r.fit.best.sigma_n, r.fit.best.ell,
          r.fit.log_marginal_likelihood, r.fit.termination);
      if (KindOf(*ca) == LibraryKind::kMiles)
        log->info("paper (MILES): sigma_f 0.883, sigma_n 0.001, l 4.27; kept 265 of 316");
      if (KindOf(*ca) == LibraryKind::kNgsl)
        log->info("paper (NGSL): sigma_f 0.613, sigma_n 0.0003, l 2.57");
      log->info("kept {} of {} stars with RMSAE <= {} over {:.0f}-{:.0f} A; wrote {}", r.n_kept(),
                r.name.size(), copt->cut, OutputGrid().Centre(r.pixels.front()),
                OutputGrid().Centre(r.pixels.back()), *cout_dir);
      return 0;
    }
    // generate
    if (targets->empty() == single->empty())
      throw ConfigError("usage error: gpr generate needs exactly one of --targets or --star");
    std::vector<NamedParams> want;
    if (!targets->empty()) {
      want = ReadParameterCsv(*targets);
      for (size_t i = 0; i < want.size(); ++i)
        if (!std::isfinite(want[i].teff) || !std::isfinite(want[i].logg) ||
            !std::isfinite(want[i].feh))
          throw IoError(*targets + ": row " + std::to_string(i + 2) + " (" + want[i].name +
                        "): Teff, log g and [Fe/H] are all needed");
    } else {
      want.push_back({"star", (*single)[0], (*single)[1], (*single)[2]});
    }
    const auto lib = Load(*ga);
    prov.seed = ga->seed;
    prov.history.push_back("csst-flatcube gpr generate --library " + ga->library + " --dir " +
                           ga->dir);
    if (*holdout > 0) {
      const auto h = EvaluateInputGenerator(lib.stars, *holdout, ga->seed, ga->starts);
      nlohmann::json stars = nlohmann::json::array();
      for (size_t i = 0; i < h.name.size(); ++i)
        stars.push_back({{"name", h.name[i]},
                         {"teff", h.teff[i]},
                         {"logg", h.logg[i]},
                         {"feh", h.feh[i]},
                         {"rms", h.rms[i]}});
      const nlohmann::json j = {{"library", ga->library},
                                {"holdout_fraction", *holdout},
                                {"seed", ga->seed},
                                {"train_stars", h.n_train},
                                {"test_stars", h.name.size()},
                                {"hyper",
                                 {{"sigma_f", h.fit.best.sigma_f},
                                  {"sigma_n", h.fit.best.sigma_n},
                                  {"ell", h.fit.best.ell},
                                  {"log_marginal_likelihood", h.fit.log_marginal_likelihood}}},
                                {"median_rms_dwarfs_5000_7000K", h.median_rms_dwarfs},
                                {"n_dwarfs", h.n_dwarfs},
                                {"stars", stars}};
      WriteTextAtomically(*gout + ".holdout.json", j.dump(1) + "\n");
      log->info(
          "held-out {} stars: median RMS of relative residuals for 5000-7000 K dwarfs (log g >= 4) "
          "{:.4f} over {} "
          "stars; wrote {}.holdout.json",
          h.name.size(), h.median_rms_dwarfs, h.n_dwarfs, *gout);
    }
    const InputGenerator g(lib.stars, ga->starts);
    Eigen::MatrixXd x(static_cast<Eigen::Index>(want.size()), 3), flux, sigma;
    std::vector<std::string> names;
    for (size_t i = 0; i < want.size(); ++i) {
      x.row(static_cast<Eigen::Index>(i)) << want[i].teff, want[i].logg, want[i].feh;
      names.push_back(want[i].name);
    }
    g.Generate(x, &flux, &sigma);
    if (!fs::path(*gout).parent_path().empty())
      fs::create_directories(fs::path(*gout).parent_path());
    WriteGeneratedInputs(*gout, names, x, flux, sigma, prov);
    log->info(
        "GPR on {} {} stars: sigma_f {:.4g}, sigma_n {:.4g}, l {:.4g}; wrote {} spectra to {}",
        g.n_train(), ga->library, g.fit().best.sigma_f, g.fit().best.sigma_n, g.fit().best.ell,
        names.size(), *gout);
    return 0;
  };
}

}  // namespace csst
