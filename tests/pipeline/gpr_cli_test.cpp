// The `gpr clean` and `gpr generate` subcommands on MILES (../shared/data, skipped visibly when
// absent).
#include <sys/wait.h>

#include <algorithm>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/files.h"
#include "io/catalogue.h"
#include "io/fits.h"
#include "tests/test_util.h"

namespace fs = std::filesystem;
using namespace csst;

namespace {
// Runs the CLI; returns the exit code and leaves stdout+stderr in `log`.
int Cli(const std::string& args, const fs::path& log) {
  const std::string cmd = std::string(CSST_CLI_PATH) + " " + args + " > " + log.string() + " 2>&1";
  const int st = std::system(cmd.c_str());
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}
}  // namespace

TEST_CASE("gpr clean and gpr generate from the command line", "[gpr][cli][shared]") {
  const auto miles = test::SharedData("miles");
  CSST_REQUIRE_SHARED(miles / "paramsMILES_v9.1.txt");
  test::TempDir dir("gpr-cli");
  const auto log = dir / "log.txt";
  const std::string lib =
      "--library miles --dir " + miles.string() + " --teff-min 6000 --teff-max 6600";
  REQUIRE(Cli("gpr clean " + lib + " --out " + (dir / "clean").string(), log) == 0);
  const auto summary = nlohmann::json::parse(ReadText(dir / "clean/summary.json"));
  const long stars = summary.at("stars");
  CHECK(stars > 50);
  CHECK(summary.at("kept").get<long>() <= stars);
  CHECK(summary.at("cut").get<double>() == 0.05);  // the paper's MILES cut is the default
  for (const char* k : {"sigma_f", "sigma_n", "ell", "log_marginal_likelihood", "termination"})
    CHECK(summary.at("hyper").contains(k));
  // kept.csv: a header and one row per star, the kept column agreeing with the cut.
  std::ifstream csv(dir / "clean/kept.csv");
  std::string line;
  std::getline(csv, line);
  CHECK(line == "file,teff,logg,feh,fold,rmsae,kept,ebv_rel");
  long rows = 0, kept = 0;
  while (std::getline(csv, line)) {
    ++rows;
    const auto f = SplitCsv(line);
    REQUIRE(f.size() == 8);
    const double rmsae = std::stod(f[5]);
    const bool k = f[6] == "1";
    kept += k;
    CHECK(k == (rmsae <= 0.05));
  }
  CHECK(rows == stars);
  CHECK(kept == summary.at("kept").get<long>());
  FitsReader r((dir / "clean/residuals.fits").string());
  r.MoveTo("GPRCLEAN");
  CHECK(r.NumRows() == stars);
  if (std::system("command -v fitsverify > /dev/null 2>&1") == 0) {
    CHECK(
        std::system(("fitsverify -q -e " + (dir / "clean/residuals.fits").string() + " > /dev/null")
                        .c_str()) == 0);
  }

  // generate: one star at solar parameters; normalised flux near 1 with the H-beta dip.
  REQUIRE(Cli("gpr generate " + lib + " --star 5777 4.44 0 --out " + (dir / "gen.fits").string(),
              log) == 0);
  FitsReader g((dir / "gen.fits").string());
  g.MoveTo("GENERATED");
  REQUIRE(g.NumRows() == 1);
  REQUIRE(g.ColumnRepeat("FLUX") == 2238);
  auto flux = g.ReadColumn("FLUX");
  const double hbeta =
      flux[static_cast<size_t>(std::log(4862.7 / 4000.0) / (std::log(7000.0 / 4000.0) / 2238))];
  std::sort(flux.begin(), flux.end());
  CHECK(flux[flux.size() / 2] == Approx(1.0).margin(0.03));
  CHECK(hbeta < 0.8);
  const auto holdout = nlohmann::json::parse(ReadText(dir / "gen.fits.holdout.json"));
  CHECK(holdout.at("test_stars").get<long>() > 5);

  // Usage errors exit 2 with a message; a missing directory exits 1 naming it.
  CHECK(Cli("gpr generate " + lib + " --out " + (dir / "x.fits").string(), log) == 2);
  CHECK(ReadText(log).find("exactly one of --targets or --star") != std::string::npos);
  CHECK(
      Cli("gpr clean --library pickles --dir " + miles.string() + " --out " + (dir / "y").string(),
          log) == 2);
  CHECK(Cli("gpr clean --library miles --dir " + (dir / "nowhere").string() + " --out " +
                (dir / "y").string(),
            log) == 1);
  CHECK(ReadText(log).find("nowhere: library directory not found") != std::string::npos);
}
