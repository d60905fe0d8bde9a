#include "simulation/training_grid.h"

#include <tbb/parallel_for.h>

#include <algorithm>

#include <cmath>
#include <filesystem>

#include "core/errors.h"
#include "core/files.h"
#include "core/log.h"
#include "core/progress.h"
#include "core/rng.h"
#include "core/spectrum_io.h"
#include "simulation/stellar/synthesizer.h"

namespace csst {
namespace fs = std::filesystem;

void GridOptions::Validate() const {
  auto fail = [](const std::string& m) { throw ConfigError("config error: " + m); };
  if (source != "builtin" && source != "bosz" && source != "stelib") {
    fail("grid.source = " + source + " violates source in {builtin, bosz, stelib}");
  }
  if (source != "builtin" && source_dir.empty()) fail("grid.source = " + source + " needs grid.source_dir");
  if (n_stars < 1) fail("grid.n_stars must be >= 1");
  if (!(teff_min < teff_max && teff_min >= 4500 && teff_max <= 10000)) {
    fail("grid.teff_min/teff_max must satisfy 4500 <= teff_min < teff_max <= 10000 (synthesizer range)");
  }
  if (!(test_fraction > 0 && test_fraction < 1)) fail("grid.test_fraction must be in (0, 1)");
}

namespace {

void Append(TrainingGrid& into, const TrainingGrid& from) {
  auto cat = [](auto& a, const auto& b) { a.insert(a.end(), b.begin(), b.end()); };
  cat(into.teff, from.teff);
  cat(into.logg, from.logg);
  cat(into.mh, from.mh);
  cat(into.alpha, from.alpha);
  cat(into.test, from.test);
  cat(into.input, from.input);
  cat(into.target, from.target);
  cat(into.target_mask, from.target_mask);
  cat(into.name, from.name);
}

// One example from a library/model spectrum: input from its 4000-7000 A part, target where covered.
bool FromLibrary(const Spectrum& s, double r_native, TrainingGrid& g, std::string& why) {
  (void)r_native;
  try {
    const auto input = NormaliseContinuum(ResampleFluxConserving(DegradeToResolution(s, 2000.0), InputGrid(), 0.6), 51);
    const auto sed = DegradeToGrid(s, 200.0, OutputGrid(), 0.9);
    const double scale = MeanFluxInWindow(sed);
    for (int i = 0; i < InputGrid().size(); ++i) g.input.push_back(input.mask[i] ? 1.0f : static_cast<float>(input.flux[i]));
    for (int i = 0; i < OutputGrid().size(); ++i) {
      const bool ok = sed.mask[i] == 0 && sed.flux[i] > 0;
      g.target.push_back(ok ? static_cast<float>(sed.flux[i] / scale) : 1.0f);
      g.target_mask.push_back(ok ? 1 : 0);
    }
    return true;
  } catch (const Error& e) {
    why = e.what();
    return false;
  }
}

}  // namespace

void MakeTrainingGrid(const GridOptions& o, uint64_t seed, const std::string& out_path, const Provenance& prov) {
  o.Validate();
  auto log = Logger("grid");
  TrainingGrid all;
  if (o.source == "builtin") {
    const fs::path parts = out_path + ".parts";
    fs::create_directories(parts);
    const stellar::Synthesizer synth;
    const int nchunks = (o.n_stars + o.chunk - 1) / o.chunk;
    Progress progress("grid", o.n_stars);
    for (int c = 0; c < nchunks; ++c) {
      const fs::path part = parts / ("part-" + std::to_string(c) + ".fits");
      const int a = c * o.chunk, b = std::min(o.n_stars, a + o.chunk);
      if (!fs::exists(part)) {
        TrainingGrid g;
        const int n = b - a;
        g.teff.resize(n);
        g.logg.resize(n);
        g.mh.resize(n);
        g.alpha.resize(n);
        g.test.resize(n);
        g.name.resize(n);
        g.input.resize(static_cast<size_t>(n) * InputGrid().size());
        g.target.resize(static_cast<size_t>(n) * OutputGrid().size());
        g.target_mask.assign(static_cast<size_t>(n) * OutputGrid().size(), 1);
        tbb::parallel_for(0, n, [&](int k) {
          const int i = a + k;
          Rng rng(seed, "grid", static_cast<uint64_t>(i));
          const double teff = rng.Uniform(o.teff_min, o.teff_max);
          const bool giant = teff < 6000 && rng.Uniform() < o.giant_fraction;
          const double logg = giant ? rng.Uniform(1.5, 3.0) : rng.Uniform(o.logg_min, o.logg_max);
          const stellar::StellarParams p{teff, logg, rng.Uniform(o.mh_min, o.mh_max),
                                         rng.Uniform(o.alpha_min, o.alpha_max)};
          g.teff[k] = p.teff;
          g.logg[k] = p.logg;
          g.mh[k] = p.mh;
          g.alpha[k] = p.alpha;
          g.test[k] = rng.Uniform() < o.test_fraction ? 1 : 0;
          g.name[k] = "grid-" + std::to_string(i);
          const auto native = synth.Synthesize(p);
          const auto in = stellar::MakeNetworkInput(native);
          const auto sed = stellar::MakeTargetSed(native);
          for (int j = 0; j < InputGrid().size(); ++j) g.input[static_cast<size_t>(k) * InputGrid().size() + j] = static_cast<float>(in.flux[j]);
          for (int j = 0; j < OutputGrid().size(); ++j) g.target[static_cast<size_t>(k) * OutputGrid().size() + j] = static_cast<float>(sed.flux[j]);
          progress.Tick();
        });
        AtomicOutput out(part);
        WriteTrainingGrid(out.temp().string(), g, prov);
        out.Commit();
      } else {
        progress.Tick(b - a);
      }
    }
    progress.Finish();
    for (int c = 0; c < nchunks; ++c) Append(all, ReadTrainingGrid((parts / ("part-" + std::to_string(c) + ".fits")).string()));
    AtomicOutput out(out_path);
    WriteTrainingGrid(out.temp().string(), all, prov);
    out.Commit();
    fs::remove_all(parts);
  } else {
    std::vector<fs::path> files;
    for (const auto& e : fs::directory_iterator(o.source_dir)) {
      const auto n = e.path().filename().string();
      if (e.is_regular_file() && (n.find(".fits") != std::string::npos || (o.source == "bosz" && n.find(".txt") != std::string::npos))) {
        files.push_back(e.path());
      }
    }
    std::sort(files.begin(), files.end());
    long skipped = 0;
    for (size_t i = 0; i < files.size(); ++i) {
      LibrarySpectrum lib;
      try {
        lib = o.source == "stelib" ? ReadStelib(files[i].string()) : ReadBosz(files[i].string());
      } catch (const Error& e) {
        log->warn("skipped {}: {}", files[i].string(), e.what());
        ++skipped;
        continue;
      }
      std::string why;
      TrainingGrid one;
      if (!FromLibrary(lib.spectrum, 0, one, why)) {
        log->warn("skipped {}: {}", files[i].string(), why);
        ++skipped;
        continue;
      }
      Rng rng(seed, "grid-split", i);
      one.teff = {lib.teff};
      one.logg = {lib.logg};
      one.mh = {lib.feh};
      one.alpha = {0.0};
      one.test = {static_cast<uint8_t>(rng.Uniform() < o.test_fraction ? 1 : 0)};
      one.name = {files[i].filename().string()};
      Append(all, one);
    }
    log->info("{} {} spectra in the grid, {} skipped (reasons above)", all.size(), o.source, skipped);
    AtomicOutput out(out_path);
    WriteTrainingGrid(out.temp().string(), all, prov);
    out.Commit();
  }
  log->info("wrote {} ({} stars)", out_path, all.size());
}

}  // namespace csst
