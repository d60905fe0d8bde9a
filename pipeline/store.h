// Product store: the run's work directory and its manifest (manifest.json).
// Per stage the manifest records: config hash, input product hashes, code version, start time,
// duration, and per output product its hash, size and mtime. A stage is up to date when all of
// these match the present.
#pragma once

#include <filesystem>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>

#include "core/enum_names.h"
#include "pipeline/stage.h"

namespace csst {

struct ProductRecord {
  std::string hash;
  uint64_t size = 0;
  int64_t mtime_ns = 0;
};

struct StageRecord {
  std::string config_hash;
  std::map<std::string, std::string> input_hashes;
  std::map<std::string, ProductRecord> outputs;
  std::string code_version;
  std::string started;     // UTC ISO time
  double duration_s = 0;   // the stage's own wall time (StageReport)
  double cpu_s = 0;        // the process's CPU seconds while it ran (StageReport::cpu_seconds)
  double peak_rss_mb = 0;  // the process's peak RSS when it ended (StageReport::peak_rss_mb)
  std::string report;      // the stage Result's BriefReport()
};

enum class StageState { kUpToDate, kStale, kMissing };
inline constexpr EnumNames<StageState, 3> kStageStateNames = {
    {{StageState::kUpToDate, "up to date"},
     {StageState::kStale, "stale"},
     {StageState::kMissing, "missing"}}};
constexpr const auto& NamesOf(StageState) { return kStageStateNames; }

class ProductStore {
 public:
  enum class Access { kWrite, kReadOnly };
  // Creates dir and loads the manifest. kWrite also takes an exclusive lock on dir/.lock (throws
  // IoError naming the holder's pid when another run holds it) and then removes stale temps.
  explicit ProductStore(std::filesystem::path dir, Access access = Access::kWrite);
  ~ProductStore();
  ProductStore(const ProductStore&) = delete;
  ProductStore& operator=(const ProductStore&) = delete;
  const std::filesystem::path& dir() const { return dir_; }
  std::filesystem::path PathOf(const std::string& product) const { return dir_ / product; }

  std::string ConfigHash(const Config& c, const StageDef& s) const;
  // Why the stage is not up to date ("" when it is).
  std::string StaleReason(const Config& c, const StageDef& s) const;
  StageState State(const Config& c, const StageDef& s) const;
  std::optional<StageRecord> Record(const std::string& stage) const;
  // Hash of a product as recorded by its producer ("" if unknown).
  std::string ProductHash(const std::string& product) const;

  // Moves the stage's temp outputs into place and records the stage.
  void Commit(const Config& c, const StageDef& s, const StageIo& io, const std::string& started,
              const StageReport& report);
  // Removes the record of a stage (before it reruns), so a crash leaves it missing.
  void Forget(const std::string& stage);

 private:
  void Save() const;  // caller holds mu_
  void LoadManifest();
  int lock_fd_ = -1;
  std::filesystem::path dir_;
  mutable std::mutex mu_;
  std::map<std::string, StageRecord> records_;
  // "path size mtime hash" of products whose content was hashed and found as recorded (hashed once
  // a run)
  mutable std::set<std::string> verified_;
};

std::string CodeVersion();

}  // namespace csst
