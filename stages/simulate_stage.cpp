#include "stages/simulate_stage.h"

#include <spdlog/fmt/fmt.h>

#include <algorithm>
#include <map>
#include <memory>

#include "core/errors.h"
#include "core/log.h"
#include "core/mpi_world.h"
#include "core/progress.h"
#include "core/rng.h"
#include "io/ingest.h"
#include "simulation/dr7_sample.h"
#include "simulation/star_truth.h"

namespace csst {
namespace {
constexpr int kSimulateTag = 5;  // MPI tag of a block of observed stars (core/mpi_world.h)
}  // namespace

SimulateStageResult RunSimulateStage(const SimulateStageOptions& o, const StageRun& run) {
  const StageClock clock;
  const InstrumentOptions& io = o.instrument;
  const ObserveOptions& oo = o.observe;
  const Instrument inst(io);
  const auto flat = TrueFlat::Draw(o.flat, inst, o.flat_seed);
  const auto t = LoadStarTruth(o.stars, o.truth, /*with_sed=*/false);
  // Placed all at once (a sky placement scales to the whole catalogue; every rank places), observed
  // and written block by block of stars: memory holds one block's spectra, not the sample's. Under
  // MPI block b is observed by rank b mod K and rank 0 writes every block in star order.
  const auto placed = PlaceSample(inst, oo, t.stars, t.window_flux, run.seed);
  Provenance p;
  p.config_hash = run.config_hash;
  p.seed = run.seed;
  p.history.push_back(std::string("simulated by csst-flatcube stage simulate, mode ") +
                      ToString(oo.mode));
  p.descrip =
      "simulated CSST slitless spectra: extracted counts per output-grid pixel and detector "
      "positions";
  const bool writes = MpiWorld::Rank() == 0;
  std::unique_ptr<ObservationsWriter> writer;
  std::unique_ptr<Progress> progress;
  if (writes) {
    writer = std::make_unique<ObservationsWriter>(o.observations_out, io.detectors_per_band,
                                                  t.star_set, /*truth=*/true, p);
    progress = std::make_unique<Progress>("simulate", static_cast<long>(placed.size()));
  }
  const size_t kBlock = static_cast<size_t>(std::max(1, o.star_block));
  ShareBlocks((placed.size() + kBlock - 1) / kBlock, kSimulateTag,
              [&](size_t b) {
                const size_t first = b * kBlock, count = std::min(kBlock, placed.size() - first);
                std::vector<StarObservation> block(
                    placed.begin() + static_cast<std::ptrdiff_t>(first),
                    placed.begin() + static_cast<std::ptrdiff_t>(first + count));
                const auto sed_fine = t.SedFine(first, count);
                ObserveBlock(inst, flat, oo,
                             ObserveBlockInput{block.data(), sed_fine.data(), count, first,
                                               run.seed, "csst-noise"});
                CheckCancelled();
                return block;
              },
              [&](size_t, std::vector<StarObservation>&& block) {
                writer->Append(block.data(), block.size());
                progress->Tick(static_cast<long>(block.size()));
                CheckCancelled();
              },
              [](ByteWriter& w, const std::vector<StarObservation>& block) {
                w.Put<uint64_t>(block.size());
                for (const auto& so : block) PutObservation(w, so);
              },
              [](ByteReader& r) {
                std::vector<StarObservation> block(r.Get<uint64_t>());
                for (auto& so : block) so = GetObservation(r);
                return block;
              });
  if (!writes) return SimulateStageResult{};  // a worker rank: its blocks are with rank 0
  progress->Finish();
  writer->Close();
  flat.Write(o.true_flat_out, p);
  Logger("simulate")
      ->info("{} stars observed in 3 bands ({} mode): {} spectra", placed.size(), ToString(oo.mode),
             writer->rows());
  SimulateStageResult r;
  r.stars = placed.size();
  r.wall_seconds = clock.Seconds();
  return r;
}

std::string SimulateStageResult::BriefReport() const {
  return fmt::format("{} stars observed", stars);
}

}  // namespace csst
