// The simulated LAMOST DR7-like sample: population, synthetic spectra, LAMOST-format files and the
// truth kept for validation. Parallel over stars; star i depends only on (seed, i).
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "core/enum_names.h"
#include "io/fits.h"
#include "simulation/lamost_sim.h"
#include "simulation/population.h"

namespace csst {

// How a star's spectra are made: synthesized one by one (~65 ms each), or interpolated in a label
// grid of the synthesizer (simulation/label_grid.h: ~1 ms each after the grid is built once and
// cached).
enum class SampleSynthesis { kDirect, kGrid };
inline constexpr EnumNames<SampleSynthesis, 2> kSampleSynthesisNames = {
    {{SampleSynthesis::kDirect, "direct"}, {SampleSynthesis::kGrid, "grid"}}};
constexpr const auto& NamesOf(SampleSynthesis) { return kSampleSynthesisNames; }

struct Dr7SampleOptions {
  PopulationOptions population;
  LamostSimOptions lamost;
  SampleSynthesis synthesis = SampleSynthesis::kDirect;
  std::string grid_cache;  // kGrid: the folder of label_grid_<key>.fits ("" = DefaultGridCache())
  int block_stars = 2048;  // stars made, written and freed together (the stage's memory: ~91 kB a
                           // star of a block)
};

struct Dr7SamplePaths {
  std::filesystem::path catalogue;     // FITS catalogue (StarRecord columns)
  std::filesystem::path lamost_dir;    // one spec-<obsid>.fits per star (DR7 layout)
  std::filesystem::path truth;         // truth.fits: true SEDs (R = 200 and R = 1000) and scales
  std::filesystem::path lamost_truth;  // noiseless LAMOST-grid spectra and their sigma
};

// $XDG_CACHE_HOME/csst-flatcube, else $HOME/.cache/csst-flatcube, else ./.csst-flatcube-cache.
std::filesystem::path DefaultGridCache();

// Writes every product; `provenance` is copied into each file. Throws on I/O errors.
void WriteDr7Sample(const Dr7SampleOptions& options, uint64_t seed, const Provenance& provenance,
                    const Dr7SamplePaths& paths);

// The truth file's contents.
struct SampleTruth {
  std::vector<int64_t> obsid;
  std::vector<std::string>
      spec_hash;  // per star: SpectrumDataHash of the LAMOST file the sample wrote
  std::vector<double> window_flux;            // erg s^-1 cm^-2 A^-1 at 5526-5586 A (at Earth)
  std::vector<std::vector<double>> sed;       // R = 200 on OutputGrid(), scaled to 1 in the window
  std::vector<std::vector<double>> sed_fine;  // R = 1000 on TruthGrid(), scaled likewise
};
SampleTruth ReadSampleTruth(const std::string& path);

// The truth file read on demand, for stages that stream over their sample: obsid, spec_hash and
// window_flux (a few bytes a star) at construction, the SED rows only when asked for. Rows are
// 0-based rows of TRUTH, given in any order and returned in that order. Safe to call from several
// threads (one file handle behind a mutex).
class SampleTruthReader {
 public:
  explicit SampleTruthReader(const std::string& path);
  const std::string& path() const { return path_; }
  const std::vector<int64_t>& obsid() const { return obsid_; }
  const std::vector<std::string>& spec_hash() const { return spec_hash_; }
  const std::vector<double>& window_flux() const { return window_flux_; }
  std::vector<std::vector<double>> Sed(const long* rows, size_t n);      // R = 200, OutputGrid()
  std::vector<std::vector<double>> SedFine(const long* rows, size_t n);  // R = 1000, TruthGrid()

 private:
  std::string path_;
  std::unique_ptr<FitsReader> r_;
  std::mutex mu_;
  std::vector<int64_t> obsid_;
  std::vector<std::string> spec_hash_;
  std::vector<double> window_flux_;
};
void WriteSampleTruth(const std::string& path, const SampleTruth& truth,
                      const Provenance& provenance, const std::string& descrip);

struct NoiselessLamostSet {
  std::vector<int64_t> obsid;
  std::vector<Spectrum> spectra;  // LAMOST grid, 1e-17 erg s^-1 cm^-2 A^-1, err = sigma
};
NoiselessLamostSet ReadNoiselessLamost(const std::string& path);
// The same file read on demand, a block of stars at a time (the Monte Carlo reads its stars'
// noiseless spectra afresh in every realization instead of holding them): OBSID and WAVELENGTH at
// construction, FLUX and ERR rows when asked for. Thread-safe like SampleTruthReader.
class NoiselessLamostReader {
 public:
  explicit NoiselessLamostReader(const std::string& path);
  const std::string& path() const { return path_; }
  const std::vector<int64_t>& obsid() const { return obsid_; }
  std::vector<Spectrum> Read(const long* rows, size_t n);  // 0-based rows of LAMOST, in that order

 private:
  std::string path_;
  std::unique_ptr<FitsReader> r_;
  std::mutex mu_;
  std::vector<int64_t> obsid_;
  std::vector<double> wave_;
};
// What WriteNoiselessLamost writes: one row per star on the common wavelength grid `wave` (flux/err
// in 1e-17 erg/s/cm2/A; err 0 marks pixels without data).
struct NoiselessLamostRows {
  std::vector<int64_t> obsid;
  std::vector<double> wave;
  std::vector<std::vector<double>> flux, err;
};
void WriteNoiselessLamost(const std::string& path, const NoiselessLamostRows& rows,
                          const Provenance& provenance, const std::string& descrip);

}  // namespace csst
