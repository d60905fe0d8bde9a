#include "validation/report.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "core/bands.h"
#include "core/errors.h"
#include "core/files.h"
#include "core/grid.h"
#include "core/log.h"

namespace csst {
namespace fs = std::filesystem;

namespace {
// The paper's ideal-case precision per band (../shared/method.md)
constexpr BandArray<double> kPaperPrecision(0.005, 0.0003, 0.0005);
double PaperPrecision(const std::string& band) { return kPaperPrecision[*BandFromName(band)]; }

// The bands the study has figures for, in band order, with their names.
std::vector<std::pair<std::string, const BandSummary&>> PresentBands(const MonteCarloResult& r) {
  std::vector<std::pair<std::string, const BandSummary&>> out;
  for (const auto& spec : kBands)
    if (r.bands[spec.band]) out.emplace_back(spec.name, *r.bands[spec.band]);
  return out;
}

std::string Fmt(double v) {
  char b[32];
  std::snprintf(b, sizeof(b), "%.3g", v);
  return b;
}
}  // namespace

void WriteReport(const std::string& dir, const MonteCarloResult& r, const ReportContext& context) {
  if (!context.instrument || !context.truth || !context.stars || !context.true_sed)
    throw Error(
        "WriteReport: the report needs its instrument, truth, stars and SEDs (internal error)");
  const Instrument& inst = *context.instrument;
  const TrueFlat& truth = *context.truth;
  const std::vector<StarRecord>& stars = *context.stars;
  const std::vector<std::vector<double>>& true_sed = *context.true_sed;
  const std::string& config_path = context.config_path;
  const fs::path d(dir);
  fs::create_directories(d);
  const int per = inst.options().detectors_per_band;
  const double nx = inst.options().detector_nx, ny = inst.options().detector_ny;
  // 1. Precision vs wavelength.
  for (const auto& [band, b] : PresentBands(r)) {
    std::ofstream f(d / ("precision_" + band + ".dat"));
    f << "# wavelength[A] precision bias coverage\n";
    for (size_t i = 0; i < b.wavelength.size(); ++i)
      f << b.wavelength[i] << " " << b.precision_by_wavelength[i] << " " << b.bias_by_wavelength[i]
        << " " << b.coverage_by_wavelength[i] << "\n";
  }
  // 2. Fitted (realization 0) and true flat maps at three wavelengths, first detector of each band.
  const int sp = static_cast<int>(std::lround(
      std::sqrt(r.fitted0.empty() || r.fitted0[0].empty() ? 0 : r.fitted0[0][0].size())));
  std::vector<std::string> map_files;
  for (int b = 0; b < 3 && sp > 0; ++b) {
    const int det = b * per;
    if (det >= static_cast<int>(r.fitted0.size()) || r.fitted0[det].empty()) continue;
    const size_t ns = r.fitted0[det].size();
    for (double frac : {0.1, 0.5, 0.9}) {
      const size_t s = std::min(ns - 1, static_cast<size_t>(frac * ns));
      const double lambda = r.detector_wavelengths[det][s];
      const std::string name =
          r.detector_names[det] + "_" + std::to_string(static_cast<int>(lambda));
      std::ofstream f(d / ("map_" + name + ".dat"));
      for (int j = 0; j < sp; ++j) {
        for (int i = 0; i < sp; ++i) {
          const double x = (i + 0.5) / sp * (nx - 1), y = (j + 0.5) / sp * (ny - 1);
          f << x << " " << y << " " << r.fitted0[det][s][j * sp + i] << " "
            << truth.Value(det, x, y, lambda) << "\n";
        }
        f << "\n";
      }
      map_files.push_back(name);
    }
  }
  // 3. Residual histogram.
  {
    std::ofstream f(d / "residuals.dat");
    for (double v : r.residual_sample) f << v << "\n";
  }
  // 4. SED residuals vs Teff and SNR (realization 0 predictions).
  {
    std::ofstream f(d / "sed_residuals.dat");
    f << "# teff snr_g rms_GU rms_GV rms_GI\n";
    const auto& g = OutputGrid();
    const size_t no = g.size();
    for (size_t i = 0; i < stars.size() && (i + 1) * no <= r.mu0.size(); ++i) {
      double s[kNumBands] = {0, 0, 0};
      int n[kNumBands] = {0, 0, 0};
      for (size_t k = 0; k < no; ++k) {
        const auto held = BandHolding(g.Centre(static_cast<int>(k)));
        if (!held) continue;
        const int band = Index(*held);
        const double rr = (r.mu0[i * no + k] - true_sed[i][k]) / true_sed[i][k];
        s[band] += rr * rr;
        ++n[band];
      }
      f << stars[i].teff << " " << stars[i].snr_g;
      for (int b = 0; b < kNumBands; ++b) f << " " << (n[b] ? std::sqrt(s[b] / n[b]) : 0.0);
      f << "\n";
    }
  }
  // 5. Star positions on the focal plane (realization 0): detectors laid out per band in a row.
  {
    std::ofstream f(d / "positions.dat");
    f << "# band detector x0 y0 (mosaic x, mosaic y)\n";
    for (const auto& so : r.obs0)
      for (const auto& bo : so.band) {
        const int k = bo.detector % per;
        f << bo.band << " " << bo.detector << " " << (k * (nx + 500) + bo.x0) << " "
          << (bo.band * (ny + 500) + bo.y0) << "\n";
      }
  }
  // gnuplot script.
  std::ostringstream gp;
  gp << "set terminal pngcairo size 900,600 font 'sans,10' noenhanced\n";
  int idx = 0;
  for (const auto& [band, b] : PresentBands(r)) {
    gp << "set output 'precision_" << band << ".png'\n"
       << "set logscale y; set xlabel 'wavelength [A]'; set ylabel 'precision (RMS of "
          "(fitted-true)/true)'\n"
       << "set title '" << band << ": precision vs wavelength (" << r.realizations
       << " realizations, " << r.n_stars << " stars); dashed: paper " << PaperPrecision(band)
       << "'\n"
       << "plot 'precision_" << band << ".dat' u 1:2 w lp pt 7 ps 0.5 t 'this run', "
       << PaperPrecision(band) << " w l dt 2 lw 2 t 'paper (ideal)'\nunset logscale y\n";
    ++idx;
  }
  for (const auto& name : map_files) {
    gp << "set terminal pngcairo size 1000,420 noenhanced\nset output 'map_" << name << ".png'\n"
       << "set view map; set size ratio -1; unset logscale; set xlabel 'x [pixel]'; set ylabel 'y "
          "[pixel]'\n"
       << "set multiplot layout 1,2 title 'flat " << name << " A'\n"
       << "set title 'fitted (realization 0)'\nsplot 'map_" << name
       << ".dat' u 1:2:3 w pm3d notitle\n"
       << "set title 'true'\nsplot 'map_" << name
       << ".dat' u 1:2:4 w pm3d notitle\nunset multiplot\n"
       << "set terminal pngcairo size 900,600 noenhanced\n";
  }
  gp << "set output 'residual_histogram.png'\nunset logscale; set size noratio\n"
     << "set xlabel '(fitted - true) / true'; set ylabel 'count'; set title 'residuals of "
        "realization 0, all detectors and wavelengths'\n"
     << "binwidth = 0.0002; bin(x) = binwidth*floor(x/binwidth)\n"
     << "plot 'residuals.dat' u (bin($1)):(1.0) smooth freq w boxes t ''\n"
     << "set output 'sed_residuals.png'\nset logscale y; set xlabel 'Teff [K]'; set ylabel 'RMS "
        "relative SED residual'\n"
     << "set title 'predicted vs true SED per star (realization 0); colour: SNR in g'\n"
     << "set cbrange [20:150]; set cblabel 'SNR_g'\n"
     << "plot 'sed_residuals.dat' u 1:3:2 w p pt 7 ps 0.6 lc palette t 'GU', '' u 1:4:2 w p pt 5 "
        "ps 0.6 lc palette t 'GV', '' u 1:5:2 w p pt 9 ps 0.6 lc palette t 'GI'\n"
     << "unset logscale y\n"
     << "set output 'positions.png'\nset size ratio -1; set xlabel 'mosaic x [pixel]'; set ylabel "
        "'mosaic y [pixel] (rows: GU, GV, GI)'\n"
     << "set title 'star positions (band-centre trace positions) on the 12 detectors'\n"
     << "plot 'positions.dat' u 3:4:1 w p pt 7 ps 0.4 lc variable t ''\n";
  WriteTextAtomically(d / "report.gp", gp.str());
  const bool have_gnuplot = std::system("command -v gnuplot > /dev/null 2>&1") == 0;
  std::string
      figure_error;  // figures are a view of validation.json: a failed plot is reported, not fatal
  if (have_gnuplot) {
    const std::string cmd = "cd '" + d.string() + "' && gnuplot report.gp > gnuplot.log 2>&1";
    if (std::system(cmd.c_str()) != 0) {
      std::string log = ReadText(d / "gnuplot.log");
      if (log.size() > 400) log = "..." + log.substr(log.size() - 400);
      figure_error = "gnuplot failed on report/report.gp: " + log;
      Logger("validate")
          ->warn("report figures incomplete (the numbers are in validation.json): {}",
                 figure_error);
    }
  } else {
    Logger("validate")
        ->warn(
            "gnuplot is not installed: report figures skipped (scripts/install-deps.sh installs "
            "it)");
  }
  // HTML.
  std::ostringstream h;
  h << "<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>csst-flatcube validation</title>"
    << "<style>body{font-family:sans-serif;max-width:1000px;margin:auto}table{border-collapse:"
       "collapse}"
    << "td,th{border:1px solid #999;padding:4px 8px}img{max-width:100%}</style></head><body>\n"
    << "<h1>Flat-field cube validation</h1>\n<p>Config: <code>" << config_path << "</code>. "
    << r.realizations << " Monte Carlo realizations, " << r.n_stars
    << " stars. Precision = RMS over detector area and realizations of "
    << "(fitted - true)/true; the band value is the median over its wavelengths.</p>\n"
    << "<table><tr><th>band</th><th>precision</th><th>paper (ideal)</th><th>bias</th><th>coverage "
       "of 1&sigma;</th></tr>\n";
  for (const auto& [band, b] : PresentBands(r)) {
    h << "<tr><td>" << band << "</td><td>" << Fmt(b.precision) << "</td><td>"
      << PaperPrecision(band) << "</td><td>" << Fmt(b.bias) << "</td><td>" << Fmt(b.coverage)
      << "</td></tr>\n";
  }
  h << "</table>\n";
  if (!have_gnuplot)
    h << "<p><b>gnuplot was not available: figures were not drawn; the .dat files hold the "
         "data.</b></p>\n";
  if (!figure_error.empty()) {
    h << "<p><b>Some figures could not be drawn (too few stars or points?): <code>" << figure_error
      << "</code></b></p>\n";
  }
  auto img = [&](const std::string& f, const std::string& caption) {
    h << "<figure><img src='" << f << "' alt='" << caption << "'><figcaption>" << caption
      << "</figcaption></figure>\n";
  };
  h << "<h2>Precision vs wavelength</h2>\n";
  for (const auto& [band, b] : PresentBands(r))
    img("precision_" + band + ".png",
        band + ": precision per wavelength; dashed line: the paper's ideal-case number");
  h << "<h2>Fitted and true flats</h2>\n";
  for (const auto& name : map_files)
    img("map_" + name + ".png",
        name + " A: fitted flat of realization 0 (left) and the injected truth (right)");
  h << "<h2>Residuals</h2>\n";
  img("residual_histogram.png",
      "distribution of (fitted - true)/true over detector points and wavelengths (realization 0)");
  h << "<h2>SED predictions</h2>\n";
  img("sed_residuals.png",
      "RMS relative residual of each star's predicted SED per band, against Teff, coloured by SNR");
  h << "<h2>Star positions</h2>\n";
  img("positions.png",
      "positions of the stars' traces on the 12 slitless detectors (rows GU, GV, GI)");
  h << "</body></html>\n";
  WriteTextAtomically(d / "index.html", h.str());
}

}  // namespace csst
