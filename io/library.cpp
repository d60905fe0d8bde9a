#include "io/library.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <tuple>

#include "core/errors.h"
#include "io/catalogue.h"
#include "io/spectrum_io.h"

namespace csst {
namespace fs = std::filesystem;

namespace {
using Params = std::tuple<double, double, double>;  // teff, logg, feh

double ParseParam(const std::string& cell, const std::string& path, long row,
                  const std::string& column) {
  std::string v = cell;
  v.erase(0, v.find_first_not_of(" \t"));
  v.erase(v.find_last_not_of(" \t") + 1);
  if (v.empty() || v == "-" || v == "--") return std::nan("");
  char* end = nullptr;
  const double x = std::strtod(v.c_str(), &end);
  if (end == v.c_str() || *end != 0) {
    throw IoError(path + ": row " + std::to_string(row) + ", column " + column + ": '" + cell +
                  "' is not a number (or '-' for unknown)");
  }
  return x;
}

}  // namespace

std::vector<NamedParams> ReadParameterCsv(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw IoError(path + ": cannot open the parameter file");
  std::string line;
  if (!std::getline(in, line))
    throw IoError(path + ": empty, expected a header line file,teff,logg,feh");
  const auto header = SplitCsv(line);
  auto col = [&](const std::string& name) {
    const auto it = std::find(header.begin(), header.end(), name);
    if (it == header.end())
      throw IoError(path + ": no column '" + name + "' in the header (need file, teff, logg, feh)");
    return static_cast<size_t>(it - header.begin());
  };
  const bool by_name = std::find(header.begin(), header.end(), "file") == header.end() &&
                       std::find(header.begin(), header.end(), "name") != header.end();
  const size_t cf = col(by_name ? "name" : "file"), ct = col("teff"), cg = col("logg"),
               cz = col("feh");
  std::vector<NamedParams> out;
  long row = 1;
  while (std::getline(in, line)) {
    ++row;
    if (line.empty() || line == "\r") continue;
    const auto f = SplitCsv(line);
    if (f.size() < header.size()) {
      throw IoError(path + ": row " + std::to_string(row) + " has " + std::to_string(f.size()) +
                    " fields, expected " + std::to_string(header.size()));
    }
    out.push_back({f[cf], ParseParam(f[ct], path, row, "teff"),
                   ParseParam(f[cg], path, row, "logg"), ParseParam(f[cz], path, row, "feh")});
  }
  return out;
}

Library LoadLibrary(LibraryKind kind, const std::string& dir, const std::string& params_csv,
                    const LibrarySelection& sel) {
  if (!fs::is_directory(dir)) throw IoError(dir + ": library directory not found");
  if (kind == LibraryKind::kNgsl && params_csv.empty()) {
    throw ConfigError(
        "library ngsl: NGSL files carry no stellar parameters; give a parameter CSV "
        "(file,teff,logg,feh)");
  }
  std::map<std::string, Params> override_params;
  if (!params_csv.empty())
    for (const auto& p : ReadParameterCsv(params_csv))
      override_params[p.name] = {p.teff, p.logg, p.feh};
  std::map<std::string, Params> miles_params;
  if (kind == LibraryKind::kMiles) {
    const auto p = fs::path(dir) / "paramsMILES_v9.1.txt";
    if (!fs::exists(p) && params_csv.empty())
      throw IoError(p.string() + ": MILES parameter table not found");
    if (fs::exists(p)) {
      for (const auto& m : ReadMilesParams(p.string())) {
        char name[64];
        std::snprintf(name, sizeof(name), "MILES_res2.50_star_m%04dV.fits", m.miles_id);
        miles_params[name] = {m.teff, m.logg, m.feh};
      }
    }
  }
  std::vector<fs::path> files;
  for (const auto& e : fs::directory_iterator(dir)) {
    const auto n = e.path().filename().string();
    if (!e.is_regular_file() || n.size() < 5 || n.substr(n.size() - 5) != ".fits") continue;
    if ((kind == LibraryKind::kMiles && n.rfind("MILES_", 0) != 0) ||
        (kind == LibraryKind::kStelib && n.rfind("STELIB_", 0) != 0))
      continue;
    files.push_back(e.path());
  }
  std::sort(files.begin(), files.end());
  if (files.empty())
    throw IoError(dir + ": no " + std::string(ToString(kind)) + " FITS files found");
  Library lib;
  lib.kind = kind;
  for (const auto& f : files) {
    const std::string name = f.filename().string();
    LibrarySpectrum s;
    try {
      s = kind == LibraryKind::kMiles    ? ReadMiles(f.string())
          : kind == LibraryKind::kStelib ? ReadStelib(f.string())
                                         : ReadNgsl(f.string());
    } catch (const Error& e) {
      lib.skipped.push_back({name, std::string("unreadable: ") + e.what()});
      continue;
    }
    Params p{s.teff, s.logg, s.feh};
    if (kind == LibraryKind::kMiles) {
      const auto it = miles_params.find(name);
      p = it == miles_params.end() ? Params{NAN, NAN, NAN} : it->second;
    }
    if (const auto it = override_params.find(name); it != override_params.end()) p = it->second;
    const auto [teff, logg, feh] = p;
    if (!std::isfinite(teff) || !std::isfinite(logg) || !std::isfinite(feh)) {
      lib.skipped.push_back({name, "missing Teff, log g or [Fe/H]"});
      continue;
    }
    if (teff < sel.teff_min || teff > sel.teff_max || logg < sel.logg_min || logg > sel.logg_max) {
      lib.skipped.push_back({name, "outside the selection (Teff " + std::to_string(teff) +
                                       " K, log g " + std::to_string(logg) + ")"});
      continue;
    }
    lib.stars.push_back({name, teff, logg, feh, s.fwhm, std::move(s.spectrum)});
  }
  return lib;
}

}  // namespace csst
