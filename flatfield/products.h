// Flat-field products for reduction software (stage assemble, products under flatcube/;
// docs/products.md).
//
// 1. flat_<DET>_axe_quicklook.fits (binned) or flat_<DET>_axe.fits (full resolution, `csst-flatcube
// axe`): the
//    aXe/hstaxe polynomial flat cube: primary HDU = coefficient image a0 with WMIN and WMAX [A];
//    extensions 1..n = a1..an, 2-D images only. Flat(x, y, lambda) = sum_i a_i(x, y) w^i, w =
//    (lambda - WMIN) / (WMAX - WMIN) clamped to [0, 1] (as hstaxe does). The a_i come from a
//    weighted least-squares fit of each Legendre coefficient c_k(lambda) of the per-wavelength fits
//    by a polynomial of degree n in w, so a_i(x, y) = sum_k d_ki B_k(x, y).
// 2. flat_<DET>.fits, a JWST-style reference cube: empty primary with provenance; SCI (lambda, y,
// x) at the
//    band's output-grid wavelengths from the same smoothed model; ERR; DQ with DQ_DEF; WAVELENGTH
//    table; WCS: CTYPE3 'WAVE-LOG', CUNIT3 'Angstrom', spatial axes linear in detector pixels.
// 3. CSST_MSC_SLS_FLAT_<chip>_L1.fits: the same samples in the CSST L1 reference-file layout (empty
// primary,
//    SCI, ERR, DQ), DETECTOR = the CSST chip id.
// Every sampled form follows one edge rule (NodeAxes): samples from the first to the last pixel
// centre.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "flatfield/cube_fit.h"
#include "instrument/instrument.h"
#include "io/fits.h"

namespace csst {

struct AssembleOptions {
  int axe_degree = 3;       // polynomial degree in w of the aXe cube
  int axe_binning = 64;     // 1 = full detector resolution
  int cube_binning = 128;   // spatial sampling of the JWST-style cube [pixels]
  double max_sigma = 0.05;  // ERR without SYSERR (fit covariance, lack of fit) above this sets DQ
                            // POORLY_CONSTRAINED
  // Per band (GU, GV, GI): the relative SED error common to all stars (seds.fits SYSERRU/V/I, or
  // SYSFREU/V/I for a joint fit),
  // added in quadrature to the fit covariance in ERR. Not a config key: it comes from the model.
  std::array<double, 3> systematic = {0, 0, 0};
  bool quicklooks = true;  // PNG images (GDAL) of the flat at three wavelengths
  void Validate() const;
};

enum DqBit : int32_t {
  kDqNoCoverage = 1,         // outside the band's wavelengths: value 1
  kDqNotConverged = 2,       // the slice's fit did not converge (model from neighbours)
  kDqPoorlyConstrained = 4,  // sqrt(sigma_fit^2 + LACKFIT^2) (ERR without SYSERR) above max_sigma
  kDqExtrapolated = 8,       // outside the area covered by star positions
  kDqOutside =
      16,  // apply's batch only: off the detector or outside the cube's wavelengths (no value)
};

// Smoothed wavelength model of one detector: c_k(w) = sum_i d[i][k] w^i.
struct SmoothDetectorFlat {
  std::string name;
  int band = 0, order = 2, degree = 3;
  double nx = 1, ny = 1, wmin = 0, wmax = 1;
  std::vector<std::vector<double>> d;             // [degree+1][ncoef]
  std::vector<double> wavelengths;                // slice wavelengths
  std::vector<std::vector<double>> cov;           // per slice covariance (ncoef^2), possibly empty
  std::vector<double> lack_of_fit;                // per slice (FlatSlice::lack_of_fit)
  std::vector<int> converged;                     // per slice
  double xmin = 0, xmax = 0, ymin = 0, ymax = 0;  // area covered by the data
  double Value(double x, double y, double lambda) const;
  // ERR of the flat at a fitted slice: ShippedErr of its fit covariance, its lack of fit and
  // `systematic`.
  double Sigma(double x, double y, int slice, double systematic = 0.0) const;
};

// The cube's ERR, one definition for the products and the Monte Carlo's coverage:
// sqrt(sigma_fit^2 + LACKFIT^2 + SYSERR^2) (README "What ERR holds").
inline double ShippedErr(double fit_variance, double lack_of_fit, double systematic) {
  return std::sqrt(std::max(fit_variance, 0.0) + lack_of_fit * lack_of_fit +
                   systematic * systematic);
}

// Per detector (index = detector id): x min, x max, y min, y max of the pixels that held usable
// ratios (RatioTable::extent); the aXe form records it as the region its polynomial is valid in.
using DetectorExtents = std::vector<std::array<double, 4>>;
// The extents of the ratios file at `ratios_path` (read in blocks; a detector without usable pixels
// has x min > x max).
DetectorExtents ReadRatioExtents(const Instrument& inst, const std::string& ratios_path);

SmoothDetectorFlat SmoothDetector(const DetectorFlat& det, const FlatCube& cube,
                                  const Instrument& inst, int degree,
                                  const DetectorExtents* extents);

// One edge rule for every sampled product (issue #30): a detector axis of `npix` pixels sampled
// every `binning` pixels or less has n = ceil((npix-1)/binning) + 1 nodes, evenly spaced from the
// first pixel centre (0) to the last (npix-1): node i sits at i * step, step = (npix-1)/(n-1) <=
// binning. binning 1 is the detector itself (step 1). The WCS of every product says the same (CRVAL
// 0, CDELT step).
struct NodeAxis {
  long n = 1;
  double step = 1;
  double At(long i) const { return static_cast<double>(i) * step; }
};
NodeAxis NodeAxes(double npix, int binning);

// File names: flat_<DET>_axe.fits (full resolution, an aXe input) or flat_<DET>_axe_quicklook.fits
// (binned); CSST_MSC_SLS_FLAT_<chip>_L1.fits (the CSST-L1-style form, chip id two digits).
std::string AxeFileName(const std::string& detector, int binning);
std::string L1FileName(const std::string& detector);

// The full-resolution aXe cube of one detector (what hstaxe and slitlessutils read: coefficient
// images indexed by detector pixel), streamed row by row: 4 * DETNX * DETNY * (degree + 1) bytes.
void WriteFullAxe(const std::string& path, const SmoothDetectorFlat& s,
                  const Provenance& provenance);

// What the cube products are made of: the fitted cube; where each detector saw stars (null: the
// whole detector); the true flat (d, x, y, wavelength), which adds (fitted - true) quicklooks
// (null: none).
struct FlatProductsInput {
  const FlatCube* cube = nullptr;
  const DetectorExtents* extents = nullptr;
  const std::function<double(int, double, double, double)>* truth = nullptr;
};
// Writes the three forms of every detector into `dir` (and PNG quicklooks if enabled).
void WriteFlatProducts(const std::string& dir, const FlatProductsInput& input,
                       const Instrument& inst, const AssembleOptions& options,
                       const Provenance& provenance);

// Four-node Lagrange (cubic) weights at node coordinate t on an axis of n nodes: nodes start ..
// start+count-1, the four around t, shifted inward at the edges (fewer when the axis has fewer). A
// cubic in t is reproduced exactly, so a sampled polynomial flat of degree <= 3 per axis is read
// back as it was, between samples too.
struct AxisWeights {
  long start = 0;
  int count = 1;
  double w[4] = {1, 0, 0, 0};
};
AxisWeights LagrangeWeights(double t, long n);

// A flat product loaded once (either form) for repeated evaluation.
class FlatProduct {
 public:
  explicit FlatProduct(const std::string& path);  // throws IoError/FitsError naming the file
  // Spatially both forms interpolate their samples with LagrangeWeights (at a sample: the sample
  // itself); then the aXe form takes the polynomial in w, the JWST form is linear in ln lambda
  // between planes (sigma from ERR). Throws Error naming the file for a non-finite argument, a
  // pixel off the detector or a wavelength outside [WMIN, WMAX] (both forms alike).
  double Evaluate(double x, double y, double lambda, double* sigma = nullptr) const;
  // Many points at once (a reduction chain's batch; parallel, the same arithmetic as Evaluate): per
  // point the flat, its ERR (0 for the aXe form) and DQ (the reference cube's bits of the voxels it
  // interpolates, ORed); a point Evaluate would refuse gets flat NaN, err NaN and DQ kDqOutside,
  // never an exception.
  struct Batch {
    std::vector<double> flat, err;
    std::vector<int32_t> dq;
  };
  Batch EvaluateMany(const std::vector<double>& x, const std::vector<double>& y,
                     const std::vector<double>& lambda) const;

 private:
  std::string path_;
  bool axe_ = false;
  std::vector<long> dims_;
  std::vector<std::vector<double>> planes_;  // aXe: a_0..a_n; JWST: SCI, ERR
  std::vector<int32_t> dq_;  // JWST: DQ (empty for the aXe form or a cube without DQ)
  void CheckSpansDetector() const;
  double c0_ = 0, dx_ = 1, c0y_ = 0, dy_ = 1, wmin_ = 0, wmax_ = 1, l0_ = 1, dl_ = 1;
  double nx_ = 0,
         ny_ = 0;  // detector size from DETNX/DETNY (0: older files, taken from the samples)
};

// The names of the DQ bits set in `dq` ("NOT_CONVERGED|EXTRAPOLATED"; "" for 0), as DQ_DEF names
// them.
std::string DqNames(int32_t dq);

// Evaluates a product at (x, y, lambda) as FlatProduct::Evaluate does. Throws IoError naming the
// file.
double ApplyFlat(const std::string& path, double x, double y, double lambda,
                 double* sigma = nullptr);

// Divides an extracted spectrum's counts and errors by the flat, propagating the flat's error.
void FlatFieldSpectrum(const std::string& path, const std::vector<double>& x,
                       const std::vector<double>& y, const std::vector<double>& lambda,
                       std::vector<double>& counts, std::vector<double>& sigma);

}  // namespace csst
