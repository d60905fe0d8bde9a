// Bad inputs, as a new user would give them: each fails with an error that names the file, key,
// row or argument (exit 2 for usage/config, 1 for runtime), or lands in REJECTS with its reason,
// and nothing is recorded as finished that is not. The README counts these cases.
#include <sys/mount.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <fstream>
#include <limits>
#include <map>
#include <sstream>

#include "core/files.h"
#include "flatfield/products.h"
#include "io/catalogue.h"
#include "io/fits.h"
#include "tests/pipeline/cli_util.h"
#include "tests/test_util.h"

using namespace csst;
using test::Cli;
namespace fs = std::filesystem;

namespace {

struct Case {
  std::string what;
  std::string args;
  int rc;
  std::string message;  // a substring the output must hold
};

void CheckCases(const std::vector<Case>& cases) {
  for (const auto& c : cases) {
    const auto r = Cli(c.args);
    INFO(c.what << "\n  csst-flatcube " << c.args << "\n  output: " << r.out);
    CHECK(r.rc == c.rc);
    CHECK(r.out.find(c.message) != std::string::npos);
  }
}

std::string WriteFile(const fs::path& p, const std::string& text) {
  std::ofstream(p) << text;
  return p.string();
}

// A simulated LAMOST sample (catalogue + spectra) made once by `run --to sample`.
struct Sample {
  explicit Sample(const std::string& name, int seed = 5) : dir(name) {
    const auto cfg =
        WriteFile(dir / "sample.yaml", "random_seed: " + std::to_string(seed) +
                                           "\noutput:\n  dir: " + (dir / "made").string() +
                                           "\nsample:\n  n_stars: 24\n");
    const auto r = Cli("run " + cfg + " --to sample");
    INFO(r.out);
    REQUIRE(r.rc == 0);
    stars = ReadCatalogue((dir / "made/catalogue.fits").string());
  }
  fs::path lamost() const { return dir / "made/lamost"; }
  // The catalogue as CSV; `edit` may change the records and the extra text appended.
  std::string Csv(const std::vector<StarRecord>& rows, const std::string& name) const {
    std::ostringstream s;
    s.precision(17);
    s << "obsid,designation,ra,dec,teff,logg,feh,alpha,phot_g_mean_mag,snrg,snrr,rv,ebv\n";
    for (const auto& r : rows) {
      s << r.obsid << ",\"" << r.designation << "\"," << r.ra << "," << r.dec << "," << r.teff
        << "," << r.logg << "," << r.feh << "," << r.alpha << "," << r.gmag << "," << r.snr_g << ","
        << r.snr_r << "," << r.rv << "," << r.ebv << "\n";
    }
    return WriteFile(dir / name, s.str());
  }
  // A files-mode config reading `catalogue` and `spectra`.
  std::string Config(const std::string& name, const std::string& catalogue, const fs::path& spectra,
                     int seed = 5, const std::string& extra = "") const {
    return WriteFile(
        dir / (name + ".yaml"),
        "random_seed: " + std::to_string(seed) + "\noutput:\n  dir: " + (dir / name).string() +
            "\ningest:\n  source: files\n  catalogue: " + catalogue + "\n  spectra_dir: " +
            spectra.string() + "\n  snr_min: 0\n  g_min: 0\n  teff_min: 3000\n  teff_max: 50000\n" +
            "sample:\n  n_stars: 24\n" + extra);
  }
  std::map<int64_t, std::string> Rejects(const std::string& name) const {
    FitsReader r((dir / name / "stars.fits").string());
    r.MoveTo("REJECTS");
    std::map<int64_t, std::string> out;
    if (r.NumRows() == 0) return out;
    const auto id = r.ReadColumn("OBSID");
    const auto why = r.ReadStringColumn("REASON");
    for (size_t i = 0; i < id.size(); ++i) out[static_cast<int64_t>(id[i])] = why[i];
    return out;
  }
  test::TempDir dir;
  std::vector<StarRecord> stars;
};

}  // namespace

TEST_CASE("bad configs: exit 2 naming the file and key", "[bad-input]") {
  const test::TempDir dir("bad-config");
  const std::string configs = std::string(CSST_SOURCE_DIR) + "/configs";
  const auto empty = WriteFile(dir / "empty.yaml", "");
  const auto comments = WriteFile(dir / "comments.yaml", "# nothing but a comment\n");
  const auto twice =
      WriteFile(dir / "twice.yaml", "output:\n  dir: x\nflatfield:\n  order: 2\n  order: 3\n");
  const auto files = [&](const std::string& name, const std::string& cat,
                         const std::string& spectra) {
    return WriteFile(dir / name, "output:\n  dir: x\ningest:\n  source: files\n  catalogue: " +
                                     cat + "\n  spectra_dir: " + spectra + "\n");
  };
  const auto csv = WriteFile(dir / "c.csv", "obsid\n1\n");
  CheckCases({
      {"CONFIG is a directory", "run " + configs, 2, "configs: is a directory, expected a file"},
      {"config CONFIG is a directory", "config " + dir.string(), 2,
       "is a directory, expected a file"},
      {"empty config file", "run " + empty, 2, "empty.yaml holds no keys"},
      {"config of comments only", "run " + comments, 2, "comments.yaml holds no keys"},
      {"a key given twice", "config " + twice, 2,
       "flatfield.order is given twice (" + twice + ":4:3 and " + twice + ":5:3)"},
      {"files mode, missing catalogue",
       "run " + files("m.yaml", (dir / "no.csv").string(), dir.string()), 2,
       "ingest.catalogue = " + (dir / "no.csv").string() + " does not exist"},
      {"files mode, catalogue is a directory", "run " + files("d.yaml", dir.string(), dir.string()),
       2, "ingest.catalogue = " + dir.string() + " is not a file"},
      {"files mode, missing spectra directory",
       "run " + files("s.yaml", csv, (dir / "none").string()), 2,
       "ingest.spectra_dir = " + (dir / "none").string() + " is not a directory"},
  });
  // Nothing ran: no output directory was made for any of them.
  CHECK_FALSE(fs::exists(dir / "x"));
}

TEST_CASE("bad catalogues: errors name the row and column, REJECTS give each star's reason",
          "[bad-input]") {
  const Sample s("bad-catalogue");
  REQUIRE(s.stars.size() == 24);
  auto run = [&](const std::string& name, const std::string& csv, const fs::path& spectra = {}) {
    return "run " + s.Config(name, csv, spectra.empty() ? s.lamost() : spectra) + " --to ingest";
  };
  auto rows = s.stars;
  rows[2].gmag = std::numeric_limits<double>::infinity();
  rows[3].ra = 400;
  const auto inf = s.Csv(rows, "inf.csv");
  rows = s.stars;
  rows[1].obsid = rows[0].obsid;
  const auto dup = s.Csv(rows, "dup.csv");
  const auto header = s.Csv({}, "header.csv");
  rows = s.stars;
  auto frac_text = ReadText(s.Csv(rows, "frac.csv"));
  frac_text.replace(frac_text.find(std::to_string(rows[4].obsid)),
                    std::to_string(rows[4].obsid).size(), "700000015.7");
  const auto frac = WriteFile(s.dir / "frac.csv", frac_text);
  auto huge_text = frac_text;
  huge_text.replace(huge_text.find("700000015.7"), 11, "1e30");
  const auto huge = WriteFile(s.dir / "huge.csv", huge_text);
  rows = s.stars;
  rows[0].designation = "J000\xff\xfe";
  const auto upper = s.Csv(rows, "upper.CSV");
  // Star 5's row points at a file whose header OBSID is another star's.
  rows = s.stars;
  const int64_t alien = 990000001;
  const auto alien_dir = s.dir / "alien-spectra";
  fs::create_directories(alien_dir);
  for (const auto& e : fs::directory_iterator(s.lamost()))
    fs::copy(e.path(), alien_dir / e.path().filename());
  fs::rename(alien_dir / ("spec-" + std::to_string(rows[5].obsid) + ".fits"),
             alien_dir / ("spec-" + std::to_string(alien) + ".fits"));
  rows[5].obsid = alien;
  const auto alien_csv = s.Csv(rows, "alien.csv");

  CheckCases({
      {"two rows with one obsid", run("dup", dup), 1,
       "dup.csv: line 2 and line 3 have the same obsid " + std::to_string(s.stars[0].obsid)},
      {"a header-only catalogue", run("header", header), 1,
       "header.csv: has no rows (only a header)"},
      {"an obsid with a fraction", run("frac", frac), 1,
       "line 6 column obsid: 700000015.70000005 is not an integer obsid"},
      {"an obsid past 2^53", run("huge", huge), 1,
       "line 6 column obsid: 1e+30 is not an integer obsid"},
      {"every star rejected", run("none", inf) + " --set ingest.snr_min=1000000", 1,
       "no star passed ingest"},
  });
  // None of the failed runs recorded an ingest product.
  for (const char* name : {"dup", "header", "frac", "huge", "none"}) {
    INFO(name);
    CHECK_FALSE(fs::exists(s.dir / name / "stars.fits"));
  }

  // Bad values in a row reject that star (the others go on), with the column and value named.
  REQUIRE(Cli(run("inf", inf)).rc == 0);
  auto rejects = s.Rejects("inf");
  CHECK(rejects.size() == 2);
  CHECK(rejects[s.stars[2].obsid] == "invalid: phot_g_mean_mag = inf is not a finite number");
  CHECK(rejects[s.stars[3].obsid] == "invalid: ra = 400 outside 0..360 deg");

  // Upper-case .CSV is a CSV; bytes outside printable ASCII are escaped so stars.fits stays valid
  // FITS.
  const auto up = Cli(run("upper", upper));
  INFO(up.out);
  REQUIRE(up.rc == 0);
  {
    FitsReader r((s.dir / "upper/stars.fits").string());
    r.MoveTo("STARS");
    CHECK(r.ReadStringColumn("DESIGNATION")[0] == "J000\\xFF\\xFE");
  }
  if (std::system("command -v fitsverify > /dev/null 2>&1") == 0) {
    const std::string cmd = "fitsverify " + (s.dir / "upper/stars.fits").string() +
                            " | grep -q 'Verification found 0 warning(s) and 0 error(s)'";
    CHECK(std::system(cmd.c_str()) == 0);
  }

  // A file whose header OBSID is not the row's obsid is rejected, not taken for that star.
  REQUIRE(Cli(run("alien", alien_csv, alien_dir)).rc == 0);
  rejects = s.Rejects("alien");
  CHECK(rejects[alien] == "identity: header OBSID " + std::to_string(s.stars[5].obsid) +
                              " differs from the catalogue's obsid " + std::to_string(alien));
}

TEST_CASE("external inputs edited in place make ingest rerun", "[bad-input]") {
  const Sample s("bad-edit");
  const auto csv = s.Csv(s.stars, "cat.csv");
  const auto cfg = s.Config("edit", csv, s.lamost());
  REQUIRE(Cli("run " + cfg + " --to ingest").rc == 0);
  CHECK(Cli("run " + cfg + " --to ingest").out.find("stage ingest: up to date") !=
        std::string::npos);
  auto rows = s.stars;
  rows[0].teff += 1;  // the catalogue changes, its name does not
  s.Csv(rows, "cat.csv");
  CHECK(Cli("run " + cfg + " --to ingest").out.find("stage ingest: start") != std::string::npos);
  // A spectrum edited in place, likewise.
  const auto spec = s.lamost() / ("spec-" + std::to_string(s.stars[0].obsid) + ".fits");
  std::string bytes = ReadText(spec);
  bytes[bytes.size() - 1] ^= 1;
  WriteFile(spec, bytes);
  CHECK(Cli("run " + cfg + " --to ingest").out.find("stage ingest: start") != std::string::npos);
}

TEST_CASE("apply refuses arguments outside the cube, in both forms alike", "[bad-input]") {
  const test::TempDir dir("bad-apply");
  const auto cfg = test::SmallConfig(dir, 20);
  REQUIRE(Cli("run " + cfg).rc == 0);
  // The full-resolution aXe input of the detectors asked for (issue #30 item 9), by name or CSST
  // chip id; degree 0 keeps the file to one 9216 x 9232 image.
  {
    CheckCases(
        {{"a detector that is none", "axe " + cfg + " --detector GX1", 2,
          "axe --detector GX1: not a detector"},
         {"an imaging chip", "axe " + cfg + " --detector 06", 2,
          "axe --detector 06: not a detector"},
         {"no fit yet",
          "axe " + cfg + " --set output.dir=" + (dir / "nothing").string() + " --detector GV1", 2,
          "flat_coeffs.fits does not exist: run `csst-flatcube run"}});
    const auto r = Cli("axe " + cfg + " --detector 26 --set assemble.axe_degree=0 --out " +
                       (dir / "axe").string());
    INFO(r.out);
    REQUIRE(r.rc == 0);
    FitsReader f((dir / "axe" / "flat_GV3_axe.fits").string());
    CHECK(f.NumHdus() == 1);
    CHECK(f.ImageDims() == std::vector<long>{9216, 9232});
    CHECK(f.KeyString("DETECTOR") == "26");
    CHECK(f.KeyString("DETNAME") == "GV3");
    CHECK(f.KeyLong("NCOEFF") == 1);
    CHECK(f.KeyLong("BINNING") == 1);
    CHECK(f.KeyDouble("CDELT1") == 1.0);
    CHECK(f.KeyDouble("CRVAL1") == 0.0);
    fs::remove_all(dir / "axe");
  }
  const auto ref = (dir / "out/flatcube/flat_GV1.fits").string();
  const auto axe = (dir / "out/flatcube/flat_GV1_axe_quicklook.fits").string();
  std::vector<Case> cases;
  for (const auto& cube : {ref, axe}) {
    const std::string a = "apply --cube " + cube;
    cases.push_back({"x off the detector", a + " --x 1e6 --y 100 --wavelength 5500", 2,
                     "x = 1e+06 is off the detector (0 .. 9215 pixels)"});
    cases.push_back(
        {"x is nan", a + " --x nan --y 100 --wavelength 5500", 2, "x = nan is off the detector"});
    cases.push_back({"negative y", a + " --x 100 --y -3 --wavelength 5500", 2,
                     "y = -3 is off the detector (0 .. 9231 pixels)"});
    cases.push_back({"negative wavelength", a + " --x 100 --y 100 --wavelength -5", 2,
                     "wavelength = -5 A is not a positive wavelength"});
    cases.push_back({"GU wavelength on a GV cube", a + " --x 100 --y 100 --wavelength 3000", 2,
                     "wavelength 3000 A is outside the cube"});
    cases.push_back({"a good point", a + " --x 100 --y 100 --wavelength 5500", 0,
                     "flat(x=100, y=100, lambda=5500 A) = "});
  }
  // Issue #29: a file that is not a cube is named as such, never with CFITSIO's numbers.
  const auto stars = (dir / "out/stars.fits").string();
  const auto text = WriteFile(dir / "text.fits", "x,y\n1,2\n");
  const auto empty = WriteFile(dir / "empty.fits", "");
  cases.push_back({"a FITS file that is not a cube",
                   "apply --cube " + stars + " --x 1 --y 1 --wavelength 5500", 1,
                   stars + ": not a flat cube: it has no SCI extension"});
  cases.push_back({"a text file", "apply --cube " + text + " --x 1 --y 1 --wavelength 5500", 1,
                   text + ": is not a FITS file (it does not begin with 'SIMPLE  =')"});
  cases.push_back({"an empty file", "apply --cube " + empty + " --x 1 --y 1 --wavelength 5500", 1,
                   empty + ": is empty, expected a FITS file"});
  CheckCases(cases);
  for (const auto& c : cases) CHECK(Cli(c.args).out.find("CFITSIO") == std::string::npos);
  // The voxels' DQ is printed with the value: a detector corner lies outside the 20 stars' area
  // (EXTRAPOLATED).
  {
    const FlatProduct product(ref);
    const int32_t dq = product.EvaluateMany({0}, {0}, {4100}).dq.at(0);
    REQUIRE(dq != 0);
    const auto r = Cli("apply --cube " + ref + " --x 0 --y 0 --wavelength 4100");
    INFO(r.out);
    CHECK(r.rc == 0);
    CHECK(r.out.find("DQ " + std::to_string(dq) + " (" + DqNames(dq) + ")") != std::string::npos);
    CHECK(DqNames(kDqNotConverged | kDqExtrapolated) == "NOT_CONVERGED|EXTRAPOLATED");
  }

  // Batch (issue #30 item 5): every row of a table, the same numbers as one point at a time; rows
  // Evaluate would refuse get DQ 16 and NaN instead of failing the batch.
  const auto csv = dir / "points.csv";
  std::ofstream(csv) << "x,y,wavelength\n100,100,5500\n9215,9231,6000\n4607.5,20,4500.25\n1e6,100,"
                        "5500\n100,100,3000\n";
  for (const auto& cube : {ref, axe}) {
    for (const std::string ext : {".csv", ".fits"}) {
      const auto out = (dir / ("out" + std::string(cube == ref ? "_ref" : "_axe") + ext)).string();
      const auto r = Cli("apply --cube " + cube + " --points " + csv.string() + " --out " + out);
      INFO(r.out);
      REQUIRE(r.rc == 0);
      CHECK(r.out.find("5 points evaluated, 2 outside the cube (DQ 16)") != std::string::npos);
      std::vector<double> flat, dq;
      if (ext == ".csv") {
        const auto t = ReadCsvTable(out);
        REQUIRE(t.header == std::vector<std::string>{"x", "y", "wavelength", "flat", "err", "dq"});
        for (const auto& row : t.rows) {
          flat.push_back(std::stod(row[3]));
          dq.push_back(std::stod(row[5]));
        }
      } else {
        FitsReader fr(out);
        fr.MoveTo("POINTS");
        flat = fr.ReadColumn("FLAT");
        dq = fr.ReadColumn("DQ");
      }
      REQUIRE(flat.size() == 5);
      const FlatProduct product(cube);
      const double pts[3][3] = {{100, 100, 5500}, {9215, 9231, 6000}, {4607.5, 20, 4500.25}};
      for (int i = 0; i < 3; ++i) {
        CHECK(flat[i] == Approx(product.Evaluate(pts[i][0], pts[i][1], pts[i][2])).epsilon(1e-8));
        CHECK((static_cast<int>(dq[i]) & kDqOutside) == 0);
      }
      CHECK(std::isnan(flat[3]));
      CHECK(static_cast<int>(dq[3]) == kDqOutside);
      CHECK(static_cast<int>(dq[4]) == kDqOutside);
    }
  }
  CheckCases({{"points without --out", "apply --cube " + ref + " --points " + csv.string(), 2,
               "usage error: apply --points needs --out"},
              {"points and a single point",
               "apply --cube " + ref + " --points " + csv.string() + " --x 1 --out o.csv", 2,
               "usage error: apply: --points replaces --x, --y and --wavelength"}});
}

TEST_CASE("a full disk is named as such, and the failed stage is not recorded", "[bad-input]") {
  const test::TempDir dir("bad-disk");
  fs::create_directories(dir / "small");
  if (::mount("tmpfs", (dir / "small").c_str(), "tmpfs", 0, "size=400k") != 0) {
    WARN("SKIPPED: cannot mount a small tmpfs here (needs root and CAP_SYS_ADMIN): "
         << std::strerror(errno));
    return;
  }
  const auto cfg = WriteFile(dir / "disk.yaml",
                             "output:\n  dir: " + (dir / "small/out").string() +
                                 "\nsample:\n  n_stars: 30\nnetwork:\n  mode: paper_errors\n");
  const auto r = Cli("run " + cfg);
  const bool manifest = fs::exists(dir / "small/out/manifest.json");
  const std::string recorded = manifest ? ReadText(dir / "small/out/manifest.json") : "";
  ::umount((dir / "small").c_str());
  INFO(r.out);
  CHECK(r.rc == 1);
  CHECK(r.out.find("no space left on device") != std::string::npos);
  CHECK(recorded.find("\"sample\"") == std::string::npos);
}

TEST_CASE("an output that cannot be created names the directory", "[bad-input]") {
  CHECK_THROWS_WITH(FitsWriter("/nonexistent-csst-dir/x.fits"),
                    Catch::Contains("/nonexistent-csst-dir/x.fits: creating file: directory "
                                    "/nonexistent-csst-dir does not exist"));
}

// Issue #29: an input keyed by identity holds each identity once, and a cell left empty rejects its
// star.
TEST_CASE("duplicate identities are errors naming both, empty cells reject their star",
          "[bad-input]") {
  const Sample s("bad-identity");
  const auto csv = s.Csv(s.stars, "all.csv");
  auto run = [&](const std::string& name, const std::string& catalogue, const fs::path& spectra) {
    return "run " + s.Config(name, catalogue, spectra) + " --to ingest";
  };
  // A second file holding star 3's OBSID under another name, with 1e30 times its flux: never used
  // silently.
  fs::create_directories(s.dir / "twice-spectra");
  for (const auto& e : fs::directory_iterator(s.lamost()))
    fs::copy(e.path(), s.dir / "twice-spectra" / e.path().filename());
  const auto first =
      s.dir / "twice-spectra" / ("spec-" + std::to_string(s.stars[3].obsid) + ".fits");
  fs::copy(first, s.dir / "twice-spectra" / "copy-of-star-3.fits");
  // A link that points at itself in the spectra folder is named and skipped, not a raw filesystem
  // error.
  fs::create_directories(s.dir / "loop-spectra");
  for (const auto& e : fs::directory_iterator(s.lamost()))
    fs::copy(e.path(), s.dir / "loop-spectra" / e.path().filename());
  fs::create_symlink("self.fits", s.dir / "loop-spectra" / "self.fits");
  // An rv cell left empty: that star is rejected with the column named, the others go on.
  auto text = ReadText(csv);
  const auto line_start = text.find("\n" + std::to_string(s.stars[2].obsid) + ",") + 1;
  const auto line_end = text.find('\n', line_start);
  auto line = text.substr(line_start, line_end - line_start);
  // the row ends "...,<rv>,<ebv>": empty the rv field
  const auto last = line.rfind(','), before = line.rfind(',', last - 1);
  line = line.substr(0, before + 1) + line.substr(last);
  text.replace(line_start, line_end - line_start, line);
  const auto empty_rv = WriteFile(s.dir / "empty_rv.csv", text);

  CheckCases({
      {"two spectrum files with one OBSID", run("twice", csv, s.dir / "twice-spectra"), 1,
       "copy-of-star-3.fits both hold OBSID " + std::to_string(s.stars[3].obsid) +
           " (each spectrum once: remove one)"},
  });
  CHECK_FALSE(fs::exists(s.dir / "twice" / "stars.fits"));
  const auto loop = Cli(run("loop", csv, s.dir / "loop-spectra"));
  INFO(loop.out);
  CHECK(loop.rc == 0);
  CHECK(loop.out.find("self.fits: not a readable file (a broken or looping link?), skipped") !=
        std::string::npos);

  REQUIRE(Cli(run("empty_rv", empty_rv, s.lamost())).rc == 0);
  const auto rejects = s.Rejects("empty_rv");
  REQUIRE(rejects.size() == 1);
  CHECK(rejects.at(s.stars[2].obsid) ==
        "missing: rv has no value (the column is given; without it 0 is assumed)");
}

// Issue #29: an output onto a folder or onto one of the command's inputs is a usage error, not a
// CFITSIO error or a lost input.
TEST_CASE("commands refuse an --out that is a folder or one of their inputs", "[bad-input]") {
  const test::TempDir dir("bad-out");
  const auto spectrum = (dir / "sun.fits").string();
  REQUIRE(Cli("synth --teff 5800 --logg 4.4 --feh 0 --out " + spectrum).rc == 0);
  const auto before = HashPath(spectrum);
  CheckCases({
      {"synth onto a folder", "synth --teff 5800 --logg 4.4 --feh 0 --out " + dir.string(), 2,
       "usage error: synth --out " + dir.string() + " is a folder, expected a file name"},
      {"predict onto a folder", "predict --out " + dir.string() + " " + spectrum, 2,
       "usage error: predict --out " + dir.string() + " is a folder"},
      {"predict onto its input", "predict --out " + spectrum + " " + spectrum, 2,
       "usage error: predict --out " + spectrum +
           " is one of the input files: it would be overwritten"},
      {"prepare onto its input", "prepare --out " + spectrum + " " + spectrum, 2,
       "usage error: prepare --out " + spectrum + " is one of the input files"},
  });
  CHECK(HashPath(spectrum) == before);
}

// Issue #29: runs that could not give a product say so. The spectra folder as output.dir is refused
// at load time (its FITS products would be read as spectra); a sample too small to fit any slice
// ends the run at fit with the figures instead of a cube of placeholder 1s; a product whose stars
// changed is stale, so a plain rerun repairs it.
TEST_CASE("runs that cannot give a product say why", "[bad-input]") {
  const Sample s("bad-runs");
  const auto cfg = s.Config("same", (s.dir / "made/catalogue.fits").string(), s.lamost(), 5, "");
  const auto r = Cli("run " + cfg + " --set output.dir=" + s.lamost().string());
  INFO(r.out);
  CHECK(r.rc == 2);
  CHECK(r.out.find("output.dir = " + s.lamost().string() +
                   " is the spectra folder ingest.spectra_dir") != std::string::npos);
  const test::TempDir dir("bad-one-star");
  const auto one = test::SmallConfig(dir, 1);
  const auto o = Cli("run " + one + " --set flatfield.min_points=12");
  INFO(o.out);
  CHECK(o.rc == 1);
  CHECK(o.out.find("fit: no slice of any detector could be fitted: at most 1 points per slice, and "
                   "a slice needs 12") != std::string::npos);
  CHECK_FALSE(fs::exists(dir / "out/flat_coeffs.fits"));
  // stars.fits replaced by another sample's (size and time kept): ingest is stale and the rerun
  // repairs it all.
  const test::TempDir two("bad-stale-stars");
  const auto a = test::SmallConfig(two, 12);
  REQUIRE(Cli("run " + a + " --to compare").rc == 0);
  const auto other = WriteFile(two / "other.yaml", ReadText(a));
  REQUIRE(Cli("run " + other +
              " --to ingest --set random_seed=12 --set output.dir=" + (two / "b").string())
              .rc == 0);
  const auto stars_a = two / "out/stars.fits", stars_b = two / "b/stars.fits";
  const auto when = fs::last_write_time(stars_a);
  fs::copy_file(stars_b, stars_a, fs::copy_options::overwrite_existing);
  fs::last_write_time(stars_a, when);
  const auto again = Cli("run " + a + " --to compare");
  INFO(again.out);
  CHECK(again.rc == 0);
  CHECK(again.out.find("stage ingest: start") != std::string::npos);
  CHECK(again.out.find("rerun predict") == std::string::npos);
}
