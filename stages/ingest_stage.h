// Stage `ingest`: selected LAMOST stars -> stars.fits (normalised 2238-pixel inputs + rejects).
#pragma once

#include <string>

#include "io/ingest.h"
#include "stages/stage_run.h"

namespace csst {

struct IngestStageOptions {
  IngestOptions ingest;
  // The sample stage's products when ingest.source == IngestSource::kSample, else
  // ingest.catalogue / ingest.spectra_dir.
  std::string catalogue, spectra_dir;
  std::string stars_out;
};

struct IngestStageResult {
  IngestSummary summary;  // stars kept, rejects per reason
  double wall_seconds = 0;
  std::string BriefReport() const;  // one line: what it did (manifest.json "report")
};

IngestStageResult RunIngestStage(const IngestStageOptions& options, const StageRun& run);

}  // namespace csst
