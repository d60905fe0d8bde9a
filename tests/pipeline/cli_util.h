// Running the real command-line program from tests.
#pragma once

#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

namespace csst::test {

struct CmdResult {
  int rc;
  std::string out;
};
inline CmdResult Cli(const std::string& args) {
  const std::string cmd = std::string(CSST_CLI_PATH) + " " + args + " 2>&1";
  std::array<char, 4096> buf{};
  std::string out;
  FILE* p = ::popen(cmd.c_str(), "r");
  while (p && fgets(buf.data(), buf.size(), p)) out += buf.data();
  const int st = ::pclose(p);
  return {WIFEXITED(st) ? WEXITSTATUS(st) : -1, out};
}
inline std::string SmallConfig(const std::filesystem::path& dir, int n_stars = 12) {
  const auto path = dir / "small.yaml";
  std::ofstream(path)
      << "random_seed: 11\noutput:\n  dir: " << (dir / "out").string()
      << "\nsample:\n  n_stars: " << n_stars
      << "\nnetwork:\n  mode: paper_errors\nvalidate:\n  realizations: 2\n  report: false\n"
      << "flatfield:\n  min_points: 3\nassemble:\n  quicklooks: false\n";
  return path.string();
}
// Starts `csst-flatcube run CONFIG` in a child process (quiet logging); returns its pid.
inline pid_t SpawnRun(const std::string& cfg) {
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::execl(CSST_CLI_PATH, CSST_CLI_PATH, "run", cfg.c_str(), "--set", "log_level=error",
            static_cast<char*>(nullptr));
    ::_exit(127);
  }
  return pid;
}

// Starts `csst-flatcube run CONFIG` with its log on a pipe and returns once the log has shown a
// line holding `marker` (e.g. "stage sample: start"): a test that signals the run waits for this
// event, never for a time. *log_fd is the pipe's read end (close it after waitpid); -1 pid when the
// run ended first.
inline pid_t SpawnRunUntil(const std::string& cfg, const std::string& marker, int* log_fd,
                           std::string* seen) {
  int fds[2];
  if (::pipe(fds) != 0) return -1;
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::dup2(fds[1], 1);
    ::dup2(fds[1], 2);
    ::close(fds[0]);
    ::close(fds[1]);
    ::execl(CSST_CLI_PATH, CSST_CLI_PATH, "run", cfg.c_str(), "--set", "log_level=info",
            static_cast<char*>(nullptr));
    ::_exit(127);
  }
  ::close(fds[1]);
  *log_fd = fds[0];
  std::string text;
  char buf[4096];
  while (text.find(marker) == std::string::npos) {
    const ssize_t n = ::read(fds[0], buf, sizeof(buf));
    if (n <= 0) {  // the run ended without the marker
      if (seen) *seen = text;
      int st = 0;
      ::waitpid(pid, &st, 0);
      return -1;
    }
    text.append(buf, static_cast<size_t>(n));
  }
  if (seen) *seen = text;
  return pid;
}

}  // namespace csst::test
