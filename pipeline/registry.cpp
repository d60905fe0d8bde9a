// The pipeline's stages: which products each reads and writes and which config sections it
// depends on. Bodies only unpack the config and call the stage function.
//
// ingest.source = sample: sample -> ingest -> predict -> simulate -> compare -> fit -> assemble ->
// validate ingest.source = files:  ingest -> predict -> truth -> simulate -> ...  (no sample stage;
// the truth stage makes the "true" SEDs of the real stars, simulation.truth_sed; with network.mode
// = paper_errors it runs before predict, which perturbs its SEDs). observations.source = files:
// stage observations (outside spectra matched to the stars) takes the place of simulate; there is
// no injected truth, so no truth stage (unless paper_errors needs it), assemble writes the cube
// without truth comparisons, and validate does not run.
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

StageRun Run(const Config& c, const StageIo& io) { return {c.random_seed, io.config_hash}; }
// The simulation's noise seed (the true flat is drawn from random_seed itself).
uint64_t SimulationSeed(const Config& c) { return Mix64(c.random_seed + c.simulation.seed); }

bool FilesMode(const Config& c) { return c.ingest.source == IngestSource::kFiles; }
bool OutsideObservations(const Config& c) {
  return c.observations.source == ObservationsSource::kFiles;
}

// The fit runs on every MPI rank, each fitting its detectors, unless the joint fit is posed to
// Ceres (the reference solver, not shared).
bool FitSpread(const Config& c) {
  return !(c.flatfield.mode == FlatFitMode::kJoint &&
           c.flatfield.joint_solver == FlatJointSolver::kCeres);
}

}  // namespace

TruthSed TruthSedOf(const Config& c) {
  return c.simulation.truth_sed == TruthSedChoice::kSynthesizer ? TruthSed::kSynthesizer
                                                                : TruthSed::kPrediction;
}

std::vector<StageDef> PipelineStages(const Config& config) {
  const bool files = FilesMode(config);
  std::vector<StageDef> stages;
  if (!files) {
    stages.push_back({"sample",
                      "simulated LAMOST DR7-like sample: catalogue, LAMOST files, truth",
                      {"random_seed", "sample"},
                      {},
                      {"catalogue.fits", "lamost", "truth.fits", "lamost_truth.fits"},
                      [](const Config& c, const StageIo& io) {
                        SampleStageOptions o;
                        o.sample = c.sample;
                        o.out = {io.out.at("catalogue.fits"), io.out.at("lamost"),
                                 io.out.at("truth.fits"), io.out.at("lamost_truth.fits")};
                        return ReportOf(RunSampleStage(o, Run(c, io)));
                      }});
    stages.back().distributed = true;  // stars synthesized per MPI rank
  }
  stages.push_back(
      {"ingest",
       "select LAMOST stars and prepare the normalised 2238-pixel network inputs",
       {"ingest"},
       files ? std::vector<std::string>{} : std::vector<std::string>{"catalogue.fits", "lamost"},
       {"stars.fits"},
       [](const Config& c, const StageIo& io) {
         const bool sample = c.ingest.source == IngestSource::kSample;
         IngestStageOptions o;
         o.ingest = c.ingest;
         o.catalogue = sample ? io.in.at("catalogue.fits").string() : c.ingest.catalogue;
         o.spectra_dir = sample ? io.in.at("lamost").string() : c.ingest.spectra_dir;
         o.stars_out = io.out.at("stars.fits").string();
         return ReportOf(RunIngestStage(o, Run(c, io)));
       },
       IngestFiles});
  stages.back().distributed = true;  // blocks of the catalogue read and prepared per MPI rank
  const bool paper_errors = config.network.mode == SedSource::kPaperErrors;
  const StageDef predict{"predict",
                         "UaRA-net SEDs of the ingested stars (or the paper's errors on the truth)",
                         {"network", "random_seed", "star_block"},
                         paper_errors ? std::vector<std::string>{"stars.fits", "truth.fits"}
                                      : std::vector<std::string>{"stars.fits"},
                         {"seds.fits"},
                         [](const Config& c, const StageIo& io) {
                           PredictStageOptions o;
                           o.mode = c.network.mode;
                           o.model = c.network.model;
                           o.predictor = c.network.predictor;
                           o.batch = c.network.batch;
                           o.star_block = c.star_block;
                           o.stars = io.in.at("stars.fits").string();
                           o.truth = io.in.count("truth.fits") ? io.in.at("truth.fits").string()
                                                               : std::string();
                           o.seds_out = io.out.at("seds.fits").string();
                           return ReportOf(RunPredictStage(o, Run(c, io)));
                         },
                         ModelFiles,
                         !paper_errors};  // the network's share of stars per MPI rank
  const bool outside = OutsideObservations(config);
  if (files && (!outside || paper_errors)) {
    const bool from_prediction = TruthSedOf(config) == TruthSed::kPrediction;
    StageDef truth{
        "truth",
        "true SEDs of the real stars (simulation.truth_sed) and their spectra for the Monte Carlo",
        {"random_seed", "simulation.truth_sed", "ingest.use_ormask", "sample.lamost_resolution",
         "star_block"},
        from_prediction ? std::vector<std::string>{"stars.fits", "seds.fits"}
                        : std::vector<std::string>{"stars.fits"},
        {"truth.fits", "lamost_truth.fits"},
        [](const Config& c, const StageIo& io) {
          TruthStageOptions o;
          o.sed = TruthSedOf(c);
          o.spectra_dir = c.ingest.spectra_dir;
          o.use_ormask = c.ingest.use_ormask;
          o.lamost = c.sample.lamost;
          o.star_block = c.star_block;
          o.stars = io.in.at("stars.fits").string();
          o.seds = io.in.count("seds.fits") ? io.in.at("seds.fits").string() : std::string();
          o.truth_out = io.out.at("truth.fits").string();
          o.lamost_truth_out = io.out.at("lamost_truth.fits").string();
          return ReportOf(RunTruthStage(o, Run(c, io)));
        },
        IngestFiles};
    truth.distributed = true;  // blocks of stars made per MPI rank
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
                      {"observations", "simulation", "random_seed", "star_block"},
                      {"stars.fits"},
                      {"observations.fits"},
                      [](const Config& c, const StageIo& io) {
                        ObservationsStageOptions o;
                        o.observations = c.observations;
                        o.instrument = c.simulation.instrument;
                        o.star_block = c.star_block;
                        o.stars = io.in.at("stars.fits").string();
                        o.observations_out = io.out.at("observations.fits").string();
                        return ReportOf(RunObservationsStage(o, Run(c, io)));
                      },
                      [](const Config& c) {
                        auto files = InstrumentFiles(c);
                        files.push_back(c.observations.file);
                        return files;
                      },
                      /*distributed=*/true});  // blocks of the file's rows matched per MPI rank
  } else {
    stages.push_back({"simulate",
                      "CSST slitless observations through the injected true flat",
                      {"simulation", "random_seed", "star_block"},
                      {"stars.fits", "truth.fits"},
                      {"observations.fits", "true_flat.fits"},
                      [](const Config& c, const StageIo& io) {
                        SimulateStageOptions o;
                        o.instrument = c.simulation.instrument;
                        o.flat = c.simulation.flat;
                        o.observe = c.simulation.observe;
                        o.flat_seed = c.random_seed;
                        o.star_block = c.star_block;
                        o.stars = io.in.at("stars.fits").string();
                        o.truth = io.in.at("truth.fits").string();
                        o.observations_out = io.out.at("observations.fits").string();
                        o.true_flat_out = io.out.at("true_flat.fits").string();
                        return ReportOf(RunSimulateStage(o, {SimulationSeed(c), io.config_hash}));
                      },
                      InstrumentFiles});
    stages.back().distributed = true;  // blocks of stars observed per MPI rank
  }
  stages.push_back({"compare",
                    "observed / predicted count ratios per star, band and wavelength",
                    {"compare", "simulation", "random_seed", "star_block"},
                    {"observations.fits", "seds.fits", "stars.fits"},
                    {"ratios.fits"},
                    [](const Config& c, const StageIo& io) {
                      CompareStageOptions o;
                      o.instrument = c.simulation.instrument;
                      o.compare = c.compare;
                      o.star_block = c.star_block;
                      o.observations = io.in.at("observations.fits").string();
                      o.seds = io.in.at("seds.fits").string();
                      o.stars = io.in.at("stars.fits").string();
                      o.ratios_out = io.out.at("ratios.fits").string();
                      return ReportOf(RunCompareStage(o, Run(c, io)));
                    },
                    InstrumentFiles});
  stages.back().distributed = true;  // blocks of stars compared per MPI rank
  stages.push_back({"fit",
                    "2D polynomial flat per detector and wavelength (Ceres)",
                    {"flatfield", "simulation"},
                    {"ratios.fits"},
                    {"flat_coeffs.fits"},
                    [](const Config& c, const StageIo& io) {
                      FitStageOptions o;
                      o.instrument = c.simulation.instrument;
                      o.fit = c.flatfield;
                      o.spread = FitSpread(c);
                      o.ratios = io.in.at("ratios.fits").string();
                      o.coeffs_out = io.out.at("flat_coeffs.fits").string();
                      return ReportOf(RunFitStage(o, Run(c, io)));
                    },
                    InstrumentFiles});
  stages.back().distributed = FitSpread(config);  // detectors fitted per MPI rank
  stages.push_back(
      {"assemble",
       "flat cubes for reduction software (aXe polynomial cube, JWST-style reference cube, "
       "quicklooks)",
       {"assemble", "simulation"},
       outside ? std::vector<std::string>{"flat_coeffs.fits", "ratios.fits", "seds.fits"}
               : std::vector<std::string>{"flat_coeffs.fits", "ratios.fits", "seds.fits",
                                          "true_flat.fits"},
       {"flatcube"},
       [](const Config& c, const StageIo& io) {
         AssembleStageOptions o;
         o.instrument = c.simulation.instrument;
         o.assemble = c.assemble;
         o.coeffs = io.in.at("flat_coeffs.fits").string();
         o.ratios = io.in.at("ratios.fits").string();
         o.seds = io.in.at("seds.fits").string();
         o.true_flat = io.in.count("true_flat.fits") ? io.in.at("true_flat.fits").string() : "";
         o.dir_out = io.out.at("flatcube").string();
         return ReportOf(RunAssembleStage(o, Run(c, io)));
       },
       InstrumentFiles});
  if (outside) return stages;  // no injected truth to validate against
  stages.push_back(
      {"validate",
       "the shipped cube and a Monte Carlo study against the injected truth, and the report",
       {"validate", "simulation", "compare", "flatfield", "network", "ingest", "random_seed",
        "star_block"},
       {"stars.fits", "truth.fits", "lamost_truth.fits", "seds.fits", "true_flat.fits",
        "flat_coeffs.fits", "flatcube"},
       {"validation.json", "validation.fits", "report"},
       [](const Config& c, const StageIo& io) {
         ValidateStageOptions o;
         o.instrument = c.simulation.instrument;
         o.observe = c.simulation.observe;
         o.compare = c.compare;
         o.fit = c.flatfield;
         o.monte_carlo = c.validate;
         o.monte_carlo.star_block = c.star_block;
         o.sim_seed = SimulationSeed(c);
         ValidateInputs& in = o.in;
         in.stars = io.in.at("stars.fits").string();
         in.truth = io.in.at("truth.fits").string();
         in.lamost_truth = io.in.at("lamost_truth.fits").string();
         in.true_flat = io.in.at("true_flat.fits").string();
         in.flat_coeffs = io.in.at("flat_coeffs.fits").string();
         in.flatcube = io.in.at("flatcube").string();
         in.seds = io.in.at("seds.fits").string();
         in.config_path = c.source_path;
         in.network_mode = c.network.mode;
         in.model = c.network.model;
         in.predictor = c.network.predictor;
         in.batch = c.network.batch;
         in.prepare = c.ingest.prepare;
         o.out = {io.out.at("validation.json").string(), io.out.at("validation.fits").string(),
                  io.out.at("report").string()};
         return ReportOf(RunValidateStage(o, Run(c, io)));
       },
       [](const Config& c) {
         auto files = ModelFiles(c);
         for (auto& f : InstrumentFiles(c)) files.push_back(f);
         return files;
       }});
  stages.back().distributed = true;  // realizations spread over MPI ranks
  return stages;
}

}  // namespace csst
