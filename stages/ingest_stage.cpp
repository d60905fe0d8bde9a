#include "stages/ingest_stage.h"

#include <spdlog/fmt/fmt.h>

#include <filesystem>

namespace csst {

IngestStageResult RunIngestStage(const IngestStageOptions& options, const StageRun& run) {
  const StageClock clock;
  Provenance p;
  p.config_hash = run.config_hash;
  p.seed = run.seed;
  p.history.push_back("made by csst-flatcube stage ingest from " +
                      std::filesystem::path(options.catalogue).filename().string() + " and " +
                      std::filesystem::path(options.spectra_dir).filename().string());
  IngestStageResult r;
  r.summary = Ingest(options.ingest, options.catalogue, options.spectra_dir, options.stars_out, p);
  r.wall_seconds = clock.Seconds();
  return r;
}

std::string IngestStageResult::BriefReport() const {
  long rejected = 0;
  std::string why;
  for (const auto& [reason, count] : summary.rejected) {
    rejected += count;
    why += fmt::format("{}{} {}", why.empty() ? "" : ", ", count, reason);
  }
  return fmt::format("{} stars kept, {} rejected{}", summary.kept, rejected,
                     why.empty() ? "" : " (" + why + ")");
}

}  // namespace csst
