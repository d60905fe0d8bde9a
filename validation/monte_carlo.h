// Monte Carlo calibration study (stage validate): N realizations, each with fresh LAMOST noise (so
// fresh network predictions), fresh CSST noise and optionally fresh star positions; the flat is
// fitted and compared with the injected truth on a grid of detector points.
// Per band and wavelength: precision = RMS over detector points and realizations of
// (fitted - true) / true; bias = their mean; coverage = fraction with |fitted - true| < the fit's
// reported 1-sigma. Realization r depends only on (seed, r): results do not depend on threads.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "core/bands.h"
#include "core/enum_names.h"
#include "core/prepare.h"
#include "core/spectrum.h"
#include "flatfield/compare.h"
#include "flatfield/cube_fit.h"
#include "flatfield/flat_fitter.h"
#include "instrument/instrument.h"
#include "io/catalogue.h"
#include "io/fits.h"
#include "simulation/csst/observe.h"
#include "simulation/csst/true_flat.h"

namespace csst {

// auto: batch the realizations' predictions when the network runs on a GPU.
enum class BatchRealizations { kAuto, kOn, kOff };
inline constexpr EnumNames<BatchRealizations, 3> kBatchRealizationsNames = {
    {{BatchRealizations::kAuto, "auto"},
     {BatchRealizations::kOn, "on"},
     {BatchRealizations::kOff, "off"}}};
constexpr const auto& NamesOf(BatchRealizations) { return kBatchRealizationsNames; }

struct MonteCarloOptions {
  int realizations = 100;
  bool fresh_positions = false;
  int sample_points = 16;  // per side of the detector grid used for the comparison
  // Stars a realization reads, predicts, observes and compares at a time (the config's star_block):
  // a block's spectra are all it holds of them. Each star draws from the random streams of its
  // index in the sample, so the study does not depend on it (the network's predictions to float
  // rounding: another batch composition).
  int star_block = 2048;
  // Realizations run at once on a CPU (each with its fit table; the others wait): 0 = one per
  // thread while their tables stay within 2 GB together (RealizationsInFlight).
  int in_flight = 0;
  bool report = true;
  // Predict each chunk of realizations in one call (batched across stars and realizations)
  // instead of one call per realization. MonteCarloStudy reads `batch_realizations`; validate sets
  // it from `batch` (auto: on with a GPU; on a CPU per-realization calls overlap the fits and are
  // faster: dr7 0.548 against 0.887 s per realization on 2 cores).
  BatchRealizations batch = BatchRealizations::kAuto;
  bool batch_realizations = false;
  // Where the expected observations of the stars are spilled, to be read back in every realization
  // (an unlinked scratch file, ~71 kB a star; "" = the system's temporary directory).
  std::string scratch_dir;
  void Validate() const;
};

// Network (or paper_errors) predictions for `count` consecutive realizations from `first` at once
// (batched across stars and realizations), for the n stars of a block from star `first_star` on:
// flux/err (count * n) x 2238, realization-major -> mu/sigma (count * n) x 574 in the same order.
// flux/err are empty when inputs are not needed.
using PredictFn = std::function<void(int first, int count, size_t first_star, size_t n,
                                     const std::vector<float>& flux, const std::vector<float>& err,
                                     std::vector<float>* mu, std::vector<float>* sigma)>;

// What a study needs of its stars. The spectra are not held: each realization reads them a block of
// stars at a time (first, count) through the two readers, which may be called from several threads
// at once.
struct MonteCarloInputs {
  std::vector<StarRecord> stars;    // the ingested stars
  std::vector<double> z;            // their redshift (rest frame for preparation)
  std::vector<double> window_flux;  // truth
  // Observed-frame noiseless LAMOST spectra with sigma in err.
  std::function<std::vector<Spectrum>(size_t first, size_t count)> lamost_noiseless;
  // True SEDs on TruthGrid(), scaled to 1 in the window.
  std::function<std::vector<std::vector<double>>(size_t first, size_t count)> sed_fine;
  bool inputs_needed = true;  // false: the predictions ignore the LAMOST inputs (paper_errors), so
                              // no fresh LAMOST noise is drawn or prepared
  // Per band (GU, GV, GI): the SED error common to all stars, added in quadrature to each fit's
  // sigma as the shipped ERR does (products.h AssembleOptions::systematic).
  std::array<double, 3> systematic = {0, 0, 0};
  PrepareOptions prepare;  // the run's own ingest preparation (min_coverage is not re-applied: the
                           // stars passed it at ingest, and a noisier copy must not drop out)
};

// How many realizations of n_stars run at once on `threads` threads: mc.in_flight when set, else
// one per thread as long as their fit tables (RatioTable::BytesPerStar, and half again for a
// vector's spare capacity) stay within 2 GB together; at least one.
int RealizationsInFlight(const MonteCarloOptions& mc, size_t n_stars, int threads,
                         const Instrument& inst);

struct BandSummary {
  double precision = 0, bias = 0,
         coverage = 0;  // medians over the band's wavelengths (coverage: mean)
  // Precision after dividing fitted/true by its mean over the band's detectors at each wavelength:
  // the part a sensitivity curve calibrated through the same flat cannot absorb.
  double relative_precision = 0;
  double unit_flat_precision =
      0;  // the precision of F = 1 (no flat-fielding): the baseline to beat
  std::vector<double> wavelength, precision_by_wavelength, bias_by_wavelength,
      coverage_by_wavelength;
  std::map<int, int>
      degree_count;  // the flat's degree in this band -> number of realizations fitted with it
};

struct MonteCarloResult {
  int realizations = 0;
  size_t n_stars = 0;
  BandArray<std::optional<BandSummary>> bands;  // none for a band without comparison points
  // Per detector: std over realizations of the fitted flat at the sample points, [slice][point].
  std::vector<std::string> detector_names;
  std::vector<std::vector<double>> detector_wavelengths;
  std::vector<std::vector<std::vector<double>>> err_mc;
  // Realization 0 material for the report.
  std::vector<double> residual_sample;  // (fitted - true) / true, all points, realization 0
  std::vector<std::vector<std::vector<double>>> fitted0;  // realization 0: [det][slice][point]
  std::vector<float> mu0, sigma0;                         // predictions of realization 0
  std::vector<StarObservation> obs0;
};

// Everything a study needs, as one problem: the instrument and the injected truth (not owned: they
// outlive the study), each step's options, the stars and the network.
struct MonteCarloProblem {
  const Instrument* instrument = nullptr;
  const TrueFlat* truth = nullptr;
  ObserveOptions observe;
  CompareOptions compare;
  FlatFitOptions fit;
  MonteCarloOptions options;
  MonteCarloInputs inputs;
  PredictFn predict;
  uint64_t seed = 0;            // the realizations' noise
  uint64_t placement_seed = 0;  // the stars' fixed positions (the simulate stage's)
};

// A Monte Carlo study (stage validate) built from its problem, which the constructor checks; Run()
// places the stars, computes what the realizations share, runs and reduces them, one step per
// method below.
class MonteCarloStudy {
 public:
  explicit MonteCarloStudy(MonteCarloProblem problem);
  MonteCarloResult Run() const;
  const MonteCarloProblem& problem() const { return problem_; }

 private:
  struct State;         // one Run's working set (monte_carlo.cpp)
  struct BlockInputs {  // a block's prepared network inputs, stars x 2238 each
    float* flux;
    float* err;
  };
  struct BlockPredictions {  // a block's predictions, stars x 574 each
    const float* mu;
    const float* sigma;
  };
  // What the realizations share: placements, blocks of stars, comparison points.
  void Prepare(State& s) const;
  // With fixed positions in spectral mode: every star's expected counts, once, to a scratch file.
  void SpillExpectedCounts(State& s) const;
  // Realizations start .. end - 1 of this rank: one by one (CPU) or together (GPU).
  void RunChunk(State& s, int start, int end) const;
  void RunChunkBatched(State& s, int start, int end) const;
  // A realization's own star positions (fresh_positions; else none: the fixed ones serve).
  std::vector<StarObservation> Place(int r) const;
  // Fresh LAMOST noise on a block's noiseless spectra, prepared as the network's inputs.
  void PrepareInputs(State& s, int r, size_t first, const std::vector<Spectrum>& spectra,
                     BlockInputs inputs) const;
  // Fresh CSST noise on block b and its observed/predicted ratios into the realization's table.
  void ObserveAndCompare(State& s, int r, size_t b, const std::vector<StarObservation>& placed_r,
                         RatioTable& table, BlockPredictions predicted) const;
  // The realization's flat fit, and its values and ERR at the comparison points.
  void FitAndCompare(State& s, int r, const RatioTable& table) const;
  // Checks that a chunk finished and brings it to rank 0; true where it is reduced.
  bool Collect(State& s, int start, int end) const;
  // Adds realization r to the accumulators (in realization order).
  void Reduce(State& s, int r) const;
  // Per band and wavelength summaries from the accumulators.
  MonteCarloResult Summarize(State& s) const;

  MonteCarloProblem problem_;
};

// The cube that ships, read back through FlatProduct (the reader a user has) from
// `flatcube_dir`/flat_<DET>.fits and compared with the truth at the same sample points and slice
// wavelengths as the Monte Carlo: precision, bias, coverage of its ERR, relative precision.
struct ShippedCubeSummary {
  double precision = 0, bias = 0, coverage = 0, relative_precision = 0;
  long points = 0;
  double systematic = 0;  // the SYSERR term the cube's ERR holds
  double systematic_for_68 =
      0;  // the term that would have given the fit part of ERR 68.27% coverage
};
// The smallest s >= 0 for which a fraction `target` of the points has |error| < sqrt(var + s^2);
// points: (|fitted - true|, variance of the fit part of ERR). 0 if the fit part alone covers.
double QuadratureTermForCoverage(const std::vector<std::array<double, 2>>& points, double target);

// systematic: per band, the SYSERR the cube's ERR holds in quadrature (seds.fits).
BandArray<std::optional<ShippedCubeSummary>> ValidateShippedCube(
    const Instrument& inst, const TrueFlat& truth, const FlatCube& coeffs,
    const std::string& flatcube_dir, int sample_points, const std::array<double, 3>& systematic);

// validation.json (layout of the issue) and validation.fits. sed_bias_json: SedBiasJson of the
// run's predictions against the truth (validation/sed_bias.h), kept as "sed_bias" when not empty.
// flat_mode: the flat fit's mode (independent | joint), which says which SYSERR calibration the
// file's systematic_for_68 serves (`calibrate --systematic-from`).
std::string MonteCarloJson(const MonteCarloResult& r, const std::string& config_path, uint64_t seed,
                           const std::string& flat_mode,
                           const BandArray<std::optional<ShippedCubeSummary>>& shipped = {},
                           const std::string& sed_bias_json = "");
void WriteMonteCarloFits(const std::string& path, const MonteCarloResult& r, int sample_points,
                         double nx, double ny, const Provenance& provenance);

// What `calibrate --systematic-from` reads back of a validation.json (MonteCarloJson's): the flat
// fit's mode, per band the shipped cube's systematic_for_68, and the run's config and seed. Throws
// Error naming the file and what is missing.
struct SystematicCalibration {
  FlatFitMode flat_mode = FlatFitMode::kIndependent;
  BandArray<double> systematic_for_68;
  std::string config;
  uint64_t seed = 0;
};
SystematicCalibration ReadSystematicCalibration(const std::string& validation_json);

}  // namespace csst
