// Stage `ingest`: selected LAMOST stars -> stars.fits (normalised 2238-pixel inputs + rejects).
#pragma once

#include <cstdint>
#include <string>

#include "core/ingest.h"

namespace csst {

// `catalogue`/`spectra_dir` are the sample stage's products when options.source == IngestSource::kSample,
// else options.catalogue / options.spectra_dir.
void RunIngestStage(const IngestOptions& options, uint64_t seed, const std::string& config_hash,
                    const std::string& catalogue, const std::string& spectra_dir,
                    const std::string& stars_out);

}  // namespace csst
