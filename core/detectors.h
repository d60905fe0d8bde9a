// The slitless detectors' identities: this project's detector names ("GU1".."GI4") and the CSST
// chip ids of the SLS data model (core/bands.h), which every product writes in its DETECTOR keyword
// ("01".."30") beside the band (FILTER) and the name (DETNAME).
#pragma once

#include <string>

#include "core/bands.h"

namespace csst {

// The CSST chip id of detector k (0-based) of band 0..2; 0 when CSST has no such chip (k >= 4).
int ChipId(int band, int k);
// "GU1".."GI4": band 0..2, k 0-based.
std::string DetectorName(int band, int k);
// Accepts either form: a name "GV2" or a CSST chip id ("05", "5", "CHIP05"). Returns false for
// anything else (a chip id that is not a slitless detector included).
bool ParseDetectorName(const std::string& name, int* band, int* k);
// The chip id of a detector given by either form; 0 when it has none.
int ChipIdOf(const std::string& name);
// DETECTOR keyword value of a detector name: its chip id as two digits ("05"), or the name itself
// when it has no CSST chip id.
std::string ChipKeyword(const std::string& name);

}  // namespace csst
