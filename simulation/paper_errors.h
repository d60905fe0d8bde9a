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

// The stars a call predicts: `count` stars from star `first` of a sample, their true R = 200 SEDs
// (574 pixels each, scaled as mu is), Teff and SNR pointing at that star. Each star draws from its
// index in the sample, so blocks of stars give exactly what one call over the sample gives.
struct PaperErrorStars {
  const std::vector<double>* truth_sed;
  const double* teff;
  const double* snr;
  size_t count;
  size_t first;
};
// mu = truth (1 + sigma_b N(0,1)), sigma = sigma_b per pixel; mu and sigma get count x 574 values.
void PaperErrorPredictions(const PaperErrorStars& stars, uint64_t seed, uint64_t realization,
                           float* mu, float* sigma);

}  // namespace csst
