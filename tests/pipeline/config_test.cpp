#include "pipeline/config.h"

#include <filesystem>
#include <fstream>

#include "core/errors.h"
#include "core/grid.h"
#include "flatfield/cube_fit.h"
#include "instrument/instrument.h"
#include "io/catalogue.h"
#include "io/observations.h"
#include "pipeline/memory_estimate.h"
#include "tests/test_util.h"

using namespace csst;

namespace {
std::string ErrorOf(const std::string& yaml, const std::vector<std::string>& sets = {}) {
  try {
    LoadConfigText(yaml, "t.yaml", sets);
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "no error";
}
}  // namespace

TEST_CASE("bad configs are rejected with messages that point at the place", "[config]") {
  CHECK(ErrorOf("flatfield:\n  order: -1\n") ==
        "config error: flatfield.order = -1 violates 0 <= order <= 20 (t.yaml:2:10)");
  CHECK(ErrorOf("flatfield:\n  ordr: 2\n") ==
        "config error: unknown key flatfield.ordr (did you mean flatfield.order?) (t.yaml:2:3)");
  CHECK(ErrorOf("flatfield:\n  order: two\n") ==
        "config error: flatfield.order = two is not an integer (t.yaml:2:10)");
  CHECK(ErrorOf("flatfield:\n  loss: l1\n") ==
        "config error: flatfield.loss = l1 violates loss in {none, huber, cauchy} (t.yaml:2:9)");
  CHECK(ErrorOf("threads: -1\n") ==
        "config error: threads = -1 violates 0 <= threads <= 1024 (t.yaml:1:10)");
  CHECK(ErrorOf("flatfield: 3\n") ==
        "config error: flatfield must be a mapping of keys (t.yaml:1:1)");
  CHECK(ErrorOf("sample:\n  teff_min: .nan\n") ==
        "config error: sample.teff_min = .nan is not a finite number (t.yaml:2:13)");
  CHECK(ErrorOf("sample:\n  teff_min: 9000\n  teff_max: 8000\n") ==
        "config error: sample.teff_min = 9000 violates teff_min < sample.teff_max = 8000 "
        "(t.yaml:2:3)");
  CHECK(ErrorOf("sample:\n  n_stars: [1, 2]\n") ==
        "config error: sample.n_stars = [sequence] is not an integer (t.yaml:2:12)");
  CHECK(ErrorOf("- a\n- b\n") ==
        "config error: t.yaml must hold a mapping of keys at the top level");
  CHECK(ErrorOf("output:\n  dir: ''\n") ==
        "config error: output.dir = '' violates non-empty (t.yaml:2:8)");
  CHECK(ErrorOf("log_level: loud\n") ==
        "config error: log_level = loud violates log_level in {debug, info, warn, error} "
        "(t.yaml:1:12)");
  CHECK(ErrorOf("sample:\n  n_stars: 10\n   bad: [\n").rfind("config error: t.yaml:", 0) == 0);
  CHECK(ErrorOf("nonsense: 1\n") == "config error: unknown key nonsense (t.yaml:1:1)");
  // Choices held as enums, each parsed here once.
  CHECK(ErrorOf("network:\n  device: gpu\n") ==
        "config error: network.device = gpu violates device in {auto, cpu, cuda} (t.yaml:2:11)");
  CHECK(ErrorOf("network:\n  engine: onnx\n") ==
        "config error: network.engine = onnx violates engine in {auto, folded, libtorch} "
        "(t.yaml:2:11)");
  CHECK(ErrorOf("train:\n  device: tpu\n") ==
        "config error: train.device = tpu violates device in {auto, cpu, cuda} (t.yaml:2:11)");
  CHECK(ErrorOf("train:\n  loss: mse\n") ==
        "config error: train.loss = mse violates loss in {nll, beta_nll, mse_warmup} (t.yaml:2:9)");
  CHECK(
      ErrorOf("train:\n  schedule: step\n") ==
      "config error: train.schedule = step violates schedule in {constant, cosine} (t.yaml:2:13)");
}

TEST_CASE("device and engine and training choices parse into their enums", "[config]") {
  const auto d = LoadConfigText("", "t.yaml");
  CHECK(d.network.predictor.device == ComputeDevice::kAuto);
  CHECK(d.network.predictor.engine == InferenceEngine::kAuto);
  CHECK(d.train.loss == TrainLoss::kNll);
  CHECK(d.train.schedule == LrSchedule::kConstant);
  const auto c = LoadConfigText(
      "threads: 3\nnetwork:\n  device: cpu\n  engine: libtorch\ntrain:\n  device: cuda\n  loss: "
      "beta_nll\n"
      "  schedule: cosine\n",
      "t.yaml");
  CHECK(c.network.predictor.device == ComputeDevice::kCpu);
  CHECK(c.network.predictor.engine == InferenceEngine::kLibTorch);
  CHECK(c.network.predictor.threads == 3);  // the run's threads
  CHECK(c.train.device == ComputeDevice::kCuda);
  CHECK(c.train.loss == TrainLoss::kBetaNll);
  CHECK(c.train.schedule == LrSchedule::kCosine);
}

TEST_CASE("set overrides are validated the same way", "[config]") {
  CHECK(ErrorOf("", {"flatfield.order=-3"}) ==
        "config error: flatfield.order = -3 violates 0 <= order <= 20 (--set flatfield.order=-3)");
  CHECK(ErrorOf("", {"flatfield.order"}) ==
        "config error: --set flatfield.order is not of the form key=value");
  CHECK(ErrorOf("", {"flatfield.nope=1"}) ==
        "config error: unknown key flatfield.nope (did you mean flatfield.mode?) (--set "
        "flatfield.nope=1)");
  const auto c = LoadConfigText("flatfield:\n  order: 2\n", "t.yaml",
                                {"flatfield.order=3", "sample.n_stars=50"});
  CHECK(c.flatfield.order == 3);
  CHECK(c.sample.population.n_stars == 50);
  CHECK(c.locations.at("flatfield.order") == "--set flatfield.order=3");
}

TEST_CASE("the flat degree's selection keys parse and are range-checked", "[config]") {
  const auto c = LoadConfigText(
      "flatfield:\n  order_select: kfold\n  order_max: 5\n  order_folds: 4\n", "t.yaml");
  CHECK(c.flatfield.order_select == FlatOrderSelect::kKFold);
  CHECK(c.flatfield.order_max == 5);
  CHECK(c.flatfield.order_folds == 4);
  CHECK(LoadConfigText("", "t.yaml").flatfield.order_select == FlatOrderSelect::kFixed);
  CHECK(ErrorOf("", {"flatfield.order_max=21"}) ==
        "config error: flatfield.order_max = 21 violates 0 <= order_max <= 20 (--set "
        "flatfield.order_max=21)");
  CHECK(ErrorOf("", {"flatfield.order_folds=1"}) ==
        "config error: flatfield.order_folds = 1 violates 2 <= order_folds <= 50 (--set "
        "flatfield.order_folds=1)");
  CHECK(ErrorOf("", {"flatfield.order_select=loo"})
            .rfind("config error: flatfield.order_select = loo", 0) == 0);
}

TEST_CASE("a missing config file is a config error naming it", "[config]") {
  CHECK_THROWS_WITH(LoadConfig("no/such.yaml"),
                    "config error: cannot read no/such.yaml: no such file or not readable");
}

TEST_CASE("every shipped config loads and validates", "[config]") {
  // Configs name paths relative to the repository root, where `make run` runs them.
  const auto here = std::filesystem::current_path();
  std::filesystem::current_path(CSST_SOURCE_DIR);
  int n = 0;
  for (const auto& e : std::filesystem::directory_iterator("configs")) {
    if (e.path().extension() != ".yaml") continue;
    INFO(e.path());
    if (e.path().filename() == "real_lamost.yaml")
      continue;  // its own test below: it reads ../shared
    CHECK_NOTHROW(LoadConfig(e.path().string()));
    ++n;
  }
  std::filesystem::current_path(here);
  CHECK(n >= 7);
}

TEST_CASE(
    "configs/real_lamost.yaml loads and validates where ../shared/data/lamost-dr10 is present",
    "[config][shared]") {
  CSST_REQUIRE_SHARED(test::SharedData("lamost-dr10"));
  const auto here = std::filesystem::current_path();
  std::filesystem::current_path(CSST_SOURCE_DIR);
  CHECK_NOTHROW(LoadConfig("configs/real_lamost.yaml"));
  std::filesystem::current_path(here);
}

TEST_CASE("section text changes only with that section", "[config]") {
  const auto a = LoadConfigText("", "t.yaml");
  const auto b = LoadConfigText("flatfield:\n  order: 3\n", "t.yaml");
  CHECK(SectionText(a, "sample") == SectionText(b, "sample"));
  CHECK(SectionText(a, "flatfield") != SectionText(b, "flatfield"));
  CHECK(SectionText(a, "random_seed") == "random_seed=42\n");
}

TEST_CASE("grid.append takes a list of paths", "[config]") {
  CHECK(LoadConfigText("grid:\n  append: [a.fits, b.fits]\n", "t.yaml").grid.options.append ==
        std::vector<std::string>{"a.fits", "b.fits"});
  CHECK_THROWS_WITH(LoadConfigText("grid:\n  append: a.fits\n", "t.yaml"),
                    Catch::Contains("grid.append") && Catch::Contains("is not a list of paths"));
  CHECK_THROWS_WITH(LoadConfigText("grid:\n  append: [[x]]\n", "t.yaml"),
                    Catch::Contains("is not a path"));
}

TEST_CASE("real spectra are read by the real-star weights unless network.model is set",
          "[config]") {
  const test::TempDir dir("model-default");
  {
    std::ofstream csv(dir / "c.csv");
    csv << "obsid,designation,ra,dec,teff,logg,feh,alpha,phot_g_mean_mag,snrg,snrr,rv,ebv\n";
  }
  const std::string files = "ingest:\n  source: files\n  catalogue: " + (dir / "c.csv").string() +
                            "\n  spectra_dir: " + dir.string() + "\n";
  const std::string shipped = std::string(CSST_SOURCE_DIR) + "/network/models/";
  // From a working directory outside the source tree, the shipped models resolve into it.
  const auto here = std::filesystem::current_path();
  std::filesystem::current_path(dir.path());
  CHECK(LoadConfigText("", "t.yaml").network.model ==
        shipped + "uara_default");  // a simulated sample
  CHECK(LoadConfigText(files, "t.yaml").network.model == shipped + "uara_real");
  CHECK(LoadConfigText(files + "network:\n  model: my/model\n", "t.yaml").network.model ==
        "my/model");
  CHECK(LoadConfigText(files, "t.yaml", {"network.model=network/models/uara_default"})
            .network.model == shipped + "uara_default");
  std::filesystem::current_path(here);
  CHECK(std::filesystem::exists(shipped + "uara_real.pt"));
  CHECK(std::filesystem::exists(shipped + "uara_real.json"));
}

// Issue #29: each rule is a row; removing its guard makes its row fail.
TEST_CASE("config rules: one document, decimal integers in range, near keys named, sizes that fit",
          "[config]") {
  const struct {
    std::string yaml;
    std::vector<std::string> sets;
    std::string error;
  } rows[] = {
      // a second YAML document would be ignored silently
      {"flatfield:\n  order: 2\n---\nflatfield:\n  order: 5\n",
       {},
       "config error: t.yaml holds 2 YAML documents (the second starts at line 4); a configuration "
       "is one document: "
       "remove the '---' line and merge them"},
      // misspelt keys and sections get the nearest valid name
      {"flatfeild:\n  order: 2\n",
       {},
       "config error: unknown key flatfeild (did you mean flatfield?) (t.yaml:1:1)"},
      {"flatfield:\n  Order: 2\n",
       {},
       "config error: unknown key flatfield.Order (did you mean flatfield.order?) (t.yaml:2:3)"},
      {"",
       {"flatfield.ordr=3"},
       "config error: unknown key flatfield.ordr (did you mean flatfield.order?) (--set "
       "flatfield.ordr=3)"},
      // one key given in a flow map and as a dotted key is given twice
      {"flatfield: {order: 2}\nflatfield.order: 5\n",
       {},
       "config error: flatfield.order is given twice (t.yaml:1:13 and t.yaml:2:1)"},
      // merge keys are refused by name
      {"flatfield:\n  <<: {order: 2}\n",
       {},
       "config error: YAML merge keys (<<) are not supported: write the keys out (t.yaml:2:3)"},
      // integers: decimal only, out of range said so
      {"validate:\n  realizations: 060\n",
       {},
       "config error: validate.realizations = 060 has a leading 0 (YAML would read it as octal); "
       "write the decimal "
       "number without it (t.yaml:2:17)"},
      {"validate:\n  realizations: 0x10\n",
       {},
       "config error: validate.realizations = 0x10 is not an integer (t.yaml:2:17)"},
      {"validate:\n  realizations: 99999999999999999999\n",
       {},
       "config error: validate.realizations = 99999999999999999999 is out of range: 0 <= "
       "realizations <= 100000 "
       "(t.yaml:2:17)"},
      {"flatfield:\n  order: 21\n",
       {},
       "config error: flatfield.order = 21 violates 0 <= order <= 20 (t.yaml:2:10)"},
  };
  for (const auto& r : rows) {
    INFO(r.yaml);
    CHECK(ErrorOf(r.yaml, r.sets) == r.error);
  }
  // a tab that indents a line is named as the cause
  CHECK(ErrorOf("flatfield:\n\torder: 2\n").find("indented with a tab: YAML allows spaces only") !=
        std::string::npos);
  // integers still read as before
  CHECK(LoadConfigText("validate:\n  realizations: +7\n", "t.yaml").validate.realizations == 7);
}

TEST_CASE("sizes whose memory would not fit are refused before anything runs, with the figure",
          "[config]") {
  // Each of these ended in an out-of-memory kill or std::bad_alloc on a 24 GB machine (issue #29).
  for (const std::string key : {"validate.sample_points=1000", "assemble.cube_binning=1"}) {
    INFO(key);
    const std::string e = ErrorOf("", {key});
    const std::string name = key.substr(0, key.find('='));
    CHECK(e.rfind("config error: " + name + " would need about ", 0) == 0);
    CHECK(e.find("of memory (--set " + key + ")") != std::string::npos);
  }
  // the defaults and the largest degree fit
  CHECK(ErrorOf("") == "no error");
  // Stages whose memory grows with the stars are checked before they start, with the stars of
  // stars.fits (issue #31). The spectra stream, so what grows is small: per star its record (with
  // 32 characters of designation and 3 numbers) and its placement; validate keeps both twice, the R
  // = 200 SED (574 x 8) and realization 0's predictions (574 x 8), and per realization in flight
  // its fit table with half again of spare capacity: 20 bytes a point, at most one per output pixel
  // inside each band's limits (counted here), and 24 bytes a row, a row per band.
  const auto c = LoadConfigText("threads: 2\n", "t.yaml", {});
  const Instrument inst(c.simulation.instrument);
  int band_pixels = 0;
  for (int b = 0; b < 3; ++b)
    for (int k = 0; k < 574; ++k)
      band_pixels +=
          OutputGrid().Centre(k) >= inst.band(b).lo && OutputGrid().Centre(k) <= inst.band(b).hi;
  CHECK(band_pixels > 560);
  CHECK(band_pixels < 620);  // the three bands overlap a little
  const double table = 1.5 * (band_pixels * 20.0 + 72.0);
  CHECK(table == Approx(1.5 * RatioTable::BytesPerStar(inst)).epsilon(0.02));
  const double record = sizeof(StarRecord) + 56.0, placement = sizeof(StarObservation);
  const double kept = 2 * record + 2 * placement + 574 * 16.0;
  // Two realizations in flight (one per thread) while their tables fit in 2 GB, then one.
  CHECK(StageMemory(c, "validate", 20000) == Approx(20000 * (kept + 2 * table)).epsilon(0.02));
  CHECK(StageMemory(c, "validate", 100000) == Approx(100000 * (kept + table)).epsilon(0.02));
  CHECK(StageMemory(c, "validate", 100000) < 3e9);  // 100 000 stars within 4 GB (issue #31 item 2)
  CHECK(StageMemory(c, "simulate", 1000) == Approx(1000 * (record + placement)));
  CHECK(StageMemory(c, "fit", 1000) == 0);
  CHECK_NOTHROW(CheckStageMemory(c, "validate", 1000, 1e9));
  CHECK_THROWS_WITH(CheckStageMemory(c, "validate", 200000, 1e9),
                    Catch::StartsWith("stage validate: 200000 stars would need about " +
                                      FormatBytes(StageMemory(c, "validate", 200000))));
  // Set by hand, or batched on a GPU (a chunk of 16), more realizations are in flight.
  const auto four =
      LoadConfigText("threads: 2\nvalidate:\n  realizations_in_flight: 4\n", "t.yaml", {});
  CHECK(StageMemory(four, "validate", 100000) == Approx(100000 * (kept + 4 * table)).epsilon(0.02));
  const auto g = LoadConfigText("threads: 2\nvalidate:\n  batch_realizations: on\n", "t.yaml", {});
  CHECK(StageMemory(g, "validate", 1000) == Approx(1000 * (kept + 16 * table)).epsilon(0.02));
  CHECK(ErrorOf("flatfield:\n  order: 12\n") == "no error");
}
