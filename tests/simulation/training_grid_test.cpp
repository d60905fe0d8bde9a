// The built-in training grid: star i depends only on (seed, i), so a grid drawn in two pieces
// (grid.first_index, joined by grid.append) equals one drawn whole; parts left by an interrupted
// run with other options are not reused.
#include "simulation/training_grid.h"

#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>

#include "core/errors.h"
#include "core/files.h"
#include "io/training_set.h"
#include "simulation/lamost_sim.h"
#include "simulation/stellar/synthesizer.h"
#include "tests/test_util.h"

using namespace csst;
namespace fs = std::filesystem;

namespace {
// Row of each star by name.
std::map<std::string, size_t> Rows(const TrainingGrid& g) {
  std::map<std::string, size_t> r;
  for (size_t i = 0; i < g.name.size(); ++i) r[g.name[i]] = i;
  return r;
}
// Whether star `name` has the same parameters, split flag, input and target in both grids.
bool SameStar(const TrainingGrid& a, const TrainingGrid& b, const std::string& name) {
  const size_t i = Rows(a).at(name), j = Rows(b).at(name);
  const size_t ni = a.input.size() / a.size(), no = a.target.size() / a.size();
  return a.teff[i] == b.teff[j] && a.logg[i] == b.logg[j] && a.mh[i] == b.mh[j] &&
         a.alpha[i] == b.alpha[j] && a.test[i] == b.test[j] &&
         std::equal(a.input.begin() + i * ni, a.input.begin() + (i + 1) * ni,
                    b.input.begin() + j * ni) &&
         std::equal(a.target.begin() + i * no, a.target.begin() + (i + 1) * no,
                    b.target.begin() + j * no);
}
}  // namespace

TEST_CASE("built-in grid drawn in two pieces joined by grid.append equals the grid drawn whole",
          "[grid]") {
  test::TempDir dir("grid-extend");
  GridOptions o;
  o.n_stars = 5, o.chunk = 2, o.test_fraction = 0.4;
  MakeTrainingGrid(o, 11, (dir / "whole.fits").string(), {});
  o.n_stars = 3;
  MakeTrainingGrid(o, 11, (dir / "first.fits").string(), {});
  o.first_index = 3, o.n_stars = 2, o.append = {(dir / "first.fits").string()};
  MakeTrainingGrid(o, 11, (dir / "joined.fits").string(), {});

  const auto whole = ReadTrainingGrid((dir / "whole.fits").string());
  const auto joined = ReadTrainingGrid((dir / "joined.fits").string());
  REQUIRE(whole.size() == 5);
  REQUIRE(joined.size() == 5);
  CHECK(joined.name[0] == "grid-3");  // this grid's own stars first, then the appended ones
  CHECK(joined.name[2] == "grid-0");
  for (int i = 0; i < 5; ++i) {
    INFO("star grid-" << i);
    CHECK(SameStar(whole, joined, "grid-" + std::to_string(i)));
  }
  // A different seed draws other stars: the comparison can fail.
  o.append.clear();
  MakeTrainingGrid(o, 12, (dir / "other.fits").string(), {});
  const auto other = ReadTrainingGrid((dir / "other.fits").string());
  CHECK_FALSE(SameStar(whole, other, "grid-3"));
}

TEST_CASE("built-in grid: parts left with other options are drawn again, not mixed in", "[grid]") {
  test::TempDir dir("grid-parts");
  GridOptions o;
  o.n_stars = 3, o.chunk = 2, o.test_fraction = 0.4;
  const auto path = (dir / "g.fits").string();
  MakeTrainingGrid(o, 11, (dir / "ref.fits").string(), {});
  // An interrupted run with seed 12 left its first part behind.
  o.n_stars = 2;
  MakeTrainingGrid(o, 12, (dir / "seed12.fits").string(), {});
  fs::create_directories(path + ".parts");
  fs::copy_file(dir / "seed12.fits", path + ".parts/part-0.fits");
  WriteTextAtomically(path + ".parts/options.txt", "seed 12 (another run)\n");
  o.n_stars = 3;
  MakeTrainingGrid(o, 11, path, {});
  const auto ref = ReadTrainingGrid((dir / "ref.fits").string());
  const auto g = ReadTrainingGrid(path);
  REQUIRE(g.size() == 3);
  for (int i = 0; i < 3; ++i) CHECK(SameStar(ref, g, "grid-" + std::to_string(i)));
  CHECK_FALSE(fs::exists(path + ".parts"));
  // Parts from the same options are reused (the resume path): a part planted under the right key is
  // read back.
  fs::create_directories(path + ".parts");
  fs::copy_file(dir / "seed12.fits", path + ".parts/part-0.fits");
  const std::string key =
      "seed 11 first_index 0 n_stars 3 chunk 2 teff 4500 10000 logg 3 5 giants 0.20000000000000001 "
      "mh -2.5 0.5 alpha -0.25 0.5 test 0.40000000000000002 lamost_r 1500 2200 rv_sigma 40 input "
      "lamost-path\n";
  WriteTextAtomically(path + ".parts/options.txt", key);
  MakeTrainingGrid(o, 11, path, {});
  const auto reused = ReadTrainingGrid(path);
  const auto seed12 = ReadTrainingGrid((dir / "seed12.fits").string());
  CHECK(SameStar(seed12, reused, "grid-0"));
  CHECK(SameStar(ref, reused, "grid-2"));
}

TEST_CASE("grid.first_index: clear errors", "[grid]") {
  GridOptions o;
  o.first_index = -1;
  CHECK_THROWS_WITH(o.Validate(), Catch::Contains("grid.first_index must be >= 0"));
  o.first_index = 10, o.source = GridSource::kStelib, o.source_dir = "somewhere";
  CHECK_THROWS_WITH(o.Validate(),
                    Catch::Contains("grid.first_index applies to grid.source = builtin"));
}

// Issue #32: grid inputs are made as the pipeline's simulated LAMOST stars are
// (NoiselessNetworkInput: LAMOST resolution, RV, LAMOST pixels, then ingest's preparation), at a
// resolving power drawn from the LRS range.
TEST_CASE("built-in grid inputs go through the LAMOST path at the drawn resolution", "[grid]") {
  test::TempDir dir("grid-lamost");
  GridOptions o;
  o.n_stars = 2, o.chunk = 2, o.test_fraction = 0.5, o.rv_sigma = 0;
  auto grid_at = [&](double r) {
    o.lamost_r_min = o.lamost_r_max = r;
    const auto path = (dir / ("r" + std::to_string(static_cast<int>(r)) + ".fits")).string();
    MakeTrainingGrid(o, 11, path, {});
    return ReadTrainingGrid(path);
  };
  const auto g1500 = grid_at(1500), g2200 = grid_at(2200);
  const size_t ni = InputGrid().size();
  // The same star through the shared path by hand: equal to float precision.
  const stellar::SynthOptions so;
  const stellar::Synthesizer synth(so);
  StarRecord star;
  star.gmag = 15, star.snr_g = star.snr_r = 100, star.rv = 0;
  LamostSimOptions lamost;
  lamost.resolving_power = 2200, lamost.bad_pixel_fraction = 0;
  const auto by_hand =
      NoiselessNetworkInput(synth.Synthesize(stellar::StellarParams{g2200.teff[0], g2200.logg[0],
                                                                    g2200.mh[0], g2200.alpha[0]}),
                            so.resolving_power, star, lamost, "by hand");
  double worst = 0;
  for (size_t k = 0; k < ni; ++k)
    worst = std::max(worst, static_cast<double>(std::abs(g2200.input[k] - by_hand.flux[k])));
  CHECK(worst < 1e-6);
  // A lower resolving power smooths the lines: less variance about the continuum, star by star.
  for (size_t i = 0; i < 2; ++i) {
    double v1500 = 0, v2200 = 0;
    for (size_t k = 0; k < ni; ++k) {
      v1500 += std::pow(g1500.input[i * ni + k] - 1.0, 2);
      v2200 += std::pow(g2200.input[i * ni + k] - 1.0, 2);
    }
    INFO("star " << i << ": " << v1500 << " vs " << v2200);
    CHECK(v1500 < 0.97 * v2200);
  }
  // The drawn range is validated.
  o.lamost_r_min = 2500, o.lamost_r_max = 2000;
  CHECK_THROWS_WITH(MakeTrainingGrid(o, 11, (dir / "bad.fits").string(), {}),
                    "config error: grid.lamost_r_min/lamost_r_max must satisfy 500 <= lamost_r_min "
                    "<= lamost_r_max <= 5000");
}
