#include "stages/simulate_stage.h"

#include <map>

#include "core/errors.h"
#include "core/ingest.h"
#include "core/log.h"
#include "core/rng.h"
#include "simulation/dr7_sample.h"

namespace csst {

StarTruth LoadStarTruth(const std::string& stars_path, const std::string& catalogue, const std::string& truth_path) {
  const auto prepared = ReadPreparedStars(stars_path);
  const auto cat = ReadCatalogue(catalogue);
  std::map<int64_t, double> ebv;
  for (const auto& s : cat) ebv[s.obsid] = s.ebv;
  const auto truth = ReadSampleTruth(truth_path);
  std::map<int64_t, size_t> at;
  for (size_t i = 0; i < truth.obsid.size(); ++i) at[truth.obsid[i]] = i;
  StarTruth t;
  t.stars = prepared.stars;
  t.z = prepared.z;
  for (auto& s : t.stars) {
    auto it = at.find(s.obsid);
    if (it == at.end()) throw Error(truth_path + ": no truth for obsid " + std::to_string(s.obsid));
    s.ebv = ebv.count(s.obsid) ? ebv[s.obsid] : 0.0;
    t.sed.push_back(truth.sed[it->second]);
    t.sed_fine.push_back(truth.sed_fine[it->second]);
    t.window_flux.push_back(truth.window_flux[it->second]);
  }
  return t;
}

void RunSimulateStage(const InstrumentOptions& io, const TrueFlatOptions& fo, const ObserveOptions& oo, uint64_t flat_seed,
                      uint64_t seed,
                      const std::string& config_hash, const std::string& stars, const std::string& catalogue,
                      const std::string& truth, const std::string& observations_out, const std::string& true_flat_out) {
  const Instrument inst(io);
  const auto flat = TrueFlat::Draw(fo, inst, flat_seed);
  const auto t = LoadStarTruth(stars, catalogue, truth);
  const auto obs = Observe(inst, flat, oo, t.stars, t.sed_fine, t.window_flux, seed, "csst-noise");
  Provenance p;
  p.config_hash = config_hash;
  p.seed = seed;
  p.history.push_back("simulated by csst-flatcube stage simulate, mode " + oo.mode);
  WriteObservations(observations_out, obs, p);
  flat.Write(true_flat_out, p);
  Logger("simulate")->info("{} stars observed in 3 bands ({} mode)", obs.size(), oo.mode);
}

}  // namespace csst
