// The validation layer's pieces on their own (issue #28 item 4): how many realizations run at once,
// and what validation.json, validation.fits and the SED-bias table hold, against hand-made inputs.
#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/files.h"
#include "io/fits.h"
#include "tests/test_util.h"
#include "validation/monte_carlo.h"
#include "validation/sed_bias.h"

using namespace csst;

namespace {
// A study result with known numbers: two bands, two wavelengths each, one detector.
MonteCarloResult HandMade() {
  MonteCarloResult r;
  r.realizations = 7;
  r.n_stars = 1234;
  BandSummary gu;
  gu.precision = 0.031;
  gu.bias = -0.002;
  gu.coverage = 0.66;
  gu.relative_precision = 0.012;
  gu.unit_flat_precision = 0.05;
  gu.wavelength = {3000, 3500};
  gu.precision_by_wavelength = {0.03, 0.032};
  gu.bias_by_wavelength = {-0.001, -0.003};
  gu.coverage_by_wavelength = {0.65, 0.67};
  gu.degree_count = {{2, 5}, {3, 2}};
  BandSummary gi = gu;
  gi.precision = 0.0004;
  gi.wavelength = {8000, 9000};
  gi.precision_by_wavelength = {0.0003, 0.0005};
  gi.degree_count = {{6, 7}};
  r.bands[Band::kGU] = gu;
  r.bands[Band::kGI] = gi;
  r.detector_names = {"GU1"};
  r.detector_wavelengths = {{3000, 3500}};
  r.err_mc = {{{0.1, 0.2, 0.3, 0.4}, {0.5, 0.6, 0.7, 0.8}}};  // 2 slices of 2 x 2 points
  return r;
}
}  // namespace

TEST_CASE(
    "realizations in flight: the option when set, else as many as fit 2 GB, between 1 and the "
    "threads",
    "[validation]") {
  const Instrument inst{InstrumentOptions{}};
  MonteCarloOptions mc;
  mc.in_flight = 3;
  CHECK(RealizationsInFlight(mc, 1000000, 8, inst) == 3);  // asked for: kept, whatever the memory
  mc.in_flight = 0;
  CHECK(RealizationsInFlight(mc, 1, 4, inst) == 4);          // one star: one per thread
  CHECK(RealizationsInFlight(mc, 100000000, 4, inst) == 1);  // a table beyond 2 GB: still one
  CHECK(RealizationsInFlight(mc, 10, 0, inst) == 1);         // no threads given: one
  // In between, k tables of n stars (with half again of spare capacity) stay within 2 GB, k + 1
  // would not.
  const double per_star = 1.5 * RatioTable::BytesPerStar(inst);
  for (const size_t n : {size_t{20000}, size_t{60000}, size_t{150000}}) {
    const int k = RealizationsInFlight(mc, n, 64, inst);
    INFO(n << " stars: " << k << " in flight");
    CHECK(k >= 1);
    if (k > 1) CHECK(k * per_star * static_cast<double>(n) <= 2e9);
    if (k < 64) CHECK((k + 1) * per_star * static_cast<double>(n) > 2e9);
  }
}

TEST_CASE("validation.json holds every band's figures and the shipped cube's, as given",
          "[validation]") {
  const auto r = HandMade();
  ShippedCubeSummary sc;
  sc.precision = 0.02;
  sc.bias = 0.001;
  sc.coverage = 0.7;
  sc.relative_precision = 0.011;
  sc.points = 512;
  sc.systematic = 0.0135;
  sc.systematic_for_68 = 0.0099;
  BandArray<std::optional<ShippedCubeSummary>> shipped;
  shipped[Band::kGU] = sc;
  const auto j = nlohmann::json::parse(
      MonteCarloJson(r, "configs/x.yaml", 42, "joint", shipped, R"([{"label": "all"}])"));
  CHECK(j.at("realizations") == 7);
  CHECK(j.at("n_stars") == 1234);
  CHECK(j.at("seed") == 42);
  CHECK(j.at("flat_mode") == "joint");
  CHECK(j.at("config") == "configs/x.yaml");
  CHECK(j.at("sed_bias").at(0).at("label") == "all");
  const auto& gu = j.at("bands").at("GU");
  CHECK(gu.at("precision").get<double>() == 0.031);
  CHECK(gu.at("bias").get<double>() == -0.002);
  CHECK(gu.at("coverage_1sigma").get<double>() == 0.66);
  CHECK(gu.at("relative_precision").get<double>() == 0.012);
  CHECK(gu.at("unit_flat_precision").get<double>() == 0.05);
  CHECK(gu.at("precision_by_wavelength") ==
        nlohmann::json::parse("[[3000.0, 0.03], [3500.0, 0.032]]"));
  CHECK(gu.at("flat_degree_count") == nlohmann::json::parse(R"({"2": 5, "3": 2})"));
  CHECK(gu.at("shipped_cube").at("points") == 512);
  CHECK(gu.at("shipped_cube").at("systematic_error").get<double>() == 0.0135);
  CHECK(gu.at("shipped_cube").at("systematic_for_68").get<double>() == 0.0099);
  CHECK_FALSE(j.at("bands").at("GI").contains("shipped_cube"));  // none given for GI
  CHECK(j.at("bands").at("GI").at("flat_degree_count") == nlohmann::json::parse(R"({"6": 7})"));
  CHECK_FALSE(j.at("bands").contains("GV"));
}

TEST_CASE("calibrate reads back what validation.json holds of the SYSERR calibration",
          "[validation]") {
  const auto r = HandMade();
  BandArray<std::optional<ShippedCubeSummary>> shipped;
  const BandArray<double> terms(0.021, 0.0043, 0.0067);
  for (const auto& spec : kBands) {
    shipped[spec.band] = ShippedCubeSummary{};
    shipped[spec.band]->systematic_for_68 = terms[spec.band];
  }
  const test::TempDir dir("syscal");
  const auto path = (dir / "validation.json").string();
  WriteTextAtomically(path, MonteCarloJson(r, "configs/y.yaml", 778, "joint", shipped));
  const auto c = ReadSystematicCalibration(path);
  CHECK(c.flat_mode == FlatFitMode::kJoint);
  CHECK(c.systematic_for_68[Band::kGU] == 0.021);
  CHECK(c.systematic_for_68[Band::kGV] == 0.0043);
  CHECK(c.systematic_for_68[Band::kGI] == 0.0067);
  CHECK(c.config == "configs/y.yaml");
  CHECK(c.seed == 778);
  // A file without the shipped cube's figures (GI missing) is refused, naming the file.
  shipped[Band::kGI].reset();
  WriteTextAtomically(path, MonteCarloJson(r, "configs/y.yaml", 778, "joint", shipped));
  CHECK_THROWS_WITH(ReadSystematicCalibration(path),
                    Catch::Contains(path) && Catch::Contains("systematic_for_68"));
  WriteTextAtomically(path, MonteCarloJson(r, "configs/y.yaml", 778, "sideways", {}));
  CHECK_THROWS_WITH(ReadSystematicCalibration(path), Catch::Contains("flat_mode is 'sideways'"));
}

TEST_CASE(
    "validation.fits holds the per-wavelength rows of every band and each detector's Monte Carlo "
    "sigma",
    "[validation]") {
  const test::TempDir dir("study-fits");
  const auto path = (dir / "validation.fits").string();
  const auto r = HandMade();
  WriteMonteCarloFits(path, r, 2, 9216, 9232, Provenance{});
  FitsReader f(path);
  CHECK(f.KeyLong("NREAL") == 7);
  CHECK(f.KeyLong("NSTARS") == 1234);
  f.MoveTo("PRECISION");
  const auto band = f.ReadStringColumn("BAND");
  const auto wave = f.ReadColumn("WAVELENGTH"), prec = f.ReadColumn("PRECISION");
  // Rows in band order (GU before GI), each band's in wavelength order.
  REQUIRE(band.size() == 4);
  CHECK(band == std::vector<std::string>{"GU", "GU", "GI", "GI"});
  CHECK(wave == std::vector<double>{3000, 3500, 8000, 9000});
  CHECK(prec == std::vector<double>{0.03, 0.032, 0.0003, 0.0005});
  f.MoveTo("ERR_MC_GU1");
  CHECK(f.ImageDims() == std::vector<long>{2, 2, 2});
  const auto err = f.ReadImage();
  REQUIRE(err.size() == 8);
  for (size_t i = 0; i < 8; ++i)
    CHECK(err[i] == Approx(0.1 * static_cast<double>(i + 1)).epsilon(1e-6));
  // the sample points' centres: half a step in from the edge, steps of (n - 1) / 2
  CHECK(f.KeyDouble("CDELT1") == Approx(9215.0 / 2));
  CHECK(f.KeyDouble("CRVAL2") == Approx(0.25 * 9231.0));
}

TEST_CASE("the SED-bias table: an empty row is null in JSON and the text names every band",
          "[validation]") {
  SedBiasRow all, empty;
  all.label = "all";
  all.n = 10;
  all.bias = {0.01, -0.002, 0.003};
  empty.label = "SNR >= 80";
  empty.snr_min = 80;
  empty.bias = {std::numeric_limits<double>::quiet_NaN(), std::numeric_limits<double>::quiet_NaN(),
                std::numeric_limits<double>::quiet_NaN()};
  const auto j = nlohmann::json::parse(SedBiasJson({all, empty}));
  REQUIRE(j.size() == 2);
  CHECK(j.at(0).at("GU").get<double>() == 0.01);
  CHECK(j.at(0).at("GV").get<double>() == -0.002);
  CHECK(j.at(0).at("n") == 10);
  CHECK(j.at(1).at("GI").is_null());
  CHECK(j.at(1).at("snr_min").get<double>() == 80);
  const std::string text = SedBiasText({all});
  for (const char* name : {"GU", "GV", "GI"}) CHECK(text.find(name) != std::string::npos);
  CHECK(text.find("+0.0100") != std::string::npos);
}

TEST_CASE("a study is built from one problem, which its constructor checks", "[validation]") {
  const Instrument inst{InstrumentOptions{}};
  const auto truth = TrueFlat::Draw(TrueFlatOptions{}, inst, 1);
  MonteCarloProblem p;
  p.predict = [](int, int, size_t, size_t, const std::vector<float>&, const std::vector<float>&,
                 std::vector<float>*, std::vector<float>*) {};
  CHECK_THROWS_WITH(MonteCarloStudy(p), Catch::Contains("needs its instrument"));
  p.instrument = &inst;
  p.truth = &truth;
  p.options.sample_points = 1;
  CHECK_THROWS_WITH(MonteCarloStudy(p), "config error: validate.sample_points must be >= 2");
  p.options.sample_points = 16;
  p.options.realizations = 0;
  const MonteCarloStudy study(p);
  CHECK(study.problem().options.sample_points == 16);
  // no realizations, no stars: an empty study, not an error
  const auto r = study.Run();
  CHECK(r.realizations == 0);
  CHECK(r.n_stars == 0);
  for (const auto& b : r.bands) CHECK_FALSE(b.has_value());
  p.predict = nullptr;
  CHECK_THROWS_WITH(MonteCarloStudy(p), Catch::Contains("needs its predictions"));
}
