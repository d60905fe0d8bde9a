// Stage `truth` (ingest.source = files only): real stars have no simulation truth, so the "true"
// SEDs through which their CSST observations are simulated are an explicit choice:
//   prediction  - the network's SED of the star's own LAMOST spectrum (seds.fits), as the paper
//   did;
//                 SED_FINE is that R = 200 SED interpolated in ln(lambda) onto the truth grid;
//   synthesizer - the built-in synthesizer at the catalogue's Teff, log g, [Fe/H], [alpha/M].
// Both take each star's flux at 5526-5586 A from stars.fits (G, or the spectrum without G).
// lamost_truth.fits, from which the Monte Carlo draws fresh LAMOST noise, holds the star's own
// spectrum (prediction: re-read from its file, identity checked, flux-conservingly rebinned to the
// DR7 grid) or the synthesizer's noiseless LAMOST spectrum with the catalogue's SNR (synthesizer).
// Products carry each star's SpectrumDataHash, so later joins are by identity.
#pragma once

#include <cstdint>
#include <string>

#include "io/ingest.h"
#include "simulation/lamost_sim.h"
#include "stages/stage_run.h"

namespace csst {

enum class TruthSed { kPrediction, kSynthesizer };

struct TruthStageOptions {
  TruthSed sed = TruthSed::kPrediction;
  std::string spectra_dir;  // where ingest found the stars' files (prediction: re-read)
  bool use_ormask = false;
  LamostSimOptions lamost;  // the common LAMOST grid of lamost_truth.fits; synthesizer: resolution
  int star_block = 2048;    // stars made at a time (the unit spread over MPI ranks)
  std::string stars, seds;  // seds: sed = prediction only
  std::string truth_out, lamost_truth_out;
};

struct TruthStageResult {
  size_t stars = 0;
  double wall_seconds = 0;
  std::string BriefReport() const;  // one line: what it did (manifest.json "report")
};

TruthStageResult RunTruthStage(const TruthStageOptions& options, const StageRun& run);

}  // namespace csst
