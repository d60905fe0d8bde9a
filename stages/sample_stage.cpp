#include "stages/sample_stage.h"

#include <spdlog/fmt/fmt.h>

namespace csst {

SampleStageResult RunSampleStage(const SampleStageOptions& options, const StageRun& run) {
  const StageClock clock;
  Provenance p;
  p.descrip = "simulated LAMOST DR7-like sample";
  p.config_hash = run.config_hash;
  p.seed = run.seed;
  p.history.push_back(
      "made by csst-flatcube stage sample (built-in synthesizer, simulated LAMOST LRS)");
  WriteDr7Sample(options.sample, run.seed, p, options.out);
  SampleStageResult r;
  r.stars = static_cast<size_t>(options.sample.population.n_stars);
  r.wall_seconds = clock.Seconds();
  return r;
}

std::string SampleStageResult::BriefReport() const { return fmt::format("{} stars", stars); }

}  // namespace csst
