// Stage `sample`: draws the simulated LAMOST DR7-like population (simulation/population.h) and
// writes its catalogue (product catalogue.fits).
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>

#include "simulation/population.h"

namespace csst {

void RunSampleStage(const PopulationOptions& options, uint64_t seed, const std::string& config_hash,
                    const std::filesystem::path& catalogue_out);

}  // namespace csst
