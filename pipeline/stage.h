// A pipeline stage as the engine sees it: named products in, named products out, the config
// sections it reads, and a body that calls into a stages/ function.
#pragma once

#include <filesystem>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "pipeline/config.h"
#include "stages/stage_run.h"

namespace csst {

struct StageIo {
  std::map<std::string, std::filesystem::path> in;   // product name -> committed path
  std::map<std::string, std::filesystem::path> out;  // product name -> temp path to write
  std::string config_hash;                           // hash of the sections the stage reads
};

struct StageDef {
  std::string name;
  std::string doc;
  std::vector<std::string> sections;  // config keys/sections whose values the stage depends on
  std::vector<std::string> inputs;    // product names (produced by upstream stages)
  std::vector<std::string> outputs;   // product names = paths relative to output.dir
  // The body: unpacks the config, calls the stages/ function and returns its report.
  std::function<StageReport(const Config&, const StageIo&)> run;
  // Files outside the work directory whose content the stage depends on (e.g. the model weights);
  // their hashes join the config hash.
  std::function<std::vector<std::string>(const Config&)> external_files = nullptr;
  // Under MPI (`mpirun -np K`) the body runs on every rank at once: rank 0 as usual, the others as
  // workers that read the same inputs, compute their share and send it to rank 0, and write
  // nothing. Other stages run on rank 0.
  bool distributed = false;
};

// The pipeline's stages for this configuration, in topological order (registry.cpp).
std::vector<StageDef> PipelineStages(const Config& config);

}  // namespace csst
