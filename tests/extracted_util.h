// Writes EXTRACTED tables (io/observations.h) row by row as an outside pipeline would, with
// hooks to break them (drop a column, change a unit) for the bad-input tests.
#pragma once

#include <set>
#include <string>
#include <vector>

#include "io/fits.h"
#include "io/observations.h"

namespace csst::test {

struct ExtractedFileOptions {
  std::set<std::string> drop;  // columns left out
  std::string wavelength_unit = "Angstrom";
  bool with_obsid = true, with_position = true;
};

inline void WriteExtracted(const std::string& path, const std::vector<ExtractedSpectrum>& rows,
                           const ExtractedFileOptions& o = {}) {
  const long n = rows.empty() ? 2 : static_cast<long>(rows.front().wave.size());
  std::vector<int64_t> id;
  std::vector<std::string> det;
  std::vector<double> ra, dec, exptime, x0, y0, wave, x, y, counts, error;
  std::vector<uint8_t> mask;
  for (const auto& e : rows) {
    id.push_back(e.obsid);
    ra.push_back(e.ra);
    dec.push_back(e.dec);
    det.push_back(e.detname);
    exptime.push_back(e.exptime);
    x0.push_back(e.x0);
    y0.push_back(e.y0);
    wave.insert(wave.end(), e.wave.begin(), e.wave.end());
    x.insert(x.end(), e.x.begin(), e.x.end());
    y.insert(y.end(), e.y.begin(), e.y.end());
    counts.insert(counts.end(), e.counts.begin(), e.counts.end());
    error.insert(error.end(), e.error.begin(), e.error.end());
    mask.insert(mask.end(), e.mask.begin(), e.mask.end());
  }
  std::vector<FitsColumn> cols;
  auto add = [&](FitsColumn c) {
    if (!o.drop.count(c.name)) cols.push_back(std::move(c));
  };
  if (o.with_obsid) add({"OBSID", "", id});
  if (o.with_position) {
    add({"RA", "deg", ra});
    add({"DEC", "deg", dec});
  }
  add({"DETNAME", "", det, 8});
  add({"EXPTIME", "s", exptime});
  add({"X0", "pixel", x0});
  add({"Y0", "pixel", y0});
  add({"WAVELENGTH", o.wavelength_unit, wave, n});
  add({"X", "pixel", x, n});
  add({"Y", "pixel", y, n});
  add({"COUNTS", "electron", counts, n});
  add({"ERROR", "electron", error, n});
  add({"MASK", "", mask, n});
  FitsWriter w(path);
  w.WriteEmptyPrimary();
  w.WriteTable("EXTRACTED", cols);
  w.Close();
}

}  // namespace csst::test
