// The validation report: out/<run>/report/index.html (self-contained, opens from disk) with PNG
// figures made by gnuplot from data files written beside them. gnuplot (Debian gnuplot-nox) was
// chosen because it is a small, long-maintained C program that renders PNG headless and needs no
// Python stack at run time. Without gnuplot the data files and an HTML page saying so are written.
#pragma once

#include <string>
#include <vector>

#include "instrument/instrument.h"
#include "io/catalogue.h"
#include "simulation/csst/true_flat.h"
#include "validation/monte_carlo.h"

namespace csst {

// What the report shows a study against (not owned): the instrument, the injected true flat, the
// stars with their true R = 200 SEDs (the same order), and the config the run read.
struct ReportContext {
  const Instrument* instrument = nullptr;
  const TrueFlat* truth = nullptr;
  const std::vector<StarRecord>* stars = nullptr;
  const std::vector<std::vector<double>>* true_sed = nullptr;
  std::string config_path;
};
void WriteReport(const std::string& dir, const MonteCarloResult& result,
                 const ReportContext& context);

}  // namespace csst
