// Line data of the built-in synthesizer (linelist.cpp names the sources).
#pragma once

#include <vector>

namespace csst::stellar {

struct LineData {
  double lambda_air;    // [A], air (IAU convention); converted to vacuum where used
  const char* species;  // "Fe I", "Ca II", ...
  double chi;           // lower-level excitation potential [eV]
  double loggf;         // log10(g_lower * f)
};

const std::vector<LineData>& AtomicLines();

}  // namespace csst::stellar
