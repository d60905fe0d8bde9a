// The training-set file of the UaRA-net (written by simulation/training_grid, read by network/):
// table GRID with NAME, TEFF, LOGG, MH, ALPHA, TEST (1 = held-out test star), INPUT (2238,
// noiseless normalised R=2000 spectrum), TARGET (574, R=200 SED scaled at 5526-5586 A) and TMASK
// (574, 1 = valid target pixel).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "io/fits.h"

namespace csst {

struct TrainingGrid {
  std::vector<double> teff, logg, mh, alpha;
  std::vector<uint8_t> test;         // 1 = test split
  std::vector<float> input;          // n x 2238 (normalised, noiseless)
  std::vector<float> target;         // n x 574 (scaled SED)
  std::vector<uint8_t> target_mask;  // n x 574, 1 = use in the loss
  std::vector<std::string> name;
  size_t size() const { return teff.size(); }
};

TrainingGrid ReadTrainingGrid(const std::string& path);
void WriteTrainingGrid(const std::string& path, const TrainingGrid& grid,
                       const Provenance& provenance);

}  // namespace csst
