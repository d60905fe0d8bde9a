#include "simulation/csst/true_flat.h"

#include <algorithm>
#include <cmath>

#include "core/detectors.h"
#include "core/errors.h"
#include "core/rng.h"

namespace csst {

void TrueFlatOptions::Validate() const {
  auto fail = [](const std::string& m) { throw ConfigError("config error: " + m); };
  if (order < 1 || order > 8) fail("simulation.flat_order must be in 1..8");
  if (!(rms >= 0 && rms < 0.5)) fail("simulation.flat_rms must be in [0, 0.5)");
  if (!(lambda_variation >= 0 && lambda_variation <= 1))
    fail("simulation.flat_lambda_variation must be in [0, 1]");
  if (!(grf_correlation > 0)) fail("simulation.flat_correlation must be > 0");
  if (grf_modes < 1) fail("simulation.flat_modes must be >= 1");
  if (!(level > 0)) fail("simulation.flat_level must be > 0");
  if (!(detector_level_rms >= 0 && detector_level_rms < 0.5))
    fail("simulation.flat_detector_level_rms must be in [0, 0.5)");
}

double TrueFlat::Eval(const Pattern& p, double u, double v) const {
  double s = 0;
  if (model_ == FlatModel::kPolynomial) {
    size_t t = 0;
    for (int d = 1; d <= order_; ++d)
      for (int i = d; i >= 0; --i) s += p.coeff[t++] * std::pow(u, i) * std::pow(v, d - i);
  } else {
    for (size_t m = 0; m < p.kx.size(); ++m)
      s += p.amp[m] * std::cos(p.kx[m] * u + p.ky[m] * v + p.phase[m]);
  }
  return s;
}

TrueFlat TrueFlat::Draw(const TrueFlatOptions& o, const Instrument& inst, uint64_t seed) {
  o.Validate();
  TrueFlat f;
  f.model_ = o.model;
  f.order_ = o.order;
  const int per = inst.options().detectors_per_band;
  for (int b = 0; b < 3; ++b) {
    for (int k = 0; k < per; ++k) {
      const int d = b * per + k;
      Rng rng(seed, "true-flat", static_cast<uint64_t>(d));
      Detector det;
      det.band = b;
      det.lo = inst.band(b).lo;
      det.hi = inst.band(b).hi;
      det.nx = inst.options().detector_nx;
      det.ny = inst.options().detector_ny;
      auto draw = [&](Pattern& p) {
        if (o.model == FlatModel::kPolynomial) {
          const int n = (o.order + 1) * (o.order + 2) / 2 - 1;
          for (int t = 0; t < n; ++t) p.coeff.push_back(rng.Normal());
        } else {
          for (int m = 0; m < o.grf_modes; ++m) {
            p.kx.push_back(rng.Normal() / o.grf_correlation);
            p.ky.push_back(rng.Normal() / o.grf_correlation);
            p.phase.push_back(rng.Uniform(0, 2 * M_PI));
            p.amp.push_back(1.0);
          }
        }
      };
      auto normalise = [&](Pattern& p) {  // rms over a 41 x 41 sampling of the detector
        double s = 0, s2 = 0;
        int n = 0;
        for (int i = 0; i <= 40; ++i)
          for (int j = 0; j <= 40; ++j) {
            const double val = f.Eval(p, -1 + i / 20.0, -1 + j / 20.0);
            s += val;
            s2 += val * val;
            ++n;
          }
        const double rms = std::sqrt(std::max(s2 / n - (s / n) * (s / n), 1e-30));
        const double scale = o.rms / rms;
        for (auto& c : p.coeff) c *= scale;
        for (auto& a : p.amp) a *= scale;
      };
      draw(det.low);
      normalise(det.low);
      Pattern fresh;
      draw(fresh);
      normalise(fresh);
      det.high = det.low;
      const double c = 1.0 - o.lambda_variation, s = std::sqrt(std::max(0.0, 1 - c * c));
      if (o.model == FlatModel::kPolynomial) {
        for (size_t t = 0; t < det.high.coeff.size(); ++t)
          det.high.coeff[t] = c * det.low.coeff[t] + s * fresh.coeff[t];
      } else {
        det.high.kx.insert(det.high.kx.end(), fresh.kx.begin(), fresh.kx.end());
        det.high.ky.insert(det.high.ky.end(), fresh.ky.begin(), fresh.ky.end());
        det.high.phase.insert(det.high.phase.end(), fresh.phase.begin(), fresh.phase.end());
        for (auto& a : det.high.amp) a *= c;
        for (double a : fresh.amp) det.high.amp.push_back(s * a);
      }
      // Own stream: drawing the gains leaves the patterns of earlier configurations unchanged.
      Rng gain_rng(seed, "true-flat-gain", static_cast<uint64_t>(d));
      det.gain = o.level * (1.0 + o.detector_level_rms * gain_rng.Normal());
      f.det_.push_back(det);
    }
  }
  return f;
}

double TrueFlat::Value(int d, double x, double y, double lambda) const {
  const auto& det = det_.at(static_cast<size_t>(d));
  const double u = 2 * x / (det.nx - 1) - 1, v = 2 * y / (det.ny - 1) - 1;
  const double w = std::clamp((lambda - det.lo) / (det.hi - det.lo), 0.0, 1.0);
  return det.gain * (1.0 + (1 - w) * Eval(det.low, u, v) + w * Eval(det.high, u, v));
}

void TrueFlat::Write(const std::string& path, const Provenance& prov) const {
  FitsWriter w(path);
  Provenance p = prov;
  p.descrip = "injected true large-scale flat (truth; never read by the fitting stages)";
  w.WritePrimary(p);
  w.Key("FLATMOD", std::string(ToString(model_)), "polynomial or grf");
  w.Key("FLATORD", static_cast<long>(order_), "polynomial order");
  std::vector<int32_t> det, band, which, term, chip;
  const size_t per = std::max<size_t>(1, det_.size() / 3);
  std::vector<double> lo, hi, nx, ny, gain, coeff, kx, ky, phase, amp;
  for (size_t d = 0; d < det_.size(); ++d) {
    const auto& D = det_[d];
    for (int wch = 0; wch < 2; ++wch) {
      const Pattern& pt = wch == 0 ? D.low : D.high;
      const size_t n = model_ == FlatModel::kPolynomial ? pt.coeff.size() : pt.kx.size();
      for (size_t t = 0; t < n; ++t) {
        det.push_back(static_cast<int32_t>(d));
        chip.push_back(ChipId(D.band, static_cast<int>(d % per)));
        band.push_back(D.band);
        which.push_back(wch);
        term.push_back(static_cast<int32_t>(t));
        lo.push_back(D.lo);
        hi.push_back(D.hi);
        nx.push_back(D.nx);
        ny.push_back(D.ny);
        gain.push_back(D.gain);
        coeff.push_back(model_ == FlatModel::kPolynomial ? pt.coeff[t] : 0.0);
        kx.push_back(model_ == FlatModel::kGrf ? pt.kx[t] : 0.0);
        ky.push_back(model_ == FlatModel::kGrf ? pt.ky[t] : 0.0);
        phase.push_back(model_ == FlatModel::kGrf ? pt.phase[t] : 0.0);
        amp.push_back(model_ == FlatModel::kGrf ? pt.amp[t] : 0.0);
      }
    }
  }
  w.WriteTable("FLAT_TERMS", {{"DETECTOR", "", det},
                              {"CHIPID", "", chip},
                              {"BAND", "", band},
                              {"PATTERN", "", which},
                              {"TERM", "", term},
                              {"WMIN", "Angstrom", lo},
                              {"WMAX", "Angstrom", hi},
                              {"NX", "pixel", nx},
                              {"NY", "pixel", ny},
                              {"GAIN", "", gain},
                              {"COEFF", "", coeff},
                              {"KX", "", kx},
                              {"KY", "", ky},
                              {"PHASE", "rad", phase},
                              {"AMP", "", amp}});
  w.Standard(p, "");
  w.Comment(
      "F = GAIN (1 + (1-w) P_0(u,v) + w P_1(u,v)), w = (lambda-WMIN)/(WMAX-WMIN) clamped, u = "
      "2x/(NX-1)-1");
  w.Comment("polynomial: P = sum COEFF u^i v^(d-i) over d = 1..FLATORD, i = d..0 (TERM order)");
  w.Comment("grf: P = sum AMP cos(KX u + KY v + PHASE)");
  w.Close();
}

TrueFlat TrueFlat::Read(const std::string& path) {
  FitsReader r(path);
  TrueFlat f;
  f.model_ = ParseEnumName<FlatModel, Error>(r.KeyString("FLATMOD"), path + ": FLATMOD =");
  f.order_ = static_cast<int>(r.KeyLong("FLATORD"));
  r.MoveTo("FLAT_TERMS");
  const auto det = r.ReadColumn("DETECTOR"), band = r.ReadColumn("BAND"),
             which = r.ReadColumn("PATTERN");
  const auto lo = r.ReadColumn("WMIN"), hi = r.ReadColumn("WMAX"), nx = r.ReadColumn("NX"),
             ny = r.ReadColumn("NY");
  const auto coeff = r.ReadColumn("COEFF"), kx = r.ReadColumn("KX"), ky = r.ReadColumn("KY");
  const auto phase = r.ReadColumn("PHASE"), amp = r.ReadColumn("AMP");
  const auto gain =
      r.HasColumn("GAIN") ? r.ReadColumn("GAIN") : std::vector<double>(det.size(), 1.0);
  for (size_t i = 0; i < det.size(); ++i) {
    const size_t d = static_cast<size_t>(det[i]);
    if (f.det_.size() <= d) f.det_.resize(d + 1);
    auto& D = f.det_[d];
    D.band = static_cast<int>(band[i]);
    D.lo = lo[i];
    D.hi = hi[i];
    D.nx = nx[i];
    D.ny = ny[i];
    D.gain = gain[i];
    Pattern& p = which[i] == 0 ? D.low : D.high;
    if (f.model_ == FlatModel::kPolynomial) {
      p.coeff.push_back(coeff[i]);
    } else {
      p.kx.push_back(kx[i]);
      p.ky.push_back(ky[i]);
      p.phase.push_back(phase[i]);
      p.amp.push_back(amp[i]);
    }
  }
  return f;
}

}  // namespace csst
