#include "pipeline/store.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <nlohmann/json.hpp>

#include "build_config.h"
#include "core/errors.h"
#include "core/files.h"
#include "core/log.h"
#include "core/rng.h"

namespace csst {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

bool StatFile(const fs::path& p, uint64_t& size, int64_t& mtime_ns) {
  struct stat st {};
  if (::stat(p.c_str(), &st) != 0) return false;
  size = static_cast<uint64_t>(st.st_size);
  mtime_ns = static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000LL + st.st_mtim.tv_nsec;
  if (S_ISDIR(st.st_mode)) {
    // A directory product: size = total bytes, mtime = newest file.
    size = 0;
    for (const auto& e : fs::recursive_directory_iterator(p)) {
      std::error_code ec;  // a broken or looping link: no content to stat
      if (!e.is_regular_file(ec) || ec) continue;
      struct stat fst {};
      if (::stat(e.path().c_str(), &fst) != 0) return false;
      size += static_cast<uint64_t>(fst.st_size);
      mtime_ns = std::max<int64_t>(
          mtime_ns, static_cast<int64_t>(fst.st_mtim.tv_sec) * 1000000000LL + fst.st_mtim.tv_nsec);
    }
  }
  return true;
}

}  // namespace

std::string CodeVersion() { return std::string(CSST_VERSION) + "+" + CSST_GIT_DESCRIBE; }

ProductStore::ProductStore(fs::path dir, Access access) : dir_(std::move(dir)) {
  std::error_code ec;
  if (access ==
      Access::kReadOnly) {  // a look (`stages`) creates nothing: a missing folder has no products
    if (fs::is_directory(dir_, ec)) LoadManifest();
    return;
  }
  fs::create_directories(dir_, ec);
  if (ec) throw IoError("cannot create output directory " + dir_.string() + ": " + ec.message());
  // One writer per output directory: a second run would remove the first one's temp files.
  const fs::path lock = dir_ / ".lock";
  lock_fd_ = ::open(lock.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (lock_fd_ < 0) throw IoError("cannot open " + lock.string() + ": " + std::strerror(errno));
  if (::flock(lock_fd_, LOCK_EX | LOCK_NB) != 0) {
    char buf[32] = {0};
    const ssize_t got = ::pread(lock_fd_, buf, sizeof(buf) - 1, 0);
    ::close(lock_fd_);
    lock_fd_ = -1;
    const std::string pid = got > 0 ? std::string(buf, static_cast<size_t>(got)) : std::string("?");
    throw IoError("output directory " + dir_.string() +
                  " is in use by another csst-flatcube run (pid " + pid.substr(0, pid.find('\n')) +
                  "); wait for it or choose another output.dir");
  }
  const std::string pid = std::to_string(::getpid()) + "\n";
  if (::ftruncate(lock_fd_, 0) != 0 || ::pwrite(lock_fd_, pid.data(), pid.size(), 0) < 0) {
    // The pid is only for the message above; the lock itself holds.
  }
  const int removed = RemoveStaleTemps(dir_);
  if (removed > 0) {
    Logger("pipeline")->info("removed {} partial output(s) left by an interrupted run", removed);
  }
  LoadManifest();
}

ProductStore::~ProductStore() {
  if (lock_fd_ >= 0) ::close(lock_fd_);  // releases the flock
}

void ProductStore::LoadManifest() {
  const fs::path m = dir_ / "manifest.json";
  if (!fs::exists(m)) return;
  json j;
  try {
    j = json::parse(ReadText(m));
    for (auto& [name, r] : j.at("stages").items()) {
      StageRecord rec;
      rec.config_hash = r.at("config_hash");
      rec.code_version = r.at("code_version");
      rec.started = r.at("started");
      rec.duration_s = r.at("duration_s");
      rec.report = r.value("report", std::string());  // manifests before reports were kept: none
      rec.cpu_s = r.value("cpu_s", 0.0);              // nor these
      rec.peak_rss_mb = r.value("peak_rss_mb", 0.0);
      for (auto& [k, v] : r.at("inputs").items()) rec.input_hashes[k] = v;
      for (auto& [k, v] : r.at("outputs").items()) {
        rec.outputs[k] = ProductRecord{v.at("hash"), v.at("size"), v.at("mtime_ns")};
      }
      records_[name] = rec;
    }
  } catch (const json::exception& e) {
    Logger("pipeline")
        ->warn("{}: unreadable manifest ({}); every stage counts as missing", m.string(), e.what());
    records_.clear();
  }
}

void ProductStore::Save() const {
  json j;
  j["format"] = "csst-flatcube manifest 1";
  j["stages"] = json::object();
  for (const auto& [name, r] : records_) {
    json s;
    s["config_hash"] = r.config_hash;
    s["code_version"] = r.code_version;
    s["started"] = r.started;
    s["duration_s"] = r.duration_s;
    s["cpu_s"] = r.cpu_s;
    s["peak_rss_mb"] = r.peak_rss_mb;
    s["report"] = r.report;
    s["inputs"] = r.input_hashes;
    json outs = json::object();
    for (const auto& [k, v] : r.outputs) {
      outs[k] = {{"hash", v.hash}, {"size", v.size}, {"mtime_ns", v.mtime_ns}};
    }
    s["outputs"] = outs;
    j["stages"][name] = s;
  }
  WriteTextAtomically(dir_ / "manifest.json", j.dump(2) + "\n");
}

std::string ProductStore::ConfigHash(const Config& c, const StageDef& s) const {
  std::string text;
  for (const auto& sec : s.sections) text += SectionText(c, sec);
  if (s.external_files) {
    for (const auto& f : s.external_files(c)) {
      std::error_code ec;
      text += "file " + f + "=" +
              (std::filesystem::exists(f, ec) ? HashPath(f) : std::string("missing")) + "\n";
    }
  }
  return HashHex(text);
}

std::optional<StageRecord> ProductStore::Record(const std::string& stage) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = records_.find(stage);
  if (it == records_.end()) return std::nullopt;
  return it->second;
}

std::string ProductStore::ProductHash(const std::string& product) const {
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& [name, r] : records_) {
    auto it = r.outputs.find(product);
    if (it != r.outputs.end()) return it->second.hash;
  }
  return "";
}

std::string ProductStore::StaleReason(const Config& c, const StageDef& s) const {
  const auto rec = Record(s.name);
  if (!rec) return "never run";
  for (const auto& out : s.outputs) {
    auto it = rec->outputs.find(out);
    if (it == rec->outputs.end()) return "product " + out + " not recorded";
    uint64_t size = 0;
    int64_t mtime = 0;
    if (!StatFile(PathOf(out), size, mtime)) return "product " + out + " is missing";
    if (size != it->second.size || mtime != it->second.mtime_ns) {
      return "product " + out + " changed on disk";
    }
    // Size and time can be kept by an edit in place: the content must hash as recorded.
    const std::string key = PathOf(out).string() + " " + std::to_string(size) + " " +
                            std::to_string(mtime) + " " + it->second.hash;
    bool known = false;
    {
      std::lock_guard<std::mutex> lock(mu_);
      known = verified_.count(key) > 0;
    }
    if (!known) {
      if (HashPath(PathOf(out)) != it->second.hash) {
        return "product " + out +
               " changed on disk (its content no longer hashes as when it was made)";
      }
      std::lock_guard<std::mutex> lock(mu_);
      verified_.insert(key);
    }
  }
  if (rec->config_hash != ConfigHash(c, s)) return "config changed";
  if (rec->code_version != CodeVersion()) return "code version changed";
  for (const auto& in : s.inputs) {
    auto it = rec->input_hashes.find(in);
    const std::string now = ProductHash(in);
    if (it == rec->input_hashes.end() || now.empty() || it->second != now) {
      return "input " + in + " changed";
    }
  }
  return "";
}

StageState ProductStore::State(const Config& c, const StageDef& s) const {
  if (!Record(s.name)) return StageState::kMissing;
  for (const auto& out : s.outputs) {
    if (!fs::exists(PathOf(out))) return StageState::kMissing;
  }
  return StaleReason(c, s).empty() ? StageState::kUpToDate : StageState::kStale;
}

void ProductStore::Forget(const std::string& stage) {
  std::lock_guard<std::mutex> lock(mu_);
  if (records_.erase(stage) > 0) Save();
}

void ProductStore::Commit(const Config& c, const StageDef& s, const StageIo& io,
                          const std::string& started, const StageReport& report) {
  StageRecord rec;
  rec.config_hash = ConfigHash(c, s);
  rec.code_version = CodeVersion();
  rec.started = started;
  rec.duration_s = report.wall_seconds;
  rec.cpu_s = report.cpu_seconds;
  rec.peak_rss_mb = report.peak_rss_mb;
  rec.report = report.brief;
  for (const auto& in : s.inputs) rec.input_hashes[in] = ProductHash(in);
  for (const auto& out : s.outputs) {
    const fs::path tmp = io.out.at(out);
    if (!fs::exists(tmp)) {
      throw Error("stage " + s.name + " did not write its product " + out);
    }
    const fs::path final_path = PathOf(out);
    fs::create_directories(final_path.parent_path());
    ProductRecord pr;
    pr.hash = HashPath(tmp);
    CommitPath(tmp, final_path);
    StatFile(final_path, pr.size, pr.mtime_ns);
    rec.outputs[out] = pr;
  }
  std::lock_guard<std::mutex> lock(mu_);
  records_[s.name] = rec;
  Save();
}

}  // namespace csst
