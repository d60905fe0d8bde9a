// Subcommands of the csst-flatcube CLI besides run/stages/config (main.cpp).
#pragma once

#include <CLI/CLI.hpp>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace csst {

// The CONFIG argument and --set overrides of a subcommand that reads a run's configuration.
struct ConfigArgs {
  std::string path;
  std::vector<std::string> sets;
};
std::shared_ptr<ConfigArgs> AddConfigArgs(CLI::App* cmd);

// Registers a subcommand on `app`; returns the function to call when it was given.
using CommandAction = std::function<int()>;
// Throws a usage error (exit 2) naming `option` when `out` is a folder or one of `inputs` (it would
// be overwritten), instead of a CFITSIO error or a lost input.
void CheckOutputPath(const std::string& option, const std::string& out,
                     const std::vector<std::string>& inputs = {});
CommandAction AddSynthCommand(CLI::App& app);
CommandAction AddPrepareCommand(CLI::App& app);
CommandAction AddGridCommand(CLI::App& app);
CommandAction AddTrainCommand(CLI::App& app);
CommandAction AddEvaluateCommand(CLI::App& app);
CommandAction AddCalibrateCommand(CLI::App& app);
CommandAction AddPredictCommand(CLI::App& app);
CommandAction AddApplyCommand(CLI::App& app);
CommandAction AddAxeCommand(CLI::App& app);
CommandAction AddCatalogueCommand(CLI::App& app);
CommandAction AddGprCommand(CLI::App& app);

}  // namespace csst
