#include "io/catalogue.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <map>
#include <sstream>

#include "core/errors.h"
#include "core/files.h"

namespace csst {

void WriteCatalogueFits(const std::string& path, const std::vector<StarRecord>& stars,
                        const Provenance& provenance) {
  std::vector<int64_t> obsid;
  std::vector<std::string> des;
  std::vector<double> ra, dec, teff, logg, feh, alpha, g, snrg, snrr, rv, ebv;
  for (const auto& s : stars) {
    obsid.push_back(s.obsid);
    des.push_back(s.designation);
    ra.push_back(s.ra);
    dec.push_back(s.dec);
    teff.push_back(s.teff);
    logg.push_back(s.logg);
    feh.push_back(s.feh);
    alpha.push_back(s.alpha);
    g.push_back(s.gmag);
    snrg.push_back(s.snr_g);
    snrr.push_back(s.snr_r);
    rv.push_back(s.rv);
    ebv.push_back(s.ebv);
  }
  const CatalogueColumns c;
  FitsWriter w(path);
  w.WritePrimary(provenance);
  w.WriteTable("CATALOGUE", {{c.obsid, "", obsid},
                             {c.designation, "", des},
                             {c.ra, "deg", ra},
                             {c.dec, "deg", dec},
                             {c.teff, "K", teff},
                             {c.logg, "dex", logg},
                             {c.feh, "dex", feh},
                             {c.alpha, "dex", alpha},
                             {c.gmag, "mag", g},
                             {c.snr_g, "", snrg},
                             {c.snr_r, "", snrr},
                             {c.rv, "km/s", rv},
                             {c.ebv, "mag", ebv}});
  w.Standard(provenance, "");
  w.Close();
}

namespace {

bool EndsWithNoCase(const std::string& s, const std::string& suffix) {
  if (s.size() < suffix.size()) return false;
  for (size_t i = 0; i < suffix.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(s[s.size() - suffix.size() + i])) != suffix[i])
      return false;
  }
  return true;
}

std::vector<StarRecord> FromColumns(
    size_t n, const std::function<bool(const std::string&)>& has,
    const std::function<std::vector<double>(const std::string&)>& num,
    const std::function<std::vector<std::string>(const std::string&)>& str,
    const CatalogueColumns& c, const std::function<std::string(size_t)>& where) {
  if (n == 0) throw IoError("has no rows (only a header): no stars to ingest");
  std::vector<StarRecord> out(n);
  auto fill = [&](const std::string& col, bool required, auto setter) {
    if (!has(col)) {
      if (required) throw IoError("missing column " + col);
      return;
    }
    const auto v = num(col);
    for (size_t i = 0; i < n; ++i) setter(out[i], v[i]);
  };
  if (!has(c.obsid)) throw IoError("missing column " + c.obsid);
  {
    // An obsid is an integer: a fraction or a value past 2^53 (where doubles stop being exact)
    // would silently become another star's id.
    const auto v = num(c.obsid);
    std::map<int64_t, size_t> first_row;
    for (size_t i = 0; i < n; ++i) {
      if (!std::isfinite(v[i]) || v[i] != std::floor(v[i]) || std::abs(v[i]) > 9007199254740992.0) {
        char buf[64];
        std::snprintf(buf, sizeof(buf), "%.17g", v[i]);
        throw IoError(where(i) + " column " + c.obsid + ": " + buf +
                      " is not an integer obsid (|obsid| <= 2^53)");
      }
      out[i].obsid = static_cast<int64_t>(v[i]);
      const auto [it, fresh] = first_row.emplace(out[i].obsid, i);
      if (!fresh) {
        throw IoError(where(it->second) + " and " + where(i) + " have the same " + c.obsid + " " +
                      std::to_string(out[i].obsid) + " (each star once)");
      }
    }
  }
  // Absent columns: NaN ("not given"); the step that needs one says so (pipeline config checks
  // the columns before any stage runs, ingest rejects rows whose value is missing).
  constexpr double kNan = std::numeric_limits<double>::quiet_NaN();
  for (auto& r : out) r.ra = r.dec = r.teff = r.logg = r.feh = r.gmag = r.snr_g = r.snr_r = kNan;
  fill(c.ra, false, [](StarRecord& s, double v) { s.ra = v; });
  fill(c.dec, false, [](StarRecord& s, double v) { s.dec = v; });
  fill(c.teff, false, [](StarRecord& s, double v) { s.teff = v; });
  fill(c.logg, false, [](StarRecord& s, double v) { s.logg = v; });
  fill(c.feh, false, [](StarRecord& s, double v) { s.feh = v; });
  fill(c.gmag, false, [](StarRecord& s, double v) { s.gmag = v; });
  fill(c.snr_g, false, [](StarRecord& s, double v) { s.snr_g = v; });
  fill(c.snr_r, false, [](StarRecord& s, double v) { s.snr_r = v; });
  fill(c.alpha, false, [](StarRecord& s, double v) { s.alpha = v; });
  fill(c.rv, false, [](StarRecord& s, double v) { s.rv = v; });
  fill(c.ebv, false, [](StarRecord& s, double v) { s.ebv = v; });
  if (has(c.designation)) {
    const auto d = str(c.designation);
    for (size_t i = 0; i < n; ++i) out[i].designation = PrintableAscii(d[i]);
  }
  return out;
}

}  // namespace

bool SameColumnName(const std::string& a, const std::string& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(a[i])) !=
        std::tolower(static_cast<unsigned char>(b[i])))
      return false;
  }
  return true;
}

bool HasColumnNamed(const std::vector<std::string>& names, const std::string& column) {
  return std::any_of(names.begin(), names.end(),
                     [&](const std::string& n) { return SameColumnName(n, column); });
}

std::vector<std::string> SplitCsv(const std::string& line) {
  std::vector<std::string> f;
  std::string cur;
  bool quoted = false;
  for (size_t i = 0; i < line.size(); ++i) {
    const char ch = line[i];
    if (ch == '"') {
      if (quoted && i + 1 < line.size() &&
          line[i + 1] == '"') {  // RFC 4180: "" inside quotes is one "
        cur += '"';
        ++i;
      } else {
        quoted = !quoted;
      }
    } else if (ch == ',' && !quoted) {
      f.push_back(cur);
      cur.clear();
    } else if (ch != '\r') {
      cur += ch;
    }
  }
  f.push_back(cur);
  return f;
}

std::vector<std::string> CsvHeader(std::string line) {
  // A UTF-8 byte-order mark (spreadsheet exports) belongs to no column name.
  if (line.size() >= 3 && static_cast<unsigned char>(line[0]) == 0xEF &&
      static_cast<unsigned char>(line[1]) == 0xBB && static_cast<unsigned char>(line[2]) == 0xBF) {
    line.erase(0, 3);
  }
  auto h = SplitCsv(line);
  for (size_t i = 0; i < h.size(); ++i) {
    for (size_t j = 0; j < i; ++j) {
      if (SameColumnName(h[j], h[i])) {
        throw IoError("header line: column '" + h[i] + "' appears twice (fields " +
                      std::to_string(j + 1) + " and " + std::to_string(i + 1) + ")");
      }
    }
  }
  return h;
}

std::string PrintableAscii(const std::string& s) {
  std::string out;
  for (unsigned char ch : s) {
    if (ch >= 0x20 && ch < 0x7f) {
      out += static_cast<char>(ch);
    } else {
      char buf[8];
      std::snprintf(buf, sizeof(buf), "\\x%02X", ch);
      out += buf;
    }
  }
  return out;
}

std::string CatalogueRowProblem(const StarRecord& s, const CatalogueColumns& c) {
  const std::pair<const std::string*, double> values[] = {
      {&c.ra, s.ra},       {&c.dec, s.dec},     {&c.teff, s.teff}, {&c.logg, s.logg},
      {&c.feh, s.feh},     {&c.alpha, s.alpha}, {&c.gmag, s.gmag}, {&c.snr_g, s.snr_g},
      {&c.snr_r, s.snr_r}, {&c.rv, s.rv},       {&c.ebv, s.ebv}};
  char buf[160];
  for (const auto& [name, v] : values) {
    if (std::isinf(v)) {  // NaN is a missing value (a FITS null); the step that needs it says so
      std::snprintf(buf, sizeof(buf), "invalid: %s = %g is not a finite number", name->c_str(), v);
      return buf;
    }
  }
  auto range = [&](const std::string& name, double v, double lo, double hi, const char* unit) {
    if (std::isnan(v) || (v >= lo && v <= hi)) return false;
    std::snprintf(buf, sizeof(buf), "invalid: %s = %g outside %g..%g%s", name.c_str(), v, lo, hi,
                  unit);
    return true;
  };
  if (range(c.ra, s.ra, 0, 360, " deg") || range(c.dec, s.dec, -90, 90, " deg") ||
      range(c.teff, s.teff, 1000, 100000, " K") || range(c.logg, s.logg, -2, 10, " dex") ||
      range(c.feh, s.feh, -6, 2, " dex") || range(c.gmag, s.gmag, -5, 35, " mag") ||
      range(c.snr_g, s.snr_g, 0, 1e6, "") || range(c.snr_r, s.snr_r, 0, 1e6, "") ||
      range(c.rv, s.rv, -5000, 5000, " km/s") || range(c.ebv, s.ebv, 0, 20, " mag")) {
    return buf;
  }
  return "";
}

double WindowFluxFromG(double g) { return 3.63e-9 * std::pow(10.0, -0.4 * g); }

void WriteCatalogueCsv(const std::string& path, const std::vector<StarRecord>& stars) {
  const CatalogueColumns c;
  std::string csv = c.obsid + "," + c.designation + "," + c.ra + "," + c.dec + "," + c.teff + "," +
                    c.logg + "," + c.feh + "," + c.alpha + "," + c.gmag + "," + c.snr_g + "," +
                    c.snr_r + "," + c.rv + "," + c.ebv + "\n";
  char buf[512];
  for (const auto& s : stars) {
    std::snprintf(buf, sizeof(buf),
                  "%lld,\"%s\",%.10g,%.10g,%.10g,%.10g,%.10g,%.10g,%.10g,%.10g,%.10g,%.10g,%.10g\n",
                  static_cast<long long>(s.obsid), PrintableAscii(s.designation).c_str(), s.ra,
                  s.dec, s.teff, s.logg, s.feh, s.alpha, s.gmag, s.snr_g, s.snr_r, s.rv, s.ebv);
    csv += buf;
  }
  WriteTextAtomically(path, csv);
}

CsvTable ReadCsvTable(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw IoError("cannot open");
  std::string line;
  if (!std::getline(in, line)) throw IoError("empty file, expected a header line");
  CsvTable t;
  t.header = CsvHeader(line);
  long row = 1;
  while (std::getline(in, line)) {
    ++row;
    if (line.empty() || line == "\r") continue;
    auto f = SplitCsv(line);
    if (f.size() != t.header.size()) {
      throw IoError("line " + std::to_string(row) + " has " + std::to_string(f.size()) +
                    " fields, header has " + std::to_string(t.header.size()));
    }
    t.rows.push_back(std::move(f));
    t.line.push_back(row);
  }
  return t;
}

std::vector<std::string> CatalogueColumnNames(const std::string& path) {
  std::vector<std::string> names;
  if (EndsWithNoCase(path, ".csv")) {
    std::ifstream in(path);
    std::string line;
    if (!in || !std::getline(in, line)) throw IoError(path + ": cannot read a header line");
    try {
      return CsvHeader(line);
    } catch (const IoError& e) {
      throw IoError(path + ": " + e.what());
    }
  }
  FitsReader r(path);
  if (r.NumHdus() < 2) throw IoError(path + ": no table HDU");
  r.MoveTo(2);
  const long n = r.KeyLong("TFIELDS");
  for (long i = 1; i <= n; ++i) names.push_back(r.KeyString("TTYPE" + std::to_string(i)));
  return names;
}

std::vector<StarRecord> ReadCatalogue(const std::string& path, const CatalogueColumns& cols) {
  const bool csv = EndsWithNoCase(path, ".csv");
  try {
    std::error_code ec;
    if (!std::filesystem::is_regular_file(path, ec)) {
      throw IoError(std::filesystem::is_directory(path, ec)
                        ? "is a directory, expected a FITS table or a .csv file"
                        : "no such file");
    }
    if (!csv) {
      FitsReader r(path);
      if (r.NumHdus() < 2) throw IoError("no table HDU");
      r.MoveTo(2);
      if (r.IsImage()) throw IoError("HDU 2 is an image, expected a binary table");
      const size_t n = static_cast<size_t>(r.NumRows());
      return FromColumns(
          n, [&](const std::string& c) { return r.HasColumn(c); },
          [&](const std::string& c) { return r.ReadColumn(c); },
          [&](const std::string& c) { return r.ReadStringColumn(c); }, cols,
          [](size_t i) { return "row " + std::to_string(i + 1); });
    }
    const auto table = ReadCsvTable(path);
    const auto& header = table.header;
    const auto& rows = table.rows;
    auto index = [&](const std::string& c) -> long {
      for (size_t i = 0; i < header.size(); ++i)
        if (SameColumnName(header[i], c)) return static_cast<long>(i);
      return -1;
    };
    return FromColumns(
        rows.size(), [&](const std::string& c) { return index(c) >= 0; },
        [&](const std::string& c) {
          const long k = index(c);
          std::vector<double> v;
          for (size_t i = 0; i < rows.size(); ++i) {
            const std::string& cell = rows[i][k];
            double x = 0;  // an empty cell: not given (NaN)
            if (!ParseNumberText(cell, &x)) {
              throw IoError("line " + std::to_string(table.line[i]) + " column " + c + ": '" +
                            cell + "' is not a number");
            }
            v.push_back(x);
          }
          return v;
        },
        [&](const std::string& c) {
          const long k = index(c);
          std::vector<std::string> v;
          for (const auto& r : rows) v.push_back(r[k]);
          return v;
        },
        cols, [&](size_t i) { return "line " + std::to_string(table.line[i]); });
  } catch (const FitsError&) {
    throw;
  } catch (const IoError& e) {
    throw IoError(path + ": " + e.what());
  }
}

}  // namespace csst
