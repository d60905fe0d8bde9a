// Helpers shared by the tests: temp directories, paths, visible skips.
#pragma once

#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <string>

namespace csst::test {

// A fresh directory under the system temp dir, removed (with its contents) at destruction.
class TempDir {
 public:
  explicit TempDir(const std::string& name)
      : path_(std::filesystem::temp_directory_path() /
              ("csst-test-" + name + "-" + std::to_string(::getpid()))) {
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  operator const std::filesystem::path&() const { return path_; }
  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path operator/(const std::string& rel) const { return path_ / rel; }
  std::string string() const { return path_.string(); }

 private:
  std::filesystem::path path_;
};

inline std::filesystem::path SharedData(const std::string& rel) {
  return std::filesystem::path(CSST_SHARED_DIR) / "data" / rel;
}

// Skips visibly (ctest reports the test as skipped via the "SKIPPED:" marker).
#define CSST_REQUIRE_SHARED(path)                                                           \
  do {                                                                                      \
    if (!std::filesystem::exists(path)) {                                                   \
      WARN("SKIPPED: reference data " << (path).string() << " is absent (../shared/data)"); \
      return;                                                                               \
    }                                                                                       \
  } while (0)

}  // namespace csst::test
