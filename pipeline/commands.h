// Subcommands of the csst-flatcube CLI besides run/stages/config (main.cpp).
#pragma once

#include <CLI/CLI.hpp>

#include <functional>

namespace csst {

// Registers a subcommand on `app`; returns the function to call when it was given.
using CommandAction = std::function<int()>;
CommandAction AddSynthCommand(CLI::App& app);
CommandAction AddPrepareCommand(CLI::App& app);
CommandAction AddGridCommand(CLI::App& app);
CommandAction AddTrainCommand(CLI::App& app);
CommandAction AddEvaluateCommand(CLI::App& app);
CommandAction AddCalibrateCommand(CLI::App& app);
CommandAction AddPredictCommand(CLI::App& app);
CommandAction AddApplyCommand(CLI::App& app);
CommandAction AddCatalogueCommand(CLI::App& app);
CommandAction AddGprCommand(CLI::App& app);

}  // namespace csst
