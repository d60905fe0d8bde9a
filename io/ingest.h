// Ingest: LAMOST stars (catalogue + spectra directory) -> normalised 2238-pixel network inputs.
// Selection as in the paper: SNR > snr_min in the chosen band, G > g_min, teff_min <= Teff <=
// teff_max, CLASS STAR, coverage of 4000-7000 A >= prepare.min_coverage. Every rejected star lands
// in the REJECTS table with its reason. Streams: files are processed in chunks (parallel within a
// chunk) and rows appended to the output as they are done, so memory does not grow with the
// number of files.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "core/enum_names.h"
#include "core/prepare.h"
#include "io/catalogue.h"
#include "io/fits.h"

namespace csst {

// Where the stars come from (ingest.source).
enum class IngestSource {
  kSample,  // the simulated DR7 sample (stage sample)
  kFiles,   // ingest.catalogue + ingest.spectra_dir
};
inline constexpr EnumNames<IngestSource, 2> kIngestSourceNames = {
    {{IngestSource::kSample, "sample"}, {IngestSource::kFiles, "files"}}};
constexpr const auto& NamesOf(IngestSource) { return kIngestSourceNames; }

// ingest.snr_band: the LAMOST band whose SNR selects stars.
enum class SnrBand { kG, kR };
inline constexpr EnumNames<SnrBand, 2> kSnrBandNames = {{{SnrBand::kG, "g"}, {SnrBand::kR, "r"}}};
constexpr const auto& NamesOf(SnrBand) { return kSnrBandNames; }

struct IngestOptions {
  IngestSource source =
      IngestSource::kSample;  // sample: the pipeline's simulated DR7 sample; files: below
  std::string catalogue;    // files: FITS table or CSV catalogue ("" = from the spectra's headers)
  std::string labels;       // files without catalogue: CSV of labels joined by file name
  std::string spectra_dir;  // files: directory of LAMOST spectra (any layout)
  SnrBand snr_band = SnrBand::kG;               // the SNR used for selection
  double snr_min = 20.0;                        // keep SNR > snr_min
  double g_min = 14.0;                          // keep G > g_min (brighter stars saturate CSST)
  double teff_min = 5000.0, teff_max = 9750.0;  // K
  bool use_ormask = false;                      // also mask pixels flagged in any exposure
  int chunk = 256;                              // files per streaming chunk
  PrepareOptions prepare;
  CatalogueColumns columns;
  void Validate() const;
};

struct IngestSummary {
  long kept = 0;
  std::map<std::string, long> rejected;  // reason class -> count
  long window_from_spectrum = 0;  // kept stars whose flux scale came from their spectrum (no G)
};

// Writes `out_path` (tables STARS, REJECTS, WAVELENGTH). `progress_label` names the progress bar.
IngestSummary Ingest(const IngestOptions& options, const std::string& catalogue_path,
                     const std::string& spectra_dir, const std::string& out_path,
                     const Provenance& provenance);

// obsid -> file in `dir`: "spec-<obsid>.fits" when every star has one, otherwise the OBSID header
// keyword of every *.fits / *.fit file (unreadable files are left out). Throws IoError if `dir` is
// not a directory.
// unreadable (optional): FITS files of the folder that give no OBSID, each with its reason. Two
// files with one OBSID are an IoError naming both.
// shared: every MPI rank calls it at once (a distributed stage) and reads a share of the headers;
// each gets the index one process makes. With one process it changes nothing.
std::map<int64_t, std::string> IndexSpectra(const std::string& dir,
                                            const std::vector<int64_t>& obsids,
                                            std::vector<std::string>* unreadable = nullptr,
                                            bool shared = false);
// The FITS files (.fits/.fit) of a folder, sorted; broken or looping links are logged and skipped.
std::vector<std::filesystem::path> FitsFilesIn(const std::string& dir);

// A catalogue from the headers of the LAMOST files in `dir` (OBSID, DESIG, RA, DEC, SNRG, SNRR,
// Z -> rv) joined by file name to `labels` (optional CSV with a 'file' column and any of teff,
// logg, feh, alpha, rv; a label's rv wins over the header's). No G, no E(B-V): NaN/0. Unreadable
// files are left out and listed in `skipped` ("file: reason"); `files` (optional) receives
// obsid -> file. Throws IoError if none is readable.
std::vector<StarRecord> CatalogueFromHeaders(const std::string& dir, const std::string& labels,
                                             std::vector<std::string>* skipped,
                                             std::map<int64_t, std::string>* files = nullptr);
// The column names CatalogueFromHeaders fills (with `labels`' columns among teff, logg, feh,
// alpha).
std::vector<std::string> CatalogueFromHeadersColumns(const std::string& labels);

// The STARS table of an ingest product (or of `prepare`).
struct PreparedStars {
  std::vector<StarRecord> stars;
  std::vector<double> z;            // redshift used for the rest frame
  std::vector<double> window_flux;  // flux at 5526-5586 A [erg/s/cm2/A] (FLUXSRC: G or spectrum)
  std::vector<std::string> window_source;  // "G" or "spectrum"
  std::vector<std::string> spec_hash;  // SpectrumDataHash of each star's spectrum ("" = unknown)
  std::vector<float> flux, err;        // n x 2238, row-major
  std::vector<uint8_t> mask;           // n x 2238
  size_t size() const { return stars.size(); }
};
// with_inputs false: the stars' records only (flux, err and mask left empty), for a stage that
// joins by star and never reads the network inputs (a tenth of the memory at 2238 pixels a star).
PreparedStars ReadPreparedStars(const std::string& path, bool with_inputs = true);
// The network inputs of an ingest product read a block of rows at a time, for a stage that streams
// over its stars (the records come from ReadPreparedStars(path, false)).
class PreparedInputsReader {
 public:
  explicit PreparedInputsReader(const std::string& path);
  long rows() const { return rows_; }
  // Rows first .. first + count - 1 (0-based): flux and err (count x 2238 each) and, when given,
  // mask.
  void Read(long first, long count, float* flux, float* err, uint8_t* mask = nullptr);

 private:
  FitsReader r_;
  long rows_ = 0;
};

// Why a star lies outside the network's training domain, the pipeline's selection ("" if inside):
// its input's SNR (median flux / err over unmasked pixels) below options.snr_min, or a known Teff
// (finite, > 0) outside teff_min..teff_max. `predict FILE...` predicts such stars anyway and flags
// them.
std::string TrainingDomainReason(double snr, double teff, const IngestOptions& options);
// The median flux / err of a prepared input over its unmasked pixels (0 when none).
double InputSnr(const PreparedInput& input);

// Identity of a star set: a hash of every star's obsid and spectrum hash, in order (16 hex digits).
// Products joined to stars.fits carry it (STARSET) and the join refuses another set.
std::string StarSetId(const PreparedStars& s);

// Writes prepared inputs (used by `prepare` and by Ingest).
void WritePreparedStars(FitsWriter& w, const PreparedStars& s, long first_row);
std::vector<FitsColumn> PreparedStarsLayout();

}  // namespace csst
