// The pipeline's stages: which products each reads and writes and which config sections it
// depends on. Bodies only unpack the config and call the stage function.
#include "core/rng.h"
#include "pipeline/stage.h"
#include "stages/flat_stages.h"
#include "stages/ingest_stage.h"
#include "stages/predict_stage.h"
#include "stages/simulate_stage.h"
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
      {"predict",
       "UaRA-net SEDs of the ingested stars (or the paper's errors on the truth)",
       {"network", "random_seed"},
       {"stars.fits", "truth.fits"},
       {"seds.fits"},
       [](const Config& c, const StageIo& io) {
         RunPredictStage(c.network.mode, c.network.model, c.network.device, c.network.batch, c.threads,
                         c.random_seed, io.config_hash, io.in.at("stars.fits").string(),
                         io.in.at("truth.fits").string(), io.out.at("seds.fits").string());
       },
       [](const Config& c) {
         return c.network.mode == "model" ? std::vector<std::string>{c.network.model + ".pt", c.network.model + ".json"}
                                          : std::vector<std::string>{};
       }},
      {"simulate",
       "CSST slitless observations through the injected true flat",
       {"simulation", "random_seed"},
       {"stars.fits", "catalogue.fits", "truth.fits"},
       {"observations.fits", "true_flat.fits"},
       [](const Config& c, const StageIo& io) {
         RunSimulateStage(c.simulation.instrument, c.simulation.flat, c.simulation.observe, c.random_seed,
                          Mix64(c.random_seed + c.simulation.seed), io.config_hash, io.in.at("stars.fits").string(),
                          io.in.at("catalogue.fits").string(), io.in.at("truth.fits").string(),
                          io.out.at("observations.fits").string(), io.out.at("true_flat.fits").string());
       }},
      {"compare",
       "observed / predicted count ratios per star, band and wavelength",
       {"compare", "simulation", "random_seed"},
       {"observations.fits", "seds.fits", "stars.fits", "catalogue.fits"},
       {"ratios.fits"},
       [](const Config& c, const StageIo& io) {
         RunCompareStage(c.simulation.instrument, c.compare, c.random_seed, io.config_hash,
                         io.in.at("observations.fits").string(), io.in.at("seds.fits").string(),
                         io.in.at("stars.fits").string(), io.in.at("catalogue.fits").string(),
                         io.out.at("ratios.fits").string());
       }},
      {"fit",
       "2D polynomial flat per detector and wavelength (Ceres)",
       {"flatfield", "simulation"},
       {"ratios.fits"},
       {"flat_coeffs.fits"},
       [](const Config& c, const StageIo& io) {
         RunFitStage(c.simulation.instrument, c.flatfield, c.random_seed, io.config_hash,
                     io.in.at("ratios.fits").string(), io.out.at("flat_coeffs.fits").string());
       }},
      {"assemble",
       "flat cubes for reduction software (aXe polynomial cube, JWST-style reference cube, quicklooks)",
       {"assemble", "simulation"},
       {"flat_coeffs.fits", "ratios.fits", "true_flat.fits"},
       {"flatcube"},
       [](const Config& c, const StageIo& io) {
         RunAssembleStage(c.simulation.instrument, c.assemble, c.random_seed, io.config_hash,
                          io.in.at("flat_coeffs.fits").string(), io.in.at("ratios.fits").string(),
                          io.in.at("true_flat.fits").string(), io.out.at("flatcube").string());
       }},
      {"validate",
       "Monte Carlo precision of the cube against the injected truth, and the report",
       {"validate", "simulation", "compare", "flatfield", "network", "ingest", "random_seed"},
       {"stars.fits", "catalogue.fits", "truth.fits", "lamost_truth.fits", "true_flat.fits"},
       {"validation.json", "validation.fits", "report"},
       [](const Config& c, const StageIo& io) {
         ValidateInputs in{io.in.at("stars.fits").string(), io.in.at("catalogue.fits").string(),
                           io.in.at("truth.fits").string(), io.in.at("lamost_truth.fits").string(),
                           io.in.at("true_flat.fits").string(), c.source_path, c.network.mode, c.network.model,
                           c.network.device, c.network.batch, c.threads};
         RunValidateStage(c.simulation.instrument, c.simulation.observe, c.compare, c.flatfield, c.validate,
                          c.random_seed, Mix64(c.random_seed + c.simulation.seed), io.config_hash, in,
                          {io.out.at("validation.json").string(), io.out.at("validation.fits").string(),
                           io.out.at("report").string()});
       },
       [](const Config& c) {
         return c.network.mode == "model" ? std::vector<std::string>{c.network.model + ".pt", c.network.model + ".json"}
                                          : std::vector<std::string>{};
       }},
  };
  return stages;
}

}  // namespace csst
