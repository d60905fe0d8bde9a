// Simulated CSST slitless observations of the sample stars.
//
// Mode "spectral" (fast): per star and band, the true SED at Earth (truth grid, R = 1000) is
// convolved with the band's LSF (Gaussian, FWHM = lambda_c / R constant in wavelength, optionally
// varying with wavelength and field), multiplied by throughput, the true flat at the detector
// position where each wavelength lands, collecting area and exposure time, and converted to
// photons (lambda / hc), then integrated over the 574-pixel output grid. Noise per output pixel:
// photons + (sky + dark) over the extraction box (aperture height x the output pixel's width in
// detector columns) + read noise of every pixel of every exposure; Gaussian draws with that
// variance. Returns counts [e-], their sigma and the detector (x, y) of every wavelength.
// Mode "image" (2-D): every band's dispersed spectrum is rendered into a detector stamp (Gaussian
// PSF), sky and dark added, Poisson noise of the total and read noise drawn, and the spectrum is
// recovered by optimal extraction (Horne 1986) and rebinned onto the same output pixels.
// Realism options (all off in the ideal case): interstellar reddening (Cardinal, Clayton & Mathis
// 1989, R_V = 3.1) with the star's true E(B-V); 0th-order contamination from a neighbour;
// cosmic rays; LSF varying with wavelength and field; a fraction of stars with flux errors
// (unresolved binaries / variables: a random grey scale error).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/enum_names.h"
#include "core/progress.h"
#include "instrument/counts.h"
#include "instrument/instrument.h"
#include "io/catalogue.h"
#include "io/fits.h"
#include "io/observations.h"
#include "simulation/csst/true_flat.h"

namespace csst {

enum class ObserveMode {
  kSpectral,
  kImage
};  // simulation.mode: fast 1-D, or 2-D + optimal extraction
inline constexpr EnumNames<ObserveMode, 2> kObserveModeNames = {
    {{ObserveMode::kSpectral, "spectral"}, {ObserveMode::kImage, "image"}}};
constexpr const auto& NamesOf(ObserveMode) { return kObserveModeNames; }
enum class StarPlacement { kRandom, kSky };  // simulation.placement
inline constexpr EnumNames<StarPlacement, 2> kStarPlacementNames = {
    {{StarPlacement::kRandom, "random"}, {StarPlacement::kSky, "sky"}}};
constexpr const auto& NamesOf(StarPlacement) { return kStarPlacementNames; }

struct ObserveOptions {
  ObserveMode mode = ObserveMode::kSpectral;
  StarPlacement placement = StarPlacement::kRandom;
  bool photon_noise = true;            // false: noiseless counts (sigma set to 1e-12 relative)
  bool reddening = false;              // apply the star's true E(B-V)
  double zeroth_order_fraction = 0.0;  // probability per star and band of a 0th-order overlap
  double cosmic_ray_rate = 0.0;        // hits per output pixel (whole exposure set)
  double outlier_fraction = 0.0;  // stars whose flux is off by a random factor (binaries/variables)
  double outlier_amplitude = 0.1;  // rms of that factor's deviation from 1
  void Validate() const;
};

// Star positions: detector and (x0, y0) per band; star i depends only on (seed, i).
void PlaceStars(const Instrument& inst, const std::vector<StarRecord>& stars,
                StarPlacement placement, uint64_t seed, std::vector<StarObservation>& obs);

// Simulates all stars (parallel over stars); `sed_fine[i]` is star i's SED on TruthGrid() scaled to
// 1 in the window, `window_flux[i]` its flux there. `noise_stream` separates noise realisations.
struct ObserveInput {
  const std::vector<StarRecord>& stars;
  const std::vector<std::vector<double>>& sed_fine;
  const std::vector<double>& window_flux;
};
std::vector<StarObservation> Observe(const Instrument& inst, const TrueFlat& flat,
                                     const ObserveOptions& options, const ObserveInput& input,
                                     uint64_t seed, const std::string& noise_stream);

// Observe in blocks of stars, for a stage that streams over its sample: PlaceSample places every
// star (a sky placement depends on the whole catalogue's extent) and sets what each star brings
// (window flux, E(B-V), outlier factor) without spectra; ObserveBlock then observes stars first ..
// first + count - 1 of that placement in place (`placed` and `sed_fine` point at star `first`),
// each star with the random streams of its index in the sample: blocks give exactly what Observe
// gives.
std::vector<StarObservation> PlaceSample(const Instrument& inst, const ObserveOptions& options,
                                         const std::vector<StarRecord>& stars,
                                         const std::vector<double>& window_flux, uint64_t seed);
struct ObserveBlockInput {
  StarObservation* placed;              // stars first .. first + count - 1 of the placement
  const std::vector<double>* sed_fine;  // their true SEDs on TruthGrid()
  size_t count;
  size_t first;              // the first star's index in the sample (its random streams)
  uint64_t seed;             // the placement's seed
  std::string noise_stream;  // the noise's random stream
};
void ObserveBlock(const Instrument& inst, const TrueFlat& flat, const ObserveOptions& options,
                  const ObserveBlockInput& block, Progress* progress = nullptr);

// The two halves of spectral-mode Observe, for studies that draw many noise realizations of one
// set of stars: ObserveExpected places the stars and computes expected counts and their sigma
// (counts = expected); DrawObservationNoise draws one realization. Observe(..., seed, stream)
// equals DrawObservationNoise(ObserveExpected(..., seed), options, seed, stream) exactly.
std::vector<StarObservation> ObserveExpected(const Instrument& inst, const TrueFlat& flat,
                                             const ObserveOptions& options,
                                             const ObserveInput& input, uint64_t seed);
// ObserveExpected of `count` placed stars (PlaceSample) in place, for a study that streams over its
// sample (`placed` and `sed_fine` point at the block's first star): blocks give what one call
// gives.
void ObserveExpectedBlock(const Instrument& inst, const TrueFlat& flat,
                          const ObserveOptions& options, StarObservation* placed,
                          const std::vector<double>* sed_fine, size_t count);
std::vector<StarObservation> DrawObservationNoise(const std::vector<StarObservation>& expected,
                                                  const ObserveOptions& options, uint64_t seed,
                                                  const std::string& noise_stream);
// The same for `count` stars of a larger sample from its star `first` on (`expected` points at that
// star): each star draws the noise of its index in the sample, so blocks give exactly one call's
// result.
std::vector<StarObservation> DrawObservationNoise(const StarObservation* expected, size_t count,
                                                  size_t first, const ObserveOptions& options,
                                                  uint64_t seed, const std::string& noise_stream);

// Observations are written and read in the extracted-spectra format of io/observations.h.

}  // namespace csst
