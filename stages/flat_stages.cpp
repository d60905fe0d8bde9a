#include "stages/flat_stages.h"

#include <spdlog/fmt/fmt.h>

#include <algorithm>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>

#include "core/errors.h"
#include "core/files.h"
#include "core/grid.h"
#include "core/log.h"
#include "core/mpi_world.h"
#include "core/progress.h"
#include "flatfield/cube_fit.h"
#include "io/ingest.h"
#include "network/sed_network.h"
#include "simulation/dr7_sample.h"
#include "simulation/paper_errors.h"
#include "validation/report.h"
#include "validation/sed_bias.h"

namespace csst {
namespace {
constexpr int kCompareTag = 6;  // MPI tag of a block's ratios (core/mpi_world.h)
Provenance Prov(uint64_t seed, const std::string& hash, const std::string& what) {
  Provenance p;
  p.seed = seed;
  p.config_hash = hash;
  p.history.push_back(what);
  return p;
}
}  // namespace

CompareStageResult RunCompareStage(const CompareStageOptions& options, const StageRun& run) {
  const StageClock clock;
  const InstrumentOptions& io = options.instrument;
  const CompareOptions& o = options.compare;
  const std::string &observations = options.observations, &seds_path = options.seds,
                    &stars_path = options.stars;
  const uint64_t seed = run.seed;
  const Instrument inst(io);
  // The observations are read a block of stars at a time, in the order of stars.fits: memory holds
  // one block's spectra and ratios, not the file's.
  ObservationsReader file(observations, io.detectors_per_band);
  SedsReader seds(seds_path);  // read a block of stars at a time, like the observations
  const auto prepared = ReadPreparedStars(stars_path, /*with_inputs=*/false);
  // Joined by the identity of the star set, then by obsid within it.
  const std::string star_set = StarSetId(prepared);
  if (file.star_set() != star_set) {
    throw Error(observations + " was made for the star set " +
                (file.star_set().empty() ? "(none: no STARSET key)" : file.star_set()) +
                ", not for that of " + stars_path + " (" + star_set +
                "): rerun stage simulate or observations for these stars");
  }
  std::vector<int64_t> ids;
  for (const auto& s : prepared.stars) ids.push_back(s.obsid);
  CheckSedsOfStars(seds.obsid(), seds_path, ids, stars_path);
  size_t observed = 0;
  for (int64_t id : ids) observed += file.Has(id);
  if (observed != file.stars()) {
    throw Error(observations + ": " + std::to_string(file.stars() - observed) +
                " of its stars are not in " + stars_path);
  }
  if (prepared.window_flux.size() != ids.size()) {
    throw Error("compare: " + stars_path + " holds " + std::to_string(prepared.window_flux.size()) +
                " window fluxes for " + std::to_string(ids.size()) + " stars");
  }
  // Under MPI block b is compared by rank b mod K (each rank reads its blocks' observations and
  // SEDs) and rank 0 writes every block in star order.
  const bool writes = MpiWorld::Rank() == 0;
  std::unique_ptr<RatiosWriter> writer;
  if (writes)
    writer = std::make_unique<RatiosWriter>(
        options.ratios_out,
        Prov(seed, run.config_hash,
             std::string("csst-flatcube stage compare, flux scale ") + ToString(o.flux_scale)),
        inst.options().detectors_per_band);
  const size_t kBlock = static_cast<size_t>(std::max(1, options.star_block));
  ShareBlocks(
      (ids.size() + kBlock - 1) / kBlock, kCompareTag,
      [&](size_t b) {
        const size_t first = b * kBlock, count = std::min(kBlock, ids.size() - first);
        const auto obs =
            file.Read(ids.data() + first, count);  // a star without a spectrum: no ratios
        std::vector<float> mu, sigma;
        seds.Read(first, count, &mu, &sigma);
        auto rows = ComputeRatios(
            inst, o,
            CompareBlock{first, count, obs.data(), prepared.stars.data() + first,
                         prepared.window_flux.data() + first, mu.data(), sigma.data()},
            seed);
        CheckCancelled();  // a signal or a failed sibling stage ends the stage between blocks
        return rows;
      },
      [&](size_t, std::vector<StarRatios>&& rows) { writer->Append(rows); },
      [](ByteWriter& w, const std::vector<StarRatios>& rows) { PutRatios(w, rows); },
      [](ByteReader& r) { return GetRatios(r); });
  if (!writes) return CompareStageResult{};  // a worker rank: its blocks are with rank 0
  writer->Close();
  Logger("compare")->info("{} of {} stars observed; {} spectra", observed, ids.size(),
                          writer->rows());
  CompareStageResult r;
  r.stars = ids.size();
  r.stars_observed = observed;
  r.spectra = static_cast<size_t>(writer->rows());
  r.wall_seconds = clock.Seconds();
  return r;
}

FitStageResult RunFitStage(const FitStageOptions& options, const StageRun& run) {
  const StageClock clock;
  const Instrument inst(options.instrument);
  // The ratios are read in blocks into the fit's compact table: memory holds the usable points,
  // never every star's 574-pixel rows.
  // Under MPI detector d is fitted by rank d mod K, which keeps only its detectors' points; rank 0
  // receives every detector and writes the product.
  FitShare share;
  if (options.spread) {
    share.rank = MpiWorld::Rank();
    share.ranks = MpiWorld::Size();
  }
  RatioTable table(inst);
  if (share.ranks > 1) {
    table.keep_detector.resize(table.points.size());
    for (size_t d = 0; d < table.points.size(); ++d) table.keep_detector[d] = share.Owns(d);
  }
  ForEachRatioBlock(options.ratios, 2048,
                    [&](const std::vector<StarRatios>& block) { table.Add(block); });
  const auto cube = FitFlatCube(inst, options.fit, table, share);
  if (share.rank != 0) return FitStageResult{};  // a worker: its detectors are with rank 0
  for (const auto& w : cube.summary.warnings) Logger("fit")->warn("{}", w);
  Logger("fit")->info("{}", DescribeFit(cube));
  // A detector none of whose slices could be fitted has the placeholder flat 1 (DQ NOT_CONVERGED)
  // in every voxel: said by name; a cube with no fitted slice at all is not a product.
  const int need = std::max(options.fit.min_points, NumCoefficients(options.fit.order));
  int most_points = 0;
  long fitted_detectors = 0;
  for (const auto& d : cube.detectors) {
    int points = 0, fitted = 0;
    for (const auto& sl : d.slices) {
      points = std::max(points, sl.n_points);
      fitted += sl.converged;
    }
    most_points = std::max(most_points, points);
    fitted_detectors += fitted > 0;
    if (fitted == 0 && !d.slices.empty()) {
      Logger("fit")->warn(
          "detector {}: no slice fitted (at most {} points per slice, {} needed): its flat is 1 "
          "with DQ NOT_CONVERGED everywhere",
          d.name, points, need);
    }
  }
  if (fitted_detectors == 0) {
    throw Error(
        "fit: no slice of any detector could be fitted: at most " + std::to_string(most_points) +
        " points per slice, and a slice needs " + std::to_string(need) +
        " (flatfield.min_points = " + std::to_string(options.fit.min_points) + ", " +
        std::to_string(NumCoefficients(options.fit.order)) +
        " terms at flatfield.order = " + std::to_string(options.fit.order) +
        "): use more stars (sample.n_stars, or a larger catalogue) or a lower flatfield.order");
  }
  WriteFlatCoeffs(options.coeffs_out, cube,
                  Prov(run.seed, run.config_hash,
                       std::string("csst-flatcube stage fit, mode ") + ToString(options.fit.mode)));
  FitStageResult r;
  r.summary = cube.summary;
  r.termination = cube.joint_termination;
  r.wall_seconds = clock.Seconds();
  return r;
}

AssembleStageResult RunAssembleStage(const AssembleStageOptions& options, const StageRun& run) {
  const StageClock clock;
  AssembleOptions o = options.assemble;
  const Instrument inst(options.instrument);
  const auto cube = ReadFlatCoeffs(options.coeffs);
  o.systematic = ReadSedSystematic(options.seds, cube.mode == FlatFitMode::kJoint);
  const DetectorExtents extents = ReadRatioExtents(inst, options.ratios);
  // Observations from outside have no true flat: no truth comparisons then.
  std::optional<TrueFlat> truth;
  if (!options.true_flat.empty()) truth = TrueFlat::Read(options.true_flat);
  const std::function<double(int, double, double, double)> tf =
      [&](int d, double x, double y, double l) { return truth->Value(d, x, y, l); };
  WriteFlatProducts(options.dir_out, FlatProductsInput{&cube, &extents, truth ? &tf : nullptr},
                    inst, o, Prov(run.seed, run.config_hash, "csst-flatcube stage assemble"));
  AssembleStageResult r;
  r.detectors = static_cast<int>(cube.detectors.size());
  for (const auto& d : cube.detectors) r.slices += static_cast<long>(d.slices.size());
  r.truth_compared = truth.has_value();
  r.wall_seconds = clock.Seconds();
  return r;
}

std::vector<SedBiasRow> SampleSedBias(const StarTruth& st, const std::string& stars_path,
                                      const std::string& seds_path, const Instrument& inst) {
  const auto seds = ReadSeds(seds_path);
  std::vector<int64_t> ids;
  SedBiasInput in;
  for (const auto& s : st.stars) {
    ids.push_back(s.obsid);
    in.teff.push_back(s.teff);
    in.snr.push_back(s.snr_g);
  }
  CheckSedsOfStars(seds.obsid, seds_path, ids, stars_path);
  in.mu = &seds.mu;
  in.sed = &st.sed;
  return SedBiasTable(in, inst.bands());
}

ValidateStageResult RunValidateStage(const ValidateStageOptions& options, const StageRun& run) {
  const StageClock clock;
  const InstrumentOptions& io = options.instrument;
  const ObserveOptions& observe = options.observe;
  const CompareOptions& compare = options.compare;
  const FlatFitOptions& fit = options.fit;
  const MonteCarloOptions& mc = options.monte_carlo;
  const uint64_t seed = run.seed, sim_seed = options.sim_seed;
  const std::string& hash = run.config_hash;
  const ValidateInputs& in = options.in;
  const ValidateOutputs& out = options.out;
  const Instrument inst(io);
  const auto truth = TrueFlat::Read(in.true_flat);
  auto st = LoadStarTruth(in.stars, in.truth);
  // The stars' noiseless LAMOST spectra and fine true SEDs are read a block at a time in every
  // realization, never all held: joined here by obsid, one row per star.
  auto lamost = std::make_shared<NoiselessLamostReader>(in.lamost_truth);
  std::map<int64_t, long> at;
  for (size_t i = 0; i < lamost->obsid().size(); ++i) at[lamost->obsid()[i]] = static_cast<long>(i);
  std::vector<long> lamost_row;
  std::set<int64_t> asked;
  for (const auto& s : st.stars) {
    auto it = at.find(s.obsid);
    if (it == at.end())
      throw Error(in.lamost_truth + ": no noiseless spectrum for obsid " + std::to_string(s.obsid));
    if (!asked.insert(s.obsid).second)
      throw Error(in.lamost_truth + ": obsid " + std::to_string(s.obsid) +
                  " is asked for by two stars of " + in.stars);
    lamost_row.push_back(it->second);
  }
  MonteCarloInputs mi;
  mi.stars = st.stars;
  mi.z = st.z;
  mi.window_flux = st.window_flux;
  mi.lamost_noiseless = [lamost, lamost_row](size_t first, size_t count) {
    return lamost->Read(lamost_row.data() + first, count);
  };
  mi.sed_fine = [&st](size_t first, size_t count) { return st.SedFine(first, count); };
  mi.prepare = in.prepare;
  mi.inputs_needed = in.network_mode == SedSource::kModel;
  // the run's own predictions: the same ERR as the cube that ships
  mi.systematic = ReadSedSystematic(in.seds, options.fit.mode == FlatFitMode::kJoint);
  std::unique_ptr<SedPredictor> predictor;
  if (in.network_mode == SedSource::kModel)
    predictor = std::make_unique<SedPredictor>(in.model, in.predictor);
  std::vector<double> teff, snr;
  for (const auto& s : st.stars) {
    teff.push_back(s.teff);
    snr.push_back(s.snr_g);
  }
  const PredictFn predict = [&](int first, int count, size_t first_star, size_t n,
                                const std::vector<float>& flux, const std::vector<float>& err,
                                std::vector<float>* mu, std::vector<float>* sigma) {
    if (predictor) {
      auto p = predictor->Predict(flux, err, n * static_cast<size_t>(count), in.batch);
      *mu = std::move(p.mu);
      *sigma = std::move(p.sigma);
      return;
    }
    const size_t no = static_cast<size_t>(OutputGrid().size()), per = n * no;
    mu->assign(per * static_cast<size_t>(count), 0.0f);
    sigma->assign(mu->size(), 0.0f);
    for (int r = first; r < first + count; ++r) {
      const size_t at_r = static_cast<size_t>(r - first) * per;
      PaperErrorPredictions(PaperErrorStars{st.sed.data() + first_star, teff.data() + first_star,
                                            snr.data() + first_star, n, first_star},
                            seed, static_cast<uint64_t>(r) + 1, mu->data() + at_r,
                            sigma->data() + at_r);
    }
  };
  MonteCarloOptions mco = mc;
  mco.scratch_dir = std::filesystem::path(out.json).parent_path().string();
  mco.batch_realizations =
      mc.batch == BatchRealizations::kOn || (mc.batch == BatchRealizations::kAuto && predictor &&
                                             predictor->device() == ComputeDevice::kCuda);
  MonteCarloProblem problem;
  problem.instrument = &inst;
  problem.truth = &truth;
  problem.observe = observe;
  problem.compare = compare;
  problem.fit = fit;
  problem.options = mco;
  const std::array<double, 3> systematic = mi.systematic;
  problem.inputs = std::move(mi);
  problem.predict = predict;
  problem.seed = seed;
  problem.placement_seed = sim_seed;
  const auto res = MonteCarloStudy(std::move(problem)).Run();
  if (MpiWorld::Rank() != 0)
    return ValidateStageResult{};  // a worker rank: rank 0 reduces and writes
  // The cube that ships, read back as a user reads it, against the same truth.
  const auto shipped = ValidateShippedCube(inst, truth, ReadFlatCoeffs(in.flat_coeffs), in.flatcube,
                                           mc.sample_points, systematic);
  for (const auto& spec : kBands) {
    if (!shipped[spec.band]) continue;
    const ShippedCubeSummary& sc = *shipped[spec.band];
    Logger("validate")
        ->info(
            "{} shipped cube: precision {:.2e}, bias {:+.2e}, coverage of its ERR {:.3f} (SYSERR "
            "{:.4f}; {:.4f} "
            "would give 68%), relative precision {:.2e} ({} points)",
            spec.name, sc.precision, sc.bias, sc.coverage, sc.systematic, sc.systematic_for_68,
            sc.relative_precision, sc.points);
  }
  // The run's own predictions against the truth, by star class (what the cube inherits as its
  // bias).
  const auto sed_bias = SampleSedBias(st, in.stars, in.seds, inst);
  Logger("validate")->info("predicted against true SEDs:\n{}", SedBiasText(sed_bias));
  WriteTextAtomically(out.json,
                      MonteCarloJson(res, in.config_path, seed, ToString(options.fit.mode), shipped,
                                     SedBiasJson(sed_bias)) +
                          "\n");
  WriteMonteCarloFits(out.fits, res, mc.sample_points, io.detector_nx, io.detector_ny,
                      Prov(seed, hash, "csst-flatcube stage validate"));
  std::filesystem::create_directories(out.report_dir);
  if (mc.report)
    WriteReport(out.report_dir, res,
                ReportContext{&inst, &truth, &st.stars, &st.sed, in.config_path});
  ValidateStageResult r;
  r.realizations = mc.realizations;
  r.shipped = shipped;
  r.wall_seconds = clock.Seconds();
  return r;
}

std::string CompareStageResult::BriefReport() const {
  return fmt::format("{} of {} stars observed, {} ratio rows", stars_observed, stars, spectra);
}
std::string FitStageResult::BriefReport() const {
  std::string out =
      fmt::format("{} slices, {} failed; degree", summary.slices, summary.failed_slices);
  for (const auto& band : kBands)
    out += fmt::format(" {} {}", band.name,
                       summary.band_order.at(static_cast<size_t>(Index(band.band))));
  if (termination != FitTermination::kNotRun) {
    out += fmt::format("; joint: {} stars, {} iterations, {}", summary.stars, summary.iterations,
                       ToString(termination));
  }
  return out;
}
std::string AssembleStageResult::BriefReport() const {
  return fmt::format("{} detectors, {} slices{}", detectors, slices,
                     truth_compared ? ", compared with the truth" : "");
}
std::string ValidateStageResult::BriefReport() const {
  std::string out = fmt::format("{} realizations", realizations);
  std::string precision;
  for (const auto& b : kBands)
    if (shipped[b.band]) precision += fmt::format(" {} {:.3g}", b.name, shipped[b.band]->precision);
  if (!precision.empty()) out += "; shipped cube precision" + precision;
  return out;
}

}  // namespace csst
