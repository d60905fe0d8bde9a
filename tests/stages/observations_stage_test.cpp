// Observations from outside (observations.source: files): rows matched to the ingested stars by
// obsid, else by position, with rejects and their reasons; an observations file written by one
// run gives another run the same ratios; observations of another star set are refused.
#include "stages/observations_stage.h"

#include <cmath>
#include <fstream>

#include "core/errors.h"
#include "flatfield/compare.h"
#include "io/ingest.h"
#include "io/observations.h"
#include "stages/flat_stages.h"
#include "tests/extracted_util.h"
#include "tests/pipeline/cli_util.h"
#include "tests/test_util.h"

using namespace csst;
namespace fs = std::filesystem;

namespace {

ObservationsStageOptions StageOptions(const ObservationsOptions& o, const std::string& stars,
                                      const std::string& out) {
  ObservationsStageOptions so;
  so.observations = o;
  so.stars = stars;
  so.observations_out = out;
  return so;
}

std::string WriteConfig(const fs::path& dir, const std::string& name, int seed,
                        const std::string& extra = "") {
  const auto cfg = dir / (name + ".yaml");
  std::ofstream(cfg)
      << "random_seed: " << seed << "\noutput:\n  dir: " << (dir / name).string()
      << "\nsample:\n  n_stars: 12\nnetwork:\n  mode: paper_errors\nflatfield:\n  min_points: 3\n  "
         "order: 1\n"
      << "assemble:\n  quicklooks: false\nvalidate:\n  realizations: 2\n  report: false\n"
      << extra;
  return cfg.string();
}

void RunOk(const std::string& args) {
  const auto r = test::Cli(args);
  INFO(args << "\n" << r.out);
  REQUIRE(r.rc == 0);
}

void CheckSameRatios(const std::string& a, const std::string& b, double rel) {
  const auto ra = ReadRatios(a), rb = ReadRatios(b);
  REQUIRE(ra.size() == rb.size());
  REQUIRE(ra.size() > 0);
  for (size_t i = 0; i < ra.size(); ++i) {
    INFO("ratios row " << i);
    REQUIRE(ra[i].obsid == rb[i].obsid);
    REQUIRE(ra[i].detector == rb[i].detector);
    REQUIRE(ra[i].flag == rb[i].flag);
    CHECK(ra[i].x == rb[i].x);
    for (size_t k = 0; k < ra[i].ratio.size(); ++k) {
      if (ra[i].flag[k]) continue;
      REQUIRE(rb[i].ratio[k] == Approx(ra[i].ratio[k]).epsilon(rel));
      REQUIRE(rb[i].sigma[k] == Approx(ra[i].sigma[k]).epsilon(rel));
    }
  }
}

}  // namespace

TEST_CASE("an observations file written by one run gives another run the same ratios",
          "[stages][observations]") {
  const test::TempDir dir("obs-files");
  RunOk("run " + WriteConfig(dir, "a", 21) + " --to compare");
  const auto a_obs = (dir / "a/observations.fits").string();

  // Read as it is, through observations.source: files: the same ratios, bit for bit.
  RunOk("run " +
        WriteConfig(dir, "b", 21, "observations:\n  source: files\n  file: " + a_obs + "\n"));
  CheckSameRatios((dir / "a/ratios.fits").string(), (dir / "b/ratios.fits").string(), 0.0);
  // No truth came in: a cube, but no simulate stage and no validation.
  CHECK(fs::exists(dir / "b/flatcube/flat_GV1.fits"));
  CHECK_FALSE(fs::exists(dir / "b/true_flat.fits"));
  CHECK_FALSE(fs::exists(dir / "b/validation.json"));

  // The same spectra from an outside pipeline: no obsids (matched by position), half the exposure
  // time and half the counts: the same ratios.
  auto rows = ReadExtractedSpectra(a_obs, 4);
  REQUIRE(rows.size() == 36);
  for (auto& e : rows) {
    e.obsid = -1;
    e.exptime *= 0.5;
    for (auto& c : e.counts) c *= 0.5;
    for (auto& s : e.error) s *= 0.5;
  }
  const auto outside = (dir / "outside.fits").string();
  test::ExtractedFileOptions no_ids;
  no_ids.with_obsid = false;
  test::WriteExtracted(outside, rows, no_ids);
  RunOk("run " +
        WriteConfig(dir, "c", 21, "observations:\n  source: files\n  file: " + outside + "\n") +
        " --to compare");
  CheckSameRatios((dir / "a/ratios.fits").string(), (dir / "c/ratios.fits").string(), 1e-12);

  // (c) Observations made for another star set (same obsids, other spectra) are refused by compare.
  RunOk("run " + WriteConfig(dir, "d", 22) + " --to predict");
  CompareStageOptions co;
  co.observations = a_obs;
  co.seds = (dir / "d/seds.fits").string();
  co.stars = (dir / "d/stars.fits").string();
  co.ratios_out = (dir / "d/ratios.fits").string();
  CHECK_THROWS_WITH(RunCompareStage(co, {22, "h"}),
                    Catch::Contains(a_obs + " was made for the star set") &&
                        Catch::Contains("not for that of " + (dir / "d/stars.fits").string()));
  CHECK_FALSE(fs::exists(dir / "d/ratios.fits"));
}

TEST_CASE("outside rows are matched by obsid else by position, and every reject has its reason",
          "[stages][observations][bad-input]") {
  const test::TempDir dir("obs-match");
  RunOk("run " + WriteConfig(dir, "a", 23) + " --to simulate");
  const auto stars_path = (dir / "a/stars.fits").string();
  const auto stars = ReadPreparedStars(stars_path);
  REQUIRE(stars.size() == 12);
  const auto rows = ReadExtractedSpectra((dir / "a/observations.fits").string(), 4);
  REQUIRE(rows.size() == 36);

  std::vector<ExtractedSpectrum> in;
  in.push_back(rows[0]);  // star of rows[0], GU, by obsid
  auto by_pos = rows[4];  // the second star's GV, by position 0.5" away
  by_pos.obsid = -1;
  by_pos.dec += 0.5 / 3600.0;
  in.push_back(by_pos);
  auto unknown = rows[1];
  unknown.obsid = 999999999;
  in.push_back(unknown);
  auto nowhere = rows[2];
  nowhere.obsid = -1;
  nowhere.dec = nowhere.dec > 0 ? nowhere.dec - 1.0 : nowhere.dec + 1.0;
  in.push_back(nowhere);
  in.push_back(rows[0]);  // a second GU spectrum of the first star
  auto masked = rows[8];  // the third star's GI, every pixel masked
  for (auto& m : masked.mask) m = 16;
  in.push_back(masked);
  const auto file = (dir / "mixed.fits").string();
  test::WriteExtracted(file, in);

  ObservationsOptions o;
  o.source = ObservationsSource::kFiles;
  o.file = file;
  o.match_radius = 1.0;
  const auto out = (dir / "obs.fits").string();
  const auto res = RunObservationsStage(StageOptions(o, stars_path, out), {23, "h"});
  CHECK(res.rows == 6);
  CHECK(res.matched_by_obsid == 1);
  CHECK(res.matched_by_position == 1);
  CHECK(res.rejected_rows == 4);
  CHECK(res.stars_observed == 2);

  const auto f = ReadObservations(out, 4);
  CHECK(f.star_set == StarSetId(stars));
  REQUIRE(f.stars.size() == 2);
  CHECK(f.stars[0].obsid == rows[0].obsid);
  CHECK(f.stars[0].band[0].observed());
  CHECK_FALSE(f.stars[0].band[1].observed());
  CHECK(f.stars[1].obsid == rows[4].obsid);
  CHECK(f.stars[1].band[1].counts == rows[4].counts);
  REQUIRE(f.rejects.size() == 4 + 10);
  CHECK(f.rejects[0].source == "row 3");
  CHECK_THAT(f.rejects[0].reason,
             Catch::Contains("obsid 999999999 is not among the ingested stars"));
  CHECK(f.rejects[1].source == "row 4");
  CHECK_THAT(f.rejects[1].reason,
             Catch::Contains("no ingested star within observations.match_radius = 1.00 arcsec"));
  CHECK(f.rejects[2].source == "row 5");
  CHECK_THAT(f.rejects[2].reason, Catch::Contains("already has a GU spectrum (row 1)"));
  CHECK(f.rejects[3].source == "row 6");
  CHECK_THAT(f.rejects[3].reason, Catch::Contains("no usable pixel inside GI"));
  for (size_t i = 4; i < f.rejects.size(); ++i) {
    CHECK(f.rejects[i].source == "star");
    CHECK_THAT(f.rejects[i].reason, Catch::Contains("no spectrum in " + file));
  }

  // Two stars within the radius: ambiguous, never the nearer one by chance.
  const auto& s0 = stars.stars[0];
  double nearest = 1e30;
  for (size_t j = 1; j < stars.size(); ++j) {
    const double d2r = M_PI / 180;
    const double c = std::sin(s0.dec * d2r) * std::sin(stars.stars[j].dec * d2r) +
                     std::cos(s0.dec * d2r) * std::cos(stars.stars[j].dec * d2r) *
                         std::cos((s0.ra - stars.stars[j].ra) * d2r);
    nearest = std::min(nearest, std::acos(std::min(1.0, c)) / d2r * 3600);
  }
  auto here = rows[0];
  here.obsid = -1;
  here.ra = s0.ra;
  here.dec = s0.dec;
  test::WriteExtracted(file, {here});
  o.match_radius = nearest * 1.01;
  CHECK_THROWS_WITH(
      RunObservationsStage(StageOptions(o, stars_path, out), {23, "h"}),
      Catch::Contains(file + ": none of its 1 rows matched") && Catch::Contains("ambiguous"));
  o.match_radius = nearest * 0.5;
  CHECK(RunObservationsStage(StageOptions(o, stars_path, out), {23, "h"}).matched_by_position == 1);
}

TEST_CASE("observations.source files without a readable file is a config error at load",
          "[config][observations]") {
  const test::TempDir dir("obs-config");
  const auto none =
      test::Cli("run " + WriteConfig(dir, "a", 1, "observations:\n  source: files\n"));
  CHECK(none.rc == 2);
  CHECK_THAT(none.out, Catch::Contains("observations.source = files needs observations.file"));
  const auto missing = (dir / "missing.fits").string();
  const auto gone =
      test::Cli("run " + WriteConfig(dir, "b", 1,
                                     "observations:\n  source: files\n  file: " + missing + "\n"));
  CHECK(gone.rc == 2);
  CHECK_THAT(gone.out, Catch::Contains("observations.file = " + missing + " is not a file"));
  CHECK_FALSE(fs::exists(dir / "b/stars.fits"));  // before any stage ran
}
