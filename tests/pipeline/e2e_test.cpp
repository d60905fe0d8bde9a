// End to end: a small Monte Carlo through every stage (paper_errors predictions, so the test does
// not depend on the shipped weights), the validation.json layout, and precision vs star count.
#include <sys/wait.h>

#include <array>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>

#include "core/files.h"
#include "io/fits.h"
#include "tests/test_util.h"

namespace fs = std::filesystem;
using nlohmann::json;
using namespace csst;

namespace {
int Run(const std::string& args) {
  const std::string cmd = std::string(CSST_CLI_PATH) + " " + args + " > /dev/null 2>&1";
  const int st = std::system(cmd.c_str());
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}
std::string Config(const fs::path& dir, int n_stars, int realizations) {
  const auto p = dir / ("c" + std::to_string(n_stars) + ".yaml");
  std::ofstream(p)
      << "random_seed: 7\noutput:\n  dir: " << (dir / ("out" + std::to_string(n_stars))).string()
      << "\nsample:\n  n_stars: " << n_stars << "\nnetwork:\n  mode: paper_errors\n"
      << "simulation:\n  photon_noise: false\n  constant_r: true\n  resolving_power_gu: 200\n"
      << "  resolving_power_gv: 200\n  resolving_power_gi: 200\n"
      << "flatfield:\n  min_points: 6\nassemble:\n  quicklooks: false\n  axe_binning: 512\n"
      << "validate:\n  realizations: " << realizations << "\n  sample_points: 8\n  report: true\n";
  return p.string();
}
}  // namespace

TEST_CASE("a small Monte Carlo runs end to end and writes the documented JSON", "[e2e]") {
  const auto dir = test::TempDir("e2e");
  REQUIRE(Run("run " + Config(dir, 50, 3)) == 0);
  const auto out = dir / "out50";
  const auto j = json::parse(csst::ReadText(out / "validation.json"));
  CHECK(j.at("realizations") == 3);
  CHECK(j.at("n_stars") == 50);
  CHECK(j.at("seed") == 7);
  const std::string config_path = j.at("config");
  CHECK(config_path.find("c50.yaml") != std::string::npos);
  for (const char* b : {"GU", "GV", "GI"}) {
    INFO(b);
    const auto& band = j.at("bands").at(b);
    // The fit must beat "no flat" (F = 1, which scores the true flat's own rms, 0.02 here) by far,
    // and must not be the truth itself (noise and SED errors leave a floor well above 1e-5). GU
    // with 50 stars cannot: the paper's GU SED error (0.04 per star at 6000 K) over 50 stars
    // leaves ~0.024 against the flat's 0.017 (measured), so GU is held to a looser bound.
    const double unit = band.at("unit_flat_precision");
    CHECK(unit == Approx(0.02).epsilon(0.5));
    CHECK(band.at("precision").get<double>() > 1e-5);
    CHECK(band.at("precision").get<double>() < (std::string(b) == "GU" ? 2.0 : 0.35) * unit);
    CHECK(std::abs(band.at("bias").get<double>()) < 0.02);
    CHECK(band.at("coverage_1sigma").get<double>() >= 0);
    CHECK(band.at("coverage_1sigma").get<double>() <= 1);
    CHECK(band.at("precision_by_wavelength").size() > 100);
    // every realization's flat at the fixed degree (flatfield.order 2): {"2": 3}
    CHECK(band.at("flat_degree_count") == json{{"2", 3}});
    // The cube that ships, read back through the user's reader, against the truth: like the Monte
    // Carlo's realizations, it beats F = 1 (GV, GI), and dividing out the mean over the band's
    // detectors per wavelength can only take common errors away.
    const auto& shipped = band.at("shipped_cube");
    CHECK(shipped.at("points").get<long>() > 1000);
    CHECK(shipped.at("precision").get<double>() > 1e-5);
    CHECK(shipped.at("precision").get<double>() < (std::string(b) == "GU" ? 2.0 : 0.35) * unit);
    CHECK(shipped.at("relative_precision").get<double>() <
          1.5 * shipped.at("precision").get<double>());
    CHECK(shipped.at("coverage_1sigma").get<double>() >= 0);
    // paper_errors draws every star's SED error independently: no error common to all stars.
    CHECK(shipped.at("systematic_error").get<double>() == 0);
    CHECK(shipped.at("systematic_for_68").get<double>() >= 0);
    CHECK(band.at("relative_precision").get<double>() < 1.5 * band.at("precision").get<double>());
    CHECK(band.at("precision_by_wavelength")[0].size() == 2);
  }
  for (const char* f :
       {"validation.fits", "report/index.html", "flatcube/flat_GV1.fits",
        "flatcube/flat_GV1_axe_quicklook.fits", "flatcube/CSST_MSC_SLS_FLAT_02_L1.fits"}) {
    CHECK(fs::exists(out / f));
  }
  if (std::system("command -v gnuplot > /dev/null 2>&1") == 0)
    CHECK(fs::exists(out / "report/precision_GU.png"));
  // Every FITS product passes fitsverify with no warnings and no errors.
  if (std::system("command -v fitsverify > /dev/null 2>&1") == 0) {
    for (const auto& e : fs::recursive_directory_iterator(out)) {
      if (e.path().extension() != ".fits" ||
          e.path().string().find("/lamost/") != std::string::npos)
        continue;
      INFO(e.path());
      const std::string cmd = "fitsverify " + e.path().string() +
                              " | grep -q 'Verification found 0 warning(s) and 0 error(s)'";
      CHECK(std::system(cmd.c_str()) == 0);
    }
  } else {
    WARN("SKIPPED: fitsverify is not installed");
  }
  // Units on every image and column of every product (issue #30 item 6): BUNIT on each image HDU,
  // TUNITn on each column (empty only where the quantity has none), and the flat's SCI and ERR say
  // what they are.
  long checked = 0;
  for (const auto& e : fs::recursive_directory_iterator(out)) {
    if (e.path().extension() != ".fits" || e.path().string().find("/lamost/") != std::string::npos)
      continue;
    FitsReader r(e.path().string());
    for (int h = 1; h <= r.NumHdus(); ++h) {
      r.MoveTo(h);
      INFO(e.path() << " HDU " << h);
      if (r.IsImage()) {
        CHECK(r.HasKey("BUNIT"));
      } else {
        for (long c = 1; c <= r.KeyLong("TFIELDS"); ++c)
          CHECK(r.HasKey("TUNIT" + std::to_string(c)));
      }
      ++checked;
    }
  }
  CHECK(checked > 50);
  for (const char* f : {"flat_GV1.fits", "CSST_MSC_SLS_FLAT_02_L1.fits"}) {
    FitsReader r((out / "flatcube" / f).string());
    for (const char* hdu : {"SCI", "ERR"}) {
      r.MoveTo(hdu);
      CHECK(r.KeyString("BUNIT") == "count/count");
    }
  }
  // `apply` reads both cube forms and prints the same value.
  auto apply = [&](const std::string& file) {
    const std::string cmd = std::string(CSST_CLI_PATH) + " apply --cube " +
                            (out / "flatcube" / file).string() +
                            " --x 4600 --y 4600 --wavelength 5500";
    FILE* p = ::popen(cmd.c_str(), "r");
    char buf[256] = {0};
    const bool ok = p && fgets(buf, sizeof(buf), p);
    if (p) ::pclose(p);
    double v = NAN;
    if (ok) std::sscanf(std::strstr(buf, "= ") + 2, "%lf", &v);
    return v;
  };
  const double a = apply("flat_GV1.fits"), b = apply("flat_GV1_axe_quicklook.fits");
  CHECK(a == Approx(b).margin(1e-4));
  CHECK(std::abs(a - 1) < 0.2);
}

TEST_CASE("precision improves with more stars (ideal case)", "[e2e]") {
  const auto dir = test::TempDir("e2e-scaling");
  REQUIRE(Run("run " + Config(dir, 40, 3)) == 0);
  REQUIRE(Run("run " + Config(dir, 160, 3)) == 0);
  const auto a = json::parse(csst::ReadText(dir / "out40/validation.json"));
  const auto b = json::parse(csst::ReadText(dir / "out160/validation.json"));
  for (const char* band : {"GU", "GV", "GI"}) {
    const double pa = a.at("bands").at(band).at("precision"),
                 pb = b.at("bands").at(band).at("precision");
    std::printf("%s precision: 40 stars %.2e, 160 stars %.2e\n", band, pa, pb);
    INFO(band);
    CHECK(pb < pa);
  }
}

TEST_CASE("joint fit with unknown fluxes is validated under its gauge", "[e2e][joint]") {
  // The joint fit fixes the flat only up to its gauge (mean GV flat in 5526-5586 A = 1). The true
  // flat has an overall level 1.08 and 3 % detector gains: compared without the gauge the joint fit
  // would miss by ~8 %. (Groups of detectors with separate gauges: tests/flatfield/cube_test.cpp.)
  const auto dir = test::TempDir("e2e-joint");
  auto config = [&](const std::string& name, bool joint) {
    const auto p = dir / (name + ".yaml");
    std::ofstream(p) << "random_seed: 11\noutput:\n  dir: " << (dir / name).string()
                     << "\nsample:\n  n_stars: 80\n"
                     << "network:\n  mode: paper_errors\n"
                     << "simulation:\n  photon_noise: false\n  constant_r: true\n"
                     << "  flat_level: 1.08\n  flat_detector_level_rms: 0.03\n"
                     << "compare:\n  flux_scale: " << (joint ? "unknown" : "known") << "\n"
                     << "flatfield:\n  mode: " << (joint ? "joint" : "independent")
                     << "\n  min_points: 6\n"
                     << "assemble:\n  quicklooks: false\n  axe_binning: 512\n"
                     << "validate:\n  realizations: 3\n  sample_points: 8\n  report: false\n";
    return p.string();
  };
  REQUIRE(Run("run " + config("known", false)) == 0);
  REQUIRE(Run("run " + config("joint", true)) == 0);
  const auto k = json::parse(csst::ReadText(dir / "known/validation.json"));
  const auto j = json::parse(csst::ReadText(dir / "joint/validation.json"));
  for (const char* band : {"GU", "GV", "GI"}) {
    const double pk = k.at("bands").at(band).at("precision"),
                 pj = j.at("bands").at(band).at("precision");
    const double bj = j.at("bands").at(band).at("bias");
    std::printf("%s precision: known fluxes %.2e, joint fit %.2e (bias %+.1e)\n", band, pk, pj, bj);
    INFO(band);
    // Fitting 80 star scales costs little precision; the 8 % level must not show as error or bias.
    CHECK(pj < 3 * pk + 1e-3);
    CHECK(pj < 0.02);
    CHECK(std::abs(bj) < 0.01);
  }
}

namespace {
// A copy of the shipped model `name` as dir/m.{pt,json} and a config dir/c.yaml whose train.out is
// it; returns the shipped model's path (without extension).
fs::path CopyShippedModel(const std::string& name, const fs::path& dir) {
  const fs::path src = fs::path(CSST_SOURCE_DIR) / "network/models" / name;
  fs::copy_file(src.string() + ".pt", dir / "m.pt");
  fs::copy_file(src.string() + ".json", dir / "m.json");
  std::ofstream(dir / "c.yaml") << "train:\n  out: " << (dir / "m").string() << "\n";
  return src;
}
}  // namespace

TEST_CASE("calibrate --systematic-from writes the systematic SED error into a model sidecar",
          "[e2e][err]") {
  // A copy of the shipped model; a validation.json giving per band the quadrature term for 68%.
  const auto dir = test::TempDir("calibrate-sys");
  const fs::path src = CopyShippedModel("uara_default", dir);
  // A calibration run's validation.json: per band the quadrature term for 68 %; mode "" = none.
  auto write_validation = [&](const std::string& name, int seed, const std::string& mode, double gu,
                              double gv, double gi) {
    json j = {{"config", "x.yaml"}, {"seed", seed}, {"bands", json::object()}};
    if (!mode.empty()) j["flat_mode"] = mode;
    for (const auto& [band, v] : {std::pair<const char*, double>{"GU", gu}, {"GV", gv}, {"GI", gi}})
      j["bands"][band]["shipped_cube"]["systematic_for_68"] = v;
    std::ofstream(dir / (name + ".json")) << j.dump();
  };
  auto check_term = [](const json& side, const char* key, double gu, double gv, double gi) {
    INFO(key);
    CHECK(side.at(key).at("GU").get<double>() == Approx(gu));
    CHECK(side.at(key).at("GV").get<double>() == Approx(gv));
    CHECK(side.at(key).at("GI").get<double>() == Approx(gi));
  };
  write_validation("v", 5, "independent", 0.03, 0.006, 0.008);
  REQUIRE(Run("calibrate " + (dir / "c.yaml").string() + " --systematic-from " +
              (dir / "v.json").string()) == 0);
  const auto side = json::parse(csst::ReadText(dir / "m.json"));
  check_term(side, "systematic_error", 0.03, 0.006, 0.008);
  CHECK(side.at("systematic_error_source").get<std::string>().find("seed 5") != std::string::npos);
  // The rest of the sidecar is unchanged (the sigma calibration is what predict uses).
  const auto orig = json::parse(csst::ReadText(src.string() + ".json"));
  CHECK(side.at("sigma_scale") == orig.at("sigma_scale"));
  // A file without the figures is refused, and the sidecar stays as it was.
  std::ofstream(dir / "bad.json") << R"({"bands": {"GU": {}}})";
  CHECK(Run("calibrate " + (dir / "c.yaml").string() + " --systematic-from " +
            (dir / "bad.json").string()) != 0);
  CHECK(json::parse(csst::ReadText(dir / "m.json")).at("systematic_error").at("GU").get<double>() ==
        Approx(0.03));
  // Several calibration runs (seeds): their terms combine in quadrature, sqrt(mean of squares).
  write_validation("w", 6, "independent", 0.04, 0.0, 0.008);
  REQUIRE(Run("calibrate " + (dir / "c.yaml").string() + " --systematic-from " +
              (dir / "v.json").string() + " " + (dir / "w.json").string()) == 0);
  const auto two = json::parse(csst::ReadText(dir / "m.json"));
  check_term(two, "systematic_error", std::sqrt((0.03 * 0.03 + 0.04 * 0.04) / 2),
             0.006 / std::sqrt(2.0), 0.008);
  const auto source = two.at("systematic_error_source").get<std::string>();
  CHECK(source.find("RMS over 2 calibration runs") != std::string::npos);
  CHECK(source.find("seed 5") != std::string::npos);
  CHECK(source.find("seed 6") != std::string::npos);
  // ... and leave the free-scale term as the shipped sidecar has it.
  CHECK(two.value("systematic_error_free_scale", json::object()) ==
        orig.value("systematic_error_free_scale", json::object()));
  // Joint-fit runs calibrate the free-scale term and leave the known-flux one as it was.
  write_validation("j", 7, "joint", 0.05, 0.004, 0.015);
  REQUIRE(Run("calibrate " + (dir / "c.yaml").string() + " --systematic-from " +
              (dir / "j.json").string()) == 0);
  const auto joint = json::parse(csst::ReadText(dir / "m.json"));
  check_term(joint, "systematic_error_free_scale", 0.05, 0.004, 0.015);
  CHECK(joint.at("systematic_error_free_scale_source").get<std::string>().find("seed 7") !=
        std::string::npos);
  CHECK(joint.at("systematic_error") == two.at("systematic_error"));
  // Runs of both modes at once, or without flat_mode, are refused.
  CHECK(Run("calibrate " + (dir / "c.yaml").string() + " --systematic-from " +
            (dir / "v.json").string() + " " + (dir / "j.json").string()) != 0);
  write_validation("nomode", 8, "", 0.05, 0.004, 0.015);  // no flat_mode
  CHECK(Run("calibrate " + (dir / "c.yaml").string() + " --systematic-from " +
            (dir / "nomode.json").string()) != 0);
  CHECK(json::parse(csst::ReadText(dir / "m.json")) == joint);
}

TEST_CASE(
    "calibrate --systematic-from-evaluation sets both terms from held-out real stars' common error",
    "[e2e][err]") {
  const auto dir = test::TempDir("calibrate-eval");
  CopyShippedModel("uara_real", dir);
  // Evaluation JSONs: per SNR and band the common error.
  auto write_eval = [&](const std::string& name, const std::string& grid,
                        const std::vector<std::array<double, 3>>& by_snr) {
    json rows = json::array();
    for (size_t s = 0; s < by_snr.size(); ++s)
      for (int b = 0; b < 3; ++b)
        rows.push_back({{"snr", 20.0 * (s + 1)},
                        {"band", std::array<const char*, 3>{"GU", "GV", "GI"}[b]},
                        {"common_error", by_snr[s][b]}});
    std::ofstream(dir / (name + ".json"))
        << json{{"grid", grid}, {"test_stars", 40}, {"common_error", rows}}.dump();
  };
  write_eval("miles", "miles.fits",
             {{0.02, 0.004, 0.006}, {0.04, 0.006, 0.002}});  // SNR means 0.03 / 0.005 / 0.004
  write_eval("stelib", "stelib.fits", {{0.01, 0.012, 0.003}});
  REQUIRE(Run("calibrate " + (dir / "c.yaml").string() + " --systematic-from-evaluation " +
              (dir / "miles.json").string() + " " + (dir / "stelib.json").string()) == 0);
  const auto side = json::parse(csst::ReadText(dir / "m.json"));
  const double gu = std::sqrt((0.03 * 0.03 + 0.01 * 0.01) / 2),
               gv = std::sqrt((0.005 * 0.005 + 0.012 * 0.012) / 2),
               gi = std::sqrt((0.004 * 0.004 + 0.003 * 0.003) / 2);
  for (const char* key : {"systematic_error", "systematic_error_free_scale"}) {
    INFO(key);
    CHECK(side.at(key).at("GU").get<double>() == Approx(gu));
    CHECK(side.at(key).at("GV").get<double>() == Approx(gv));
    CHECK(side.at(key).at("GI").get<double>() == Approx(gi));
  }
  const auto source = side.at("systematic_error_source").get<std::string>();
  CHECK(source.find("held-out real stars, RMS over 2 evaluation(s)") != std::string::npos);
  CHECK(source.find("grid stelib.fits") != std::string::npos);
  // A file without a band's rows is refused, naming it and the band; the sidecar stays as it was.
  std::ofstream(dir / "bad.json") << json{{"grid", "g"},
                                          {"test_stars", 3},
                                          {"common_error",
                                           {{{"snr", 20}, {"band", "GU"}, {"common_error", 0.1}}}}}
                                         .dump();
  CHECK(Run("calibrate " + (dir / "c.yaml").string() + " --systematic-from-evaluation " +
            (dir / "bad.json").string()) != 0);
  CHECK(json::parse(csst::ReadText(dir / "m.json")) == side);
  // Both kinds of source at once is a usage error.
  CHECK(Run("calibrate " + (dir / "c.yaml").string() + " --systematic-from-evaluation " +
            (dir / "miles.json").string() + " --systematic-from " +
            (dir / "miles.json").string()) == 2);
}

TEST_CASE(
    "batching the predictions of a chunk of realizations gives the same study as one call per "
    "realization",
    "[e2e]") {
  // validate.batch_realizations: on (the GPU path: one prediction call per chunk of realizations)
  // against off, on this CPU: paper_errors predictions are identical whatever the batching; the
  // network's agree to float rounding (another batch composition).
  const auto dir = test::TempDir("e2e-batch");
  const std::string cfg = Config(dir, 40, 18);  // 18 realizations: two chunks of 16
  for (const char* mode : {"paper_errors", "model"}) {
    std::map<std::string, json> bands;
    for (const char* batch : {"on", "off"}) {
      const auto out = dir / (std::string(mode) + "_" + batch);
      REQUIRE(Run("run " + cfg + " --set network.mode=" + mode +
                  " --set validate.batch_realizations=" + batch +
                  " --set output.dir=" + out.string()) == 0);
      bands[batch] = json::parse(csst::ReadText(out / "validation.json")).at("bands");
    }
    for (const char* b : {"GU", "GV", "GI"}) {
      INFO(mode << " " << b);
      const double on = bands["on"].at(b).at("precision"), off = bands["off"].at(b).at("precision");
      CHECK(on > 0);
      if (std::string(mode) == "paper_errors") {
        CHECK(on == off);
      } else {
        CHECK(on == Approx(off).epsilon(1e-4));
      }
    }
  }
}

TEST_CASE("a Monte Carlo streamed in blocks of stars gives the study of one pass over them",
          "[e2e]") {
  // Each realization reads, predicts, observes and compares star_block stars at a time, every star
  // drawing from the streams of its index in the sample: blocks of 7 of 40 stars give the same
  // study as one block, with the expected counts spilled to disk (fixed positions) and with stars
  // placed anew (fresh positions, observed block by block); the network's predictions agree to
  // float rounding.
  const auto dir = test::TempDir("e2e-blocks");
  const std::string cfg = Config(dir, 40, 3);
  for (const std::string run : {"paper_errors fixed", "paper_errors fresh", "model fixed"}) {
    INFO(run);
    const std::string mode = run.substr(0, run.find(' '));
    const bool fresh = run.find("fresh") != std::string::npos;
    const auto out = dir / (mode + (fresh ? "_fresh" : "_fixed"));
    std::map<int, std::string> text;
    for (const int block :
         {1000, 7}) {  // the second run redoes predict, simulate, compare and what follows
      REQUIRE(Run("run " + cfg + " --set network.mode=" + mode +
                  " --set simulation.photon_noise=true" +
                  " --set validate.report=false --set validate.fresh_positions=" +
                  (fresh ? "true" : "false") + " --set star_block=" + std::to_string(block) +
                  " --set output.dir=" + out.string()) == 0);
      text[block] = csst::ReadText(out / "validation.json");
    }
    if (mode == "paper_errors") {
      CHECK(text[7] == text[1000]);
    } else {
      const auto a = json::parse(text[7]).at("bands"), b = json::parse(text[1000]).at("bands");
      for (const char* band : {"GU", "GV", "GI"}) {
        INFO(band);
        const double p7 = a.at(band).at("precision"), p1000 = b.at(band).at("precision");
        CHECK(p7 > 0);
        CHECK(p7 == Approx(p1000).epsilon(1e-4));
      }
    }
  }
}
