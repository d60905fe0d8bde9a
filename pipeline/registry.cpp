// The pipeline's stages: which products each reads and writes and which config sections it
// depends on. Bodies only unpack the config and call the stage function.
#include "pipeline/stage.h"
#include "stages/ingest_stage.h"
#include "stages/sample_stage.h"

namespace csst {

const std::vector<StageDef>& PipelineStages() {
  static const std::vector<StageDef> stages = {
      {"sample",
       "simulated LAMOST DR7-like sample: catalogue, LAMOST files, truth",
       {"random_seed", "sample"},
       {},
       {"catalogue.fits", "lamost", "truth.fits", "lamost_truth.fits"},
       [](const Config& c, const StageIo& io) {
         RunSampleStage(c.sample, c.random_seed, io.config_hash,
                        {io.out.at("catalogue.fits"), io.out.at("lamost"), io.out.at("truth.fits"),
                         io.out.at("lamost_truth.fits")});
       }},
      {"ingest",
       "select LAMOST stars and prepare the normalised 2238-pixel network inputs",
       {"ingest"},
       {"catalogue.fits", "lamost"},
       {"stars.fits"},
       [](const Config& c, const StageIo& io) {
         const bool sample = c.ingest.source == "sample";
         RunIngestStage(c.ingest, c.random_seed, io.config_hash,
                        sample ? io.in.at("catalogue.fits").string() : c.ingest.catalogue,
                        sample ? io.in.at("lamost").string() : c.ingest.spectra_dir,
                        io.out.at("stars.fits").string());
       }},
  };
  return stages;
}

}  // namespace csst
