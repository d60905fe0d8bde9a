#include "core/bands.h"

#include <stdexcept>

namespace csst {

Band BandAt(int index) {
  if (index < 0 || index >= kNumBands) {
    throw std::out_of_range("band index " + std::to_string(index) + ", expected 0.." +
                            std::to_string(kNumBands - 1));
  }
  return kAllBands[static_cast<size_t>(index)];
}

std::optional<Band> BandFromName(std::string_view name) {
  for (const auto& s : kBands)
    if (name == s.name) return s.band;
  return std::nullopt;
}

std::string BandNameList() {
  std::string out;
  for (int i = 0; i < kNumBands; ++i) {
    if (i > 0) out += i + 1 == kNumBands ? " and " : ", ";
    out += kBands[static_cast<size_t>(i)].name;
  }
  return out;
}

Band BandOfShare(double lambda) {
  for (const auto& s : kBands)
    if (lambda < s.share_hi) return s.band;
  return kBands.back().band;
}

std::optional<Band> BandHolding(double lambda) {
  for (const auto& s : kBands)
    if (lambda >= s.lo && lambda <= s.hi) return s.band;
  return std::nullopt;
}

}  // namespace csst
