#include "simulation/label_grid.h"

#include <tbb/parallel_for.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "core/errors.h"
#include "core/files.h"
#include "core/log.h"
#include "core/progress.h"
#include "core/rng.h"
#include "simulation/stellar/synthesizer.h"

namespace csst {
namespace fs = std::filesystem;

namespace {

constexpr double kFwhmToSigma = 1.0 / 2.3548200450309493;
constexpr double kMicroturbulenceStep =
    7000.0;  // K: vmicro is 1 km/s higher above (stellar/atmosphere.cpp)

// Lagrange weights of the (up to) four nodes around x on a non-uniform axis, shifted inward at the
// ends; exact for cubics. x must lie within [nodes.front(), nodes.back()].
struct Weights {
  size_t start = 0;
  int count = 1;
  double w[4] = {1, 0, 0, 0};
};
Weights LagrangeAt(double x, const std::vector<double>& nodes) {
  // The axis may hold twin nodes (closer than 1 % of the mean step) where the synthesizer steps
  // (microturbulence at 7000 K): the stencil stays on x's side of every such step.
  const double twin = 1e-2 * (nodes.back() - nodes.front()) / static_cast<double>(nodes.size() - 1);
  size_t lo = 0, hi = nodes.size();  // the segment [lo, hi) holding x
  for (size_t i = 0; i + 1 < nodes.size(); ++i) {
    if (nodes[i + 1] - nodes[i] < twin) {
      if (x <= nodes[i]) {
        hi = i + 1;
        break;
      }
      lo = i + 1;
    }
  }
  Weights a;
  const size_t n = hi - lo;
  a.count = static_cast<int>(std::min<size_t>(4, n));
  const size_t i = static_cast<size_t>(std::upper_bound(nodes.begin() + lo, nodes.begin() + hi, x) -
                                       nodes.begin());
  const size_t cell = std::clamp<size_t>(i == lo ? lo : i - 1, lo, hi - 1);  // nodes[cell] <= x
  a.start = std::clamp<size_t>(cell > lo ? cell - 1 : lo, lo, hi - static_cast<size_t>(a.count));
  for (int j = 0; j < a.count; ++j) {
    double w = 1;
    for (int m = 0; m < a.count; ++m) {
      if (m != j) w *= (x - nodes[a.start + m]) / (nodes[a.start + j] - nodes[a.start + m]);
    }
    a.w[j] = w;
  }
  return a;
}

std::vector<double> Steps(double lo, double hi, double step) {
  std::vector<double> v;
  const long n = std::lround((hi - lo) / step);
  for (long i = 0; i <= n; ++i) v.push_back(lo + step * static_cast<double>(i));
  return v;
}

std::string Join(const std::vector<double>& v) {
  std::string s;
  char buf[32];
  for (double x : v) {
    std::snprintf(buf, sizeof buf, "%.6g,", x);
    s += buf;
  }
  return s;
}

Spectrum OnGrid(const WavelengthGrid& g) {
  Spectrum s;
  s.wave = g.Centres();
  s.flux.assign(s.wave.size(), 0.0);
  s.err.assign(s.wave.size(), 0.0);
  s.mask.assign(s.wave.size(), 0u);
  return s;
}

}  // namespace

WavelengthGrid ReferenceGrid(const LabelGridOptions& o) {
  const int n = static_cast<int>(std::ceil(std::log(o.ref_max / o.ref_min) / o.ref_step));
  return WavelengthGrid(GridKind::kLog, o.ref_min, o.ref_min * std::exp(o.ref_step * n), n);
}

std::string LabelGridOptions::Key() const {
  char buf[128];
  std::snprintf(buf, sizeof buf, "r_ref=%.6g ref=%.6g-%.6g step=%.6g", r_ref, ref_min, ref_max,
                ref_step);
  return "label grid 1; teff=" + Join(teff) + " logg=" + Join(logg) + " feh=" + Join(feh) + " " +
         buf;
}

void LabelGridOptions::Validate() const {
  auto axis = [](const std::vector<double>& v, const char* name) {
    if (v.size() < 2) throw Error(std::string("label grid: ") + name + " needs at least 2 nodes");
    for (size_t i = 1; i < v.size(); ++i) {
      if (!(v[i] > v[i - 1]))
        throw Error(std::string("label grid: ") + name + " nodes are not increasing");
    }
  };
  axis(teff, "teff");
  axis(logg, "logg");
  axis(feh, "feh");
  if (!(r_ref > 0 && ref_min > 0 && ref_max > ref_min && ref_step > 0 && ref_step < 0.01)) {
    throw Error("label grid: bad reference grid (r_ref, ref_min < ref_max, ref_step)");
  }
}

LabelGridOptions LabelGridFor(const PopulationOptions& p) {
  LabelGridOptions o;
  // Cool stars change fastest with Teff (the near-UV and the line forest): 125 K steps below 6500
  // K, 250 K above; one node beyond each end of the population's range where the synthesizer
  // allows, so that the cubic stencil is centred there too; twin nodes at 7000 and 7000.01 K, where
  // the microturbulence steps by 1 km/s (atmosphere.cpp), so that no stencil spans the step.
  double t = std::max(4500.0, 125.0 * std::floor(p.teff_min / 125.0) - 125.0);
  while (true) {
    o.teff.push_back(t);
    if (t == kMicroturbulenceStep) o.teff.push_back(t + 0.01);
    if (t >= p.teff_max + 250.0 || t >= 10000.0) break;
    const double next = t + (t < 6500.0 ? 125.0 : 250.0);
    t = std::min(10000.0, t < kMicroturbulenceStep && next > kMicroturbulenceStep
                              ? kMicroturbulenceStep
                              : next);
  }
  if (o.teff.size() < 2) o.teff.push_back(std::min(10000.0, o.teff.back() + 125.0));
  o.logg = Steps(0.5, 5.0, 0.25);
  // [alpha/M] = clamp(-0.3 [M/H], 0, 0.4) has kinks at [M/H] = -4/3 and 0: twin nodes there, and
  // steps <= 0.2 dex between.
  o.feh.clear();
  const double kinks[] = {-2.5, -0.4 / 0.3, 0.0, 0.5};
  for (int k = 0; k + 1 < 4; ++k) {
    const long n = static_cast<long>(std::ceil((kinks[k + 1] - kinks[k]) / 0.2 - 1e-9));
    for (long i = 0; i <= n; ++i) {
      const double x =
          kinks[k] + (kinks[k + 1] - kinks[k]) * static_cast<double>(i) / static_cast<double>(n);
      if (i == 0 && k > 0) {
        o.feh.push_back(x + 1e-4);  // the twin just above the kink
        continue;
      }
      o.feh.push_back(x);
    }
  }
  return o;
}

double LabelGrid::ResolvedR() const {
  // Gaussian of FWHM lambda / r_ref, then the reference pixels' boxcar (variance step^2 / 12).
  const double sigma_ref = kFwhmToSigma / options_.r_ref;
  const double sigma =
      std::sqrt(sigma_ref * sigma_ref + options_.ref_step * options_.ref_step / 12.0);
  return kFwhmToSigma / sigma;
}

LabelGrid::Star LabelGrid::SynthesizeNode(const LabelGridOptions& o, double teff, double logg,
                                          double feh) {
  static const stellar::Synthesizer synth{stellar::SynthOptions{}};
  const auto native = synth.Synthesize({teff, logg, feh, AlphaForFeh(feh)});
  Star s;
  s.sed200 = DegradeToGrid(native, 200.0, OutputGrid());
  s.sed_fine = DegradeToGrid(native, kTruthResolution, TruthGrid());
  s.ref = ResampleFluxConserving(DegradeToResolution(native, o.r_ref), ReferenceGrid(o));
  return s;
}

size_t LabelGrid::Node(size_t it, size_t ig, size_t iff) const {
  return (it * options_.logg.size() + ig) * options_.feh.size() + iff;
}

std::vector<float> LabelGrid::NodeRow(size_t k) const {
  const size_t nl = options_.logg.size(), nf = options_.feh.size();
  const size_t it = k / (nl * nf), ig = (k / nf) % nl, iff = k % nf;
  const auto s = SynthesizeNode(options_, options_.teff[it], options_.logg[ig], options_.feh[iff]);
  std::vector<float> row;
  row.reserve(width_);
  for (const auto* part : {&s.sed200, &s.sed_fine, &s.ref}) {
    for (size_t i = 0; i < part->flux.size(); ++i) {
      const uint32_t m = mask_.empty() ? 0u : mask_[row.size()];
      if (m != 0) {
        row.push_back(0.0f);
        continue;
      }
      if (!(part->flux[i] > 0) || part->mask[i] != 0) {
        throw Error(
            "label grid: node Teff " + std::to_string(options_.teff[it]) + " log g " +
            std::to_string(options_.logg[ig]) + " [M/H] " + std::to_string(options_.feh[iff]) +
            " has a non-positive or uncovered flux where the first node has none (internal error)");
      }
      row.push_back(static_cast<float>(std::log(part->flux[i])));
    }
  }
  return row;
}

LabelGrid LabelGrid::Build(const LabelGridOptions& options) {
  options.Validate();
  LabelGrid g;
  g.options_ = options;
  g.width_ =
      OutputGrid().size() + TruthGrid().size() + static_cast<size_t>(ReferenceGrid(options).size());
  // Node 0's masked pixels (no coverage at a grid's end) are every node's: stored as 0, given back
  // masked.
  {
    const auto s = SynthesizeNode(options, options.teff[0], options.logg[0], options.feh[0]);
    for (const auto* part : {&s.sed200, &s.sed_fine, &s.ref}) {
      for (size_t i = 0; i < part->flux.size(); ++i) {
        g.mask_.push_back(part->mask[i] != 0  ? part->mask[i]
                          : part->flux[i] > 0 ? 0u
                                              : kMaskNoCoverage);
      }
    }
  }
  const size_t nodes = g.NumNodes();
  g.data_.assign(nodes * g.width_, 0.0f);
  Progress progress("label grid", static_cast<long>(nodes));
  tbb::parallel_for(size_t{0}, nodes, [&](size_t k) {
    const auto row = g.NodeRow(k);
    std::copy(row.begin(), row.end(), g.data_.begin() + static_cast<std::ptrdiff_t>(k * g.width_));
    progress.Tick();
  });
  progress.Finish();
  return g;
}

LabelGrid::Star LabelGrid::Interpolate(double teff, double logg, double feh) const {
  auto inside = [](double x, const std::vector<double>& v, const char* name) {
    if (!(x >= v.front() && x <= v.back())) {
      char buf[160];
      std::snprintf(buf, sizeof buf, "label grid: %s = %g is outside its nodes %g..%g", name, x,
                    v.front(), v.back());
      throw Error(buf);
    }
  };
  inside(teff, options_.teff, "teff");
  inside(logg, options_.logg, "logg");
  inside(feh, options_.feh, "feh");
  const Weights wt = LagrangeAt(teff, options_.teff), wg = LagrangeAt(logg, options_.logg),
                wf = LagrangeAt(feh, options_.feh);
  std::vector<double> acc(width_, 0.0);
  for (int a = 0; a < wt.count; ++a) {
    for (int b = 0; b < wg.count; ++b) {
      for (int c = 0; c < wf.count; ++c) {
        const double w = wt.w[a] * wg.w[b] * wf.w[c];
        const float* row = &data_[Node(wt.start + a, wg.start + b, wf.start + c) * width_];
        for (size_t i = 0; i < width_; ++i) acc[i] += w * static_cast<double>(row[i]);
      }
    }
  }
  Star s;
  s.sed200 = OnGrid(OutputGrid());
  s.sed_fine = OnGrid(TruthGrid());
  s.ref = OnGrid(ReferenceGrid(options_));
  size_t j = 0;
  for (auto* part : {&s.sed200, &s.sed_fine, &s.ref}) {
    for (size_t i = 0; i < part->flux.size(); ++i, ++j) {
      part->mask[i] = mask_[j];
      part->flux[i] = mask_[j] ? 0.0 : std::exp(acc[j]);
    }
  }
  return s;
}

void LabelGrid::Save(const std::string& path, const Provenance& provenance) const {
  FitsWriter w(path);
  Provenance p = provenance;
  p.descrip = "label grid of the built-in synthesizer: log surface flux per node";
  w.WritePrimary(p);
  w.Key("GRIDKEY", HashHex(options_.Key()), "hash of the grid's nodes and reference grid");
  w.Key("RREF", options_.r_ref, "resolving power of the reference spectra");
  w.Key("REFMIN", options_.ref_min, "[Angstrom] first edge of the reference grid");
  w.Key("REFMAX", options_.ref_max, "[Angstrom] requested end of the reference grid");
  w.Key("REFSTEP", options_.ref_step, "reference grid step in ln(lambda)");
  w.WriteImage("LOGFLUX", {static_cast<long>(width_), static_cast<long>(NumNodes())}, data_);
  w.Key("BUNIT", std::string(""), "ln of erg s-1 cm-2 Angstrom-1 (surface flux)");
  std::vector<int32_t> mask(mask_.begin(), mask_.end());
  w.WriteTable("MASK", {{"MASK", "", mask}});
  w.WriteTable("TEFF", {{"TEFF", "K", options_.teff}});
  w.WriteTable("LOGG", {{"LOGG", "log(cm s-2)", options_.logg}});
  w.WriteTable("FEH", {{"FEH", "dex", options_.feh}});
  w.Close();
}

LabelGrid LabelGrid::Load(const std::string& path, const LabelGridOptions& expected) {
  FitsReader r(path);
  r.MoveTo(1);
  if (!r.HasKey("GRIDKEY") || r.KeyString("GRIDKEY") != HashHex(expected.Key())) {
    throw IoError(path + ": a label grid for other nodes or another reference grid");
  }
  LabelGrid g;
  g.options_ = expected;
  g.width_ = OutputGrid().size() + TruthGrid().size() +
             static_cast<size_t>(ReferenceGrid(expected).size());
  r.MoveTo("LOGFLUX");
  const auto dims = r.ImageDims();
  if (dims.size() != 2 || dims[0] != static_cast<long>(g.width_) ||
      dims[1] != static_cast<long>(g.NumNodes())) {
    throw IoError(path + ": LOGFLUX is not " + std::to_string(g.width_) + " x " +
                  std::to_string(g.NumNodes()));
  }
  g.data_ = r.ReadImageFloat();
  r.MoveTo("MASK");
  const auto mask = r.ReadColumn("MASK");
  if (mask.size() != g.width_)
    throw IoError(path + ": MASK has " + std::to_string(mask.size()) + " rows, expected " +
                  std::to_string(g.width_));
  for (double m : mask) g.mask_.push_back(static_cast<uint32_t>(m));
  for (size_t i = 0; i < g.data_.size(); ++i) {
    if (!std::isfinite(g.data_[i]))
      throw IoError(path + ": LOGFLUX holds a non-finite value at element " +
                    std::to_string(i + 1));
  }
  return g;
}

LabelGrid LabelGrid::Cached(const LabelGridOptions& options, const fs::path& cache_dir) {
  options.Validate();
  const fs::path file = cache_dir / ("label_grid_" + HashHex(options.Key()) + ".fits");
  auto log = Logger("sample");
  if (fs::exists(file)) {
    try {
      LabelGrid g = Load(file.string(), options);
      // The content must still be the synthesizer's: two nodes made afresh must match what is
      // stored.
      bool same = true;
      for (size_t k : {size_t{0}, g.NumNodes() / 2}) {
        const auto row = g.NodeRow(k);
        for (size_t j = 0; j < row.size(); ++j)
          same = same && std::abs(row[j] - g.data_[k * g.width_ + j]) < 1e-5f;
      }
      if (same) {
        log->info("label grid {} ({} nodes) loaded", file.string(), g.NumNodes());
        return g;
      }
      log->warn("{}: made by another version of the synthesizer: rebuilt", file.string());
    } catch (const IoError& e) {
      log->warn("{}: rebuilt ({})", file.string(), e.what());
    }
  }
  log->info("building label grid {} ({} nodes; once per grid and synthesizer version)",
            file.string(), options.teff.size() * options.logg.size() * options.feh.size());
  LabelGrid g = Build(options);
  fs::create_directories(cache_dir);
  AtomicOutput out(file);
  g.Save(out.temp().string(), Provenance{});
  out.Commit();
  return g;
}

}  // namespace csst
