// Progress of long work: a bar on a TTY, a log line every few seconds otherwise. Thread-safe.
// Also the cancellation point: Tick() throws Cancelled once a SIGINT was received.
#pragma once

#include <atomic>
#include <chrono>
#include <mutex>
#include <string>

namespace csst {

// Set by the SIGINT handler; checked by Progress::Tick and CheckCancelled.
std::atomic<bool>& CancelFlag();
void CheckCancelled();  // throws Cancelled if the flag is set

class Progress {
 public:
  Progress(std::string label, long total);
  ~Progress();
  void Tick(long n = 1);
  void Finish();

 private:
  void Report(bool final);
  std::string label_;
  long total_;
  std::atomic<long> done_{0};
  std::mutex mu_;
  std::chrono::steady_clock::time_point start_, last_;
  bool tty_;
  bool finished_ = false;
};

}  // namespace csst
