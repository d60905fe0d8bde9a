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

#include "core/catalogue.h"
#include "core/fits.h"
#include "simulation/csst/instrument.h"
#include "simulation/csst/true_flat.h"

namespace csst {

struct ObserveOptions {
  std::string mode = "spectral";   // spectral | image
  std::string placement = "random";  // random | sky
  bool photon_noise = true;        // false: noiseless counts (sigma set to 1e-12 relative)
  bool reddening = false;          // apply the star's true E(B-V)
  double zeroth_order_fraction = 0.0;  // probability per star and band of a 0th-order overlap
  double cosmic_ray_rate = 0.0;    // hits per output pixel (whole exposure set)
  double outlier_fraction = 0.0;   // stars whose flux is off by a random factor (binaries/variables)
  double outlier_amplitude = 0.1;  // rms of that factor's deviation from 1
  void Validate() const;
};

enum ObsFlag : uint8_t {
  kObsOffDetector = 1,   // wavelength falls off the detector
  kObsOutsideBand = 2,   // outside the band's nominal range
  kObsCosmicRay = 4,     // hit by a cosmic ray (truth; not used by the fit)
  kObsZerothOrder = 8,   // overlapped by a 0th order (truth)
};

struct BandObservation {
  int band = 0, detector = 0;          // detector index = band * per_band + k
  double x0 = 0, y0 = 0;               // detector position of the band centre
  std::vector<double> x, y;            // per output pixel
  std::vector<double> counts, sigma;   // e- (background-subtracted)
  std::vector<double> expected;        // noiseless counts (truth, for tests)
  std::vector<uint8_t> flag;
  double counts_stamp_sum = 0;         // image mode: background-subtracted sum over the stamp
  double stamp_expected = 0;           // image mode: expected source counts in the stamp
  double stamp_noise_var = 0;          // image mode: variance of that sum (source + background + read)
};

struct StarObservation {
  int64_t obsid = 0;
  double window_flux = 0;  // true flux at 5526-5586 A [erg/s/cm2/A]
  double ebv = 0;          // true E(B-V)
  double flux_error = 1;   // multiplicative flux error of an outlier star (1 = none)
  BandObservation band[3];
};

// CCM89 extinction A(lambda) / A(V) for R_V = 3.1; lambda in A (valid 1250-33000 A).
double ExtinctionCcm89(double lambda, double rv = 3.1);

// Star positions: detector and (x0, y0) per band; star i depends only on (seed, i).
void PlaceStars(const Instrument& inst, const std::vector<StarRecord>& stars, const std::string& placement,
                uint64_t seed, std::vector<StarObservation>& obs);

// Simulates all stars (parallel over stars); `sed_fine[i]` is star i's SED on TruthGrid() scaled to
// 1 in the window, `window_flux[i]` its flux there. `noise_stream` separates noise realisations.
std::vector<StarObservation> Observe(const Instrument& inst, const TrueFlat& flat, const ObserveOptions& options,
                                     const std::vector<StarRecord>& stars,
                                     const std::vector<std::vector<double>>& sed_fine,
                                     const std::vector<double>& window_flux, uint64_t seed,
                                     const std::string& noise_stream);

// The two halves of spectral-mode Observe, for studies that draw many noise realizations of one
// set of stars: ObserveExpected places the stars and computes expected counts and their sigma
// (counts = expected); DrawObservationNoise draws one realization. Observe(..., seed, stream) equals
// DrawObservationNoise(ObserveExpected(..., seed), options, seed, stream) exactly.
std::vector<StarObservation> ObserveExpected(const Instrument& inst, const TrueFlat& flat, const ObserveOptions& options,
                                             const std::vector<StarRecord>& stars,
                                             const std::vector<std::vector<double>>& sed_fine,
                                             const std::vector<double>& window_flux, uint64_t seed);
std::vector<StarObservation> DrawObservationNoise(const std::vector<StarObservation>& expected,
                                                  const ObserveOptions& options, uint64_t seed,
                                                  const std::string& noise_stream);

void WriteObservations(const std::string& path, const std::vector<StarObservation>& obs, const Provenance& prov);
std::vector<StarObservation> ReadObservations(const std::string& path);

// Expected counts per output pixel for a given SED at Earth on the output grid (erg/s/cm2/A),
// with the flat set to 1: A t (lambda/hc) T(lambda) F(lambda) d(lambda) at pixel centres. Used by
// `compare` to turn a predicted SED into expected counts.
std::vector<double> ExpectedCounts(const Instrument& inst, int band, const std::vector<double>& sed_out);

}  // namespace csst
