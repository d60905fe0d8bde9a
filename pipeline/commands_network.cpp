// Network subcommands: grid (training set), train, evaluate, predict.
#include <cmath>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/bands.h"
#include "core/errors.h"
#include "core/files.h"
#include "core/log.h"
#include "core/spectrum.h"
#include "io/fits.h"
#include "io/ingest.h"
#include "io/spectrum_io.h"
#include "network/sed_network.h"
#include "pipeline/commands.h"
#include "pipeline/config.h"
#include "simulation/training_grid.h"
#include "stages/flat_stages.h"
#include "validation/monte_carlo.h"

namespace csst {

std::shared_ptr<ConfigArgs> AddConfigArgs(CLI::App* cmd) {
  auto a = std::make_shared<ConfigArgs>();
  cmd->add_option("CONFIG", a->path, "YAML configuration")->required();
  cmd->add_option("--set", a->sets, "override a config key: key=value (repeatable)");
  return a;
}

namespace {
// The train section with the run-wide seed and thread count filled in.
TrainOptions TrainOptionsOf(const Config& c) {
  TrainOptions o = c.train;
  o.seed = c.random_seed;
  if (o.threads == 0 && c.threads > 0) o.threads = c.threads;
  return o;
}
}  // namespace

CommandAction AddGridCommand(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "grid", "synthesize the UaRA-net training/test grid (config section grid)");
  auto args = AddConfigArgs(cmd);
  return [cmd, args]() -> int {
    if (!*cmd) return -1;
    const auto c = LoadConfig(args->path, args->sets);
    SetLogLevel(c.log_level);
    Provenance p;
    p.seed = c.random_seed;
    p.history.push_back("csst-flatcube grid " + args->path);
    std::filesystem::create_directories(std::filesystem::path(c.grid.out).parent_path());
    MakeTrainingGrid(c.grid.options, c.random_seed, c.grid.out, p);
    return 0;
  };
}

CommandAction AddTrainCommand(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "train", "train the UaRA-net (config section train); resumes from its checkpoint");
  auto args = AddConfigArgs(cmd);
  return [cmd, args]() -> int {
    if (!*cmd) return -1;
    const auto c = LoadConfig(args->path, args->sets);
    SetLogLevel(c.log_level);
    const TrainOptions o = TrainOptionsOf(c);
    std::filesystem::create_directories(std::filesystem::path(o.out).parent_path().empty()
                                            ? std::filesystem::path(".")
                                            : std::filesystem::path(o.out).parent_path());
    SetNetworkThreads(o.threads);
    const auto s = TrainNetwork(o);
    Logger("train")->info("done: {} epochs (best {}), {:.1f} s/epoch, {:.0f} spectra/s",
                          s.epochs_run, s.best_epoch, s.seconds_per_epoch, s.spectra_per_second);
    return 0;
  };
}

namespace {
// Real stars have no calibration simulation: their common SED error is measured on held-out library
// stars (`evaluate`'s common_error: per band the RMS over pixels of the star-median residual, less
// its sampling noise). Each file's value is averaged over its SNRs; files (libraries with their own
// flux calibration) are combined in quadrature (RMS), so that their disagreement counts. A per-star
// free scale cannot be credited with removing part of it without a simulation, so both terms get
// it.
void SetSystematicFromEvaluations(const std::string& model, const std::vector<std::string>& files) {
  BandArray<double> sys;
  std::string source;
  for (const auto& f : files) {
    std::map<std::string, std::vector<double>> per_band;
    try {
      const auto j = nlohmann::json::parse(ReadText(f));
      for (const auto& row : j.at("common_error"))
        per_band[row.at("band").get<std::string>()].push_back(row.at("common_error").get<double>());
      for (const auto& b : kBands) {
        const auto& v = per_band[b.name];
        if (v.empty()) throw Error(f + ": no common_error row for band " + std::string(b.name));
        double mean = 0;
        for (double x : v) mean += x / static_cast<double>(v.size());
        sys[b.band] += mean * mean / static_cast<double>(files.size());
      }
      source += (source.empty() ? "" : "; ") + f + " (grid " + j.at("grid").get<std::string>() +
                ", " + std::to_string(j.at("test_stars").get<long>()) + " test stars)";
    } catch (const nlohmann::json::exception& e) {
      throw Error(f +
                  ": not an evaluation JSON with common_error rows (band, common_error), grid and "
                  "test_stars (" +
                  e.what() + ")");
    }
  }
  for (double& s : sys) s = std::sqrt(s);
  source = "common error of held-out real stars, RMS over " + std::to_string(files.size()) +
           " evaluation(s): " + source;
  SetModelSystematic(model, sys, source, false);
  SetModelSystematic(model, sys, source, true);
  Logger("calibrate")
      ->info(
          "{}.json: systematic_error and systematic_error_free_scale GU {:.4f}, GV {:.4f}, GI "
          "{:.4f} from {}",
          model, sys[Band::kGU], sys[Band::kGV], sys[Band::kGI], source);
}
}  // namespace

CommandAction AddCalibrateCommand(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "calibrate",
      "recompute the per-band sigma calibration of train.out on the grid (weights unchanged); with "
      "--systematic-from or --systematic-from-evaluation, set its systematic SED error from "
      "calibration runs' "
      "validation.json or from evaluations of held-out real stars instead");
  auto args = AddConfigArgs(cmd);
  auto from = std::make_shared<std::vector<std::string>>();
  cmd->add_option("--systematic-from", *from,
                  "validation.json of one or more calibration simulations (other seeds than the "
                  "runs they serve): "
                  "the RMS over them of bands.<B>.shipped_cube.systematic_for_68 -> "
                  "systematic_error of train.out's "
                  "sidecar (systematic_error_free_scale when their flat_mode is joint)");
  auto from_eval = std::make_shared<std::vector<std::string>>();
  cmd->add_option("--systematic-from-evaluation", *from_eval,
                  "evaluation JSONs (`evaluate --out`) of held-out real stars, e.g. MILES and "
                  "STELIB: the RMS over them of "
                  "each one's common_error (averaged over its SNRs) -> both systematic terms of "
                  "train.out's sidecar")
      ->excludes(cmd->get_option("--systematic-from"));
  return [cmd, args, from, from_eval]() -> int {
    if (!*cmd) return -1;
    const auto c = LoadConfig(args->path, args->sets);
    SetLogLevel(c.log_level);
    if (!from_eval->empty()) {
      SetSystematicFromEvaluations(c.train.out, *from_eval);
      return 0;
    }
    if (from->empty()) {
      SetNetworkThreads(c.train.threads);
      RecalibrateModel(TrainOptionsOf(c));
      return 0;
    }
    // One calibration seed is one draw of the error common to all stars: the term that gives 68 %
    // on it scatters from seed to seed, so several are combined in quadrature (RMS).
    // The runs' flat-fit mode says which term they calibrate: known fluxes (independent) or free
    // per-star scales (joint); all must agree.
    BandArray<double> sys;
    std::string source, mode;
    for (const auto& f : *from) {
      const SystematicCalibration cal = ReadSystematicCalibration(f);
      const std::string m = ToString(cal.flat_mode);
      if (!mode.empty() && m != mode)
        throw Error(f + ": flat_mode " + m + " differs from the " + mode +
                    " of the files before it (calibrate one term at a time)");
      mode = m;
      for (const auto& b : kBands) {
        const double s = cal.systematic_for_68[b.band];
        sys[b.band] += s * s / static_cast<double>(from->size());
      }
      source += (source.empty() ? "" : "; ") + f + " (config " + cal.config + ", seed " +
                std::to_string(cal.seed) + ")";
    }
    for (double& s : sys) s = std::sqrt(s);
    if (from->size() > 1)
      source = "RMS over " + std::to_string(from->size()) + " calibration runs: " + source;
    const bool free_scale = EnumFromName<FlatFitMode>(mode) == FlatFitMode::kJoint;
    SetModelSystematic(c.train.out, sys, source, free_scale);
    Logger("calibrate")
        ->info("{}.json: {} GU {:.4f}, GV {:.4f}, GI {:.4f} from {}", c.train.out,
               free_scale ? "systematic_error_free_scale" : "systematic_error", sys[Band::kGU],
               sys[Band::kGV], sys[Band::kGI], source);
    return 0;
  };
}

CommandAction AddEvaluateCommand(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "evaluate", "evaluate the model on the grid's test split (paper Table 2 form)");
  auto args = AddConfigArgs(cmd);
  auto out = std::make_shared<std::string>("evaluation.json");
  cmd->add_option("--out", *out, "evaluation JSON path (a .txt table is written beside it)");
  auto sample = std::make_shared<bool>(false);
  cmd->add_flag("--sample", *sample,
                "instead of the test split: the config's own sample (output.dir: seds.fits against "
                "truth.fits, "
                "by Teff and SNR)");
  return [cmd, args, out, sample]() -> int {
    if (!*cmd) return -1;
    const auto c = LoadConfig(args->path, args->sets);
    SetLogLevel(c.log_level);
    if (*sample) {
      const std::filesystem::path dir = c.output.dir;
      const auto stars = (dir / "stars.fits").string(), truth = (dir / "truth.fits").string(),
                 seds_path = (dir / "seds.fits").string();
      for (const auto& p : {stars, truth, seds_path})
        if (!std::filesystem::exists(p))
          throw Error("evaluate --sample: " + p +
                      " does not exist (run the config's predict and truth stages first)");
      const auto rows = SampleSedBias(LoadStarTruth(stars, truth), stars, seds_path,
                                      Instrument(c.simulation.instrument));
      const std::string text = SedBiasText(rows);
      WriteTextAtomically(*out, SedBiasJson(rows) + "\n");
      std::printf("%s", text.c_str());
      return 0;
    }
    SetNetworkThreads(c.threads);
    const SedPredictor pred(c.network.model, c.network.predictor);
    EvaluateOptions eo;
    eo.seed = c.random_seed;
    eo.batch = c.network.batch;
    std::string table;
    const auto doc = EvaluateNetwork(pred, c.train.grid, eo, &table);
    WriteTextAtomically(*out, doc + "\n");
    std::string txt = *out;
    const auto dot = txt.rfind(".json");
    txt = (dot == std::string::npos ? txt : txt.substr(0, dot)) + ".txt";
    WriteTextAtomically(txt, table);
    std::printf("%s", table.c_str());
    return 0;
  };
}

CommandAction AddPredictCommand(CLI::App& app) {
  auto* cmd = app.add_subcommand("predict",
                                 "predict R=200 SEDs (and sigma) of spectrum files with a model "
                                 "(unusable files are listed; exit 1 if any)");
  auto model =
      std::make_shared<std::string>(kRealStarModel);  // real spectra: the real-star weights
  auto out = std::make_shared<std::string>();
  auto device = std::make_shared<ComputeDevice>(ComputeDevice::kAuto);
  auto files = std::make_shared<std::vector<std::string>>();
  cmd->add_option(
      "--model", *model,
      "model path without extension (MODEL.pt + MODEL.json; default: the real-star weights)");
  cmd->add_option("--out", *out, "output FITS (table SEDS: MU, SIGMA on the 574-pixel grid)")
      ->required();
  cmd->add_option("--device", *device, "auto | cpu | cuda")
      ->transform(CLI::CheckedTransformer(
          std::map<std::string, ComputeDevice>{{"auto", ComputeDevice::kAuto},
                                               {"cpu", ComputeDevice::kCpu},
                                               {"cuda", ComputeDevice::kCuda}},
          CLI::ignore_case));
  cmd->add_option("FILE", *files, "spectra: LAMOST (DR7/DR8), MILES, STELIB, CALSPEC, NGSL, BOSZ")
      ->required();
  return [cmd, model, out, device, files]() -> int {
    if (!*cmd) return -1;
    CheckOutputPath("predict --out", *out, *files);
    PrepareOptions po;
    po.min_coverage = 0.5;
    std::vector<float> flux, err;
    std::vector<std::string> names, rejected_files, rejected_reasons, domain;
    std::vector<int64_t> ids;
    const IngestOptions selection;  // the training domain is the pipeline's selection: SNR, Teff
    for (const auto& f : *files) {
      try {  // one unusable file does not stop the batch: it is listed with its reason
        const auto any = ReadAnySpectrum(f);
        const auto in = PrepareNetworkInput(any.spectrum, any.z, po, f);
        flux.insert(flux.end(), in.flux.begin(), in.flux.end());
        err.insert(err.end(), in.err.begin(), in.err.end());
        names.push_back(f);
        ids.push_back(any.id);
        const std::string why = TrainingDomainReason(InputSnr(in), any.teff, selection);
        domain.push_back(why);
      } catch (const Cancelled&) {
        throw;
      } catch (const Error& e) {
        rejected_files.push_back(f);
        rejected_reasons.push_back(e.what());
      }
    }
    for (size_t i = 0; i < rejected_files.size(); ++i) {
      std::fprintf(stderr, "rejected: %s\n", rejected_reasons[i].c_str());
    }
    if (names.empty()) {
      throw Error("predict: none of the " + std::to_string(files->size()) +
                  " file(s) is usable; nothing written");
    }
    PredictorOptions po_net;
    po_net.device = *device;
    *model = ResolveShippedModel(*model);
    const SedPredictor pred(*model, po_net);
    const auto p = pred.Predict(flux, err, names.size());
    Provenance prov;
    prov.history.push_back("csst-flatcube predict --model " + *model);
    SedTable t;
    t.obsid = ids;
    t.file = names;
    t.mu = p.mu;
    t.sigma = p.sigma;
    t.domain = domain;
    t.rejected_file = rejected_files;
    t.rejected_reason = rejected_reasons;
    const auto& info = pred.info();
    if (info.systematic) t.systematic = info.systematic->values;
    if (info.systematic_free_scale) t.systematic_free_scale = info.systematic_free_scale->values;
    AtomicOutput atomic(*out);
    WriteSeds(atomic.temp().string(), t, prov);
    atomic.Commit();
    std::string outside;
    long n_outside = 0;
    for (size_t i = 0; i < domain.size(); ++i) {
      if (domain[i].empty()) continue;
      if (++n_outside <= 5)
        outside += (outside.empty() ? "" : ", ") + names[i] + " (" + domain[i] + ")";
    }
    if (n_outside > 0) {
      Logger("predict")->warn(
          "{} spectrum/spectra outside the training domain, predicted anyway (DOMAIN column): {}{}",
          n_outside, outside, n_outside > 5 ? ", ..." : "");
    }
    Logger("predict")->info("wrote {} ({} spectra predicted, {} rejected, {})", *out, names.size(),
                            rejected_files.size(), ToString(pred.device()));
    return rejected_files.empty() ? 0 : 1;  // 1: the product holds the usable files only
  };
}

}  // namespace csst
