// LAMOST-style star catalogue: one row per star (obsid, designation, ra, dec, snrg, snrr, teff,
// logg, feh, alpha, Gaia G, rv, E(B-V)). FITS binary table "CATALOGUE"; CSV with a header line.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/fits.h"

namespace csst {

struct StarRecord {
  int64_t obsid = 0;
  std::string designation;
  double ra = 0, dec = 0;                    // deg (ICRS)
  double teff = 0, logg = 0, feh = 0, alpha = 0;  // K, dex(cgs), dex, dex
  double gmag = 0;                           // Gaia G [mag]
  double snr_g = 0, snr_r = 0;               // per-pixel SNR in g and r
  double rv = 0;                             // km/s
  double ebv = 0;                            // mag
};

// Column names (configurable for catalogues from elsewhere).
struct CatalogueColumns {
  std::string obsid = "obsid", designation = "designation", ra = "ra", dec = "dec";
  std::string teff = "teff", logg = "logg", feh = "feh", alpha = "alpha", gmag = "phot_g_mean_mag";
  std::string snr_g = "snrg", snr_r = "snrr", rv = "rv", ebv = "ebv";
};

void WriteCatalogueFits(const std::string& path, const std::vector<StarRecord>& stars,
                        const Provenance& provenance);
// Reads a FITS table (first table HDU) or a CSV (by extension .csv). Optional columns (alpha, rv,
// ebv, designation) default to 0/"" when absent; required ones (obsid, ra, dec, teff, logg, feh,
// G, snrg, snrr) throw IoError naming the file and column; a non-numeric CSV cell throws naming
// file, row and column.
std::vector<StarRecord> ReadCatalogue(const std::string& path, const CatalogueColumns& cols = {});

// One CSV line split at commas outside double quotes (quotes removed, CR dropped).
std::vector<std::string> SplitCsv(const std::string& line);

}  // namespace csst
