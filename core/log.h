// Named loggers (spdlog) writing to stderr; one per module ("pipeline", "ingest", ...).
#pragma once

#include <spdlog/spdlog.h>

#include <memory>
#include <string>

namespace csst {

std::shared_ptr<spdlog::logger> Logger(const std::string& name);
// Sets the level of every logger: "debug", "info", "warn", "error", "off".
void SetLogLevel(const std::string& level);

}  // namespace csst
