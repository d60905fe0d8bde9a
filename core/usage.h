// What this process has used so far: CPU seconds (user + system, every thread) and its peak
// resident memory. The engine records both around each stage (manifest.json cpu_s, peak_rss_mb).
#pragma once

namespace csst {

struct ProcessUsage {
  double cpu_seconds = 0;
  double peak_rss_mb = 0;  // the high-water mark since the process started, MB (2^20 bytes)
  static ProcessUsage Now();
};

}  // namespace csst
