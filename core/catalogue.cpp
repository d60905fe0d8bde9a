#include "core/catalogue.h"

#include <fstream>
#include <functional>
#include <sstream>

#include "core/errors.h"

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
  w.WriteEmptyPrimary();
  w.Standard(provenance, "");
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

std::vector<StarRecord> FromColumns(
    size_t n, const std::function<bool(const std::string&)>& has,
    const std::function<std::vector<double>(const std::string&)>& num,
    const std::function<std::vector<std::string>(const std::string&)>& str,
    const CatalogueColumns& c) {
  std::vector<StarRecord> out(n);
  auto fill = [&](const std::string& col, bool required, auto setter) {
    if (!has(col)) {
      if (required) throw IoError("missing column " + col);
      return;
    }
    const auto v = num(col);
    for (size_t i = 0; i < n; ++i) setter(out[i], v[i]);
  };
  fill(c.obsid, true, [](StarRecord& s, double v) { s.obsid = static_cast<int64_t>(v); });
  fill(c.ra, true, [](StarRecord& s, double v) { s.ra = v; });
  fill(c.dec, true, [](StarRecord& s, double v) { s.dec = v; });
  fill(c.teff, true, [](StarRecord& s, double v) { s.teff = v; });
  fill(c.logg, true, [](StarRecord& s, double v) { s.logg = v; });
  fill(c.feh, true, [](StarRecord& s, double v) { s.feh = v; });
  fill(c.gmag, true, [](StarRecord& s, double v) { s.gmag = v; });
  fill(c.snr_g, true, [](StarRecord& s, double v) { s.snr_g = v; });
  fill(c.snr_r, true, [](StarRecord& s, double v) { s.snr_r = v; });
  fill(c.alpha, false, [](StarRecord& s, double v) { s.alpha = v; });
  fill(c.rv, false, [](StarRecord& s, double v) { s.rv = v; });
  fill(c.ebv, false, [](StarRecord& s, double v) { s.ebv = v; });
  if (has(c.designation)) {
    const auto d = str(c.designation);
    for (size_t i = 0; i < n; ++i) out[i].designation = d[i];
  }
  return out;
}


}  // namespace

std::vector<std::string> SplitCsv(const std::string& line) {
  std::vector<std::string> f;
  std::string cur;
  bool quoted = false;
  for (char ch : line) {
    if (ch == '"') quoted = !quoted;
    else if (ch == ',' && !quoted) {
      f.push_back(cur);
      cur.clear();
    } else if (ch != '\r') cur += ch;
  }
  f.push_back(cur);
  return f;
}

std::vector<StarRecord> ReadCatalogue(const std::string& path, const CatalogueColumns& cols) {
  const bool csv = path.size() > 4 && path.substr(path.size() - 4) == ".csv";
  try {
    if (!csv) {
      FitsReader r(path);
      if (r.NumHdus() < 2) throw IoError("no table HDU");
      r.MoveTo(2);
      if (r.IsImage()) throw IoError("HDU 2 is an image, expected a binary table");
      const size_t n = static_cast<size_t>(r.NumRows());
      return FromColumns(
          n, [&](const std::string& c) { return r.HasColumn(c); },
          [&](const std::string& c) { return r.ReadColumn(c); },
          [&](const std::string& c) { return r.ReadStringColumn(c); }, cols);
    }
    std::ifstream in(path);
    if (!in) throw IoError("cannot open");
    std::string line;
    if (!std::getline(in, line)) throw IoError("empty file, expected a header line");
    const auto header = SplitCsv(line);
    std::vector<std::vector<std::string>> rows;
    long row = 1;
    while (std::getline(in, line)) {
      ++row;
      if (line.empty()) continue;
      auto f = SplitCsv(line);
      if (f.size() != header.size()) {
        throw IoError("row " + std::to_string(row) + " has " + std::to_string(f.size()) +
                      " fields, header has " + std::to_string(header.size()));
      }
      rows.push_back(std::move(f));
    }
    auto index = [&](const std::string& c) -> long {
      for (size_t i = 0; i < header.size(); ++i)
        if (header[i] == c) return static_cast<long>(i);
      return -1;
    };
    return FromColumns(
        rows.size(), [&](const std::string& c) { return index(c) >= 0; },
        [&](const std::string& c) {
          const long k = index(c);
          std::vector<double> v;
          for (size_t i = 0; i < rows.size(); ++i) {
            const std::string& cell = rows[i][k];
            size_t used = 0;
            double x = 0;
            try {
              x = std::stod(cell, &used);
            } catch (...) {
              used = 0;
            }
            if (used == 0 || used != cell.size()) {
              throw IoError("row " + std::to_string(i + 2) + " column " + c + ": '" + cell +
                            "' is not a number");
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
        cols);
  } catch (const FitsError&) {
    throw;
  } catch (const IoError& e) {
    throw IoError(path + ": " + e.what());
  }
}

}  // namespace csst
