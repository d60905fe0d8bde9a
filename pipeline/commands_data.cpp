// Data subcommands: synth (one synthetic spectrum), prepare (network inputs from files), catalogue
// (an ingest catalogue from LAMOST file headers and a table of labels) and apply.
#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/errors.h"
#include "core/files.h"
#include "core/log.h"
#include "flatfield/cube_fit.h"
#include "flatfield/products.h"
#include "instrument/instrument.h"
#include "io/catalogue.h"
#include "io/fits.h"
#include "io/ingest.h"
#include "io/spectrum_io.h"
#include "pipeline/commands.h"
#include "pipeline/config.h"
#include "simulation/stellar/synthesizer.h"

namespace csst {
namespace {

void WriteSpectrumHdu(FitsWriter& w, const std::string& extname, const Spectrum& s,
                      const std::string& unit, const std::string& descrip, const Provenance& base) {
  w.WriteTable(extname, {{"WAVELENGTH", "Angstrom", s.wave}, {"FLUX", unit, s.flux}});
  Provenance p = base;
  p.descrip = descrip;
  w.Standard(p, "");
  w.Key("AIRORVAC", "vac", "wavelengths in vacuum");
}

}  // namespace

CommandAction AddSynthCommand(CLI::App& app) {
  auto* cmd =
      app.add_subcommand("synth", "synthesize one stellar spectrum with the built-in synthesizer");
  auto p = std::make_shared<stellar::StellarParams>();
  auto out = std::make_shared<std::string>();
  cmd->add_option("--teff", p->teff, "effective temperature [K] (4500-10000)")->required();
  cmd->add_option("--logg", p->logg, "surface gravity log g [cgs] (0-5)")->required();
  cmd->add_option("--feh", p->mh, "metallicity [M/H] [dex] (-2.5..0.5)")->required();
  cmd->add_option("--alpha", p->alpha, "[alpha/M] [dex] (-0.25..0.5)");
  cmd->add_option("--out", *out, "output FITS file")->required();
  return [cmd, p, out]() -> int {
    if (!*cmd) return -1;
    CheckOutputPath("synth --out", *out);
    try {
      p->Validate();
    } catch (const Error& e) {
      throw ConfigError(std::string("usage error: ") + e.what());
    }
    const stellar::Synthesizer synth;
    const auto native = synth.Synthesize(*p);
    Provenance prov;
    char buf[160];
    std::snprintf(buf, sizeof(buf), "Teff=%.0f K, log g=%.2f, [M/H]=%.2f, [alpha/M]=%.2f", p->teff,
                  p->logg, p->mh, p->alpha);
    prov.history.push_back(std::string("csst-flatcube synth: ") + buf);
    FitsWriter w(*out);
    prov.descrip = std::string("synthetic spectrum ") + buf;
    w.WritePrimary(prov);
    w.Key("TEFF", p->teff, "[K] effective temperature");
    w.Key("LOGG", p->logg, "[cgs] surface gravity");
    w.Key("MH", p->mh, "[dex] metallicity");
    w.Key("ALPHAM", p->alpha, "[dex] alpha enhancement");
    WriteSpectrumHdu(w, "NATIVE", native, "erg/s/cm2/Angstrom",
                     "surface flux F_lambda, R_pix = 20000, 2400-10600 A", prov);
    WriteSpectrumHdu(
        w, "INPUT", stellar::MakeNetworkInput(native), "",
        "network input: R=2000, 2238 px 4000-7000 A (log), normalised by the 51-px moving average",
        prov);
    WriteSpectrumHdu(
        w, "SED", stellar::MakeTargetSed(native), "",
        "network target: R=200, 574 px 2500-10500 A (log), scaled by the mean flux in 5526-5586 A",
        prov);
    w.Close();
    Logger("synth")->info("wrote {}", *out);
    return 0;
  };
}

CommandAction AddPrepareCommand(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "prepare", "prepare normalised 2238-pixel network inputs from spectrum files");
  auto out = std::make_shared<std::string>();
  auto files = std::make_shared<std::vector<std::string>>();
  auto opts = std::make_shared<PrepareOptions>();
  opts->min_coverage = 0.5;
  cmd->add_option("--out", *out, "output FITS file (STARS table as in stars.fits)")->required();
  cmd->add_option("--window", opts->window, "continuum moving-average window [px]");
  cmd->add_option("--min-coverage", opts->min_coverage, "minimum covered fraction of 4000-7000 A");
  cmd->add_option("FILE", *files, "spectra: LAMOST (DR7/DR8), MILES, STELIB, CALSPEC, NGSL, BOSZ")
      ->required();
  return [cmd, out, files, opts]() -> int {
    if (!*cmd) return -1;
    CheckOutputPath("prepare --out", *out, *files);
    opts->Validate();
    PreparedStars s;
    int64_t next_id = 1;
    for (const auto& f : *files) {
      const auto any = ReadAnySpectrum(f);
      const auto in = PrepareNetworkInput(any.spectrum, any.z, *opts, f);
      StarRecord st;
      st.obsid = any.id != 0 ? any.id : next_id++;
      st.designation = any.name;
      st.teff = any.teff;
      st.logg = any.logg;
      st.feh = any.feh;
      s.stars.push_back(st);
      s.z.push_back(any.z);
      s.flux.insert(s.flux.end(), in.flux.begin(), in.flux.end());
      s.err.insert(s.err.end(), in.err.begin(), in.err.end());
      s.mask.insert(s.mask.end(), in.mask.begin(), in.mask.end());
      Logger("prepare")->info("{}: {} spectrum, coverage {:.3f}", f, any.format, in.coverage);
    }
    Provenance prov;
    prov.descrip = "normalised 2238-pixel network inputs (4000-7000 A, log)";
    prov.history.push_back("csst-flatcube prepare");
    FitsWriter w(*out);
    w.WritePrimary(prov);
    w.CreateTable("STARS", PreparedStarsLayout());
    w.Standard(prov, "");
    WritePreparedStars(w, s, 0);
    w.WriteTable("WAVELENGTH", {{"WAVELENGTH", "Angstrom", InputGrid().Centres()}});
    w.Standard(prov, "");
    w.Close();
    return 0;
  };
}

namespace {
// The x, y, wavelength columns of a CSV or FITS table (column names in any case).
void ReadPoints(const std::string& path, std::vector<double>* x, std::vector<double>* y,
                std::vector<double>* l) {
  auto lower = [](std::string s) {
    std::transform(s.begin(), s.end(), s.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    return s;
  };
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec))
    throw ConfigError("usage error: apply --points " + path + ": no such file");
  const std::string ext = lower(std::filesystem::path(path).extension().string());
  if (ext == ".csv") {
    CsvTable t;
    try {
      t = ReadCsvTable(path);
    } catch (const IoError& e) {
      throw IoError(path + ": " + e.what());
    }
    std::map<std::string, size_t> col;
    for (size_t i = 0; i < t.header.size(); ++i) col[lower(t.header[i])] = i;
    for (const char* c : {"x", "y", "wavelength"})
      if (!col.count(c))
        throw IoError(path + ": no column '" + c + "' (expected x, y, wavelength)");
    std::vector<double>* out[3] = {x, y, l};
    const char* names[3] = {"x", "y", "wavelength"};
    for (size_t r = 0; r < t.rows.size(); ++r) {
      for (int c = 0; c < 3; ++c) {
        const std::string& cell = t.rows[r][col[names[c]]];
        size_t used = 0;
        double v = 0;
        try {
          v = std::stod(cell, &used);
        } catch (const std::exception&) {
          used = 0;
        }
        if (used == 0 || used != cell.size())
          throw IoError(path + ": line " + std::to_string(t.line[r]) + " column " + names[c] +
                        ": '" + cell + "' is not a number");
        out[c]->push_back(v);
      }
    }
    return;
  }
  FitsReader r(path);
  if (r.NumHdus() < 2) throw IoError(path + ": no table HDU with x, y, wavelength");
  r.MoveTo(2);
  for (const char* c : {"x", "y", "wavelength"}) {
    const std::string up = c == std::string("x") ? "X" : c == std::string("y") ? "Y" : "WAVELENGTH";
    if (!r.HasColumn(up) && !r.HasColumn(c))
      throw IoError(path + ": no column '" + up + "' (expected X, Y, WAVELENGTH)");
  }
  *x = r.ReadColumn(r.HasColumn("X") ? "X" : "x");
  *y = r.ReadColumn(r.HasColumn("Y") ? "Y" : "y");
  *l = r.ReadColumn(r.HasColumn("WAVELENGTH") ? "WAVELENGTH" : "wavelength");
}

void WritePoints(const std::string& path, const std::string& cube, const std::vector<double>& x,
                 const std::vector<double>& y, const std::vector<double>& l,
                 const FlatProduct::Batch& b) {
  const std::string ext = std::filesystem::path(path).extension().string();
  AtomicOutput out(path);
  if (ext == ".csv" || ext == ".CSV") {
    std::ofstream f(out.temp());
    if (!f) throw IoError("cannot write " + out.temp().string());
    f << "x,y,wavelength,flat,err,dq\n";
    char line[256];
    for (size_t i = 0; i < x.size(); ++i) {
      std::snprintf(line, sizeof(line), "%.17g,%.17g,%.17g,%.9g,%.9g,%d\n", x[i], y[i], l[i],
                    b.flat[i], b.err[i], b.dq[i]);
      f << line;
    }
    f.close();
    if (!f) throw IoError("cannot write " + out.temp().string());
  } else {
    FitsWriter w(out.temp().string());
    Provenance p;
    p.descrip = "flat evaluated at points (csst-flatcube apply --points)";
    p.history.push_back("csst-flatcube apply --cube " + cube);
    w.WritePrimary(p);
    w.WriteTable("POINTS", {{"X", "pixel", x},
                            {"Y", "pixel", y},
                            {"WAVELENGTH", "Angstrom", l},
                            {"FLAT", "count/count", b.flat},
                            {"ERR", "count/count", b.err},
                            {"DQ", "", b.dq}});
    w.Standard(p, "");
    w.Comment(
        "FLAT: divide extracted counts by it; ERR its 1-sigma (0: aXe form); DQ: the cube's DQ_DEF "
        "bits, 16 = "
        "off the detector or outside the cube's wavelengths (FLAT, ERR NaN)");
    w.Close();
  }
  out.Commit();
}
}  // namespace

void CheckOutputPath(const std::string& option, const std::string& out,
                     const std::vector<std::string>& inputs) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (fs::is_directory(out, ec))
    throw ConfigError("usage error: " + option + " " + out + " is a folder, expected a file name");
  if (!fs::exists(out, ec)) return;
  for (const auto& in : inputs) {
    if (fs::exists(in, ec) && fs::equivalent(out, in, ec)) {
      throw ConfigError("usage error: " + option + " " + out +
                        " is one of the input files: it would be overwritten");
    }
  }
}

CommandAction AddApplyCommand(CLI::App& app) {
  auto* cmd = app.add_subcommand("apply",
                                 "the flat at a detector pixel and wavelength, or at every row of "
                                 "a table of points (either cube form)");
  auto cube = std::make_shared<std::string>();
  auto x = std::make_shared<double>(0), y = std::make_shared<double>(0),
       l = std::make_shared<double>(0);
  auto points = std::make_shared<std::string>(), out = std::make_shared<std::string>();
  cmd->add_option("--cube", *cube, "flat_<DET>.fits or flat_<DET>_axe.fits")->required();
  auto* ox = cmd->add_option("--x", *x, "detector x [pixel, 0-based]");
  auto* oy = cmd->add_option("--y", *y, "detector y [pixel, 0-based]");
  auto* ol = cmd->add_option("--wavelength", *l, "vacuum wavelength [A]");
  auto* op = cmd->add_option("--points", *points,
                             "CSV or FITS table with columns x, y, wavelength (batch; with --out)");
  cmd->add_option("--out", *out, "batch output: the rows with flat, err, dq (.csv, else FITS)");
  return [cmd, cube, x, y, l, points, out, ox, oy, ol, op]() -> int {
    if (!*cmd) return -1;
    if (*op) {
      if (*ox || *oy || *ol)
        throw ConfigError("usage error: apply: --points replaces --x, --y and --wavelength");
      if (out->empty()) throw ConfigError("usage error: apply --points needs --out");
      CheckOutputPath("apply --out", *out, {*cube, *points});
      const FlatProduct flat(*cube);
      std::vector<double> px, py, pl;
      ReadPoints(*points, &px, &py, &pl);
      const auto b = flat.EvaluateMany(px, py, pl);
      WritePoints(*out, *cube, px, py, pl, b);
      long outside = 0;
      for (int32_t d : b.dq) outside += (d & kDqOutside) != 0;
      Logger("apply")->info("{}: {} points evaluated, {} outside the cube (DQ 16); written to {}",
                            *cube, px.size(), outside, *out);
      return 0;
    }
    if (!*ox || !*oy || !*ol)
      throw ConfigError("usage error: apply needs --x, --y and --wavelength, or --points");
    double sigma = 0;
    const FlatProduct flat(*cube);
    double f = 0;
    try {
      f = flat.Evaluate(*x, *y, *l, &sigma);
    } catch (const Error& e) {  // the arguments do not fit this cube: a usage error (exit 2)
      throw ConfigError(std::string("usage error: apply: ") + e.what());
    }
    // The voxels' DQ travels with the value: a flat of 1 from a slice that was never fitted must
    // say so.
    const int32_t dq = flat.EvaluateMany({*x}, {*y}, {*l}).dq.at(0);
    std::printf("flat(x=%g, y=%g, lambda=%g A) = %.6f", *x, *y, *l, f);
    if (sigma > 0) std::printf(" +- %.6f", sigma);
    if (dq != 0) std::printf("  DQ %d (%s)", dq, DqNames(dq).c_str());
    std::printf("\n");
    if (dq & (kDqNoCoverage | kDqNotConverged)) {
      Logger("apply")->warn("{}: no fitted flat at this point (DQ {}): the value is a placeholder",
                            *cube, DqNames(dq));
    }
    return 0;
  };
}

CommandAction AddAxeCommand(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "axe",
      "write the full-resolution aXe cube (hstaxe, slitlessutils) of the detectors asked for from "
      "a run's "
      "flat_coeffs.fits: 4 x DETNX x DETNY x (axe_degree + 1) bytes each (1.36 GB at degree 3)");
  auto args = AddConfigArgs(cmd);  // the run's configuration: its output.dir holds flat_coeffs.fits
  auto detectors = std::make_shared<std::vector<std::string>>();
  auto out = std::make_shared<std::string>();
  cmd->add_option("--detector", *detectors, "detector name (GV1) or CSST chip id (02); repeatable")
      ->required();
  cmd->add_option("--out", *out, "output folder (default: <output.dir>/flatcube_axe)");
  return [cmd, args, detectors, out]() -> int {
    if (!*cmd) return -1;
    namespace fs = std::filesystem;
    const auto c = LoadConfig(args->path, args->sets);
    SetLogLevel(c.log_level);
    const fs::path coeffs = fs::path(c.output.dir) / "flat_coeffs.fits";
    if (!fs::exists(coeffs)) {
      throw ConfigError("usage error: axe: " + coeffs.string() +
                        " does not exist: run `csst-flatcube run " + args->path +
                        " --to fit` first");
    }
    const Instrument inst(c.simulation.instrument);
    const FlatCube cube = ReadFlatCoeffs(coeffs.string());
    const fs::path dir = out->empty() ? fs::path(c.output.dir) / "flatcube_axe" : fs::path(*out);
    std::vector<const DetectorFlat*> chosen;
    for (const auto& name : *detectors) {
      int band = 0, k = 0;
      if (!ParseDetectorName(name, &band, &k)) {
        throw ConfigError("usage error: axe --detector " + name +
                          ": not a detector (GU1..GI4, or a CSST chip id: GU 03 04 27 28, GV 02 05 "
                          "26 29, GI 01 10 21 30)");
      }
      const DetectorFlat* found = nullptr;
      for (const auto& d : cube.detectors)
        if (d.name == DetectorName(band, k)) found = &d;
      if (!found)
        throw ConfigError("usage error: axe --detector " + name + ": " + coeffs.string() +
                          " has no " + DetectorName(band, k));
      chosen.push_back(found);
    }
    fs::create_directories(dir);
    for (const auto* d : chosen) {
      const auto s = SmoothDetector(*d, cube, inst, c.assemble.axe_degree, nullptr);
      const fs::path file = dir / AxeFileName(s.name, 1);
      Provenance p;
      p.seed = c.random_seed;
      p.config_hash = FitsReader(coeffs.string()).KeyString("CFGHASH");
      p.history.push_back("csst-flatcube axe " + args->path + " --detector " + s.name);
      AtomicOutput o(file);
      WriteFullAxe(o.temp().string(), s, p);
      o.Commit();
      Logger("axe")->info("wrote {} ({} x {} pixels, {} coefficient images, {:.0f} MB)",
                          file.string(), static_cast<long>(s.nx), static_cast<long>(s.ny),
                          s.degree + 1, static_cast<double>(fs::file_size(file)) / 1e6);
    }
    return 0;
  };
}

CommandAction AddCatalogueCommand(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "catalogue",
      "write an ingest catalogue (CSV) from the headers of a directory of LAMOST files, joined to "
      "a CSV of stellar labels by file name; no G, no E(B-V) (ingest says what it uses instead)");
  auto dir = std::make_shared<std::string>();
  auto labels = std::make_shared<std::string>();
  auto out = std::make_shared<std::string>();
  cmd->add_option("DIR", *dir, "directory of LAMOST files (DR7 image or DR8+ COADD layout)")
      ->required();
  cmd->add_option(
      "--labels", *labels,
      "CSV with a 'file' column (file name in DIR) and teff, logg, feh (optional: alpha, rv)");
  cmd->add_option("--out", *out, "output catalogue (.csv)")->required();
  return [cmd, dir, labels, out]() -> int {
    if (!*cmd) return -1;
    std::vector<std::string> skipped;
    const auto stars = CatalogueFromHeaders(*dir, *labels, &skipped);
    for (const auto& s : skipped) std::fprintf(stderr, "skipped: %s\n", s.c_str());
    WriteCatalogueCsv(*out, stars);
    Logger("catalogue")
        ->info("wrote {}: {} stars from {}, {} file(s) skipped", *out, stars.size(), *dir,
               skipped.size());
    return skipped.empty() ? 0 : 1;
  };
}

}  // namespace csst
