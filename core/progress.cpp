#include "core/progress.h"

#include <unistd.h>

#include <cstdio>

#include "core/errors.h"
#include "core/log.h"

namespace csst {

std::atomic<bool>& CancelFlag() {
  static std::atomic<bool> flag{false};
  return flag;
}

void CheckCancelled() {
  if (CancelFlag().load(std::memory_order_relaxed)) throw Cancelled();
}

Progress::Progress(std::string label, long total)
    : label_(std::move(label)),
      total_(total),
      start_(std::chrono::steady_clock::now()),
      last_(start_),
      tty_(::isatty(STDERR_FILENO) != 0) {}

Progress::~Progress() {
  if (tty_ && !finished_ && done_ > 0) std::fputc('\n', stderr);
}

void Progress::Tick(long n) {
  CheckCancelled();
  done_ += n;
  const auto now = std::chrono::steady_clock::now();
  const double since = std::chrono::duration<double>(now - last_).count();
  if (since < (tty_ ? 0.2 : 5.0)) return;
  std::unique_lock<std::mutex> lock(mu_, std::try_to_lock);
  if (!lock.owns_lock()) return;
  last_ = now;
  Report(false);
}

void Progress::Finish() {
  std::lock_guard<std::mutex> lock(mu_);
  if (finished_) return;
  finished_ = true;
  if (tty_ && done_ > 0) {
    Report(true);
    std::fputc('\n', stderr);
  }
}

void Progress::Report(bool final) {
  const long d = done_.load();
  const double el =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  const double frac = total_ > 0 ? static_cast<double>(d) / total_ : 0.0;
  if (tty_) {
    const int width = 30;
    const int fill = static_cast<int>(frac * width + 0.5);
    std::string bar(fill, '#');
    bar.resize(width, '.');
    std::fprintf(stderr, "\r%-12s [%s] %ld/%ld %5.1f%% %6.1fs", label_.c_str(), bar.c_str(), d,
                 total_, 100 * frac, el);
    std::fflush(stderr);
  } else if (!final) {
    Logger("progress")
        ->info("{}: {}/{} ({:.1f}%) after {:.1f} s", label_, d, total_, 100 * frac, el);
  }
}

}  // namespace csst
