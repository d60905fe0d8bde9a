#include "stages/predict_stage.h"

#include <algorithm>
#include <map>

#include "core/errors.h"
#include "core/grid.h"
#include "core/ingest.h"
#include "core/log.h"
#include "core/mpi_world.h"
#include "network/sed_network.h"
#include "simulation/dr7_sample.h"
#include "simulation/paper_errors.h"
#include "stages/simulate_stage.h"

namespace csst {
namespace {
constexpr int kPredictTag = 3;  // MPI tag of a rank's share of the predictions (core/mpi_world.h)
// Header keys of SEDS holding SedTable::systematic and ::systematic_free_scale (GU, GV, GI).
constexpr const char* kSystematicKeys[3] = {"SYSERRU", "SYSERRV", "SYSERRI"};
constexpr const char* kFreeScaleKeys[3] = {"SYSFREU", "SYSFREV", "SYSFREI"};

std::array<double, 3> ReadSystematicKeys(FitsReader& r, const std::string& path,
                                         const char* const (&keys)[3]) {
  std::array<double, 3> sys{};
  for (int b = 0; b < 3; ++b) {
    if (!r.HasKey(keys[b]))
      throw Error(path + ": SEDS lacks the key " + keys[b] +
                  " (written by an older version: rerun from predict, csst-flatcube run CONFIG "
                  "--from predict)");
    sys[static_cast<size_t>(b)] = r.KeyDouble(keys[b]);
  }
  return sys;
}

// The model's per-band term `key` (GU, GV, GI), or zeros with a warning that the ERR of a cube
// fitted with `fit` will lack it until `calibrate --systematic-from` (or, for real-star weights,
// `--systematic-from-evaluation`) sets it.
std::array<double, 3> SystematicOf(const std::map<std::string, double>& m, const std::string& model,
                                   const char* key, const char* fit) {
  if (m.size() == 3) return {m.at("GU"), m.at("GV"), m.at("GI")};
  Logger("predict")->warn(
      "{}.json has no {} (csst-flatcube calibrate --systematic-from or --systematic-from-evaluation): the ERR of a "
      "cube fitted "
      "with {} will hold the fit covariance and lack of fit only",
      model, key, fit);
  return {0, 0, 0};
}
}  // namespace

void WriteSeds(const std::string& path, const SedTable& t, const Provenance& prov) {
  FitsWriter w(path);
  w.WriteEmptyPrimary();
  Provenance p = prov;
  p.descrip =
      "predicted R=200 SEDs (574 px, 2500-10500 A log) scaled at 5526-5586 A, relative sigma";
  w.Standard(p, "");
  const long n = OutputGrid().size();
  std::vector<FitsColumn> columns = {{"OBSID", "", t.obsid}};
  if (!t.file.empty()) columns.push_back({"FILE", "", t.file});
  columns.push_back({"MU", "", t.mu, n});
  columns.push_back({"SIGMA", "", t.sigma, n});
  if (!t.domain.empty()) columns.push_back({"DOMAIN", "", t.domain});
  w.WriteTable("SEDS", columns);
  w.Standard(p, "");
  w.Comment("MU: predicted SED / mean flux in 5526-5586 A; SIGMA: relative 1-sigma (calibrated)");
  if (!t.domain.empty()) w.Comment("DOMAIN: empty inside the training domain (SNR >= 20, 5000-9750 K), else why not");
  const char* names[3] = {"GU", "GV", "GI"};
  for (int b = 0; b < 3; ++b)
    w.Key(kSystematicKeys[b], t.systematic[static_cast<size_t>(b)],
          std::string("SED error common to all stars, known fluxes, ") + names[b]);
  for (int b = 0; b < 3; ++b)
    w.Key(kFreeScaleKeys[b], t.systematic_free_scale[static_cast<size_t>(b)],
          std::string("the same after free per-star scales, ") + names[b]);
  w.WriteTable("WAVELENGTH", {{"WAVELENGTH", "Angstrom", OutputGrid().Centres()}});
  w.Standard(p, "");
  if (!t.file.empty()) {
    w.WriteTable("REJECTS", {{"FILE", "", t.rejected_file}, {"REASON", "", t.rejected_reason}});
    w.Standard(p, "");
  }
  w.Close();
}

SedTable ReadSeds(const std::string& path) {
  FitsReader r(path);
  r.MoveTo("SEDS");
  SedTable t;
  for (double v : r.ReadColumn("OBSID")) t.obsid.push_back(static_cast<int64_t>(v));
  for (double v : r.ReadColumn("MU")) t.mu.push_back(static_cast<float>(v));
  for (double v : r.ReadColumn("SIGMA")) t.sigma.push_back(static_cast<float>(v));
  t.systematic = ReadSystematicKeys(r, path, kSystematicKeys);
  t.systematic_free_scale = ReadSystematicKeys(r, path, kFreeScaleKeys);
  return t;
}

std::array<double, 3> ReadSedSystematic(const std::string& path, bool free_scale) {
  FitsReader r(path);
  r.MoveTo("SEDS");
  return ReadSystematicKeys(r, path, free_scale ? kFreeScaleKeys : kSystematicKeys);
}

void CheckSedsOfStars(const SedTable& seds, const std::string& seds_path, const std::vector<int64_t>& obsid,
                      const std::string& stars_path) {
  if (seds.obsid != obsid) throw Error(seds_path + ": its stars differ from those of " + stars_path + " (rerun predict)");
}

const char* ToString(SedSource s) { return s == SedSource::kModel ? "model" : "paper_errors"; }

PredictStageResult RunPredictStage(const PredictStageOptions& o, const StageRun& run) {
  const StageClock clock;
  PredictStageResult r;
  const auto stars = ReadPreparedStars(o.stars);
  SedTable t;
  for (const auto& s : stars.stars) t.obsid.push_back(s.obsid);
  Provenance p;
  p.config_hash = run.config_hash;
  p.seed = run.seed;
  if (o.mode == SedSource::kModel) {
    const SedPredictor pred(o.model, o.predictor);
    const StageClock net_clock;
    // Under MPI rank k predicts the k-th share of the stars, cut at whole batches (so every batch, and every
    // number, is the one of a single process); rank 0 assembles the shares in star order and writes.
    const size_t n = stars.size(), ni = n ? stars.flux.size() / n : 0, no = static_cast<size_t>(OutputGrid().size());
    const size_t per_batch = static_cast<size_t>(std::max(1, o.batch)), batches = (n + per_batch - 1) / per_batch;
    const size_t ranks = static_cast<size_t>(MpiWorld::Size()), me = static_cast<size_t>(MpiWorld::Rank());
    auto first = [&](size_t k) { return std::min(n, batches * k / ranks * per_batch); };
    const size_t lo = first(me), hi = first(me + 1);
    const std::vector<float> flux(stars.flux.begin() + static_cast<std::ptrdiff_t>(lo * ni),
                                  stars.flux.begin() + static_cast<std::ptrdiff_t>(hi * ni));
    const std::vector<float> err(stars.err.begin() + static_cast<std::ptrdiff_t>(lo * ni),
                                 stars.err.begin() + static_cast<std::ptrdiff_t>(hi * ni));
    auto out = pred.Predict(flux, err, hi - lo, o.batch);
    if (me != 0) {  // a worker rank: its share goes to rank 0
      ByteWriter w;
      w.PutVector(out.mu);
      w.PutVector(out.sigma);
      MpiWorld::Send(0, kPredictTag, w.bytes());
      return r;
    }
    for (size_t k = 1; k < ranks; ++k) {
      const auto bytes = MpiWorld::Recv(static_cast<int>(k), kPredictTag);
      ByteReader in(bytes);
      const auto mu = in.GetVector<float>(), sigma = in.GetVector<float>();
      if (mu.size() != (first(k + 1) - first(k)) * no || sigma.size() != mu.size()) {
        throw Error("predict: rank " + std::to_string(k) + " sent " + std::to_string(mu.size() / no) + " SEDs, expected " +
                    std::to_string(first(k + 1) - first(k)) + " (internal error)");
      }
      out.mu.insert(out.mu.end(), mu.begin(), mu.end());
      out.sigma.insert(out.sigma.end(), sigma.begin(), sigma.end());
    }
    r.spectra_per_second = static_cast<double>(stars.size()) / std::max(net_clock.Seconds(), 1e-9);
    t.mu = out.mu;
    t.sigma = out.sigma;
    const auto& info = pred.info();
    t.systematic = SystematicOf(info.systematic, o.model, "systematic_error", "known fluxes");
    t.systematic_free_scale = SystematicOf(info.systematic_free_scale, o.model,
                                           "systematic_error_free_scale", "a joint fit");
    r.device = pred.device();
    r.engine = ToString(pred.engine());
    p.history.push_back("UaRA-net " + o.model + " on " + r.device + " (" + r.engine + " engine)");
  } else {
    if (MpiWorld::Rank() != 0) return r;  // cheap: rank 0 alone
    const auto truth = LoadStarTruth(o.stars, o.truth);  // joined by identity
    std::vector<double> teff, snr;
    for (const auto& s : stars.stars) {
      teff.push_back(s.teff);
      snr.push_back(s.snr_g);
    }
    PaperErrorPredictions(truth.sed, teff, snr, run.seed, 0, &t.mu, &t.sigma);
    p.history.push_back("paper_errors: true SEDs perturbed by the paper's Table 2 errors");
  }
  WriteSeds(o.seds_out, t, p);
  Logger("predict")->info("{} SEDs predicted ({})", t.obsid.size(), ToString(o.mode));
  r.stars = t.obsid.size();
  r.wall_seconds = clock.Seconds();
  return r;
}

}  // namespace csst
