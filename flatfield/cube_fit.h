// The flat of every detector at every output-grid wavelength of its band, from the ratios.
//
// Independent mode (the paper): one weighted robust 2D Legendre fit per (detector, wavelength)
// (FlatFitter), parallel over slices.
// Joint mode (unknown absolute fluxes): the model ratio = s_i F_dk(x, y) with a free scale s_i per
// star shared by all its wavelengths in all three bands, solved together with every slice of every
// detector by Ceres (sparse normal Cholesky), optionally with a smoothness penalty between
// neighbouring wavelengths (flatfield/joint_solver.h). Gauge: the mean of the GV flats over the
// detector area (= c_00 in the Legendre basis) at the GaugePixels is 1. Each slice's covariance
// then comes from its conditional fit with the scales fixed.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "flatfield/compare.h"
#include "flatfield/flat_fitter.h"
#include "flatfield/joint_solver.h"
#include "flatfield/order_select.h"
#include "instrument/instrument.h"
#include "io/fits.h"

namespace csst {

struct DetectorFlat {
  int detector = 0, band = 0;
  std::string name;               // GU1 .. GI4
  int order = 2;                  // degree of its band's flat (every slice's FlatSlice::order)
  std::vector<int> pixels;        // output-grid pixels of the band
  std::vector<FlatSlice> slices;  // one per pixel
  int component = -1;             // joint mode: the group of detectors linked by shared stars
                                  // (each group has its own gauge); -1 in independent mode
  double Evaluate(double x, double y, int slice) const { return slices[slice].Evaluate(x, y); }
};

// What a fit did (FitFlatCube logs nothing: it runs per realization inside a Monte Carlo).
struct FitSummary {
  long slices = 0, failed_slices = 0;
  // joint mode
  std::string solver;
  long residuals = 0;
  int stars = 0, iterations = 0;
  long linear_iterations = 0;  // conjugate-gradient iterations of the joint fit's steps
  int joint_order = 0;         // degree of the joint fit that gave the star scales
  std::array<int, 3> band_order = {0, 0, 0};  // the flat's degree per band (GU, GV, GI)
  double initial_cost = 0, seconds = 0, gauge = 1;
  std::vector<std::string> warnings;  // structural problems (degeneracies, no convergence)
  // per band (GU, GV, GI): the lack of fit given to every converged slice, and the number of star
  // pairs (summed over slices) it was measured from
  std::array<double, 3> lack_of_fit = {0, 0, 0};
  std::array<long, 3> lack_of_fit_pairs = {0, 0, 0};
};

struct FlatCube {
  FlatFitMode mode = FlatFitMode::kIndependent;
  int order = 2;                              // the highest degree of the three bands
  std::array<int, 3> band_order = {2, 2, 2};  // degree per band (GU, GV, GI)
  FlatOrderSelect order_select = FlatOrderSelect::kFixed;
  OrderSelection selection;  // kfold: how the degrees were chosen
  double nx = 9216, ny = 9232;
  std::vector<DetectorFlat> detectors;
  std::map<int64_t, double> star_scale;  // joint mode: fitted per-star scales (after the gauge)
  FitTermination joint_termination = FitTermination::kNotRun;  // NOT_RUN: independent mode
  std::string joint_message;
  double joint_cost = 0;
  FitSummary summary;
};

// The joint fit's gauge, defined once: the output-grid pixels whose centres lie in the scaling
// window 5526-5586 A. The Monte Carlo puts the truth in the same gauge.
std::vector<int> GaugePixels();

// What the fit reads of the ratios, compactly: per row its star and detector, and per (detector,
// slice) the usable points (FLAG 0) as 20-byte JointTerms naming their row, in row order. Built
// from rows in blocks (Add), so that the fit stage never holds the 574-pixel rows of all stars
// (10^5 stars: ~6e7 points, 1.2 GB, against 5.7 GB of rows).
struct RatioTable {
  explicit RatioTable(const Instrument& inst);  // empty, with the instrument's detectors and slices
  static RatioTable Of(const Instrument& inst, const std::vector<StarRatios>& ratios);
  void Add(
      const std::vector<StarRatios>& block);  // throws naming a row whose detector does not exist
  // Points kept only for the detectors d with keep[d] (every row's record is kept): a process's
  // share of the fit under MPI. Empty (the default): every detector.
  std::vector<char> keep_detector;
  size_t rows() const { return obsid.size(); }
  // What a star adds at most: a row per band and a point per slice of its detector in each band
  // (its data, without a vector's spare capacity).
  static double BytesPerStar(const Instrument& inst);

  std::vector<int64_t> obsid;  // per row
  std::vector<int32_t> detector;
  std::vector<float> first_y;  // y of the row's first usable pixel (NaN: none)
  std::vector<double> info;  // sum of ratio^2 / sigma^2 over its usable pixels (joint lack of fit)
  std::vector<std::vector<std::vector<JointTerm>>> points;  // [detector][slice]
  std::vector<std::array<double, 4>>
      extent;  // per detector: x min, x max, y min, y max of usable pixels
  std::vector<std::vector<int>>
      slice_of_pixel;  // [detector][output pixel]: slice, -1 outside the band
};

// The fit stage under MPI (`mpirun -np K`): detector d is fitted by rank d mod K
// from its own points (RatioTable::keep_detector), the k-fold held-out costs are shared by every
// rank before the degrees are chosen, and rank 0 receives every detector's slices and lack-of-fit
// sums, which it reduces in detector order as one process does: the same cube, bit for bit. A
// worker's cube holds its own detectors only. The joint fit is shared too: every rank takes the
// same steps from every detector's block sums (JointProblem::owns in flatfield/joint_solver.h).
struct FitShare {
  int rank = 0, ranks = 1;
  bool Owns(size_t detector) const {
    return ranks == 1 || static_cast<int>(detector % static_cast<size_t>(ranks)) == rank;
  }
};

FlatCube FitFlatCube(const Instrument& inst, const FlatFitOptions& options, const RatioTable& table,
                     const FitShare& share = {});
FlatCube FitFlatCube(const Instrument& inst, const FlatFitOptions& options,
                     const std::vector<StarRatios>& ratios);  // RatioTable::Of(ratios)

// One line for the log: slices fitted and flagged; joint mode: residuals, stars, convergence.
std::string DescribeFit(const FlatCube& cube);

void WriteFlatCoeffs(const std::string& path, const FlatCube& cube, const Provenance& provenance);
FlatCube ReadFlatCoeffs(const std::string& path);

}  // namespace csst
