// Empirical spectral libraries with their stellar parameters (MILES, STELIB, NGSL) loaded as one
// list of stars: the training sets of the GPR (paper App. C) and of fine-tuning grids.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "core/enum_names.h"
#include "core/spectrum.h"

namespace csst {

struct LibraryStar {
  std::string name;  // file name
  double teff = 0, logg = 0, feh = 0;
  double fwhm = 0;    // A, instrumental resolution (0 = unknown)
  Spectrum spectrum;  // vacuum wavelengths [A], per-A flux (relative for MILES)
};

struct LibrarySelection {
  double teff_min = 0, teff_max = 1e9;  // K
  double logg_min = -10, logg_max = 10;
};

// A spectral library's kind: its file naming and where its stellar parameters come from
// (LoadLibrary).
enum class LibraryKind { kMiles, kStelib, kNgsl };
inline constexpr EnumNames<LibraryKind, 3> kLibraryKindNames = {{{LibraryKind::kMiles, "miles"},
                                                                 {LibraryKind::kStelib, "stelib"},
                                                                 {LibraryKind::kNgsl, "ngsl"}}};
constexpr const auto& NamesOf(LibraryKind) { return kLibraryKindNames; }

struct Library {
  LibraryKind kind = LibraryKind::kMiles;
  std::vector<LibraryStar> stars;  // sorted by file name
  std::vector<std::pair<std::string, std::string>>
      skipped;  // (file, reason): nothing is dropped silently
};

struct NamedParams {
  std::string name;
  double teff = 0, logg = 0, feh = 0;  // NaN = unknown
};
// CSV with a header line naming columns file (or name), teff, logg, feh; '-' or an empty cell =
// unknown. Rows in file order. Throws IoError naming the file, row and column of a bad cell.
std::vector<NamedParams> ReadParameterCsv(const std::string& path);

// kind = miles: MILES_res2.50_star_mNNNNV.fits with parameters from paramsMILES_v9.1.txt in `dir`;
// kind = stelib: STELIB_*.fits, parameters from their headers; kind = ngsl: *.fits tables,
// parameters only from `params_csv`. `params_csv` (header line with columns file, teff, logg, feh;
// '-' or empty = unknown) overrides the library's own parameters for the files it names. Stars
// missing any of the three parameters, outside the selection, or unreadable are listed in `skipped`
// with the reason. Throws ConfigError for NGSL without `params_csv` and IoError naming the file for
// a missing directory or a bad parameter file.
Library LoadLibrary(LibraryKind kind, const std::string& dir, const std::string& params_csv = "",
                    const LibrarySelection& selection = {});

}  // namespace csst
