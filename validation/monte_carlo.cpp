#include "validation/monte_carlo.h"

#include <tbb/parallel_for.h>
#include <tbb/task_arena.h>

#include <Eigen/Dense>
#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>

#include "core/bands.h"
#include "core/errors.h"
#include "core/files.h"
#include "core/grid.h"
#include "core/log.h"
#include "core/mpi_world.h"
#include "core/prepare.h"
#include "core/progress.h"
#include "core/rng.h"
#include "flatfield/cube_fit.h"
#include "flatfield/products.h"

namespace csst {

void MonteCarloOptions::Validate() const {
  if (realizations < 0) throw ConfigError("config error: validate.realizations must be >= 0");
  if (sample_points < 2) throw ConfigError("config error: validate.sample_points must be >= 2");
  if (star_block < 1) throw ConfigError("config error: star_block must be >= 1");
  if (in_flight < 0)
    throw ConfigError("config error: validate.realizations_in_flight must be >= 0");
}

int RealizationsInFlight(const MonteCarloOptions& mc, size_t n_stars, int threads,
                         const Instrument& inst) {
  if (mc.in_flight > 0) return mc.in_flight;
  const double table = 1.5 * RatioTable::BytesPerStar(inst) * static_cast<double>(n_stars);
  const double fit = table > 0 ? std::floor(2e9 / table) : threads;
  return static_cast<int>(std::clamp<double>(fit, 1, std::max(1, threads)));
}

namespace {
// Per realization: per detector, slice, point: (fitted, sigma, true).
struct RealOut {
  std::vector<std::vector<std::vector<double>>> fitted, sigma;  // [det][slice][point]
  std::vector<std::vector<int>> pixels;
  std::vector<double> gauge;  // per detector: the truth's value of the fit's gauge
  std::vector<double> residuals;
  std::vector<float> mu, sig;
  std::vector<StarObservation> obs;
  std::array<double, 6> seconds{};  // prepare, predict, observe, ratios, fit, compare
  FitSummary fit;
  bool joint_converged = true;
};

// Adds the seconds since it was made, or since its last lap, to one phase of a realization's clock.
class PhaseLaps {
 public:
  explicit PhaseLaps(std::array<double, 6>& seconds) : seconds_(seconds) {}
  void operator()(int phase) {
    const auto t1 = std::chrono::steady_clock::now();
    seconds_[static_cast<size_t>(phase)] += std::chrono::duration<double>(t1 - t0_).count();
    t0_ = t1;
  }

 private:
  std::array<double, 6>& seconds_;
  std::chrono::steady_clock::time_point t0_ = std::chrono::steady_clock::now();
};

constexpr int kRealizationTag = 2;  // MPI tag of a realization's result (core/mpi_world.h)

// A star's observation without its spectra: where it fell on which detectors (the report's map).
StarObservation PositionsOnly(const StarObservation& so) {
  StarObservation p;
  p.obsid = so.obsid;
  p.ra = so.ra;
  p.dec = so.dec;
  for (int b = 0; b < 3; ++b) {
    p.band[b].band = so.band[b].band;
    p.band[b].detector = so.band[b].detector;
    p.band[b].x0 = so.band[b].x0;
    p.band[b].y0 = so.band[b].y0;
    p.band[b].exptime = so.band[b].exptime;
  }
  return p;
}

// What the reduction reads of a realization other than 0 (0 never leaves rank 0), as one message.
std::vector<char> WriteRealization(const RealOut& o) {
  ByteWriter w;
  w.Put<uint64_t>(o.fitted.size());
  for (size_t d = 0; d < o.fitted.size(); ++d) {
    w.PutVector(o.pixels[d]);
    for (size_t sl = 0; sl < o.fitted[d].size(); ++sl) {
      w.PutVector(o.fitted[d][sl]);
      w.PutVector(o.sigma[d][sl]);
    }
  }
  w.PutVector(o.gauge);
  w.Put(o.seconds);
  w.Put<int64_t>(o.fit.iterations);
  w.Put<int64_t>(o.fit.failed_slices);
  for (int degree : o.fit.band_order) w.Put<int64_t>(degree);
  w.Put<uint64_t>(o.fit.warnings.size());
  for (const auto& s : o.fit.warnings) w.PutString(s);
  w.Put<uint8_t>(o.joint_converged ? 1 : 0);
  return std::move(w.bytes());
}

RealOut ReadRealization(const std::vector<char>& bytes) {
  ByteReader r(bytes);
  RealOut o;
  const size_t nd = r.Get<uint64_t>();
  o.fitted.resize(nd);
  o.sigma.resize(nd);
  o.pixels.resize(nd);
  for (size_t d = 0; d < nd; ++d) {
    o.pixels[d] = r.GetVector<int>();
    for (size_t sl = 0; sl < o.pixels[d].size(); ++sl) {
      o.fitted[d].push_back(r.GetVector<double>());
      o.sigma[d].push_back(r.GetVector<double>());
    }
  }
  o.gauge = r.GetVector<double>();
  o.seconds = r.Get<std::array<double, 6>>();
  o.fit.iterations = static_cast<int>(r.Get<int64_t>());
  o.fit.failed_slices = static_cast<long>(r.Get<int64_t>());
  for (int& degree : o.fit.band_order) degree = static_cast<int>(r.Get<int64_t>());
  const size_t nw = r.Get<uint64_t>();
  for (size_t i = 0; i < nw; ++i) o.fit.warnings.push_back(r.GetString());
  o.joint_converged = r.Get<uint8_t>() != 0;
  if (!r.done())
    throw Error(
        "Monte Carlo: a realization's MPI message is longer than expected (internal error)");
  return o;
}

// With unknown star fluxes (joint fit) the flat is determined up to the gauge "mean GV flat over
// the detector area at the gauge pixels (GaugePixels: centres in 5526-5586 A) = 1", imposed
// separately on every group of detectors linked by shared stars: the truth is compared under the
// same gauge. Mean true flat in the window per GV detector (1 elsewhere):
std::vector<double> GvWindowMeans(const Instrument& inst, const TrueFlat& truth) {
  const int per_band = inst.options().detectors_per_band;
  const double nx = inst.options().detector_nx, ny = inst.options().detector_ny;
  std::vector<double> gv_mean(static_cast<size_t>(3 * per_band), 1.0);
  for (int d = per_band; d < 2 * per_band; ++d) {
    double sum = 0;
    int cnt = 0;
    for (int px : GaugePixels())
      for (int j = 0; j < 32; ++j)
        for (int i = 0; i < 32; ++i) {
          sum += truth.Value(d, (i + 0.5) / 32 * (nx - 1), (j + 0.5) / 32 * (ny - 1),
                             OutputGrid().Centre(px));
          ++cnt;
        }
    gv_mean[static_cast<size_t>(d)] = sum / cnt;
  }
  return gv_mean;
}
// The truth's value of the fit's gauge for every detector of a fitted cube (1 in independent mode).
std::vector<double> TruthGauges(const std::vector<double>& gv_mean, const FlatCube& cube) {
  std::vector<double> g(cube.detectors.size(), 1.0);
  if (cube.mode != FlatFitMode::kJoint) return g;
  for (size_t d = 0; d < cube.detectors.size(); ++d) {
    double sum = 0;
    int cnt = 0;
    for (const auto& e : cube.detectors)
      if (e.band == 1 && e.component == cube.detectors[d].component)
        sum += gv_mean[static_cast<size_t>(e.detector)], ++cnt;
    g[d] = cnt > 0 ? sum / cnt : 1.0;
  }
  return g;
}
// RMS over detectors and points of (f/t) / mean(f/t) - 1 at one wavelength.
double RelativeRms(const std::vector<double>& ratio) {
  if (ratio.empty()) return NAN;
  double mean = 0;
  for (double v : ratio) mean += v;
  mean /= static_cast<double>(ratio.size());
  double ss = 0;
  for (double v : ratio) ss += (v / mean - 1) * (v / mean - 1);
  return std::sqrt(ss / static_cast<double>(ratio.size()));
}
// A block's noiseless LAMOST spectra (none when the predictions do not read inputs).
std::vector<Spectrum> ReadSpectra(const MonteCarloInputs& in, size_t first, size_t count) {
  return in.inputs_needed ? in.lamost_noiseless(first, count) : std::vector<Spectrum>();
}

void CheckPredictions(size_t no, const std::vector<float>& mu, const std::vector<float>& sigma,
                      size_t spectra) {
  if (mu.size() != spectra * no || sigma.size() != mu.size()) {
    throw Error("Monte Carlo: predictions for " + std::to_string(mu.size() / no) +
                " spectra, expected " + std::to_string(spectra) + " (internal error)");
  }
}

// The comparison points' basis values, one row per point.
using PointBasis = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
constexpr int kChunk = 16;  // realizations run, sent and reduced together
}  // namespace

MonteCarloStudy::MonteCarloStudy(MonteCarloProblem problem) : problem_(std::move(problem)) {
  if (!problem_.instrument || !problem_.truth)
    throw Error(
        "MonteCarloStudy: the problem needs its instrument and its true flat (internal error)");
  if (!problem_.predict)
    throw Error("MonteCarloStudy: the problem needs its predictions (internal error)");
  problem_.options.Validate();
}

// One Run()'s working set: what the realizations share (the blocks of stars, their fixed
// placements, the spilled expected counts, the comparison points), the realizations in flight, and
// the reduction's accumulators.
struct MonteCarloStudy::State {
  size_t n = 0;   // stars
  int ni = 0;     // input pixels
  size_t no = 0;  // output pixels
  int per = 0;    // detectors per band
  int top_order = 0;
  int in_flight = 1;
  bool batch = false;  // the realizations of a chunk go through the stars together
  bool reuse_expected = false;
  std::vector<double> gv_mean;
  std::vector<StarObservation> placed_fixed;  // positions (no spectra) of fixed placements
  std::vector<size_t> block_first;            // the blocks of stars
  size_t star_block = 0;
  std::unique_ptr<ScratchFile> spill;
  std::vector<std::array<uint64_t, 2>>
      spill_at;  // per block: offset and size of its expected observations
  std::vector<std::array<double, 2>> point;  // the comparison points
  std::vector<PointBasis> points_of_order;   // their basis values per degree
  FlatFitOptions fit_quiet;
  std::vector<RealOut> outs;
  std::vector<char> done;
  std::unique_ptr<Progress> progress;
  std::mutex predict_mu;
  // The reduction, in realization order.
  std::vector<std::vector<int>> pixels0;  // [det][slice] of realization 0
  std::vector<std::vector<std::array<double, 5>>>
      acc;  // [det][slice]: sum e, sum e2, n, covered, sum u2
  std::vector<std::vector<std::vector<double>>> sum_f, sum_f2, true_value;  // [det][slice][point]
  std::array<double, 6> seconds{};
  // (band, pixel) -> sum of the per-realization relative rms^2 and its count; f/t of one
  // realization.
  std::vector<std::array<double, 2>> relative;
  std::vector<std::vector<double>> ratio_at;
  // The fits' summaries, reduced: realization 0's warnings (structural, the same in every
  // realization), iterations, flagged slices and unconverged joint fits.
  std::vector<std::string> fit_warnings;
  double fit_iterations = 0, fit_failed = 0;
  int fit_iter_max = 0;
  long joint_unconverged = 0;
  std::array<std::map<int, int>, 3> degree_count;  // per band: degree -> realizations

  size_t BlockCount(size_t b) const { return std::min(star_block, n - block_first[b]); }
};

MonteCarloResult MonteCarloStudy::Run() const {
  const MonteCarloOptions& mc = problem_.options;
  State s;
  Prepare(s);
  // With MPI (`mpirun -np K`) realization r runs on rank r mod K; rank 0 receives the others'
  // results and reduces every realization in realization order, so the study is the same for any K
  // (and any threads). Realizations run in chunks and are reduced as each chunk ends, so memory
  // stays bounded for any number of realizations.
  for (int start = 0; start < mc.realizations; start += kChunk) {
    const int end = std::min(mc.realizations, start + kChunk);
    if (s.batch)
      RunChunkBatched(s, start, end);
    else
      RunChunk(s, start, end);
    if (!Collect(s, start, end)) continue;  // a worker rank: rank 0 reduces its realizations
    for (int r = start; r < end; ++r) {
      Reduce(s, r);
      if (r > 0) s.outs[static_cast<size_t>(r)] = RealOut{};  // realization 0 stays for the report
    }
  }
  if (MpiWorld::Rank() != 0) MpiWorld::WaitSends();
  s.progress->Finish();
  return Summarize(s);
}

// Places the stars, cuts them into blocks, computes once what every realization shares (with fixed
// positions in spectral mode the expected counts of every star through the instrument and the true
// flat, spilled to a scratch file: only the noise is drawn per realization, identical to a full
// Observe per realization) and the comparison points with their basis values.
void MonteCarloStudy::Prepare(State& s) const {
  const Instrument& inst = *problem_.instrument;
  const MonteCarloOptions& mc = problem_.options;
  const MonteCarloInputs& in = problem_.inputs;
  const FlatFitOptions& fit = problem_.fit;
  s.n = in.stars.size();
  s.ni = InputGrid().size();
  s.no = static_cast<size_t>(OutputGrid().size());
  s.per = inst.options().detectors_per_band;
  s.gv_mean = GvWindowMeans(inst, *problem_.truth);
  s.outs.resize(static_cast<size_t>(mc.realizations));
  s.done.assign(static_cast<size_t>(mc.realizations), 0);
  // Stars are streamed a block at a time in every realization: the noiseless LAMOST spectra and
  // true SEDs are read afresh (MonteCarloInputs' readers). Memory holds a block's spectra, never
  // the sample's.
  s.reuse_expected = problem_.observe.mode == ObserveMode::kSpectral && !mc.fresh_positions;
  if (!mc.fresh_positions)
    s.placed_fixed =
        PlaceSample(inst, problem_.observe, in.stars, in.window_flux, problem_.placement_seed);
  s.star_block = static_cast<size_t>(mc.star_block);
  for (size_t first = 0; first < s.n; first += s.star_block) s.block_first.push_back(first);
  if (s.reuse_expected && mc.realizations > 0) SpillExpectedCounts(s);
  // The comparison points and their basis values, one row per point (one detector geometry for
  // all detectors), per degree a band's flat may have (order_select kfold: any up to order_max).
  const int sp = mc.sample_points;
  const double nx = inst.options().detector_nx, ny = inst.options().detector_ny;
  s.point.resize(static_cast<size_t>(sp * sp));
  s.top_order =
      std::max(fit.order, fit.order_select == FlatOrderSelect::kKFold ? fit.order_max : 0);
  for (int order = 0; order <= s.top_order; ++order)
    s.points_of_order.emplace_back(sp * sp, NumCoefficients(order));
  for (int q = 0; q < sp * sp; ++q) {
    const int i = q % sp, j = q / sp;
    s.point[static_cast<size_t>(q)] = {(i + 0.5) / sp * (nx - 1), (j + 0.5) / sp * (ny - 1)};
    for (int order = 0; order <= s.top_order; ++order)
      FlatBasisInto(s.point[q][0], s.point[q][1], nx, ny, order,
                    s.points_of_order[static_cast<size_t>(order)].row(q).data());
  }
  s.relative.assign(3 * s.no, {0.0, 0.0});
  s.ratio_at.resize(3 * s.no);
  s.fit_quiet = fit;
  s.fit_quiet.progress = false;
  s.progress = std::make_unique<Progress>("validate", mc.realizations);
  s.in_flight = RealizationsInFlight(mc, s.n, tbb::this_task_arena::max_concurrency(), inst);
  // A GPU batches a chunk's realizations; with MPI each rank runs its own one by one.
  s.batch = mc.batch_realizations && MpiWorld::Size() == 1;
  if (!s.batch && mc.realizations > 1)
    Logger("validate")
        ->info("{} realization(s) at a time (validate.realizations_in_flight {})",
               std::min(s.in_flight, mc.realizations),
               mc.in_flight > 0 ? std::to_string(mc.in_flight) : std::string("auto"));
}

// The expected counts of every star at its fixed position, a block at a time, to the scratch file.
void MonteCarloStudy::SpillExpectedCounts(State& s) const {
  const MonteCarloOptions& mc = problem_.options;
  s.spill =
      std::make_unique<ScratchFile>(mc.scratch_dir.empty() ? std::filesystem::temp_directory_path()
                                                           : std::filesystem::path(mc.scratch_dir));
  Progress expecting("validate: expected counts", static_cast<long>(s.n));
  for (size_t b = 0; b < s.block_first.size(); ++b) {
    const size_t first = s.block_first[b], count = s.BlockCount(b);
    std::vector<StarObservation> block(
        s.placed_fixed.begin() + static_cast<std::ptrdiff_t>(first),
        s.placed_fixed.begin() + static_cast<std::ptrdiff_t>(first + count));
    const auto sed_fine = problem_.inputs.sed_fine(first, count);
    ObserveExpectedBlock(*problem_.instrument, *problem_.truth, problem_.observe, block.data(),
                         sed_fine.data(), count);
    ByteWriter w;
    for (const auto& so : block) PutObservation(w, so);
    s.spill_at.push_back({s.spill->Append(w.bytes()), w.bytes().size()});
    expecting.Tick(static_cast<long>(count));
  }
  expecting.Finish();
}

// Where realization r places its stars (positions only): anew with fresh positions, else none (the
// fixed ones are in the state).
std::vector<StarObservation> MonteCarloStudy::Place(int r) const {
  const MonteCarloInputs& in = problem_.inputs;
  return problem_.options.fresh_positions
             ? PlaceSample(*problem_.instrument, problem_.observe, in.stars, in.window_flux,
                           Mix64(problem_.placement_seed + static_cast<uint64_t>(r) + 1))
             : std::vector<StarObservation>();
}

// Step 1. Fresh LAMOST noise -> prepared inputs of realization r for the stars of a block
// (`spectra`, from star `first` on) into flux/err (count x 2238 each).
void MonteCarloStudy::PrepareInputs(State& s, int r, size_t first,
                                    const std::vector<Spectrum>& spectra,
                                    BlockInputs inputs) const {
  const MonteCarloInputs& in = problem_.inputs;
  PhaseLaps lap(s.outs[static_cast<size_t>(r)].seconds);
  PrepareOptions po = in.prepare;
  po.min_coverage = 0.0;
  tbb::parallel_for(size_t{0}, spectra.size(), [&](size_t k) {  // each star from its own stream
    const size_t i = first + k;
    Spectrum sp = spectra[k];
    Rng rng(problem_.seed, "mc-lamost", static_cast<uint64_t>(r) * 1000003ULL + i);
    for (size_t j = 0; j < sp.size(); ++j) {
      if (sp.mask[j]) continue;
      sp.flux[j] += sp.err[j] * rng.Normal();
    }
    const auto p =
        PrepareNetworkInput(sp, in.z[i], po, "star " + std::to_string(in.stars[i].obsid));
    std::copy(p.flux.begin(), p.flux.end(), inputs.flux + k * static_cast<size_t>(s.ni));
    std::copy(p.err.begin(), p.err.end(), inputs.err + k * static_cast<size_t>(s.ni));
  });
  lap(0);
}

// Steps 3-4. Fresh CSST noise (and positions) and the ratios of block b of realization r with its
// predictions, into the fit's compact table (16 bytes a usable point). Each star draws from the
// streams of its index in the sample, so the blocks give exactly what one pass over all stars
// gives.
void MonteCarloStudy::ObserveAndCompare(State& s, int r, size_t b,
                                        const std::vector<StarObservation>& placed_r,
                                        RatioTable& table, BlockPredictions predicted) const {
  const MonteCarloOptions& mc = problem_.options;
  const MonteCarloInputs& in = problem_.inputs;
  RealOut& o = s.outs[static_cast<size_t>(r)];
  PhaseLaps lap(o.seconds);
  const size_t first = s.block_first[b], count = s.BlockCount(b);
  const uint64_t pseed = mc.fresh_positions
                             ? Mix64(problem_.placement_seed + static_cast<uint64_t>(r) + 1)
                             : problem_.placement_seed;
  const std::string stream = "mc-noise-" + std::to_string(r);
  std::vector<StarObservation> drawn;
  if (s.reuse_expected) {
    const auto bytes = s.spill->Read(s.spill_at[b][0], s.spill_at[b][1]);
    ByteReader reader(bytes);
    std::vector<StarObservation> expected;
    expected.reserve(count);
    for (size_t i = 0; i < count; ++i) expected.push_back(GetObservation(reader));
    if (!reader.done())
      throw Error(
          "Monte Carlo: a block of expected observations is longer than expected (internal "
          "error)");
    drawn = DrawObservationNoise(expected.data(), count, first, problem_.observe, pseed, stream);
  } else {
    const auto& from = mc.fresh_positions ? placed_r : s.placed_fixed;
    drawn.assign(from.begin() + static_cast<std::ptrdiff_t>(first),
                 from.begin() + static_cast<std::ptrdiff_t>(first + count));
    const auto sed_fine = in.sed_fine(first, count);
    ObserveBlock(*problem_.instrument, *problem_.truth, problem_.observe,
                 ObserveBlockInput{drawn.data(), sed_fine.data(), count, first, pseed, stream});
  }
  lap(2);
  table.Add(
      ComputeRatios(*problem_.instrument, problem_.compare,
                    CompareBlock{first, count, drawn.data(), in.stars.data() + first,
                                 in.window_flux.data() + first, predicted.mu, predicted.sigma},
                    Mix64(problem_.seed + static_cast<uint64_t>(r))));
  if (r == 0) {  // the report's star positions (where each star fell, not its spectra) and
                 // predictions
    for (const auto& so : drawn) o.obs.push_back(PositionsOnly(so));
    o.mu.insert(o.mu.end(), predicted.mu, predicted.mu + count * s.no);
    o.sig.insert(o.sig.end(), predicted.sigma, predicted.sigma + count * s.no);
  }
  lap(3);
}

// Steps 5-6. The fit of realization r and its comparison with the truth at the sample points.
void MonteCarloStudy::FitAndCompare(State& s, int r, const RatioTable& table) const {
  const TrueFlat& truth = *problem_.truth;
  RealOut& o = s.outs[static_cast<size_t>(r)];
  PhaseLaps lap(o.seconds);
  const auto cube = FitFlatCube(*problem_.instrument, s.fit_quiet, table);
  o.fit = cube.summary;
  o.joint_converged =
      cube.mode != FlatFitMode::kJoint || cube.joint_termination == FitTermination::kConvergence;
  lap(4);
  o.gauge = TruthGauges(s.gv_mean, cube);
  o.fitted.resize(cube.detectors.size());
  o.sigma.resize(cube.detectors.size());
  o.pixels.resize(cube.detectors.size());
  for (size_t d = 0; d < cube.detectors.size(); ++d) {
    const auto& det = cube.detectors[d];
    o.pixels[d] = det.pixels;
    const double es = problem_.inputs.systematic.at(static_cast<size_t>(det.band));
    for (size_t sl_i = 0; sl_i < det.slices.size(); ++sl_i) {
      // All sample points at once: f = P c, sigma_fit^2 = rows of (P Cov) .* P.
      const auto& sl = det.slices[sl_i];
      const Eigen::Index nc = static_cast<Eigen::Index>(sl.coeffs.size());
      if (sl.order < 0 || sl.order > s.top_order)
        throw Error("validate: a fitted slice has degree " + std::to_string(sl.order) + ", above " +
                    std::to_string(s.top_order));
      const PointBasis& points = s.points_of_order[static_cast<size_t>(sl.order)];
      Eigen::VectorXd f = Eigen::VectorXd::Zero(points.rows());
      Eigen::VectorXd var = Eigen::VectorXd::Zero(points.rows());
      if (nc == points.cols()) {
        f = points * Eigen::Map<const Eigen::VectorXd>(sl.coeffs.data(), nc);
        if (sl.covariance.size() == static_cast<size_t>(nc * nc)) {
          const Eigen::Map<
              const Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>>
              cov(sl.covariance.data(), nc, nc);
          var = (points * cov).cwiseProduct(points).rowwise().sum();
        }
      }
      std::vector<double> fv(f.data(), f.data() + f.size()), ev(static_cast<size_t>(f.size()));
      for (Eigen::Index q = 0; q < f.size(); ++q)
        ev[static_cast<size_t>(q)] = ShippedErr(var(q), sl.lack_of_fit, es);
      if (r == 0) {
        for (size_t q = 0; q < s.point.size(); ++q) {
          const double t = truth.Value(det.detector, s.point[q][0], s.point[q][1],
                                       OutputGrid().Centre(det.pixels[sl_i])) /
                           o.gauge[d];
          o.residuals.push_back((fv[q] - t) / t);
        }
      }
      o.fitted[d].push_back(std::move(fv));
      o.sigma[d].push_back(std::move(ev));
    }
  }
  lap(5);
  s.done[static_cast<size_t>(r)] = 1;
  s.progress->Tick();
}

// One chunk of realizations on a CPU: each realization goes through the stars on its own and
// predicts its blocks itself while others observe and fit (the forward pass already uses every
// core and is fastest at a few hundred spectra); in_flight at a time.
void MonteCarloStudy::RunChunk(State& s, int start, int end) const {
  const MonteCarloInputs& in = problem_.inputs;
  const int ranks = MpiWorld::Size(), me = MpiWorld::Rank();
  std::vector<int> my;  // this rank's realizations of the chunk
  for (int r = start; r < end; ++r)
    if (r % ranks == me) my.push_back(r);
  for (size_t g = 0; g < my.size(); g += static_cast<size_t>(s.in_flight)) {
    const size_t g_end = std::min(my.size(), g + static_cast<size_t>(s.in_flight));
    tbb::parallel_for(g, g_end, [&](size_t k) {
      const int r = my[k];
      // Isolated: a thread waiting inside this realization's parallel work takes no other
      // realization, so no more realizations (and their tables) are in flight than asked for.
      tbb::this_task_arena::isolate([&] {
        const auto placed_r = Place(r);
        RatioTable table(*problem_.instrument);
        for (size_t b = 0; b < s.block_first.size(); ++b) {
          const size_t first = s.block_first[b], stars = s.BlockCount(b);
          const auto spectra = ReadSpectra(in, first, stars);
          std::vector<float> flux(in.inputs_needed ? stars * static_cast<size_t>(s.ni) : 0),
              err(flux.size()), mu, sigma;
          if (in.inputs_needed)
            PrepareInputs(s, r, first, spectra, BlockInputs{flux.data(), err.data()});
          {
            PhaseLaps lap(s.outs[static_cast<size_t>(r)].seconds);
            std::lock_guard<std::mutex> lock(s.predict_mu);
            problem_.predict(r, 1, first, stars, flux, err, &mu, &sigma);
            lap(1);
          }
          CheckPredictions(s.no, mu, sigma, stars);
          ObserveAndCompare(s, r, b, placed_r, table, BlockPredictions{mu.data(), sigma.data()});
          CheckCancelled();
        }
        FitAndCompare(s, r, table);
      });
    });
  }
}

// One chunk of realizations together (mc.batch_realizations, a GPU): block by block, (1) each
// realization's inputs in parallel, (2) one prediction for all of them, (3) their noise and ratios
// in parallel; then their fits.
void MonteCarloStudy::RunChunkBatched(State& s, int start, int end) const {
  const MonteCarloInputs& in = problem_.inputs;
  const size_t count = static_cast<size_t>(end - start);
  std::vector<std::vector<StarObservation>> placed(count);
  std::vector<std::unique_ptr<RatioTable>> tables;
  for (int r = start; r < end; ++r)
    tables.push_back(std::make_unique<RatioTable>(*problem_.instrument));
  tbb::parallel_for(start, end, [&](int r) { placed[static_cast<size_t>(r - start)] = Place(r); });
  const size_t ni = static_cast<size_t>(s.ni);
  for (size_t b = 0; b < s.block_first.size(); ++b) {
    const size_t first = s.block_first[b], stars = s.BlockCount(b);
    const auto spectra = ReadSpectra(in, first, stars);
    std::vector<float> flux_all(in.inputs_needed ? count * stars * ni : 0),
        err_all(flux_all.size());
    std::vector<float> mu_all, sigma_all;
    tbb::parallel_for(start, end, [&](int r) {
      if (!in.inputs_needed) return;
      const size_t base = static_cast<size_t>(r - start) * stars * ni;
      PrepareInputs(s, r, first, spectra,
                    BlockInputs{flux_all.data() + base, err_all.data() + base});
    });
    CheckCancelled();
    const auto t0 = std::chrono::steady_clock::now();
    problem_.predict(start, static_cast<int>(count), first, stars, flux_all, err_all, &mu_all,
                     &sigma_all);
    CheckPredictions(s.no, mu_all, sigma_all, count * stars);
    const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    for (int r = start; r < end; ++r)
      s.outs[static_cast<size_t>(r)].seconds[1] += dt / static_cast<double>(count);
    flux_all = {};
    err_all = {};
    tbb::parallel_for(start, end, [&](int r) {
      const size_t k = static_cast<size_t>(r - start), base = k * stars * s.no;
      ObserveAndCompare(s, r, b, placed[k], *tables[k],
                        BlockPredictions{mu_all.data() + base, sigma_all.data() + base});
    });
  }
  tbb::parallel_for(start, end, [&](int r) {
    const size_t k = static_cast<size_t>(r - start);
    FitAndCompare(s, r, *tables[k]);
    tables[k].reset();
  });
}

// After a chunk: checks that this rank's realizations up to `end` finished (a cancelled task group
// ends parallel_for early without an exception), and with several ranks brings the chunk's
// realizations to rank 0 in order. True where the chunk is to be reduced (rank 0).
bool MonteCarloStudy::Collect(State& s, int start, int end) const {
  CheckCancelled();
  const int ranks = MpiWorld::Size(), me = MpiWorld::Rank();
  long finished = 0, expected_done = 0;
  for (int r = 0; r < end; ++r) {
    finished += s.done[static_cast<size_t>(r)] != 0;
    expected_done += r % ranks == me;
  }
  if (finished != expected_done) {
    throw Error("Monte Carlo stopped after " + std::to_string(finished) + " of " +
                std::to_string(problem_.options.realizations) + " realizations (cancelled)");
  }
  if (ranks == 1) return true;
  // A worker sends without waiting: it computes the next chunk while rank 0 receives this one; the
  // chunk before is waited for first, so at most two chunks are in flight.
  if (me != 0) MpiWorld::WaitSends();
  for (int r = start; r < end; ++r) {
    auto& o = s.outs[static_cast<size_t>(r)];
    if (me == 0 && r % ranks != 0) o = ReadRealization(MpiWorld::Recv(r % ranks, kRealizationTag));
    if (me != 0 && r % ranks == me) {
      MpiWorld::SendAsync(0, kRealizationTag, WriteRealization(o));
      o = RealOut{};
    }
  }
  return me == 0;
}

// Adds realization r to the accumulators (in realization order).
void MonteCarloStudy::Reduce(State& s, int r) const {
  const RealOut& o = s.outs[static_cast<size_t>(r)];
  const auto& point = s.point;
  if (s.pixels0.empty()) {
    s.pixels0 = o.pixels;
    const size_t nd = s.pixels0.size();
    s.acc.resize(nd);
    s.sum_f.resize(nd);
    s.sum_f2.resize(nd);
    s.true_value.resize(nd);
    for (size_t d = 0; d < nd; ++d) {
      const size_t ns = s.pixels0[d].size();
      s.acc[d].assign(ns, {0, 0, 0, 0, 0});
      s.sum_f[d].assign(ns, std::vector<double>(point.size(), 0.0));
      s.sum_f2[d].assign(ns, std::vector<double>(point.size(), 0.0));
      s.true_value[d].resize(ns);
      for (size_t sl = 0; sl < ns; ++sl) {
        const double lambda = OutputGrid().Centre(s.pixels0[d][sl]);
        for (const auto& pt : point)
          s.true_value[d][sl].push_back(
              problem_.truth->Value(static_cast<int>(d), pt[0], pt[1], lambda));
      }
    }
  }
  if (o.pixels != s.pixels0)
    throw Error("Monte Carlo: realizations fitted different slices (internal error)");
  for (auto& v : s.ratio_at) v.clear();
  for (size_t d = 0; d < s.pixels0.size(); ++d) {
    for (size_t sl = 0; sl < s.pixels0[d].size(); ++sl) {
      auto& a = s.acc[d][sl];
      for (size_t q = 0; q < point.size(); ++q) {
        const double t = s.true_value[d][sl][q] / o.gauge[d];
        const double f = o.fitted[d][sl][q];
        const double e = (f - t) / t;
        a[0] += e;
        a[1] += e * e;
        a[2] += 1;
        a[3] += std::abs(f - t) < o.sigma[d][sl][q] ? 1 : 0;
        a[4] += (1 - t) * (1 - t) / (t * t);  // what F = 1 (no flat at all) would score
        s.ratio_at[static_cast<size_t>(static_cast<int>(d) / s.per) * s.no +
                   static_cast<size_t>(s.pixels0[d][sl])]
            .push_back(f / t);
        s.sum_f[d][sl][q] += f;
        s.sum_f2[d][sl][q] += f * f;
      }
    }
  }
  for (size_t key = 0; key < s.ratio_at.size(); ++key) {
    if (s.ratio_at[key].empty()) continue;
    const double rms = RelativeRms(s.ratio_at[key]);
    s.relative[key][0] += rms * rms;
    s.relative[key][1] += 1;
  }
  for (size_t k = 0; k < s.seconds.size(); ++k) s.seconds[k] += o.seconds[k];
  if (s.fit_warnings.empty() && !o.fit.warnings.empty()) s.fit_warnings = o.fit.warnings;
  s.fit_iterations += o.fit.iterations;
  s.fit_iter_max = std::max(s.fit_iter_max, o.fit.iterations);
  s.fit_failed += static_cast<double>(o.fit.failed_slices);
  s.joint_unconverged += !o.joint_converged;
  for (size_t b = 0; b < 3; ++b) ++s.degree_count[b][o.fit.band_order[b]];
}

// The study's result from the accumulators: per band and wavelength precision, bias, coverage and
// relative precision, their medians per band, the std over realizations of each point, and
// realization 0's material for the report (rank 0; a worker rank returns the counts alone).
MonteCarloResult MonteCarloStudy::Summarize(State& s) const {
  const MonteCarloOptions& mc = problem_.options;
  auto log = Logger("validate");
  MonteCarloResult res;
  res.realizations = mc.realizations;
  res.n_stars = s.n;
  if (MpiWorld::Rank() != 0 || mc.realizations == 0) return res;
  const double n_r = mc.realizations;
  for (const auto& w : s.fit_warnings) log->warn("{} (every realization)", w);
  if (problem_.fit.mode == FlatFitMode::kJoint) {
    log->info("joint fits: {:.1f} iterations on average (at most {}), {} of {} not converged",
              s.fit_iterations / n_r, s.fit_iter_max, s.joint_unconverged, mc.realizations);
  }
  log->info("flat fits: {:.1f} slices per realization flagged (not converged or too few points)",
            s.fit_failed / n_r);
  const auto& sec = s.seconds;
  log->info(
      "per realization (thread-seconds): prepare {:.3f}, predict {:.3f}, observe {:.3f}, ratios "
      "{:.3f}, "
      "fit {:.3f}, compare {:.3f}",
      sec[0] / n_r, sec[1] / n_r, sec[2] / n_r, sec[3] / n_r, sec[4] / n_r, sec[5] / n_r);
  BandArray<std::map<int, std::array<double, 5>>>
      per_pixel;  // band -> pixel -> acc (over detectors)
  const auto& pixels0 = s.pixels0;
  res.detector_names.resize(pixels0.size());
  res.detector_wavelengths.resize(pixels0.size());
  res.err_mc.resize(pixels0.size());
  for (size_t d = 0; d < pixels0.size(); ++d) {
    const int band = static_cast<int>(d) / s.per;
    res.detector_names[d] = Instrument::DetectorName(band, static_cast<int>(d) % s.per);
    res.err_mc[d].resize(pixels0[d].size());
    for (size_t sl = 0; sl < pixels0[d].size(); ++sl) {
      const int pix = pixels0[d][sl];
      res.detector_wavelengths[d].push_back(OutputGrid().Centre(pix));
      auto& total = per_pixel[BandAt(band)][pix];
      for (size_t k = 0; k < total.size(); ++k) total[k] += s.acc[d][sl][k];
      auto& em = res.err_mc[d][sl];
      for (size_t q = 0; q < s.point.size(); ++q) {
        const double m = s.sum_f[d][sl][q] / n_r;
        em.push_back(mc.realizations > 1
                         ? std::sqrt(std::max(0.0, (s.sum_f2[d][sl][q] - n_r * m * m) / (n_r - 1)))
                         : 0.0);
      }
    }
  }
  for (const auto& spec : kBands) {
    const auto& pixels = per_pixel[spec.band];
    if (pixels.empty()) continue;
    BandSummary bs;
    for (const auto& [pix, a] : pixels) {
      bs.wavelength.push_back(OutputGrid().Centre(pix));
      bs.precision_by_wavelength.push_back(std::sqrt(a[1] / a[2]));
      bs.bias_by_wavelength.push_back(a[0] / a[2]);
      bs.coverage_by_wavelength.push_back(a[3] / a[2]);
    }
    std::vector<double> unit;
    for (const auto& [pix, a] : pixels) unit.push_back(std::sqrt(a[4] / a[2]));
    bs.unit_flat_precision = Median(unit);
    bs.precision = Median(bs.precision_by_wavelength);
    const int b = Index(spec.band);
    {
      std::vector<double> rel;
      for (const auto& [pix, a] : pixels) {
        const auto& rr = s.relative[static_cast<size_t>(b) * s.no + static_cast<size_t>(pix)];
        if (rr[1] > 0) rel.push_back(std::sqrt(rr[0] / rr[1]));
      }
      bs.relative_precision = rel.empty() ? NAN : Median(rel);
    }
    bs.bias = Median(bs.bias_by_wavelength);
    double c = 0;
    for (double v : bs.coverage_by_wavelength) c += v;
    bs.coverage = bs.coverage_by_wavelength.empty() ? NAN : c / bs.coverage_by_wavelength.size();
    bs.degree_count = s.degree_count[static_cast<size_t>(b)];
    std::string degrees;
    for (const auto& [degree, count] : bs.degree_count)
      degrees += (degrees.empty() ? "" : ", ") + std::to_string(count) + "x degree " +
                 std::to_string(degree);
    res.bands[spec.band] = bs;
    log->info(
        "{}: precision {:.2e} (relative {:.2e}), bias {:+.2e}, coverage(1 sigma) {:.3f} over {} "
        "realizations; flat {}",
        spec.name, bs.precision, bs.relative_precision, bs.bias, bs.coverage, mc.realizations,
        degrees);
  }
  RealOut& o0 = s.outs[0];
  res.residual_sample = std::move(o0.residuals);
  res.fitted0 = o0.fitted;
  res.mu0 = std::move(o0.mu);
  res.sigma0 = std::move(o0.sig);
  res.obs0 = std::move(o0.obs);
  return res;
}

double QuadratureTermForCoverage(const std::vector<std::array<double, 2>>& points, double target) {
  if (points.empty()) return 0.0;
  auto coverage_with = [&](double extra) {
    long in = 0;
    for (const auto& p : points) in += p[0] < std::sqrt(p[1] + extra * extra);
    return static_cast<double>(in) / static_cast<double>(points.size());
  };
  if (coverage_with(0) >= target) return 0.0;
  double lo = 0, hi = 1;
  while (coverage_with(hi) < target && hi < 1e6) hi *= 2;
  for (int it = 0; it < 60; ++it) {  // coverage grows with the term: bisection
    const double mid = 0.5 * (lo + hi);
    (coverage_with(mid) < target ? lo : hi) = mid;
  }
  return hi;
}

BandArray<std::optional<ShippedCubeSummary>> ValidateShippedCube(
    const Instrument& inst, const TrueFlat& truth, const FlatCube& coeffs,
    const std::string& flatcube_dir, int sp, const std::array<double, 3>& systematic) {
  const double nx = inst.options().detector_nx, ny = inst.options().detector_ny;
  const auto gauges = TruthGauges(GvWindowMeans(inst, truth), coeffs);
  // (band, pixel) -> sum e, sum e2, n, covered; and the f/t values for the relative precision.
  std::map<std::pair<int, int>, std::array<double, 4>> acc;
  std::map<std::pair<int, int>, std::vector<double>> ratio_at;
  std::array<std::vector<std::array<double, 2>>, 3>
      err_points;  // per band: (|f - t|, ERR^2 - SYSERR^2)
  for (size_t d = 0; d < coeffs.detectors.size(); ++d) {
    const auto& det = coeffs.detectors[d];
    const FlatProduct product(flatcube_dir + "/flat_" + det.name + ".fits");
    for (size_t s = 0; s < det.pixels.size(); ++s) {
      const double lambda = OutputGrid().Centre(det.pixels[s]);
      for (int q = 0; q < sp * sp; ++q) {
        const double x = (q % sp + 0.5) / sp * (nx - 1), y = (q / sp + 0.5) / sp * (ny - 1);
        double err = 0, f = 0;
        try {
          f = product.Evaluate(x, y, lambda, &err);
        } catch (const Error&) {
          continue;  // a slice wavelength outside the shipped cube's range: not shipped, not judged
        }
        const double t = truth.Value(det.detector, x, y, lambda) / gauges[d];
        auto& a = acc[{det.band, det.pixels[s]}];
        const double e = (f - t) / t;
        a[0] += e;
        a[1] += e * e;
        a[2] += 1;
        a[3] += std::abs(f - t) < err ? 1 : 0;
        ratio_at[{det.band, det.pixels[s]}].push_back(f / t);
        const double sys = systematic.at(static_cast<size_t>(det.band));
        err_points[static_cast<size_t>(det.band)].push_back(
            {std::abs(f - t), std::max(0.0, err * err - sys * sys)});
      }
    }
  }
  BandArray<std::optional<ShippedCubeSummary>> out;
  for (int b = 0; b < 3; ++b) {
    std::vector<double> prec, bias, cov, rel;
    long points = 0;
    for (const auto& [key, a] : acc) {
      if (key.first != b) continue;
      prec.push_back(std::sqrt(a[1] / a[2]));
      bias.push_back(a[0] / a[2]);
      cov.push_back(a[3] / a[2]);
      rel.push_back(RelativeRms(ratio_at[key]));
      points += static_cast<long>(a[2]);
    }
    if (prec.empty()) continue;
    ShippedCubeSummary sc;
    sc.precision = Median(prec);
    sc.bias = Median(bias);
    double c = 0;
    for (double v : cov) c += v;
    sc.coverage = c / static_cast<double>(cov.size());
    sc.relative_precision = Median(rel);
    sc.points = points;
    sc.systematic = systematic.at(static_cast<size_t>(b));
    sc.systematic_for_68 = QuadratureTermForCoverage(err_points[static_cast<size_t>(b)], 0.6827);
    out[BandAt(b)] = sc;
  }
  return out;
}

std::string MonteCarloJson(const MonteCarloResult& r, const std::string& config_path, uint64_t seed,
                           const std::string& flat_mode,
                           const BandArray<std::optional<ShippedCubeSummary>>& shipped,
                           const std::string& sed_bias_json) {
  nlohmann::json bands = nlohmann::json::object();
  for (const auto& spec : kBands) {
    if (!r.bands[spec.band]) continue;
    const BandSummary& b = *r.bands[spec.band];
    const std::string name = spec.name;
    nlohmann::json pbw = nlohmann::json::array();
    for (size_t i = 0; i < b.wavelength.size(); ++i)
      pbw.push_back({b.wavelength[i], b.precision_by_wavelength[i]});
    bands[name] = {{"precision", b.precision},
                   {"bias", b.bias},
                   {"coverage_1sigma", b.coverage},
                   {"relative_precision", b.relative_precision},
                   {"unit_flat_precision", b.unit_flat_precision},
                   {"precision_by_wavelength", pbw}};
    nlohmann::json degrees =
        nlohmann::json::object();  // degree (as text) -> realizations fitted with it
    for (const auto& [degree, count] : b.degree_count) degrees[std::to_string(degree)] = count;
    bands[name]["flat_degree_count"] = degrees;
  }
  for (const auto& spec : kBands) {
    if (!shipped[spec.band]) continue;
    const ShippedCubeSummary& sc = *shipped[spec.band];
    bands[spec.name]["shipped_cube"] = {{"precision", sc.precision},
                                        {"bias", sc.bias},
                                        {"coverage_1sigma", sc.coverage},
                                        {"relative_precision", sc.relative_precision},
                                        {"points", sc.points},
                                        {"systematic_error", sc.systematic},
                                        {"systematic_for_68", sc.systematic_for_68}};
  }
  nlohmann::json j = {
      {"realizations", r.realizations}, {"n_stars", r.n_stars}, {"bands", bands},
      {"config", config_path},          {"seed", seed},         {"flat_mode", flat_mode}};
  if (!sed_bias_json.empty()) j["sed_bias"] = nlohmann::json::parse(sed_bias_json);
  return j.dump(1);
}

void WriteMonteCarloFits(const std::string& path, const MonteCarloResult& r, int sp, double nx,
                         double ny, const Provenance& prov) {
  FitsWriter w(path);
  Provenance p = prov;
  p.descrip = "Monte Carlo precision of the fitted flat against the injected truth";
  w.WritePrimary(p);
  w.Key("NREAL", static_cast<long>(r.realizations), "realizations");
  w.Key("NSTARS", static_cast<long>(r.n_stars), "stars");
  std::vector<std::string> band;
  std::vector<double> wave, prec, bias, cov;
  for (const auto& spec : kBands) {  // rows in band order
    if (!r.bands[spec.band]) continue;
    const BandSummary& b = *r.bands[spec.band];
    for (size_t i = 0; i < b.wavelength.size(); ++i) {
      band.push_back(spec.name);
      wave.push_back(b.wavelength[i]);
      prec.push_back(b.precision_by_wavelength[i]);
      bias.push_back(b.bias_by_wavelength[i]);
      cov.push_back(b.coverage_by_wavelength[i]);
    }
  }
  w.WriteTable("PRECISION", {{"BAND", "", band},
                             {"WAVELENGTH", "Angstrom", wave},
                             {"PRECISION", "", prec},
                             {"BIAS", "", bias},
                             {"COVERAGE_1SIGMA", "", cov}});
  w.Standard(p, "");
  for (size_t d = 0; d < r.err_mc.size(); ++d) {
    const long nl = static_cast<long>(r.err_mc[d].size());
    std::vector<float> cube;
    for (const auto& s : r.err_mc[d])
      for (double v : s) cube.push_back(static_cast<float>(v));
    w.WriteImage("ERR_MC_" + r.detector_names[d], {sp, sp, nl}, cube);
    Provenance q = p;
    q.detector = r.detector_names[d];
    q.filter = r.detector_names[d].substr(0, 2);
    q.descrip = "Monte Carlo 1-sigma of the fitted flat at sample points";
    w.Standard(q, "count/count");
    w.Key("CTYPE1", "DET_X", "");
    w.Key("CTYPE2", "DET_Y", "");
    w.Key("CTYPE3", "WAVE-TAB", "see WAVELENGTH_<DET>");
    w.Key("CRPIX1", 1.0, "");
    w.Key("CRPIX2", 1.0, "");
    w.Key("CRVAL1", 0.5 / sp * (nx - 1), "[pixel]");
    w.Key("CRVAL2", 0.5 / sp * (ny - 1), "[pixel]");
    w.Key("CDELT1", (nx - 1) / sp, "[pixel]");
    w.Key("CDELT2", (ny - 1) / sp, "[pixel]");
    w.Key("CUNIT1", "pixel", "");
    w.Key("CUNIT2", "pixel", "");
    w.WriteTable("WAVELENGTH_" + r.detector_names[d],
                 {{"WAVELENGTH", "Angstrom", r.detector_wavelengths[d]}});
    w.Standard(q, "");
  }
  w.Close();
}

SystematicCalibration ReadSystematicCalibration(const std::string& path) {
  SystematicCalibration c;
  try {
    const auto j = nlohmann::json::parse(ReadText(path));
    c.flat_mode = ParseEnumName<FlatFitMode, Error>(j.at("flat_mode").get<std::string>(),
                                                    path + ": flat_mode is");
    for (const auto& b : kBands)
      c.systematic_for_68[b.band] =
          j.at("bands").at(b.name).at("shipped_cube").at("systematic_for_68").get<double>();
    c.config = j.value("config", std::string("?"));
    c.seed = j.value("seed", uint64_t{0});
  } catch (const nlohmann::json::exception& e) {
    throw Error(path +
                ": not a validation.json with flat_mode and "
                "bands.<GU|GV|GI>.shipped_cube.systematic_for_68 (" +
                e.what() + ")");
  }
  return c;
}

}  // namespace csst
