// csst-flatcube command-line interface. Exit codes: 0 success, 1 runtime failure, 2 usage or
// configuration error, 130 interrupted (SIGINT).
#include <CLI/CLI.hpp>
#include <csignal>
#include <cstdio>
#include <iostream>

#include "build_config.h"
#include "core/errors.h"
#include "core/log.h"
#include "core/mpi_world.h"
#include "core/progress.h"
#include "pipeline/commands.h"
#include "pipeline/config.h"
#include "pipeline/engine.h"
#include "pipeline/stage.h"

namespace {

volatile std::sig_atomic_t g_signal = 0;
// SIGINT and SIGTERM alike: the running stage stops at its next check, its outputs are discarded.
void OnSignal(int sig) {
  g_signal = sig;
  csst::CancelFlag().store(true);
}

// "rank k: " before an error under MPI with more than one rank, so that the job's log says which
// rank failed.
std::string RankPrefix() {
  return csst::MpiWorld::Distributed() ? "rank " + std::to_string(csst::MpiWorld::Rank()) + ": "
                                       : "";
}

std::string VersionText() {
  return std::string("csst-flatcube ") + CSST_VERSION + " (" + CSST_GIT_DESCRIBE + ")" +
         " cuda=" + (CSST_HAVE_CUDA ? "compiled" : "off") +
         " gdal=" + (CSST_HAVE_GDAL ? "on" : "off") + " mpi=" + (CSST_HAVE_MPI ? "on" : "off") +
         " build=" + CSST_BUILD_TYPE;
}

int Main(int argc, char** argv) {
  CLI::App app{"csst-flatcube: star-based 3D flat-field cube for the CSST slitless survey"};
  app.set_version_flag("--version", VersionText());
  app.require_subcommand(1);

  std::string config_path;
  std::vector<std::string> sets;
  csst::RunOptions ro;

  auto* run = app.add_subcommand("run", "run the pipeline (skips up-to-date stages)");
  run->add_option("CONFIG", config_path, "YAML configuration")->required();
  run->add_option("--from", ro.from, "force this stage and everything downstream");
  run->add_option("--to", ro.to, "stop after this stage");
  run->add_option("--only", ro.only, "run this stage alone (its inputs must be up to date)");
  run->add_flag("--force", ro.force, "rerun every selected stage");
  run->add_option("--threads", ro.threads, "worker threads (overrides config threads)")
      ->check(CLI::Range(1, 1024));
  run->add_option("--set", sets, "override a config key: key=value (repeatable)");

  auto* stages = app.add_subcommand("stages", "table of the pipeline's stages and their status");
  stages->add_option("CONFIG", config_path, "YAML configuration")->required();
  stages->add_option("--set", sets, "override a config key: key=value (repeatable)");

  auto* cfg =
      app.add_subcommand("config", "validate a configuration and print its effective values");
  cfg->add_option("CONFIG", config_path, "YAML configuration");
  bool schema = false;
  cfg->add_flag("--schema", schema, "print every key with type, default, range and meaning");
  cfg->add_option("--set", sets, "override a config key: key=value (repeatable)");

  std::vector<csst::CommandAction> actions = {
      csst::AddSynthCommand(app),     csst::AddPrepareCommand(app),  csst::AddGridCommand(app),
      csst::AddTrainCommand(app),     csst::AddEvaluateCommand(app), csst::AddCalibrateCommand(app),
      csst::AddPredictCommand(app),   csst::AddApplyCommand(app),    csst::AddAxeCommand(app),
      csst::AddCatalogueCommand(app), csst::AddGprCommand(app)};

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int rc = app.exit(e);
    return rc == 0 ? 0 : 2;
  }

  if (csst::MpiWorld::Distributed() && !*run) {
    throw csst::ConfigError(
        "usage error: under mpirun only `csst-flatcube run` spreads over ranks; run other "
        "commands as one process");
  }
  for (const auto& action : actions) {
    const int rc = action();
    if (rc >= 0) return rc;
  }

  if (*cfg) {
    if (schema) {
      for (const auto& e : csst::DescribeSchema()) {
        std::printf("%-28s %-7s default %-10s %-32s %s\n", e.key.c_str(), e.type.c_str(),
                    e.default_value.c_str(), e.constraint.c_str(), e.doc.c_str());
      }
      return 0;
    }
    if (config_path.empty())
      throw csst::ConfigError("usage error: config needs CONFIG or --schema");
    const auto c = csst::LoadConfig(config_path, sets);
    std::cout << csst::DumpConfig(c);
    return 0;
  }

  const auto config = csst::LoadConfig(config_path, sets);
  csst::SetLogLevel(config.log_level);
  if (*stages) {
    const auto rows = csst::PipelineStatus(config, csst::PipelineStages(config));
    std::printf("%-12s %-11s %-20s %9s  %s\n", "STAGE", "STATUS", "MADE (UTC)", "SECONDS",
                "PRODUCTS");
    for (const auto& r : rows) {
      std::printf("%-12s %-11s %-20s %9.2f  %s%s\n", r.stage.c_str(), csst::ToString(r.state),
                  r.started.empty() ? "-" : r.started.c_str(), r.duration_s, r.products.c_str(),
                  r.state == csst::StageState::kStale ? ("  (" + r.reason + ")").c_str() : "");
      if (!r.report.empty()) std::printf("%-12s %s\n", "", r.report.c_str());  // what it did
    }
    return 0;
  }
  csst::CheckCancelled();
  if (csst::MpiWorld::Distributed() && csst::MpiWorld::Rank() != 0) {
    csst::SetLogLevel(
        csst::LogLevel::kError);  // rank 0 logs; the others only their errors, which name the rank
    csst::RunWorkerRank(config, csst::PipelineStages(config), ro);
    return 0;
  }
  const auto outcomes = csst::RunPipeline(config, csst::PipelineStages(config), ro);
  csst::EndWorkerRanks();
  int ran = 0;
  for (const auto& o : outcomes) ran += o.ran;
  csst::Logger("pipeline")
      ->info("finished: {} stage(s) run, {} skipped; products in {}", ran, outcomes.size() - ran,
             config.output.dir);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::signal(SIGINT, OnSignal);  // first thing: an early Ctrl-C still exits cleanly with 130
  std::signal(SIGTERM, OnSignal);
  int rc = 0;
  try {
    csst::MpiWorld::Init(&argc, &argv);
    rc = Main(argc, argv);
  } catch (const csst::ConfigError& e) {
    std::fprintf(stderr, "%s%s\n", RankPrefix().c_str(), e.what());
    rc = 2;
  } catch (const csst::Cancelled& e) {
    const bool term = g_signal == SIGTERM;
    std::fprintf(stderr, "%sinterrupted (%s): no partial product was kept\n", RankPrefix().c_str(),
                 term ? "SIGTERM" : "SIGINT");
    rc = term ? 143 : 130;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%serror: %s\n", RankPrefix().c_str(), e.what());
    rc = 1;
  }
  // Under MPI a failure on any rank ends every rank: the others may be waiting for it.
  if (rc != 0 && csst::MpiWorld::Distributed()) {
    std::fflush(stderr);
    csst::MpiWorld::Abort(rc);
  }
  csst::MpiWorld::Finalize();
  return rc;
}
