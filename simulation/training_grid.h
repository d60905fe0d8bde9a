// Training/test sets for the UaRA-net: pairs (input = R=2000 normalised 2238-pixel spectrum,
// target = R=200 574-pixel SED scaled at 5526-5586 A), noiseless; the noise model of the paper is
// applied on the fly during training (fresh noise every epoch) and by `evaluate`.
// Sources: the built-in synthesizer (parameters drawn from `GridOptions`), BOSZ model files, or the
// STELIB library (empirical fine-tuning set: input from its own 4000-7000 A part degraded to
// R = 2000, target from its SED degraded to R = 200 where covered; uncovered target pixels are
// masked out of the loss).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/fits.h"
#include "core/training_set.h"

namespace csst {

struct GridOptions {
  std::string source = "builtin";  // builtin | bosz | stelib
  std::string source_dir;          // bosz / stelib: directory of files
  int n_stars = 20000;             // builtin: stars drawn
  double teff_min = 4500, teff_max = 10000;  // K, uniform
  double logg_min = 3.0, logg_max = 5.0;     // dwarfs/subgiants, uniform
  double giant_fraction = 0.2;     // stars cooler than 6000 K drawn as giants (log g 1.5-3.0)
  double mh_min = -2.5, mh_max = 0.5;
  double alpha_min = -0.25, alpha_max = 0.5;
  double test_fraction = 0.25;     // paper: 3:1 split by star
  int chunk = 500;                 // stars per resumable part
  // Library sources (the fine-tuning path of the paper):
  std::string inputs = "own";      // own: the star's 4000-7000 A part; gpr: generated from its parameters
                                   // by a GPR trained on MILES (paper: NGSL inputs from MILES)
  std::string gpr_library_dir;     // MILES directory (inputs = gpr); MILES stars within teff_min..teff_max
  double gpr_clean_cut = 0;        // > 0: drop stars whose GPR-predicted SED misses by RMSAE > cut
                                   // (simulation/gpr/library_gpr.h; paper: 0.068 for NGSL)
  void Validate() const;
};


// Writes `out_path` atomically; parts of finished chunks are kept in `out_path + ".parts/"` so an
// interrupted run resumes. Parallel over stars; star i depends only on (seed, i).
void MakeTrainingGrid(const GridOptions& options, uint64_t seed, const std::string& out_path,
                      const Provenance& provenance);

}  // namespace csst
