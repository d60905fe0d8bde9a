#include "simulation/stellar/atmosphere.h"

#include <algorithm>
#include <cmath>

#include "core/errors.h"

namespace csst::stellar {
namespace {

constexpr double kBoltz = 1.380649e-16;     // erg/K
constexpr double kBoltzEv = 8.617333e-5;    // eV/K
constexpr double kAmu = 1.66053907e-24;     // g
constexpr double kSahaConst = 2.41469e15;   // (2 pi m_e k / h^2)^(3/2) [cm^-3 K^-3/2]
constexpr double kThomson = 6.6524587e-25;  // cm^2
constexpr double kIonH = 13.598;            // eV
constexpr double kHc_eVA = 12398.42;        // h c [eV A]

double Saha(double T, double chi, double u_lower, double u_upper) {
  return 2.0 * u_upper / u_lower * kSahaConst * T * std::sqrt(T) * std::exp(-chi / (kBoltzEv * T));
}

// Ionisation fractions and the resulting electron supply at given ne for all elements.
struct Eos {
  double T;
  std::vector<double> phi1, phi2;  // Saha factors
  explicit Eos(double t) : T(t) {
    for (const auto& e : Elements()) {
      phi1.push_back(Saha(T, e.chi1, e.u0, e.u1));
      phi2.push_back(e.chi2 > 0 ? Saha(T, e.chi2, e.u1, e.u2) : 0.0);
    }
  }
};

void SolveEos(double T, double pg, const std::vector<double>& abund, Layer& L) {
  const Eos eos(T);
  const double ntot = pg / (kBoltz * T);
  double sum_ab = 0;
  for (double a : abund) sum_ab += a;
  auto excess = [&](double ne) {  // electrons supplied minus ne
    const double nh = (ntot - ne) / sum_ab;
    double supply = 0;
    for (size_t i = 0; i < abund.size(); ++i) {
      const double f1 = eos.phi1[i] / ne, f2 = eos.phi2[i] / ne;
      const double x0 = 1.0 / (1.0 + f1 + f1 * f2);
      supply += abund[i] * nh * x0 * (f1 + 2.0 * f1 * f2);
    }
    return supply - ne;
  };
  double lo = std::log(ntot * 1e-22), hi = std::log(ntot * 0.999);
  for (int it = 0; it < 80; ++it) {
    const double mid = 0.5 * (lo + hi);
    if (excess(std::exp(mid)) > 0)
      lo = mid;
    else
      hi = mid;
  }
  const double ne = std::exp(0.5 * (lo + hi));
  const double nh = (ntot - ne) / sum_ab;
  L.T = T;
  L.pg = pg;
  L.ne = ne;
  L.nh = nh;
  const auto& el = Elements();
  L.n0.resize(el.size());
  L.n1.resize(el.size());
  L.n2.resize(el.size());
  double mass = 0;
  for (size_t i = 0; i < el.size(); ++i) {
    const double f1 = eos.phi1[i] / ne, f2 = eos.phi2[i] / ne;
    const double x0 = 1.0 / (1.0 + f1 + f1 * f2);
    L.n0[i] = abund[i] * nh * x0;
    L.n1[i] = abund[i] * nh * x0 * f1;
    L.n2[i] = abund[i] * nh * x0 * f1 * f2;
    mass += abund[i] * el[i].mass;
  }
  L.nhi = L.n0[0];
  L.rho = nh * mass * kAmu;
}

// Rosseland-mean wavelength nodes and dB/dT weights are recomputed per temperature.
double RosselandAbsorption(const Layer& L, const HazeCalibration& haze) {
  static const std::vector<double> nodes = [] {
    std::vector<double> v;
    for (double x = std::log(600.0); x < std::log(2.0e5); x += 0.04) v.push_back(std::exp(x));
    return v;
  }();
  double num = 0, den = 0;
  for (size_t k = 0; k + 1 < nodes.size(); ++k) {
    const double lam = nodes[k];
    const double dlam = nodes[k + 1] - nodes[k];
    const double x = kHc_eVA / (lam * kBoltzEv * L.T);
    if (x > 150) continue;
    // dB/dT up to constant factors: x^2 e^x / (e^x - 1)^2 / lam^4 (per unit wavelength)
    const double ex = std::exp(x);
    const double w = std::pow(lam, -4.0) * x * x * ex / ((ex - 1) * (ex - 1)) * dlam;
    // The structure's temperature scale uses the continuum alone: a grey T(tau) on a haze-dominated
    // Rosseland scale would push the continuum-forming layers unphysically deep.
    const double a = ContinuumOpacity(L, lam, haze, false);
    num += w / a;
    den += w;
  }
  return den / num;
}

}  // namespace

const std::vector<ElementData>& Elements() {
  // Asplund et al. 2009 (ARA&A 47, 481) photospheric abundances; ionisation energies from NIST;
  // partition functions: representative values near 5000 K (Gray 2005, App. D); H exact.
  static const std::vector<ElementData> e = {
      {"H", 1.008, 12.00, 13.598, 0, 2.0, 1.0, 1.0, false},
      {"He", 4.003, 10.93, 24.587, 54.418, 1.0, 2.0, 1.0, false},
      {"C", 12.011, 8.43, 11.260, 24.383, 9.3, 6.0, 1.0, false},
      {"N", 14.007, 7.83, 14.534, 29.601, 4.0, 9.0, 6.0, false},
      {"O", 15.999, 8.69, 13.618, 35.121, 8.7, 4.0, 9.0, true},
      {"Na", 22.990, 6.24, 5.139, 47.286, 2.0, 1.0, 6.0, false},
      {"Mg", 24.305, 7.60, 7.646, 15.035, 1.0, 2.0, 1.0, true},
      {"Al", 26.982, 6.45, 5.986, 18.829, 5.8, 1.0, 2.0, false},
      {"Si", 28.086, 7.51, 8.152, 16.346, 9.4, 5.7, 1.0, true},
      {"S", 32.065, 7.12, 10.360, 23.338, 8.6, 4.0, 9.0, true},
      {"K", 39.098, 5.03, 4.341, 31.625, 2.1, 1.0, 6.0, false},
      {"Ca", 40.078, 6.34, 6.113, 11.872, 1.2, 2.2, 1.0, true},
      {"Sc", 44.956, 3.15, 6.561, 12.800, 10.0, 21.0, 10.0, false},
      {"Ti", 47.867, 4.95, 6.828, 13.576, 28.0, 50.0, 22.0, true},
      {"V", 50.942, 3.93, 6.746, 14.655, 38.0, 30.0, 25.0, false},
      {"Cr", 51.996, 5.64, 6.767, 16.486, 9.0, 6.5, 15.0, false},
      {"Mn", 54.938, 5.43, 7.434, 15.640, 6.4, 7.6, 6.0, false},
      {"Fe", 55.845, 7.50, 7.902, 16.199, 27.0, 42.0, 25.0, false},
      {"Co", 58.933, 4.99, 7.881, 17.084, 32.0, 25.0, 25.0, false},
      {"Ni", 58.693, 6.22, 7.640, 18.169, 29.0, 10.0, 20.0, false},
      {"Sr", 87.620, 2.87, 5.695, 11.030, 1.0, 2.0, 1.0, false},
      {"Y", 88.906, 2.21, 6.217, 12.240, 10.0, 14.0, 10.0, false},
      {"Ba", 137.33, 2.18, 5.212, 10.004, 1.3, 3.3, 1.0, false},
  };
  return e;
}

int ElementIndex(const std::string& symbol) {
  const auto& e = Elements();
  for (size_t i = 0; i < e.size(); ++i)
    if (symbol == e[i].symbol) return static_cast<int>(i);
  return -1;
}

namespace {
double KnotInterp(const double* ln_s, double lambda) {
  constexpr int n = HazeCalibration::kKnots;
  if (lambda <= kHazeKnots[0]) return std::exp(ln_s[0]);
  int k = 0;
  while (k < n - 2 && lambda > kHazeKnots[k + 1]) ++k;
  double slope = (ln_s[k + 1] - ln_s[k]) / (kHazeKnots[k + 1] - kHazeKnots[k]);
  if (lambda > kHazeKnots[n - 1]) slope = std::min(slope, 0.0);
  return std::exp(ln_s[k] + slope * (lambda - kHazeKnots[k]));
}
}  // namespace

double HazeCalibration::SigmaI(double lambda) const { return KnotInterp(ln_s1, lambda); }
double HazeCalibration::SigmaII(double lambda) const { return KnotInterp(ln_s2, lambda); }

const HazeCalibration& DefaultHaze() {
  static const HazeCalibration h{};
  return h;
}

void StellarParams::Validate() const {
  auto bad = [](const std::string& name, double v, const std::string& range) {
    throw Error("stellar parameters: " + name + " = " + std::to_string(v) + " is outside " + range);
  };
  if (!(teff >= 4500 && teff <= 10000)) bad("teff", teff, "4500-10000 K");
  if (!(logg >= 0 && logg <= 5)) bad("logg", logg, "0-5");
  if (!(mh >= -2.5 && mh <= 0.5)) bad("[M/H]", mh, "-2.5..0.5");
  if (!(alpha >= -0.25 && alpha <= 0.5)) bad("[alpha/M]", alpha, "-0.25..0.5");
}

double PlanckLambda(double lambda, double T) {
  const double lam_cm = lambda * 1e-8;
  const double x = 1.4387769 / (lam_cm * T);  // h c / (lambda k T)
  if (x > 700) return 0.0;
  // 2 h c^2 / lambda^5 / (e^x - 1) per cm, times 1e-8 for per A.
  return 1.1910429e-5 / std::pow(lam_cm, 5) / std::expm1(x) * 1e-8;
}

double ContinuumOpacity(const Layer& L, double lambda, const HazeCalibration& haze,
                        bool with_haze) {
  const double theta = 5040.0 / L.T;
  const double pe = L.ne * kBoltz * L.T;
  const double chi_lam = kHc_eVA / lambda;
  const double stim = 1.0 - std::pow(10.0, -chi_lam * theta);
  double per_h = 0;
  // H- bound-free (Wishart 1979 via Gray eq. 8.11-8.12), threshold 16419 A.
  if (lambda < 16419.0) {
    const double l = lambda;
    double a =
        1.99654 +
        l * (-1.18267e-5 +
             l * (2.64243e-6 +
                  l * (-4.40524e-10 + l * (3.23992e-14 + l * (-1.39568e-18 + l * 2.78701e-23)))));
    if (a < 0) a = 0;
    per_h +=
        4.158e-10 * a * 1e-18 * pe * std::pow(theta, 2.5) * std::pow(10.0, 0.754 * theta) * stim;
  }
  // H- free-free (Bell & Berrington 1987 via Gray eq. 8.13); fit range 2600-113900 A.
  {
    const double lg = std::log10(std::clamp(lambda, 2600.0, 113900.0));
    const double lt = std::log10(std::clamp(theta, 0.5, 3.6));
    const double f0 = -2.2763 - 1.6850 * lg + 0.76661 * lg * lg - 0.053346 * lg * lg * lg;
    const double f1 = 15.2827 - 9.2846 * lg + 1.99381 * lg * lg - 0.142631 * lg * lg * lg;
    const double f2 = -197.789 + 190.266 * lg - 67.9775 * lg * lg + 10.6913 * lg * lg * lg -
                      0.625151 * lg * lg * lg * lg;
    per_h += 1e-26 * pe * std::pow(10.0, f0 + f1 * lt + f2 * lt * lt);
  }
  // H I bound-free and free-free (Gray eq. 8.8, 8.10), Gaunt factors 1.
  {
    constexpr double a0 = 1.0449e-26;
    const double l3 = lambda * lambda * lambda;
    const int n0 = std::max(1, static_cast<int>(std::ceil(std::sqrt(kIonH / chi_lam) - 1e-12)));
    double sum = 0;
    for (int n = n0; n <= n0 + 2; ++n) {
      const double chi_n = kIonH * (1.0 - 1.0 / (n * n));
      sum += std::pow(10.0, -theta * chi_n) / (n * n * n);
    }
    const double chi3 = kIonH * (1.0 - 1.0 / ((n0 + 3.0) * (n0 + 3.0)));
    const double loge = 0.4342944819;
    sum += loge / (2 * theta * kIonH) *
           (std::pow(10.0, -chi3 * theta) - std::pow(10.0, -kIonH * theta));
    per_h += a0 * l3 * sum * stim;
    per_h += a0 * l3 * loge / (2 * theta * kIonH) * std::pow(10.0, -theta * kIonH) * stim;
  }
  // Rayleigh scattering on H I (Dalgarno; Gray eq. 8.20), lambda >= 1300 A.
  {
    const double l = std::max(lambda, 1300.0);
    const double l2 = l * l, l4 = l2 * l2;
    per_h += 5.799e-13 / l4 + 1.422e-6 / (l4 * l2) + 2.784 / (l4 * l4);
  }
  double alpha = L.nhi * per_h + L.ne * kThomson;
  if (with_haze) {
    alpha += L.haze_fe1 * haze.SigmaI(lambda) + L.haze_fe2 * haze.SigmaII(lambda);
  }
  return alpha;
}

Atmosphere Atmosphere::Build(const StellarParams& p, const HazeCalibration& haze, int n_layers) {
  p.Validate();
  Atmosphere atm;
  atm.params_ = p;
  atm.haze_ = haze;
  atm.vmicro_ =
      p.vmicro >= 0 ? p.vmicro : 1.0 + 0.25 * (4.5 - p.logg) + (p.teff > 7000 ? 1.0 : 0.0);
  const auto& el = Elements();
  atm.abund_.resize(el.size());
  for (size_t i = 0; i < el.size(); ++i) {
    double log_eps = el[i].log_eps;
    if (i >= 2) log_eps += p.mh + (el[i].alpha ? p.alpha : 0.0);
    atm.abund_[i] = std::pow(10.0, log_eps - 12.0);
  }
  const int fe = ElementIndex("Fe");
  const double alpha_factor = std::pow(10.0, 0.5 * p.alpha);
  const double g = std::pow(10.0, p.logg);
  const double teff4 = std::pow(p.teff, 4);
  auto temperature = [&](double tau) {
    const double q = 0.7104 - 0.1331 * std::exp(-3.4488 * tau);
    const double cooling = 1.0 - haze.cool / (1.0 + tau / haze.tau_cool);
    return std::pow(0.75 * teff4 * (tau + q) * cooling, 0.25);
  };
  // Opacity-carrying layer at (tau, pg).
  auto make_layer = [&](double tau, double pg) {
    Layer L;
    L.tau = tau;
    SolveEos(temperature(tau), pg, atm.abund_, L);
    L.haze_fe1 = L.n0[fe] * alpha_factor * std::exp(-haze.chi / (kBoltzEv * L.T));
    L.haze_fe2 = L.n1[fe] * alpha_factor;
    L.kross = RosselandAbsorption(L, haze) / L.rho;
    return L;
  };
  const double lt0 = std::log(1e-6), lt1 = std::log(100.0);
  const double h = (lt1 - lt0) / (n_layers - 1);
  // Surface boundary: P = g tau / kappa(P), by damped fixed-point iteration.
  double tau0 = std::exp(lt0);
  double pg = 1.0;
  for (int it = 0; it < 60; ++it) {
    const Layer L = make_layer(tau0, pg);
    const double target = g * tau0 / L.kross;
    pg = std::sqrt(pg * target);
  }
  atm.layers_.push_back(make_layer(tau0, pg));
  // d ln P / d ln tau = g tau / (P kappa), Heun's method.
  for (int i = 1; i < n_layers; ++i) {
    const double ta = std::exp(lt0 + (i - 1) * h), tb = std::exp(lt0 + i * h);
    const Layer& a = atm.layers_.back();
    const double ka = g * ta / (a.pg * a.kross);
    const double p_pred = a.pg * std::exp(h * ka);
    const Layer b = make_layer(tb, p_pred);
    const double kb = g * tb / (b.pg * b.kross);
    const double p_new = a.pg * std::exp(0.5 * h * (ka + kb));
    if (!std::isfinite(p_new) || p_new <= 0) {
      throw Error("model atmosphere: hydrostatic integration failed at tau = " +
                  std::to_string(tb));
    }
    atm.layers_.push_back(make_layer(tb, p_new));
  }
  return atm;
}

}  // namespace csst::stellar
