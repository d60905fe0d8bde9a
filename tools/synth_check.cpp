// Development tool: compares the built-in synthesizer's R = 200 SEDs with Kurucz (1993) models
// from ../shared/data/kurucz93 and prints median relative differences per region; with --json FILE
// also writes them there (docs/simulation.md's table, tools/docs_tables.py kind synth_check).
// Usage: csst-synth-check [KURUCZ_DIR] [--json FILE]
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/files.h"
#include "core/spectrum.h"
#include "io/fits.h"
#include "io/spectrum_io.h"
#include "simulation/stellar/synthesizer.h"

using namespace csst;

int main(int argc, char** argv) {
  std::string dir = "../shared/data/kurucz93/kp00", json_path;
  for (int a = 1; a < argc; ++a) {
    const std::string arg = argv[a];
    if (arg == "--json" && a + 1 < argc)
      json_path = argv[++a];
    else if (arg.rfind("--", 0) == 0) {
      std::fprintf(stderr, "usage: csst-synth-check [KURUCZ_DIR] [--json FILE]\n");
      return 2;
    } else
      dir = arg;
  }
  nlohmann::json rows = nlohmann::json::array();
  stellar::Synthesizer synth;
  const auto& og = OutputGrid();
  for (double teff : {5000.0, 5750.0, 6500.0, 7500.0, 8500.0, 9750.0}) {
    for (double logg : {4.0, 4.5}) {
      const auto t0 = std::chrono::steady_clock::now();
      const auto native = synth.Synthesize(stellar::StellarParams{teff, logg, 0.0, 0.0});
      const double dt =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      const auto sed = stellar::MakeTargetSed(native);
      const auto ksed = Kurucz93Sed(dir, teff, logg);
      std::vector<double> red, uv;
      std::string row;
      for (int i = 0; i < og.size(); ++i) {
        const double lam = og.Centre(i);
        const double d = sed.flux[i] / ksed.flux[i] - 1;
        if (lam >= 4000 && lam <= 10000) red.push_back(std::abs(d));
        if (lam >= 2500 && lam < 4000) uv.push_back(std::abs(d));
      }
      std::printf(
          "Teff %5.0f logg %.1f: median |d| 4000-10000 = %.3f, 2500-4000 = %.3f  (%.2f s)\n  ",
          teff, logg, Median(red), Median(uv), dt);
      rows.push_back({{"teff", teff},
                      {"logg", logg},
                      {"median_4000_10000", Median(red)},
                      {"median_2500_4000", Median(uv)}});
      for (double lam : {2600., 3000., 3400., 3800., 4200., 5000., 6500., 8000., 9500.}) {
        const int i = static_cast<int>(og.PixelFromWavelength(lam) + 0.5);
        std::printf("%5.0f:%+.3f ", lam, sed.flux[i] / ksed.flux[i] - 1);
      }
      std::printf("\n");
    }
  }
  if (!json_path.empty())
    WriteTextAtomically(json_path,
                        nlohmann::json{{"kurucz_dir", dir}, {"rows", rows}}.dump(1) + "\n");
  return 0;
}
