// The pipeline's stages: which products each reads and writes and which config sections it
// depends on. Bodies only unpack the config and call the stage function.
//
// ingest.source = sample: sample -> ingest -> predict -> simulate -> compare -> fit -> assemble -> validate
// ingest.source = files:  ingest -> predict -> truth -> simulate -> ...  (no sample stage; the truth
// stage makes the "true" SEDs of the real stars, simulation.truth_sed; with network.mode =
// paper_errors it runs before predict, which perturbs its SEDs).
// observations.source = files: stage observations (outside spectra matched to the stars) takes the
// place of simulate; there is no injected truth, so no truth stage (unless paper_errors needs it),
// assemble writes the cube without truth comparisons, and validate does not run.
#include "core/rng.h"
#include "pipeline/stage.h"
#include "stages/flat_stages.h"
#include "stages/ingest_stage.h"
#include "stages/observations_stage.h"
#include "stages/predict_stage.h"
#include "stages/sample_stage.h"
#include "stages/simulate_stage.h"
#include "stages/truth_stage.h"

namespace csst {
namespace {

// External inputs whose content decides a stage's result: their hashes join its config hash.
std::vector<std::string> IngestFiles(const Config& c) {
  if (c.ingest.source != IngestSource::kFiles) return {};
  std::vector<std::string> files = {c.ingest.spectra_dir};
  for (const auto& f : {c.ingest.catalogue, c.ingest.labels})
    if (!f.empty()) files.push_back(f);
  return files;
}
std::vector<std::string> ModelFiles(const Config& c) {
  if (c.network.mode != SedSource::kModel) return {};
  return {c.network.model + ".pt", c.network.model + ".json"};
}
std::vector<std::string> InstrumentFiles(const Config& c) {
  std::vector<std::string> files;
  for (const auto& f : c.simulation.instrument.throughput_file)
    if (!f.empty()) files.push_back(f);
  return files;
}

bool FilesMode(const Config& c) { return c.ingest.source == IngestSource::kFiles; }
bool OutsideObservations(const Config& c) { return c.observations.source == ObservationsSource::kFiles; }

}  // namespace

TruthSed TruthSedOf(const Config& c) {
  return c.simulation.truth_sed == TruthSedChoice::kSynthesizer ? TruthSed::kSynthesizer : TruthSed::kPrediction;
}

std::vector<StageDef> PipelineStages(const Config& config) {
  const bool files = FilesMode(config);
  std::vector<StageDef> stages;
  if (!files) {
    stages.push_back(
        {"sample",
         "simulated LAMOST DR7-like sample: catalogue, LAMOST files, truth",
         {"random_seed", "sample"},
         {},
         {"catalogue.fits", "lamost", "truth.fits", "lamost_truth.fits"},
         [](const Config& c, const StageIo& io) {
           RunSampleStage(c.sample, c.random_seed, io.config_hash,
                          {io.out.at("catalogue.fits"), io.out.at("lamost"), io.out.at("truth.fits"),
                           io.out.at("lamost_truth.fits")});
         }});
  }
  stages.push_back({"ingest",
                    "select LAMOST stars and prepare the normalised 2238-pixel network inputs",
                    {"ingest"},
                    files ? std::vector<std::string>{} : std::vector<std::string>{"catalogue.fits", "lamost"},
                    {"stars.fits"},
                    [](const Config& c, const StageIo& io) {
                      const bool sample = c.ingest.source == IngestSource::kSample;
                      RunIngestStage(c.ingest, c.random_seed, io.config_hash,
                                     sample ? io.in.at("catalogue.fits").string() : c.ingest.catalogue,
                                     sample ? io.in.at("lamost").string() : c.ingest.spectra_dir,
                                     io.out.at("stars.fits").string());
                    },
                    IngestFiles});
  const bool paper_errors = config.network.mode == SedSource::kPaperErrors;
  const StageDef predict{
      "predict",
      "UaRA-net SEDs of the ingested stars (or the paper's errors on the truth)",
      {"network", "random_seed"},
      paper_errors ? std::vector<std::string>{"stars.fits", "truth.fits"} : std::vector<std::string>{"stars.fits"},
      {"seds.fits"},
      [](const Config& c, const StageIo& io) {
        RunPredictStage(c.network.mode, c.network.model, c.network.device, c.network.batch, c.threads, c.random_seed,
                        io.config_hash, io.in.at("stars.fits").string(),
                        io.in.count("truth.fits") ? io.in.at("truth.fits").string() : std::string(),
                        io.out.at("seds.fits").string());
      },
      ModelFiles};
  const bool outside = OutsideObservations(config);
  if (files && (!outside || paper_errors)) {
    const bool from_prediction = TruthSedOf(config) == TruthSed::kPrediction;
    const StageDef truth{
        "truth",
        "true SEDs of the real stars (simulation.truth_sed) and their spectra for the Monte Carlo",
        {"random_seed", "simulation.truth_sed", "ingest.use_ormask", "sample.lamost_resolution"},
        from_prediction ? std::vector<std::string>{"stars.fits", "seds.fits"} : std::vector<std::string>{"stars.fits"},
        {"truth.fits", "lamost_truth.fits"},
        [](const Config& c, const StageIo& io) {
          TruthStageOptions o;
          o.sed = TruthSedOf(c);
          o.spectra_dir = c.ingest.spectra_dir;
          o.use_ormask = c.ingest.use_ormask;
          o.lamost = c.sample.lamost;
          RunTruthStage(o, c.random_seed, io.config_hash, io.in.at("stars.fits").string(),
                        io.in.count("seds.fits") ? io.in.at("seds.fits").string() : std::string(),
                        io.out.at("truth.fits").string(), io.out.at("lamost_truth.fits").string());
        },
        IngestFiles};
    // Producers come first: the truth reads the predictions, or (paper_errors) the reverse.
    if (from_prediction) {
      stages.push_back(predict);
      stages.push_back(truth);
    } else {
      stages.push_back(truth);
      stages.push_back(predict);
    }
  } else {
    stages.push_back(predict);
  }
  if (outside) {
    stages.push_back({"observations",
                      "extracted CSST spectra from observations.file matched to the ingested stars",
                      {"observations", "simulation", "random_seed"},
                      {"stars.fits"},
                      {"observations.fits"},
                      [](const Config& c, const StageIo& io) {
                        RunObservationsStage(c.observations, c.simulation.instrument, c.random_seed, io.config_hash,
                                             io.in.at("stars.fits").string(), io.out.at("observations.fits").string());
                      },
                      [](const Config& c) {
                        auto files = InstrumentFiles(c);
                        files.push_back(c.observations.file);
                        return files;
                      }});
  } else {
  stages.push_back({"simulate",
                    "CSST slitless observations through the injected true flat",
                    {"simulation", "random_seed"},
                    {"stars.fits", "truth.fits"},
                    {"observations.fits", "true_flat.fits"},
                    [](const Config& c, const StageIo& io) {
                      RunSimulateStage(c.simulation.instrument, c.simulation.flat, c.simulation.observe,
                                       c.random_seed, Mix64(c.random_seed + c.simulation.seed), io.config_hash,
                                       io.in.at("stars.fits").string(), io.in.at("truth.fits").string(),
                                       io.out.at("observations.fits").string(), io.out.at("true_flat.fits").string());
                    },
                    InstrumentFiles});
  }
  stages.push_back({"compare",
                    "observed / predicted count ratios per star, band and wavelength",
                    {"compare", "simulation", "random_seed"},
                    {"observations.fits", "seds.fits", "stars.fits"},
                    {"ratios.fits"},
                    [](const Config& c, const StageIo& io) {
                      RunCompareStage(c.simulation.instrument, c.compare, c.random_seed, io.config_hash,
                                      io.in.at("observations.fits").string(), io.in.at("seds.fits").string(),
                                      io.in.at("stars.fits").string(), io.out.at("ratios.fits").string());
                    },
                    InstrumentFiles});
  stages.push_back({"fit",
                    "2D polynomial flat per detector and wavelength (Ceres)",
                    {"flatfield", "simulation"},
                    {"ratios.fits"},
                    {"flat_coeffs.fits"},
                    [](const Config& c, const StageIo& io) {
                      RunFitStage(c.simulation.instrument, c.flatfield, c.random_seed, io.config_hash,
                                  io.in.at("ratios.fits").string(), io.out.at("flat_coeffs.fits").string());
                    },
                    InstrumentFiles});
  stages.push_back({"assemble",
                    "flat cubes for reduction software (aXe polynomial cube, JWST-style reference cube, quicklooks)",
                    {"assemble", "simulation"},
                    outside ? std::vector<std::string>{"flat_coeffs.fits", "ratios.fits", "seds.fits"}
                            : std::vector<std::string>{"flat_coeffs.fits", "ratios.fits", "seds.fits", "true_flat.fits"},
                    {"flatcube"},
                    [](const Config& c, const StageIo& io) {
                      RunAssembleStage(c.simulation.instrument, c.assemble, c.random_seed, io.config_hash,
                                       io.in.at("flat_coeffs.fits").string(), io.in.at("ratios.fits").string(),
                                       io.in.at("seds.fits").string(),
                                       io.in.count("true_flat.fits") ? io.in.at("true_flat.fits").string() : "",
                                       io.out.at("flatcube").string());
                    },
                    InstrumentFiles});
  if (outside) return stages;  // no injected truth to validate against
  stages.push_back(
      {"validate",
       "the shipped cube and a Monte Carlo study against the injected truth, and the report",
       {"validate", "simulation", "compare", "flatfield", "network", "ingest", "random_seed"},
       {"stars.fits", "truth.fits", "lamost_truth.fits", "seds.fits", "true_flat.fits", "flat_coeffs.fits", "flatcube"},
       {"validation.json", "validation.fits", "report"},
       [](const Config& c, const StageIo& io) {
         ValidateInputs in{io.in.at("stars.fits").string(),       io.in.at("truth.fits").string(),
                           io.in.at("lamost_truth.fits").string(), io.in.at("true_flat.fits").string(),
                           io.in.at("flat_coeffs.fits").string(),  io.in.at("flatcube").string(),
                           io.in.at("seds.fits").string(),         c.source_path,
                           c.network.mode, c.network.model, c.network.device, c.network.batch, c.threads,
                           c.ingest.prepare};
         RunValidateStage(c.simulation.instrument, c.simulation.observe, c.compare, c.flatfield, c.validate,
                          c.random_seed, Mix64(c.random_seed + c.simulation.seed), io.config_hash, in,
                          {io.out.at("validation.json").string(), io.out.at("validation.fits").string(),
                           io.out.at("report").string()});
       },
       [](const Config& c) {
         auto files = ModelFiles(c);
         for (auto& f : InstrumentFiles(c)) files.push_back(f);
         return files;
       }});
  return stages;
}

}  // namespace csst
