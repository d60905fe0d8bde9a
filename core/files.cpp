#include "core/files.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <vector>

#include "core/errors.h"

namespace csst {
namespace fs = std::filesystem;

namespace {

void FsyncOne(const fs::path& p, bool directory) {
  const int fd = ::open(p.c_str(), directory ? (O_RDONLY | O_DIRECTORY) : O_RDONLY);
  if (fd < 0) throw IoError("cannot open " + p.string() + " for fsync: " + std::strerror(errno));
  const int rc = ::fsync(fd);
  ::close(fd);
  if (rc != 0) throw IoError("fsync failed on " + p.string() + ": " + std::strerror(errno));
}

std::string Hex(uint64_t h) {
  char buf[17];
  std::snprintf(buf, sizeof(buf), "%016llx", static_cast<unsigned long long>(h));
  return buf;
}

uint64_t HashFileBytes(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  if (!in) throw IoError("cannot read " + p.string());
  uint64_t h = 0xcbf29ce484222325ULL;
  std::vector<char> buf(1 << 16);
  while (in) {
    in.read(buf.data(), buf.size());
    const auto n = in.gcount();
    for (std::streamsize i = 0; i < n; ++i) {
      h ^= static_cast<unsigned char>(buf[i]);
      h *= 0x100000001b3ULL;
    }
  }
  return h;
}

}  // namespace

std::string ProductNameOf(const fs::path& path) {
  const std::string s = path.string();
  const auto at = s.rfind(".tmp.");
  if (at == std::string::npos) return s;
  const std::string pid = s.substr(at + 5);
  if (pid.empty() || pid.find_first_not_of("0123456789") != std::string::npos) return s;
  return s.substr(0, at);
}

fs::path TempPathFor(const fs::path& final_path) {
  return fs::path(final_path.string() + ".tmp." + std::to_string(::getpid()));
}

void FsyncPath(const fs::path& path) {
  if (fs::is_directory(path)) {
    for (const auto& e : fs::recursive_directory_iterator(path)) {
      if (e.is_regular_file()) FsyncOne(e.path(), false);
    }
    FsyncOne(path, true);
  } else {
    FsyncOne(path, false);
  }
}

void CommitPath(const fs::path& temp, const fs::path& final_path) {
  FsyncPath(temp);
  std::error_code ec;
  if (fs::is_directory(temp) && fs::exists(final_path)) {
    const fs::path aside = fs::path(final_path.string() + ".old.tmp." + std::to_string(::getpid()));
    fs::rename(final_path, aside, ec);
    if (ec) throw IoError("cannot move aside " + final_path.string() + ": " + ec.message());
    fs::rename(temp, final_path, ec);
    if (ec)
      throw IoError("cannot rename " + temp.string() + " to " + final_path.string() + ": " +
                    ec.message());
    fs::remove_all(aside, ec);
  } else {
    fs::rename(temp, final_path, ec);
    if (ec)
      throw IoError("cannot rename " + temp.string() + " to " + final_path.string() + ": " +
                    ec.message());
  }
  const fs::path parent = final_path.has_parent_path() ? final_path.parent_path() : fs::path(".");
  FsyncOne(parent, true);
}

int RemoveStaleTemps(const fs::path& dir) {
  int removed = 0;
  if (!fs::is_directory(dir)) return 0;
  std::vector<fs::path> stale;
  for (const auto& e : fs::directory_iterator(dir)) {
    if (e.path().filename().string().find(".tmp.") != std::string::npos) stale.push_back(e.path());
  }
  for (const auto& p : stale) {
    std::error_code ec;
    fs::remove_all(p, ec);
    if (!ec) ++removed;
  }
  return removed;
}

std::string HashPath(const fs::path& path) {
  if (!fs::exists(path)) throw IoError("cannot hash " + path.string() + ": no such file");
  if (!fs::is_directory(path)) return Hex(HashFileBytes(path));
  std::vector<fs::path> files;
  for (const auto& e : fs::recursive_directory_iterator(path)) {
    std::error_code ec;  // a broken or looping link holds no content (the reader names it)
    if (e.is_regular_file(ec) && !ec) files.push_back(e.path());
  }
  std::sort(files.begin(), files.end());
  std::string acc;
  for (const auto& f : files) {
    acc += fs::relative(f, path).string() + ":" + Hex(HashFileBytes(f)) + "\n";
  }
  uint64_t h = 0xcbf29ce484222325ULL;
  for (unsigned char c : acc) {
    h ^= c;
    h *= 0x100000001b3ULL;
  }
  return Hex(h);
}

void WriteTextAtomically(const fs::path& path, const std::string& text) {
  AtomicOutput out(path);
  {
    std::ofstream f(out.temp(), std::ios::binary | std::ios::trunc);
    if (!f) throw IoError("cannot write " + out.temp().string());
    f << text;
    f.flush();
    if (!f) throw IoError("write failed on " + out.temp().string());
  }
  out.Commit();
}

std::string ReadText(const fs::path& path) {
  std::error_code ec;
  if (fs::is_directory(path, ec))
    throw IoError("cannot read " + path.string() + ": is a directory, expected a file");
  std::ifstream f(path, std::ios::binary);
  if (!f) throw IoError("cannot read " + path.string() + ": no such file or not readable");
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

AtomicOutput::AtomicOutput(fs::path final_path)
    : final_(std::move(final_path)), temp_(TempPathFor(final_)) {}

AtomicOutput::~AtomicOutput() {
  if (!committed_) {
    std::error_code ec;
    fs::remove_all(temp_, ec);
  }
}

void AtomicOutput::Commit() {
  CommitPath(temp_, final_);
  committed_ = true;
}

ScratchFile::ScratchFile(const fs::path& dir) : dir_(dir.string()) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  std::string name = (dir / ".scratch.XXXXXX").string();
  fd_ = mkstemp(name.data());
  if (fd_ < 0)
    throw IoError(dir_ + ": cannot create a scratch file (" + std::strerror(errno) + ")");
  unlink(name.c_str());  // nameless from here: nothing is left behind, even by a killed run
}

ScratchFile::~ScratchFile() {
  if (fd_ >= 0) close(fd_);
}

uint64_t ScratchFile::Append(const std::vector<char>& bytes) {
  const uint64_t at = size_;
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t w =
        pwrite(fd_, bytes.data() + done, bytes.size() - done, static_cast<off_t>(at + done));
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0)
      throw IoError(dir_ + ": cannot write " + std::to_string(bytes.size()) +
                    " bytes to a scratch file (" +
                    (w < 0 ? std::strerror(errno) : "nothing written") + ")");
    done += static_cast<size_t>(w);
  }
  size_ += bytes.size();
  return at;
}

std::vector<char> ScratchFile::Read(uint64_t offset, uint64_t size) const {
  if (offset + size > size_)
    throw IoError(dir_ + ": scratch file read past its end (internal error)");
  std::vector<char> out(size);
  size_t done = 0;
  while (done < size) {
    const ssize_t r = pread(fd_, out.data() + done, size - done, static_cast<off_t>(offset + done));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0)
      throw IoError(dir_ + ": cannot read a scratch file (" +
                    (r < 0 ? std::strerror(errno) : "end of file") + ")");
    done += static_cast<size_t>(r);
  }
  return out;
}

}  // namespace csst
