#include "stages/predict_stage.h"

#include <algorithm>
#include <map>
#include <memory>

#include "core/bands.h"
#include "core/detectors.h"
#include "core/errors.h"
#include "core/grid.h"
#include "core/log.h"
#include "core/mpi_world.h"
#include "core/progress.h"
#include "io/ingest.h"
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
std::array<double, kNumBands> SystematicOf(const std::optional<BandArray<double>>& m,
                                           const std::string& model, const char* key,
                                           const char* fit) {
  if (m) return m->values;
  Logger("predict")->warn(
      "{}.json has no {} (csst-flatcube calibrate --systematic-from or "
      "--systematic-from-evaluation): the ERR of a "
      "cube fitted "
      "with {} will hold the fit covariance and lack of fit only",
      model, key, fit);
  return {0, 0, 0};
}
}  // namespace

SedsWriter::SedsWriter(const std::string& path, const SedTable& layout, const Provenance& prov)
    : w_(path), p_(prov), with_file_(!layout.file.empty()), with_domain_(!layout.domain.empty()) {
  w_.WriteEmptyPrimary();
  p_.descrip =
      "predicted R=200 SEDs (574 px, 2500-10500 A log) scaled at 5526-5586 A, relative sigma";
  w_.Standard(p_, "");
  const long n = OutputGrid().size();
  std::vector<FitsColumn> columns = {{"OBSID", "", std::vector<int64_t>{}}};
  if (with_file_) columns.push_back({"FILE", "", layout.file});
  columns.push_back({"MU", "", std::vector<float>{}, n});
  columns.push_back({"SIGMA", "", std::vector<float>{}, n});
  if (with_domain_) columns.push_back({"DOMAIN", "", layout.domain});
  w_.CreateTable("SEDS", columns);
  w_.Standard(p_, "");
  w_.Comment("MU: predicted SED / mean flux in 5526-5586 A; SIGMA: relative 1-sigma (calibrated)");
  if (with_domain_)
    w_.Comment("DOMAIN: empty inside the training domain (SNR >= 20, 5000-9750 K), else why not");
  for (int b = 0; b < 3; ++b)
    w_.Key(kSystematicKeys[b], layout.systematic[static_cast<size_t>(b)],
           std::string("SED error common to all stars, known fluxes, ") + BandName(BandAt(b)));
  for (int b = 0; b < 3; ++b)
    w_.Key(kFreeScaleKeys[b], layout.systematic_free_scale[static_cast<size_t>(b)],
           std::string("the same after free per-star scales, ") + BandName(BandAt(b)));
}

void SedsWriter::Append(const SedTable& t) {
  const size_t n = t.obsid.size(), no = static_cast<size_t>(OutputGrid().size());
  if (t.mu.size() != n * no || t.sigma.size() != n * no || (with_file_ && t.file.size() != n) ||
      (with_domain_ && t.domain.size() != n))
    throw Error(w_.path() + ": a block of " + std::to_string(n) +
                " SEDs with other column lengths (internal error)");
  if (n == 0) return;
  std::vector<FitsColumn> columns = {{"OBSID", "", t.obsid}};
  if (with_file_) columns.push_back({"FILE", "", t.file});
  columns.push_back({"MU", "", t.mu, static_cast<long>(no)});
  columns.push_back({"SIGMA", "", t.sigma, static_cast<long>(no)});
  if (with_domain_) columns.push_back({"DOMAIN", "", t.domain});
  w_.AppendRows(rows_, columns);
  rows_ += static_cast<long>(n);
}

void SedsWriter::Close(const std::vector<std::string>& rejected_file,
                       const std::vector<std::string>& rejected_reason) {
  w_.WriteTable("WAVELENGTH", {{"WAVELENGTH", "Angstrom", OutputGrid().Centres()}});
  w_.Standard(p_, "");
  if (with_file_) {
    w_.WriteTable("REJECTS", {{"FILE", "", rejected_file}, {"REASON", "", rejected_reason}});
    w_.Standard(p_, "");
  }
  w_.Close();
}

void WriteSeds(const std::string& path, const SedTable& t, const Provenance& prov) {
  SedsWriter w(path, t, prov);
  w.Append(t);
  w.Close(t.rejected_file, t.rejected_reason);
}

SedsReader::SedsReader(const std::string& path) : r_(path) {
  r_.MoveTo("SEDS");
  for (double v : r_.ReadColumn("OBSID")) obsid_.push_back(static_cast<int64_t>(v));
  const long no = OutputGrid().size();
  for (const char* col : {"MU", "SIGMA"})
    if (r_.ColumnRepeat(col) != no)
      throw IoError(path + ": SEDS column " + col + " is not " + std::to_string(no) +
                    " pixels wide");
  systematic_ = ReadSystematicKeys(r_, path, kSystematicKeys);
  systematic_free_scale_ = ReadSystematicKeys(r_, path, kFreeScaleKeys);
}

void SedsReader::Read(size_t first, size_t count, std::vector<float>* mu,
                      std::vector<float>* sigma) {
  if (first + count > obsid_.size())
    throw IoError(r_.path() + ": SEDS rows " + std::to_string(first + 1) + " .. " +
                  std::to_string(first + count) + " asked for, it has " +
                  std::to_string(obsid_.size()));
  mu->clear();
  sigma->clear();
  for (size_t at = first; at < first + count;
       at += 2048) {  // never a whole column in double beside them
    const long rows = static_cast<long>(std::min<size_t>(2048, first + count - at));
    for (double v : r_.ReadColumn("MU", static_cast<long>(at), rows))
      mu->push_back(static_cast<float>(v));
    for (double v : r_.ReadColumn("SIGMA", static_cast<long>(at), rows))
      sigma->push_back(static_cast<float>(v));
  }
}

SedTable ReadSeds(const std::string& path) {
  SedsReader reader(path);
  SedTable t;
  t.obsid = reader.obsid();
  reader.Read(0, t.obsid.size(), &t.mu, &t.sigma);
  t.systematic = reader.systematic();
  t.systematic_free_scale = reader.systematic_free_scale();
  return t;
}

std::array<double, 3> ReadSedSystematic(const std::string& path, bool free_scale) {
  FitsReader r(path);
  r.MoveTo("SEDS");
  return ReadSystematicKeys(r, path, free_scale ? kFreeScaleKeys : kSystematicKeys);
}

void CheckSedsOfStars(const std::vector<int64_t>& seds_obsid, const std::string& seds_path,
                      const std::vector<int64_t>& obsid, const std::string& stars_path) {
  if (seds_obsid != obsid)
    throw Error(seds_path + ": its stars differ from those of " + stars_path + " (rerun predict)");
}

PredictStageResult RunPredictStage(const PredictStageOptions& o, const StageRun& run) {
  const StageClock clock;
  PredictStageResult r;
  // The stars stream a block at a time: their records are held, their inputs are read, predicted
  // and written block by block (a block is whole batches of the network, so every number is the one
  // of a single call over all stars).
  const auto stars = ReadPreparedStars(o.stars, /*with_inputs=*/false);
  const size_t n = stars.size(), ni = static_cast<size_t>(InputGrid().size()),
               no = static_cast<size_t>(OutputGrid().size());
  const int ranks = MpiWorld::Size(), me = MpiWorld::Rank();
  // A block is whole batches, about star_block stars, fewer when that leaves a rank without one.
  const size_t per_batch = static_cast<size_t>(std::max(1, o.batch)),
               batches = (n + per_batch - 1) / per_batch;
  const size_t per_rank = (batches + static_cast<size_t>(ranks) - 1) / static_cast<size_t>(ranks);
  const size_t block =
      per_batch *
      std::clamp<size_t>(per_rank, 1,
                         std::max<size_t>(1, static_cast<size_t>(o.star_block) / per_batch));
  const size_t blocks = (n + block - 1) / block;
  Provenance p;
  p.config_hash = run.config_hash;
  p.seed = run.seed;
  SedTable layout;  // the header's terms; the stage writes no FILE or DOMAIN
  std::unique_ptr<SedsWriter> writer;
  std::unique_ptr<Progress> progress;
  // Block b's rows after its mu and sigma are in `t`: rank 0 appends them in star order.
  auto append = [&](size_t b, SedTable& t) {
    const size_t first = b * block, count = std::min(block, n - first);
    if (t.mu.size() != count * no || t.sigma.size() != t.mu.size())
      throw Error("predict: " + std::to_string(t.mu.size() / no) + " SEDs for a block of " +
                  std::to_string(count) + " stars (internal error)");
    for (size_t i = first; i < first + count; ++i) t.obsid.push_back(stars.stars[i].obsid);
    writer->Append(t);
    progress->Tick(static_cast<long>(count));
  };
  if (o.mode == SedSource::kModel) {
    const SedPredictor pred(o.model, o.predictor);
    PreparedInputsReader inputs(o.stars);
    if (static_cast<size_t>(inputs.rows()) != n)
      throw Error(o.stars + ": STARS changed while it was read (" + std::to_string(inputs.rows()) +
                  " rows, " + std::to_string(n) + " before)");
    if (me == 0) {
      const auto& info = pred.info();
      layout.systematic =
          SystematicOf(info.systematic, o.model, "systematic_error", "known fluxes");
      layout.systematic_free_scale = SystematicOf(info.systematic_free_scale, o.model,
                                                  "systematic_error_free_scale", "a joint fit");
      r.device = ToString(pred.device());
      r.engine = ToString(pred.engine());
      p.history.push_back("UaRA-net " + o.model + " on " + r.device + " (" + r.engine + " engine)");
      writer = std::make_unique<SedsWriter>(o.seds_out, layout, p);
      progress = std::make_unique<Progress>("predict", static_cast<long>(n));
    }
    const StageClock net_clock;
    // Under MPI block b is predicted by rank b mod K; rank 0 writes every block in star order.
    ShareBlocks(
        blocks, kPredictTag,
        [&](size_t b) {
          const size_t first = b * block, count = std::min(block, n - first);
          std::vector<float> flux(count * ni), err(count * ni);
          inputs.Read(static_cast<long>(first), static_cast<long>(count), flux.data(), err.data());
          auto out = pred.Predict(flux, err, count, o.batch);
          SedTable t;
          t.mu = std::move(out.mu);
          t.sigma = std::move(out.sigma);
          return t;
        },
        [&](size_t b, SedTable&& t) {
          append(b, t);
          CheckCancelled();
        },
        [](ByteWriter& w, const SedTable& t) {
          w.PutVector(t.mu);
          w.PutVector(t.sigma);
        },
        [](ByteReader& in) {
          SedTable t;
          t.mu = in.GetVector<float>();
          t.sigma = in.GetVector<float>();
          return t;
        });
    if (me != 0) return r;
    r.spectra_per_second = static_cast<double>(n) / std::max(net_clock.Seconds(), 1e-9);
  } else {
    if (me != 0) return r;                                                   // cheap: rank 0 alone
    const auto truth = LoadStarTruth(o.stars, o.truth, /*with_sed=*/false);  // joined by identity
    std::vector<double> teff, snr;
    for (const auto& s : stars.stars) {
      teff.push_back(s.teff);
      snr.push_back(s.snr_g);
    }
    p.history.push_back("paper_errors: true SEDs perturbed by the paper's Table 2 errors");
    writer = std::make_unique<SedsWriter>(o.seds_out, layout, p);
    progress = std::make_unique<Progress>("predict", static_cast<long>(n));
    for (size_t b = 0; b < blocks; ++b) {
      const size_t first = b * block, count = std::min(block, n - first);
      const auto sed = truth.ReadSed(first, count);
      SedTable t;
      t.mu.resize(count * no);
      t.sigma.resize(count * no);
      PaperErrorPredictions(sed.data(), teff.data() + first, snr.data() + first, count, first,
                            run.seed, 0, t.mu.data(), t.sigma.data());
      append(b, t);
      CheckCancelled();
    }
  }
  progress->Finish();
  writer->Close();
  Logger("predict")->info("{} SEDs predicted ({})", writer->rows(), ToString(o.mode));
  r.stars = static_cast<size_t>(writer->rows());
  r.wall_seconds = clock.Seconds();
  return r;
}

}  // namespace csst
