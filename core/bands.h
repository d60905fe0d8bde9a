// The three slitless bands, defined once: name, the method's wavelength limits, the centre where
// the resolving power is quoted, where one band's share of the wavelength axis ends where bands
// overlap, and the CSST chip ids of the band's four detectors (SLS data model). Every layer reads
// them from here; no other source spells a band name list or a band limit (ctest "band table").
//
// Per-band values travel as BandArray<T>, indexed by Band; in JSON and FITS they keep their names
// ("GU", "GV", "GI").
#pragma once

#include <array>
#include <cstddef>
#include <limits>
#include <optional>
#include <string>
#include <string_view>

namespace csst {

enum class Band { kGU = 0, kGV = 1, kGI = 2 };
inline constexpr int kNumBands = 3;
inline constexpr int kChipsPerBand = 4;  // CSST has four slitless detectors per band

struct BandSpec {
  Band band;
  const char* name;
  double lo, hi;  // the method's band limits [A, vacuum]: GU 2550-4200, GV 4000-6500, GI 6200-10000
  double centre;  // where instrument.resolving_power is quoted [A]
  // Upper edge of the band's share of the wavelength axis [A], where neighbouring bands overlap:
  // the network's sigma scale and the paper's SED errors give a wavelength to one band only.
  double share_hi;
  std::array<int, kChipsPerBand> chips;  // CSST SLS chip ids of detectors 1..4
};

inline constexpr std::array<BandSpec, kNumBands> kBands = {{
    {Band::kGU, "GU", 2550.0, 4200.0, 3375.0, 4100.0, {3, 4, 27, 28}},
    {Band::kGV, "GV", 4000.0, 6500.0, 5250.0, 6350.0, {2, 5, 26, 29}},
    {Band::kGI,
     "GI",
     6200.0,
     10000.0,
     8100.0,
     std::numeric_limits<double>::infinity(),
     {1, 10, 21, 30}},
}};
inline constexpr std::array<Band, kNumBands> kAllBands = {Band::kGU, Band::kGV, Band::kGI};

constexpr int Index(Band b) { return static_cast<int>(b); }
constexpr const BandSpec& Spec(Band b) { return kBands[static_cast<size_t>(b)]; }
constexpr const char* BandName(Band b) { return Spec(b).name; }
// Band of index 0..kNumBands-1 (the order of kBands); throws std::out_of_range otherwise.
Band BandAt(int index);
// "GU" -> Band::kGU; nullopt for anything else.
std::optional<Band> BandFromName(std::string_view name);
// "GU, GV and GI", for error messages.
std::string BandNameList();
// The band whose share of the axis holds lambda: GU below 4100 A, GV below 6350 A, GI above.
Band BandOfShare(double lambda);
// The first band whose limits [lo, hi] hold lambda; nullopt outside all three.
std::optional<Band> BandHolding(double lambda);

// One value per band, indexed by Band (or by its index 0..2, in kBands order).
template <class T>
struct BandArray {
  std::array<T, kNumBands> values{};

  constexpr BandArray() = default;
  constexpr BandArray(T gu, T gv, T gi) : values{gu, gv, gi} {}
  static constexpr BandArray Filled(const T& v) { return BandArray(v, v, v); }

  constexpr T& operator[](Band b) { return values[static_cast<size_t>(b)]; }
  constexpr const T& operator[](Band b) const { return values[static_cast<size_t>(b)]; }
  constexpr T& at(int index) { return values.at(static_cast<size_t>(index)); }
  constexpr const T& at(int index) const { return values.at(static_cast<size_t>(index)); }
  auto begin() { return values.begin(); }
  auto end() { return values.end(); }
  auto begin() const { return values.begin(); }
  auto end() const { return values.end(); }
  friend bool operator==(const BandArray& a, const BandArray& b) { return a.values == b.values; }
  friend bool operator!=(const BandArray& a, const BandArray& b) { return !(a == b); }
};

}  // namespace csst
