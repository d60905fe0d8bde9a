#include "stages/ingest_stage.h"

#include <filesystem>

namespace csst {

void RunIngestStage(const IngestOptions& options, uint64_t seed, const std::string& config_hash,
                    const std::string& catalogue, const std::string& spectra_dir,
                    const std::string& stars_out) {
  Provenance p;
  p.config_hash = config_hash;
  p.seed = seed;
  p.history.push_back("made by csst-flatcube stage ingest from " + std::filesystem::path(catalogue).filename().string() +
                      " and " + std::filesystem::path(spectra_dir).filename().string());
  Ingest(options, catalogue, spectra_dir, stars_out, p);
}

}  // namespace csst
