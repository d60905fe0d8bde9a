// Runs the pipeline's stages as nodes of a oneTBB flow graph (built in BuildGraph), skipping
// stages that are up to date. An exception in any node cancels the graph and is rethrown once by
// RunPipeline.
#pragma once

#include <string>
#include <vector>

#include "pipeline/config.h"
#include "pipeline/stage.h"
#include "pipeline/store.h"

namespace csst {

struct RunOptions {
  std::string from, to, only;  // stage names ("" = unset)
  bool force = false;          // rerun every selected stage
  int threads = 0;             // overrides config.threads when > 0
};

struct StageOutcome {
  std::string stage;
  bool ran = false;
  std::string reason;  // why it ran, or why it was skipped
  double seconds = 0;  // the stage's own wall time (StageReport) when it ran
  std::string report;  // its Result's BriefReport() when it ran
};

// Throws ConfigError for unknown stage names or --only with stale inputs.
std::vector<StageOutcome> RunPipeline(const Config& config, const std::vector<StageDef>& stages,
                                      const RunOptions& options);

// MPI (`mpirun -np K csst-flatcube run CONFIG`): rank 0 runs RunPipeline; when it reaches a
// distributed stage it sends the stage's name (tag kMpiJobTag) to every other rank, which runs that
// stage's body as a worker (RunWorkerRank: a loop until EndWorkerRanks sends an empty job). A
// failure on any rank ends the job (main.cpp).
inline constexpr int kMpiJobTag = 1;
void RunWorkerRank(const Config& config, const std::vector<StageDef>& stages,
                   const RunOptions& options);
void EndWorkerRanks();

struct StageStatusRow {
  std::string stage;
  StageState state = StageState::kMissing;
  std::string reason, products, started;
  double duration_s = 0;
  std::string report;  // the stage's BriefReport() when it last ran
};
std::vector<StageStatusRow> PipelineStatus(const Config& config,
                                           const std::vector<StageDef>& stages);

}  // namespace csst
