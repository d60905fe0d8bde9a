#include "stages/ingest_stage.h"

namespace csst {

void RunIngestStage(const IngestOptions& options, uint64_t seed, const std::string& config_hash,
                    const std::string& catalogue, const std::string& spectra_dir,
                    const std::string& stars_out) {
  Provenance p;
  p.config_hash = config_hash;
  p.seed = seed;
  p.history.push_back("made by csst-flatcube stage ingest from " + catalogue + " and " + spectra_dir);
  Ingest(options, catalogue, spectra_dir, stars_out, p);
}

}  // namespace csst
