// Compare: observed counts / expected counts from the predicted SED, per star, band and
// output-grid wavelength (product ratios.fits).
//
// expected = A t (lambda/hc) T(lambda) * mu(lambda) * S * 10^(-0.4 E_assumed k(lambda)) *
// d(lambda), with mu the network's SED (scaled to 1 at 5526-5586 A) and S the star's flux in that
// window: "known" takes S from the star's G magnitude (the paper's ideal assumption; without G,
// from its LAMOST spectrum, see io/ingest.h), "unknown" starts from the same value and leaves the
// per-star scale to the joint fit. sigma_ratio combines in quadrature the observation's and the
// network's relative errors and the errors of the assumed flux: the E(B-V) error (ebv_sigma)
// through k(lambda), less its weighted mean over the star's points when the scale is free, and with
// a known scale the window-flux error (scale_error).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "core/enum_names.h"
#include "instrument/counts.h"
#include "instrument/instrument.h"
#include "io/catalogue.h"
#include "io/fits.h"
#include "io/observations.h"

namespace csst {

// compare.flux_scale: the star's window flux is taken as known (the paper's assumption), or only
// as the start of the per-star scale that the joint fit (flatfield.mode: joint) determines.
enum class FluxScale { kKnown, kUnknown };
inline constexpr EnumNames<FluxScale, 2> kFluxScaleNames = {
    {{FluxScale::kKnown, "known"}, {FluxScale::kUnknown, "unknown"}}};
constexpr const auto& NamesOf(FluxScale) { return kFluxScaleNames; }

struct CompareOptions {
  FluxScale flux_scale = FluxScale::kKnown;
  bool reddening = false;    // correct the prediction for the assumed E(B-V)
  double ebv_sigma = 0.0;    // error of the assumed E(B-V) [mag] (realistic: LAMOST-like 0.02)
  double scale_error = 0.0;  // relative rms error of the G-based window flux (realistic: 0.05)
  void Validate() const;
};

enum RatioFlag : uint8_t {
  kRatioOffDetector = 1,
  kRatioOutsideBand = 2,
  kRatioNonFinite = 4,  // non-finite or non-positive counts / prediction
  kRatioMasked = 8,     // masked by the extraction (observation MASK)
};

struct StarRatios {
  int64_t obsid = 0;
  int band = 0, detector = 0;
  std::vector<double> x, y, ratio, sigma;
  std::vector<uint8_t> flag;
};

class ByteWriter;
class ByteReader;
// A block's ratios as bytes and back, exactly (an MPI message).
void PutRatios(ByteWriter& w, const std::vector<StarRatios>& rows);
std::vector<StarRatios> GetRatios(ByteReader& r);

// `mu`, `sigma_mu`: n_stars x 574 predictions (relative sigma); stars in the order of `obs`; a band
// a star was not observed in (BandObservation::observed() false) gives no ratios;
// `window_flux`: each star's assumed flux at 5526-5586 A [erg/s/cm2/A] (stars.fits WINDOW_FLUX).
struct CompareInput {
  const std::vector<StarObservation>& obs;
  const std::vector<StarRecord>& stars;
  const std::vector<double>& window_flux;
  const std::vector<float>& mu;
  const std::vector<float>& sigma_mu;
};
std::vector<StarRatios> ComputeRatios(const Instrument& inst, const CompareOptions& options,
                                      const CompareInput& input, uint64_t seed);
// A block of consecutive stars of a larger sample, so that a stage streams over its stars: `count`
// stars from the sample's star `first` on; every pointer points at the block's first star (mu and
// sigma_mu: count x 574). The random draws of a star (assumed E(B-V), assumed scale) are those of
// its index in the sample, so a sample computed block by block gives exactly the ratios of one
// call.
struct CompareBlock {
  size_t first = 0, count = 0;
  const StarObservation* obs = nullptr;
  const StarRecord* stars = nullptr;
  const double* window_flux = nullptr;
  const float* mu = nullptr;
  const float* sigma_mu = nullptr;
};
std::vector<StarRatios> ComputeRatios(const Instrument& inst, const CompareOptions& options,
                                      const CompareBlock& block, uint64_t seed);
// per_band: detectors per band (instrument option), to give each row its CSST chip id (column
// CHIPID; 0 = none).
void WriteRatios(const std::string& path, const std::vector<StarRatios>& r, const Provenance& p,
                 int per_band = 4);
std::vector<StarRatios> ReadRatios(const std::string& path);

// The same file written block by block (a stage that streams over stars): rows in the order
// appended.
class RatiosWriter {
 public:
  RatiosWriter(const std::string& path, const Provenance& p, int per_band = 4);
  void Append(const std::vector<StarRatios>& block);
  void Close();  // writes the WAVELENGTH HDU; the file is complete only after it
  long rows() const { return rows_; }

 private:
  FitsWriter w_;
  Provenance p_;
  int per_band_;
  long rows_ = 0;
};

// Reads the RATIOS table `rows_per_block` rows at a time (the last block may be shorter) and hands
// each block to `fn` in row order: memory stays at one block however many stars the file holds.
void ForEachRatioBlock(const std::string& path, size_t rows_per_block,
                       const std::function<void(const std::vector<StarRatios>&)>& fn);

}  // namespace csst
