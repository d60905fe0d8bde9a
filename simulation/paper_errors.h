// "Predictions" made from the true SEDs perturbed by the paper's error table (Yang et al. 2024,
// Table 2: 1-sigma of the relative residuals per band at Teff 6000 / 8000 K and SNR 20 / 40 / 80),
// so that the flat-field part of the method can be compared with the paper on its own
// (network.mode = paper_errors). sigma_b(Teff, SNR) is interpolated linearly in Teff between 6000
// and 8000 K (clamped outside) and linearly in ln SNR between 20, 40 and 80 (clamped); every
// output pixel gets an independent Gaussian relative error of that sigma (pixels outside the three
// bands take the nearest band's).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace csst {

double PaperSigma(int band, double teff, double snr);  // band 0 GU, 1 GV, 2 GI

// mu = truth (1 + sigma_b N(0,1)), sigma = sigma_b per pixel; rows: stars, 574 pixels each.
void PaperErrorPredictions(const std::vector<std::vector<double>>& truth_sed,
                           const std::vector<double>& teff, const std::vector<double>& snr,
                           uint64_t seed, uint64_t realization, std::vector<float>* mu,
                           std::vector<float>* sigma);
// The same for `count` stars from star `first` of a larger sample (`truth_sed`, `teff` and `snr`
// point at that star; mu and sigma get count x 574 values): each star draws from its index in the
// sample, so blocks of stars give exactly what one call gives.
void PaperErrorPredictions(const std::vector<double>* truth_sed, const double* teff,
                           const double* snr, size_t count, size_t first, uint64_t seed,
                           uint64_t realization, float* mu, float* sigma);

}  // namespace csst
