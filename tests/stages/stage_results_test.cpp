// Stage functions take Options and return a Result (stages/stage_run.h): what each Result reports,
// checked against the products the stage wrote and against the inputs' own counts.
#include <fitsio.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <functional>

#include "flatfield/compare.h"
#include "flatfield/cube_fit.h"
#include "io/ingest.h"
#include "stages/flat_stages.h"
#include "stages/predict_stage.h"
#include "tests/pipeline/cli_util.h"
#include "tests/test_util.h"

using namespace csst;
namespace fs = std::filesystem;

TEST_CASE("stage Results report counts and termination and wall time", "[stages]") {
  const test::TempDir dir("stage-results");
  const auto cfg = dir / "c.yaml";
  std::ofstream(cfg)
      << "random_seed: 31\noutput:\n  dir: " << (dir / "run").string()
      << "\nsample:\n  n_stars: 12\nnetwork:\n  mode: paper_errors\nflatfield:\n  min_points: 3\n";
  const auto r = test::Cli("run " + cfg.string() + " --to simulate");
  INFO(r.out);
  REQUIRE(r.rc == 0);
  const auto run_dir = dir / "run";
  const StageRun run{31, "test"};

  // predict with the shipped model: on the CPU by the folded engine, one SED per star.
  PredictStageOptions po;
  po.model = std::string(CSST_SOURCE_DIR) + "/network/models/uara_default";
  po.predictor.device = ComputeDevice::kCpu;
  po.predictor.threads = 1;
  po.stars = (run_dir / "stars.fits").string();
  po.seds_out = (dir / "seds.fits").string();
  const auto pr = RunPredictStage(po, run);
  CHECK(pr.stars == ReadPreparedStars(po.stars).size());
  CHECK(pr.stars == 12);
  CHECK(pr.device == "cpu");
  CHECK(pr.engine == "folded");
  CHECK(pr.spectra_per_second > 0);
  CHECK(pr.wall_seconds > 0);

  // compare: every star observed in its three bands.
  CompareStageOptions co;
  co.observations = (run_dir / "observations.fits").string();
  co.seds = po.seds_out;
  co.stars = po.stars;
  co.ratios_out = (dir / "ratios.fits").string();
  const auto cr = RunCompareStage(co, run);
  CHECK(cr.stars == 12);
  CHECK(cr.stars_observed == 12);
  CHECK(cr.spectra == ReadRatios(co.ratios_out).size());
  CHECK(cr.spectra == 36);

  // fit, joint mode: the solver's termination and iterations; slices as written.
  FitStageOptions fo;
  fo.fit.mode = FlatFitMode::kJoint;
  fo.fit.min_points = 3;
  fo.ratios = co.ratios_out;
  fo.coeffs_out = (dir / "flat_coeffs.fits").string();
  const auto fr = RunFitStage(fo, run);
  long written = 0;
  const auto cube = ReadFlatCoeffs(fo.coeffs_out);
  CHECK(cube.mode == FlatFitMode::kJoint);  // FITMODE read back into the enum
  {
    // A FITMODE, ORDERSEL or TERMINAT that is none of its enum's names is refused, naming the file
    // and the value.
    auto edited = [&](const std::string& name, const std::function<void(fitsfile*, int*)>& edit) {
      const auto bad = (dir / name).string();
      fs::copy_file(fo.coeffs_out, bad);
      int status = 0;
      fitsfile* f = nullptr;
      char extname[] = "COEFFS";
      fits_open_file(&f, bad.c_str(), READWRITE, &status);
      fits_movnam_hdu(f, BINARY_TBL, extname, 0, &status);
      edit(f, &status);
      fits_close_file(f, &status);
      REQUIRE(status == 0);
      return bad;
    };
    auto set_key = [](const char* key, const char* value) {
      return [=](fitsfile* f, int* status) {
        std::string k = key, v = value;
        fits_update_key_str(f, k.data(), v.data(), nullptr, status);
      };
    };
    CHECK_THROWS_WITH(ReadFlatCoeffs(edited("bad_mode.fits", set_key("FITMODE", "diagonal"))),
                      Catch::Contains("bad_mode.fits") && Catch::Contains("FITMODE = 'diagonal'") &&
                          Catch::Contains("expected independent or joint"));
    CHECK_THROWS_WITH(ReadFlatCoeffs(edited("bad_select.fits", set_key("ORDERSEL", "auto"))),
                      Catch::Contains("bad_select.fits") && Catch::Contains("ORDERSEL = 'auto'") &&
                          Catch::Contains("expected fixed or kfold"));
    const auto bad_term = edited("bad_term.fits", [](fitsfile* f, int* status) {
      int col = 0;
      char name[] = "TERMINAT", value[] = "DONE";
      char* cells[] = {value};
      fits_get_colnum(f, CASEINSEN, name, &col, status);
      fits_write_col_str(f, col, 2, 1, 1, cells, status);
    });
    CHECK_THROWS_WITH(ReadFlatCoeffs(bad_term),
                      Catch::Contains("bad_term.fits: COEFFS row 2 has TERMINAT 'DONE'") &&
                          Catch::Contains("CONVERGENCE, NO_CONVERGENCE"));
  }
  for (const auto& d : cube.detectors) written += static_cast<long>(d.slices.size());
  CHECK(fr.summary.slices == written);
  CHECK(written > 0);
  CHECK(fr.summary.stars == 12);
  CHECK(fr.summary.iterations > 0);
  CHECK(fr.termination == FitTermination::kConvergence);  // a well-posed 12-star problem
  CHECK(fr.wall_seconds > 0);

  // assemble, with and without the true flat.
  AssembleStageOptions ao;
  ao.assemble.quicklooks = false;
  ao.coeffs = fo.coeffs_out;
  ao.ratios = co.ratios_out;
  ao.seds = po.seds_out;
  ao.true_flat = (run_dir / "true_flat.fits").string();
  ao.dir_out = (dir / "cube").string();
  const auto ar = RunAssembleStage(ao, run);
  CHECK(ar.detectors == 12);
  CHECK(ar.slices == written);
  CHECK(ar.truth_compared);
  ao.true_flat.clear();
  ao.dir_out = (dir / "cube2").string();
  CHECK_FALSE(RunAssembleStage(ao, run).truth_compared);
  CHECK(fs::exists(dir / "cube2/flat_GV1.fits"));
}
