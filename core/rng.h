// Deterministic random streams: every work item seeds its own generator from
// (global seed, stage name, item index), never from time or thread id, so results do not depend on
// scheduling or thread count.
#pragma once

#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <string_view>

namespace csst {

// SplitMix64 finaliser (Steele, Lea & Flood 2014): a bijective 64-bit mixer.
inline uint64_t Mix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

// FNV-1a over a string: stable across platforms and runs.
inline uint64_t HashString(std::string_view s) {
  uint64_t h = 0xcbf29ce484222325ULL;
  for (unsigned char c : s) {
    h ^= c;
    h *= 0x100000001b3ULL;
  }
  return h;
}

// HashString as 16 lower-case hex digits: the identities and hashes products carry.
inline std::string HashHex(std::string_view s) {
  static const char* digits = "0123456789abcdef";
  uint64_t h = HashString(s);
  std::string out(16, '0');
  for (int i = 15; i >= 0; --i, h >>= 4) out[static_cast<size_t>(i)] = digits[h & 0xf];
  return out;
}

inline uint64_t ItemSeed(uint64_t seed, std::string_view stream, uint64_t index) {
  return Mix64(Mix64(seed ^ HashString(stream)) + Mix64(index));
}

// The generator of one work item. std::mt19937_64 is fully specified by the C++ standard; the
// distributions used on it are our own (below) because libstdc++'s are not portable across
// library versions.
class Rng {
 public:
  Rng(uint64_t seed, std::string_view stream, uint64_t index)
      : engine_(ItemSeed(seed, stream, index)) {}

  // Uniform in [0, 1) with 53 random bits.
  double Uniform() { return static_cast<double>(engine_() >> 11) * 0x1.0p-53; }
  double Uniform(double lo, double hi) { return lo + (hi - lo) * Uniform(); }

  // Standard normal by the Marsaglia polar method.
  double Normal() {
    if (has_spare_) {
      has_spare_ = false;
      return spare_;
    }
    double u, v, s;
    do {
      u = 2.0 * Uniform() - 1.0;
      v = 2.0 * Uniform() - 1.0;
      s = u * u + v * v;
    } while (s >= 1.0 || s == 0.0);
    const double m = std::sqrt(-2.0 * std::log(s) / s);
    spare_ = v * m;
    has_spare_ = true;
    return u * m;
  }
  double Normal(double mean, double sigma) { return mean + sigma * Normal(); }

  // Poisson deviate: inversion for small means, normal approximation with continuity for large.
  double Poisson(double mean) {
    if (mean <= 0) return 0.0;
    if (mean > 1000.0) {
      const double x = std::floor(mean + std::sqrt(mean) * Normal() + 0.5);
      return x < 0 ? 0.0 : x;
    }
    const double l = std::exp(-mean);
    double k = 0, p = Uniform();
    double term = l, cdf = l;
    while (p > cdf && k < 10000) {
      k += 1;
      term *= mean / k;
      cdf += term;
    }
    return k;
  }

  uint64_t Bits() { return engine_(); }

 private:
  std::mt19937_64 engine_;
  bool has_spare_ = false;
  double spare_ = 0.0;
};

}  // namespace csst
