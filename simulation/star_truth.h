// The ingested stars joined to their simulated truth (stars.fits with truth.fits): what simulate
// and validate need about each star.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "io/ingest.h"
#include "simulation/dr7_sample.h"

namespace csst {

// Loads what simulate/validate need about the ingested stars: records (with the catalogue's E(B-V)
// as ingest kept it), true SEDs and window fluxes, in the ingest order. Each star is joined to its
// truth by identity (obsid and SpectrumDataHash); a star the truth did not make is an error naming
// both files. The fine true SEDs (24 kB a star) are not held: SedFine reads a block of stars' rows.
struct StarTruth {
  std::vector<StarRecord> stars;
  std::vector<double> z;
  std::vector<std::vector<double>> sed;  // R = 200 on OutputGrid() (empty unless loaded with_sed)
  std::vector<double> window_flux;
  std::string star_set;                      // StarSetId of stars.fits
  std::vector<long> truth_row;               // each star's row in the truth file
  std::shared_ptr<SampleTruthReader> truth;  // that file, for the rows read on demand
  // The true SEDs on TruthGrid() (R = 1000), or on OutputGrid() (R = 200), of stars first .. first
  // + count - 1.
  std::vector<std::vector<double>> SedFine(size_t first, size_t count) const;
  std::vector<std::vector<double>> ReadSed(size_t first, size_t count) const;
};
StarTruth LoadStarTruth(const std::string& stars, const std::string& truth, bool with_sed = true);

}  // namespace csst
