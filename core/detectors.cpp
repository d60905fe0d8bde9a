#include "core/detectors.h"

#include <algorithm>
#include <cctype>
#include <cstdio>

namespace csst {
namespace {
bool AllDigits(const std::string& s) {
  return !s.empty() && s.size() <= 3 &&
         std::all_of(s.begin(), s.end(), [](unsigned char c) { return std::isdigit(c); });
}
}  // namespace

int ChipId(int band, int k) {
  if (band < 0 || band >= kNumBands || k < 0 || k >= kChipsPerBand) return 0;
  return kBands[static_cast<size_t>(band)].chips[static_cast<size_t>(k)];
}

std::string DetectorName(int band, int k) {
  return std::string(BandName(BandAt(band))) + std::to_string(k + 1);
}

bool ParseDetectorName(const std::string& name, int* band, int* k) {
  std::string chip = name;
  if (chip.size() > 4 && (chip.compare(0, 4, "CHIP") == 0 || chip.compare(0, 4, "chip") == 0))
    chip = chip.substr(4);
  if (AllDigits(chip)) {
    const int id = std::stoi(chip);
    for (int b = 0; b < kNumBands; ++b)
      for (int i = 0; i < kChipsPerBand; ++i)
        if (ChipId(b, i) == id) {
          *band = b;
          *k = i;
          return true;
        }
    return false;
  }
  if (name.size() < 3) return false;
  const auto band_of_name = BandFromName(std::string_view(name).substr(0, 2));
  if (!band_of_name) return false;
  const int b = Index(*band_of_name);
  const std::string digits = name.substr(2);
  if (!AllDigits(digits)) return false;
  const int n = std::stoi(digits);
  if (n < 1) return false;
  *band = b;
  *k = n - 1;
  return true;
}

int ChipIdOf(const std::string& name) {
  int band = 0, k = 0;
  return ParseDetectorName(name, &band, &k) ? ChipId(band, k) : 0;
}

std::string ChipKeyword(const std::string& name) {
  int band = 0, k = 0;
  if (!ParseDetectorName(name, &band, &k) || ChipId(band, k) == 0) return name;
  char buf[8];
  std::snprintf(buf, sizeof(buf), "%02d", ChipId(band, k));
  return buf;
}

}  // namespace csst
