#include "stages/sample_stage.h"

namespace csst {

void RunSampleStage(const Dr7SampleOptions& options, uint64_t seed, const std::string& config_hash,
                    const Dr7SamplePaths& paths) {
  Provenance p;
  p.descrip = "simulated LAMOST DR7-like sample";
  p.config_hash = config_hash;
  p.seed = seed;
  p.history.push_back("made by csst-flatcube stage sample (built-in synthesizer, simulated LAMOST LRS)");
  WriteDr7Sample(options, seed, p, paths);
}

}  // namespace csst
