// Plane-parallel LTE model atmosphere for the built-in synthesizer.
//
// Structure: grey temperature law with the Hopf function on the Rosseland optical-depth scale,
// T^4 = 3/4 Teff^4 (tau + q(tau)), q(tau) = 0.7104 - 0.1331 exp(-3.4488 tau) (Mihalas 1978),
// times a surface-cooling factor 1 - cool / (1 + tau / tau_cool) standing for the cooling of the
// upper layers by line blanketing (calibrated with the line haze, below);
// hydrostatic equilibrium dP/dtau = g / kappa_R integrated in ln tau (radiation pressure and
// turbulence neglected); Rosseland mean from the continuum opacity below (the line haze is left
// out of the structure: its blanketing enters through the surface-cooling factor instead).
// Equation of state: ideal gas of H, He and 21 metals (Asplund et al. 2009 abundances scaled by
// [M/H], alpha elements by [alpha/M] in addition), Saha ionisation to the second ion, constant
// partition functions (values near 5000 K; H exact), electrons solved self-consistently;
// molecules neglected (valid for Teff >~ 4500 K).
// Continuum opacity per neutral H atom from Gray (2005, "The Observation and Analysis of Stellar
// Photospheres", 3rd ed., ch. 8): H- bound-free (Wishart 1979 fit, eq. 8.12), H- free-free (Bell &
// Berrington 1987 fit, eq. 8.13), H I bound-free with explicit levels n0..n0+2 plus the
// integral over higher levels (eq. 8.8) and H I free-free (eq. 8.10), Rayleigh scattering on H I
// (Dalgarno, eq. 8.20), Thomson scattering on electrons. Scattering is treated as true absorption
// (S = B), an approximation that matters only for the hottest, lowest-gravity models.
// Line haze: a statistical opacity standing for the unresolved metal-line forest (mostly Fe-group
// lines, dominant below 4000 A): alpha_haze = [sigma_I(lambda) N(Fe I) exp(-chi / kT) +
// sigma_II(lambda) N(Fe II)] * 10^(0.5 [alpha/M]), each sigma tabulated at ten wavelength knots
// (HazeCalibration), like a mean opacity distribution. It scales with
// metallicity through the Fe densities and with Teff and log g through the Fe ionisation balance.
// The four constants are calibrated on Kurucz (1993) solar-metallicity SEDs by
// tools/calibrate_haze.cpp (README, "Synthesizer").
#pragma once

#include <string>
#include <vector>

namespace csst::stellar {

struct StellarParams {
  double teff = 5777;  // K
  double logg = 4.44;  // cgs
  double mh = 0.0;     // [M/H] dex
  double alpha = 0.0;  // [alpha/M] dex
  double vmicro = -1;  // km/s; < 0 = from Teff and log g
  // Throws Error naming the parameter if outside 4500-10000 K, 0-5, -2.5..0.5, -0.25..0.5.
  void Validate() const;
};

struct ElementData {
  const char* symbol;
  double mass;        // amu
  double log_eps;     // solar, log N/N_H + 12
  double chi1, chi2;  // first and second ionisation energies [eV]
  double u0, u1, u2;  // partition functions of neutral, singly and doubly ionised
  bool alpha;         // an alpha element (O, Mg, Si, S, Ca, Ti)
};
const std::vector<ElementData>& Elements();   // index 0 = H, 1 = He
int ElementIndex(const std::string& symbol);  // -1 if unknown

struct HazeCalibration {
  // ln sigma_I and ln sigma_II [cm^2 per Fe I atom / Fe II ion] at the wavelength knots kHazeKnots,
  // (values: the Ceres fit of tools/calibrate_haze.cpp to 16 Kurucz models, rms ln ratio 0.244),
  // interpolated linearly in wavelength (linear extrapolation of the last segment beyond 6000 A,
  // never rising). Fitted by tools/calibrate_haze.cpp; see README "Synthesizer".
  static constexpr int kKnots = 10;
  double ln_s1[kKnots] = {-36.707, -37.109, -37.511, -37.913, -38.314,
                          -38.716, -39.118, -39.654, -40.457, -41.529};
  double ln_s2[kKnots] = {-44.381, -45.605, -46.828, -48.052, -49.275,
                          -50.499, -51.722, -53.353, -55.800, -59.063};
  double chi =
      2.692;  // eV: the Fe I haze comes from levels at this mean excitation (Boltzmann factor)
  // Surface cooling by line blanketing: T^4 is multiplied by 1 - cool / (1 + tau / tau_cool).
  double cool = 0.1872, tau_cool = 0.01207;
  double SigmaI(double lambda) const;
  double SigmaII(double lambda) const;
};
constexpr double kHazeKnots[HazeCalibration::kKnots] = {2400, 2700, 3000, 3300, 3600,
                                                        3900, 4200, 4600, 5200, 6000};
const HazeCalibration& DefaultHaze();

struct Layer {
  double tau;                      // Rosseland optical depth
  double T;                        // K
  double pg;                       // gas pressure [dyn cm^-2]
  double ne;                       // electron density [cm^-3]
  double nh;                       // total hydrogen nuclei density [cm^-3]
  double nhi;                      // neutral hydrogen density [cm^-3]
  double rho;                      // g cm^-3
  double kross;                    // Rosseland mean opacity [cm^2 g^-1]
  double haze_fe1, haze_fe2;       // N(Fe I), N(Fe II) times the alpha factor [cm^-3]
  std::vector<double> n0, n1, n2;  // per element: neutral, singly, doubly ionised densities
};

class Atmosphere {
 public:
  // Builds the model; throws Error if the hydrostatic integration fails.
  static Atmosphere Build(const StellarParams& p, const HazeCalibration& haze = DefaultHaze(),
                          int n_layers = 48);
  const std::vector<Layer>& layers() const { return layers_; }
  const StellarParams& params() const { return params_; }
  double vmicro() const { return vmicro_; }
  const HazeCalibration& haze() const { return haze_; }
  const std::vector<double>& abundances() const { return abund_; }  // N_el / N_H

 private:
  std::vector<Layer> layers_;
  StellarParams params_;
  HazeCalibration haze_;
  std::vector<double> abund_;
  double vmicro_ = 1;
};

// Absorption coefficient [cm^-1] of the continuum (H-, H I, scattering) at vacuum wavelength
// lambda [A] in a layer; `with_haze` adds the line haze.
double ContinuumOpacity(const Layer& layer, double lambda, const HazeCalibration& haze,
                        bool with_haze = true);
// Planck function B_lambda(T) [erg s^-1 cm^-2 A^-1 sr^-1] at lambda [A].
double PlanckLambda(double lambda, double T);

}  // namespace csst::stellar
