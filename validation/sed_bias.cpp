#include "validation/sed_bias.h"

#include <cmath>
#include <cstdio>
#include <limits>
#include <nlohmann/json.hpp>

#include "core/bands.h"
#include "core/errors.h"
#include "core/grid.h"
#include "core/spectrum.h"

namespace csst {

std::vector<SedBiasRow> SedBiasTable(const SedBiasInput& in,
                                     const std::array<BandOptics, kNumBands>& bands) {
  const auto& og = OutputGrid();
  const size_t no = static_cast<size_t>(og.size());
  const size_t n = in.teff.size();
  if (!in.mu || !in.sed || in.mu->size() != n * no || in.sed->size() != n || in.snr.size() != n) {
    throw Error("SedBiasTable: predicted SEDs, true SEDs, Teff and SNR must describe the same " +
                std::to_string(n) + " stars on the 574-pixel output grid");
  }
  // per star and band: median of mu / sed - 1 over the band's pixels with a positive true SED
  std::vector<std::array<double, 3>> star(n);
  for (size_t i = 0; i < n; ++i) {
    const auto& s = (*in.sed)[i];
    if (s.size() != no)
      throw Error("SedBiasTable: true SED of star " + std::to_string(i) +
                  " is not on the output grid");
    for (int b = 0; b < 3; ++b) {
      std::vector<double> r;
      for (size_t k = 0; k < no; ++k) {
        const double lam = og.Centre(static_cast<int>(k));
        if (lam < bands[b].lo || lam > bands[b].hi || !(s[k] > 0)) continue;
        r.push_back((*in.mu)[i * no + k] / s[k] - 1.0);
      }
      star[i][b] = Median(r);
    }
  }
  std::vector<SedBiasRow> rows = {
      {"all", 0, 1e9, 0},
      {"Teff 5000-5750 K", 5000, 5750, 0},
      {"Teff 5750-6500 K", 5750, 6500, 0},
      {"Teff 6500-7500 K", 6500, 7500, 0},
      {"Teff 7500-10000 K", 7500, 10000.5, 0},
      {"SNR >= 80", 0, 1e9, 80},
  };
  for (auto& row : rows) {
    std::array<double, 3> sum = {0, 0, 0};
    for (size_t i = 0; i < n; ++i) {
      if (in.teff[i] < row.teff_lo || in.teff[i] >= row.teff_hi || in.snr[i] < row.snr_min)
        continue;
      ++row.n;
      for (int b = 0; b < 3; ++b) sum[b] += star[i][b];
    }
    for (int b = 0; b < 3; ++b)
      row.bias[b] = row.n > 0 ? sum[b] / static_cast<double>(row.n)
                              : std::numeric_limits<double>::quiet_NaN();
  }
  return rows;
}

std::string SedBiasText(const std::vector<SedBiasRow>& rows) {
  std::string t = "Mean over stars of the per-star median of mu/SED - 1 per band\n";
  char line[160];
  std::snprintf(line, sizeof(line), "%-20s %6s %10s %10s %10s\n", "stars", "n", kBands[0].name,
                kBands[1].name, kBands[2].name);
  t += line;
  for (const auto& r : rows) {
    std::snprintf(line, sizeof(line), "%-20s %6ld %+10.4f %+10.5f %+10.5f\n", r.label.c_str(), r.n,
                  r.bias[0], r.bias[1], r.bias[2]);
    t += line;
  }
  return t;
}

std::string SedBiasJson(const std::vector<SedBiasRow>& rows) {
  nlohmann::json a = nlohmann::json::array();
  for (const auto& r : rows) {
    nlohmann::json o = {{"label", r.label},
                        {"teff_lo", r.teff_lo},
                        {"teff_hi", r.teff_hi},
                        {"snr_min", r.snr_min},
                        {"n", r.n}};
    for (int b = 0; b < kNumBands; ++b) {
      const char* name = kBands[static_cast<size_t>(b)].name;
      if (std::isfinite(r.bias[b]))
        o[name] = r.bias[b];
      else
        o[name] = nullptr;
    }
    a.push_back(o);
  }
  return a.dump();
}

}  // namespace csst
