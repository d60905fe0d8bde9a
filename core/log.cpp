#include "core/log.h"

#include <spdlog/sinks/stdout_color_sinks.h>

#include <mutex>

namespace csst {

std::shared_ptr<spdlog::logger> Logger(const std::string& name) {
  static std::mutex mu;
  std::lock_guard<std::mutex> lock(mu);
  if (auto l = spdlog::get(name)) return l;
  auto l = spdlog::stderr_color_mt(name);
  l->set_pattern("%Y-%m-%d %H:%M:%S [%n] %^%l%$: %v");
  l->set_level(spdlog::get_level());
  return l;
}

void SetLogLevel(LogLevel level) {
  switch (level) {
    case LogLevel::kDebug:
      spdlog::set_level(spdlog::level::debug);
      return;
    case LogLevel::kInfo:
      spdlog::set_level(spdlog::level::info);
      return;
    case LogLevel::kWarn:
      spdlog::set_level(spdlog::level::warn);
      return;
    case LogLevel::kError:
      spdlog::set_level(spdlog::level::err);
      return;
  }
}

}  // namespace csst
