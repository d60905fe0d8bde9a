// File-system helpers: atomic outputs and content hashes.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace csst {

// Temporary sibling of `final_path` used while an output is being written: "<final>.tmp.<pid>".
// Lives in the same directory so that the final rename is atomic.
std::filesystem::path TempPathFor(const std::filesystem::path& final_path);
// The product a temporary path stands for ("<final>.tmp.<pid>" -> "<final>"); other paths
// unchanged. For messages that name a product while it is being written.
std::string ProductNameOf(const std::filesystem::path& path);

// Flushes a file (or, for a directory, every file below it and the directory) to stable storage.
void FsyncPath(const std::filesystem::path& path);

// Moves `temp` onto `final_path` atomically after fsync. Works for files and directories; an
// existing directory at `final_path` is moved aside first and then removed.
void CommitPath(const std::filesystem::path& temp, const std::filesystem::path& final_path);

// Removes every "*.tmp.*" entry directly inside `dir` (leftovers of a killed run).
int RemoveStaleTemps(const std::filesystem::path& dir);

// 64-bit FNV-1a over the bytes of a file, or over (relative name, content hash) of every regular
// file below a directory in sorted order. Returned as 16 hex digits. Throws IoError if missing.
std::string HashPath(const std::filesystem::path& path);

// Writes `text` to `path` atomically (temp + fsync + rename).
void WriteTextAtomically(const std::filesystem::path& path, const std::string& text);

// Reads a whole text file; throws IoError naming the file.
std::string ReadText(const std::filesystem::path& path);

// RAII temp file: removed on destruction unless Commit() was called.
class AtomicOutput {
 public:
  explicit AtomicOutput(std::filesystem::path final_path);
  ~AtomicOutput();
  AtomicOutput(const AtomicOutput&) = delete;
  AtomicOutput& operator=(const AtomicOutput&) = delete;
  const std::filesystem::path& temp() const { return temp_; }
  void Commit();

 private:
  std::filesystem::path final_;
  std::filesystem::path temp_;
  bool committed_ = false;
};

// A scratch file that no run leaves behind: created in `dir` and unlinked at once, so it goes when
// its descriptor closes (at destruction, or when the process dies). A stage that streams over its
// sample spills there what it reads back many times. Append returns the offset it wrote at; Read
// may be called from several threads at once (pread). Errors (a full disk) are IoErrors naming
// `dir`.
class ScratchFile {
 public:
  explicit ScratchFile(const std::filesystem::path& dir);
  ~ScratchFile();
  ScratchFile(const ScratchFile&) = delete;
  ScratchFile& operator=(const ScratchFile&) = delete;
  uint64_t Append(const std::vector<char>& bytes);
  std::vector<char> Read(uint64_t offset, uint64_t size) const;
  uint64_t size() const { return size_; }

 private:
  std::string dir_;
  int fd_ = -1;
  uint64_t size_ = 0;
};

}  // namespace csst
