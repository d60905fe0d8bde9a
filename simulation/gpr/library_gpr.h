// The paper's two uses of GPR on an empirical library (App. C):
//  - cleaning: predict every star's R=200 SED from (Teff, log g, [Fe/H]) with a GPR trained on the
//    other stars, and flag those whose RMSAE exceeds a cut (paper: 0.05 MILES, 0.068 NGSL);
//  - generation: normalised R=2000 network inputs (2238 px, 4000-7000 A) from parameters, with a
//  GPR
//    trained on a library's own inputs (paper: on MILES, to give NGSL stars inputs).
#pragma once

#include <Eigen/Dense>
#include <memory>
#include <string>
#include <vector>

#include "io/fits.h"
#include "io/library.h"
#include "simulation/gpr/gpr.h"

namespace csst {

struct GprCleanOptions {
  double cut = 0.05;  // RMSAE above which a star is flagged
  int folds = 5;      // 4:1 splits: each star is predicted by the GPR trained on the other folds
  int starts = 3;     // optimiser starts
  uint64_t seed = 1;  // fold assignment
  int max_rounds =
      5;  // refits without the flagged stars until the flagged set repeats (1 = one pass)
};

struct GprCleanResult {
  GprOptimizeResult fit;  // hyper-parameters, fitted on the training part of the first 4:1 split
  int n_fit = 0;          // stars in that training part (last round)
  int rounds = 0;  // fits made (the flagged set was stable after the last one, or max_rounds)
  std::vector<int> pixels;  // output-grid pixels used (covered by every star)
  std::vector<std::string> name;
  std::vector<double> teff, logg, feh, rmsae;
  std::vector<int> fold;
  std::vector<uint8_t> kept;  // 1 = RMSAE <= cut
  std::vector<double> ebv;    // colour excess relative to the GPR prediction (RelativeColourExcess)
  Eigen::MatrixXd residual;   // stars x pixels: (predicted - library) / library
  std::vector<std::pair<std::string, std::string>>
      unusable;  // (star, reason): no R=200 SED could be made
  long n_kept() const;
};

// R=200 SED of a library star on the 574-px output grid, scaled at 5526-5586 A (mask: 0 = valid).
Spectrum LibraryTargetSed(const Spectrum& spectrum);
inline Spectrum LibraryTargetSed(const LibraryStar& star) {
  return LibraryTargetSed(star.spectrum);
}
// Normalised network input (2238 px) of a library star: resampled onto the input grid at the
// library's own resolution (MILES 2.5 A and STELIB 3 A FWHM bracket R=2000 over 4000-7000 A) and
// divided by the 51-px moving-average continuum. Throws Error when more than 1% of the grid is
// uncovered.
Eigen::RowVectorXd LibraryInput(const LibraryStar& star);

// Colour excess E(B-V) of a library star relative to the SED a GPR predicts from its parameters,
// i.e. relative to the library's other stars of similar parameters: least squares of
//   -ln(1 + r(lambda)) = a - 0.4 ln(10) R_V (A_lambda / A_V) E      (CCM89, R_V = 3.1, a free)
// over the pixels, r = (predicted - library) / library. A stand-in for a catalogue E(B-V) where the
// library gives none (MILES here); its zero point is the mean reddening of the star's neighbours in
// parameter space. Pixels where the prediction is not positive (r <= -1) are left out; NaN when
// fewer than 2 remain. Throws Error when the pixels span no colour (all at one wavelength).
double RelativeColourExcess(const std::vector<double>& lambda, const Eigen::RowVectorXd& residual);

// Round 1 trains on every star; each later round trains (hyper-parameters and predictions) only on
// the stars kept by the previous one, so one strongly abnormal spectrum cannot inflate sigma_n and
// hide itself or flag good stars; every star is still predicted and reported.
// Stars whose SED cannot be made (e.g. the scaling window uncovered) are listed in `unusable` and
// take no further part. Throws Error when fewer than 2 folds' worth of stars (n < 2 * folds) or no
// pixel is covered by all.
GprCleanResult GprClean(const std::vector<LibraryStar>& stars, const GprCleanOptions& options);
// Writes <dir>/kept.csv, <dir>/residuals.fits and <dir>/summary.json atomically.
void WriteGprClean(const std::string& dir, const std::string& library,
                   const GprCleanOptions& options, const GprCleanResult& result,
                   const Provenance& provenance);

// Generates normalised R=2000 inputs from parameters with a GPR trained on library stars' inputs.
class InputGenerator {
 public:
  // Trains on `stars` (stars whose input cannot be built are skipped and counted) and optimises.
  InputGenerator(const std::vector<LibraryStar>& stars, int starts = 3);
  // params: rows of (Teff, log g, [Fe/H]). flux, sigma: rows x 2238 (sigma: predictive latent std).
  void Generate(const Eigen::MatrixXd& params, Eigen::MatrixXd* flux, Eigen::MatrixXd* sigma) const;
  const GprOptimizeResult& fit() const { return fit_; }
  int n_train() const { return n_train_; }
  int n_skipped() const { return n_skipped_; }

 private:
  std::unique_ptr<Gpr> gpr_;
  GprOptimizeResult fit_;
  int n_train_ = 0, n_skipped_ = 0;
};

struct InputHoldout {
  GprOptimizeResult fit;
  int n_train = 0;
  std::vector<std::string> name;
  std::vector<double> teff, logg, feh, rms;  // RMS of (generated - library) / library over 2238 px
  double median_rms_dwarfs = 0;              // 5000 <= Teff <= 7000 K, log g >= 4.0
  int n_dwarfs = 0;
};
// Holds out a random `test_fraction` of the stars (seeded), trains on the rest, generates the
// held-out ones.
InputHoldout EvaluateInputGenerator(const std::vector<LibraryStar>& stars, double test_fraction,
                                    uint64_t seed, int starts = 3);

// FITS table GENERATED (NAME, TEFF, LOGG, FEH, FLUX[2238], SIGMA[2238]) plus WAVELENGTH.
void WriteGeneratedInputs(const std::string& path, const std::vector<std::string>& names,
                          const Eigen::MatrixXd& params, const Eigen::MatrixXd& flux,
                          const Eigen::MatrixXd& sigma, const Provenance& provenance);

}  // namespace csst
