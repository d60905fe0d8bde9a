// Products are joined by star identity (obsid + SpectrumDataHash), never by obsid alone.
#include <fstream>

#include "core/errors.h"
#include "io/ingest.h"
#include "simulation/star_truth.h"
#include "tests/pipeline/cli_util.h"
#include "tests/test_util.h"

using namespace csst;
namespace fs = std::filesystem;

TEST_CASE("the truth of another star set is refused, naming both files", "[stages][identity]") {
  const test::TempDir dir("truth-join");
  // Two simulated samples with the same obsids (the population numbers its stars) but other
  // spectra.
  auto run = [&](const std::string& name, int seed, const std::string& to) {
    const auto cfg = dir / (name + ".yaml");
    std::ofstream(cfg)
        << "random_seed: " << seed << "\noutput:\n  dir: " << (dir / name).string()
        << "\nsample:\n  n_stars: 12\ningest:\n  snr_min: 0\n  g_min: 0\n  teff_min: 0\n";
    const auto r = test::Cli("run " + cfg.string() + " --to " + to);
    INFO(r.out);
    REQUIRE(r.rc == 0);
  };
  run("a", 5, "ingest");
  run("b", 6, "sample");
  const auto stars = (dir / "a/stars.fits").string();
  const auto mine = (dir / "a/truth.fits").string(), other = (dir / "b/truth.fits").string();
  // Its own sample's truth joins, star by star.
  const auto t = LoadStarTruth(stars, mine);
  CHECK(t.sed.size() == ReadPreparedStars(stars).size());
  // The other sample's truth has the same obsids: refused, with both files named.
  CHECK_THROWS_WITH(LoadStarTruth(stars, other),
                    Catch::Contains(stars + ": star obsid") &&
                        Catch::Contains("that " + other + " did not make") &&
                        Catch::Contains("the ingested stars are not the simulated sample"));
}
