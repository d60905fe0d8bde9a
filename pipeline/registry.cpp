// The pipeline's stages: which products each reads and writes and which config sections it
// depends on. Bodies only unpack the config and call the stage function.
#include "pipeline/stage.h"
#include "stages/sample_stage.h"

namespace csst {

const std::vector<StageDef>& PipelineStages() {
  static const std::vector<StageDef> stages = {
      {"sample",
       "draw the simulated LAMOST DR7-like population and write its catalogue",
       {"random_seed", "sample"},
       {},
       {"catalogue.fits"},
       [](const Config& c, const StageIo& io) {
         RunSampleStage(c.sample, c.random_seed, io.config_hash, io.out.at("catalogue.fits"));
       }},
  };
  return stages;
}

}  // namespace csst
