#include "stages/observations_stage.h"

#include <spdlog/fmt/fmt.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <map>

#include "core/errors.h"
#include "core/files.h"
#include "core/grid.h"
#include "core/log.h"
#include "io/ingest.h"
#include "io/observations.h"

namespace csst {
namespace {

// Great-circle separation [arcsec] (haversine, accurate at small angles).
double SeparationArcsec(double ra1, double dec1, double ra2, double dec2) {
  const double d2r = M_PI / 180.0;
  const double sd = std::sin(0.5 * (dec2 - dec1) * d2r), sr = std::sin(0.5 * (ra2 - ra1) * d2r);
  const double h = sd * sd + std::cos(dec1 * d2r) * std::cos(dec2 * d2r) * sr * sr;
  return 2.0 * std::asin(std::min(1.0, std::sqrt(h))) / d2r * 3600.0;
}

std::string Arcsec(double v) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.2f", v);
  return buf;
}

}  // namespace

ObservationsStageResult RunObservationsStage(const ObservationsStageOptions& options,
                                             const StageRun& run) {
  const StageClock clock;
  const ObservationsOptions& o = options.observations;
  const InstrumentOptions& io = options.instrument;
  const std::string &stars_path = options.stars, &out = options.observations_out;
  if (!(o.match_radius > 0))
    throw ConfigError("config error: observations.match_radius must be > 0 arcsec");
  const Instrument inst(io);
  const int per = io.detectors_per_band;
  const auto prepared = ReadPreparedStars(stars_path, /*with_inputs=*/false);
  const auto rows = ReadExtractedSpectra(o.file, per);
  const auto& stars = prepared.stars;

  std::map<int64_t, size_t> by_obsid;
  for (size_t i = 0; i < stars.size(); ++i) by_obsid[stars[i].obsid] = i;
  // Stars with a position, sorted by Dec, for the cone search.
  std::vector<size_t> by_dec;
  for (size_t i = 0; i < stars.size(); ++i)
    if (std::isfinite(stars[i].ra) && std::isfinite(stars[i].dec)) by_dec.push_back(i);
  std::sort(by_dec.begin(), by_dec.end(),
            [&](size_t a, size_t b) { return stars[a].dec < stars[b].dec; });

  ObservationsStageResult res;
  res.rows = rows.size();
  res.stars = stars.size();
  std::vector<StarObservation> obs(stars.size());
  std::vector<std::array<long, 3>> row_of(stars.size(), {0, 0, 0});
  std::vector<ObservationReject> rejects;
  auto reject = [&](const ExtractedSpectrum& e, const std::string& why) {
    rejects.push_back({"row " + std::to_string(e.row), e.obsid, e.ra, e.dec, e.detname, why});
    ++res.rejected_rows;
  };
  const auto& g = OutputGrid();
  for (const auto& e : rows) {
    size_t star = 0;
    bool by_position = false;
    if (e.obsid >= 0) {
      auto it = by_obsid.find(e.obsid);
      if (it == by_obsid.end()) {
        reject(e, "obsid " + std::to_string(e.obsid) + " is not among the ingested stars (" +
                      stars_path + ")");
        continue;
      }
      star = it->second;
    } else {
      const double r_deg = o.match_radius / 3600.0;
      auto lo = std::lower_bound(by_dec.begin(), by_dec.end(), e.dec - r_deg,
                                 [&](size_t i, double d) { return stars[i].dec < d; });
      std::vector<std::pair<double, size_t>> near;
      for (auto it = lo; it != by_dec.end() && stars[*it].dec <= e.dec + r_deg; ++it) {
        const double sep = SeparationArcsec(e.ra, e.dec, stars[*it].ra, stars[*it].dec);
        if (sep <= o.match_radius) near.emplace_back(sep, *it);
      }
      if (near.empty()) {
        reject(e, "no ingested star within observations.match_radius = " + Arcsec(o.match_radius) +
                      " arcsec");
        continue;
      }
      if (near.size() > 1) {
        std::sort(near.begin(), near.end());
        reject(e, std::to_string(near.size()) + " ingested stars within " + Arcsec(o.match_radius) +
                      " arcsec (obsid " + std::to_string(stars[near[0].second].obsid) + " at " +
                      Arcsec(near[0].first) + ", obsid " +
                      std::to_string(stars[near[1].second].obsid) + " at " + Arcsec(near[1].first) +
                      "): ambiguous");
        continue;
      }
      star = near[0].second;
      by_position = true;
    }
    const BandOptics& band = inst.band(e.band);
    if (row_of[star][e.band] != 0) {
      reject(e, "obsid " + std::to_string(stars[star].obsid) + " already has a " + band.name +
                    " spectrum (row " + std::to_string(row_of[star][e.band]) + ")");
      continue;
    }
    const auto transmits = band.TransmittingRange();
    if (const auto why =
            UnphysicalReason(e, io.detector_nx, io.detector_ny, transmits[0], transmits[1]);
        !why.empty()) {
      reject(e, why);
      continue;
    }
    BandObservation bo = ToOutputGrid(e, per);
    size_t usable = 0;
    for (int k = 0; k < g.size(); ++k) {
      const double lam = g.Centre(k);
      if (bo.flag[k] == 0 && lam >= band.lo && lam <= band.hi) ++usable;
    }
    if (usable == 0) {
      reject(e, "no usable pixel inside " + band.name + " (" +
                    std::to_string(static_cast<int>(band.lo)) + "-" +
                    std::to_string(static_cast<int>(band.hi)) +
                    " A): masked, off the detector or outside its wavelengths");
      continue;
    }
    row_of[star][e.band] = e.row;
    obs[star].band[e.band] = std::move(bo);
    ++(by_position ? res.matched_by_position : res.matched_by_obsid);
  }
  std::vector<StarObservation> matched;
  for (size_t i = 0; i < stars.size(); ++i) {
    obs[i].obsid = stars[i].obsid;
    obs[i].ra = stars[i].ra;
    obs[i].dec = stars[i].dec;
    if (obs[i].band[0].observed() || obs[i].band[1].observed() || obs[i].band[2].observed()) {
      matched.push_back(std::move(obs[i]));
      ++res.stars_observed;
    } else {
      rejects.push_back(
          {"star", stars[i].obsid, stars[i].ra, stars[i].dec, "", "no spectrum in " + o.file});
    }
  }
  if (matched.empty()) {
    std::string why = rejects.empty() ? std::string("it has no rows")
                                      : "row reasons, e.g.: " + rejects.front().reason;
    throw Error(o.file + ": none of its " + std::to_string(rows.size()) +
                " rows matched a star of " + stars_path + " (" + why + ")");
  }
  Provenance p;
  p.config_hash = run.config_hash;
  p.seed = run.seed;
  p.descrip = "CSST extracted slitless spectra from " + o.file + ", matched to the ingested stars";
  p.history.push_back("csst-flatcube stage observations: " + std::to_string(res.matched_by_obsid) +
                      " rows by obsid, " + std::to_string(res.matched_by_position) +
                      " by position within " + Arcsec(o.match_radius) + " arcsec, " +
                      std::to_string(res.rejected_rows) + " rejected");
  WriteObservations(out, matched, ObservationsLayout{per, StarSetId(prepared), /*truth=*/false}, p,
                    &rejects);
  res.wall_seconds = clock.Seconds();
  Logger("observations")
      ->info(
          "{}: {} rows, {} matched by obsid, {} by position (<= {} arcsec), {} rejected; {} of {} "
          "stars observed",
          o.file, res.rows, res.matched_by_obsid, res.matched_by_position, o.match_radius,
          res.rejected_rows, res.stars_observed, res.stars);
  if (res.rejected_rows > 0 || res.stars_observed < res.stars) {
    Logger("observations")
        ->warn("{} rows and {} stars rejected: their reasons are in the REJECTS table of {}",
               res.rejected_rows, res.stars - res.stars_observed, ProductNameOf(out));
  }
  return res;
}

std::string ObservationsStageResult::BriefReport() const {
  return fmt::format(
      "{} rows: {} matched by obsid, {} by position, {} rejected; {} of {} stars observed", rows,
      matched_by_obsid, matched_by_position, rejected_rows, stars_observed, stars);
}

}  // namespace csst
