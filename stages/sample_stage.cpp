#include "stages/sample_stage.h"

#include "core/catalogue.h"
#include "core/log.h"

namespace csst {

void RunSampleStage(const PopulationOptions& options, uint64_t seed, const std::string& config_hash,
                    const std::filesystem::path& catalogue_out) {
  const auto stars = DrawPopulation(options, seed);
  Provenance p;
  p.descrip = "simulated LAMOST DR7-like star catalogue (truth parameters)";
  p.config_hash = config_hash;
  p.seed = seed;
  p.history.push_back("population drawn by csst-flatcube stage sample");
  WriteCatalogueFits(catalogue_out.string(), stars, p);
  Logger("sample")->info("{} stars drawn", stars.size());
}

}  // namespace csst
