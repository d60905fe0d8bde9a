#include "simulation/training_grid.h"

#include <tbb/parallel_for.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <iomanip>
#include <map>
#include <sstream>

#include "core/errors.h"
#include "core/files.h"
#include "core/log.h"
#include "core/progress.h"
#include "core/rng.h"
#include "io/library.h"
#include "io/spectrum_io.h"
#include "simulation/gpr/library_gpr.h"
#include "simulation/lamost_sim.h"
#include "simulation/stellar/synthesizer.h"

namespace csst {
namespace fs = std::filesystem;

void GridOptions::Validate() const {
  auto fail = [](const std::string& m) { throw ConfigError("config error: " + m); };
  if (source != GridSource::kBuiltin && source_dir.empty())
    fail(std::string("grid.source = ") + ToString(source) + " needs grid.source_dir");
  if (n_stars < 1) fail("grid.n_stars must be >= 1");
  if (first_index < 0) fail("grid.first_index must be >= 0");
  if (first_index > 0 && source != GridSource::kBuiltin)
    fail("grid.first_index applies to grid.source = builtin");
  if (!(teff_min < teff_max && teff_min >= 4500 && teff_max <= 10000)) {
    fail(
        "grid.teff_min/teff_max must satisfy 4500 <= teff_min < teff_max <= 10000 (synthesizer "
        "range)");
  }
  if (source == GridSource::kBuiltin ? !(test_fraction > 0 && test_fraction < 1)
                                     : !(test_fraction > 0 && test_fraction <= 1)) {
    fail(source == GridSource::kBuiltin
             ? "grid.test_fraction must be in (0, 1)"
             : "grid.test_fraction must be in (0, 1] (1: every library star is a test star)");
  }
  if (!(lamost_r_min >= 500 && lamost_r_min <= lamost_r_max && lamost_r_max <= 5000))
    fail("grid.lamost_r_min/lamost_r_max must satisfy 500 <= lamost_r_min <= lamost_r_max <= 5000");
  if (!(rv_sigma >= 0 && rv_sigma <= 1000)) fail("grid.rv_sigma must be in [0, 1000] km/s");
  if (inputs == GridInputs::kGpr && source == GridSource::kBuiltin)
    fail("grid.inputs = gpr applies to library sources (bosz, stelib, miles), not builtin");
  if (inputs == GridInputs::kGpr && gpr_library_dir.empty())
    fail("grid.inputs = gpr needs grid.gpr_library_dir (the MILES directory)");
  if (gpr_clean_cut < 0) fail("grid.gpr_clean_cut must be >= 0");
  if (max_ebv < 0) fail("grid.max_ebv must be >= 0");
  if (max_ebv > 0 && !(gpr_clean_cut > 0))
    fail(
        "grid.max_ebv needs grid.gpr_clean_cut > 0 (the colour excess is measured against the GPR "
        "prediction)");
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
    const auto input = NormaliseContinuum(
        ResampleFluxConserving(DegradeToResolution(s, 2000.0), InputGrid(), 0.6), 51);
    const auto sed = LibraryTargetSed(s);  // R=200, scaled at 5526-5586 A
    for (int i = 0; i < InputGrid().size(); ++i)
      g.input.push_back(input.mask[i] ? 1.0f : static_cast<float>(input.flux[i]));
    for (int i = 0; i < OutputGrid().size(); ++i) {
      const bool ok = sed.mask[i] == 0 && sed.flux[i] > 0;
      g.target.push_back(ok ? static_cast<float>(sed.flux[i]) : 1.0f);
      g.target_mask.push_back(ok ? 1 : 0);
    }
    return true;
  } catch (const Error& e) {
    why = e.what();
    return false;
  }
}

// Appends the stars of grid files written before; every star name must be new.
void AppendGrids(const std::vector<std::string>& paths, TrainingGrid& all) {
  std::map<std::string, std::string> seen;  // name -> where it came from
  for (const auto& n : all.name) seen.emplace(n, "this grid");
  for (const auto& p : paths) {
    const TrainingGrid g = ReadTrainingGrid(p);
    for (const auto& n : g.name) {
      const auto [it, fresh] = seen.emplace(n, p);
      if (!fresh)
        throw ConfigError("config error: grid.append: star " + n + " of " + p + " is already in " +
                          it->second);
    }
    Append(all, g);
    long test = 0;
    for (auto t : g.test) test += t;
    Logger("grid")->info("appended {} stars ({} test) from {}", g.size(), test, p);
  }
}

}  // namespace

void MakeTrainingGrid(const GridOptions& o, uint64_t seed, const std::string& out_path,
                      const Provenance& prov) {
  o.Validate();
  auto log = Logger("grid");
  TrainingGrid all;
  if (o.source == GridSource::kBuiltin) {
    const fs::path parts = out_path + ".parts";
    // The parts of an interrupted run are reused only if they were drawn with the same options.
    std::ostringstream key;
    key << std::setprecision(17) << "seed " << seed << " first_index " << o.first_index
        << " n_stars " << o.n_stars << " chunk " << o.chunk << " teff " << o.teff_min << ' '
        << o.teff_max << " logg " << o.logg_min << ' ' << o.logg_max << " giants "
        << o.giant_fraction << " mh " << o.mh_min << ' ' << o.mh_max << " alpha " << o.alpha_min
        << ' ' << o.alpha_max << " test " << o.test_fraction << " lamost_r " << o.lamost_r_min
        << ' ' << o.lamost_r_max << " rv_sigma " << o.rv_sigma << " input lamost-path\n";
    const fs::path manifest = parts / "options.txt";
    if (fs::exists(parts)) {
      const std::string old = fs::exists(manifest) ? ReadText(manifest) : std::string();
      if (old != key.str()) {
        log->warn("{} holds parts drawn with other options ({}); starting over", parts.string(),
                  old.empty() ? "no record" : old.substr(0, old.size() - 1));
        fs::remove_all(parts);
      }
    }
    fs::create_directories(parts);
    if (!fs::exists(manifest)) WriteTextAtomically(manifest, key.str());
    const stellar::SynthOptions so;
    const stellar::Synthesizer synth(so);
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
          const long i = static_cast<long>(o.first_index) + a + k;
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
          StarRecord star;
          star.gmag = 15;
          star.snr_g = star.snr_r = 100;  // the error is the trainer's; only the flux is kept
          star.rv = o.rv_sigma * rng.Normal();
          LamostSimOptions lamost;
          lamost.resolving_power = rng.Uniform(o.lamost_r_min, o.lamost_r_max);
          lamost.bad_pixel_fraction = 0;
          const auto native = synth.Synthesize(p);
          const auto in =
              NoiselessNetworkInput(native, so.resolving_power, star, lamost, g.name[k]);
          const auto sed = stellar::MakeTargetSed(native);
          for (int j = 0; j < InputGrid().size(); ++j)
            g.input[static_cast<size_t>(k) * InputGrid().size() + j] =
                static_cast<float>(in.flux[j]);
          for (int j = 0; j < OutputGrid().size(); ++j)
            g.target[static_cast<size_t>(k) * OutputGrid().size() + j] =
                static_cast<float>(sed.flux[j]);
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
    for (int c = 0; c < nchunks; ++c)
      Append(all, ReadTrainingGrid((parts / ("part-" + std::to_string(c) + ".fits")).string()));
    AppendGrids(o.append, all);
    AtomicOutput out(out_path);
    WriteTrainingGrid(out.temp().string(), all, prov);
    out.Commit();
    fs::remove_all(parts);
  } else {
    long skipped = 0;
    std::vector<LibraryStar> stars;
    std::vector<fs::path> files;
    if (o.source == GridSource::kMiles) {
      // MILES: files and parameters as the GPR reads them (air -> vacuum, paramsMILES_v9.1.txt).
      LibrarySelection sel;
      sel.teff_min = o.teff_min, sel.teff_max = o.teff_max;
      auto lib = LoadLibrary(LibraryKind::kMiles, o.source_dir, "", sel);
      for (const auto& [file, why] : lib.skipped) log->info("skipped {}: {}", file, why);
      skipped += static_cast<long>(lib.skipped.size());
      stars = std::move(lib.stars);
    } else {
      for (const auto& e : fs::directory_iterator(o.source_dir)) {
        const auto n = e.path().filename().string();
        if (e.is_regular_file() &&
            (n.find(".fits") != std::string::npos ||
             (o.source == GridSource::kBosz && n.find(".txt") != std::string::npos))) {
          files.push_back(e.path());
        }
      }
    }
    std::sort(files.begin(), files.end());
    // Read every file (BOSZ, STELIB); stars that cannot be used are logged with the reason (never
    // dropped silently).
    for (const auto& f : files) {
      LibrarySpectrum lib;
      try {
        lib = o.source == GridSource::kStelib ? ReadStelib(f.string()) : ReadBosz(f.string());
      } catch (const Error& e) {
        log->warn("skipped {}: {}", f.string(), e.what());
        ++skipped;
        continue;
      }
      const bool need_params = o.inputs == GridInputs::kGpr || o.gpr_clean_cut > 0;
      if (need_params &&
          !(std::isfinite(lib.teff) && std::isfinite(lib.logg) && std::isfinite(lib.feh))) {
        log->warn("skipped {}: no Teff, log g or [Fe/H] (needed by the GPR)", f.string());
        ++skipped;
        continue;
      }
      if (std::isfinite(lib.teff) && (lib.teff < o.teff_min || lib.teff > o.teff_max)) {
        log->info("skipped {}: Teff {:.0f} K outside grid.teff_min..teff_max",
                  f.filename().string(), lib.teff);
        ++skipped;
        continue;
      }
      stars.push_back(
          {f.filename().string(), lib.teff, lib.logg, lib.feh, lib.fwhm, std::move(lib.spectrum)});
    }
    if (o.gpr_clean_cut > 0) {
      GprCleanOptions co;
      co.cut = o.gpr_clean_cut;
      co.seed = seed;
      const auto r = GprClean(stars, co);
      for (const auto& [name, why] : r.unusable) log->warn("skipped {}: {}", name, why);
      skipped += static_cast<long>(r.unusable.size());
      std::map<std::string, size_t> row;
      for (size_t j = 0; j < r.name.size(); ++j) row[r.name[j]] = j;
      std::vector<LibraryStar> kept;
      for (auto& star : stars) {
        const auto it = row.find(star.name);
        if (it == row.end()) continue;  // unusable, logged above
        if (r.kept[it->second] && o.max_ebv > 0 &&
            !(r.ebv[it->second] <= o.max_ebv)) {  // NaN: unmeasurable, dropped
          log->info("skipped {}: colour excess against the GPR prediction E(B-V) {:.3f} > {}",
                    star.name, r.ebv[it->second], o.max_ebv);
          ++skipped;
        } else if (r.kept[it->second]) {
          kept.push_back(std::move(star));
        } else {
          log->warn("skipped {}: GPR-predicted SED misses by RMSAE {:.3f} > {}", star.name,
                    r.rmsae[it->second], o.gpr_clean_cut);
          ++skipped;
        }
      }
      log->info("GPR cleaning: kept {} of {} (sigma_f {:.3g}, sigma_n {:.3g}, l {:.3g})",
                kept.size(), stars.size(), r.fit.best.sigma_f, r.fit.best.sigma_n, r.fit.best.ell);
      stars = std::move(kept);
    }
    Eigen::MatrixXd generated;
    if (o.inputs == GridInputs::kGpr && !stars.empty()) {
      LibrarySelection sel;
      sel.teff_min = o.teff_min, sel.teff_max = o.teff_max;
      const auto miles = LoadLibrary(LibraryKind::kMiles, o.gpr_library_dir, "", sel);
      const InputGenerator gen(miles.stars);
      Eigen::MatrixXd x(static_cast<Eigen::Index>(stars.size()), 3);
      for (size_t i = 0; i < stars.size(); ++i)
        x.row(static_cast<Eigen::Index>(i)) << stars[i].teff, stars[i].logg, stars[i].feh;
      gen.Generate(x, &generated, nullptr);
      log->info(
          "inputs generated by a GPR on {} MILES stars (sigma_f {:.3g}, sigma_n {:.3g}, l {:.3g})",
          gen.n_train(), gen.fit().best.sigma_f, gen.fit().best.sigma_n, gen.fit().best.ell);
    }
    for (size_t i = 0; i < stars.size(); ++i) {
      std::string why;
      TrainingGrid one;
      if (!FromLibrary(stars[i].spectrum, 0, one, why)) {
        log->warn("skipped {}: {}", stars[i].name, why);
        ++skipped;
        continue;
      }
      if (o.inputs == GridInputs::kGpr) {
        for (int k = 0; k < InputGrid().size(); ++k)
          one.input[k] = static_cast<float>(generated(static_cast<Eigen::Index>(i), k));
      }
      // The split depends on the file name, so cleaning does not reshuffle the other stars.
      Rng rng(seed, "grid-split", HashString(stars[i].name));
      one.teff = {stars[i].teff};
      one.logg = {stars[i].logg};
      one.mh = {stars[i].feh};
      one.alpha = {0.0};
      one.test = {static_cast<uint8_t>(rng.Uniform() < o.test_fraction ? 1 : 0)};
      one.name = {stars[i].name};
      Append(all, one);
    }
    log->info("{} {} spectra in the grid, {} skipped (reasons above)", all.size(),
              ToString(o.source), skipped);
    AppendGrids(o.append, all);
    AtomicOutput out(out_path);
    WriteTrainingGrid(out.temp().string(), all, prov);
    out.Commit();
  }
  log->info("wrote {} ({} stars)", out_path, all.size());
}

}  // namespace csst
