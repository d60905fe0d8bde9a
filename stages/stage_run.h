// What every stage function shares (the house pattern of Ceres' Solver: Options in, Summary out):
//   XxxStageResult RunXxxStage(const XxxStageOptions& options, const StageRun& run);
// Options hold the stage's config choices and the paths of the products it reads and writes;
// StageRun the run's identity recorded in each product's provenance; the Result what the stage
// did (counts, termination) and its wall time.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace csst {

// What the engine keeps of a stage's Result: its one-line BriefReport() (manifest.json "report",
// `csst-flatcube stages`) and its own wall time (the stage's duration in the manifest).
struct StageReport {
  std::string brief;
  double wall_seconds = 0;
  // Set by the engine around the stage: the process's CPU seconds (user + system) while it ran, and
  // the process's peak resident memory when it ended (MB). Stages that run at the same time share
  // the process; run one stage a process (`--to STAGE`, tools/stage_scale.sh) to measure one alone.
  double cpu_seconds = 0, peak_rss_mb = 0;
};
template <class Result>
StageReport ReportOf(const Result& result) {
  return {result.BriefReport(), result.wall_seconds};
}

struct StageRun {
  uint64_t seed = 0;        // the stage's random seed (recorded as SEED in its products)
  std::string config_hash;  // hash of the config sections (and external files) the stage depends on
};

// Wall time of a stage, from construction.
class StageClock {
 public:
  double Seconds() const {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  }

 private:
  std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
};

}  // namespace csst
