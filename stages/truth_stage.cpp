#include "stages/truth_stage.h"

#include <spdlog/fmt/fmt.h>
#include <tbb/parallel_for.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <optional>

#include "core/errors.h"
#include "core/grid.h"
#include "core/log.h"
#include "core/mpi_world.h"
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

constexpr int kTruthTag = 8;  // MPI tag of a block of true SEDs (core/mpi_world.h)

// What a block of stars adds to truth.fits and lamost_truth.fits, the message a worker rank sends
// rank 0.
struct TruthBlock {
  size_t first = 0;  // its first star
  std::vector<std::vector<double>> sed, sed_fine, lam_flux, lam_err;
  void Resize(size_t count) {
    sed.resize(count);
    sed_fine.resize(count);
    lam_flux.resize(count);
    lam_err.resize(count);
  }
};
void PutTruthBlock(ByteWriter& w, const TruthBlock& b) {
  w.Put<uint64_t>(b.first);
  w.Put<uint64_t>(b.sed.size());
  for (size_t k = 0; k < b.sed.size(); ++k) {
    w.PutVector(b.sed[k]);
    w.PutVector(b.sed_fine[k]);
    w.PutVector(b.lam_flux[k]);
    w.PutVector(b.lam_err[k]);
  }
}
TruthBlock GetTruthBlock(ByteReader& r) {
  TruthBlock b;
  b.first = r.Get<uint64_t>();
  b.Resize(r.Get<uint64_t>());
  for (size_t k = 0; k < b.sed.size(); ++k) {
    b.sed[k] = r.GetVector<double>();
    b.sed_fine[k] = r.GetVector<double>();
    b.lam_flux[k] = r.GetVector<double>();
    b.lam_err[k] = r.GetVector<double>();
  }
  return b;
}

}  // namespace

TruthStageResult RunTruthStage(const TruthStageOptions& o, const StageRun& run) {
  const StageClock clock;
  const std::string &stars_path = o.stars, &seds_path = o.seds;
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
  std::vector<int64_t> obsid(n);
  for (size_t i = 0; i < n; ++i) obsid[i] = prepared.stars[i].obsid;

  // prediction: the network's SEDs (every rank reads the table) and the stars' own files (the
  // folder's headers read once over the ranks)
  SedTable seds;
  std::map<int64_t, std::string> index;
  const size_t no = static_cast<size_t>(OutputGrid().size());
  if (o.sed == TruthSed::kPrediction) {
    seds = ReadSeds(seds_path);
    CheckSedsOfStars(seds.obsid, seds_path, obsid, stars_path);
    index = IndexSpectra(o.spectra_dir, obsid, nullptr, /*shared=*/true);
  }
  const stellar::SynthOptions so;
  std::optional<stellar::Synthesizer> synth;  // synthesizer: made once, shared by the threads
  if (o.sed == TruthSed::kSynthesizer) synth.emplace(so);
  // One star's truth: its R = 200 SED, the SED on the truth grid and its LAMOST-grid spectrum.
  auto make_star = [&](size_t i, TruthBlock& block, size_t at) {
    if (o.sed == TruthSed::kPrediction) {
      block.sed[at].assign(seds.mu.begin() + static_cast<long>(i * no),
                           seds.mu.begin() + static_cast<long>((i + 1) * no));
      block.sed_fine[at] = OnTruthGrid(block.sed[at]);
      const int64_t id = obsid[i];
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
      block.lam_flux[at] = r.flux;
      block.lam_err[at] = r.err;
      for (size_t k = 0; k < r.size(); ++k)
        if (r.mask[k]) block.lam_err[at][k] = 0;  // no data here
      return;
    }
    StarRecord st = prepared.stars[i];
    const stellar::StellarParams params{st.teff, st.logg, st.feh, st.alpha};
    Spectrum native;
    try {
      native = synth->Synthesize(params);
    } catch (const Error& e) {
      throw Error(stars_path + ": obsid " + std::to_string(st.obsid) +
                  ": simulation.truth_sed = synthesizer: " + e.what());
    }
    const auto sed200 = DegradeToGrid(native, 200.0, OutputGrid());
    const double norm = MeanFluxInWindow(sed200);
    block.sed[at] = sed200.flux;
    for (double& v : block.sed[at]) v /= norm;
    block.sed_fine[at] = DegradeToGrid(native, kTruthResolution, TruthGrid()).flux;
    for (double& v : block.sed_fine[at]) v /= norm;
    st.gmag =
        -2.5 * std::log10(prepared.window_flux[i] / WindowFluxFromG(0.0));  // the star's flux scale
    const auto clean = NoiselessLamost(native, so.resolving_power, st, o.lamost);
    block.lam_flux[at] = clean.flux;
    block.lam_err[at] = clean.err;
  };

  SampleTruth truth;
  truth.obsid = obsid;
  truth.spec_hash = prepared.spec_hash;
  truth.window_flux = prepared.window_flux;
  truth.sed.resize(n);
  truth.sed_fine.resize(n);
  std::vector<std::vector<double>> lam_flux(n), lam_err(n);
  // Under MPI block b of star_block stars is made by rank b mod K and rank 0 gathers every block
  // in star order: each star's truth depends on that star alone, so truth.fits and
  // lamost_truth.fits are the same for any K.
  const bool writes = MpiWorld::Rank() == 0;
  std::unique_ptr<Progress> progress;
  if (writes) progress = std::make_unique<Progress>("truth", static_cast<long>(n));
  const size_t kBlock = static_cast<size_t>(std::max(1, o.star_block));
  ShareBlocks((n + kBlock - 1) / kBlock, kTruthTag,
              [&](size_t b) {
                const size_t first = b * kBlock, count = std::min(kBlock, n - first);
                TruthBlock block;
                block.first = first;
                block.Resize(count);
                tbb::parallel_for(size_t{0}, count,
                                  [&](size_t k) { make_star(first + k, block, k); });
                CheckCancelled();
                return block;
              },
              [&](size_t, TruthBlock&& block) {
                for (size_t k = 0; k < block.sed.size(); ++k) {
                  const size_t i = block.first + k;
                  truth.sed[i] = std::move(block.sed[k]);
                  truth.sed_fine[i] = std::move(block.sed_fine[k]);
                  lam_flux[i] = std::move(block.lam_flux[k]);
                  lam_err[i] = std::move(block.lam_err[k]);
                }
                progress->Tick(static_cast<long>(block.sed.size()));
                CheckCancelled();
              },
              PutTruthBlock, GetTruthBlock);
  if (!writes) return TruthStageResult{};  // a worker rank: its blocks are with rank 0
  progress->Finish();

  Provenance p;
  p.config_hash = run.config_hash;
  p.seed = run.seed;
  p.history.push_back(
      o.sed == TruthSed::kPrediction
          ? "truth_sed prediction: the network's SED of each star's own spectrum (" + seds_path +
                ")"
          : std::string("truth_sed synthesizer: built-in synthesizer at the catalogue's Teff, log "
                        "g, [Fe/H], [alpha/M]"));
  WriteSampleTruth(o.truth_out, truth, p,
                   "true SEDs of the ingested real stars (simulation.truth_sed)");
  WriteNoiselessLamost(o.lamost_truth_out,
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
