// Real data in: LAMOST files and catalogues from elsewhere (ingest.source: files) go through
// ingest -> predict -> truth -> simulate -> fit -> assemble -> validate without the sample stage.
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/files.h"
#include "core/grid.h"
#include "io/fits.h"
#include "io/ingest.h"
#include "io/seds.h"
#include "tests/pipeline/cli_util.h"
#include "tests/test_util.h"

using namespace csst;
using test::Cli;
namespace fs = std::filesystem;
using nlohmann::json;

namespace {
std::string WriteFile(const fs::path& p, const std::string& text) {
  std::ofstream(p) << text;
  return p.string();
}
const char* kSmallRun =
    "assemble:\n  quicklooks: false\n  axe_binning: 512\nvalidate:\n  realizations: 2\n  "
    "sample_points: 4\n"
    "  report: false\nflatfield:\n  min_points: 6\n";  // 30 stars give up to ~10 points per slice
}  // namespace

TEST_CASE(
    "LAMOST files from another run, read under another seed: no sample stage, the same SEDs, a "
    "cube and a study",
    "[real-data]") {
  const test::TempDir dir("files-mode");
  // A sample run makes a catalogue and LAMOST files and predicts their SEDs (the shipped network).
  const auto made =
      WriteFile(dir / "made.yaml", "random_seed: 5\noutput:\n  dir: " + (dir / "made").string() +
                                       "\nsample:\n  n_stars: 30\n");
  auto r = Cli("run " + made + " --to predict");
  INFO(r.out);
  REQUIRE(r.rc == 0);
  // The user copies them elsewhere and runs on them as real data, under another seed, naming the
  // network of the sample run (real spectra would otherwise be read by the real-star weights).
  fs::create_directories(dir / "data");
  fs::copy(dir / "made/lamost", dir / "data/lamost", fs::copy_options::recursive);
  fs::copy(dir / "made/catalogue.fits", dir / "data/catalogue.fits");
  const auto files_yaml = [&](const std::string& out) {
    return "random_seed: 6\noutput:\n  dir: " + (dir / out).string() +
           "\ningest:\n  source: files\n  catalogue: " + (dir / "data/catalogue.fits").string() +
           "\n  spectra_dir: " + (dir / "data/lamost").string() + "\n" + kSmallRun;
  };
  const auto files = WriteFile(
      dir / "files.yaml", files_yaml("files") + "network:\n  model: network/models/uara_default\n");
  r = Cli("run " + files);
  INFO(r.out);
  REQUIRE(r.rc == 0);
  CHECK(r.out.find("network/models/uara_default (3 member(s))") != std::string::npos);
  CHECK(r.out.find("stage sample") == std::string::npos);
  CHECK(r.out.find("stage truth: start") != std::string::npos);
  CHECK_FALSE(fs::exists(dir / "files/catalogue.fits"));
  CHECK_FALSE(fs::exists(dir / "files/lamost"));
  // The same stars, the same spectra, the same network: the same SEDs, whatever the seed.
  const auto a = ReadSeds((dir / "made/seds.fits").string()),
             b = ReadSeds((dir / "files/seds.fits").string());
  REQUIRE(a.obsid == b.obsid);
  REQUIRE(a.mu.size() == b.mu.size());
  double worst = 0;
  for (size_t i = 0; i < a.mu.size(); ++i)
    worst = std::max(worst, std::abs(double(a.mu[i]) - b.mu[i]));
  CHECK(worst == 0.0);
  // truth.fits holds those SEDs (truth_sed: prediction) and each star's identity.
  FitsReader t((dir / "files/truth.fits").string());
  t.MoveTo("TRUTH");
  const auto sed = t.ReadColumn("SED");
  REQUIRE(sed.size() == b.mu.size());
  for (size_t i = 0; i < sed.size(); i += 97) CHECK(sed[i] == Approx(b.mu[i]).epsilon(1e-6));
  CHECK(t.ReadStringColumn("SPECHASH") ==
        ReadPreparedStars((dir / "files/stars.fits").string()).spec_hash);
  // A cube and a study.
  CHECK(fs::exists(dir / "files/flatcube/flat_GV1.fits"));
  const auto v = json::parse(ReadText(dir / "files/validation.json"));
  for (const char* band : {"GU", "GV", "GI"}) {
    INFO(band);
    CHECK(v.at("bands").at(band).at("precision").get<double>() > 0);
  }
  // A second run does no work; the G-based flux scale was used (the catalogue has G).
  CHECK(Cli("run " + files).out.find("0 stage(s) run") != std::string::npos);
  // Without network.model the same files are read by the real-star weights: other SEDs.
  const auto real = WriteFile(dir / "real.yaml", files_yaml("real"));
  const auto rr = Cli("run " + real + " --to predict");
  INFO(rr.out);
  REQUIRE(rr.rc == 0);
  CHECK(rr.out.find("network/models/uara_real (3 member(s))") != std::string::npos);
  const auto c = ReadSeds((dir / "real/seds.fits").string());
  REQUIRE(c.mu.size() == b.mu.size());
  double moved = 0;
  for (size_t i = 0; i < c.mu.size(); ++i)
    moved = std::max(moved, std::abs(double(c.mu[i]) - b.mu[i]) / b.mu[i]);
  CHECK(moved > 0.01);
  FitsReader s((dir / "files/stars.fits").string());
  s.MoveTo("STARS");
  for (const auto& src : s.ReadStringColumn("FLUXSRC")) CHECK(src == "G");
}

TEST_CASE(
    "catalogues as they come: a missing column fails before any stage, naming the column and the "
    "key",
    "[real-data]") {
  const test::TempDir dir("files-columns");
  const auto cat = WriteFile(dir / "cat.csv", "obsid,teff,snrg\n1,5800,30\n");
  fs::create_directories(dir / "spectra");
  auto config = [&](const std::string& name, const std::string& extra) {
    return WriteFile(dir / (name + ".yaml"), "output:\n  dir: " + (dir / name).string() +
                                                 "\ningest:\n  source: files\n  catalogue: " + cat +
                                                 "\n  spectra_dir: " + (dir / "spectra").string() +
                                                 "\n" + extra);
  };
  // The default G cut needs G; disabled, it needs nothing.
  auto r = Cli("run " + config("g", ""));
  CHECK(r.rc == 2);
  CHECK(r.out.find("config error: ingest.catalogue = " + cat +
                   " has no column 'phot_g_mean_mag', which ingest.g_min = 14 "
                   "needs (set ingest.g_min: 0 to run without a G cut") != std::string::npos);
  r = Cli("config " + config("nog", "  g_min: 0\n"));
  CHECK(r.rc == 0);
  r = Cli("run " + config("synth", "  g_min: 0\nsimulation:\n  truth_sed: synthesizer\n"));
  CHECK(r.rc == 2);
  CHECK(r.out.find("has no column 'logg', which simulation.truth_sed = synthesizer needs") !=
        std::string::npos);
  r = Cli("run " + config("red", "  g_min: 0\nsimulation:\n  reddening: true\n"));
  CHECK(r.rc == 2);
  CHECK(r.out.find("has no column 'ebv', which simulation.reddening = true needs") !=
        std::string::npos);
  r = Cli("run " + config("pe", "  g_min: 0\nnetwork:\n  mode: paper_errors\n"));
  CHECK(r.rc == 2);
  CHECK(r.out.find("network.mode = paper_errors perturbs the true SEDs") != std::string::npos);
  // None of them ran a stage.
  for (const char* name : {"g", "synth", "red", "pe"})
    CHECK_FALSE(fs::exists(dir / name / "manifest.json"));
}

TEST_CASE(
    "real LAMOST DR10 files with a catalogue from their headers and labels: ingest to cube, "
    "rejects with reasons",
    "[real-data][shared]") {
  const auto data = test::SharedData("lamost-dr10");
  CSST_REQUIRE_SHARED(data);
  const test::TempDir dir("real-dr10");
  // The shipped config, pointed at this checkout's shared data and a temp output.
  std::string yaml = ReadText(fs::path(CSST_SOURCE_DIR) / "configs/real_lamost.yaml");
  auto replace = [&](const std::string& from, const std::string& to) {
    const auto at = yaml.find(from);
    REQUIRE(at != std::string::npos);
    yaml.replace(at, from.size(), to);
  };
  replace("dir: out/real_lamost", "dir: " + (dir / "out").string());
  replace("../shared/data/lamost-dr10/pylasp_labels.csv", (data / "pylasp_labels.csv").string());
  replace("spectra_dir: ../shared/data/lamost-dr10", "spectra_dir: " + data.string());
  replace("realizations: 10", "realizations: 2");
  const auto cfg = WriteFile(dir / "real.yaml", yaml);
  const auto r = Cli("run " + cfg);
  INFO(r.out);
  REQUIRE(r.rc == 0);
  CHECK(r.out.find("stage sample") == std::string::npos);
  CHECK(r.out.find("their flux scale (5526-5586 A) comes from the LAMOST spectrum") !=
        std::string::npos);
  CHECK(r.out.find("E(B-V) = 0 assumed") != std::string::npos);
  // 17 files; the SNR cut (10) rejects the three with SNR_G below it, each with its value.
  FitsReader s((dir / "out/stars.fits").string());
  s.MoveTo("STARS");
  const long kept = s.NumRows();
  for (const auto& src : s.ReadStringColumn("FLUXSRC")) CHECK(src == "spectrum");
  CHECK(s.KeyString("EBVSRC") == "none: 0 assumed");
  s.MoveTo("REJECTS");
  const auto reasons = s.ReadStringColumn("REASON");
  CHECK(kept + static_cast<long>(reasons.size()) == 17);
  CHECK(kept == 14);
  for (const auto& why : reasons) {
    INFO(why);
    CHECK(why.rfind("snr_g ", 0) == 0);
    CHECK(why.find("<= 10.0") != std::string::npos);
  }
  CHECK(fs::exists(dir / "out/flatcube/flat_GI1.fits"));
  CHECK(fs::exists(dir / "out/validation.json"));
}

TEST_CASE("the real LAMOST DR7 file (image layout) goes through ingest, predict, simulate and fit",
          "[real-data][shared]") {
  const auto data = test::SharedData("lamost");
  CSST_REQUIRE_SHARED(data);
  const test::TempDir dir("real-dr7");
  const auto cfg = WriteFile(
      dir / "dr7.yaml",
      "random_seed: 3\noutput:\n  dir: " + (dir / "out").string() +
          "\ningest:\n  source: files\n  catalogue: \"\"\n  spectra_dir: " + data.string() +
          "\n  snr_min: 0\n  g_min: 0\n  teff_min: 0\n"
          "flatfield:\n  order: 0\n  min_points: 1\n");
  const auto r = Cli("run " + cfg + " --to fit");
  INFO(r.out);
  REQUIRE(r.rc == 0);
  const auto stars = ReadPreparedStars((dir / "out/stars.fits").string());
  REQUIRE(stars.size() == 1);
  CHECK(stars.stars[0].obsid > 0);
  CHECK(fs::exists(dir / "out/flat_coeffs.fits"));
}

TEST_CASE("predict lists unusable files with their reason and predicts the rest", "[real-data]") {
  const test::TempDir dir("predict-batch");
  const auto made =
      WriteFile(dir / "made.yaml", "random_seed: 5\noutput:\n  dir: " + (dir / "made").string() +
                                       "\nsample:\n  n_stars: 3\n");
  REQUIRE(Cli("run " + made + " --to sample").rc == 0);
  std::vector<std::string> good;
  for (const auto& e : fs::directory_iterator(dir / "made/lamost"))
    good.push_back(e.path().string());
  std::sort(good.begin(), good.end());
  const auto junk = WriteFile(dir / "junk.fits", "not a FITS file");
  const std::string model = std::string(CSST_SOURCE_DIR) + "/network/models/uara_default";
  const auto r = Cli("predict --model " + model + " --out " + (dir / "p.fits").string() + " " +
                     good[0] + " " + junk + " " + good[1]);
  INFO(r.out);
  CHECK(r.rc == 1);
  CHECK(r.out.find("rejected: " + junk) != std::string::npos);
  FitsReader f((dir / "p.fits").string());
  f.MoveTo("SEDS");
  CHECK(f.NumRows() == 2);
  f.MoveTo("REJECTS");
  CHECK(f.ReadStringColumn("FILE") == std::vector<std::string>{junk});
  // One SEDS writer (issue #30 item 8): the stage's layout and keys, plus FILE and DOMAIN per star.
  const auto seds = ReadSeds((dir / "p.fits").string());
  CHECK(seds.mu.size() == 2u * OutputGrid().size());
  const auto side = nlohmann::json::parse(ReadText(model + ".json"));
  CHECK(seds.systematic[1] == Approx(side.at("systematic_error").at("GV").get<double>()));
  f.MoveTo("SEDS");
  CHECK(f.ReadStringColumn("FILE") == std::vector<std::string>{good[0], good[1]});
  // the simulated stars (SNR >= 20, 5000-9750 K) lie inside the training domain: DOMAIN empty, no
  // warning
  for (const auto& why : f.ReadStringColumn("DOMAIN"))
    CHECK(why.find_first_not_of(" ") == std::string::npos);
  CHECK(r.out.find("outside the training domain") == std::string::npos);
  // Without --model: the real-star weights, found in the source tree from any working directory.
  const auto d = Cli("predict --out " + (dir / "d.fits").string() + " " + good[0]);
  INFO(d.out);
  CHECK(d.rc == 0);
  CHECK(d.out.find("network/models/uara_real (3 member(s))") != std::string::npos);
  // Nothing usable: an error, no product.
  const auto none =
      Cli("predict --model " + model + " --out " + (dir / "q.fits").string() + " " + junk);
  CHECK(none.rc == 1);
  CHECK(none.out.find("none of the 1 file(s) is usable; nothing written") != std::string::npos);
  CHECK_FALSE(fs::exists(dir / "q.fits"));
}
