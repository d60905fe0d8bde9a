// Stage `observations` (observations.source: files): extracted CSST slitless spectra from outside
// (the format of io/observations.h) matched to the ingested stars -> observations.fits, the same
// product stage `simulate` writes, so `compare` reads simulated and outside spectra alike.
//
// A row is matched by its OBSID when it has one (an obsid that is not among the stars is a
// reject; there is no fallback to the position, so a wrong obsid is never joined to a neighbour),
// else by sky position to the one star within `match_radius` arcsec (none, or more than one, is
// a reject). A second spectrum of a star in one band, and a row with no usable pixel inside its
// band, are rejects too; so is every ingested star left without a spectrum. Rejects go to the
// REJECTS table of observations.fits with their reasons; no matched row at all is an error.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "core/enum_names.h"
#include "instrument/instrument.h"
#include "stages/stage_run.h"

namespace csst {

enum class ObservationsSource { kSimulate, kFiles };
inline constexpr EnumNames<ObservationsSource, 2> kObservationsSourceNames = {
    {{ObservationsSource::kSimulate, "simulate"}, {ObservationsSource::kFiles, "files"}}};
constexpr const auto& NamesOf(ObservationsSource) { return kObservationsSourceNames; }

struct ObservationsOptions {
  ObservationsSource source = ObservationsSource::kSimulate;
  std::string file;           // source = files: the EXTRACTED FITS table
  double match_radius = 1.0;  // arcsec, for rows without an obsid
};

struct ObservationsStageOptions {
  ObservationsOptions observations;  // the config section
  InstrumentOptions instrument;
  int star_block = 2048;  // rows of the file read and matched at a time (the unit of MPI ranks)
  std::string stars, observations_out;
};

struct ObservationsStageResult {
  size_t rows = 0, matched_by_obsid = 0, matched_by_position = 0, rejected_rows = 0;
  size_t stars = 0, stars_observed = 0;
  double wall_seconds = 0;
  std::string BriefReport() const;  // one line: what it did (manifest.json "report")
};

ObservationsStageResult RunObservationsStage(const ObservationsStageOptions& options,
                                             const StageRun& run);

}  // namespace csst
