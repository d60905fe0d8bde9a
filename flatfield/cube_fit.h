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

#include "core/fits.h"
#include "flatfield/compare.h"
#include "flatfield/flat_fitter.h"
#include "instrument/instrument.h"

namespace csst {

struct DetectorFlat {
  int detector = 0, band = 0;
  std::string name;               // GU1 .. GI4
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
  double initial_cost = 0, seconds = 0, gauge = 1;
  std::vector<std::string> warnings;  // structural problems (degeneracies, no convergence)
  // per band (GU, GV, GI): the lack of fit given to every converged slice, and the number of star
  // pairs (summed over slices) it was measured from
  std::array<double, 3> lack_of_fit = {0, 0, 0};
  std::array<long, 3> lack_of_fit_pairs = {0, 0, 0};
};

struct FlatCube {
  FlatFitMode mode = FlatFitMode::kIndependent;
  int order = 2;
  double nx = 9216, ny = 9232;
  std::vector<DetectorFlat> detectors;
  std::map<int64_t, double> star_scale;  // joint mode: fitted per-star scales (after the gauge)
  std::string joint_termination, joint_message;
  double joint_cost = 0;
  FitSummary summary;
};

// The joint fit's gauge, defined once: the output-grid pixels whose centres lie in the scaling
// window 5526-5586 A. The Monte Carlo puts the truth in the same gauge.
std::vector<int> GaugePixels();

FlatCube FitFlatCube(const Instrument& inst, const FlatFitOptions& options,
                     const std::vector<StarRatios>& ratios);

// One line for the log: slices fitted and flagged; joint mode: residuals, stars, convergence.
std::string DescribeFit(const FlatCube& cube);

void WriteFlatCoeffs(const std::string& path, const FlatCube& cube, const Provenance& provenance);
FlatCube ReadFlatCoeffs(const std::string& path);

}  // namespace csst
