#include "io/observations.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <functional>
#include <map>

#include "core/errors.h"
#include "core/grid.h"
#include "core/mpi_world.h"
#include "core/spectrum.h"

namespace csst {
namespace {

constexpr uint8_t kTruthFlags = kObsCosmicRay | kObsZerothOrder;
const double kNan = std::numeric_limits<double>::quiet_NaN();

std::string Lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// Checks the TUNIT of `column` against the accepted spellings of `unit`.
void CheckUnit(FitsReader& r, const std::string& path, const std::string& column,
               const std::string& unit) {
  static const std::map<std::string, std::vector<std::string>> kSpellings = {
      {"Angstrom", {"angstrom", "angstroms", "aa"}},
      {"electron", {"electron", "electrons", "e-"}},
      {"s", {"s", "sec", "second", "seconds"}},
      {"pixel", {"pixel", "pixels", "pix"}},
      {"deg", {"deg", "degree", "degrees"}}};
  const std::string found = r.ColumnUnit(column);
  const auto& ok = kSpellings.at(unit);
  if (std::find(ok.begin(), ok.end(), Lower(found)) == ok.end()) {
    throw IoError(path + ": EXTRACTED column " + column + " has unit '" + found + "', expected " +
                  unit);
  }
}

std::string At(const std::string& path, long row, const std::string& column) {
  return path + ": EXTRACTED row " + std::to_string(row) + ", column " + column;
}

}  // namespace

namespace {
// The EXTRACTED table of an open file, validated (see ReadExtractedSpectra), handed to `fn` a block
// of rows at a time (the array columns are read per block: memory holds one block of raw rows).
// `runs`: the rows to read, as [first, end) ranges of 0-based rows in increasing order; null =
// every row.
using RowRuns = std::vector<std::pair<long, long>>;
void ForEachExtractedBlock(FitsReader& r, const std::string& path, int per_band,
                           const RowRuns* runs,
                           const std::function<void(std::vector<ExtractedSpectrum>&&)>& fn) {
  if (!r.HasHdu("EXTRACTED"))
    throw IoError(path + ": no EXTRACTED table (the extracted-spectra format, io/observations.h)");
  r.MoveTo("EXTRACTED");
  const long rows = r.NumRows();
  for (const char* c :
       {"DETNAME", "EXPTIME", "X0", "Y0", "WAVELENGTH", "X", "Y", "COUNTS", "ERROR", "MASK"}) {
    if (!r.HasColumn(c))
      throw IoError(path + ": EXTRACTED has no column " + std::string(c) + " (required)");
  }
  const bool has_id = r.HasColumn("OBSID"), has_pos = r.HasColumn("RA") && r.HasColumn("DEC");
  if (!has_id && !has_pos) {
    throw IoError(path +
                  ": EXTRACTED has neither an OBSID column nor RA and DEC columns: rows cannot be "
                  "matched to stars");
  }
  CheckUnit(r, path, "EXPTIME", "s");
  for (const char* c : {"X0", "Y0", "X", "Y"}) CheckUnit(r, path, c, "pixel");
  CheckUnit(r, path, "WAVELENGTH", "Angstrom");
  CheckUnit(r, path, "COUNTS", "electron");
  CheckUnit(r, path, "ERROR", "electron");
  if (has_pos) {
    CheckUnit(r, path, "RA", "deg");
    CheckUnit(r, path, "DEC", "deg");
  }
  const long n = r.ColumnRepeat("WAVELENGTH");
  if (n < 2)
    throw IoError(path + ": EXTRACTED column WAVELENGTH holds " + std::to_string(n) +
                  " values per row, expected >= 2");
  for (const char* c : {"X", "Y", "COUNTS", "ERROR", "MASK"}) {
    if (r.ColumnRepeat(c) != n) {
      throw IoError(path + ": EXTRACTED column " + std::string(c) + " holds " +
                    std::to_string(r.ColumnRepeat(c)) + " values per row, WAVELENGTH " +
                    std::to_string(n) + ": expected the same");
    }
  }
  constexpr long kRows = 2048;
  const RowRuns all = {{0, rows}};
  std::vector<double> id, ra, dec, exptime, x0, y0, wave, x, y, counts, error, mask;
  std::vector<std::string> det;
  std::vector<ExtractedSpectrum> out;
  for (const auto& [run_first, run_end] : runs ? *runs : all) {
    if (run_first < 0 || run_end > rows || run_first > run_end) {
      throw IoError(path + ": EXTRACTED rows " + std::to_string(run_first + 1) + " to " +
                    std::to_string(run_end) + " asked for, but the table has " +
                    std::to_string(rows) + " (internal error)");
    }
    long block = run_first;  // first row of the block read
    for (long i = run_first; i < run_end; ++i) {
      const long row = i + 1;
      if (i == run_first || i - block == kRows) {  // the next block's columns
        if (!out.empty()) fn(std::move(out));
        out.clear();
        block = i;
        const long count = std::min(kRows, run_end - i);
        id = has_id ? r.ReadColumn("OBSID", i, count)
                    : std::vector<double>(static_cast<size_t>(count), -1.0);
        ra = has_pos ? r.ReadColumn("RA", i, count)
                     : std::vector<double>(static_cast<size_t>(count), kNan);
        dec = has_pos ? r.ReadColumn("DEC", i, count)
                      : std::vector<double>(static_cast<size_t>(count), kNan);
        det = r.ReadStringColumn("DETNAME", i, count);
        exptime = r.ReadColumn("EXPTIME", i, count);
        x0 = r.ReadColumn("X0", i, count);
        y0 = r.ReadColumn("Y0", i, count);
        wave = r.ReadColumn("WAVELENGTH", i, count);
        x = r.ReadColumn("X", i, count);
        y = r.ReadColumn("Y", i, count);
        counts = r.ReadColumn("COUNTS", i, count);
        error = r.ReadColumn("ERROR", i, count);
        mask = r.ReadColumn("MASK", i, count);
      }
      const long j = i - block;  // the row within the block
      ExtractedSpectrum e;
      e.row = row;
      e.obsid = std::isfinite(id[j]) && id[j] >= 0 ? static_cast<int64_t>(id[j]) : -1;
      e.ra = ra[j];
      e.dec = dec[j];
      const bool pos = std::isfinite(e.ra) && std::isfinite(e.dec);
      if (pos && (e.ra < 0 || e.ra >= 360 || e.dec < -90 || e.dec > 90)) {
        throw IoError(At(path, row, "RA/DEC") + ": (" + std::to_string(e.ra) + ", " +
                      std::to_string(e.dec) +
                      ") is not a position (expected 0 <= RA < 360, -90 <= DEC <= 90 deg)");
      }
      if (e.obsid < 0 && !pos)
        throw IoError(At(path, row, "OBSID") + ": neither an obsid >= 0 nor a finite RA and DEC");
      e.detname = det[j];
      if (!ParseDetectorName(e.detname, &e.band, &e.k) || e.k >= per_band) {
        throw IoError(At(path, row, "DETNAME") + ": '" + e.detname +
                      "' is not a detector (expected GU1..GU" + std::to_string(per_band) +
                      ", GV1.., GI1.. or a CSST chip id: GU 03 04 27 28, GV 02 05 26 29, "
                      "GI 01 10 21 30)");
      }
      e.exptime = exptime[j];
      if (!(std::isfinite(e.exptime) && e.exptime > 0)) {
        throw IoError(At(path, row, "EXPTIME") + ": " + std::to_string(e.exptime) +
                      ", expected a time > 0 s");
      }
      e.x0 = x0[j];
      e.y0 = y0[j];
      if (!std::isfinite(e.x0) || !std::isfinite(e.y0))
        throw IoError(At(path, row, "X0/Y0") + ": not finite");
      const size_t a = static_cast<size_t>(j * n), b = a + static_cast<size_t>(n);
      e.wave.assign(wave.begin() + a, wave.begin() + b);
      e.x.assign(x.begin() + a, x.begin() + b);
      e.y.assign(y.begin() + a, y.begin() + b);
      e.counts.assign(counts.begin() + a, counts.begin() + b);
      e.error.assign(error.begin() + a, error.begin() + b);
      e.mask.resize(static_cast<size_t>(n));
      for (long k = 0; k < n; ++k) {
        const double m = mask[a + k];
        e.mask[k] = static_cast<uint8_t>(m);
        const std::string pixel = " pixel " + std::to_string(k + 1);
        if (!(std::isfinite(e.wave[k]) && e.wave[k] > 0) ||
            (k > 0 && !(e.wave[k] > e.wave[k - 1]))) {
          throw IoError(At(path, row, "WAVELENGTH") + pixel + ": " + std::to_string(e.wave[k]) +
                        ", expected positive and strictly increasing wavelengths [Angstrom]");
        }
        if (m != 0) continue;
        if (!std::isfinite(e.counts[k]))
          throw IoError(At(path, row, "COUNTS") + pixel + ": not finite where MASK = 0");
        if (!(std::isfinite(e.error[k]) && e.error[k] > 0)) {
          throw IoError(At(path, row, "ERROR") + pixel + ": " + std::to_string(e.error[k]) +
                        " where MASK = 0, expected a finite error > 0");
        }
        if (!std::isfinite(e.x[k]) || !std::isfinite(e.y[k]))
          throw IoError(At(path, row, "X/Y") + pixel + ": not finite where MASK = 0");
      }
      out.push_back(std::move(e));
    }
  }
  if (!out.empty()) fn(std::move(out));
}

std::vector<ExtractedSpectrum> ReadExtractedRows(FitsReader& r, const std::string& path,
                                                 int per_band) {
  std::vector<ExtractedSpectrum> all;
  ForEachExtractedBlock(r, path, per_band, nullptr, [&](std::vector<ExtractedSpectrum>&& block) {
    for (auto& e : block) all.push_back(std::move(e));
  });
  return all;
}
}  // namespace

std::vector<ExtractedSpectrum> ReadExtractedSpectra(const std::string& path, int per_band) {
  FitsReader r(path);
  return ReadExtractedRows(r, path, per_band);
}

ExtractedRows ReadExtractedSpectra(const std::string& path, int per_band, long first, long count) {
  FitsReader r(path);
  ExtractedRows out;
  if (!r.HasHdu("EXTRACTED"))
    throw IoError(path + ": no EXTRACTED table (the extracted-spectra format, io/observations.h)");
  r.MoveTo("EXTRACTED");
  out.table_rows = r.NumRows();
  const RowRuns runs = {{std::min(first, out.table_rows), std::min(first + count, out.table_rows)}};
  ForEachExtractedBlock(r, path, per_band, &runs, [&](std::vector<ExtractedSpectrum>&& block) {
    for (auto& e : block) out.rows.push_back(std::move(e));
  });
  return out;
}

std::string UnphysicalReason(const ExtractedSpectrum& e, double nx, double ny, double band_lo,
                             double band_hi) {
  char buf[256];
  double total = 0;
  long good = 0;
  for (size_t k = 0; k < e.wave.size(); ++k) {
    if (e.mask[k] != 0) continue;
    ++good;
    const long px = static_cast<long>(k) + 1;
    if (!(e.x[k] >= -0.5 && e.x[k] <= nx - 0.5 && e.y[k] >= -0.5 && e.y[k] <= ny - 0.5)) {
      std::snprintf(buf, sizeof(buf),
                    "pixel %ld: (X, Y) = (%.1f, %.1f) is off the %.0f x %.0f detector where MASK = "
                    "0 (flag it 1)",
                    px, e.x[k], e.y[k], nx, ny);
      return buf;
    }
    if (e.wave[k] < band_lo || e.wave[k] > band_hi) {
      std::snprintf(buf, sizeof(buf),
                    "pixel %ld: WAVELENGTH %.1f A is outside the band's transmission (%.0f-%.0f A) "
                    "where MASK = 0 "
                    "(flag it 2)",
                    px, e.wave[k], band_lo, band_hi);
      return buf;
    }
    if (e.counts[k] < -5.0 * e.error[k]) {
      std::snprintf(buf, sizeof(buf),
                    "pixel %ld: COUNTS %.4g is below -5 ERROR (%.4g): not the light of a star", px,
                    e.counts[k], e.error[k]);
      return buf;
    }
    total += e.counts[k];
  }
  if (good > 0 && !(total > 0)) {
    std::snprintf(buf, sizeof(buf),
                  "total COUNTS %.4g over its %ld MASK = 0 pixels is not positive: no star's light",
                  total, good);
    return buf;
  }
  return "";
}

BandObservation ToOutputGrid(const ExtractedSpectrum& e, int per_band) {
  const auto& g = OutputGrid();
  const size_t no = static_cast<size_t>(g.size());
  BandObservation bo;
  bo.band = e.band;
  bo.detector = e.band * per_band + e.k;
  bo.x0 = e.x0;
  bo.y0 = e.y0;
  bo.exptime = e.exptime;
  bo.x.assign(no, 0.0);
  bo.y.assign(no, 0.0);
  bo.counts.assign(no, 0.0);
  bo.sigma.assign(no, 0.0);
  bo.flag.assign(no, 0);
  const auto centres = g.Centres();
  bool same = e.wave.size() == no;
  for (size_t k = 0; same && k < no; ++k)
    same = std::abs(e.wave[k] - centres[k]) <= 1e-6 * centres[k];
  if (same) {
    bo.x = e.x;
    bo.y = e.y;
    bo.counts = e.counts;
    bo.sigma = e.error;
    for (size_t k = 0; k < no; ++k) {
      const uint8_t m = e.mask[k];
      bo.flag[k] =
          static_cast<uint8_t>((m & (kObsOffDetector | kObsOutsideBand)) |
                               ((m & ~(kObsOffDetector | kObsOutsideBand)) ? kObsMasked : 0));
    }
    return bo;
  }
  // Another grid: counts per pixel as a density over the pixel, rebinned flux-conservingly.
  Spectrum s;
  s.wave = e.wave;
  const auto edges = EdgesFromCentres(e.wave);
  const size_t n = e.wave.size();
  s.flux.resize(n);
  s.err.resize(n);
  s.mask.resize(n);
  for (size_t k = 0; k < n; ++k) {
    const double w = edges[k + 1] - edges[k];
    const bool bad = e.mask[k] != 0;
    s.flux[k] = bad ? 0.0 : e.counts[k] / w;
    s.err[k] = bad ? 0.0 : e.error[k] / w;
    s.mask[k] = bad ? kMaskBad : 0u;
  }
  const Spectrum rs = ResampleFluxConserving(s, g, 0.999);
  // X, Y: linear in wavelength through the pixels where they are finite.
  std::vector<double> wl, xl, yl;
  for (size_t k = 0; k < n; ++k) {
    if (std::isfinite(e.x[k]) && std::isfinite(e.y[k])) {
      wl.push_back(e.wave[k]);
      xl.push_back(e.x[k]);
      yl.push_back(e.y[k]);
    }
  }
  for (size_t k = 0; k < no; ++k) {
    const double lo = g.Edge(static_cast<int>(k)), hi = g.Edge(static_cast<int>(k) + 1);
    const double width = hi - lo;
    // The same tolerance as the resampler's (0.999 coverage): an extraction that ends on an
    // output-pixel edge keeps that pixel when rounding puts its last edge one ulp inside.
    const double slack = 1e-3 * width;
    if (lo < edges.front() - slack || hi > edges.back() + slack || wl.size() < 2) {
      bo.flag[k] |= kObsOffDetector;
    } else if (rs.mask[k] != 0) {
      bo.flag[k] |= kObsMasked;
    } else {
      bo.counts[k] = rs.flux[k] * width;
      bo.sigma[k] = rs.err[k] * width;
    }
    if (wl.size() >= 2) {
      const double c = centres[k];
      size_t j = static_cast<size_t>(std::upper_bound(wl.begin(), wl.end(), c) - wl.begin());
      j = std::clamp<size_t>(j, 1, wl.size() - 1);
      const double t = (c - wl[j - 1]) / (wl[j] - wl[j - 1]);
      bo.x[k] = xl[j - 1] + t * (xl[j] - xl[j - 1]);
      bo.y[k] = yl[j - 1] + t * (yl[j] - yl[j - 1]);
    }
  }
  return bo;
}

namespace {
// The EXTRACTED and TRUTH columns of the observed bands of `count` stars (star order, then band).
void ObservationColumns(const StarObservation* obs, size_t count, int per_band,
                        std::vector<FitsColumn>* extracted, std::vector<FitsColumn>* truth) {
  const long n = OutputGrid().size();
  const auto centres = OutputGrid().Centres();
  std::vector<int64_t> id;
  std::vector<std::string> det;
  std::vector<int32_t> chip;
  std::vector<double> ra, dec, exptime, x0, y0, wave, x, y, counts, sigma, wf, ebv, ferr, expected;
  std::vector<uint8_t> mask, tflag;
  for (size_t i = 0; i < count; ++i) {
    const auto& so = obs[i];
    for (const auto& bo : so.band) {
      if (!bo.observed()) continue;
      id.push_back(so.obsid);
      ra.push_back(so.ra);
      dec.push_back(so.dec);
      det.push_back(DetectorName(bo.band, bo.detector - bo.band * per_band));
      chip.push_back(ChipId(bo.band, bo.detector - bo.band * per_band));
      exptime.push_back(bo.exptime);
      x0.push_back(bo.x0);
      y0.push_back(bo.y0);
      wave.insert(wave.end(), centres.begin(), centres.end());
      x.insert(x.end(), bo.x.begin(), bo.x.end());
      y.insert(y.end(), bo.y.begin(), bo.y.end());
      counts.insert(counts.end(), bo.counts.begin(), bo.counts.end());
      sigma.insert(sigma.end(), bo.sigma.begin(), bo.sigma.end());
      for (uint8_t f : bo.flag) {
        mask.push_back(static_cast<uint8_t>(f & ~kTruthFlags));
        tflag.push_back(static_cast<uint8_t>(f & kTruthFlags));
      }
      wf.push_back(so.window_flux);
      ebv.push_back(so.ebv);
      ferr.push_back(so.flux_error);
      if (bo.expected.size() == static_cast<size_t>(n)) {
        expected.insert(expected.end(), bo.expected.begin(), bo.expected.end());
      } else {
        expected.insert(expected.end(), static_cast<size_t>(n), kNan);
      }
    }
  }
  if (truth) {
    *truth = {{"OBSID", "", id},
              {"WINDOW_FLUX", "erg/s/cm2/Angstrom", std::move(wf)},
              {"EBV", "mag", std::move(ebv)},
              {"FLUX_ERROR", "", std::move(ferr)},
              {"EXPECTED", "electron", std::move(expected), n},
              {"TRUTHFLAG", "", std::move(tflag), n}};
  }
  *extracted = {{"OBSID", "", std::move(id)},
                {"RA", "deg", std::move(ra)},
                {"DEC", "deg", std::move(dec)},
                {"DETNAME", "", std::move(det), 8},
                {"CHIPID", "", std::move(chip)},
                {"EXPTIME", "s", std::move(exptime)},
                {"X0", "pixel", std::move(x0)},
                {"Y0", "pixel", std::move(y0)},
                {"WAVELENGTH", "Angstrom", std::move(wave), n},
                {"X", "pixel", std::move(x), n},
                {"Y", "pixel", std::move(y), n},
                {"COUNTS", "electron", std::move(counts), n},
                {"ERROR", "electron", std::move(sigma), n},
                {"MASK", "", std::move(mask), n}};
}

long ColumnLength(const FitsColumn& c) {
  return std::visit([&](const auto& v) { return static_cast<long>(v.size()) / c.repeat; }, c.data);
}
}  // namespace

ObservationsWriter::ObservationsWriter(const std::string& path, int per_band,
                                       const std::string& star_set, bool truth,
                                       const Provenance& prov)
    : w_(path), p_(prov), per_band_(per_band), truth_(truth), truth_path_(path + ".truth.part") {
  w_.WritePrimary(p_);
  std::vector<FitsColumn> extracted, truth_columns;
  ObservationColumns(nullptr, 0, per_band_, &extracted, &truth_columns);
  w_.CreateTable("EXTRACTED", extracted);
  w_.Standard(p_, "");
  if (!star_set.empty())
    w_.Key("STARSET", star_set, "identity of the star set (StarSetId of stars.fits)");
  w_.Comment(
      "extracted 1-D slitless spectra, one row per star and detector (format: io/observations.h)");
  w_.Comment(
      "WAVELENGTH vacuum pixel centres; COUNTS background-subtracted e- per pixel; ERROR 1 sigma");
  w_.Comment("MASK bits: 1 off detector, 2 outside band, 16 bad in the extraction; 0 = good");
  if (truth_) {
    // TRUTH's rows go to a side file as they come and join the product at Close: a table before
    // another cannot grow without moving everything after it.
    truth_w_ = std::make_unique<FitsWriter>(truth_path_);
    truth_w_->WriteEmptyPrimary();
    truth_w_->CreateTable("TRUTH", truth_columns);
    truth_w_->Standard(p_, "");
    truth_w_->Comment(
        "simulator truth, rows parallel to EXTRACTED (validation only; never read by compare)");
    truth_w_->Comment("TRUTHFLAG bits: 4 cosmic ray, 8 0th-order overlap");
  }
}

ObservationsWriter::~ObservationsWriter() {
  truth_w_.reset();
  std::error_code ec;
  std::filesystem::remove(truth_path_, ec);
}

void ObservationsWriter::Append(const StarObservation* obs, size_t count) {
  std::vector<FitsColumn> extracted, truth;
  ObservationColumns(obs, count, per_band_, &extracted, truth_ ? &truth : nullptr);
  const long rows = ColumnLength(extracted.front());
  if (rows == 0) return;
  w_.AppendRows(rows_, extracted);
  if (truth_) truth_w_->AppendRows(rows_, truth);
  rows_ += rows;
}

void ObservationsWriter::Close(const std::vector<ObservationReject>* rejects) {
  if (truth_) {
    truth_w_->Close();
    truth_w_.reset();
    w_.CopyHdu(truth_path_, "TRUTH");
    std::error_code ec;
    std::filesystem::remove(truth_path_, ec);
  }
  if (rejects) {
    std::vector<std::string> src, rdet, reason;
    std::vector<int64_t> rid;
    std::vector<double> rra, rdec;
    for (const auto& rj : *rejects) {
      src.push_back(rj.source);
      rid.push_back(rj.obsid);
      rra.push_back(rj.ra);
      rdec.push_back(rj.dec);
      rdet.push_back(rj.detname.empty() ? "-" : rj.detname);
      reason.push_back(rj.reason);
    }
    w_.WriteTable("REJECTS", {{"SOURCE", "", src, 16},
                              {"OBSID", "", rid},
                              {"RA", "deg", rra},
                              {"DEC", "deg", rdec},
                              {"DETNAME", "", rdet, 8},
                              {"REASON", "", reason, 160}});
    w_.Standard(p_, "");
    w_.Comment(
        "rows of the input that were not used and stars that got no spectrum, with the reason");
  }
  w_.Close();
}

void WriteObservations(const std::string& path, const std::vector<StarObservation>& obs,
                       const ObservationsLayout& layout, const Provenance& prov,
                       const std::vector<ObservationReject>* rejects) {
  ObservationsWriter w(path, layout.detectors_per_band, layout.star_set, layout.truth, prov);
  w.Append(obs.data(), obs.size());
  w.Close(rejects);
}

ObservationsReader::ObservationsReader(const std::string& path, int per_band)
    : r_(path), path_(path), per_band_(per_band) {
  if (!r_.HasHdu("EXTRACTED"))
    throw IoError(path + ": no EXTRACTED table (the extracted-spectra format, io/observations.h)");
  r_.MoveTo("EXTRACTED");
  if (!r_.HasColumn("OBSID")) {
    throw IoError(
        path +
        ": EXTRACTED has no OBSID column; spectra from outside are matched to the stars by stage "
        "observations (observations.source: files)");
  }
  const auto id = r_.ReadColumn("OBSID");
  for (size_t i = 0; i < id.size(); ++i) {
    if (!(std::isfinite(id[i]) && id[i] >= 0)) {
      throw IoError(
          At(path, static_cast<long>(i) + 1, "OBSID") +
          ": no obsid; spectra from outside are matched to the stars by stage observations "
          "(observations.source: files)");
    }
    rows_of_[static_cast<int64_t>(id[i])].push_back(static_cast<long>(i));
  }
  star_set_ = r_.FindKeyString("STARSET").value_or("");
}

std::vector<StarObservation> ObservationsReader::Read(const int64_t* ids, size_t n) {
  std::vector<StarObservation> out(n);
  std::map<int64_t, size_t> at;
  std::vector<long> rows;
  for (size_t k = 0; k < n; ++k) {
    out[k].obsid = ids[k];
    at[ids[k]] = k;
    auto it = rows_of_.find(ids[k]);
    if (it != rows_of_.end()) rows.insert(rows.end(), it->second.begin(), it->second.end());
  }
  std::sort(rows.begin(), rows.end());
  RowRuns runs;  // consecutive rows read together (one run a block in a file written in star order)
  for (long row : rows) {
    if (!runs.empty() && runs.back().second == row) {
      ++runs.back().second;
    } else {
      runs.push_back({row, row + 1});
    }
  }
  ForEachExtractedBlock(r_, path_, per_band_, &runs, [&](std::vector<ExtractedSpectrum>&& block) {
    for (const auto& e : block) {
      auto& so = out[at.at(e.obsid)];
      so.ra = e.ra;
      so.dec = e.dec;
      if (so.band[e.band].observed()) {
        throw IoError(At(path_, e.row, "DETNAME") + ": a second " +
                      std::string(BandName(BandAt(e.band))) + " spectrum of obsid " +
                      std::to_string(e.obsid));
      }
      so.band[e.band] = ToOutputGrid(e, per_band_);
    }
  });
  return out;
}

ObservationsFile ReadObservations(const std::string& path, int per_band, bool with_truth) {
  ObservationsFile f;
  FitsReader r(path);
  // Each block of raw rows goes onto the output grid as it comes: the file's rows are never all
  // held raw.
  struct RowKey {
    int64_t obsid;
    int band;
  };
  std::vector<RowKey> rows;
  std::map<int64_t, size_t> at;
  ForEachExtractedBlock(r, path, per_band, nullptr, [&](std::vector<ExtractedSpectrum>&& block) {
    for (const auto& e : block) {
      if (e.obsid < 0) {
        throw IoError(
            At(path, e.row, "OBSID") +
            ": no obsid; spectra from outside are matched to the stars by stage observations "
            "(observations.source: files)");
      }
      auto it = at.find(e.obsid);
      if (it == at.end()) {
        it = at.emplace(e.obsid, f.stars.size()).first;
        f.stars.emplace_back();
        f.stars.back().obsid = e.obsid;
        f.stars.back().ra = e.ra;
        f.stars.back().dec = e.dec;
      }
      auto& so = f.stars[it->second];
      if (so.band[e.band].observed()) {
        throw IoError(At(path, e.row, "DETNAME") + ": a second " +
                      std::string(BandName(BandAt(e.band))) + " spectrum of obsid " +
                      std::to_string(e.obsid));
      }
      so.band[e.band] = ToOutputGrid(e, per_band);
      rows.push_back({e.obsid, e.band});
    }
  });
  f.star_set = r.FindKeyString("STARSET").value_or("");  // still at EXTRACTED
  if (with_truth && r.HasHdu("TRUTH")) {
    r.MoveTo("TRUTH");
    if (r.NumRows() != static_cast<long>(rows.size()))
      throw IoError(path + ": TRUTH and EXTRACTED differ in rows");
    const long n = OutputGrid().size();
    const auto wf = r.ReadColumn("WINDOW_FLUX"), ebv = r.ReadColumn("EBV"),
               ferr = r.ReadColumn("FLUX_ERROR");
    constexpr size_t kRows = 2048;
    std::vector<double> expected, tflag;
    for (size_t i = 0; i < rows.size(); ++i) {
      const size_t j = i % kRows;  // row within the block of EXPECTED and TRUTHFLAG read
      if (j == 0) {
        const long count = static_cast<long>(std::min(kRows, rows.size() - i));
        expected = r.ReadColumn("EXPECTED", static_cast<long>(i), count);
        tflag = r.ReadColumn("TRUTHFLAG", static_cast<long>(i), count);
      }
      auto& so = f.stars[at.at(rows[i].obsid)];
      so.window_flux = wf[i];
      so.ebv = ebv[i];
      so.flux_error = ferr[i];
      auto& bo = so.band[rows[i].band];
      bo.expected.assign(expected.begin() + static_cast<std::ptrdiff_t>(j * n),
                         expected.begin() + static_cast<std::ptrdiff_t>((j + 1) * n));
      for (long k = 0; k < n; ++k) bo.flag[k] |= static_cast<uint8_t>(tflag[j * n + k]);
    }
  }
  if (r.HasHdu("REJECTS")) {
    r.MoveTo("REJECTS");
    const auto src = r.ReadStringColumn("SOURCE"), det = r.ReadStringColumn("DETNAME"),
               reason = r.ReadStringColumn("REASON");
    const auto id = r.ReadColumn("OBSID"), ra = r.ReadColumn("RA"), dec = r.ReadColumn("DEC");
    for (size_t i = 0; i < src.size(); ++i) {
      f.rejects.push_back({src[i], static_cast<int64_t>(id[i]), ra[i], dec[i], det[i], reason[i]});
    }
  }
  return f;
}

void PutBandObservation(ByteWriter& w, const BandObservation& bo) {
  w.Put(bo.band);
  w.Put(bo.detector);
  w.Put(bo.x0);
  w.Put(bo.y0);
  w.Put(bo.exptime);
  w.PutVector(bo.x);
  w.PutVector(bo.y);
  w.PutVector(bo.counts);
  w.PutVector(bo.sigma);
  w.PutVector(bo.expected);
  w.PutVector(bo.flag);
  w.Put(bo.counts_stamp_sum);
  w.Put(bo.stamp_expected);
  w.Put(bo.stamp_noise_var);
}

BandObservation GetBandObservation(ByteReader& r) {
  BandObservation bo;
  bo.band = r.Get<int>();
  bo.detector = r.Get<int>();
  bo.x0 = r.Get<double>();
  bo.y0 = r.Get<double>();
  bo.exptime = r.Get<double>();
  bo.x = r.GetVector<double>();
  bo.y = r.GetVector<double>();
  bo.counts = r.GetVector<double>();
  bo.sigma = r.GetVector<double>();
  bo.expected = r.GetVector<double>();
  bo.flag = r.GetVector<uint8_t>();
  bo.counts_stamp_sum = r.Get<double>();
  bo.stamp_expected = r.Get<double>();
  bo.stamp_noise_var = r.Get<double>();
  return bo;
}

void PutObservation(ByteWriter& w, const StarObservation& so) {
  w.Put(so.obsid);
  w.Put(so.ra);
  w.Put(so.dec);
  w.Put(so.window_flux);
  w.Put(so.ebv);
  w.Put(so.flux_error);
  for (const auto& bo : so.band) PutBandObservation(w, bo);
}

StarObservation GetObservation(ByteReader& r) {
  StarObservation so;
  so.obsid = r.Get<int64_t>();
  so.ra = r.Get<double>();
  so.dec = r.Get<double>();
  so.window_flux = r.Get<double>();
  so.ebv = r.Get<double>();
  so.flux_error = r.Get<double>();
  for (auto& bo : so.band) bo = GetBandObservation(r);
  return so;
}

}  // namespace csst
