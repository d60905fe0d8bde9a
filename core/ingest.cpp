#include "core/ingest.h"

#include <tbb/parallel_for.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <optional>

#include "core/errors.h"
#include "core/grid.h"
#include "core/log.h"
#include "core/progress.h"
#include "core/spectrum_io.h"

namespace csst {
namespace fs = std::filesystem;

void IngestOptions::Validate() const {
  auto fail = [](const std::string& m) { throw ConfigError("config error: " + m); };
  if (source != "sample" && source != "files") fail("ingest.source = " + source + " violates source in {sample, files}");
  if (source == "files" && (catalogue.empty() || spectra_dir.empty())) {
    fail("ingest.source = files needs ingest.catalogue and ingest.spectra_dir");
  }
  if (snr_band != "g" && snr_band != "r") fail("ingest.snr_band = " + snr_band + " violates snr_band in {g, r}");
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
          {"FLUX", "", std::vector<float>{}, n},
          {"ERR", "", std::vector<float>{}, n},
          {"MASK", "", std::vector<uint8_t>{}, n}};
}

void WritePreparedStars(FitsWriter& w, const PreparedStars& s, long first_row) {
  std::vector<int64_t> obsid;
  std::vector<std::string> des;
  std::vector<double> ra, dec, teff, logg, feh, g, snrg, snrr, rv;
  for (const auto& st : s.stars) {
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
                           {"FLUX", "", s.flux, n},
                           {"ERR", "", s.err, n},
                           {"MASK", "", s.mask, n}});
}

namespace {

std::string SelectionReason(const IngestOptions& o, const StarRecord& s) {
  char buf[128];
  const double snr = o.snr_band == "g" ? s.snr_g : s.snr_r;
  if (!(snr > o.snr_min)) {
    std::snprintf(buf, sizeof(buf), "snr_%s %.1f <= %.1f", o.snr_band.c_str(), snr, o.snr_min);
    return buf;
  }
  if (!(s.gmag > o.g_min)) {
    std::snprintf(buf, sizeof(buf), "G %.2f <= %.2f", s.gmag, o.g_min);
    return buf;
  }
  if (!(s.teff >= o.teff_min && s.teff <= o.teff_max)) {
    std::snprintf(buf, sizeof(buf), "Teff %.0f outside %.0f-%.0f K", s.teff, o.teff_min, o.teff_max);
    return buf;
  }
  return "";
}

std::string ReasonClass(const std::string& r) {
  const auto sp = r.find_first_of(" :");
  return sp == std::string::npos ? r : r.substr(0, sp);
}

// obsid -> file: "spec-<obsid>.fits" when present, otherwise the OBSID keyword of every *.fits.
std::map<int64_t, std::string> IndexSpectra(const std::string& dir, const std::vector<StarRecord>& stars) {
  std::map<int64_t, std::string> index;
  if (!fs::is_directory(dir)) throw IoError(dir + ": spectra directory does not exist");
  bool all_named = true;
  for (const auto& s : stars) {
    const auto p = fs::path(dir) / ("spec-" + std::to_string(s.obsid) + ".fits");
    if (fs::exists(p)) index[s.obsid] = p.string();
    else all_named = false;
  }
  if (all_named) return index;
  for (const auto& e : fs::directory_iterator(dir)) {
    const auto name = e.path().filename().string();
    if (name.size() < 5 || (name.find(".fits") == std::string::npos && name.find(".fit") == std::string::npos)) continue;
    try {
      FitsReader r(e.path().string());
      if (r.HasKey("OBSID")) index.emplace(r.KeyLong("OBSID"), e.path().string());
    } catch (const Error&) {
      // unreadable files are reported when a catalogue row needs them
    }
  }
  return index;
}

}  // namespace

IngestSummary Ingest(const IngestOptions& o, const std::string& catalogue_path, const std::string& spectra_dir,
                     const std::string& out_path, const Provenance& provenance) {
  o.Validate();
  auto log = Logger("ingest");
  const auto catalogue = ReadCatalogue(catalogue_path, o.columns);
  const auto index = IndexSpectra(spectra_dir, catalogue);
  IngestSummary summary;
  std::vector<int64_t> rej_id;
  std::vector<std::string> rej_file, rej_reason;
  auto reject = [&](const StarRecord& s, const std::string& file, const std::string& reason) {
    rej_id.push_back(s.obsid);
    rej_file.push_back(file);
    rej_reason.push_back(reason);
    ++summary.rejected[ReasonClass(reason)];
  };

  FitsWriter w(out_path);
  w.WriteEmptyPrimary();
  Provenance p = provenance;
  p.descrip = "normalised 2238-pixel network inputs (4000-7000 A, log, R=2000 grid)";
  w.Standard(p, "");
  w.CreateTable("STARS", PreparedStarsLayout());
  w.Standard(p, "");
  w.Key("GRIDTYPE", "LOG", "input grid: log-lambda");
  w.Key("GRIDMIN", InputGrid().first_edge(), "[Angstrom] first pixel edge (vacuum)");
  w.Key("GRIDMAX", InputGrid().last_edge(), "[Angstrom] last pixel edge (vacuum)");
  w.Key("GRIDN", static_cast<long>(InputGrid().size()), "pixels");
  w.Key("CONTWIN", static_cast<long>(o.prepare.window), "moving-average continuum window [px]");
  w.Comment("FLUX = flux / continuum; ERR its 1-sigma; MASK 1 = no usable data (FLUX 1, ERR 1)");

  Progress progress("ingest", static_cast<long>(catalogue.size()));
  long row = 0;
  for (size_t start = 0; start < catalogue.size(); start += static_cast<size_t>(o.chunk)) {
    const size_t end = std::min(catalogue.size(), start + static_cast<size_t>(o.chunk));
    struct Result {
      std::optional<PreparedInput> input;
      double z = 0;
      std::string file, reason;
      std::string subclass;
    };
    std::vector<Result> results(end - start);
    tbb::parallel_for(start, end, [&](size_t i) {
      const auto& s = catalogue[i];
      Result& r = results[i - start];
      r.reason = SelectionReason(o, s);
      if (!r.reason.empty()) return;
      auto it = index.find(s.obsid);
      if (it == index.end()) {
        r.reason = "missing: no spectrum file for obsid " + std::to_string(s.obsid) + " in " + spectra_dir;
        return;
      }
      r.file = it->second;
      try {
        const auto lam = ReadLamost(r.file, o.use_ormask);
        if (lam.header.object_class != "STAR") {
          r.reason = "class: " + lam.header.object_class + " is not STAR";
          return;
        }
        r.z = lam.header.z;
        r.input = PrepareNetworkInput(lam.spectrum, r.z, o.prepare, r.file);
      } catch (const Cancelled&) {
        throw;
      } catch (const Error& e) {
        const std::string msg = e.what();
        r.reason = (msg.find("coverage") != std::string::npos ? "coverage: " : "unreadable: ") + msg;
      }
      progress.Tick();
    });
    PreparedStars chunk;
    for (size_t i = start; i < end; ++i) {
      auto& r = results[i - start];
      if (!r.input) {
        reject(catalogue[i], r.file, r.reason);
        continue;
      }
      chunk.stars.push_back(catalogue[i]);
      chunk.z.push_back(r.z);
      chunk.flux.insert(chunk.flux.end(), r.input->flux.begin(), r.input->flux.end());
      chunk.err.insert(chunk.err.end(), r.input->err.begin(), r.input->err.end());
      chunk.mask.insert(chunk.mask.end(), r.input->mask.begin(), r.input->mask.end());
    }
    if (chunk.size() > 0) {
      w.MoveTo("STARS");
      WritePreparedStars(w, chunk, row);
      row += static_cast<long>(chunk.size());
    }
  }
  progress.Finish();
  summary.kept = row;
  w.WriteTable("REJECTS", {{"OBSID", "", rej_id}, {"FILE", "", rej_file}, {"REASON", "", rej_reason}});
  w.Standard(p, "");
  w.WriteTable("WAVELENGTH", {{"WAVELENGTH", "Angstrom", InputGrid().Centres()}});
  w.Standard(p, "");
  w.Close();
  log->info("{} stars kept, {} rejected", summary.kept, rej_id.size());
  for (const auto& [reason, count] : summary.rejected) log->info("  rejected ({}): {}", reason, count);
  return summary;
}

PreparedStars ReadPreparedStars(const std::string& path) {
  FitsReader r(path);
  r.MoveTo("STARS");
  PreparedStars s;
  const long n = r.NumRows();
  const long np = InputGrid().size();
  if (r.ColumnRepeat("FLUX") != np) throw IoError(path + ": FLUX column is not " + std::to_string(np) + " pixels wide");
  const auto id = r.ReadColumn("OBSID");
  const auto des = r.ReadStringColumn("DESIGNATION");
  const auto ra = r.ReadColumn("RA"), dec = r.ReadColumn("DEC"), teff = r.ReadColumn("TEFF");
  const auto logg = r.ReadColumn("LOGG"), feh = r.ReadColumn("FEH"), g = r.ReadColumn("GMAG");
  const auto snrg = r.ReadColumn("SNR_G"), snrr = r.ReadColumn("SNR_R"), rv = r.ReadColumn("RV");
  s.z = r.ReadColumn("Z");
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
    s.stars.push_back(st);
  }
  const auto f = r.ReadColumn("FLUX"), e = r.ReadColumn("ERR"), m = r.ReadColumn("MASK");
  s.flux.assign(f.begin(), f.end());
  s.err.assign(e.begin(), e.end());
  s.mask.resize(m.size());
  for (size_t i = 0; i < m.size(); ++i) s.mask[i] = static_cast<uint8_t>(m[i]);
  return s;
}

}  // namespace csst
