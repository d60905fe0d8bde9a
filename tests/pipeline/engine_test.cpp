#include "pipeline/engine.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <tbb/parallel_for.h>
#include <tbb/task_group.h>
#include <unistd.h>

#include <array>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <thread>

#include "core/errors.h"
#include "core/files.h"
#include "core/usage.h"
#include "pipeline/config.h"
#include "pipeline/store.h"
#include "tests/pipeline/cli_util.h"
#include "tests/test_util.h"

using namespace csst;
using test::Cli;
using test::SmallConfig;
using test::SpawnRun;
namespace fs = std::filesystem;

namespace {

std::map<std::string, int> g_runs;
bool g_fail_b = false;

void Write(const fs::path& p, const std::string& s) { std::ofstream(p) << s; }

// A toy three-stage chain A -> B -> C over real config sections.
std::vector<StageDef> Toy() {
  return {
      {"A",
       "",
       {"sample"},
       {},
       {"a.txt"},
       [](const Config& c, const StageIo& io) -> StageReport {
         ++g_runs["A"];
         Write(io.out.at("a.txt"), SectionText(c, "sample"));
         return {"A wrote a.txt", 0.25};
       }},
      {"B",
       "",
       {"flatfield"},
       {"a.txt"},
       {"b.txt"},
       [](const Config& c, const StageIo& io) -> StageReport {
         ++g_runs["B"];
         if (g_fail_b) {
           Write(io.out.at("b.txt"), "partial");
           throw Error("stage B failed on purpose");
         }
         Write(io.out.at("b.txt"), ReadText(io.in.at("a.txt")) + SectionText(c, "flatfield"));
         return {"B wrote b.txt", 0.5};
       }},
      {"C",
       "",
       {},
       {"b.txt"},
       {"c.txt"},
       [](const Config&, const StageIo& io) -> StageReport {
         ++g_runs["C"];
         Write(io.out.at("c.txt"), ReadText(io.in.at("b.txt")) + "C\n");
         return {"C wrote c.txt", 0.75};
       }},
  };
}

Config ToyConfig(const fs::path& dir, const std::vector<std::string>& sets = {}) {
  auto c = LoadConfigText("output:\n  dir: " + dir.string() + "\n", "toy.yaml", sets);
  return c;
}

std::string RanStages(const std::vector<StageOutcome>& o) {
  std::string s;
  for (const auto& x : o)
    if (x.ran) s += x.stage;
  return s;
}

}  // namespace

TEST_CASE("the manifest records each stage's CPU seconds and peak memory", "[engine]") {
  // The stage measures itself: it touches 300 MB and burns CPU, and reports how much CPU it used by
  // its own clock; the engine's record of the stage must hold at least that (the process's CPU
  // while the stage ran) and a peak RSS of at least the 300 MB it held.
  const auto dir = test::TempDir("engine-usage");
  double own_cpu = 0;
  const std::vector<StageDef> stages = {
      {"A",
       "",
       {},
       {},
       {"a.txt"},
       [&](const Config&, const StageIo& io) -> StageReport {
         const ProcessUsage t0 = ProcessUsage::Now();
         std::vector<char> held(size_t{300} << 20);
         for (size_t i = 0; i < held.size(); i += 4096) held[i] = static_cast<char>(i);
         double x = 0;
         while (ProcessUsage::Now().cpu_seconds - t0.cpu_seconds < 0.2)
           for (int k = 0; k < 100000; ++k) x += std::sqrt(k + x * 1e-9);
         own_cpu = ProcessUsage::Now().cpu_seconds - t0.cpu_seconds;
         Write(io.out.at("a.txt"), std::to_string(x + held[4096]));
         return {"A", 0.1};
       }},
  };
  RunPipeline(ToyConfig(dir), stages, {});
  const auto rec = nlohmann::json::parse(ReadText(dir / "manifest.json")).at("stages").at("A");
  CHECK(own_cpu >= 0.2);
  CHECK(rec.at("cpu_s").get<double>() >= own_cpu);
  CHECK(rec.at("peak_rss_mb").get<double>() >= 300.0);
  CHECK(rec.at("duration_s").get<double>() == 0.1);  // the stage's own report
}

TEST_CASE("stages rerun only when their config section or inputs change", "[engine]") {
  const auto dir = test::TempDir("engine-stale");
  const auto stages = Toy();
  const auto first = RunPipeline(ToyConfig(dir), stages, {});
  CHECK(RanStages(first) == "ABC");
  // Each stage's Result is kept: its report and its own wall time reach the outcome, the manifest
  // and the status rows.
  REQUIRE(first.size() == 3);
  CHECK(first[1].report == "B wrote b.txt");
  CHECK(first[1].seconds == 0.5);
  const auto manifest = nlohmann::json::parse(ReadText(dir / "manifest.json"));
  CHECK(manifest.at("stages").at("A").at("report") == "A wrote a.txt");
  CHECK(manifest.at("stages").at("C").at("duration_s").get<double>() == 0.75);
  const auto rows = PipelineStatus(ToyConfig(dir), stages);
  REQUIRE(rows.size() == 3);
  CHECK(rows[0].report == "A wrote a.txt");
  CHECK(rows[0].state == StageState::kUpToDate);
  CHECK(rows[2].duration_s == 0.75);
  CHECK(RanStages(RunPipeline(ToyConfig(dir), stages, {})) == "");
  CHECK(RanStages(RunPipeline(ToyConfig(dir, {"flatfield.order=3"}), stages, {})) == "BC");
  CHECK(RanStages(RunPipeline(ToyConfig(dir, {"flatfield.order=3", "sample.n_stars=7"}), stages,
                              {})) == "ABC");
  // A product changed behind the store's back makes its stage stale.
  // B's rewritten product has the same content as before, so C stays up to date.
  Write(dir / "b.txt", "tampered");
  CHECK(RanStages(RunPipeline(ToyConfig(dir, {"flatfield.order=3", "sample.n_stars=7"}), stages,
                              {})) == "B");
}

TEST_CASE("from, to and only select stages", "[engine]") {
  const auto dir = test::TempDir("engine-select");
  const auto stages = Toy();
  RunOptions to;
  to.to = "B";
  CHECK(RanStages(RunPipeline(ToyConfig(dir), stages, to)) == "AB");
  CHECK_FALSE(fs::exists(dir / "c.txt"));
  RunOptions from;
  from.from = "B";
  CHECK(RanStages(RunPipeline(ToyConfig(dir), stages, from)) == "BC");
  RunOptions only;
  only.only = "C";
  CHECK(RanStages(RunPipeline(ToyConfig(dir), stages, only)) == "C");
  // --only with a stale input is a clear error and runs nothing.
  CHECK_THROWS_WITH(RunPipeline(ToyConfig(dir, {"flatfield.order=4"}), stages, only),
                    "usage error: --only C needs stage B to be up to date first (config changed); "
                    "run without --only, or with --to B");
  RunOptions bad;
  bad.from = "Z";
  CHECK_THROWS_WITH(RunPipeline(ToyConfig(dir), stages, bad),
                    "usage error: --from Z: no such stage (stages: A, B, C)");
  RunOptions backwards;
  backwards.from = "C";
  backwards.to = "A";
  CHECK_THROWS_WITH(RunPipeline(ToyConfig(dir), stages, backwards),
                    "usage error: --from C comes after --to A in the stage order: nothing to run");
  RunOptions force;
  force.force = true;
  CHECK(RanStages(RunPipeline(ToyConfig(dir), stages, force)) == "ABC");
}

TEST_CASE("a failing stage surfaces once and leaves no partial product", "[engine]") {
  const auto dir = test::TempDir("engine-fail");
  const auto stages = Toy();
  g_fail_b = true;
  CHECK_THROWS_WITH(RunPipeline(ToyConfig(dir), stages, {}), "stage B failed on purpose");
  g_fail_b = false;
  CHECK(fs::exists(dir / "a.txt"));
  CHECK_FALSE(fs::exists(dir / "b.txt"));
  for (const auto& e : fs::directory_iterator(dir))
    CHECK(e.path().string().find(".tmp.") == std::string::npos);
  CHECK(RanStages(RunPipeline(ToyConfig(dir), stages, {})) == "BC");
}

TEST_CASE("a stage running beside a failing one does not commit what its cancelled loops left",
          "[engine]") {
  // Two independent stages: F fails; P runs a parallel loop that TBB cancels when F throws (the
  // loop then ends early without an exception). P must not be recorded as finished.
  const auto dir = test::TempDir("engine-cancel");
  // Every wait is for an event, none for a time: F starts, P's loop begins, F fails, P's items see
  // the cancellation.
  std::atomic<int> done{0};
  std::atomic<bool> f_started{false};
  const std::vector<StageDef> stages = {
      {"F",
       "",
       {"sample"},
       {},
       {"f.txt"},
       [&](const Config&, const StageIo&) -> StageReport {
         f_started = true;
         // fail once P's loop is under way (its first item done)
         while (done.load() == 0) std::this_thread::yield();
         throw Error("disk full on purpose");
       }},
      {"P",
       "",
       {"flatfield"},
       {},
       {"p.txt"},
       [&](const Config&, const StageIo& io) -> StageReport {
         // F holds the other thread from here on (it spins in its own body, stealing nothing), so
         // the items below, which wait for the cancellation F's failure brings, cannot starve it.
         while (!f_started.load()) std::this_thread::yield();
         tbb::parallel_for(0, 400, [&](int) {
           ++done;
           while (!tbb::is_current_task_group_canceling()) std::this_thread::yield();
         });
         Write(io.out.at("p.txt"), "items done: " + std::to_string(done.load()) + "\n");
         return {"", 0};
       }},
  };
  RunOptions two_threads;
  two_threads.threads = 2;
  CHECK_THROWS_WITH(RunPipeline(ToyConfig(dir), stages, two_threads), "disk full on purpose");
  INFO("items the loop finished: " << done.load());
  CHECK_FALSE(fs::exists(dir / "p.txt"));
  CHECK_FALSE(fs::exists(dir / "f.txt"));
  const auto manifest =
      fs::exists(dir / "manifest.json") ? ReadText(dir / "manifest.json") : std::string();
  CHECK(manifest.find("\"P\"") == std::string::npos);
}

TEST_CASE("one run at a time per output directory", "[engine]") {
  const auto dir = test::TempDir("engine-lock");
  ProductStore first(dir.path());
  CHECK_THROWS_WITH(ProductStore(dir.path()),
                    Catch::Contains("is in use by another csst-flatcube run (pid " +
                                    std::to_string(::getpid()) + ")"));
  ProductStore reader(dir.path(),
                      ProductStore::Access::kReadOnly);  // `stages` may look while a run writes
  // The temp file of the running writer survives a second run's attempt.
  Write(dir / "x.txt.tmp.999", "partial");
  CHECK_THROWS(ProductStore(dir.path()));
  CHECK(fs::exists(dir / "x.txt.tmp.999"));
}

// Issue #29: a product whose bytes change while its size and time are kept (an edit in place, then
// touch -r) is no longer trusted: its content must hash as recorded.
TEST_CASE("a product edited in place with its size and time kept makes its stage stale",
          "[engine]") {
  const auto dir = test::TempDir("engine-inplace");
  const auto stages = Toy();
  CHECK(RanStages(RunPipeline(ToyConfig(dir), stages, {})) == "ABC");
  const auto b = dir / "b.txt";
  struct stat before {};
  REQUIRE(::stat(b.c_str(), &before) == 0);
  auto text = ReadText(b);
  text[0] = text[0] == 'x' ? 'y' : 'x';  // same size, other content
  Write(b, text);
  const struct timespec times[2] = {before.st_atim, before.st_mtim};
  REQUIRE(::utimensat(AT_FDCWD, b.c_str(), times, 0) == 0);
  struct stat after {};
  REQUIRE(::stat(b.c_str(), &after) == 0);
  REQUIRE(after.st_size == before.st_size);
  REQUIRE(after.st_mtim.tv_nsec == before.st_mtim.tv_nsec);
  CHECK(RanStages(RunPipeline(ToyConfig(dir), stages, {})) == "B");
}

TEST_CASE("an external input edited in place makes its stage stale", "[engine]") {
  const auto dir = test::TempDir("engine-external");
  const auto ext = dir / "catalogue.csv";
  Write(ext, "obsid\n1\n");
  g_runs.clear();
  std::vector<StageDef> stages = Toy();
  stages[0].external_files = [ext](const Config&) {
    return std::vector<std::string>{ext.string()};
  };
  const auto config = ToyConfig(dir / "out");
  CHECK(RanStages(RunPipeline(config, stages, {})) == "ABC");
  CHECK(RanStages(RunPipeline(config, stages, {})) == "");
  Write(ext, "obsid\n2\n");                                  // same size, new content
  CHECK(RanStages(RunPipeline(config, stages, {})) == "A");  // B's input did not change in content
}

// ---- the real CLI --------------------------------------------------------------------------

namespace {
std::map<std::string, std::string> ProductHashes(const fs::path& out) {
  std::map<std::string, std::string> h;
  for (const auto& e : fs::directory_iterator(out)) {
    const auto name = e.path().filename().string();
    if (name != "manifest.json" && name != ".lock") h[name] = HashPath(e.path());
  }
  if (h.empty()) h["<none>"] = "";
  return h;
}
}  // namespace

TEST_CASE("CLI: exit codes, and a second run does no work", "[cli]") {
  const auto dir = test::TempDir("cli");
  const auto cfg = SmallConfig(dir);
  auto r = Cli("run " + cfg);
  REQUIRE(r.rc == 0);
  r = Cli("run " + cfg);
  CHECK(r.rc == 0);
  CHECK(r.out.find("0 stage(s) run") != std::string::npos);
  CHECK(Cli("run " + cfg + " --set flatfield.order=-1").rc == 2);
  CHECK(Cli("run " + cfg + " --from nosuchstage").rc == 2);
  CHECK(Cli("run").rc == 2);
  CHECK(Cli("--version").out.find("csst-flatcube") == 0);
  r = Cli("stages " + cfg);
  CHECK(r.rc == 0);
  CHECK(r.out.find("up to date") != std::string::npos);
  // Each stage's report, as the manifest keeps it: the sample's 12 stars, the two realizations.
  CHECK(r.out.find("\n             12 stars\n") != std::string::npos);
  CHECK(r.out.find("\n             2 realizations; shipped cube precision GU ") !=
        std::string::npos);
  const auto manifest = nlohmann::json::parse(ReadText(dir / "out/manifest.json"));
  CHECK(manifest.at("stages").at("sample").at("report") == "12 stars");
  CHECK(manifest.at("stages").at("predict").at("report") == "12 stars (paper errors)");
  CHECK(manifest.at("stages").at("fit").at("report").get<std::string>().find(
            "; degree GU 2 GV 2 GI 2") != std::string::npos);
  // `stages` looks and creates nothing: a config whose output folder does not exist shows every
  // stage missing
  const auto fresh = dir / "never-run";
  r = Cli("stages " + cfg + " --set output.dir=" + fresh.string());
  CHECK(r.rc == 0);
  CHECK(r.out.find("missing") != std::string::npos);
  CHECK_FALSE(fs::exists(fresh));
}

TEST_CASE("CLI: products are byte-identical with 1 and 2 threads", "[cli]") {
  // 70 realizations: the Monte Carlo's streaming reduction runs over three chunks (32 per chunk).
  ::setenv("SOURCE_DATE_EPOCH", "1700000000", 1);
  const auto d = test::TempDir("threads");
  const auto cfg = SmallConfig(d);
  REQUIRE(Cli("run " + cfg + " --threads 1 --set validate.realizations=70").rc == 0);
  CHECK(ReadText(d / "out/validation.json").find("\"realizations\": 70") != std::string::npos);
  const auto h1 = ProductHashes(d / "out");
  fs::remove_all(d / "out");
  REQUIRE(Cli("run " + cfg + " --threads 2 --set validate.realizations=70").rc == 0);
  const auto h2 = ProductHashes(d / "out");
  CHECK(h1.size() >= 14);
  for (const auto& [name, hash] : h1) {
    INFO(name);
    CHECK(h2.at(name) == hash);
  }
  ::unsetenv("SOURCE_DATE_EPOCH");
}

TEST_CASE("CLI: SIGKILL at random moments, then a rerun gives the uninterrupted products",
          "[cli]") {
  ::setenv("SOURCE_DATE_EPOCH", "1700000000", 1);
  const auto dir = test::TempDir("kill");
  const int n_stars = 40;  // a few seconds: long enough to be killed inside a stage
  const auto cfg = SmallConfig(dir, n_stars);
  REQUIRE(Cli("run " + cfg).rc == 0);
  const auto expected = ProductHashes(dir / "out");
  std::mt19937 gen(12345);
  for (int trial = 0; trial < 4; ++trial) {
    fs::remove_all(dir / "out");
    const pid_t pid = SpawnRun(cfg);
    REQUIRE(pid >= 0);
    ::usleep(std::uniform_int_distribution<int>(200000, 4000000)(gen));
    ::kill(pid, SIGKILL);
    int st = 0;
    ::waitpid(pid, &st, 0);
    const auto rerun = Cli("run " + cfg);
    REQUIRE(rerun.rc == 0);
    const auto got = ProductHashes(dir / "out");
    for (const auto& [name, hash] : expected) {
      INFO("trial " << trial << ", product " << name);
      CHECK(got.at(name) == hash);
    }
  }
  ::unsetenv("SOURCE_DATE_EPOCH");
}

namespace {
// A run that gets `sig` once it has said that its first stage started exits with `rc` and leaves
// neither a product nor a temp file. The test waits for that line (the handlers are installed
// before anything slow), never for a time, so it holds on a loaded machine.
void CheckSignalStopsCleanly(const std::string& name, int sig, int rc) {
  const auto dir = test::TempDir(name);
  // 300 stars: the sample stage (~20 spectra/s per core) is still running when the signal arrives.
  const auto cfg = SmallConfig(dir, 300);
  int log_fd = -1;
  std::string seen;
  const pid_t pid = test::SpawnRunUntil(cfg, "stage sample: start", &log_fd, &seen);
  INFO("log before the signal: " << seen);
  REQUIRE(pid >= 0);
  ::kill(pid, sig);
  char drain[4096];
  while (::read(log_fd, drain, sizeof(drain)) > 0) {
  }
  ::close(log_fd);
  int st = 0;
  ::waitpid(pid, &st, 0);
  REQUIRE(WIFEXITED(st));
  CHECK(WEXITSTATUS(st) == rc);
  CHECK_FALSE(fs::exists(dir / "out/catalogue.fits"));
  for (const auto& e : fs::directory_iterator(dir / "out")) {
    CHECK(e.path().filename().string().find(".tmp.") == std::string::npos);
  }
}
}  // namespace

TEST_CASE("CLI: SIGINT stops the run with exit code 130 and keeps nothing partial", "[cli]") {
  CheckSignalStopsCleanly("sigint", SIGINT, 130);
}

TEST_CASE("CLI: SIGTERM is handled like SIGINT (exit code 143, nothing partial)", "[cli]") {
  CheckSignalStopsCleanly("sigterm", SIGTERM, 143);
}
