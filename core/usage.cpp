#include "core/usage.h"

#include <sys/resource.h>

namespace csst {

ProcessUsage ProcessUsage::Now() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  ProcessUsage p;
  p.cpu_seconds = static_cast<double>(u.ru_utime.tv_sec) + 1e-6 * u.ru_utime.tv_usec +
                  static_cast<double>(u.ru_stime.tv_sec) + 1e-6 * u.ru_stime.tv_usec;
  p.peak_rss_mb = static_cast<double>(u.ru_maxrss) / 1024.0;  // Linux: kB
  return p;
}

}  // namespace csst
