#include "io/ingest.h"

#include <tbb/parallel_for.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <memory>
#include <optional>
#include <set>

#include "core/errors.h"
#include "core/grid.h"
#include "core/log.h"
#include "core/mpi_world.h"
#include "core/progress.h"
#include "core/rng.h"
#include "core/spectrum.h"
#include "io/spectrum_io.h"

namespace csst {
namespace fs = std::filesystem;

void IngestOptions::Validate() const {
  auto fail = [](const std::string& m) { throw ConfigError("config error: " + m); };
  if (source == IngestSource::kFiles && spectra_dir.empty())
    fail("ingest.source = files needs ingest.spectra_dir");
  if (!(teff_min < teff_max)) fail("ingest.teff_min must be < ingest.teff_max");
  if (chunk < 1) fail("ingest.chunk must be >= 1");
  prepare.Validate();
}

std::vector<FitsColumn> PreparedStarsLayout() {
  const long n = InputGrid().size();
  return {{"OBSID", "", std::vector<int64_t>{}},
          {"DESIGNATION", "", std::vector<std::string>{}, 32},
          {"RA", "deg", std::vector<double>{}},
          {"DEC", "deg", std::vector<double>{}},
          {"TEFF", "K", std::vector<double>{}},
          {"LOGG", "dex", std::vector<double>{}},
          {"FEH", "dex", std::vector<double>{}},
          {"GMAG", "mag", std::vector<double>{}},
          {"SNR_G", "", std::vector<double>{}},
          {"SNR_R", "", std::vector<double>{}},
          {"RV", "km/s", std::vector<double>{}},
          {"Z", "", std::vector<double>{}},
          {"SPECHASH", "", std::vector<std::string>{}, 16},
          {"ALPHA", "dex", std::vector<double>{}},
          {"EBV", "mag", std::vector<double>{}},
          {"WINDOW_FLUX", "erg/s/cm2/Angstrom", std::vector<double>{}},
          {"FLUXSRC", "", std::vector<std::string>{}, 8},
          {"FLUX", "", std::vector<float>{}, n},
          {"ERR", "", std::vector<float>{}, n},
          {"MASK", "", std::vector<uint8_t>{}, n}};
}

void WritePreparedStars(FitsWriter& w, const PreparedStars& s, long first_row) {
  std::vector<int64_t> obsid;
  std::vector<std::string> des;
  std::vector<double> ra, dec, teff, logg, feh, g, snrg, snrr, rv, alpha, ebv;
  for (const auto& st : s.stars) {
    alpha.push_back(st.alpha);
    ebv.push_back(st.ebv);
    obsid.push_back(st.obsid);
    des.push_back(st.designation.substr(0, 32));
    ra.push_back(st.ra);
    dec.push_back(st.dec);
    teff.push_back(st.teff);
    logg.push_back(st.logg);
    feh.push_back(st.feh);
    g.push_back(st.gmag);
    snrg.push_back(st.snr_g);
    snrr.push_back(st.snr_r);
    rv.push_back(st.rv);
  }
  const long n = InputGrid().size();
  std::vector<std::string> hashes = s.spec_hash, sources = s.window_source;
  std::vector<double> window = s.window_flux;
  hashes.resize(s.stars.size());
  sources.resize(s.stars.size());
  window.resize(s.stars.size(), std::numeric_limits<double>::quiet_NaN());
  w.AppendRows(first_row, {{"OBSID", "", obsid},
                           {"DESIGNATION", "", des, 32},
                           {"RA", "deg", ra},
                           {"DEC", "deg", dec},
                           {"TEFF", "K", teff},
                           {"LOGG", "dex", logg},
                           {"FEH", "dex", feh},
                           {"GMAG", "mag", g},
                           {"SNR_G", "", snrg},
                           {"SNR_R", "", snrr},
                           {"RV", "km/s", rv},
                           {"Z", "", s.z},
                           {"SPECHASH", "", hashes, 16},
                           {"ALPHA", "dex", alpha},
                           {"EBV", "mag", ebv},
                           {"WINDOW_FLUX", "erg/s/cm2/Angstrom", window},
                           {"FLUXSRC", "", sources, 8},
                           {"FLUX", "", s.flux, n},
                           {"ERR", "", s.err, n},
                           {"MASK", "", s.mask, n}});
}

namespace {

std::string SelectionReason(const IngestOptions& o, const StarRecord& s) {
  if (auto problem = CatalogueRowProblem(s, o.columns); !problem.empty()) return problem;
  char buf[160];
  const double snr = o.snr_band == SnrBand::kG ? s.snr_g : s.snr_r;
  auto missing = [&](const std::string& column, const char* key, double threshold) {
    std::snprintf(buf, sizeof(buf), "missing: %s has no value (%s = %g needs it)", column.c_str(),
                  key, threshold);
    return std::string(buf);
  };
  // A column that is given but empty for this row (a CSV's empty cell, a FITS null): the star is
  // rejected rather than carried with a non-finite value (leave the column out to assume 0 for
  // every star).
  const std::pair<const std::string*, double> optional[] = {
      {&o.columns.rv, s.rv}, {&o.columns.ebv, s.ebv}, {&o.columns.alpha, s.alpha}};
  for (const auto& [name, v] : optional) {
    if (std::isnan(v))
      return "missing: " + *name + " has no value (the column is given; without it 0 is assumed)";
  }
  if (std::isnan(snr) && o.snr_min > 0) {
    return missing(o.snr_band == SnrBand::kG ? o.columns.snr_g : o.columns.snr_r, "ingest.snr_min",
                   o.snr_min);
  }
  if (std::isnan(s.gmag) && o.g_min > 0) return missing(o.columns.gmag, "ingest.g_min", o.g_min);
  if (std::isnan(s.teff) && o.teff_min > 0)
    return missing(o.columns.teff, "ingest.teff_min", o.teff_min);
  if (o.snr_min > 0 && !(snr > o.snr_min)) {
    std::snprintf(buf, sizeof(buf), "snr_%s %.1f <= %.1f", ToString(o.snr_band), snr, o.snr_min);
    return buf;
  }
  if (o.g_min > 0 && !(s.gmag > o.g_min)) {
    std::snprintf(buf, sizeof(buf), "G %.2f <= %.2f", s.gmag, o.g_min);
    return buf;
  }
  if (o.teff_min > 0 && !(s.teff >= o.teff_min && s.teff <= o.teff_max)) {
    std::snprintf(buf, sizeof(buf), "Teff %.0f outside %.0f-%.0f K", s.teff, o.teff_min,
                  o.teff_max);
    return buf;
  }
  return "";
}

std::string ReasonClass(const std::string& r) {
  const auto sp = r.find_first_of(" :");
  return sp == std::string::npos ? r : r.substr(0, sp);
}

}  // namespace

constexpr int kIndexTag = 15;  // MPI tag of a rank's share of the spectra folder's headers

std::vector<fs::path> FitsFilesIn(const std::string& dir) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) throw IoError(dir + ": spectra directory does not exist");
  std::vector<fs::path> out;
  for (auto it = fs::directory_iterator(dir, ec); !ec && it != fs::directory_iterator();
       it.increment(ec)) {
    const auto& p = it->path();
    const auto ext = p.extension().string();
    if (ext != ".fits" && ext != ".fit" && ext != ".FITS" && ext != ".FIT") continue;
    std::error_code fec;
    if (!fs::is_regular_file(p, fec)) {
      // a dangling link or a link loop names itself instead of stopping the run with a raw
      // filesystem error
      if (fec || fs::is_symlink(fs::symlink_status(p, fec))) {
        Logger("ingest")->warn("{}: not a readable file (a broken or looping link?), skipped",
                               p.string());
      }
      continue;
    }
    out.push_back(p);
  }
  if (ec) throw IoError(dir + ": cannot list the directory: " + ec.message());
  std::sort(out.begin(), out.end());
  return out;
}

std::map<int64_t, std::string> IndexSpectra(const std::string& dir,
                                            const std::vector<int64_t>& obsids,
                                            std::vector<std::string>* unreadable, bool shared) {
  std::map<int64_t, std::string> index;
  std::set<std::string> named;  // spec-<obsid>.fits of the catalogue's stars
  for (const int64_t id : obsids) {
    const auto p = fs::path(dir) / ("spec-" + std::to_string(id) + ".fits");
    std::error_code ec;
    if (fs::is_regular_file(p, ec)) {
      index[id] = p.string();
      named.insert(p.filename().string());
    }
  }
  // Every other FITS file is read for its OBSID: a second file of a star is an error naming both
  // (one of them would otherwise be used silently), an unreadable one is named where its star needs
  // it. Shared: the k-th such file's header is read by rank k mod K, and every rank takes every
  // rank's findings in file order, as one process reads them.
  std::vector<fs::path> others;
  for (auto& p : FitsFilesIn(dir))
    if (!named.count(p.filename().string())) others.push_back(std::move(p));
  struct Found {  // what a file's header says: its OBSID, or why it gives none
    bool ok = false;
    int64_t id = 0;
    std::string why;
  };
  std::vector<Found> found(others.size());
  const int ranks = shared ? MpiWorld::Size() : 1, me = shared ? MpiWorld::Rank() : 0;
  auto owns = [&](size_t k) { return static_cast<int>(k % static_cast<size_t>(ranks)) == me; };
  for (size_t k = 0; k < others.size(); ++k) {
    if (!owns(k)) continue;
    try {
      FitsReader r(others[k].string());
      if (!r.HasKey("OBSID")) {
        found[k].why = others[k].string() + ": no OBSID keyword";
        continue;
      }
      found[k].id = r.KeyLong("OBSID");
      found[k].ok = true;
    } catch (const Cancelled&) {
      throw;
    } catch (const Error& e) {
      found[k].why = e.what();
    }
  }
  if (ranks > 1) {
    ShareOwnedItems(
        found.size(), kIndexTag, owns,
        [&](ByteWriter& w, size_t k) {
          w.Put<uint8_t>(found[k].ok ? 1 : 0);
          w.Put(found[k].id);
          w.PutString(found[k].why);
        },
        [&](ByteReader& r, size_t k) {
          found[k].ok = r.Get<uint8_t>() != 0;
          found[k].id = r.Get<int64_t>();
          found[k].why = r.GetString();
        });
  }
  for (size_t k = 0; k < others.size(); ++k) {
    if (!found[k].ok) {
      if (unreadable) unreadable->push_back(found[k].why);
      continue;
    }
    const auto [it, fresh] = index.emplace(found[k].id, others[k].string());
    if (!fresh) {
      throw IoError(dir + ": " + it->second + " and " + others[k].string() + " both hold OBSID " +
                    std::to_string(found[k].id) + " (each spectrum once: remove one)");
    }
  }
  return index;
}

namespace {
// A block of the catalogue as ingest made it, the message a worker rank sends rank 0: the kept
// and rejected rows by catalogue index (every rank reads the same catalogue) and what was made of
// the kept ones.
struct IngestBlock {
  std::vector<uint64_t> kept, rejected;
  std::vector<double> z, window_flux;
  std::vector<std::string> spec_hash, window_source, rej_file, rej_reason;
  std::vector<float> flux, err;
  std::vector<uint8_t> mask;
};
constexpr int kIngestTag = 7;  // MPI tag of an ingest block (core/mpi_world.h)

void PutStrings(ByteWriter& w, const std::vector<std::string>& v) {
  w.Put<uint64_t>(v.size());
  for (const auto& s : v) w.PutString(s);
}
std::vector<std::string> GetStrings(ByteReader& r) {
  std::vector<std::string> v(r.Get<uint64_t>());
  for (auto& s : v) s = r.GetString();
  return v;
}
void PutIngestBlock(ByteWriter& w, const IngestBlock& b) {
  w.PutVector(b.kept);
  w.PutVector(b.rejected);
  w.PutVector(b.z);
  w.PutVector(b.window_flux);
  PutStrings(w, b.spec_hash);
  PutStrings(w, b.window_source);
  PutStrings(w, b.rej_file);
  PutStrings(w, b.rej_reason);
  w.PutVector(b.flux);
  w.PutVector(b.err);
  w.PutVector(b.mask);
}
IngestBlock GetIngestBlock(ByteReader& r) {
  IngestBlock b;
  b.kept = r.GetVector<uint64_t>();
  b.rejected = r.GetVector<uint64_t>();
  b.z = r.GetVector<double>();
  b.window_flux = r.GetVector<double>();
  b.spec_hash = GetStrings(r);
  b.window_source = GetStrings(r);
  b.rej_file = GetStrings(r);
  b.rej_reason = GetStrings(r);
  b.flux = r.GetVector<float>();
  b.err = r.GetVector<float>();
  b.mask = r.GetVector<uint8_t>();
  return b;
}

}  // namespace

IngestSummary Ingest(const IngestOptions& o, const std::string& catalogue_path,
                     const std::string& spectra_dir, const std::string& out_path,
                     const Provenance& provenance) {
  o.Validate();
  auto log = Logger("ingest");
  const bool from_headers = catalogue_path.empty();
  std::vector<std::string> skipped;
  std::map<int64_t, std::string> index;  // obsid -> file; the headers' pass already knows it
  std::vector<std::string>
      unreadable;  // FITS files of the folder that give no OBSID, with the reason
  const auto catalogue = from_headers
                             ? CatalogueFromHeaders(spectra_dir, o.labels, &skipped, &index)
                             : ReadCatalogue(catalogue_path, o.columns);
  for (const auto& s : skipped) log->warn("not in the catalogue (unreadable): {}", s);
  const auto names =
      from_headers ? CatalogueFromHeadersColumns(o.labels) : CatalogueColumnNames(catalogue_path);
  const bool has_ebv = HasColumnNamed(names, o.columns.ebv);
  if (!has_ebv) {
    log->warn("{}: no {} column: E(B-V) = 0 assumed for every star (EBVSRC in stars.fits)",
              from_headers ? "the catalogue from the headers in " + spectra_dir : catalogue_path,
              o.columns.ebv);
  }
  if (!from_headers) {
    std::vector<int64_t> obsids;
    for (const auto& s : catalogue) obsids.push_back(s.obsid);
    index = IndexSpectra(spectra_dir, obsids, &unreadable, /*shared=*/true);
    for (const auto& u : unreadable) log->warn("unusable FITS file in the spectra folder: {}", u);
  }
  IngestSummary summary;
  std::vector<int64_t> rej_id;
  std::vector<std::string> rej_file, rej_reason;
  // With MPI (`mpirun -np K`) block b of the catalogue is read and prepared by rank b mod K, and
  // rank 0 writes every block in catalogue order: stars.fits is the same for any K.
  const bool writer = MpiWorld::Rank() == 0;
  std::unique_ptr<FitsWriter> w;
  Provenance p = provenance;
  if (writer) {
    w = std::make_unique<FitsWriter>(out_path);
    p.descrip = "normalised 2238-pixel network inputs (4000-7000 A, log, R=2000 grid)";
    w->WritePrimary(p);
    w->CreateTable("STARS", PreparedStarsLayout());
    w->Standard(p, "");
    w->Key("GRIDTYPE", "LOG", "input grid: log-lambda");
    w->Key("GRIDMIN", InputGrid().first_edge(), "[Angstrom] first pixel edge (vacuum)");
    w->Key("GRIDMAX", InputGrid().last_edge(), "[Angstrom] last pixel edge (vacuum)");
    w->Key("GRIDN", static_cast<long>(InputGrid().size()), "pixels");
    w->Key("CONTWIN", static_cast<long>(o.prepare.window), "moving-average continuum window [px]");
    w->Comment("FLUX = flux / continuum; ERR its 1-sigma; MASK 1 = no usable data (FLUX 1, ERR 1)");
    w->Key("EBVSRC", has_ebv ? "catalogue" : "none: 0 assumed", "where EBV comes from");
    w->Comment(
        "WINDOW_FLUX: the star's flux at 5526-5586 A, from G (FLUXSRC G) or, without G, from the");
    w->Comment(
        "LAMOST spectrum's mean flux there (FLUXSRC spectrum); EBV: the catalogue's (0 if none)");
    w->Comment(
        "SPECHASH: SpectrumDataHash of the star's spectrum, its identity in every joined product");
  }

  Progress progress("ingest", static_cast<long>(catalogue.size()));
  long row = 0;
  const size_t chunk_rows = static_cast<size_t>(o.chunk);
  // One block of the catalogue read and prepared: its kept stars (catalogue rows and what ingest
  // made of them) and its rejected rows with the reason.
  auto make = [&](size_t b) {
    const size_t start = b * chunk_rows, end = std::min(catalogue.size(), start + chunk_rows);
    struct Result {
      std::optional<PreparedInput> input;
      double z = 0;
      std::string file, reason, hash, window_source;
      double window_flux = 0;
    };
    std::vector<Result> results(end - start);
    tbb::parallel_for(start, end, [&](size_t i) {
      const auto& s = catalogue[i];
      Result& r = results[i - start];
      r.reason = SelectionReason(o, s);
      if (!r.reason.empty()) return;
      auto it = index.find(s.obsid);
      if (it == index.end()) {
        r.reason = "missing: no spectrum file for obsid " + std::to_string(s.obsid) + " in " +
                   spectra_dir +
                   (unreadable.empty() ? std::string()
                                       : " (" + std::to_string(unreadable.size()) +
                                             " FITS file(s) there give no OBSID, e.g. " +
                                             unreadable.front() + ")");
        return;
      }
      r.file = it->second;
      try {
        const auto lam = ReadLamost(r.file, o.use_ormask);
        if (lam.header.obsid != 0 && lam.header.obsid != s.obsid) {
          r.reason = "identity: header OBSID " + std::to_string(lam.header.obsid) +
                     " differs from the catalogue's " + o.columns.obsid + " " +
                     std::to_string(s.obsid);
          return;
        }
        if (lam.header.object_class != "STAR") {
          r.reason = "class: " + lam.header.object_class + " is not STAR";
          return;
        }
        r.z = lam.header.z;
        r.input = PrepareNetworkInput(lam.spectrum, r.z, o.prepare, r.file);
        r.hash = SpectrumDataHash(lam.spectrum);
        // The star's flux in 5526-5586 A sets the absolute scale of its SED: from G when the
        // catalogue gives it, else from the LAMOST spectrum's own flux there (1e-17 cgs units).
        if (std::isfinite(s.gmag)) {
          r.window_flux = WindowFluxFromG(s.gmag);
          r.window_source = "G";
        } else {
          r.window_flux = 1e-17 * MeanFluxInWindow(lam.spectrum);
          r.window_source = "spectrum";
          if (!(r.window_flux > 0) || !std::isfinite(r.window_flux)) {
            r.input.reset();
            r.reason = "missing: no " + o.columns.gmag +
                       " and no positive flux in 5526-5586 A for the flux scale";
            return;
          }
        }
      } catch (const Cancelled&) {
        throw;
      } catch (const Error& e) {
        const std::string msg = e.what();
        r.reason =
            (msg.find("coverage") != std::string::npos ? "coverage: " : "unreadable: ") + msg;
      }
      progress.Tick();
    });
    IngestBlock block;
    for (size_t i = start; i < end; ++i) {
      auto& r = results[i - start];
      if (!r.input) {
        block.rejected.push_back(i);
        block.rej_file.push_back(r.file);
        block.rej_reason.push_back(r.reason);
        continue;
      }
      block.kept.push_back(i);
      block.z.push_back(r.z);
      block.spec_hash.push_back(r.hash);
      block.window_flux.push_back(r.window_flux);
      block.window_source.push_back(r.window_source);
      block.flux.insert(block.flux.end(), r.input->flux.begin(), r.input->flux.end());
      block.err.insert(block.err.end(), r.input->err.begin(), r.input->err.end());
      block.mask.insert(block.mask.end(), r.input->mask.begin(), r.input->mask.end());
    }
    CheckCancelled();
    return block;
  };
  // Rank 0: a block's stars appended to STARS, its rejects to REJECTS, in catalogue order.
  auto take = [&](size_t b, IngestBlock&& block) {
    const size_t n = block.kept.size(), ni = static_cast<size_t>(InputGrid().size());
    bool ok = block.z.size() == n && block.window_flux.size() == n && block.spec_hash.size() == n &&
              block.window_source.size() == n && block.flux.size() == n * ni &&
              block.err.size() == n * ni && block.mask.size() == n * ni &&
              block.rej_file.size() == block.rejected.size() &&
              block.rej_reason.size() == block.rejected.size();
    for (uint64_t i : block.kept) ok = ok && i < catalogue.size();
    for (uint64_t i : block.rejected) ok = ok && i < catalogue.size();
    if (!ok)
      throw Error("ingest: block " + std::to_string(b) +
                  " does not match the catalogue (internal error)");
    for (size_t k = 0; k < block.rejected.size(); ++k) {
      rej_id.push_back(catalogue[block.rejected[k]].obsid);
      rej_file.push_back(block.rej_file[k]);
      rej_reason.push_back(block.rej_reason[k]);
      ++summary.rejected[ReasonClass(block.rej_reason[k])];
    }
    PreparedStars chunk;
    for (uint64_t i : block.kept) chunk.stars.push_back(catalogue[i]);
    chunk.z = std::move(block.z);
    chunk.spec_hash = std::move(block.spec_hash);
    chunk.window_flux = std::move(block.window_flux);
    chunk.window_source = std::move(block.window_source);
    for (const auto& source : chunk.window_source)
      if (source != "G") ++summary.window_from_spectrum;
    chunk.flux = std::move(block.flux);
    chunk.err = std::move(block.err);
    chunk.mask = std::move(block.mask);
    if (chunk.size() > 0) {
      w->MoveTo("STARS");
      WritePreparedStars(*w, chunk, row);
      row += static_cast<long>(chunk.size());
    }
  };
  ShareBlocks((catalogue.size() + chunk_rows - 1) / chunk_rows, kIngestTag, make, take,
              PutIngestBlock, GetIngestBlock);
  if (!writer) {  // a worker rank: its blocks are with rank 0, which writes stars.fits
    progress.Finish();
    return summary;
  }
  progress.Finish();
  summary.kept = row;
  w->WriteTable("REJECTS",
                {{"OBSID", "", rej_id}, {"FILE", "", rej_file}, {"REASON", "", rej_reason}});
  w->Standard(p, "");
  w->WriteTable("WAVELENGTH", {{"WAVELENGTH", "Angstrom", InputGrid().Centres()}});
  w->Standard(p, "");
  w->Close();
  log->info("{} stars kept, {} rejected", summary.kept, rej_id.size());
  if (summary.window_from_spectrum > 0) {
    log->warn(
        "{} star(s) have no {}: their flux scale (5526-5586 A) comes from the LAMOST spectrum "
        "(FLUXSRC = 'spectrum' in stars.fits)",
        summary.window_from_spectrum, o.columns.gmag);
  }
  for (const auto& [reason, count] : summary.rejected)
    log->info("  rejected ({}): {}", reason, count);
  if (summary.kept == 0) {
    std::string why;
    for (const auto& [reason, count] : summary.rejected)
      why += (why.empty() ? "" : ", ") + reason + " " + std::to_string(count);
    throw Error((from_headers ? spectra_dir : catalogue_path) + ": no star passed ingest (" +
                std::to_string(catalogue.size()) + " rows rejected: " + why +
                "); nothing to calibrate with, no product written");
  }
  return summary;
}

namespace {
std::map<std::string, std::map<std::string, std::string>> ReadLabels(
    const std::string& labels, std::vector<std::string>* header_out) {
  std::map<std::string, std::map<std::string, std::string>> by_file;
  if (labels.empty()) return by_file;
  CsvTable t;
  try {
    t = ReadCsvTable(labels);
  } catch (const IoError& e) {
    throw IoError(labels + ": " + e.what());
  }
  // Label column names match without regard to case, like the catalogues' (SameColumnName).
  for (auto& h : t.header)
    std::transform(h.begin(), h.end(), h.begin(),
                   [](unsigned char ch) { return std::tolower(ch); });
  if (header_out) *header_out = t.header;
  const auto file_col = std::find(t.header.begin(), t.header.end(), "file");
  if (file_col == t.header.end())
    throw IoError(labels + ": no 'file' column (the spectrum's file name)");
  std::map<std::string, long> line_of;  // file -> its line, so that a file listed twice is named
  for (size_t r = 0; r < t.rows.size(); ++r) {
    const auto& f = t.rows[r];
    const std::string& file = f[static_cast<size_t>(file_col - t.header.begin())];
    const auto [it, fresh] = line_of.emplace(file, t.line[r]);
    if (!fresh) {
      throw IoError(labels + ": lines " + std::to_string(it->second) + " and " +
                    std::to_string(t.line[r]) + " both give labels for " + file +
                    " (each file once)");
    }
    auto& m = by_file[file];
    for (size_t i = 0; i < t.header.size(); ++i) m[t.header[i]] = f[i];
  }
  return by_file;
}
}  // namespace

std::vector<std::string> CatalogueFromHeadersColumns(const std::string& labels) {
  const CatalogueColumns c;
  std::vector<std::string> names = {c.obsid, c.designation, c.ra, c.dec, c.snr_g, c.snr_r, c.rv};
  std::vector<std::string> header;
  ReadLabels(labels, &header);
  for (const auto& h : header)
    if (h == "teff" || h == "logg" || h == "feh" || h == "alpha")
      names.push_back(h == "teff" ? c.teff : h == "logg" ? c.logg : h == "feh" ? c.feh : c.alpha);
  return names;
}

std::vector<StarRecord> CatalogueFromHeaders(const std::string& dir, const std::string& labels,
                                             std::vector<std::string>* skipped,
                                             std::map<int64_t, std::string>* files) {
  if (!fs::is_directory(dir)) throw IoError(dir + ": not a directory of LAMOST files");
  const auto by_file = ReadLabels(labels, nullptr);
  std::vector<fs::path> paths;
  for (const auto& p : FitsFilesIn(dir)) paths.push_back(p);
  std::vector<StarRecord> out;
  std::map<int64_t, std::string> file_of;  // obsid -> the file that gave it
  constexpr double kNan = std::numeric_limits<double>::quiet_NaN();
  for (const auto& p : paths) {
    LamostSpectrum lam;
    try {
      lam = ReadLamost(p.string());
    } catch (const Cancelled&) {
      throw;
    } catch (const Error& e) {
      if (skipped) skipped->push_back(e.what());
      continue;
    }
    const auto& h = lam.header;
    StarRecord s;
    s.obsid = h.obsid;
    if (const auto [it, fresh] = file_of.emplace(h.obsid, p.string()); !fresh) {
      throw IoError(dir + ": " + it->second + " and " + p.string() + " both hold OBSID " +
                    std::to_string(h.obsid) + " (each spectrum once: remove one)");
    }
    if (files) (*files)[h.obsid] = p.string();
    s.designation = PrintableAscii(h.designation);
    s.ra = h.ra;
    s.dec = h.dec;
    s.snr_g = h.snr[1];
    s.snr_r = h.snr[2];
    s.rv = 299792.458 * h.z;
    s.teff = s.logg = s.feh = s.gmag = kNan;
    auto it = by_file.find(p.filename().string());
    if (it != by_file.end()) {
      auto number = [&](const char* name, double fallback) {
        auto f = it->second.find(name);
        if (f == it->second.end() || f->second.empty()) return fallback;
        try {
          size_t used = 0;
          const double v = std::stod(f->second, &used);
          if (used == f->second.size()) return v;
        } catch (const std::exception&) {
        }
        throw IoError(labels + ": " + p.filename().string() + ": column " + name + ": '" +
                      f->second + "' is not a number");
      };
      s.teff = number("teff", kNan);
      s.logg = number("logg", kNan);
      s.feh = number("feh", kNan);
      s.alpha = number("alpha", 0.0);
      s.rv = number("rv", s.rv);
    }
    out.push_back(s);
  }
  if (out.empty()) throw IoError(dir + ": no readable LAMOST file");
  return out;
}

std::string TrainingDomainReason(double snr, double teff, const IngestOptions& o) {
  std::string why;
  char buf[160];
  if (snr < o.snr_min) {
    std::snprintf(buf, sizeof(buf), "SNR %.1f < %.0f", snr, o.snr_min);
    why = buf;
  }
  if (std::isfinite(teff) && teff > 0 && (teff < o.teff_min || teff > o.teff_max)) {
    std::snprintf(buf, sizeof(buf), "%sTeff %.0f K outside %.0f-%.0f K", why.empty() ? "" : "; ",
                  teff, o.teff_min, o.teff_max);
    why += buf;
  }
  return why;
}

double InputSnr(const PreparedInput& in) {
  std::vector<double> ratio;
  for (size_t k = 0; k < in.flux.size(); ++k)
    if (!in.mask[k] && in.err[k] > 0) ratio.push_back(std::abs(in.flux[k]) / in.err[k]);
  return ratio.empty() ? 0.0 : Median(ratio);
}

std::string StarSetId(const PreparedStars& s) {
  std::string text;
  for (size_t i = 0; i < s.stars.size(); ++i) {
    text += std::to_string(s.stars[i].obsid) + ":" +
            (i < s.spec_hash.size() ? s.spec_hash[i] : std::string()) + "\n";
  }
  return HashHex(text);
}

namespace {
// Rows first .. first + count - 1 of the STARS table's FLUX, ERR (and MASK when asked) into
// row-major arrays.
void ReadInputRows(FitsReader& r, long first, long count, float* flux, float* err, uint8_t* mask) {
  const auto f = r.ReadColumn("FLUX", first, count), e = r.ReadColumn("ERR", first, count);
  std::copy(f.begin(), f.end(), flux);
  std::copy(e.begin(), e.end(), err);
  if (!mask) return;
  const auto m = r.ReadColumn("MASK", first, count);
  for (size_t i = 0; i < m.size(); ++i) mask[i] = static_cast<uint8_t>(m[i]);
}
void CheckInputWidth(FitsReader& r, const std::string& path) {
  const long np = InputGrid().size();
  if (r.ColumnRepeat("FLUX") != np)
    throw IoError(path + ": FLUX column is not " + std::to_string(np) + " pixels wide");
}
}  // namespace

PreparedInputsReader::PreparedInputsReader(const std::string& path) : r_(path) {
  r_.MoveTo("STARS");
  CheckInputWidth(r_, path);
  rows_ = r_.NumRows();
}

void PreparedInputsReader::Read(long first, long count, float* flux, float* err, uint8_t* mask) {
  if (first < 0 || count < 0 || first + count > rows_)
    throw IoError(r_.path() + ": rows " + std::to_string(first + 1) + " .. " +
                  std::to_string(first + count) + " asked for, STARS has " + std::to_string(rows_));
  ReadInputRows(r_, first, count, flux, err, mask);
}

PreparedStars ReadPreparedStars(const std::string& path, bool with_inputs) {
  FitsReader r(path);
  r.MoveTo("STARS");
  PreparedStars s;
  const long n = r.NumRows();
  const long np = InputGrid().size();
  CheckInputWidth(r, path);
  const auto id = r.ReadColumn("OBSID");
  const auto des = r.ReadStringColumn("DESIGNATION");
  const auto ra = r.ReadColumn("RA"), dec = r.ReadColumn("DEC"), teff = r.ReadColumn("TEFF");
  const auto logg = r.ReadColumn("LOGG"), feh = r.ReadColumn("FEH"), g = r.ReadColumn("GMAG");
  const auto snrg = r.ReadColumn("SNR_G"), snrr = r.ReadColumn("SNR_R"), rv = r.ReadColumn("RV");
  s.z = r.ReadColumn("Z");
  s.spec_hash =
      r.HasColumn("SPECHASH") ? r.ReadStringColumn("SPECHASH") : std::vector<std::string>(n);
  const std::vector<double> none(static_cast<size_t>(n), 0.0);
  const auto alpha = r.HasColumn("ALPHA") ? r.ReadColumn("ALPHA") : none;
  const auto ebv = r.HasColumn("EBV") ? r.ReadColumn("EBV") : none;
  if (r.HasColumn("WINDOW_FLUX")) {
    s.window_flux = r.ReadColumn("WINDOW_FLUX");
    s.window_source = r.ReadStringColumn("FLUXSRC");
  }
  for (long i = 0; i < n; ++i) {
    StarRecord st;
    st.obsid = static_cast<int64_t>(id[i]);
    st.designation = des[i];
    st.ra = ra[i];
    st.dec = dec[i];
    st.teff = teff[i];
    st.logg = logg[i];
    st.feh = feh[i];
    st.gmag = g[i];
    st.snr_g = snrg[i];
    st.snr_r = snrr[i];
    st.rv = rv[i];
    st.alpha = alpha[i];
    st.ebv = ebv[i];
    s.stars.push_back(st);
  }
  if (!with_inputs) return s;
  // The inputs in blocks of rows, converted as they come: never a double copy of all of them.
  const size_t total = static_cast<size_t>(n) * static_cast<size_t>(np);
  s.flux.resize(total);
  s.err.resize(total);
  s.mask.resize(total);
  constexpr long kBlock = 4096;
  for (long first = 0; first < n; first += kBlock) {
    const long count = std::min(kBlock, n - first);
    const size_t at = static_cast<size_t>(first) * static_cast<size_t>(np);
    ReadInputRows(r, first, count, s.flux.data() + at, s.err.data() + at, s.mask.data() + at);
  }
  return s;
}

}  // namespace csst
