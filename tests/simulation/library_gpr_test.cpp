// GPR library uses (paper App. C): cleaning and input generation, on an analytic library with an
// injected abnormal star, and on MILES from ../shared/data (skipped visibly when absent).
#include "simulation/gpr/library_gpr.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>

#include "core/errors.h"
#include "core/grid.h"
#include "core/rng.h"
#include "instrument/counts.h"
#include "io/library.h"
#include "simulation/training_grid.h"
#include "tests/test_util.h"

using namespace csst;

namespace {
// Planck continuum at Teff with a metallicity- and gravity-dependent ripple, and two absorption
// lines whose depths follow Teff (H-beta-like) and [Fe/H] (Mg-b-like): smooth in the parameters.
std::vector<LibraryStar> AnalyticLibrary(int n, uint64_t seed) {
  std::vector<LibraryStar> out;
  for (int i = 0; i < n; ++i) {
    Rng r(seed, "analytic-library", static_cast<uint64_t>(i));
    LibraryStar s;
    s.name = "star" + std::to_string(100 + i);
    s.teff = r.Uniform(5000, 9000), s.logg = r.Uniform(3.5, 5.0), s.feh = r.Uniform(-1.0, 0.5);
    for (double l = 3000; l <= 9000; l += 1.0) {
      const double planck = std::pow(l, -5) / std::expm1(1.4388e8 / (l * s.teff));
      const double ripple =
          (1 - 0.05 * s.feh * std::sin(l / 300)) * (1 + 0.01 * s.logg * std::cos(l / 500));
      const double lines =
          (1 - 0.4 * (s.teff / 9000) * std::exp(-0.5 * std::pow((l - 4862.7) / 8, 2))) *
          (1 - 0.2 * (s.feh + 1.5) / 2 * std::exp(-0.5 * std::pow((l - 5175) / 5, 2)));
      s.spectrum.wave.push_back(l);
      s.spectrum.flux.push_back(1e20 * planck * ripple * lines);
    }
    out.push_back(std::move(s));
  }
  return out;
}
// The upper of the two middle values for an even count (the figures quoted in the README).
double UpperMedian(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}
}  // namespace

TEST_CASE("GPR cleaning flags an injected abnormal star and keeps the others", "[gpr]") {
  auto lib = AnalyticLibrary(60, 3);
  // Star 7 is "reddened": a slope of 25 % per 1000 A around the scaling window.
  for (size_t k = 0; k < lib[7].spectrum.size(); ++k)
    lib[7].spectrum.flux[k] *= std::pow(lib[7].spectrum.wave[k] / 5556.0, 1.5);
  GprCleanOptions o;
  o.cut = 0.05;
  const auto r = GprClean(lib, o);
  REQUIRE(r.name.size() == 60);
  REQUIRE(r.residual.rows() == 60);
  // Pixels: the R=200 output grid within the library's 3000-9000 A (kernel and coverage margins).
  CHECK(OutputGrid().Centre(r.pixels.front()) == Approx(3000).margin(40));
  CHECK(OutputGrid().Centre(r.pixels.back()) == Approx(9000).margin(40));
  CHECK(r.residual.cols() == static_cast<long>(r.pixels.size()));
  // Every fold holds 12 stars (5 folds of 60); the last round's hyper-parameters came from the kept
  // stars of the 48 outside fold 0, after a second round that confirmed the flagged set.
  for (int f = 0; f < 5; ++f) CHECK(std::count(r.fold.begin(), r.fold.end(), f) == 12);
  long kept_outside_fold0 = 0;
  for (size_t i = 0; i < r.fold.size(); ++i) kept_outside_fold0 += r.fold[i] != 0 && r.kept[i];
  CHECK(r.n_fit == kept_outside_fold0);
  CHECK(r.rounds >= 2);
  INFO("RMSAE of the abnormal star " << r.rmsae[7]);
  CHECK(r.kept[7] == 0);
  CHECK(r.rmsae[7] > 0.1);  // the slope alone is ~0.3 at 3000 and 9000 A
  std::vector<double> normal;
  for (size_t i = 0; i < r.rmsae.size(); ++i)
    if (i != 7) normal.push_back(r.rmsae[i]);
  INFO("median RMSAE of the normal stars " << UpperMedian(normal));
  CHECK(UpperMedian(normal) < 0.01);
  CHECK(r.n_kept() >= 57);  // at most two normal stars (at the edge of parameter space) lost
}

TEST_CASE("colour excess against the GPR prediction recovers injected CCM89 reddening", "[gpr]") {
  // Direct: a residual made from E(B-V) = 0.12 and a grey offset of 7 % returns 0.12.
  std::vector<double> lambda;
  Eigen::RowVectorXd r(50);
  for (int k = 0; k < 50; ++k) {
    lambda.push_back(3600 + 75.0 * k);
    r(k) = std::exp(-std::log(1.07) +
                    0.4 * std::log(10.0) * 3.1 * ExtinctionCcm89(lambda.back()) * 0.12) -
           1;
  }
  CHECK(RelativeColourExcess(lambda, r) == Approx(0.12).margin(1e-9));
  CHECK(RelativeColourExcess(lambda, Eigen::RowVectorXd::Constant(50, 0.3)) ==
        Approx(0).margin(1e-9));  // grey: no colour
  CHECK_THROWS_WITH(RelativeColourExcess({5000, 5000}, Eigen::RowVectorXd::Zero(2)),
                    Catch::Contains("span no colour"));
  CHECK(std::isnan(RelativeColourExcess(
      {4000, 5000}, Eigen::RowVectorXd::Constant(2, -1.5))));  // prediction negative
  // Through GprClean: star 7 reddened by E(B-V) = 0.15, star 9 only scaled; the others unreddened.
  auto lib = AnalyticLibrary(60, 3);
  for (size_t k = 0; k < lib[7].spectrum.size(); ++k)
    lib[7].spectrum.flux[k] *=
        std::pow(10.0, -0.4 * 3.1 * ExtinctionCcm89(lib[7].spectrum.wave[k]) * 0.15);
  for (auto& f : lib[9].spectrum.flux) f *= 1.3;
  const auto c = GprClean(lib, GprCleanOptions{});
  REQUIRE(c.ebv.size() == 60);
  INFO("E(B-V) of star 7 " << c.ebv[7] << ", star 9 " << c.ebv[9]);
  CHECK(c.ebv[7] == Approx(0.15).margin(0.02));
  CHECK(std::abs(c.ebv[9]) < 0.02);  // the scaling window takes out a grey factor
  std::vector<double> others;
  for (size_t i = 0; i < 60; ++i)
    if (i != 7) others.push_back(std::abs(c.ebv[i]));
  CHECK(UpperMedian(others) < 0.01);
}

TEST_CASE("GPR input generation reproduces held-out stars of an analytic library", "[gpr]") {
  const auto lib = AnalyticLibrary(80, 5);
  const auto h = EvaluateInputGenerator(lib, 0.2, 11);
  REQUIRE(h.name.size() >= 8);
  CHECK(h.n_train + static_cast<int>(h.name.size()) == 80);
  INFO("median RMS of held-out normalised spectra " << UpperMedian(h.rms));
  CHECK(UpperMedian(h.rms) < 0.005);
  // Generation at a library star's own parameters returns its input closely, with a small sigma.
  const InputGenerator g(lib);
  Eigen::MatrixXd x(1, 3), flux, sigma;
  x << lib[3].teff, lib[3].logg, lib[3].feh;
  g.Generate(x, &flux, &sigma);
  const Eigen::RowVectorXd truth = LibraryInput(lib[3]);
  CHECK(((flux.row(0) - truth).array() / truth.array()).abs().maxCoeff() < 0.01);
  CHECK(sigma.maxCoeff() < 0.01);
  CHECK(sigma.minCoeff() >= 0);
}

TEST_CASE("library loading and parameter files: clear errors", "[gpr]") {
  test::TempDir dir("library");
  CHECK_FALSE(EnumFromName<LibraryKind>("pickles"));  // the CLI refuses it (--library)
  CHECK(EnumNameList<LibraryKind>() == "miles, stelib, ngsl");
  CHECK_THROWS_WITH(LoadLibrary(LibraryKind::kMiles, (dir / "absent").string()),
                    Catch::Contains("library directory not found"));
  CHECK_THROWS_WITH(LoadLibrary(LibraryKind::kNgsl, dir.string()),
                    Catch::Contains("give a parameter CSV"));
  CHECK_THROWS_WITH(LoadLibrary(LibraryKind::kStelib, dir.string()),
                    Catch::Contains("no stelib FITS files"));
  std::ofstream(dir / "p.csv") << "file,teff,logg,feh\na.fits,5800,4.4,0\nb.fits,6x00,4.0,-\n";
  CHECK_THROWS_WITH(ReadParameterCsv((dir / "p.csv").string()),
                    Catch::Contains("row 3, column teff: '6x00' is not a number"));
  std::ofstream(dir / "q.csv") << "file,teff,feh\na.fits,5800,0\n";
  CHECK_THROWS_WITH(ReadParameterCsv((dir / "q.csv").string()),
                    Catch::Contains("no column 'logg'"));
  std::ofstream(dir / "r.csv") << "name,teff,logg,feh\nsun,5777,4.44,0\nx,-,4,0\n";
  const auto p = ReadParameterCsv((dir / "r.csv").string());
  REQUIRE(p.size() == 2);
  CHECK(p[0].name == "sun");
  CHECK(p[0].teff == 5777);
  CHECK(std::isnan(p[1].teff));
  CHECK_THROWS_WITH(GprClean(AnalyticLibrary(6, 1), GprCleanOptions{}),
                    Catch::Contains("need at least 10"));
  CHECK_THROWS_WITH(InputGenerator(AnalyticLibrary(1, 1)), Catch::Contains("need >= 2"));
}

TEST_CASE(
    "GPR on MILES: hyper-parameters and kept fraction beside the paper's, then held-out generation",
    "[gpr][shared]") {
  const auto dir = test::SharedData("miles");
  CSST_REQUIRE_SHARED(dir / "paramsMILES_v9.1.txt");
  LibrarySelection sel;
  sel.teff_min = 5000, sel.teff_max = 9750;  // the stars the method uses
  const auto lib = LoadLibrary(LibraryKind::kMiles, dir.string(), "", sel);
  REQUIRE(lib.stars.size() > 300);
  CHECK(lib.stars.size() + lib.skipped.size() >=
        984);  // every file is used or listed with a reason
  const auto r = GprClean(lib.stars, GprCleanOptions{});
  std::printf(
      "MILES GPR clean (5000-9750 K): sigma_f %.3f sigma_n %.4f l %.2f (paper 0.883, 0.001, 4.27); "
      "kept %ld of %zu "
      "(paper 265 of 316)\n",
      r.fit.best.sigma_f, r.fit.best.sigma_n, r.fit.best.ell, r.n_kept(), r.name.size());
  // The amplitude and length scale reproduce the paper's (measured 0.908 and 4.09). The noise term
  // does not: with no E(B-V) < 0.1 cut available here, reddened stars keep the scatter about the
  // smooth trend at 0.02 instead of 0.001, and fewer stars pass the 0.05 cut (measured 74 %, paper
  // 84 %).
  CHECK(r.fit.best.sigma_f == Approx(0.883).epsilon(0.05));
  CHECK(r.fit.best.ell == Approx(4.27).epsilon(0.1));
  CHECK(r.fit.best.sigma_n < 0.05);
  const double kept = static_cast<double>(r.n_kept()) / static_cast<double>(r.name.size());
  CHECK(kept > 0.65);
  CHECK(kept < 0.9);
  // Generation (trained on 4000-10000 K MILES stars, 20 % held out): issue target median RMS <=
  // 0.02 for 5000-7000 K dwarfs (measured 0.0078).
  LibrarySelection wide;
  wide.teff_min = 4000, wide.teff_max = 10000;
  const auto h = EvaluateInputGenerator(
      LoadLibrary(LibraryKind::kMiles, dir.string(), "", wide).stars, 0.2, 1);
  std::printf("MILES GPR generation: held-out 5000-7000 K dwarfs median RMS %.4f over %d stars\n",
              h.median_rms_dwarfs, h.n_dwarfs);
  CHECK(h.n_dwarfs >= 20);
  CHECK(h.median_rms_dwarfs <= 0.02);
}

TEST_CASE("fine-tuning grid: STELIB targets, inputs generated by a GPR on MILES, GPR-cleaned",
          "[gpr][grid][shared]") {
  const auto stelib = test::SharedData("stelib"), miles = test::SharedData("miles");
  CSST_REQUIRE_SHARED(stelib / "STELIB_v3.2_HD006268.fits");
  CSST_REQUIRE_SHARED(miles / "paramsMILES_v9.1.txt");
  test::TempDir dir("ft-grid");
  GridOptions o;
  o.source = GridSource::kStelib;
  o.source_dir = stelib.string();
  o.inputs = GridInputs::kGpr;
  o.gpr_library_dir = miles.string();
  o.gpr_clean_cut = 0.068;  // the paper's NGSL cut
  const auto path = (dir / "grid.fits").string();
  MakeTrainingGrid(o, 5, path, {});
  const auto g = ReadTrainingGrid(path);
  // 222 files: 134 with parameters, 4500-10000 K and a covered scaling window; the cleaning keeps
  // most (measured 100).
  INFO("stars in the grid " << g.size());
  CHECK(g.size() > 80);
  CHECK(g.size() < 134);
  const auto lib = LoadLibrary(LibraryKind::kStelib, stelib.string());
  const InputGenerator gen(
      LoadLibrary(LibraryKind::kMiles, miles.string(), "", LibrarySelection{4500, 10000}).stars);
  int checked = 0, test_stars = 0;
  std::vector<double> rms;
  for (size_t i = 0; i < g.size(); ++i) {
    test_stars += g.test[i];
    const auto it = std::find_if(lib.stars.begin(), lib.stars.end(),
                                 [&](const LibraryStar& s) { return s.name == g.name[i]; });
    REQUIRE(it != lib.stars.end());
    // Target: the star's own R=200 SED (float precision); input: the GPR's, not the star's own.
    const auto sed = LibraryTargetSed(*it);
    double worst_target = 0, worst_input = 0;
    for (int k = 0; k < OutputGrid().size(); ++k)
      if (g.target_mask[i * OutputGrid().size() + k])
        worst_target = std::max(worst_target,
                                std::abs(g.target[i * OutputGrid().size() + k] / sed.flux[k] - 1));
    CHECK(worst_target < 1e-6);
    Eigen::MatrixXd x(1, 3), flux;
    x << it->teff, it->logg, it->feh;
    gen.Generate(x, &flux, nullptr);
    Eigen::RowVectorXd mine;
    try {
      mine = LibraryInput(*it);
    } catch (const Error&) {
      continue;  // the star's own 4000-7000 A part has gaps: nothing to compare with
    }
    double diff = 0;
    for (int k = 0; k < InputGrid().size(); ++k) {
      worst_input =
          std::max(worst_input, std::abs(g.input[i * InputGrid().size() + k] / flux(0, k) - 1));
      diff += std::pow(flux(0, k) - mine(k), 2);
    }
    CHECK(worst_input < 1e-6);  // the grid stores the GPR's inputs (float precision)
    rms.push_back(std::sqrt(diff / InputGrid().size()));
    ++checked;
  }
  // The generated inputs resemble the stars' own STELIB spectra (3 A FWHM against MILES's 2.5 A).
  CHECK(checked > 50);
  std::printf(
      "STELIB fine-tuning grid: %zu stars; generated vs own input RMS: median %.4f, max %.4f\n",
      g.size(), UpperMedian(rms), *std::max_element(rms.begin(), rms.end()));
  CHECK(UpperMedian(rms) < 0.03);
  CHECK(test_stars > 0.1 * g.size());
  CHECK(test_stars < 0.4 * g.size());
}

TEST_CASE(
    "verification grid: MILES stars cut on GPR RMSAE and colour excess, appended to another grid",
    "[gpr][grid][shared]") {
  const auto miles = test::SharedData("miles");
  CSST_REQUIRE_SHARED(miles / "paramsMILES_v9.1.txt");
  test::TempDir dir("miles-grid");
  GridOptions o;
  o.source = GridSource::kMiles;
  o.source_dir = miles.string();
  o.teff_min = 6000, o.teff_max = 6600;
  o.gpr_clean_cut = 0.05;
  o.max_ebv = 0.02;  // tighter than the paper's 0.1, so that this sample loses stars to it
  o.test_fraction = 0.5;
  const auto path = (dir / "miles.fits").string();
  MakeTrainingGrid(o, 5, path, {});
  const auto g = ReadTrainingGrid(path);
  // The same cleaning by hand: the grid holds exactly the stars with RMSAE <= 0.05 and E <= 0.02.
  GprCleanOptions co;
  co.cut = 0.05, co.seed = 5;
  const auto c = GprClean(
      LoadLibrary(LibraryKind::kMiles, miles.string(), "", LibrarySelection{6000, 6600}).stars, co);
  std::vector<std::string> expect;
  long reddened = 0;
  for (size_t j = 0; j < c.name.size(); ++j) {
    if (c.kept[j] && c.ebv[j] <= 0.02) expect.push_back(c.name[j]);
    reddened += c.kept[j] && c.ebv[j] > 0.02;
  }
  std::vector<std::string> got = g.name;
  std::sort(got.begin(), got.end());
  std::sort(expect.begin(), expect.end());
  INFO(c.name.size() << " MILES stars, " << c.n_kept() << " kept by RMSAE, " << reddened
                     << " of them cut on E(B-V)");
  CHECK(reddened > 0);
  CHECK(got == expect);
  long test = 0;
  for (auto t : g.test) test += t;
  CHECK(test > 0.3 * g.size());
  CHECK(test < 0.7 * g.size());
  // Targets: the MILES SEDs, masked outside 3540-7410 A.
  const int no = OutputGrid().size();
  auto pix = [](double lambda) {
    return static_cast<int>(std::lround(OutputGrid().PixelFromWavelength(lambda)));
  };
  for (size_t i = 0; i < g.size(); ++i) {
    CHECK(g.target_mask[i * no + pix(5556)] == 1);
    CHECK(g.target_mask[i * no + pix(3000)] == 0);
    CHECK(g.target_mask[i * no + pix(8000)] == 0);
  }
  // Appended: a grid of two stars keeps its rows and test flags; a name seen twice is an error.
  TrainingGrid two;
  for (int i = 0; i < 2; ++i) {
    two.teff.push_back(7000), two.logg.push_back(4), two.mh.push_back(0), two.alpha.push_back(0);
    two.test.push_back(static_cast<uint8_t>(i));
    two.name.push_back(i == 0 ? "x-star" : g.name[0]);
    two.input.insert(two.input.end(), InputGrid().size(), 1.0f);
    two.target.insert(two.target.end(), no, 2.0f);
    two.target_mask.insert(two.target_mask.end(), no, 1);
  }
  WriteTrainingGrid((dir / "dup.fits").string(), two, {});
  o.append = {(dir / "dup.fits").string()};
  CHECK_THROWS_WITH(MakeTrainingGrid(o, 5, (dir / "bad.fits").string(), {}),
                    Catch::Contains("is already in"));
  CHECK_FALSE(std::filesystem::exists(dir / "bad.fits"));
  two.name[1] = "y-star";
  WriteTrainingGrid((dir / "two.fits").string(), two, {});
  o.append = {(dir / "two.fits").string()};
  MakeTrainingGrid(o, 5, (dir / "both.fits").string(), {});
  const auto both = ReadTrainingGrid((dir / "both.fits").string());
  REQUIRE(both.size() == g.size() + 2);
  CHECK(both.name[g.size()] == "x-star");
  CHECK(both.test[g.size()] == 0);
  CHECK(both.test[g.size() + 1] == 1);
  CHECK(both.target[(g.size() + 1) * no + 100] == 2.0f);
}

TEST_CASE("verification grid options: clear errors", "[gpr][grid]") {
  GridOptions o;
  o.test_fraction = 1.0;  // every star a test star: only for library sources
  CHECK_THROWS_WITH(o.Validate(), Catch::Contains("grid.test_fraction must be in (0, 1)"));
  o.source = GridSource::kMiles, o.source_dir = "somewhere";
  CHECK_NOTHROW(o.Validate());
  o.max_ebv = 0.1;
  CHECK_THROWS_WITH(o.Validate(), Catch::Contains("grid.max_ebv needs grid.gpr_clean_cut > 0"));
  o.gpr_clean_cut = 0.05;
  CHECK_NOTHROW(o.Validate());
  o.max_ebv = -1;
  CHECK_THROWS_WITH(o.Validate(), Catch::Contains("grid.max_ebv must be >= 0"));
}
