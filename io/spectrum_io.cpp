#include "io/spectrum_io.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>

#include "core/errors.h"
#include "core/rng.h"

namespace csst {
namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

[[noreturn]] void Bad(const std::string& path, const std::string& what) {
  throw IoError(path + ": " + what);
}

void CheckWavelengths(const std::string& path, const std::vector<double>& w) {
  if (w.size() < 2) Bad(path, "fewer than 2 pixels");
  for (size_t i = 0; i < w.size(); ++i) {
    if (!std::isfinite(w[i]) || w[i] <= 0)
      Bad(path, "wavelength at pixel " + std::to_string(i) + " is not a positive finite number");
    if (i > 0 && !(w[i] > w[i - 1]))
      Bad(path, "wavelengths are not strictly increasing at pixel " + std::to_string(i));
  }
}

void CheckFinite(const std::string& path, const std::vector<double>& v, const std::string& what) {
  for (size_t i = 0; i < v.size(); ++i) {
    if (!std::isfinite(v[i])) Bad(path, what + " at pixel " + std::to_string(i) + " is NaN or Inf");
  }
}

double OptDouble(FitsReader& r, const std::string& key, double fallback = 0) {
  if (!r.HasKey(key)) return fallback;
  try {
    return r.KeyDouble(key);
  } catch (const FitsError&) {
    return kNaN;  // e.g. '-' in STELIB headers
  }
}

std::string Trim(std::string s) {
  while (!s.empty() && (s.back() == ' ')) s.pop_back();
  size_t i = 0;
  while (i < s.size() && s[i] == ' ') ++i;
  return s.substr(i);
}

// The five arrays of a LAMOST file, as read from either layout.
struct LamostArrays {
  std::vector<double> flux, ivar, wave, andm, orm;
};

void FillLamostSpectrum(const std::string& path, LamostSpectrum& out, const LamostArrays& arrays,
                        bool use_ormask) {
  const auto& [flux, ivar, wave, andm, orm] = arrays;
  const size_t n = flux.size();
  if (ivar.size() != n || wave.size() != n || andm.size() != n || orm.size() != n) {
    Bad(path, "flux, ivar, wavelength and mask arrays differ in length");
  }
  CheckWavelengths(path, wave);
  CheckFinite(path, flux, "flux");
  CheckFinite(path, ivar, "inverse variance");
  bool any_ivar = false;
  for (double v : ivar) {
    if (v < 0) Bad(path, "negative inverse variance");
    any_ivar |= v > 0;
  }
  if (!any_ivar) Bad(path, "inverse variance is zero at every pixel");
  Spectrum& s = out.spectrum;
  s.wave = wave;
  if (!out.header.vacuum) {
    for (double& w : s.wave) w = VacuumFromAir(w);
  }
  s.flux = flux;
  s.err.resize(n);
  s.mask.assign(n, 0u);
  out.andmask.resize(n);
  out.ormask.resize(n);
  for (size_t i = 0; i < n; ++i) {
    out.andmask[i] = static_cast<int32_t>(andm[i]);
    out.ormask[i] = static_cast<int32_t>(orm[i]);
    s.err[i] = ivar[i] > 0 ? 1.0 / std::sqrt(ivar[i]) : 0.0;
    if (ivar[i] <= 0 || out.andmask[i] != 0 || (use_ormask && out.ormask[i] != 0))
      s.mask[i] |= kMaskBad;
  }
  s.meta["OBSID"] = std::to_string(out.header.obsid);
  s.meta["SOURCE"] = path;
}

}  // namespace

LamostSpectrum ReadLamost(const std::string& path, bool use_ormask) {
  FitsReader r(path);
  LamostSpectrum out;
  auto& h = out.header;
  r.MoveTo(1);
  if (!r.HasKey("OBSID")) Bad(path, "missing keyword OBSID (not a LAMOST spectrum?)");
  h.obsid = r.KeyLong("OBSID");
  h.designation = Trim(r.FindKeyString("DESIG").value_or(""));
  h.object_class = Trim(r.FindKeyString("CLASS").value_or(""));
  h.subclass = Trim(r.FindKeyString("SUBCLASS").value_or(""));
  h.ra = OptDouble(r, "RA");
  h.dec = OptDouble(r, "DEC");
  h.z = OptDouble(r, "Z");
  h.z_err = OptDouble(r, "Z_ERR");
  const char* snr_keys[5] = {"SNRU", "SNRG", "SNRR", "SNRI", "SNRZ"};
  for (int i = 0; i < 5; ++i) h.snr[i] = OptDouble(r, snr_keys[i]);
  for (int i = 0; i < 7; ++i) h.mag[i] = OptDouble(r, "MAG" + std::to_string(i + 1), 99.0);
  if (r.HasKey("VACUUM")) {
    const auto v = Trim(r.KeyString("VACUUM"));
    h.vacuum = v == "T" || v == "1";
  }
  const auto dims = r.ImageDims();
  if (dims.size() == 2) {
    out.layout = LamostLayout::kDr7;
    if (dims[1] < 5)
      Bad(path, "primary image has " + std::to_string(dims[1]) +
                    " rows, expected 5 (flux, ivar, wavelength, andmask, ormask)");
    const long n = dims[0];
    const auto img = r.ReadImage();
    auto row = [&](int k) {
      return std::vector<double>(img.begin() + k * n, img.begin() + (k + 1) * n);
    };
    FillLamostSpectrum(path, out, LamostArrays{row(0), row(1), row(2), row(3), row(4)}, use_ormask);
  } else if (dims.empty() || (dims.size() == 1 && dims[0] == 0)) {
    out.layout = LamostLayout::kDr8;
    if (!r.HasHdu("COADD")) Bad(path, "missing HDU COADD (neither DR7 image nor DR8 table layout)");
    r.MoveTo("COADD");
    FillLamostSpectrum(
        path, out,
        LamostArrays{r.ReadColumn("FLUX"), r.ReadColumn("IVAR"), r.ReadColumn("WAVELENGTH"),
                     r.ReadColumn("ANDMASK"), r.ReadColumn("ORMASK")},
        use_ormask);
  } else {
    Bad(path, "primary image has " + std::to_string(dims.size()) +
                  " axes, expected 2 (DR7) or none (DR8)");
  }
  return out;
}

void WriteLamost(const std::string& path, const LamostSpectrum& s, LamostLayout layout,
                 const Provenance& provenance) {
  const auto& sp = s.spectrum;
  const long n = static_cast<long>(sp.size());
  if (n < 2) throw IoError(path + ": cannot write a spectrum of fewer than 2 pixels");
  std::vector<float> flux(n), ivar(n), wave(n), andm(n), orm(n);
  for (long i = 0; i < n; ++i) {
    flux[i] = static_cast<float>(sp.flux[i]);
    const double e = sp.err.empty() ? 0.0 : sp.err[i];
    const bool bad = !sp.mask.empty() && sp.mask[i] != 0;
    ivar[i] = (e > 0 && !bad) ? static_cast<float>(1.0 / (e * e)) : 0.0f;
    wave[i] = static_cast<float>(sp.wave[i]);
    andm[i] = static_cast<float>(s.andmask.empty() ? (bad ? 1 : 0) : s.andmask[i]);
    orm[i] = static_cast<float>(s.ormask.empty() ? (bad ? 1 : 0) : s.ormask[i]);
  }
  FitsWriter w(path);
  const std::string bunit = "10**-17 erg/s/cm2/A";
  auto header = [&]() {
    const auto& h = s.header;
    w.Key("OBSID", static_cast<long>(h.obsid), "Unique number ID of this spectrum");
    w.Key("DESIG", h.designation, "Designation of LAMOST target");
    w.Key("RA", h.ra, "[deg] Right ascension of object");
    w.Key("DEC", h.dec, "[deg] Declination of object");
    w.Key("CLASS", h.object_class, "Class of object");
    w.Key("SUBCLASS", h.subclass, "Subclass of object");
    w.Key("Z", h.z, "Redshift of object");
    w.Key("Z_ERR", h.z_err, "Redshift error of object");
    const char* snr_keys[5] = {"SNRU", "SNRG", "SNRR", "SNRI", "SNRZ"};
    for (int i = 0; i < 5; ++i) w.Key(snr_keys[i], h.snr[i], "SNR of filter");
    for (int i = 0; i < 7; ++i)
      w.Key("MAG" + std::to_string(i + 1), h.mag[i], "[mag] Mag of object");
    w.KeyBool("VACUUM", h.vacuum, "Wavelengths are in vacuum");
    const double c0 = std::log10(sp.wave[0]);
    const double c1 = std::log10(sp.wave[1]) - c0;
    w.Key("COEFF0", c0, "Central wavelength (log10) of first pixel");
    w.Key("COEFF1", c1, "Log10 dispersion per pixel");
    w.Standard(provenance, bunit);
  };
  if (layout == LamostLayout::kDr7) {
    std::vector<float> img;
    img.reserve(5 * n);
    for (const auto* row : {&flux, &ivar, &wave, &andm, &orm})
      img.insert(img.end(), row->begin(), row->end());
    w.WriteImage("", {n, 5}, img);
    w.Key("EXTNAME", "Flux", "The extension name");
    w.Key("EXTEN0", "Flux, Inverse, Wavelength, Andmask, Ormask");
    header();
  } else {
    w.WriteEmptyPrimary();
    header();
    std::vector<int32_t> a(n), o(n);
    for (long i = 0; i < n; ++i) {
      a[i] = static_cast<int32_t>(andm[i]);
      o[i] = static_cast<int32_t>(orm[i]);
    }
    w.WriteTable("COADD", {{"WAVELENGTH", "Angstrom", wave, n},
                           {"FLUX", bunit, flux, n},
                           {"IVAR", "", ivar, n},
                           {"ANDMASK", "", a, n},
                           {"ORMASK", "", o, n}});
    w.Standard(provenance, "");
  }
  w.Close();
}

// ---------------------------------------------------------------------------------------------
namespace {

LibrarySpectrum LinearImage(const std::string& path, bool air) {
  FitsReader r(path);
  r.MoveTo(1);
  const auto dims = r.ImageDims();
  if (dims.size() != 1 && !(dims.size() == 2 && dims[1] == 1)) {
    Bad(path, "expected a 1-D image, found " + std::to_string(dims.size()) + " axes");
  }
  if (!r.HasKey("CRVAL1")) Bad(path, "missing keyword CRVAL1");
  if (!r.HasKey("CDELT1") && !r.HasKey("CD1_1")) Bad(path, "missing keyword CDELT1");
  const double crval = r.KeyDouble("CRVAL1");
  const double cdelt = r.HasKey("CDELT1") ? r.KeyDouble("CDELT1") : r.KeyDouble("CD1_1");
  const double crpix = r.HasKey("CRPIX1") ? r.KeyDouble("CRPIX1") : 1.0;
  if (!(cdelt > 0) || !std::isfinite(crval)) Bad(path, "CDELT1 must be > 0 and CRVAL1 finite");
  const auto flux = r.ReadImage();
  CheckFinite(path, flux, "flux");
  LibrarySpectrum out;
  Spectrum& s = out.spectrum;
  s.flux = flux;
  s.wave.resize(flux.size());
  for (size_t i = 0; i < flux.size(); ++i) {
    const double w = crval + (static_cast<double>(i) + 1.0 - crpix) * cdelt;
    s.wave[i] = air ? VacuumFromAir(w) : w;
  }
  CheckWavelengths(path, s.wave);
  s.err.assign(flux.size(), 0.0);
  s.mask.assign(flux.size(), 0u);
  out.name = Trim(r.FindKeyString("OBJECT").value_or(""));
  out.teff = out.logg = out.feh = kNaN;
  return out;
}

LibrarySpectrum Table(const std::string& path, const std::vector<std::string>& wave_cols,
                      const std::vector<std::string>& flux_cols,
                      const std::vector<std::string>& err_cols, const std::string& sys_col) {
  FitsReader r(path);
  if (r.NumHdus() < 2) Bad(path, "missing binary-table HDU 2");
  r.MoveTo(2);
  if (r.IsImage()) Bad(path, "HDU 2 is an image, expected a binary table");
  auto pick = [&](const std::vector<std::string>& names, bool required) -> std::string {
    for (const auto& n : names)
      if (r.HasColumn(n)) return n;
    if (required) Bad(path, "missing column " + names.front());
    return "";
  };
  LibrarySpectrum out;
  Spectrum& s = out.spectrum;
  s.wave = r.ReadColumn(pick(wave_cols, true));
  s.flux = r.ReadColumn(pick(flux_cols, true));
  if (s.flux.size() != s.wave.size()) Bad(path, "flux and wavelength columns differ in length");
  CheckWavelengths(path, s.wave);
  CheckFinite(path, s.flux, "flux");
  s.err.assign(s.size(), 0.0);
  const std::string ec = pick(err_cols, false);
  if (!ec.empty()) {
    s.err = r.ReadColumn(ec);
    if (!sys_col.empty() && r.HasColumn(sys_col)) {
      const auto sys = r.ReadColumn(sys_col);
      for (size_t i = 0; i < s.size(); ++i) s.err[i] = std::hypot(s.err[i], sys[i]);
    }
    CheckFinite(path, s.err, "error");
  }
  s.mask.assign(s.size(), 0u);
  r.MoveTo(1);
  out.name = Trim(r.FindKeyString("TARGETID").value_or(r.FindKeyString("OBJECT").value_or("")));
  out.teff = out.logg = out.feh = kNaN;
  return out;
}

}  // namespace

LibrarySpectrum ReadMiles(const std::string& path) {
  auto out = LinearImage(path, /*air=*/true);
  out.fwhm = 2.5;
  return out;
}

std::vector<MilesParams> ReadMilesParams(const std::string& path) {
  std::ifstream in(path);
  if (!in) Bad(path, "cannot open");
  std::vector<MilesParams> out;
  std::string line;
  long row = 0;
  while (std::getline(in, line)) {
    ++row;
    if (row <= 3 || line.size() < 70) continue;  // three header lines
    // Fixed columns: name (0-21), MILES id (22-27), CaT (28-33), SpT (34-48), Teff, log g, [Fe/H].
    MilesParams p;
    p.name = Trim(line.substr(0, 22));
    std::istringstream ids(line.substr(22, 6));
    if (!(ids >> p.miles_id)) continue;
    std::istringstream vals(line.substr(49));
    std::string t, g, z;
    if (!(vals >> t >> g >> z))
      Bad(path, "row " + std::to_string(row) + ": cannot read Teff, log g, [Fe/H]");
    auto num = [](const std::string& v) {  // '--' marks a missing value
      char* end = nullptr;
      const double x = std::strtod(v.c_str(), &end);
      return end != v.c_str() && *end == 0 ? x : kNaN;
    };
    p.teff = num(t);
    p.logg = num(g);
    p.feh = num(z);
    out.push_back(p);
  }
  if (out.empty()) Bad(path, "no parameter rows found");
  return out;
}

LibrarySpectrum ReadStelib(const std::string& path) {
  auto out = LinearImage(path, /*air=*/true);
  FitsReader r(path);
  out.teff = OptDouble(r, "TEFF", kNaN);
  out.logg = OptDouble(r, "LOG_G", kNaN);
  out.feh = OptDouble(r, "FE_H", kNaN);
  out.fwhm = 3.0;
  auto& s = out.spectrum;
  bool any = false;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s.flux[i] == 0.0)
      s.mask[i] |= kMaskNoCoverage;
    else
      any = true;
  }
  if (!any) Bad(path, "flux is zero at every pixel");
  return out;
}

LibrarySpectrum ReadCalspec(const std::string& path) {
  return Table(path, {"WAVELENGTH"}, {"FLUX"}, {"STATERROR"}, "SYSERROR");
}

LibrarySpectrum ReadNgsl(const std::string& path) {
  return Table(path, {"WAVELENGTH", "WAVE"}, {"FLUX"}, {"STAT_ERROR", "STATERROR", "ERROR", "ERR"},
               "");
}

LibrarySpectrum ReadBosz(const std::string& path) {
  if (path.size() > 5 &&
      (path.substr(path.size() - 5) == ".fits" || path.substr(path.size() - 4) == ".fit")) {
    return Table(path, {"Wavelength", "WAVELENGTH"}, {"SpecificIntensity", "Flux", "FLUX"}, {}, "");
  }
  std::ifstream in(path);
  if (!in) Bad(path, "cannot open");
  LibrarySpectrum out;
  std::string line;
  long row = 0;
  while (std::getline(in, line)) {
    ++row;
    if (line.empty() || line[0] == '#') continue;
    std::istringstream ss(line);
    double w = 0, f = 0;
    if (!(ss >> w >> f)) Bad(path, "row " + std::to_string(row) + ": expected wavelength and flux");
    out.spectrum.wave.push_back(w);
    out.spectrum.flux.push_back(f);
  }
  CheckWavelengths(path, out.spectrum.wave);
  CheckFinite(path, out.spectrum.flux, "flux");
  out.spectrum.err.assign(out.spectrum.size(), 0.0);
  out.spectrum.mask.assign(out.spectrum.size(), 0u);
  out.teff = out.logg = out.feh = kNaN;
  return out;
}

LibrarySpectrum ReadKurucz93(const std::string& path, double logg) {
  FitsReader r(path);
  if (r.NumHdus() < 2) Bad(path, "missing table HDU 2");
  r.MoveTo(2);
  char col[8];
  std::snprintf(col, sizeof(col), "g%02d", static_cast<int>(std::lround(logg * 10)));
  const auto w = r.ReadColumn("WAVELENGTH");
  const auto f = r.ReadColumn(col);
  LibrarySpectrum out;
  for (size_t i = 0; i < w.size(); ++i) {
    if (w[i] < 1500 || w[i] > 13000) continue;
    out.spectrum.wave.push_back(w[i]);
    out.spectrum.flux.push_back(f[i]);
  }
  CheckWavelengths(path, out.spectrum.wave);
  out.spectrum.err.assign(out.spectrum.size(), 0.0);
  out.spectrum.mask.assign(out.spectrum.size(), 0u);
  out.logg = logg;
  return out;
}

Spectrum Kurucz93Sed(const std::string& dir, double teff, double logg) {
  const int t = static_cast<int>(std::lround(teff / 250.0) * 250);
  const auto k = ReadKurucz93(dir + "/kp00_" + std::to_string(t) + ".fits.gz", logg);
  return ScaleSed(ResampleFluxConserving(DegradeToResolution(k.spectrum, 200.0), OutputGrid()));
}

AnySpectrum ReadAnySpectrum(const std::string& path) {
  AnySpectrum out;
  const std::string base = std::filesystem::path(path).filename().string();
  out.name = base;
  const bool fits = base.find(".fit") != std::string::npos;
  if (!fits) {
    const auto b = ReadBosz(path);
    out.spectrum = b.spectrum;
    out.format = "bosz";
    out.teff = b.teff;
    out.logg = b.logg;
    out.feh = b.feh;
    return out;
  }
  bool lamost = false, image = false, has_cols = false, absolute = false;
  {
    FitsReader r(path);
    r.MoveTo(1);
    lamost = r.HasKey("OBSID");
    const auto dims = r.ImageDims();
    image = !dims.empty() && dims[0] > 1;
    const auto bunit = r.FindKeyString("BUNIT").value_or("");
    absolute = bunit.find("erg") != std::string::npos;
    if (r.NumHdus() >= 2) {
      r.MoveTo(2);
      has_cols = !r.IsImage();
    }
  }
  if (lamost) {
    const auto l = ReadLamost(path);
    out.spectrum = l.spectrum;
    out.format = l.layout == LamostLayout::kDr7 ? "lamost-dr7" : "lamost-dr8";
    out.id = l.header.obsid;
    out.name = l.header.designation.empty() ? base : l.header.designation;
    out.z = l.header.z;
    out.teff = out.logg = out.feh = kNaN;
    return out;
  }
  LibrarySpectrum lib;
  if (image) {
    const bool stelib = base.find("STELIB") != std::string::npos || absolute;
    lib = stelib ? ReadStelib(path) : ReadMiles(path);
    out.format = stelib ? "stelib" : "miles";
  } else if (has_cols) {
    FitsReader r(path);
    r.MoveTo(2);
    if (r.HasColumn("STATERROR") || r.HasColumn("SYSERROR")) {
      lib = ReadCalspec(path);
      out.format = "calspec";
    } else if (r.HasColumn("SpecificIntensity") || r.HasColumn("Continuum")) {
      lib = ReadBosz(path);
      out.format = "bosz";
    } else {
      lib = ReadNgsl(path);
      out.format = "ngsl";
    }
  } else {
    Bad(path,
        "not a recognised spectrum format (no LAMOST OBSID, no 1-D image, no table in HDU 2)");
  }
  out.spectrum = lib.spectrum;
  if (!lib.name.empty()) out.name = lib.name;
  out.teff = lib.teff;
  out.logg = lib.logg;
  out.feh = lib.feh;
  return out;
}

std::string SpectrumDataHash(const Spectrum& s) {
  std::string bytes;
  for (const auto* v : {&s.wave, &s.flux, &s.err}) {
    bytes.append(reinterpret_cast<const char*>(v->data()), v->size() * sizeof(double));
  }
  return HashHex(bytes);
}

}  // namespace csst
