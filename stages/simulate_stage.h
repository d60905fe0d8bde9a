// Stage `simulate`: CSST slitless observations of the ingested stars through the injected true
// flat -> observations.fits and true_flat.fits.
#pragma once

#include <cstdint>
#include <string>

#include "instrument/instrument.h"
#include "simulation/csst/observe.h"
#include "simulation/csst/true_flat.h"

namespace csst {

// The true flat is drawn from `flat_seed`; star placement and noise from `seed`.
void RunSimulateStage(const InstrumentOptions& instrument, const TrueFlatOptions& flat, const ObserveOptions& observe,
                      uint64_t flat_seed, uint64_t seed, const std::string& config_hash, const std::string& stars,
                      const std::string& truth, const std::string& observations_out,
                      const std::string& true_flat_out);

// Loads what simulate/validate need about the ingested stars: records (with the catalogue's E(B-V)
// as ingest kept it), true SEDs and window fluxes, in the ingest order. Each star is joined to its
// truth by identity (obsid and SpectrumDataHash); a star the truth did not make is an error naming
// both files.
struct StarTruth {
  std::vector<StarRecord> stars;
  std::vector<double> z;
  std::vector<std::vector<double>> sed, sed_fine;
  std::vector<double> window_flux;
  std::string star_set;  // StarSetId of stars.fits
};
StarTruth LoadStarTruth(const std::string& stars, const std::string& truth);

}  // namespace csst
