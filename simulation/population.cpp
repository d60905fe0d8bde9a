#include "simulation/population.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "core/errors.h"
#include "core/rng.h"

namespace csst {

void PopulationOptions::Validate() const {
  auto fail = [](const std::string& what) { throw ConfigError("config error: " + what); };
  if (n_stars < 1) fail("sample.n_stars must be >= 1");
  if (!(teff_min < teff_max)) fail("sample.teff_min must be < sample.teff_max");
  if (!(g_min < g_max)) fail("sample.g_min must be < sample.g_max");
}

double AlphaForFeh(double feh) { return std::clamp(-0.3 * feh, 0.0, 0.4); }

std::vector<StarRecord> DrawPopulation(const PopulationOptions& o, uint64_t seed) {
  std::vector<StarRecord> stars(o.n_stars);
  const double k = std::log(10.0) * 0.3;  // dN/dG ~ exp(k G)
  for (int i = 0; i < o.n_stars; ++i) {
    Rng rng(seed, "population", static_cast<uint64_t>(i));
    StarRecord& s = stars[i];
    s.obsid = 700000000 + i;
    // Truncated exponential in Teff by inversion.
    const double span = o.teff_max - o.teff_min;
    const double u = rng.Uniform();
    s.teff = o.teff_min - o.teff_scale * std::log(1 - u * (1 - std::exp(-span / o.teff_scale)));
    const bool giant = s.teff < 5600 && rng.Uniform() < o.giant_fraction;
    s.logg = giant ? rng.Normal(2.6, 0.4) : rng.Normal(4.2, 0.3);
    s.logg = std::clamp(s.logg, 0.5, 5.0);
    s.feh = std::clamp(rng.Normal(o.feh_mean, o.feh_sigma), -2.5, 0.5);
    s.alpha = AlphaForFeh(s.feh);
    // G from dN/dG ~ exp(k G) on [g_min, g_max] by inversion.
    const double v = rng.Uniform();
    s.gmag =
        std::log(std::exp(k * o.g_min) + v * (std::exp(k * o.g_max) - std::exp(k * o.g_min))) / k;
    // SNR scales as flux^(1/2) with 0.15 dex scatter, floored at snr_min (the selection cut).
    const double snr =
        o.snr_at_g_min * std::pow(10.0, -0.2 * (s.gmag - o.g_min) + 0.15 * rng.Normal());
    s.snr_g = std::max(snr, o.snr_min * 1.001);
    s.snr_r = s.snr_g * rng.Uniform(1.1, 1.6);
    s.rv = rng.Normal(0.0, o.rv_sigma);
    s.ebv = o.ebv_max > 0 ? rng.Uniform(0.0, o.ebv_max) : 0.0;
    s.ra = rng.Uniform(0.0, 360.0);
    s.dec =
        std::asin(rng.Uniform(std::sin(-10 * M_PI / 180), std::sin(60 * M_PI / 180))) * 180 / M_PI;
    char name[40];
    std::snprintf(name, sizeof(name), "J%08.4f%+08.4f", s.ra, s.dec);
    s.designation = name;
  }
  return stars;
}

}  // namespace csst
