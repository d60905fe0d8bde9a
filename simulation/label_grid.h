// A precomputed label grid of the built-in synthesizer, for simulated samples at survey scale
// (issue #31): synthesis costs ~65 ms per star, the grid's interpolation ~1 ms.
//
// Each node (Teff, log g, [M/H]; [alpha/M] follows [M/H] as in the population, AlphaForFeh) holds,
// as float log flux of the native surface-flux spectrum:
//   - the R = 200 SED on OutputGrid() (the method's target, before scaling),
//   - the R = 1000 SED on TruthGrid(),
//   - the spectrum degraded to r_ref on a uniform ln(lambda) grid over the LAMOST range with room
//   for
//     radial velocities; the per-star LAMOST spectrum is made from it by the difference kernel to
//     the LAMOST resolution (NoiselessLamostFromResolved), so line depths at R ~ 1800 are kept.
// A star's products are four-node Lagrange (cubic) interpolations in each label of the log flux
// (non-uniform Teff nodes: 125 K steps below 6500 K, 250 K above). Accuracy against direct
// synthesis is measured by `make bench` (section label-grid) and stated in docs/simulation.md.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "core/grid.h"
#include "core/spectrum.h"
#include "io/fits.h"
#include "simulation/population.h"

namespace csst {

struct LabelGridOptions {
  std::vector<double> teff, logg, feh;  // node coordinates, strictly increasing, >= 2 each
  double r_ref = 4000.0;                // resolving power of the stored LAMOST-range spectra
  double ref_min = 3620.0,
         ref_max = 9250.0;  // their range [A] (LAMOST 3700-9100 A, RV and kernel room)
  double ref_step = 5e-5;   // their pixel step in ln(lambda) (the pixels add (step^2/24) f''/f)
  // A text naming every choice above: the cache file's key.
  std::string Key() const;
  void Validate() const;  // throws Error naming the problem
};

// The nodes that cover a population's label box (its Teff range; log g 0.5-5.0 and [M/H] -2.5-0.5,
// where DrawPopulation clamps them).
LabelGridOptions LabelGridFor(const PopulationOptions& population);

class LabelGrid {
 public:
  // Synthesizes every node (parallel; progress shown).
  static LabelGrid Build(const LabelGridOptions& options);
  // Loads a grid written by Save; throws IoError naming the file when its options differ from
  // `expected` or its content does not hold together.
  static LabelGrid Load(const std::string& path, const LabelGridOptions& expected);
  void Save(const std::string& path, const Provenance& provenance) const;
  // The grid for `options` from the cache folder (label_grid_<key>.fits), built and saved when
  // absent or when a node synthesized afresh no longer matches it (the synthesizer changed).
  static LabelGrid Cached(const LabelGridOptions& options, const std::filesystem::path& cache_dir);

  struct Star {
    Spectrum sed200;    // surface flux on OutputGrid(), R = 200
    Spectrum sed_fine;  // surface flux on TruthGrid(), R = 1000
    Spectrum ref;       // surface flux on the reference grid, resolution ResolvedR()
  };
  // Throws Error when a label lies outside the grid's box.
  Star Interpolate(double teff, double logg, double feh) const;
  // The resolving power the reference spectra have (r_ref with the reference pixels' boxcar), which
  // NoiselessLamostFromResolved takes as the input resolution.
  double ResolvedR() const;
  const LabelGridOptions& options() const { return options_; }
  size_t NumNodes() const {
    return options_.teff.size() * options_.logg.size() * options_.feh.size();
  }

  // The products of one node, synthesized directly (what the grid stores, before the log).
  static Star SynthesizeNode(const LabelGridOptions& options, double teff, double logg, double feh);

 private:
  LabelGridOptions options_;
  size_t width_ = 0;         // floats per node: 574 + TruthGrid().size() + reference pixels
  std::vector<float> data_;  // node-major (feh fastest, then logg, then teff), log flux
  std::vector<uint32_t>
      mask_;  // per column: the mask every node has there (a band-end pixel without coverage)
  size_t Node(size_t it, size_t ig, size_t iff) const;
  // Node k's stored row, synthesized afresh (log flux; 0 where mask_ is set). Build fills data_
  // with it and a cached grid is checked against it.
  std::vector<float> NodeRow(size_t k) const;
};

// The reference grid of a label grid's LAMOST-range spectra.
WavelengthGrid ReferenceGrid(const LabelGridOptions& options);

}  // namespace csst
