// Simulated LAMOST low-resolution spectra of synthetic stars (the embedded default input).
#pragma once

#include <array>
#include <cstdint>
#include <string>

#include "core/prepare.h"
#include "io/catalogue.h"
#include "io/spectrum_io.h"

namespace csst {

class Rng;

struct LamostSimOptions {
  double resolving_power = 1800.0;    // LAMOST LRS at 5500 A
  double coeff0 = 3.5682;             // log10 of the first pixel centre [A] (DR7 files)
  double coeff1 = 1e-4;               // log10 dispersion per pixel
  int n_pixels = 3909;                // DR7 layout
  double bad_pixel_fraction = 0.002;  // pixels flagged in andmask with ivar = 0
  void Validate() const;
};

// SNR in the five LAMOST bands (u, g, r, i, z) from the catalogue's snr_g and snr_r, with the
// ratios of a typical FGK spectrum (u = 0.15 g, i = 1.3 r, z = 1.07 r).
std::array<double, 5> LamostBandSnr(const StarRecord& star);

// The noiseless LAMOST-grid spectrum (observed frame: Doppler shifted by the star's RV, degraded
// to the LAMOST resolution, flux-conservingly resampled) of a native rest-frame surface-flux
// spectrum scaled so that its scaling-window flux equals WindowFluxFromG(star.gmag), in units of
// 1e-17 erg s^-1 cm^-2 A^-1; `err` holds the per-pixel 1-sigma for the star's SNR.
Spectrum NoiselessLamost(const Spectrum& native, double native_r, const StarRecord& star,
                         const LamostSimOptions& options);
// The same from a spectrum already at resolving power r_in (> the LAMOST resolution; a label grid's
// reference spectrum): the kernel is the difference sqrt(sigma_LAMOST^2 - sigma_in^2), so the
// result has the LAMOST resolution however r_in compares with it.
Spectrum NoiselessLamostFromResolved(const Spectrum& spectrum, double r_in, const StarRecord& star,
                                     const LamostSimOptions& options);
// The network input a noiseless LAMOST spectrum of this star gives after ingest: NoiselessLamost
// (Doppler shift, LAMOST resolution, LAMOST pixels) followed by ingest's PrepareNetworkInput (rest
// frame, input grid, continuum). The training grid and the simulated sample share this path, so the
// network is trained on inputs made as the pipeline's own stars are (the noise is added later, by
// the trainer).
PreparedInput NoiselessNetworkInput(const Spectrum& native, double native_r, const StarRecord& star,
                                    const LamostSimOptions& options, const std::string& what);
// Adds Gaussian noise of the stored sigma and flags bad pixels; fills the LAMOST header.
LamostSpectrum ObserveLamost(const Spectrum& noiseless, const StarRecord& star,
                             const LamostSimOptions& options, Rng& rng);

// MK subclass label from Teff (for the SUBCLASS keyword; dwarfs).
std::string SubclassFromTeff(double teff);

}  // namespace csst
