// Stage `predict`: UaRA-net SEDs (mu, sigma) of the ingested stars -> seds.fits. With
// network.mode = paper_errors the "predictions" are the true SEDs perturbed by the paper's error
// table (to compare the flat-field part with the paper on its own).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/fits.h"

namespace csst {

struct SedTable {
  std::vector<int64_t> obsid;
  std::vector<float> mu, sigma;  // n x 574
};
void WriteSeds(const std::string& path, const SedTable& t, const Provenance& p);
SedTable ReadSeds(const std::string& path);

void RunPredictStage(const std::string& mode, const std::string& model, const std::string& device, int batch,
                     int threads, uint64_t seed, const std::string& config_hash, const std::string& stars,
                     const std::string& truth, const std::string& seds_out);

}  // namespace csst
