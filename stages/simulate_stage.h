// Stage `simulate`: CSST slitless observations of the ingested stars through the injected true
// flat -> observations.fits and true_flat.fits.
#pragma once

#include <cstdint>
#include <string>

#include "simulation/csst/instrument.h"
#include "simulation/csst/observe.h"
#include "simulation/csst/true_flat.h"

namespace csst {

// The true flat is drawn from `flat_seed`; star placement and noise from `seed`.
void RunSimulateStage(const InstrumentOptions& instrument, const TrueFlatOptions& flat, const ObserveOptions& observe,
                      uint64_t flat_seed, uint64_t seed, const std::string& config_hash, const std::string& stars,
                      const std::string& catalogue, const std::string& truth, const std::string& observations_out,
                      const std::string& true_flat_out);

// Loads what simulate/compare/validate need about the ingested stars: records (with E(B-V) from
// the catalogue), true SEDs and window fluxes, in the ingest order.
struct StarTruth {
  std::vector<StarRecord> stars;
  std::vector<double> z;
  std::vector<std::vector<double>> sed, sed_fine;
  std::vector<double> window_flux;
};
StarTruth LoadStarTruth(const std::string& stars, const std::string& catalogue, const std::string& truth);

}  // namespace csst
