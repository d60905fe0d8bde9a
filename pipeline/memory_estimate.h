// What a run will hold in memory, estimated from its configuration before any stage starts, so that
// a size key whose product would not fit is refused with the figure instead of ending in an
// out-of-memory kill or std::bad_alloc (issue #29).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "pipeline/config.h"

namespace csst {

struct MemoryEstimate {
  std::string key;   // the config key that sets the size
  std::string what;  // what is held, with the formula
  double bytes = 0;
};

// The largest single allocations of each stage, one row per size key (a rough upper bound: factor
// ~2).
std::vector<MemoryEstimate> EstimateRunMemory(const Config& config);
// Bytes of physical memory of this machine (sysconf), or 0 when unknown.
double PhysicalMemoryBytes();
// Throws ConfigError naming the key, its value, the estimate and the machine's memory when an
// estimate exceeds `limit_bytes` (<= 0: PhysicalMemoryBytes()).
void CheckRunMemory(const Config& config, double limit_bytes = 0);
// Stages whose memory grows with the number of stars (simulate, validate): the bytes they keep for
// n_stars (0 for a stage that streams its stars), and the check the engine makes before such a
// stage with the stars of stars.fits (throws Error with the figures when the stage would need more
// than `limit_bytes`, default half of PhysicalMemoryBytes()).
double StageMemory(const Config& config, const std::string& stage, long n_stars);
void CheckStageMemory(const Config& config, const std::string& stage, long n_stars,
                      double limit_bytes = 0);
// "1.7 GB"-style text.
std::string FormatBytes(double bytes);

}  // namespace csst
