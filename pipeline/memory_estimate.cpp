#include "pipeline/memory_estimate.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "core/errors.h"
#include "core/grid.h"
#include "flatfield/cube_fit.h"
#include "instrument/instrument.h"
#include "io/catalogue.h"
#include "io/observations.h"
#include "validation/monte_carlo.h"

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
  // flat fit: per (detector, wavelength) slice a covariance of m x m doubles, m =
  // (order+1)(order+2)/2
  const bool kfold = c.flatfield.order_select == FlatOrderSelect::kKFold;
  const double top = std::max(c.flatfield.order, kfold ? c.flatfield.order_max : 0);
  const double m = (top + 1.0) * (top + 2.0) / 2.0;
  out.push_back(
      {kfold ? "flatfield.order_max" : "flatfield.order",
       "flat coefficients' covariances: detectors x 574 wavelengths x m^2 x 8 bytes, m = " +
           std::to_string(static_cast<long>(m)),
       detectors * wavelengths * m * m * 8.0});
  // reference cube of one detector: SCI, ERR (float) and DQ (int32) over the widest band's
  // wavelengths
  const double b = c.assemble.cube_binning;
  const double widest = 0.35 * wavelengths;  // GI: 6200-10000 A is 33 % of the log grid
  out.push_back(
      {"assemble.cube_binning",
       "reference cube of one detector: ceil(nx/b) x ceil(ny/b) x ~200 wavelengths x 12 bytes",
       std::ceil(nx / b) * std::ceil(ny / b) * widest * 12.0});
  const double ba = c.assemble.axe_binning;
  out.push_back({"assemble.axe_binning",
                 "aXe cube of one detector: ceil(nx/b) x ceil(ny/b) x (axe_degree+1) x 4 bytes, "
                 "evaluated in double",
                 std::ceil(nx / ba) * std::ceil(ny / ba) * (c.assemble.axe_degree + 1.0) * 12.0});
  // Monte Carlo: a chunk of 16 realizations holds fitted value and sigma per detector, slice and
  // point
  const double sp = c.validate.sample_points;
  out.push_back({"validate.sample_points",
                 "Monte Carlo chunk: sample_points^2 x 574 wavelengths x detectors x 16 "
                 "realizations x 16 bytes",
                 sp * sp * wavelengths * detectors * 16.0 * 16.0});
  return out;
}

double StageMemory(const Config& c, const std::string& stage, long n_stars) {
  const double n = static_cast<double>(std::max(0L, n_stars)), out = OutputGrid().size();
  // What every stage that streams over its stars still keeps of each: its record (with a
  // designation of up to 32 characters), redshift, window flux and row in the truth file, and its
  // placement on the detectors (a StarObservation without spectra).
  const double record = sizeof(StarRecord) + 32.0 + 3 * 8.0, placement = sizeof(StarObservation);
  // simulate: the records and placements; spectra and SEDs stream in blocks of stars.
  if (stage == "simulate") return n * (record + placement);
  if (stage != "validate") return 0.0;
  // validate: the records twice (the study's and the stage's), the fixed placements and realization
  // 0's (the report's map), the R = 200 true SEDs (8 bytes a pixel) and realization 0's predictions
  // (mu and sigma, 4 bytes each); and per realization in flight (RealizationsInFlight; a chunk of
  // 16 when batched on a GPU) its fit table with a vector's spare capacity. The spectra stream in
  // blocks; the expected observations are spilled to disk.
  const Instrument inst(c.simulation.instrument);
  const long cores = sysconf(_SC_NPROCESSORS_ONLN);
  const int threads = c.threads > 0 ? c.threads : static_cast<int>(std::max(1L, cores));
  const double in_flight =
      c.validate.batch == BatchRealizations::kOn
          ? 16.0
          : RealizationsInFlight(c.validate, static_cast<size_t>(n), threads, inst);
  return n * (2.0 * record + 2.0 * placement + out * 8.0 + 2.0 * out * 4.0 +
              in_flight * 1.5 * RatioTable::BytesPerStar(inst));
}

void CheckStageMemory(const Config& c, const std::string& stage, long n_stars, double limit) {
  if (!(limit > 0)) limit = 0.5 * PhysicalMemoryBytes();
  const double bytes = StageMemory(c, stage, n_stars);
  if (!(limit > 0) || bytes <= limit) return;
  throw Error(
      "stage " + stage + ": " + std::to_string(n_stars) + " stars would need about " +
      FormatBytes(bytes) + " (" + FormatBytes(bytes / static_cast<double>(n_stars)) +
      " per star that the stage keeps), more than half of this machine's memory (" +
      FormatBytes(limit) +
      "): run it on a larger machine or over MPI ranks of several machines, or with fewer stars");
}

void CheckRunMemory(const Config& c, double limit) {
  if (!(limit > 0)) limit = PhysicalMemoryBytes();
  if (!(limit > 0)) return;
  for (const auto& e : EstimateRunMemory(c)) {
    if (e.bytes <= limit) continue;
    auto it = c.locations.find(e.key);
    const std::string where = it == c.locations.end() ? "default" : it->second;
    throw ConfigError("config error: " + e.key + " would need about " + FormatBytes(e.bytes) +
                      " (" + e.what + "), more than this machine's " + FormatBytes(limit) +
                      " of memory (" + where + ")");
  }
}

}  // namespace csst
