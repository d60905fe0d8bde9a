// The run configuration: one schema in code (config.cpp), one key per Options field, same names.
// Defaults live in the Options structs. Only config.cpp reads YAML.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "core/enum_names.h"
#include "core/log.h"
#include "flatfield/compare.h"
#include "flatfield/flat_fitter.h"
#include "flatfield/products.h"
#include "instrument/instrument.h"
#include "io/ingest.h"
#include "network/sed_network.h"
#include "simulation/csst/observe.h"
#include "simulation/csst/true_flat.h"
#include "simulation/dr7_sample.h"
#include "simulation/training_grid.h"
#include "stages/observations_stage.h"
#include "stages/predict_stage.h"
#include "validation/monte_carlo.h"

namespace csst {

struct OutputOptions {
  std::string dir = "out/run";  // work directory of the run: products and manifest.json
};

struct GridConfig {
  GridOptions options;
  std::string out = "out/grid/grid.fits";  // the training grid file written by `grid`
};

// The shipped weights: trained on the built-in synthesizer's grid (what simulated samples are made
// of), and those fine-tuned on real library stars (STELIB and half of MILES): the default for real
// spectra (ingest.source: files, and `predict`).
inline constexpr const char* kGridModel = "network/models/uara_default";
inline constexpr const char* kRealStarModel = "network/models/uara_real";

struct NetworkOptions {
  std::string model = kGridModel;  // MODEL.pt + MODEL.json (without extension); kRealStarModel for
                                   // ingest.source: files unless network.model is set
  PredictorOptions predictor;      // network.device, network.engine; threads = the run's `threads`
  int batch = 2048;                // inference batch
  SedSource mode = SedSource::kModel;  // model: the UaRA-net; paper_errors: truth perturbed by the
                                       // paper's error table
};

// simulation.truth_sed: auto (= prediction), prediction or synthesizer (stages/truth_stage.h).
enum class TruthSedChoice { kAuto, kPrediction, kSynthesizer };
inline constexpr EnumNames<TruthSedChoice, 3> kTruthSedChoiceNames = {
    {{TruthSedChoice::kAuto, "auto"},
     {TruthSedChoice::kPrediction, "prediction"},
     {TruthSedChoice::kSynthesizer, "synthesizer"}}};
constexpr const auto& NamesOf(TruthSedChoice) { return kTruthSedChoiceNames; }

struct SimulationConfig {
  uint64_t seed = 1;  // CSST noise and placement stream (combined with random_seed)
  // The true SEDs of real stars (ingest.source = files): auto (= prediction), prediction or
  // synthesizer (stages/truth_stage.h). The simulated sample brings its own truth.
  TruthSedChoice truth_sed = TruthSedChoice::kAuto;
  InstrumentOptions instrument;
  TrueFlatOptions flat;
  ObserveOptions observe;
};

struct Config {
  uint64_t random_seed = 42;  // the run's one seed; items seed from (seed, stage, index)
  int threads = 0;            // worker threads; 0 = all cores
  int star_block = 2048;      // stars a streaming stage reads, computes and writes at a time
  LogLevel log_level = LogLevel::kInfo;
  OutputOptions output;
  Dr7SampleOptions sample;
  IngestOptions ingest;
  GridConfig grid;
  TrainOptions train;
  NetworkOptions network;
  SimulationConfig simulation;
  ObservationsOptions observations;
  CompareOptions compare;
  FlatFitOptions flatfield;
  AssembleOptions assemble;
  MonteCarloOptions validate;

  std::string source_path;                       // the YAML file ("" when built in code)
  std::map<std::string, std::string> locations;  // key -> "file:line:col" or "--set"
};

// One schema entry, for `csst-flatcube config --schema` and the docs.
struct SchemaEntry {
  std::string key, type, default_value, constraint, doc;
};
std::vector<SchemaEntry> DescribeSchema();

// Loads, applies `overrides` ("key=value", YAML scalar syntax) and validates everything.
// Throws ConfigError "config error: <key> = <value> violates <constraint> (<file>:<line>:<col>)".
// A relative model path (without extension) that does not exist from the working directory but does
// in the source tree names a shipped model: returns the source-tree path; any other path as given.
std::string ResolveShippedModel(const std::string& model);
Config LoadConfig(const std::string& path, const std::vector<std::string>& overrides = {});
// Same for a YAML document in memory (tests); `name` is used in messages.
Config LoadConfigText(const std::string& yaml, const std::string& name,
                      const std::vector<std::string>& overrides = {});

// Canonical text of every key under `section` ("" = top-level scalar keys, or a full key such as
// "random_seed"), one "key=value" line each, for hashing.
std::string SectionText(const Config& config, const std::string& section);
// Canonical text of the whole effective config (YAML-like), for `config --show`.
std::string DumpConfig(const Config& config);

}  // namespace csst
