// Named loggers (spdlog) writing to stderr; one per module ("pipeline", "ingest", ...).
#pragma once

#include <spdlog/spdlog.h>

#include <memory>
#include <string>

#include "core/enum_names.h"

namespace csst {

std::shared_ptr<spdlog::logger> Logger(const std::string& name);
// log_level: what the loggers print (each level and those above it).
enum class LogLevel { kDebug, kInfo, kWarn, kError };
inline constexpr EnumNames<LogLevel, 4> kLogLevelNames = {{{LogLevel::kDebug, "debug"},
                                                           {LogLevel::kInfo, "info"},
                                                           {LogLevel::kWarn, "warn"},
                                                           {LogLevel::kError, "error"}}};
constexpr const auto& NamesOf(LogLevel) { return kLogLevelNames; }

// Sets the level of every logger.
void SetLogLevel(LogLevel level);

}  // namespace csst
