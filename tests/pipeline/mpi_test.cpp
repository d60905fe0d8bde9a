// MPI (issue #27): `mpirun -np K csst-flatcube run CONFIG` gives the products of the one-process
// run, and a rank that dies ends the whole job with nothing recorded as finished; a rerun resumes.
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <csignal>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>

#include "build_config.h"
#include "core/files.h"
#include "io/fits.h"
#include "tests/pipeline/cli_util.h"
#include "tests/test_util.h"

namespace fs = std::filesystem;
using nlohmann::json;
using namespace csst;

namespace {
#if CSST_HAVE_MPI
std::string Mpirun(int ranks) {
  // OpenMPI refuses root unless told; CI runs as root. More ranks than cores need --oversubscribe.
  ::setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 1);
  ::setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 1);
  return std::string(CSST_MPIEXEC) + " " + CSST_MPIEXEC_NUMPROC_FLAG + " " + std::to_string(ranks) +
         " --oversubscribe ";
}

// flatfield: keys added to the flatfield section; extra: further sections.
std::string Config(const fs::path& dir, const std::string& name, int realizations,
                   bool model = false, const std::string& flatfield = "",
                   const std::string& extra = "") {
  const auto p = dir / (name + ".yaml");
  std::ofstream(p)
      << "random_seed: 13\noutput:\n  dir: " << (dir / name).string()
      << "\nstar_block: 7\nsample:\n  n_stars: 40\n  block_stars: 6\n"  // several blocks per rank
      << "ingest:\n  chunk: 5\n"
      << (model ? "network:\n  batch: 8\n" : "network:\n  mode: paper_errors\n")
      << "flatfield:\n  min_points: 3\n"
      << flatfield << "assemble:\n  quicklooks: false\n  axe_binning: 512\n  cube_binning: 512\n"
      << "validate:\n  realizations: " << realizations << "\n  sample_points: 6\n  report: false\n"
      << extra;
  return p.string();
}

int Shell(const std::string& cmd) {
  const int st = std::system(cmd.c_str());
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

// `csst-flatcube run CFG --threads 1` as one process (ranks 1) or under mpirun; its log in `log`;
// the exit code.
int RunRanks(int ranks, const std::string& cfg, const fs::path& log) {
  const std::string run =
      std::string(CSST_CLI_PATH) + " run " + cfg + " --threads 1 > " + log.string() + " 2>&1";
  return Shell(ranks == 1 ? run : Mpirun(ranks) + run);
}

// validation.json of a run, less the config file's own name.
json ValidationJson(const fs::path& out) {
  auto j = json::parse(ReadText(out / "validation.json"));
  j.erase("config");
  return j;
}

// Every column of every table HDU and every image of a FITS file, by HDU and name; a NaN (e.g. a
// k-fold score at a degree not tried) reads as the sentinel kNanSentinel, so that == compares it.
constexpr double kNanSentinel = -1.2345678e300;
std::map<std::string, std::vector<double>> Content(const fs::path& path) {
  std::map<std::string, std::vector<double>> out;
  FitsReader r(path.string());
  for (int h = 1; h <= r.NumHdus(); ++h) {
    r.MoveTo(h);
    const std::string key = std::to_string(h);
    if (r.IsImage()) {
      if (!r.ImageDims().empty()) out[key] = r.ReadImage();
      continue;
    }
    for (long c = 1; c <= r.KeyLong("TFIELDS"); ++c) {
      const std::string name = r.KeyString("TTYPE" + std::to_string(c));
      if (r.KeyString("TFORM" + std::to_string(c)).find('A') != std::string::npos)
        continue;  // names
      out[key + "/" + name] = r.ReadColumn(name);
    }
  }
  for (auto& [key, v] : out)
    for (double& x : v)
      if (std::isnan(x)) x = kNanSentinel;
  return out;
}
#endif
}  // namespace

TEST_CASE("mpirun with 2 and 3 ranks gives the one-process products", "[mpi]") {
#if !CSST_HAVE_MPI
  WARN("SKIPPED: built without MPI (CSST_MPI=OFF or no MPI found)");
  return;
#else
  const test::TempDir dir("mpi-same");
  REQUIRE(RunRanks(1, Config(dir, "k1", 7), dir / "k1.log") == 0);
  const auto one = ValidationJson(dir / "k1");
  REQUIRE(one.at("realizations") == 7);
  const auto one_fits = Content(dir / "k1" / "validation.fits");
  const auto one_coeffs = Content(dir / "k1" / "flat_coeffs.fits");
  std::map<std::string, std::map<std::string, std::vector<double>>>
      one_blocks;  // products made in blocks of stars
  for (const char* f :
       {"stars.fits", "observations.fits", "ratios.fits", "seds.fits", "true_flat.fits"})
    one_blocks[f] = Content(dir / "k1" / f);
  // Ingest's text columns (Content reads numbers): each star's spectrum hash and flux source, each
  // rejected row's reason.
  auto ingest_text = [](const fs::path& stars) {
    FitsReader r(stars.string());
    r.MoveTo("STARS");
    auto text = r.ReadStringColumn("SPECHASH");
    for (const auto& s : r.ReadStringColumn("FLUXSRC")) text.push_back(s);
    r.MoveTo("REJECTS");
    for (const auto& s : r.ReadStringColumn("REASON")) text.push_back(s);
    return text;
  };
  const auto one_ingest_text = ingest_text(dir / "k1" / "stars.fits");
  std::map<std::string, std::map<std::string, std::vector<double>>>
      one_sample;  // sample's products and files
  for (const char* f : {"catalogue.fits", "truth.fits", "lamost_truth.fits"})
    one_sample[f] = Content(dir / "k1" / f);
  for (const auto& e : fs::directory_iterator(dir / "k1" / "lamost"))
    one_sample["lamost/" + e.path().filename().string()] = Content(e.path());
  REQUIRE(one_sample.size() == 3 + 40);
  for (int k : {2, 3}) {
    const std::string name = "k" + std::to_string(k);
    const auto log = dir / (name + ".log");
    const int rc = RunRanks(k, Config(dir, name, 7), log);
    INFO(ReadText(log));
    REQUIRE(rc == 0);
    // Rank 0 logs; the others only errors: one "finished" line.
    const std::string text = ReadText(log);
    CHECK(text.find("finished: 8 stage(s) run") != std::string::npos);
    CHECK(text.find("finished: 8 stage(s) run") == text.rfind("finished: 8 stage(s) run"));
    // Every figure of validation.json and every number of validation.fits and flat_coeffs.fits, bit
    // for bit (the realizations are reduced in realization order on rank 0 whatever the rank
    // count).
    CHECK(ValidationJson(dir / name) == one);
    CHECK(Content(dir / name / "validation.fits") == one_fits);
    CHECK(Content(dir / name / "flat_coeffs.fits") == one_coeffs);
    // Ingested, observed and compared in blocks of stars spread over the ranks: every number of the
    // tables, and ingest's text.
    CHECK(ingest_text(dir / name / "stars.fits") == one_ingest_text);
    for (const auto& [f, content] : one_blocks) {
      INFO(f);
      CHECK(Content(dir / name / f) == content);
    }
    // The sample, synthesized in shares: every table and every LAMOST file holds the same numbers.
    for (const auto& [f, content] : one_sample) {
      INFO(f);
      REQUIRE(fs::exists(dir / name / f));
      CHECK(Content(dir / name / f) == content);
    }
    // Workers write nothing of their own.
    for (const auto& e : fs::directory_iterator(dir / name))
      CHECK(e.path().string().find(".worker") == std::string::npos);
  }
#endif
}

TEST_CASE(
    "mpirun shares the real-data stages truth and observations and gives the one-process products",
    "[mpi]") {
#if !CSST_HAVE_MPI
  WARN("SKIPPED: built without MPI (CSST_MPI=OFF or no MPI found)");
  return;
#else
  // Real-data layout from a simulated run: its catalogue, LAMOST files and observations.
  const test::TempDir dir("mpi-files");
  const auto made = dir / "made";
  REQUIRE(RunRanks(1, Config(dir, "made", 1) + " --to simulate", dir / "made.log") == 0);
  // Files not named spec-<obsid>.fits, so that ingest and truth read every header for its OBSID
  // (each rank a share), and one FITS file that is not a spectrum.
  const auto spectra = dir / "spectra";
  fs::create_directories(spectra);
  int files = 0;
  for (const auto& e : fs::directory_iterator(made / "lamost"))
    fs::copy_file(e.path(), spectra / ("s" + std::to_string(files++) + ".fits"));
  REQUIRE(files == 40);
  std::ofstream(spectra / "notes.fits") << "not a FITS file";
  // The files path: ingest of the catalogue and files, true SEDs from the synthesizer (truth),
  // the observations read back from a file (observations), in blocks of 7 stars or rows; the
  // flat's degrees by k-fold (held-out costs shared by the ranks). Ingest keeps the stars below
  // 6000 K: the others' rows of the file are rejects.
  auto config = [&](const std::string& name) {
    const auto p = dir / (name + ".yaml");
    std::ofstream(p) << "random_seed: 13\noutput:\n  dir: " << (dir / name).string()
                     << "\nstar_block: 7\ningest:\n  source: files\n  catalogue: "
                     << (made / "catalogue.fits").string()
                     << "\n  spectra_dir: " << spectra.string()
                     << "\n  chunk: 5\n  teff_max: 6000\nnetwork:\n  mode: paper_errors\n"
                     << "simulation:\n  truth_sed: synthesizer\n"
                     << "observations:\n  source: files\n  file: "
                     << (made / "observations.fits").string() << "\n"
                     << "flatfield:\n  min_points: 3\n  order_select: kfold\n  order_max: 3\n"
                     << "assemble:\n  quicklooks: false\n  axe_binning: 512\n  cube_binning: 512\n"
                     << "validate:\n  realizations: 2\n  sample_points: 6\n  report: false\n";
    return p.string();  // (no validation: the observations come from outside)
  };
  REQUIRE(RunRanks(1, config("f1"), dir / "f1.log") == 0);
  const std::string one_log = ReadText(dir / "f1.log");
  REQUIRE(one_log.find("stage truth: start") != std::string::npos);
  REQUIRE(one_log.find("stage observations: start") != std::string::npos);
  CHECK(one_log.find("unusable FITS file in the spectra folder") != std::string::npos);
  const char* products[] = {"stars.fits",        "truth.fits",  "lamost_truth.fits",
                            "observations.fits", "ratios.fits", "flat_coeffs.fits"};
  std::map<std::string, std::map<std::string, std::vector<double>>> one;
  for (const char* f : products) one[f] = Content(dir / "f1" / f);
  REQUIRE(one.at("truth.fits").size() > 0);
  // Rows of the observations file that no ingested star takes are rejects, with their reasons
  // (which name the run's stars.fits: here without the run's folder).
  auto rejects = [&](const std::string& name) {
    FitsReader r((dir / name / "observations.fits").string());
    r.MoveTo("REJECTS");
    auto why = r.NumRows() == 0 ? std::vector<std::string>{} : r.ReadStringColumn("REASON");
    const std::string folder = (dir / name).string();
    for (auto& w : why)
      for (size_t at; (at = w.find(folder)) != std::string::npos;) w.replace(at, folder.size(), "");
    return why;
  };
  const auto one_rejects = rejects("f1");
  REQUIRE(one_rejects.size() > 0);
  REQUIRE(one_rejects.size() < 120);
  for (int k : {2, 3}) {
    const std::string name = "f" + std::to_string(k);
    const auto log = dir / (name + ".log");
    const int rc = RunRanks(k, config(name), log);
    INFO(ReadText(log));
    REQUIRE(rc == 0);
    for (const char* f : products) {
      INFO(f);
      CHECK(Content(dir / name / f) == one.at(f));
    }
    CHECK(rejects(name) == one_rejects);
  }
  // truth_sed: prediction (the default): truth re-reads each star's own file, found through the
  // folder's headers, which the ranks share.
  auto predicted = [&](const std::string& name) {
    const auto p = dir / (name + ".yaml");
    std::ofstream(p) << "random_seed: 13\noutput:\n  dir: " << (dir / name).string()
                     << "\nstar_block: 7\ningest:\n  source: files\n  catalogue: "
                     << (made / "catalogue.fits").string()
                     << "\n  spectra_dir: " << spectra.string() << "\nnetwork:\n  batch: 8\n";
    return p.string() + " --to simulate";
  };
  REQUIRE(RunRanks(1, predicted("g1"), dir / "g1.log") == 0);
  REQUIRE(ReadText(dir / "g1.log").find("true SEDs (prediction)") != std::string::npos);
  const auto g_truth = Content(dir / "g1" / "truth.fits"),
             g_lamost = Content(dir / "g1" / "lamost_truth.fits");
  for (int k : {2, 3}) {
    const std::string name = "g" + std::to_string(k);
    const auto log = dir / (name + ".log");
    const int rc = RunRanks(k, predicted(name), log);
    INFO(ReadText(log));
    REQUIRE(rc == 0);
    CHECK(Content(dir / name / "truth.fits") == g_truth);
    CHECK(Content(dir / name / "lamost_truth.fits") == g_lamost);
  }
#endif
}

TEST_CASE("mpirun spreads the joint fit over ranks and gives the one-process products", "[mpi]") {
#if !CSST_HAVE_MPI
  WARN("SKIPPED: built without MPI (CSST_MPI=OFF or no MPI found)");
  return;
#else
  // Unknown star fluxes: the joint fit with a robust loss and k-fold degrees, each rank holding its
  // detectors' points and every rank taking the same steps from every detector's block sums.
  const test::TempDir dir("mpi-joint");
  const std::string flatfield =
      "  mode: joint\n  loss: cauchy\n  order_select: kfold\n  order_max: 3\n";
  const std::string extra = "compare:\n  flux_scale: unknown\n";
  REQUIRE(RunRanks(1, Config(dir, "j1", 3, false, flatfield, extra), dir / "j1.log") == 0);
  const std::string one_log = ReadText(dir / "j1.log");
  REQUIRE(one_log.find("joint") != std::string::npos);
  const auto one_coeffs = Content(dir / "j1" / "flat_coeffs.fits");
  const auto one = ValidationJson(dir / "j1");
  for (int k : {2, 3}) {
    const std::string name = "j" + std::to_string(k);
    const auto log = dir / (name + ".log");
    const int rc = RunRanks(k, Config(dir, name, 3, false, flatfield, extra), log);
    INFO(ReadText(log));
    REQUIRE(rc == 0);
    CHECK(ReadText(log).find("stage fit: " + std::to_string(k) + " ranks") != std::string::npos);
    CHECK(Content(dir / name / "flat_coeffs.fits") == one_coeffs);
    CHECK(ValidationJson(dir / name) == one);
  }
#endif
}

TEST_CASE("a rank killed with SIGKILL ends the job, nothing is recorded, and a rerun resumes",
          "[mpi]") {
#if !CSST_HAVE_MPI
  WARN("SKIPPED: built without MPI (CSST_MPI=OFF or no MPI found)");
  return;
#else
  const test::TempDir dir("mpi-kill");
  const auto cfg = Config(dir, "run", 40);
  int fds[2];
  REQUIRE(::pipe(fds) == 0);
  const std::string cmd = Mpirun(2) + CSST_CLI_PATH + " run " + cfg + " --threads 1";
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::setpgid(0, 0);
    ::dup2(fds[1], 1);
    ::dup2(fds[1], 2);
    ::close(fds[0]);
    ::close(fds[1]);
    ::execl("/bin/sh", "sh", "-c", ("exec " + cmd).c_str(), static_cast<char*>(nullptr));
    ::_exit(127);
  }
  ::close(fds[1]);
  // Wait for the event, not a time: rank 0 has started the distributed stage. Rank 1 cannot have
  // ended by then: it ends only when rank 0 says the run is over, which needs rank 1's realizations
  // first.
  std::string text;
  char buf[4096];
  while (text.find("stage validate: start") == std::string::npos) {
    const ssize_t n = ::read(fds[0], buf, sizeof(buf));
    if (n <= 0) break;
    text.append(buf, static_cast<size_t>(n));
  }
  INFO(text);
  REQUIRE(text.find("stage validate: start") != std::string::npos);
  // Rank 1: the csst-flatcube child of mpirun whose environment says OMPI_COMM_WORLD_RANK=1.
  pid_t rank1 = -1;
  for (const auto& e : fs::directory_iterator("/proc")) {
    const std::string p = e.path().filename().string();
    if (p.find_first_not_of("0123456789") != std::string::npos) continue;
    std::ifstream env(e.path() / "environ");
    std::string all((std::istreambuf_iterator<char>(env)), std::istreambuf_iterator<char>());
    std::ifstream exe(e.path() / "cmdline");
    std::string cmdline((std::istreambuf_iterator<char>(exe)), std::istreambuf_iterator<char>());
    if (cmdline.find(cfg) == std::string::npos || cmdline.find("mpirun") != std::string::npos)
      continue;
    if (all.find(std::string("OMPI_COMM_WORLD_RANK=1") + '\0') != std::string::npos)
      rank1 = std::stoi(p);
  }
  REQUIRE(rank1 > 0);
  REQUIRE(::kill(rank1, SIGKILL) == 0);
  for (ssize_t n; (n = ::read(fds[0], buf, sizeof(buf))) > 0;)
    text.append(buf, static_cast<size_t>(n));
  ::close(fds[0]);
  int st = 0;
  ::waitpid(pid, &st, 0);
  INFO(text);
  CHECK(WIFEXITED(st));
  CHECK(WEXITSTATUS(st) != 0);
  CHECK(text.find("rank 1") != std::string::npos);  // mpirun names the rank and the signal
  CHECK(text.find("signal 9") != std::string::npos);
  CHECK_FALSE(fs::exists(dir / "run" / "validation.json"));
  // The rerun resumes: the stages before validate are up to date, validate runs and is recorded.
  const auto r = test::Cli("run " + cfg + " --threads 1");
  INFO(r.out);
  CHECK(r.rc == 0);
  CHECK(r.out.find("stage fit: up to date") != std::string::npos);
  CHECK(r.out.find("stage validate: start") != std::string::npos);
  CHECK(fs::exists(dir / "run" / "validation.json"));
#endif
}

TEST_CASE("mpirun shares the network's stars over ranks and writes the one-process seds.fits",
          "[mpi]") {
#if !CSST_HAVE_MPI
  WARN("SKIPPED: built without MPI (CSST_MPI=OFF or no MPI found)");
  return;
#else
  const test::TempDir dir("mpi-predict");
  REQUIRE(RunRanks(1, Config(dir, "k1", 2, true), dir / "k1.log") == 0);
  const auto one = Content(dir / "k1" / "seds.fits");
  REQUIRE(one.at("2/MU").size() == 40 * 574);
  for (int k : {2, 3}) {  // 5 batches of 8 stars: shares of 1-2 batches per rank
    const std::string name = "k" + std::to_string(k);
    const auto log = dir / (name + ".log");
    const int rc = RunRanks(k, Config(dir, name, 2, true), log);
    INFO(ReadText(log));
    REQUIRE(rc == 0);
    CHECK(Content(dir / name / "seds.fits") == one);
    CHECK(ValidationJson(dir / name) == ValidationJson(dir / "k1"));
  }
#endif
}
