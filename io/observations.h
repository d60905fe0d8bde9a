// CSST extracted 1-D slitless spectra: the one format in which observations enter the flat fit.
// The simulator writes it (stage simulate), spectra extracted elsewhere come in through it
// (observations.source: files, stage observations), and stage compare reads nothing else.
//
// FITS binary table HDU "EXTRACTED", one row per star and detector (a star is seen by one detector
// per band); n values per row in the array columns (n is fixed within a file, the wavelengths may
// differ from row to row):
//   column      type  unit       meaning
//   OBSID       K     -          LAMOST obsid of the star; -1 = unknown (then RA/DEC identify it)
//   RA, DEC     D     deg        ICRS position; NaN = unknown (then OBSID identifies it)
//   DETNAME     A     -          detector: GU1..GU4, GV1..GV4, GI1..GI4 (band, 1-based index) or
//                                its CSST chip id (core/detectors.h: "02" or "CHIP02" = GV1)
//   CHIPID      J     -          optional, written here: the CSST chip id (0 = none); not read
//   EXPTIME     D     s          total exposure time the counts were collected in
//   X0, Y0      D     pixel      trace reference: where the band's central wavelength lands
//   WAVELENGTH  nD    Angstrom   vacuum pixel centres, strictly increasing
//   X, Y        nD    pixel      detector position of each wavelength
//   COUNTS      nD    electron   background-subtracted counts integrated over the pixel
//   ERROR       nD    electron   1-sigma error of COUNTS (finite and > 0 wherever MASK = 0)
//   MASK        nB    -          0 = good; any bit set = not used (1 off detector, 2 outside the
//                                band, 16 bad in the extraction)
// At least one of OBSID and RA/DEC must be present as columns, and every row needs an obsid >= 0
// or a finite RA and DEC. Accepted TUNITs: Angstrom (angstrom, Angstroms, AA), electron
// (electrons, e-), s, pixel (pix), deg; anything else is an error naming file and column.
// Rows on another wavelength grid than the 574-pixel output grid (core/grid.h) are rebinned onto
// it flux-conservingly (COUNTS / pixel width as a density; errors as independent; an output pixel
// touched by a masked input pixel is masked; X, Y interpolated linearly).
//
// Optional HDUs: "TRUTH" (the simulator's; rows parallel to EXTRACTED: WINDOW_FLUX, EBV,
// FLUX_ERROR, EXPECTED, TRUTHFLAG), never read by compare; "REJECTS" (stage observations: the rows
// and stars that were not matched, with reasons). Header key STARSET of EXTRACTED: the identity of
// the star set (StarSetId, io/ingest.h) the rows belong to; stage compare refuses another.
#pragma once

#include <cstdint>
#include <limits>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/detectors.h"
#include "io/fits.h"

namespace csst {

enum ObsFlag : uint8_t {
  kObsOffDetector = 1,  // wavelength falls off the detector (or outside the extracted range)
  kObsOutsideBand = 2,  // outside the band's nominal range
  kObsCosmicRay = 4,    // hit by a cosmic ray (truth; not used by the fit)
  kObsZerothOrder = 8,  // overlapped by a 0th order (truth)
  kObsMasked = 16,      // masked by the extraction (MASK bit 16 or any bit other than 1, 2)
};

struct BandObservation {
  int band = 0, detector = 0;         // detector index = band * per_band + k
  double x0 = 0, y0 = 0;              // detector position of the band centre
  double exptime = 0;                 // s, total; 0 = the instrument's
  std::vector<double> x, y;           // per output pixel
  std::vector<double> counts, sigma;  // e- (background-subtracted); empty = not observed
  std::vector<double> expected;       // noiseless counts (truth, for tests)
  std::vector<uint8_t> flag;
  double counts_stamp_sum = 0;  // image mode: background-subtracted sum over the stamp
  double stamp_expected = 0;    // image mode: expected source counts in the stamp
  double stamp_noise_var = 0;   // image mode: variance of that sum (source + background + read)
  bool observed() const { return !counts.empty(); }
};

struct StarObservation {
  int64_t obsid = 0;
  double ra = std::numeric_limits<double>::quiet_NaN(),
         dec = std::numeric_limits<double>::quiet_NaN();
  double window_flux = 0;  // true flux at 5526-5586 A [erg/s/cm2/A] (truth)
  double ebv = 0;          // true E(B-V) (truth)
  double flux_error = 1;   // multiplicative flux error of an outlier star (1 = none; truth)
  BandObservation band[3];
};

class ByteWriter;
class ByteReader;
// A star's observation, or one band of it, as bytes and back, exactly (a scratch file or an MPI
// message).
void PutObservation(ByteWriter& w, const StarObservation& so);
StarObservation GetObservation(ByteReader& r);
void PutBandObservation(ByteWriter& w, const BandObservation& bo);
BandObservation GetBandObservation(ByteReader& r);

// One row of an EXTRACTED table as it is in the file (validated, not yet on the output grid).
struct ExtractedSpectrum {
  long row = 0;  // 1-based row in the file
  int64_t obsid = -1;
  double ra = std::numeric_limits<double>::quiet_NaN(),
         dec = std::numeric_limits<double>::quiet_NaN();
  std::string detname;
  int band = 0, k = 0;
  double exptime = 0, x0 = 0, y0 = 0;
  std::vector<double> wave, x, y, counts, error;
  std::vector<uint8_t> mask;
};

// Reads and validates the EXTRACTED table: IoError naming the file, the column and (for values)
// the row and pixel. `detectors_per_band` bounds the detector index.
std::vector<ExtractedSpectrum> ReadExtractedSpectra(const std::string& path,
                                                    int detectors_per_band);
// Rows [first, first + count) of the table (0-based; clipped to its end), validated alike, and the
// table's row count (the unit `observations` spreads over MPI ranks).
struct ExtractedRows {
  std::vector<ExtractedSpectrum> rows;
  long table_rows = 0;
};
ExtractedRows ReadExtractedSpectra(const std::string& path, int detectors_per_band, long first,
                                   long count);

// Why a row cannot be the spectrum of a star on this detector and band ("" if it can): a MASK = 0
// pixel off the detector (X outside [-0.5, nx - 0.5], Y outside [-0.5, ny - 0.5]), at a wavelength
// where the band transmits nothing (outside [band_lo, band_hi]), or with COUNTS below -5 ERROR; or
// no positive total COUNTS over its MASK = 0 pixels (a star gives light). Such a row is rejected
// with this reason.
std::string UnphysicalReason(const ExtractedSpectrum& e, double nx, double ny, double band_lo,
                             double band_hi);

// The row on the 574-pixel output grid (see the header comment); detector = band * per_band + k.
BandObservation ToOutputGrid(const ExtractedSpectrum& e, int detectors_per_band);

struct ObservationReject {
  std::string source;  // "row N" of the input file, or "star"
  int64_t obsid = -1;
  double ra = std::numeric_limits<double>::quiet_NaN(),
         dec = std::numeric_limits<double>::quiet_NaN();
  std::string detname, reason;
};

struct ObservationsFile {
  std::vector<StarObservation> stars;  // in file order; bands without a row are not observed()
  std::string star_set;                // STARSET ("" if absent)
  std::vector<ObservationReject> rejects;
};

// What an observations file holds besides its rows: the detectors per band (detector ids), the
// STARSET of the stars it belongs to, and whether it carries TRUTH.
struct ObservationsLayout {
  int detectors_per_band = 0;
  std::string star_set;
  bool truth = false;
};
// Writes observed bands as EXTRACTED rows (star order, then band), with TRUTH when layout.truth and
// REJECTS when `rejects` is given.
void WriteObservations(const std::string& path, const std::vector<StarObservation>& obs,
                       const ObservationsLayout& layout, const Provenance& prov,
                       const std::vector<ObservationReject>* rejects = nullptr);
// The same file written block by block of stars (a stage that streams over its sample): EXTRACTED
// grows in the product, TRUTH in a side file (`path`.truth.part) that Close copies in after it and
// removes.
class ObservationsWriter {
 public:
  ObservationsWriter(const std::string& path, int detectors_per_band, const std::string& star_set,
                     bool truth, const Provenance& prov);
  ~ObservationsWriter();
  ObservationsWriter(const ObservationsWriter&) = delete;
  ObservationsWriter& operator=(const ObservationsWriter&) = delete;
  void Append(const StarObservation* obs, size_t count);
  void Close(const std::vector<ObservationReject>* rejects =
                 nullptr);  // the file is complete only after it
  long rows() const { return rows_; }

 private:
  FitsWriter w_;
  Provenance p_;
  int per_band_;
  bool truth_;
  std::string truth_path_;
  std::unique_ptr<FitsWriter> truth_w_;
  long rows_ = 0;
};
// Reads EXTRACTED (rows of one star grouped by obsid, or by position when the obsid is unknown)
// onto the output grid, and TRUTH and REJECTS where present.
// The observations of chosen stars, read a block of stars at a time (a stage that streams over its
// sample): the OBSID column is read once to find each star's rows, and Read reads just those rows
// (validated as ReadObservations validates them). TRUTH is never read.
class ObservationsReader {
 public:
  ObservationsReader(const std::string& path, int detectors_per_band);
  const std::string& star_set() const { return star_set_; }  // STARSET ("" if absent)
  size_t stars() const { return rows_of_.size(); }           // distinct obsids in the file
  bool Has(int64_t obsid) const { return rows_of_.count(obsid) > 0; }
  // One StarObservation per id, in that order; a band without a row is not observed().
  std::vector<StarObservation> Read(const int64_t* ids, size_t n);

 private:
  FitsReader r_;
  std::string path_;
  int per_band_;
  std::string star_set_;
  std::map<int64_t, std::vector<long>> rows_of_;  // 0-based EXTRACTED rows of each obsid
};
// with_truth false: TRUTH is not read (what compare needs: the measurement alone).
ObservationsFile ReadObservations(const std::string& path, int detectors_per_band,
                                  bool with_truth = true);

}  // namespace csst
