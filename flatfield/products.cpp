#include "flatfield/products.h"

#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>

#include <Eigen/Dense>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <limits>

#include "core/detectors.h"
#include "core/errors.h"
#include "core/grid.h"
#include "core/log.h"
#include "flatfield/quicklook.h"

namespace csst {
namespace fs = std::filesystem;

void AssembleOptions::Validate() const {
  auto fail = [](const std::string& m) { throw ConfigError("config error: " + m); };
  if (axe_degree < 0 || axe_degree > 8) fail("assemble.axe_degree must be in 0..8");
  if (axe_binning < 1) fail("assemble.axe_binning must be >= 1");
  if (cube_binning < 1) fail("assemble.cube_binning must be >= 1");
  if (!(max_sigma > 0)) fail("assemble.max_sigma must be > 0");
}

namespace {
// Wavelength range where the band's throughput exceeds 0.1% of its peak.
void SensitivityRange(const BandOptics& b, double* lo, double* hi) {
  double peak = 0;
  for (double v : b.tp_value) peak = std::max(peak, v);
  *lo = b.tp_wave.back();
  *hi = b.tp_wave.front();
  for (size_t i = 0; i < b.tp_wave.size(); ++i) {
    if (b.tp_value[i] > 1e-3 * peak) {
      *lo = std::min(*lo, b.tp_wave[i]);
      *hi = std::max(*hi, b.tp_wave[i]);
    }
  }
}
}  // namespace

double SmoothDetectorFlat::Value(double x, double y, double lambda) const {
  const double w = std::clamp((lambda - wmin) / (wmax - wmin), 0.0, 1.0);
  const auto basis = FlatBasis(x, y, nx, ny, order);
  double f = 0, wp = 1;
  for (int i = 0; i <= degree; ++i, wp *= w)
    for (size_t k = 0; k < basis.size(); ++k) f += d[i][k] * wp * basis[k];
  return f;
}

double SmoothDetectorFlat::Sigma(double x, double y, int slice, double systematic) const {
  const auto& c = cov[slice];
  const auto basis = FlatBasis(x, y, nx, ny, order);
  const size_t n = basis.size();
  if (c.size() != n * n) return ShippedErr(0.0, 0.0, systematic);  // no covariance: SYSERR alone
  double v = 0;
  for (size_t i = 0; i < n; ++i)
    for (size_t j = 0; j < n; ++j) v += basis[i] * c[i * n + j] * basis[j];
  const double lof = static_cast<size_t>(slice) < lack_of_fit.size()
                         ? lack_of_fit[static_cast<size_t>(slice)]
                         : 0.0;
  return ShippedErr(v, lof, systematic);
}

DetectorExtents ReadRatioExtents(const Instrument& inst, const std::string& ratios_path) {
  DetectorExtents e(static_cast<size_t>(3 * inst.options().detectors_per_band),
                    {1e30, -1e30, 1e30, -1e30});
  ForEachRatioBlock(ratios_path, 2048, [&](const std::vector<StarRatios>& block) {
    for (const auto& r : block) {
      if (r.detector < 0 || static_cast<size_t>(r.detector) >= e.size()) {
        throw Error(ratios_path + ": a RATIOS row (OBSID " + std::to_string(r.obsid) +
                    ") names detector " + std::to_string(r.detector) + ", which does not exist");
      }
      auto& d = e[static_cast<size_t>(r.detector)];
      for (size_t k = 0; k < r.x.size(); ++k) {
        if (r.flag[k]) continue;
        d = {std::min(d[0], r.x[k]), std::max(d[1], r.x[k]), std::min(d[2], r.y[k]),
             std::max(d[3], r.y[k])};
      }
    }
  });
  return e;
}

SmoothDetectorFlat SmoothDetector(const DetectorFlat& det, const FlatCube& cube,
                                  const Instrument& inst, int degree,
                                  const DetectorExtents* extents) {
  SmoothDetectorFlat s;
  s.name = det.name;
  s.band = det.band;
  s.order = det.order;
  s.nx = cube.nx;
  s.ny = cube.ny;
  SensitivityRange(inst.band(det.band), &s.wmin, &s.wmax);
  const int nc = NumCoefficients(det.order);
  for (const auto& sl : det.slices)
    if (sl.coeffs.size() != static_cast<size_t>(nc))
      throw Error("assemble: detector " + det.name + " has a slice of " +
                  std::to_string(sl.coeffs.size()) + " coefficients, its degree " +
                  std::to_string(det.order) + " needs " + std::to_string(nc));
  std::vector<int> good;
  for (size_t i = 0; i < det.slices.size(); ++i) {
    s.wavelengths.push_back(OutputGrid().Centre(det.pixels[i]));
    s.cov.push_back(det.slices[i].covariance);
    s.lack_of_fit.push_back(det.slices[i].lack_of_fit);
    s.converged.push_back(det.slices[i].converged ? 1 : 0);
    if (det.slices[i].converged) good.push_back(static_cast<int>(i));
  }
  s.degree = std::min(degree, std::max(0, static_cast<int>(good.size()) - 1));
  s.d.assign(s.degree + 1, std::vector<double>(nc, 0.0));
  if (good.empty()) {
    s.d[0][0] = 1.0;  // no data: flat = 1 (flagged NO_COVERAGE by the writer)
  } else {
    // Weighted least squares per coefficient: c_k(w) = sum_i d_ik w^i, weights 1/var(c_k).
    for (int k = 0; k < nc; ++k) {
      Eigen::MatrixXd A(good.size(), s.degree + 1);
      Eigen::VectorXd b(good.size());
      for (size_t r = 0; r < good.size(); ++r) {
        const auto& sl = det.slices[good[r]];
        const double w =
            std::clamp((s.wavelengths[good[r]] - s.wmin) / (s.wmax - s.wmin), 0.0, 1.0);
        const double var =
            sl.covariance.size() == static_cast<size_t>(nc * nc) ? sl.covariance[k * nc + k] : 1.0;
        const double sw = 1.0 / std::sqrt(std::max(var, 1e-30));
        double wp = 1;
        for (int i = 0; i <= s.degree; ++i, wp *= w) A(r, i) = wp * sw;
        b(r) = sl.coeffs[k] * sw;
      }
      const Eigen::VectorXd sol = A.colPivHouseholderQr().solve(b);
      for (int i = 0; i <= s.degree; ++i) s.d[i][k] = sol(i);
    }
  }
  s.xmin = 0, s.xmax = s.nx - 1, s.ymin = 0, s.ymax = s.ny - 1;
  if (extents && det.detector >= 0 && static_cast<size_t>(det.detector) < extents->size()) {
    const auto& e = (*extents)[static_cast<size_t>(det.detector)];
    if (e[0] <= e[1]) s.xmin = e[0], s.xmax = e[1], s.ymin = e[2], s.ymax = e[3];
  }
  return s;
}

namespace {

// The flat is a ratio of detected to expected counts: a FITS unit string that astropy and CFITSIO
// read as dimensionless, never a blank BUNIT (issue #30 item 6).
constexpr const char* kFlatUnit = "count/count";

void StandardKeys(FitsWriter& w, const Provenance& base, const SmoothDetectorFlat& s,
                  const std::string& descrip, const std::string& bunit) {
  Provenance p = base;
  p.detector = s.name;
  p.filter = s.name.substr(0, 2);
  p.descrip = descrip;
  w.Standard(p, bunit);
  w.Key("DETNX", static_cast<long>(s.nx), "[pixel] detector width (x = 0 .. DETNX-1)");
  w.Key("DETNY", static_cast<long>(s.ny), "[pixel] detector height (y = 0 .. DETNY-1)");
  w.Key("FITORDER", static_cast<long>(s.order),
        "degree of the 2D Legendre flat fitted per wavelength (flat_coeffs)");
}

// The spatial WCS of a product sampled on `ax` x `ay` nodes (NodeAxes): image pixel i (1-based)
// sits at detector pixel centre (i - 1) * CDELT, so the first node is x = 0 and the last x = DETNX
// - 1.
void SpatialWcs(FitsWriter& w, const NodeAxis& ax, const NodeAxis& ay) {
  w.Key("CTYPE1", "DET_X", "detector x of the pixel centre (0-based)");
  w.Key("CTYPE2", "DET_Y", "detector y of the pixel centre (0-based)");
  w.Key("CUNIT1", "pixel", "");
  w.Key("CUNIT2", "pixel", "");
  w.Key("CRPIX1", 1.0, "");
  w.Key("CRPIX2", 1.0, "");
  w.Key("CRVAL1", 0.0, "[pixel] detector x of image pixel 1 (the detector's first column)");
  w.Key("CRVAL2", 0.0, "[pixel] detector y of image pixel 1 (the detector's first row)");
  w.Key("CDELT1", ax.step, "[pixel] (DETNX-1)/(NAXIS1-1): the last image pixel is the last column");
  w.Key("CDELT2", ay.step, "[pixel] (DETNY-1)/(NAXIS2-1): the last image pixel is the last row");
}

void WriteAxe(const std::string& path, const SmoothDetectorFlat& s, int binning,
              const Provenance& prov) {
  const NodeAxis ax = NodeAxes(s.nx, binning), ay = NodeAxes(s.ny, binning);
  const bool full = binning == 1;
  const size_t nc = static_cast<size_t>(NumCoefficients(s.order));
  FitsWriter w(path);
  std::vector<float> row(static_cast<size_t>(ax.n));
  for (int i = 0; i <= s.degree; ++i) {
    w.CreateImage(i == 0 ? "" : "A" + std::to_string(i), ax.n, ay.n);
    for (long yb = 0; yb < ay.n; ++yb) {
      const double y = ay.At(yb);
      tbb::parallel_for(tbb::blocked_range<long>(0, ax.n, 2048),
                        [&](const tbb::blocked_range<long>& r) {
                          std::vector<double> basis(nc);
                          for (long xb = r.begin(); xb < r.end(); ++xb) {
                            FlatBasisInto(ax.At(xb), y, s.nx, s.ny, s.order, basis.data());
                            double a = 0;
                            for (size_t k = 0; k < nc; ++k) a += s.d[i][k] * basis[k];
                            row[static_cast<size_t>(xb)] = static_cast<float>(a);
                          }
                        });
      w.WriteImageRow(yb, row);
    }
    StandardKeys(w, prov, s,
                 (full ? "aXe flat-field cube coefficient a"
                       : "QUICKLOOK (binned, not an aXe input) coefficient a") +
                     std::to_string(i),
                 kFlatUnit);
    if (i == 0) {
      w.Key("WMIN", s.wmin, "[Angstrom] wavelength at w = 0");
      w.Key("WMAX", s.wmax, "[Angstrom] wavelength at w = 1");
      w.Key("NCOEFF", static_cast<long>(s.degree + 1), "number of coefficient images (HDUs)");
      w.Comment(
          "Flat(x,y,lambda) = sum_i a_i(x,y) w^i, w = (lambda-WMIN)/(WMAX-WMIN) clamped to [0,1]");
      if (full) {
        w.Comment("a_i is HDU i (a0 = primary); image pixel (x+1, y+1) is detector pixel (x, y)");
      } else {
        w.Comment(
            "QUICKLOOK: image pixels are nodes CDELT1 x CDELT2 detector pixels apart (WCS), so "
            "aXe");
        w.Comment(
            "readers, which index by detector pixel, must not use it: write the full-resolution");
        w.Comment("aXe cube with `csst-flatcube axe CONFIG --detector NAME` (docs/products.md)");
      }
    }
    w.KeyBool("AXEINPUT", full,
              full ? "usable by aXe readers (indexed by detector pixel)"
                   : "binned quicklook: NOT usable by aXe readers");
    w.Key("BINNING", static_cast<long>(binning),
          "nominal detector pixels per image pixel (1 = aXe input)");
    SpatialWcs(w, ax, ay);
  }
  w.Close();
}

// SCI, ERR and DQ of a detector on the reference cube's nodes and the band's output-grid
// wavelengths.
struct CubeSamples {
  NodeAxis ax, ay;
  std::vector<double> lam;
  std::vector<float> sci, err;
  std::vector<int32_t> dq;
  double sys = 0;
};

CubeSamples SampleCube(const SmoothDetectorFlat& s, const DetectorFlat& det,
                       const AssembleOptions& o) {
  CubeSamples c;
  const auto& g = OutputGrid();
  std::vector<int> pix;
  for (int p = 0; p < g.size(); ++p)
    if (g.Centre(p) >= s.wmin && g.Centre(p) <= s.wmax) pix.push_back(p);
  c.ax = NodeAxes(s.nx, o.cube_binning);
  c.ay = NodeAxes(s.ny, o.cube_binning);
  const long nxs = c.ax.n, nys = c.ay.n, nl = static_cast<long>(pix.size());
  c.sci.assign(static_cast<size_t>(nxs) * nys * nl, 0.0f);
  c.err.assign(c.sci.size(), 0.0f);
  c.dq.assign(c.sci.size(), 0);
  bool any_converged = false;
  for (int cv : s.converged) any_converged |= cv != 0;
  c.sys = o.systematic.at(static_cast<size_t>(s.band));
  for (long l = 0; l < nl; ++l) {
    const double lambda = g.Centre(pix[l]);
    c.lam.push_back(lambda);
    int slice = -1;  // the per-wavelength fit at this plane, if any
    for (size_t k = 0; k < det.pixels.size(); ++k)
      if (det.pixels[k] == pix[l]) slice = static_cast<int>(k);
    const bool fitted = slice >= 0;
    tbb::parallel_for(tbb::blocked_range<long>(0, nys), [&](const tbb::blocked_range<long>& rows) {
      for (long yb = rows.begin(); yb < rows.end(); ++yb) {
        const double y = c.ay.At(yb);
        for (long xb = 0; xb < nxs; ++xb) {
          const double x = c.ax.At(xb);
          const size_t at = (static_cast<size_t>(l) * nys + yb) * nxs + xb;
          if (!any_converged) {
            c.sci[at] = 1.0f;
            c.dq[at] |= kDqNoCoverage;
            continue;
          }
          c.sci[at] = static_cast<float>(s.Value(x, y, lambda));
          // What the stars leave poorly constrained (fit covariance and lack of fit), not the
          // network's common SED error, which is the same at every pixel of a band and stays in ERR
          // (SYSERR).
          const double from_stars = fitted ? s.Sigma(x, y, slice, 0.0) : 0.0;
          const double e = ShippedErr(from_stars * from_stars, 0.0, c.sys);
          c.err[at] = static_cast<float>(e);
          if (!fitted) c.dq[at] |= kDqExtrapolated;
          if (fitted && !s.converged[slice]) c.dq[at] |= kDqNotConverged;
          if ((fitted ? from_stars : e) > o.max_sigma) c.dq[at] |= kDqPoorlyConstrained;
          if (x < s.xmin || x > s.xmax || y < s.ymin || y > s.ymax) c.dq[at] |= kDqExtrapolated;
        }
      }
    });
  }
  return c;
}

enum class CubeForm { kReference, kL1 };

// The reference cube (flat_<DET>.fits) and the CSST-L1-style file
// (CSST_MSC_SLS_FLAT_<chip>_L1.fits) hold the same samples; they differ in name and in the keywords
// a CSST L1 reader looks for.
void WriteCube(const std::string& path, const SmoothDetectorFlat& s, const CubeSamples& c,
               const AssembleOptions& o, const Provenance& prov, CubeForm form) {
  const long nxs = c.ax.n, nys = c.ay.n, nl = static_cast<long>(c.lam.size());
  const bool l1 = form == CubeForm::kL1;
  FitsWriter w(path);
  w.WriteEmptyPrimary();
  StandardKeys(w, prov, s,
               l1 ? "CSST SLS large-scale flat, L1 reference file"
                  : "CSST slitless large-scale flat reference cube",
               "");
  w.Key("REFTYPE", "FLAT", "reference file type");
  if (l1) {
    w.Key("FILETYPE", "SLSFLAT", "CSST slitless flat-field reference file (L1 layout)");
    w.Key("FILENAME", fs::path(path).filename().string(), "this file; cite it in R_DFLAT");
    w.Key("CHIPID", static_cast<long>(ChipIdOf(s.name)), "CSST chip id (SLS data model)");
    w.Comment("L1 layout: empty primary, SCI, ERR, DQ (then DQ_DEF and WAVELENGTH tables).");
    w.Comment(
        "SCI is the flat F(x, y, lambda) as a cube: a slitless pixel receives a different "
        "wavelength");
    w.Comment(
        "from every source, so an L1 step looks F up at the wavelength the extraction assigns");
    w.Comment(
        "(WAVELENGTH table, CTYPE3 WAVE-LOG) and divides the extracted counts by it. A science");
    w.Comment(
        "file that applied it names this file in R_DFLAT (R_SFLAT in earlier data-model drafts).");
  }
  w.Key("WMIN", s.wmin, "[Angstrom] first wavelength of the cube");
  w.Key("WMAX", s.wmax, "[Angstrom] last wavelength of the cube");
  auto wcs = [&]() {
    SpatialWcs(w, c.ax, c.ay);
    w.Key("CTYPE3", "WAVE-LOG", "vacuum wavelength, log sampled (FITS Paper III)");
    w.Key("CUNIT3", "Angstrom", "");
    w.Key("CRPIX3", 1.0, "");
    w.Key("CRVAL3", c.lam.empty() ? 0.0 : c.lam[0], "[Angstrom] wavelength of plane 1");
    w.Key("CDELT3", c.lam.empty() ? 1.0 : c.lam[0] * OutputGrid().step(),
          "[Angstrom] lambda_r * d ln(lambda)");
    w.Key("SPECSYS", "TOPOCENT", "");
  };
  w.WriteImage("SCI", {nxs, nys, nl}, c.sci);
  StandardKeys(w, prov, s, "flat field F(x,y,lambda): divide extracted counts by it", kFlatUnit);
  wcs();
  w.WriteImage("ERR", {nxs, nys, nl}, c.err);
  StandardKeys(w, prov, s, "1-sigma of SCI: fit covariance (+) lack of fit (+) common SED error",
               kFlatUnit);
  w.Key("SYSERR", c.sys, "relative SED error common to all stars, in quadrature");
  w.Comment(
      "ERR = sqrt(sigma_fit^2 + LACKFIT^2 + SYSERR^2): sigma_fit from the slice's fit covariance, "
      "LACKFIT");
  w.Comment(
      "the flat structure the polynomial cannot follow (flat_coeffs.fits), SYSERR the SED error "
      "common");
  w.Comment("to all stars (model sidecar systematic_error, or systematic_error_free_scale for a");
  w.Comment("joint fit); neither averages down with more stars");
  wcs();
  w.WriteImage("DQ", {nxs, nys, nl}, c.dq);
  StandardKeys(w, prov, s, "data quality bits, see DQ_DEF", "");
  wcs();
  w.WriteTable(
      "DQ_DEF",
      {{"BIT", "", std::vector<int32_t>{0, 1, 2, 3}},
       {"VALUE", "",
        std::vector<int32_t>{kDqNoCoverage, kDqNotConverged, kDqPoorlyConstrained,
                             kDqExtrapolated}},
       {"NAME", "",
        std::vector<std::string>{DqNames(kDqNoCoverage), DqNames(kDqNotConverged),
                                 DqNames(kDqPoorlyConstrained), DqNames(kDqExtrapolated)}},
       {"DESCRIPTION", "",
        std::vector<std::string>{
            "no converged fit in this band: value 1", "the fit at this wavelength did not converge",
            "the stars' own constraint, sqrt(sigma_fit^2 + LACKFIT^2) (ERR without SYSERR), "
            "above assemble.max_sigma",
            "outside the fitted wavelengths or the area covered by stars"}}});
  StandardKeys(w, prov, s, "definitions of the DQ bits", "");
  w.WriteTable("WAVELENGTH", {{"WAVELENGTH", "Angstrom", c.lam}});
  StandardKeys(w, prov, s, "wavelength of every SCI plane (vacuum)", "");
  w.Close();
}

}  // namespace

NodeAxis NodeAxes(double npix, int binning) {
  NodeAxis a;
  const long last = static_cast<long>(npix) - 1;
  if (last <= 0) return a;
  const long b = std::max(1, binning);
  a.n = (last + b - 1) / b + 1;
  a.step = static_cast<double>(last) / static_cast<double>(a.n - 1);
  return a;
}

std::string AxeFileName(const std::string& detector, int binning) {
  return "flat_" + detector + (binning == 1 ? "_axe.fits" : "_axe_quicklook.fits");
}

std::string L1FileName(const std::string& detector) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "CSST_MSC_SLS_FLAT_%s_L1.fits", ChipKeyword(detector).c_str());
  return buf;
}

void WriteFullAxe(const std::string& path, const SmoothDetectorFlat& s, const Provenance& prov) {
  WriteAxe(path, s, 1, prov);
}

void WriteFlatProducts(const std::string& dir, const FlatProductsInput& input,
                       const Instrument& inst, const AssembleOptions& o, const Provenance& prov) {
  if (!input.cube) throw Error("WriteFlatProducts: no cube (internal error)");
  const FlatCube& cube = *input.cube;
  const DetectorExtents* extents = input.extents;
  const auto* truth = input.truth;
  o.Validate();
  fs::create_directories(dir);
  for (const auto& det : cube.detectors) {
    const auto s = SmoothDetector(det, cube, inst, o.axe_degree, extents);
    WriteAxe((fs::path(dir) / AxeFileName(s.name, o.axe_binning)).string(), s, o.axe_binning, prov);
    const CubeSamples samples = SampleCube(s, det, o);
    WriteCube((fs::path(dir) / ("flat_" + s.name + ".fits")).string(), s, samples, o, prov,
              CubeForm::kReference);
    if (ChipIdOf(s.name) != 0) {
      WriteCube((fs::path(dir) / L1FileName(s.name)).string(), s, samples, o, prov, CubeForm::kL1);
    }
    if (!o.quicklooks) continue;
    const BandOptics& b = inst.band(det.band);
    std::vector<QuicklookPanel> panels, resid;
    const int n = 48;
    for (double frac : {0.1, 0.5, 0.9}) {
      const double lambda = b.lo + frac * (b.hi - b.lo);
      QuicklookPanel p, r;
      char t[32];
      std::snprintf(t, sizeof(t), "%.0f A", lambda);
      p.title = r.title = t;
      p.width = r.width = n;
      p.height = r.height = n;
      for (int j = n - 1; j >= 0; --j)
        for (int i = 0; i < n; ++i) {
          const double x = (i + 0.5) / n * (s.nx - 1), y = (j + 0.5) / n * (s.ny - 1);
          const double v = s.Value(x, y, lambda);
          p.values.push_back(v);
          if (truth) {
            const double tv = (*truth)(det.detector, x, y, lambda);
            r.values.push_back((v - tv) / tv);
          }
        }
      panels.push_back(p);
      resid.push_back(r);
    }
    WriteQuicklookPng((fs::path(dir) / ("flat_" + s.name + ".png")).string(), "FLAT " + s.name,
                      panels);
    if (truth)
      WriteQuicklookPng((fs::path(dir) / ("flat_" + s.name + "_minus_true.png")).string(),
                        "(FIT-TRUE)/TRUE " + s.name, resid);
  }
  Logger("assemble")
      ->info("wrote {} detectors x 3 flat files (aXe, reference, CSST L1) into {}",
             cube.detectors.size(), dir);
}

namespace {
std::string FormatNumber(double v) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%g", v);
  return buf;
}
}  // namespace

std::string DqNames(int32_t dq) {
  static const std::pair<int32_t, const char*> kNames[] = {
      {kDqNoCoverage, "NO_COVERAGE"},
      {kDqNotConverged, "NOT_CONVERGED"},
      {kDqPoorlyConstrained, "POORLY_CONSTRAINED"},
      {kDqExtrapolated, "EXTRAPOLATED"},
      {kDqOutside, "OUTSIDE"}};
  std::string out;
  for (const auto& [bit, name] : kNames) {
    if (dq & bit) out += (out.empty() ? "" : "|") + std::string(name);
  }
  return out;
}

FlatProduct::FlatProduct(const std::string& path) : path_(path) {
  FitsReader r(path);
  r.MoveTo(1);
  axe_ = r.HasKey("WMIN") && r.ImageDims().size() == 2;
  wmin_ = r.HasKey("WMIN") ? r.KeyDouble("WMIN") : 0.0;
  wmax_ = r.HasKey("WMAX") ? r.KeyDouble("WMAX") : 0.0;
  if (r.HasKey("DETNX") && r.HasKey("DETNY")) {
    nx_ = r.KeyDouble("DETNX");
    ny_ = r.KeyDouble("DETNY");
  }
  // A cube is checked against its own header before use: a file that contradicts itself gives no
  // numbers.
  auto bad = [&](const std::string& what) {
    throw IoError(path + ": inconsistent flat cube: " + what);
  };
  if (nx_ != 0 || ny_ != 0) {
    if (!(nx_ >= 1 && ny_ >= 1 && std::isfinite(nx_) && std::isfinite(ny_)))
      bad("DETNX/DETNY are not a detector size");
  }
  auto finite_planes = [&](const std::vector<double>& v, const std::string& hdu) {
    for (size_t k = 0; k < v.size(); ++k)
      if (!std::isfinite(v[k]))
        bad(hdu + " holds a non-finite value at element " + std::to_string(k + 1));
  };
  if (axe_) {
    if (!(std::isfinite(wmin_) && std::isfinite(wmax_) && wmin_ > 0 && wmin_ < wmax_)) {
      bad("WMIN = " + FormatNumber(wmin_) + " and WMAX = " + FormatNumber(wmax_) +
          " A (expected 0 < WMIN < WMAX)");
    }
    const int n = r.NumHdus();
    if (r.HasKey("NCOEFF") && r.KeyLong("NCOEFF") != n) {
      bad("NCOEFF = " + std::to_string(r.KeyLong("NCOEFF")) + " but the file holds " +
          std::to_string(n) + " coefficient images");
    }
    for (int i = 1; i <= n; ++i) {
      r.MoveTo(i);
      const auto d = r.ImageDims();
      if (d.size() != 2)
        throw IoError(path + ": HDU " + std::to_string(i) + " is not a 2-D coefficient image");
      if (i > 1 && d != dims_) bad("HDU " + std::to_string(i) + " differs in size from HDU 1");
      dims_ = d;
      const double c0 = r.KeyDouble("CRVAL1"), dx = r.KeyDouble("CDELT1");
      const double c0y = r.HasKey("CRVAL2") ? r.KeyDouble("CRVAL2") : c0,
                   dy = r.HasKey("CDELT2") ? r.KeyDouble("CDELT2") : dx;
      if (i > 1 && (c0 != c0_ || dx != dx_ || c0y != c0y_ || dy != dy_)) {
        bad("HDU " + std::to_string(i) + " has another pixel grid (CRVAL1/2, CDELT1/2)");
      }
      c0_ = c0;
      dx_ = dx;
      c0y_ = c0y;
      dy_ = dy;
      if (!(dx_ > 0 && std::isfinite(c0_)))
        bad("CDELT1 = " + FormatNumber(dx_) + " (expected > 0)");
      if (!(dy_ > 0 && std::isfinite(c0y_)))
        bad("CDELT2 = " + FormatNumber(dy_) + " (expected > 0)");
      planes_.push_back(r.ReadImage());
      finite_planes(planes_.back(), "HDU " + std::to_string(i));
    }
    CheckSpansDetector();
    return;
  }
  if (!r.HasHdu("SCI")) {
    throw IoError(path +
                  ": not a flat cube: it has no SCI extension (flat_<DET>.fits, "
                  "CSST_MSC_SLS_FLAT_<chip>_L1.fits) "
                  "and no WMIN/WMAX with 2-D coefficient images (flat_<DET>_axe.fits)");
  }
  r.MoveTo("SCI");
  dims_ = r.ImageDims();
  if (dims_.size() != 3) throw IoError(path + ": SCI is not a 3-D cube");
  c0_ = r.KeyDouble("CRVAL1");
  dx_ = r.KeyDouble("CDELT1");
  c0y_ = r.HasKey("CRVAL2") ? r.KeyDouble("CRVAL2") : c0_;
  dy_ = r.HasKey("CDELT2") ? r.KeyDouble("CDELT2") : dx_;
  if (!(dy_ > 0 && std::isfinite(c0y_))) bad("CDELT2 = " + FormatNumber(dy_) + " (expected > 0)");
  CheckSpansDetector();
  l0_ = r.KeyDouble("CRVAL3");
  dl_ = r.KeyDouble("CDELT3");
  if (!(dx_ > 0 && std::isfinite(c0_))) bad("CDELT1 = " + FormatNumber(dx_) + " (expected > 0)");
  if (!(l0_ > 0 && dl_ > 0 && std::isfinite(l0_) && std::isfinite(dl_))) {
    bad("CRVAL3 = " + FormatNumber(l0_) + ", CDELT3 = " + FormatNumber(dl_) +
        " (expected both > 0)");
  }
  planes_.push_back(r.ReadImage());
  finite_planes(planes_.back(), "SCI");
  r.MoveTo("ERR");
  if (r.ImageDims() != dims_) bad("ERR differs in size from SCI");
  planes_.push_back(r.ReadImage());
  finite_planes(planes_.back(), "ERR");
  if (r.HasHdu("DQ")) {
    r.MoveTo("DQ");
    if (r.ImageDims() != dims_) bad("DQ differs in size from SCI");
    for (double v : r.ReadImage()) dq_.push_back(static_cast<int32_t>(v));
  }
  if (r.HasHdu("WAVELENGTH")) {
    r.MoveTo("WAVELENGTH");
    const auto lam = r.ReadColumn("WAVELENGTH");
    if (static_cast<long>(lam.size()) != dims_[2]) {
      bad("the WAVELENGTH table has " + std::to_string(lam.size()) + " rows for " +
          std::to_string(dims_[2]) + " SCI planes");
    }
    for (size_t p = 0; p < lam.size(); ++p) {
      const double wcs = l0_ * std::exp(dl_ * static_cast<double>(p) / l0_);
      if (!(std::abs(lam[p] - wcs) <= 1e-6 * wcs)) {
        bad("plane " + std::to_string(p + 1) + ": WAVELENGTH " + FormatNumber(lam[p]) +
            " A, but the WCS (CRVAL3, " + "CDELT3) puts it at " + FormatNumber(wcs) + " A");
      }
    }
  }
  if (wmax_ > wmin_) {
    const double last = l0_ * std::exp(dl_ * static_cast<double>(dims_[2] - 1) / l0_);
    if (l0_ < wmin_ * (1 - 1e-6) || last > wmax_ * (1 + 1e-6)) {
      bad("WMIN/WMAX = " + FormatNumber(wmin_) + "/" + FormatNumber(wmax_) +
          " A, but the planes span " + FormatNumber(l0_) + "-" + FormatNumber(last) + " A");
    }
  } else if (wmin_ != 0 || wmax_ != 0) {
    bad("WMIN = " + FormatNumber(wmin_) + " is not below WMAX = " + FormatNumber(wmax_) + " A");
  }
}

AxisWeights LagrangeWeights(double t, long n) {
  AxisWeights a;
  if (n <= 0) return a;
  a.count = static_cast<int>(std::min<long>(4, n));
  const long i = std::clamp(static_cast<long>(std::floor(t)), 0L, n - 1);
  a.start = std::clamp(i - 1, 0L, n - a.count);
  for (int j = 0; j < a.count; ++j) {
    double w = 1;
    for (int m = 0; m < a.count; ++m)
      if (m != j) w *= (t - static_cast<double>(a.start + m)) / static_cast<double>(j - m);
    a.w[j] = w;
  }
  return a;
}

void FlatProduct::CheckSpansDetector() const {
  // One edge rule (issue #30): the first sample sits on the detector's first pixel centre and the
  // last on its last, so no product extrapolates or holds values off the detector.
  if (nx_ <= 0 || ny_ <= 0) return;  // no DETNX/DETNY: nothing to check against
  auto off = [&](double first, double step, long n, double npix, const char* axis) {
    const double last = first + step * static_cast<double>(n - 1);
    if (std::abs(first) > 1e-6 || std::abs(last - (npix - 1)) > 1e-6 * npix) {
      throw IoError(path_ + ": inconsistent flat cube: its " + axis + " samples span " +
                    FormatNumber(first) + " .. " + FormatNumber(last) +
                    " pixels (WCS CRVAL/CDELT), not the detector's 0 .. " + FormatNumber(npix - 1));
    }
  };
  off(c0_, dx_, dims_[0], nx_, "x");
  off(c0y_, dy_, dims_[1], ny_, "y");
}

double FlatProduct::Evaluate(double x, double y, double lambda, double* sigma) const {
  const auto& dims = dims_;
  // Both forms refuse what they cannot answer (an aXe reader itself clamps w to [0, 1]; this
  // library does not extrapolate silently).
  auto refuse = [&](const std::string& what) { throw Error(path_ + ": " + what); };
  const double x_max = nx_ > 0 ? nx_ - 1 : c0_ + dx_ * (dims[0] - 1);
  const double y_max = ny_ > 0 ? ny_ - 1 : c0y_ + dy_ * (dims[1] - 1);
  if (!std::isfinite(x) || x < 0 || x > x_max)
    refuse("x = " + FormatNumber(x) + " is off the detector (0 .. " + FormatNumber(x_max) +
           " pixels)");
  if (!std::isfinite(y) || y < 0 || y > y_max)
    refuse("y = " + FormatNumber(y) + " is off the detector (0 .. " + FormatNumber(y_max) +
           " pixels)");
  if (!std::isfinite(lambda) || lambda <= 0)
    refuse("wavelength = " + FormatNumber(lambda) + " A is not a positive wavelength");
  if (wmax_ > wmin_ && (lambda < wmin_ * (1 - 1e-9) || lambda > wmax_ * (1 + 1e-9))) {
    refuse("wavelength " + FormatNumber(lambda) + " A is outside the cube (" + FormatNumber(wmin_) +
           " - " + FormatNumber(wmax_) + " A)");
  }
  const double fx = std::clamp((x - c0_) / dx_, 0.0, dims[0] - 1.0),
               fy = std::clamp((y - c0y_) / dy_, 0.0, dims[1] - 1.0);
  const AxisWeights wx = LagrangeWeights(fx, dims[0]), wy = LagrangeWeights(fy, dims[1]);
  if (axe_) {  // four-node (cubic) interpolation in each coefficient image, then the polynomial in
               // w
    const double w = std::clamp((lambda - wmin_) / (wmax_ - wmin_), 0.0, 1.0);
    double f = 0, wp = 1;
    for (const auto& img : planes_) {
      double a = 0;
      for (int j = 0; j < wy.count; ++j)
        for (int i = 0; i < wx.count; ++i)
          a +=
              wx.w[i] * wy.w[j] * img[static_cast<size_t>(wy.start + j) * dims[0] + (wx.start + i)];
      f += wp * a;
      wp *= w;
    }
    if (sigma) *sigma = 0;
    return f;
  }
  // JWST form: four-node (cubic) in x and y as above, linear in the WAVE-LOG pixel coordinate
  // (lambda = l0 exp(dl p / l0)), whose planes lie at the output grid's own spacing.
  const double fl = std::log(lambda / l0_) * l0_ / dl_;
  if (fl < -1e-6 || fl > dims[2] - 1 + 1e-6) {
    refuse("wavelength " + FormatNumber(lambda) + " A is outside the cube");
  }
  const double flc = std::clamp(fl, 0.0, dims[2] - 1.0);
  const long l0i = std::min(static_cast<long>(flc), dims[2] - 1);
  const double tl = flc - static_cast<double>(l0i);
  const size_t plane = static_cast<size_t>(dims[0]) * static_cast<size_t>(dims[1]);
  double f = 0, e = 0;
  for (int c = 0; c < 2; ++c) {
    const double wl = c ? tl : 1 - tl;
    if (wl == 0) continue;
    const size_t base = static_cast<size_t>(std::min(l0i + c, dims[2] - 1)) * plane;
    for (int j = 0; j < wy.count; ++j)
      for (int i = 0; i < wx.count; ++i) {
        const size_t at = base + static_cast<size_t>(wy.start + j) * dims[0] + (wx.start + i);
        const double wgt = wl * wx.w[i] * wy.w[j];
        f += wgt * planes_[0][at];
        e += wgt * planes_[1][at];
      }
  }
  if (sigma) *sigma = std::max(e, 0.0);
  return f;
}

FlatProduct::Batch FlatProduct::EvaluateMany(const std::vector<double>& x,
                                             const std::vector<double>& y,
                                             const std::vector<double>& lambda) const {
  const size_t n = x.size();
  if (y.size() != n || lambda.size() != n)
    throw Error(path_ + ": x, y and wavelength differ in length");
  Batch b;
  b.flat.assign(n, 0.0);
  b.err.assign(n, 0.0);
  b.dq.assign(n, 0);
  tbb::parallel_for(
      tbb::blocked_range<size_t>(0, n, 4096), [&](const tbb::blocked_range<size_t>& range) {
        for (size_t i = range.begin(); i < range.end(); ++i) {
          try {
            b.flat[i] = Evaluate(x[i], y[i], lambda[i], &b.err[i]);
          } catch (const Error&) {
            b.flat[i] = b.err[i] = std::numeric_limits<double>::quiet_NaN();
            b.dq[i] = kDqOutside;
            continue;
          }
          if (dq_.empty()) continue;
          // the DQ of the 2 x 2 x 2 voxels around the point (the cell whose corners carry most of
          // the weight)
          const double fx = std::clamp((x[i] - c0_) / dx_, 0.0, dims_[0] - 1.0),
                       fy = std::clamp((y[i] - c0y_) / dy_, 0.0, dims_[1] - 1.0),
                       fl = std::clamp(std::log(lambda[i] / l0_) * l0_ / dl_, 0.0, dims_[2] - 1.0);
          const long x0 = static_cast<long>(fx), y0 = static_cast<long>(fy),
                     l0 = static_cast<long>(fl);
          int32_t bits = 0;
          for (int a = 0; a < 2; ++a)
            for (int c = 0; c < 2; ++c)
              for (int e = 0; e < 2; ++e) {
                const long xi = std::min(x0 + a, dims_[0] - 1), yi = std::min(y0 + c, dims_[1] - 1),
                           li = std::min(l0 + e, dims_[2] - 1);
                if ((a && fx == x0) || (c && fy == y0) || (e && fl == l0)) continue;  // weight 0
                bits |= dq_[(static_cast<size_t>(li) * dims_[1] + yi) * dims_[0] + xi];
              }
          b.dq[i] = bits;
        }
      });
  return b;
}

double ApplyFlat(const std::string& path, double x, double y, double lambda, double* sigma) {
  return FlatProduct(path).Evaluate(x, y, lambda, sigma);
}

void FlatFieldSpectrum(const std::string& path, const std::vector<double>& x,
                       const std::vector<double>& y, const std::vector<double>& lambda,
                       std::vector<double>& counts, std::vector<double>& sigma) {
  if (x.size() != counts.size() || y.size() != counts.size() || lambda.size() != counts.size() ||
      sigma.size() != counts.size()) {
    throw Error("FlatFieldSpectrum: x, y, lambda, counts and sigma differ in length");
  }
  const FlatProduct flat(path);  // read once, evaluate per pixel
  for (size_t i = 0; i < counts.size(); ++i) {
    double fe = 0;
    const double f = flat.Evaluate(x[i], y[i], lambda[i], &fe);
    const double c = counts[i] / f;
    sigma[i] =
        std::abs(c) * std::sqrt(std::pow(sigma[i] / std::max(std::abs(counts[i]), 1e-300), 2) +
                                std::pow(fe / f, 2));
    counts[i] = c;
  }
}

}  // namespace csst
