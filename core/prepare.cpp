#include "core/prepare.h"

#include <cmath>
#include <cstdio>

#include "core/errors.h"

namespace csst {

void PrepareOptions::Validate() const {
  if (window < 1 || window % 2 == 0) {
    throw ConfigError("config error: ingest.window = " + std::to_string(window) +
                      " violates window odd and >= 1");
  }
  if (!(min_coverage > 0 && min_coverage <= 1)) {
    throw ConfigError("config error: ingest.min_coverage must be in (0, 1]");
  }
}

PreparedInput PrepareNetworkInput(const Spectrum& observed, double z, const PrepareOptions& o,
                                  const std::string& what) {
  Spectrum rest = observed;
  ShiftToRestFrame(rest, z);
  // An input pixel needs 60% of its width covered by good data (a single masked LAMOST pixel
  // inside a 2-pixel-wide input pixel does not kill it).
  const auto resampled = ResampleFluxConserving(rest, InputGrid(), 0.6);
  const auto norm = NormaliseContinuum(resampled, o.window);
  PreparedInput out;
  const int n = InputGrid().size();
  out.flux.resize(n);
  out.err.resize(n);
  out.mask.resize(n);
  int good = 0;
  for (int i = 0; i < n; ++i) {
    const bool bad =
        norm.mask[i] != 0 || !std::isfinite(norm.flux[i]) || !std::isfinite(norm.err[i]);
    out.mask[i] = bad ? 1 : 0;
    out.flux[i] = bad ? 1.0f : static_cast<float>(norm.flux[i]);
    out.err[i] = bad ? kMaskedError : static_cast<float>(norm.err[i]);
    good += !bad;
  }
  out.coverage = static_cast<double>(good) / n;
  if (out.coverage < o.min_coverage) {
    char buf[160];
    std::snprintf(buf, sizeof(buf), "coverage %.3f of 4000-7000 A below min_coverage %.3f",
                  out.coverage, o.min_coverage);
    throw Error(what + ": " + buf);
  }
  return out;
}

}  // namespace csst
