#include "pipeline/memory_estimate.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "core/errors.h"
#include "core/grid.h"

namespace csst {

std::string FormatBytes(double b) {
  const char* unit[] = {"B", "kB", "MB", "GB", "TB", "PB"};
  int u = 0;
  while (b >= 1000 && u < 5) b /= 1000, ++u;
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.3g %s", b, unit[u]);
  return buf;
}

double PhysicalMemoryBytes() {
  const long pages = sysconf(_SC_PHYS_PAGES), size = sysconf(_SC_PAGE_SIZE);
  return pages > 0 && size > 0 ? static_cast<double>(pages) * static_cast<double>(size) : 0.0;
}

std::vector<MemoryEstimate> EstimateRunMemory(const Config& c) {
  const auto& io = c.simulation.instrument;
  const double detectors = 3.0 * io.detectors_per_band;
  const double wavelengths = OutputGrid().size();
  const double nx = io.detector_nx, ny = io.detector_ny;
  std::vector<MemoryEstimate> out;
  // flat fit: per (detector, wavelength) slice a covariance of m x m doubles, m = (order+1)(order+2)/2
  const bool kfold = c.flatfield.order_select == FlatOrderSelect::kKFold;
  const double top = std::max(c.flatfield.order, kfold ? c.flatfield.order_max : 0);
  const double m = (top + 1.0) * (top + 2.0) / 2.0;
  out.push_back({kfold ? "flatfield.order_max" : "flatfield.order",
                 "flat coefficients' covariances: detectors x 574 wavelengths x m^2 x 8 bytes, m = " +
                     std::to_string(static_cast<long>(m)),
                 detectors * wavelengths * m * m * 8.0});
  // reference cube of one detector: SCI, ERR (float) and DQ (int32) over the widest band's wavelengths
  const double b = c.assemble.cube_binning;
  const double widest = 0.35 * wavelengths;  // GI: 6200-10000 A is 33 % of the log grid
  out.push_back({"assemble.cube_binning",
                 "reference cube of one detector: ceil(nx/b) x ceil(ny/b) x ~200 wavelengths x 12 bytes",
                 std::ceil(nx / b) * std::ceil(ny / b) * widest * 12.0});
  const double ba = c.assemble.axe_binning;
  out.push_back({"assemble.axe_binning",
                 "aXe cube of one detector: ceil(nx/b) x ceil(ny/b) x (axe_degree+1) x 4 bytes, evaluated in double",
                 std::ceil(nx / ba) * std::ceil(ny / ba) * (c.assemble.axe_degree + 1.0) * 12.0});
  // Monte Carlo: a chunk of 16 realizations holds fitted value and sigma per detector, slice and point
  const double sp = c.validate.sample_points;
  out.push_back({"validate.sample_points",
                 "Monte Carlo chunk: sample_points^2 x 574 wavelengths x detectors x 16 realizations x 16 bytes",
                 sp * sp * wavelengths * detectors * 16.0 * 16.0});
  return out;
}

double StageMemoryPerStar(const Config& c, const std::string& stage) {
  const double out = OutputGrid().size(), fine = TruthGrid().size(), in = InputGrid().size();
  // simulate: the true SEDs (R = 200 and the fine truth grid); the spectra stream in blocks of stars.
  if (stage == "simulate") return (out + fine) * 8.0;
  if (stage != "validate") return 0.0;
  // validate holds for every star: its noiseless LAMOST spectrum as a Spectrum (wave, flux, err: 8 bytes, mask:
  // 4), its true SEDs (the R = 200 one twice), its noiseless observation in 3 bands (x, y, counts, sigma,
  // expected: 8 bytes, flag: 1); and per realization in flight (one per thread, at most a chunk of 16) the
  // network's inputs (flux, err: 4 bytes each) and predictions (mu, sigma: 4 bytes each).
  const long cores = sysconf(_SC_NPROCESSORS_ONLN);
  const double in_flight = std::min(16.0, static_cast<double>(c.threads > 0 ? c.threads : std::max(1L, cores)));
  return c.sample.lamost.n_pixels * 28.0 + fine * 8.0 + 2.0 * out * 8.0 + 3.0 * out * 41.0 +
         in_flight * (2.0 * in * 4.0 + 2.0 * out * 4.0);
}

void CheckStageMemory(const Config& c, const std::string& stage, long n_stars, double limit) {
  if (!(limit > 0)) limit = 0.5 * PhysicalMemoryBytes();
  const double bytes = StageMemoryPerStar(c, stage) * static_cast<double>(n_stars);
  if (!(limit > 0) || bytes <= limit) return;
  throw Error("stage " + stage + ": " + std::to_string(n_stars) + " stars would need about " + FormatBytes(bytes) +
              " (every star's spectra held at once: " + FormatBytes(StageMemoryPerStar(c, stage)) +
              " per star), more than half of this machine's memory (" + FormatBytes(limit) +
              "): run it on a larger machine or over MPI ranks of several machines, or with fewer stars");
}

void CheckRunMemory(const Config& c, double limit) {
  if (!(limit > 0)) limit = PhysicalMemoryBytes();
  if (!(limit > 0)) return;
  for (const auto& e : EstimateRunMemory(c)) {
    if (e.bytes <= limit) continue;
    auto it = c.locations.find(e.key);
    const std::string where = it == c.locations.end() ? "default" : it->second;
    throw ConfigError("config error: " + e.key + " would need about " + FormatBytes(e.bytes) + " (" + e.what +
                      "), more than this machine's " + FormatBytes(limit) + " of memory (" + where + ")");
  }
}

}  // namespace csst
