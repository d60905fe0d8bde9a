#include "stages/observations_stage.h"

#include <spdlog/fmt/fmt.h>
#include <tbb/parallel_for.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <map>
#include <memory>

#include "core/errors.h"
#include "core/files.h"
#include "core/grid.h"
#include "core/log.h"
#include "core/mpi_world.h"
#include "core/progress.h"
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

constexpr int kObservationsTag = 9;  // MPI tag of a block of matched rows (core/mpi_world.h)

// One row of the extracted spectra as a rank makes it, the message a worker sends rank 0.
struct RowVerdict {
  long row = 0;  // 1-based row in the file
  int64_t obsid = -1;
  double ra = 0, dec = 0;
  std::string detname;
  int band = 0;
  long star = -1;  // its star (index into stars.fits), -1: none (match_reason says why)
  bool by_position = false;
  std::string match_reason;
  std::string data_reason;  // why its data cannot be used ("" = it can: bo holds them)
  BandObservation bo;
};
void PutVerdict(ByteWriter& w, const RowVerdict& v) {
  w.Put(v.row);
  w.Put(v.obsid);
  w.Put(v.ra);
  w.Put(v.dec);
  w.PutString(v.detname);
  w.Put(v.band);
  w.Put(v.star);
  w.Put<uint8_t>(v.by_position ? 1 : 0);
  w.PutString(v.match_reason);
  w.PutString(v.data_reason);
  PutBandObservation(w, v.bo);
}
RowVerdict GetVerdict(ByteReader& r) {
  RowVerdict v;
  v.row = r.Get<long>();
  v.obsid = r.Get<int64_t>();
  v.ra = r.Get<double>();
  v.dec = r.Get<double>();
  v.detname = r.GetString();
  v.band = r.Get<int>();
  v.star = r.Get<long>();
  v.by_position = r.Get<uint8_t>() != 0;
  v.match_reason = r.GetString();
  v.data_reason = r.GetString();
  v.bo = GetBandObservation(r);
  return v;
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
  const auto& stars = prepared.stars;

  std::map<int64_t, size_t> by_obsid;
  for (size_t i = 0; i < stars.size(); ++i) by_obsid[stars[i].obsid] = i;
  // Stars with a position, sorted by Dec, for the cone search.
  std::vector<size_t> by_dec;
  for (size_t i = 0; i < stars.size(); ++i)
    if (std::isfinite(stars[i].ra) && std::isfinite(stars[i].dec)) by_dec.push_back(i);
  std::sort(by_dec.begin(), by_dec.end(),
            [&](size_t a, size_t b) { return stars[a].dec < stars[b].dec; });
  const auto& g = OutputGrid();
  // What a row is, on its own: its star (or why none), and its spectrum on the output grid (or
  // why not). Whether its star already has a spectrum in its band needs the rows before it.
  auto verdict_of = [&](const ExtractedSpectrum& e) {
    RowVerdict v;
    v.row = e.row;
    v.obsid = e.obsid;
    v.ra = e.ra;
    v.dec = e.dec;
    v.detname = e.detname;
    v.band = e.band;
    if (e.obsid >= 0) {
      auto it = by_obsid.find(e.obsid);
      if (it == by_obsid.end()) {
        v.match_reason = "obsid " + std::to_string(e.obsid) + " is not among the ingested stars (" +
                         stars_path + ")";
        return v;
      }
      v.star = static_cast<long>(it->second);
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
        v.match_reason =
            "no ingested star within observations.match_radius = " + Arcsec(o.match_radius) +
            " arcsec";
        return v;
      }
      if (near.size() > 1) {
        std::sort(near.begin(), near.end());
        v.match_reason =
            std::to_string(near.size()) + " ingested stars within " + Arcsec(o.match_radius) +
            " arcsec (obsid " + std::to_string(stars[near[0].second].obsid) + " at " +
            Arcsec(near[0].first) + ", obsid " + std::to_string(stars[near[1].second].obsid) +
            " at " + Arcsec(near[1].first) + "): ambiguous";
        return v;
      }
      v.star = static_cast<long>(near[0].second);
      v.by_position = true;
    }
    const BandOptics& band = inst.band(e.band);
    const auto transmits = band.TransmittingRange();
    v.data_reason = UnphysicalReason(e, io.detector_nx, io.detector_ny, transmits[0], transmits[1]);
    if (!v.data_reason.empty()) return v;
    v.bo = ToOutputGrid(e, per);
    size_t usable = 0;
    for (int k = 0; k < g.size(); ++k) {
      const double lam = g.Centre(k);
      if (v.bo.flag[k] == 0 && lam >= band.lo && lam <= band.hi) ++usable;
    }
    if (usable == 0) {
      v.data_reason = "no usable pixel inside " + band.name + " (" +
                      std::to_string(static_cast<int>(band.lo)) + "-" +
                      std::to_string(static_cast<int>(band.hi)) +
                      " A): masked, off the detector or outside its wavelengths";
      v.bo = BandObservation{};
    }
    return v;
  };

  ObservationsStageResult res;
  res.stars = stars.size();
  std::vector<StarObservation> obs(stars.size());
  std::vector<std::array<long, 3>> row_of(stars.size(), {0, 0, 0});
  std::vector<ObservationReject> rejects;
  auto reject = [&](const RowVerdict& v, const std::string& why) {
    rejects.push_back({"row " + std::to_string(v.row), v.obsid, v.ra, v.dec, v.detname, why});
    ++res.rejected_rows;
  };
  // Blocks of star_block rows of the file: block b is read and matched by rank b mod K, and rank 0
  // takes every row in file order (a second spectrum of a star in a band is the later row), so
  // observations.fits is the same for any K.
  const long kBlock = std::max(1, options.star_block);
  res.rows = static_cast<size_t>(ReadExtractedSpectra(o.file, per, 0, 0).table_rows);
  const bool writes = MpiWorld::Rank() == 0;
  std::unique_ptr<Progress> progress;
  if (writes) progress = std::make_unique<Progress>("observations", static_cast<long>(res.rows));
  ShareBlocks((res.rows + static_cast<size_t>(kBlock) - 1) / static_cast<size_t>(kBlock),
              kObservationsTag,
              [&](size_t b) {
                const auto rows =
                    ReadExtractedSpectra(o.file, per, static_cast<long>(b) * kBlock, kBlock).rows;
                std::vector<RowVerdict> block(rows.size());
                tbb::parallel_for(size_t{0}, rows.size(),
                                  [&](size_t k) { block[k] = verdict_of(rows[k]); });
                CheckCancelled();
                return block;
              },
              [&](size_t, std::vector<RowVerdict>&& block) {
                for (auto& v : block) {
                  if (v.star < 0) {
                    reject(v, v.match_reason);
                    continue;
                  }
                  const size_t star = static_cast<size_t>(v.star);
                  if (row_of[star][v.band] != 0) {
                    reject(v, "obsid " + std::to_string(stars[star].obsid) + " already has a " +
                                  inst.band(v.band).name + " spectrum (row " +
                                  std::to_string(row_of[star][v.band]) + ")");
                    continue;
                  }
                  if (!v.data_reason.empty()) {
                    reject(v, v.data_reason);
                    continue;
                  }
                  row_of[star][v.band] = v.row;
                  obs[star].band[v.band] = std::move(v.bo);
                  ++(v.by_position ? res.matched_by_position : res.matched_by_obsid);
                }
                progress->Tick(static_cast<long>(block.size()));
                CheckCancelled();
              },
              [](ByteWriter& w, const std::vector<RowVerdict>& block) {
                w.Put<uint64_t>(block.size());
                for (const auto& v : block) PutVerdict(w, v);
              },
              [](ByteReader& r) {
                std::vector<RowVerdict> block(r.Get<uint64_t>());
                for (auto& v : block) v = GetVerdict(r);
                return block;
              });
  if (!writes) return res;  // a worker rank: its blocks are with rank 0
  progress->Finish();
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
    throw Error(o.file + ": none of its " + std::to_string(res.rows) + " rows matched a star of " +
                stars_path + " (" + why + ")");
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
