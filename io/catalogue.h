// LAMOST-style star catalogue: one row per star (obsid, designation, ra, dec, snrg, snrr, teff,
// logg, feh, alpha, Gaia G, rv, E(B-V)). FITS binary table "CATALOGUE"; CSV with a header line.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "io/fits.h"

namespace csst {

struct StarRecord {
  int64_t obsid = 0;
  std::string designation;
  double ra = 0, dec = 0;                         // deg (ICRS)
  double teff = 0, logg = 0, feh = 0, alpha = 0;  // K, dex(cgs), dex, dex
  double gmag = 0;                                // Gaia G [mag]
  double snr_g = 0, snr_r = 0;                    // per-pixel SNR in g and r
  double rv = 0;                                  // km/s
  double ebv = 0;                                 // mag
};

// Flux density at Earth in the scaling window 5526-5586 A [erg s^-1 cm^-2 A^-1] of a star of
// Gaia G magnitude g, taking G ~ V (colour terms neglected; Vega: 3.63e-9 at 5556 A for V = 0).
double WindowFluxFromG(double g);

// Column names (configurable for catalogues from elsewhere).
struct CatalogueColumns {
  std::string obsid = "obsid", designation = "designation", ra = "ra", dec = "dec";
  std::string teff = "teff", logg = "logg", feh = "feh", alpha = "alpha", gmag = "phot_g_mean_mag";
  std::string snr_g = "snrg", snr_r = "snrr", rv = "rv", ebv = "ebv";
};

void WriteCatalogueFits(const std::string& path, const std::vector<StarRecord>& stars,
                        const Provenance& provenance);
// Reads a FITS table (first table HDU) or a CSV (by extension .csv, any case). Only obsid is
// required (IoError naming the file and column). Absent alpha, rv, ebv, designation read as 0/"";
// absent ra, dec, teff, logg, feh, G, snrg, snrr as NaN (not given). A non-numeric CSV cell, an
// obsid that is not an integer, and two rows with one obsid throw naming file, row(s) and column;
// a catalogue without rows throws. Designations are made printable ASCII (PrintableAscii).
std::vector<StarRecord> ReadCatalogue(const std::string& path, const CatalogueColumns& cols = {});
// The column names of a catalogue (FITS table or CSV), without reading its rows.
std::vector<std::string> CatalogueColumnNames(const std::string& path);
// Catalogue column names match without regard to case, as FITS's do (TTYPE 'OBSID' is column
// obsid), in FITS tables and CSV headers alike; a CSV header naming one column twice in any case is
// an error.
bool SameColumnName(const std::string& a, const std::string& b);
bool HasColumnNamed(const std::vector<std::string>& names, const std::string& column);

// Why a catalogue row cannot be used ("" when it can): an infinite value, or one outside its
// physical range (RA 0..360, Dec -90..90, Teff 1000..100000 K, ...). NaN means "not given" (a FITS
// null or an absent optional column) and is left to the step that needs the value.
std::string CatalogueRowProblem(const StarRecord& star, const CatalogueColumns& columns = {});

// `s` with every byte outside printable ASCII written as \xNN (FITS strings are ASCII).
std::string PrintableAscii(const std::string& s);

// Writes the records as CSV with the default column names (NaN cells as "nan").
void WriteCatalogueCsv(const std::string& path, const std::vector<StarRecord>& stars);

// A CSV file: its header line and rows (empty lines skipped). Throws IoError (without the path,
// which callers add) for an unreadable or empty file and a row whose field count differs.
struct CsvTable {
  std::vector<std::string>
      header;  // a leading UTF-8 byte-order mark removed; a name twice is an error
  std::vector<std::vector<std::string>> rows;
  std::vector<long> line;  // per row: its line number in the file (1 = the header)
};
CsvTable ReadCsvTable(const std::string& path);

// One CSV line split at commas outside double quotes (quotes removed, CR dropped).
std::vector<std::string> SplitCsv(const std::string& line);

}  // namespace csst
