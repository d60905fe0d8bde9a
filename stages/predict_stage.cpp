#include "stages/predict_stage.h"

#include <spdlog/fmt/fmt.h>

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
#include "simulation/star_truth.h"

namespace csst {
namespace {
constexpr int kPredictTag = 3;  // MPI tag of a rank's share of the predictions (core/mpi_world.h)

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
      PaperErrorPredictions(
          PaperErrorStars{sed.data(), teff.data() + first, snr.data() + first, count, first},
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

std::string PredictStageResult::BriefReport() const {
  if (device.empty()) return fmt::format("{} stars (paper errors)", stars);
  return fmt::format("{} stars on {} ({} engine), {:.0f} spectra/s", stars, device, engine,
                     spectra_per_second);
}

}  // namespace csst
