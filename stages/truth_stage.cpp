#include "stages/truth_stage.h"

#include <spdlog/fmt/fmt.h>
#include <tbb/parallel_for.h>

#include <algorithm>
#include <cmath>

#include "core/errors.h"
#include "core/grid.h"
#include "core/log.h"
#include "core/progress.h"
#include "io/seds.h"
#include "io/spectrum_io.h"
#include "simulation/dr7_sample.h"
#include "simulation/stellar/synthesizer.h"

namespace csst {
namespace {

// A 574-pixel R = 200 SED on TruthGrid(): linear in ln(lambda), constant beyond the ends.
std::vector<double> OnTruthGrid(const std::vector<double>& sed_out) {
  const auto& out = OutputGrid();
  const auto& fine = TruthGrid();
  std::vector<double> v(static_cast<size_t>(fine.size()));
  for (int k = 0; k < fine.size(); ++k) {
    const double p = std::clamp(out.PixelFromWavelength(fine.Centre(k)), 0.0, out.size() - 1.0);
    const int i = std::min(static_cast<int>(p), out.size() - 2);
    const double t = p - i;
    v[static_cast<size_t>(k)] =
        (1 - t) * sed_out[static_cast<size_t>(i)] + t * sed_out[static_cast<size_t>(i) + 1];
  }
  return v;
}

}  // namespace

TruthStageResult RunTruthStage(const TruthStageOptions& o, const StageRun& run) {
  const StageClock clock;
  const std::string &stars_path = o.stars, &seds_path = o.seds, &truth_out = o.truth_out,
                    &lamost_truth_out = o.lamost_truth_out;
  const uint64_t seed = run.seed;
  const std::string& config_hash = run.config_hash;
  auto log = Logger("truth");
  const auto prepared = ReadPreparedStars(stars_path, /*with_inputs=*/false);
  const size_t n = prepared.size();
  if (prepared.window_flux.size() != n) {
    throw Error(stars_path + ": no WINDOW_FLUX column (written by an older ingest); rerun ingest");
  }
  const WavelengthGrid lamost_grid(
      GridKind::kLog, std::pow(10.0, o.lamost.coeff0 - 0.5 * o.lamost.coeff1),
      std::pow(10.0, o.lamost.coeff0 + (o.lamost.n_pixels - 0.5) * o.lamost.coeff1),
      o.lamost.n_pixels);
  SampleTruth truth;
  truth.obsid.resize(n);
  truth.spec_hash = prepared.spec_hash;
  truth.window_flux = prepared.window_flux;
  truth.sed.resize(n);
  truth.sed_fine.resize(n);
  std::vector<std::vector<double>> lam_flux(n), lam_err(n);
  for (size_t i = 0; i < n; ++i) truth.obsid[i] = prepared.stars[i].obsid;

  Provenance p;
  p.config_hash = config_hash;
  p.seed = seed;
  if (o.sed == TruthSed::kPrediction) {
    const auto seds = ReadSeds(seds_path);
    const size_t no = static_cast<size_t>(OutputGrid().size());
    CheckSedsOfStars(seds.obsid, seds_path, truth.obsid, stars_path);
    std::map<int64_t, std::string> index;
    {
      std::vector<int64_t> ids(truth.obsid);
      index = IndexSpectra(o.spectra_dir, ids);
    }
    Progress progress("truth", static_cast<long>(n));
    tbb::parallel_for(size_t{0}, n, [&](size_t i) {
      truth.sed[i].assign(seds.mu.begin() + static_cast<long>(i * no),
                          seds.mu.begin() + static_cast<long>((i + 1) * no));
      truth.sed_fine[i] = OnTruthGrid(truth.sed[i]);
      const int64_t id = truth.obsid[i];
      auto it = index.find(id);
      if (it == index.end())
        throw Error(o.spectra_dir + ": the spectrum of obsid " + std::to_string(id) +
                    " is gone since ingest");
      const auto lam = ReadLamost(it->second, o.use_ormask);
      if (SpectrumDataHash(lam.spectrum) != prepared.spec_hash[i]) {
        throw Error(it->second + ": not the spectrum that ingest read for obsid " +
                    std::to_string(id) + " (" + stars_path + "); rerun ingest");
      }
      Spectrum s = lam.spectrum;
      for (size_t k = 0; k < s.size(); ++k)
        if (s.mask[k] || !(s.err[k] > 0)) s.mask[k] |= kMaskBad;
      const auto r = ResampleFluxConserving(s, lamost_grid, 0.999);
      lam_flux[i] = r.flux;
      lam_err[i] = r.err;
      for (size_t k = 0; k < r.size(); ++k)
        if (r.mask[k]) lam_err[i][k] = 0;  // no data here
      progress.Tick();
    });
    progress.Finish();
    p.history.push_back("truth_sed prediction: the network's SED of each star's own spectrum (" +
                        seds_path + ")");
  } else {
    const stellar::SynthOptions so;
    const stellar::Synthesizer synth(so);
    Progress progress("truth", static_cast<long>(n));
    tbb::parallel_for(size_t{0}, n, [&](size_t i) {
      StarRecord st = prepared.stars[i];
      const stellar::StellarParams params{st.teff, st.logg, st.feh, st.alpha};
      Spectrum native;
      try {
        native = synth.Synthesize(params);
      } catch (const Error& e) {
        throw Error(stars_path + ": obsid " + std::to_string(st.obsid) +
                    ": simulation.truth_sed = synthesizer: " + e.what());
      }
      const auto sed200 = DegradeToGrid(native, 200.0, OutputGrid());
      const double norm = MeanFluxInWindow(sed200);
      truth.sed[i] = sed200.flux;
      for (double& v : truth.sed[i]) v /= norm;
      truth.sed_fine[i] = DegradeToGrid(native, kTruthResolution, TruthGrid()).flux;
      for (double& v : truth.sed_fine[i]) v /= norm;
      st.gmag = -2.5 * std::log10(prepared.window_flux[i] /
                                  WindowFluxFromG(0.0));  // the star's flux scale
      const auto clean = NoiselessLamost(native, so.resolving_power, st, o.lamost);
      lam_flux[i] = clean.flux;
      lam_err[i] = clean.err;
      progress.Tick();
    });
    progress.Finish();
    p.history.push_back(
        "truth_sed synthesizer: built-in synthesizer at the catalogue's Teff, log g, [Fe/H], "
        "[alpha/M]");
  }
  WriteSampleTruth(truth_out, truth, p,
                   "true SEDs of the ingested real stars (simulation.truth_sed)");
  WriteNoiselessLamost(lamost_truth_out,
                       NoiselessLamostRows{truth.obsid, lamost_grid.Centres(), std::move(lam_flux),
                                           std::move(lam_err)},
                       p,
                       o.sed == TruthSed::kPrediction
                           ? "the stars' own LAMOST spectra on the DR7 grid"
                           : "noiseless LAMOST-grid spectra of the synthesizer's stars");
  log->info("{} true SEDs ({})", n, o.sed == TruthSed::kPrediction ? "prediction" : "synthesizer");
  TruthStageResult r;
  r.stars = n;
  r.wall_seconds = clock.Seconds();
  return r;
}

std::string TruthStageResult::BriefReport() const { return fmt::format("{} stars", stars); }

}  // namespace csst
