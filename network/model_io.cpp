#include "network/model_io.h"

#include <Eigen/Dense>
#include <algorithm>
#include <array>
#include <cmath>
#include <limits>

#include "core/bands.h"
#include "core/errors.h"
#include "core/files.h"
#include "core/grid.h"
#include "core/prepare.h"
#include "core/rng.h"
#include "network/sed_network.h"

namespace csst {
using nlohmann::json;

json BandJson(const BandArray<double>& values) {
  json j = json::object();
  for (const auto& b : kBands) j[b.name] = values[b.band];
  return j;
}

BandArray<double> BandArrayFromJson(const json& j, const std::string& path, const std::string& key,
                                    double lo, double hi) {
  if (!j.is_object())
    throw Error(path + ": " + key + " must be an object giving " + BandNameList());
  for (const auto& [name, v] : j.items()) {
    if (!BandFromName(name))
      throw Error(path + ": " + key + " has a band '" + name + "', expected " + BandNameList());
  }
  BandArray<double> out;
  for (const auto& b : kBands) {
    if (!j.contains(b.name)) throw Error(path + ": " + key + " must give " + BandNameList());
    const json& v = j.at(b.name);
    const double x = v.is_number() ? v.get<double>() : std::nan("");
    if (!(std::isfinite(x) && x >= lo && x <= hi)) {
      throw Error(path + ": " + key + "." + b.name + " = " +
                  (v.is_number() ? std::to_string(x) : v.dump()) +
                  ", expected a finite value in [" + std::to_string(lo) + ", " +
                  std::to_string(hi) + "]");
    }
    out[b.band] = x;
  }
  return out;
}

namespace {
// The sidecar's description of SigmaBandOfPixel, from the band table.
std::string SigmaBandsText() {
  std::string out;
  double from = 0;
  for (const auto& b : kBands) {
    if (!out.empty()) out += ", ";
    char buf[64];
    if (from == 0)
      std::snprintf(buf, sizeof(buf), "%s: lambda < %.0f A", b.name, b.share_hi);
    else if (std::isfinite(b.share_hi))
      std::snprintf(buf, sizeof(buf), "%s: %.0f-%.0f A", b.name, from, b.share_hi);
    else
      std::snprintf(buf, sizeof(buf), "%s: > %.0f A", b.name, from);
    out += buf;
    from = b.share_hi;
  }
  return out;
}

json GridJson(const WavelengthGrid& g) {
  return {{"kind", g.kind() == GridKind::kLog ? "log" : "linear"},
          {"first_edge", g.first_edge()},
          {"last_edge", g.last_edge()},
          {"pixels", g.size()}};
}
void CheckGrid(const json& j, const WavelengthGrid& g, const std::string& path,
               const std::string& which) {
  const bool same = j.at("kind") == (g.kind() == GridKind::kLog ? "log" : "linear") &&
                    j.at("pixels") == g.size() &&
                    std::abs(j.at("first_edge").get<double>() - g.first_edge()) < 1e-6 &&
                    std::abs(j.at("last_edge").get<double>() - g.last_edge()) < 1e-6;
  if (!same) {
    throw Error(path + ": model " + which + " grid " + j.dump() + " differs from the method's " +
                which + " grid (" + g.Describe() + ")");
  }
}
}  // namespace

json ModelSidecar::ToJson() const {
  return {{"format", "csst-flatcube UaRA-net 1"},
          {"variant", variant},
          {"ensemble", ensemble},
          {"output_basis", pca_components == 0
                               ? json("pixels")
                               : json{{"kind", "pca_log_sed"}, {"components", pca_components}}},
          {"input_grid", GridJson(InputGrid())},
          {"output_grid", GridJson(OutputGrid())},
          {"wavelengths", "vacuum Angstrom"},
          {"input", "flux / 51-pixel moving-average continuum, R=2000, and its 1-sigma"},
          {"output",
           "mu: SED at R=200 scaled by the mean flux in 5526-5586 A; sigma: relative 1-sigma"},
          {"scale_window", {kScaleWindowMin, kScaleWindowMax}},
          {"noise_model", "F' = F + r F, r ~ N(0, 1/snr^2) per pixel; err = F / snr"},
          {"sigma_scale", BandJson(sigma_scale)},
          {"sigma_scale_bands", SigmaBandsText()},
          {"systematic_error", systematic ? BandJson(*systematic) : json::object()},
          {"systematic_error_source", systematic_source},
          {"systematic_error_free_scale",
           systematic_free_scale ? BandJson(*systematic_free_scale) : json::object()},
          {"systematic_error_free_scale_source", systematic_free_scale_source},
          {"bias_correction",
           bias_coeff.empty()
               ? json(nullptr)
               : json{{"features", BiasFeatureNames()},
                      {"model", "ln(true / mu)_k = sum_j coefficients[k][j] f_j; mu *= exp(it)"},
                      {"coefficients",
                       [&] {
                         json rows = json::array();
                         for (size_t k = 0; k < bias_coeff.size() / kBiasFeatures; ++k)
                           rows.push_back(
                               std::vector<double>(bias_coeff.begin() + k * kBiasFeatures,
                                                   bias_coeff.begin() + (k + 1) * kBiasFeatures));
                         return rows;
                       }()},
                      {"fitted_on", bias_info}}},
          {"coverage_before_calibration", coverage_before},
          {"coverage_after_calibration", coverage_after},
          {"training", training}};
}

ModelSidecar ModelSidecar::FromJson(const json& j, const std::string& path) {
  ModelSidecar s;
  try {
    if (j.at("format") != "csst-flatcube UaRA-net 1")
      throw Error(path + ": not a csst-flatcube model sidecar");
    CheckGrid(j.at("input_grid"), InputGrid(), path, "input");
    CheckGrid(j.at("output_grid"), OutputGrid(), path, "output");
    s.ensemble = j.at("ensemble");
    const json basis = j.value("output_basis", json("pixels"));
    if (basis.is_object() && basis.at("kind") == "pca_log_sed") {
      s.pca_components = basis.at("components");
      if (s.pca_components < 1 || s.pca_components > net::kOutputPixels)
        throw Error(path + ": output_basis.components must be in 1.." +
                    std::to_string(net::kOutputPixels));
    } else if (basis != "pixels") {
      throw Error(
          path +
          ": output_basis must be \"pixels\" or {\"kind\": \"pca_log_sed\", \"components\": K}");
    }
    s.variant = j.at("variant");
    // Every number that scales a prediction is checked here, where it enters: a negative or absurd
    // scale would give negative SIGMA or an ERR that means nothing.
    if (s.ensemble < 1 || s.ensemble > 64)
      throw Error(path + ": ensemble = " + std::to_string(s.ensemble) + ", expected 1..64");
    s.sigma_scale = BandArrayFromJson(j.at("sigma_scale"), path, "sigma_scale", 1e-3, 1e3);
    // the systematic terms: absent or {} until calibrated
    auto optional_bands = [&](const char* key) -> std::optional<BandArray<double>> {
      if (!j.contains(key) || j.at(key).empty()) return std::nullopt;
      return BandArrayFromJson(j.at(key), path, key, 0.0, 1.0);
    };
    s.systematic = optional_bands("systematic_error");
    s.systematic_source = j.value("systematic_error_source", std::string());
    s.systematic_free_scale = optional_bands("systematic_error_free_scale");
    s.systematic_free_scale_source = j.value("systematic_error_free_scale_source", std::string());
    if (j.contains("bias_correction") && !j.at("bias_correction").is_null()) {
      const auto& bc = j.at("bias_correction");
      if (bc.at("features").get<std::vector<std::string>>() != BiasFeatureNames())
        throw Error(path + ": bias_correction.features differ from this version's " +
                    json(BiasFeatureNames()).dump());
      const auto rows = bc.at("coefficients").get<std::vector<std::vector<double>>>();
      if (static_cast<int64_t>(rows.size()) != net::kOutputPixels)
        throw Error(path + ": bias_correction.coefficients has " + std::to_string(rows.size()) +
                    " rows, expected 574");
      for (size_t k = 0; k < rows.size(); ++k) {
        if (rows[k].size() != static_cast<size_t>(kBiasFeatures))
          throw Error(path + ": bias_correction.coefficients row " + std::to_string(k) + " has " +
                      std::to_string(rows[k].size()) + " values, expected " +
                      std::to_string(kBiasFeatures));
        for (double v : rows[k]) {
          if (!(std::isfinite(v) && std::abs(v) <= 1e4))
            throw Error(path + ": bias_correction.coefficients row " + std::to_string(k) +
                        " holds " + std::to_string(v) + ", expected a finite value in [-1e4, 1e4]");
          s.bias_coeff.push_back(v);
        }
      }
      s.bias_info = bc.value("fitted_on", json(nullptr));
    }
    s.coverage_before = j.value("coverage_before_calibration", s.coverage_before);
    s.coverage_after = j.value("coverage_after_calibration", s.coverage_after);
    s.training = j.value("training", json::object());
  } catch (const json::exception& e) {
    throw Error(path + ": malformed model sidecar: " + e.what());
  }
  return s;
}

namespace {
// MODEL.json parsed and checked (grids, format).
ModelSidecar ReadSidecar(const std::string& model) {
  const std::string path = model + ".json";
  json j;
  try {
    j = json::parse(ReadText(path));
  } catch (const json::exception& e) {
    throw Error(path + ": not valid JSON: " + e.what());
  }
  return ModelSidecar::FromJson(j, path);
}
}  // namespace

ModelInfo ModelInfoOf(const ModelSidecar& side) {
  ModelInfo info;
  info.ensemble = side.ensemble;
  info.pca_components = side.pca_components;
  info.variant = side.variant;
  info.sigma_scale = side.sigma_scale;
  info.systematic = side.systematic;
  info.systematic_free_scale = side.systematic_free_scale;
  info.json = side.ToJson().dump(1);
  return info;
}

ModelInfo ReadModelInfo(const std::string& model) { return ModelInfoOf(ReadSidecar(model)); }

PcaBasis ReadPcaBasis(const std::string& model) {
  ModelSidecar side;
  const auto ensemble = LoadModel(model, &side);
  torch::Tensor mean, basis;
  for (const auto& b : ensemble->member(0)->named_buffers()) {
    if (b.key() == "pca_mean") mean = b.value().to(torch::kDouble).contiguous();
    if (b.key() == "pca_basis") basis = b.value().to(torch::kDouble).contiguous();
  }
  if (!basis.defined() || !mean.defined())
    throw Error(model + ".pt: no PCA output basis (574 output pixels)");
  PcaBasis out;
  out.components = static_cast<int>(basis.size(0));
  out.mean.assign(mean.data_ptr<double>(), mean.data_ptr<double>() + mean.numel());
  out.basis.assign(basis.data_ptr<double>(), basis.data_ptr<double>() + basis.numel());
  return out;
}

void SetModelSystematic(const std::string& model, const BandArray<double>& systematic,
                        const std::string& source, bool free_scale) {
  const std::string path = model + ".json";
  auto side = ReadSidecar(model);
  for (const auto& b : kBands) {
    const double v = systematic[b.band];
    if (!std::isfinite(v) || v < 0 || v > 1) {
      throw Error(source + ": no finite systematic error in [0, 1] for band " + b.name);
    }
  }
  (free_scale ? side.systematic_free_scale : side.systematic) = systematic;
  (free_scale ? side.systematic_free_scale_source : side.systematic_source) = source;
  WriteTextAtomically(path, side.ToJson().dump(1) + "\n");
}

void SaveModel(net::Ensemble& model, const ModelSidecar& side, const std::string& prefix) {
  AtomicOutput pt(prefix + ".pt");
  torch::save(model, pt.temp().string());
  pt.Commit();
  WriteTextAtomically(prefix + ".json", side.ToJson().dump(1) + "\n");
}

net::Ensemble LoadModel(const std::string& prefix, ModelSidecar* side) {
  *side = ReadSidecar(prefix);
  net::Ensemble model(side->ensemble, side->pca_components);
  LoadEnsembleWeights(model, prefix);
  model->eval();
  return model;
}

void LoadEnsembleWeights(net::Ensemble& model, const std::string& prefix) {
  const std::string path = prefix + ".pt";
  if (!std::filesystem::exists(path)) throw IoError(path + ": no such model file");
  // torch::load replaces each tensor whatever its shape, and reads only the members the module
  // has: both are checked here, so that a mismatch is named at load time, not in a forward pass.
  std::map<std::string, std::vector<int64_t>> shapes;
  for (const auto& p : model->named_parameters()) shapes[p.key()] = p.value().sizes().vec();
  for (const auto& b : model->named_buffers()) shapes[b.key()] = b.value().sizes().vec();
  int archive_members = 0;
  try {
    torch::serialize::InputArchive archive;
    archive.load_from(path);
    for (const auto& key : archive.keys())
      if (key.rfind("member", 0) == 0) ++archive_members;
    model->load(archive);
  } catch (const c10::Error& e) {
    throw Error(path + ": cannot load weights (wrong ensemble size or not a model archive): " +
                e.what_without_backtrace());
  }
  if (archive_members != model->size()) {
    throw Error(path + ": the archive holds " + std::to_string(archive_members) +
                " ensemble member(s), its sidecar " + prefix + ".json says ensemble " +
                std::to_string(model->size()));
  }
  auto show = [](const std::vector<int64_t>& v) {
    std::string s = "[";
    for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + std::to_string(v[i]);
    return s + "]";
  };
  auto check = [&](const std::string& name, const torch::Tensor& t) {
    const auto want = shapes.at(name);
    if (t.sizes().vec() != want) {
      throw Error(path + ": tensor " + name + " has shape " + show(t.sizes().vec()) +
                  ", the UaRA-net needs " + show(want));
    }
  };
  for (const auto& p : model->named_parameters()) check(p.key(), p.value());
  for (const auto& b : model->named_buffers()) check(b.key(), b.value());
}

torch::Device TorchDevice(ComputeDevice device, const std::string& key) {
  if (device == ComputeDevice::kCuda ||
      (device == ComputeDevice::kAuto && torch::cuda::is_available())) {
    if (!torch::cuda::is_available()) throw Error(key + " = cuda but LibTorch sees no CUDA device");
    return torch::Device(torch::kCUDA);
  }
  return torch::Device(torch::kCPU);
}

Band SigmaBandOfPixel(int pixel) { return BandOfShare(OutputGrid().Centre(pixel)); }

void EnsemblePredict(net::Ensemble& model, const torch::Tensor& flux, const torch::Tensor& err,
                     torch::Tensor* mu, torch::Tensor* sigma) {
  std::vector<torch::Tensor> mus, sig2;
  for (int k = 0; k < model->size(); ++k) {
    auto out = model->member(k)->forward(flux, err);
    mus.push_back(out.mu);
    sig2.push_back(out.sigma * out.sigma);
  }
  const auto m = torch::stack(mus).mean(0);
  auto var = torch::stack(sig2).mean(0);
  if (model->size() > 1) {
    const auto rel = (torch::stack(mus) - m) / m.abs().clamp_min(1e-6);
    var = var + (rel * rel).mean(0);
  }
  *mu = m;
  *sigma = var.sqrt();
}

double BalancedSigmaScale(std::vector<double> v) {
  if (v.empty()) return 1.0;
  std::sort(v.begin(), v.end());
  auto quantile = [&](double q) {
    return v[static_cast<size_t>(q * static_cast<double>(v.size() - 1))];
  };
  // Candidates between the scale matching 1 sigma alone and the one matching 2 sigma alone.
  const double s1 = quantile(0.6827), s2 = quantile(0.9545) / 2;
  const double lo = std::min(s1, s2), hi = std::max(s1, s2);
  auto coverage = [&](double s, double k) {
    return static_cast<double>(std::lower_bound(v.begin(), v.end(), k * s) - v.begin()) /
           static_cast<double>(v.size());
  };
  double best = s1, best_cost = 1e300;
  for (int t = 0; t <= 400; ++t) {
    const double s = lo + (hi - lo) * t / 400.0;
    const double cost = std::max(std::abs(coverage(s, 1) - 0.6827) / 0.03,
                                 std::abs(coverage(s, 2) - 0.9545) / 0.02);
    if (cost < best_cost) best_cost = cost, best = s;
  }
  return best;
}

namespace {
// Star g.input[i] with the paper's relative noise at SNR s: F' = F (1 + r / s), err = |F| / s, r
// from rng.
void NoisyInput(const TrainingGrid& g, int i, double s, Rng& rng, float* flux, float* err) {
  const int64_t ni = net::kInputPixels;
  for (int64_t k = 0; k < ni; ++k) {
    const double f = g.input[static_cast<size_t>(i) * ni + k];
    flux[k] = static_cast<float>(f * (1 + rng.Normal() / s));
    err[k] = static_cast<float>(std::abs(f) / s);
  }
}
// Ensemble predictions (uncalibrated, on the CPU) of stars idx[a, a + n) with noise: draw(i, &snr)
// gives star i's generator and sets its SNR. flux, err receive the noisy inputs (n x 2238).
void CheckComplete(const CalibrationSet& set, const char* who) {
  if (!set.model || !set.grid || !set.idx || !set.snr)
    throw Error(std::string(who) + ": an incomplete calibration set (internal error)");
}

struct NoisyPredictions {
  torch::Tensor flux, err, mu, sigma;
};
template <typename Draw>
NoisyPredictions PredictNoisy(const CalibrationSet& set, size_t a, int64_t n, Draw draw) {
  const TrainingGrid& g = *set.grid;
  const std::vector<int>& idx = *set.idx;
  NoisyPredictions out;
  const int64_t ni = net::kInputPixels;
  out.flux = torch::empty({n, ni});
  out.err = torch::empty({n, ni});
  for (int64_t r = 0; r < n; ++r) {
    const int i = idx[a + static_cast<size_t>(r)];
    double s = 0;
    Rng rng = draw(i, &s);
    NoisyInput(g, i, s, rng, out.flux.data_ptr<float>() + r * ni,
               out.err.data_ptr<float>() + r * ni);
  }
  EnsemblePredict(*set.model, out.flux.to(set.device), out.err.to(set.device), &out.mu, &out.sigma);
  out.mu = out.mu.cpu().contiguous();
  out.sigma = out.sigma.cpu().contiguous();
  return out;
}
}  // namespace

BandArray<double> CalibrateSigma(const CalibrationSet& set,
                                 std::map<std::string, std::map<std::string, double>>* before,
                                 std::map<std::string, std::map<std::string, double>>* after,
                                 const std::vector<double>& bias_coeff) {
  CheckComplete(set, "CalibrateSigma");
  const TrainingGrid& g = *set.grid;
  const std::vector<int>& idx = *set.idx;
  const std::vector<double>& snr = *set.snr;
  BandArray<std::vector<double>> ratio;  // |r| / sigma per band
  torch::NoGradGuard ng;
  const int64_t no = net::kOutputPixels;
  for (size_t a = 0; a < idx.size(); a += 1024) {
    const size_t b = std::min(idx.size(), a + 1024);
    const int64_t n = static_cast<int64_t>(b - a);
    auto [flux, err, mu, sigma] = PredictNoisy(set, a, n, [&](int i, double* s) {
      Rng rng(set.seed, "calibration-noise", static_cast<uint64_t>(i));
      *s = snr[static_cast<size_t>(rng.Uniform() * snr.size()) % snr.size()];
      return rng;
    });
    const float* pf = flux.data_ptr<float>();
    const float* pe = err.data_ptr<float>();
    if (!bias_coeff.empty())
      ApplyBiasCorrection(bias_coeff, pf, pe, static_cast<size_t>(n), mu.data_ptr<float>());
    const float* pm = mu.data_ptr<float>();
    const float* ps = sigma.data_ptr<float>();
    for (int64_t r = 0; r < n; ++r) {
      const int i = idx[a + r];
      for (int64_t k = 0; k < no; ++k) {
        const size_t at = static_cast<size_t>(i) * no + k;
        if (!g.target_mask[at] || !(g.target[at] > 0)) continue;
        const double y = g.target[at];
        const double rr = (pm[r * no + k] - y) / y;
        ratio[SigmaBandOfPixel(static_cast<int>(k))].push_back(std::abs(rr) / ps[r * no + k]);
      }
    }
  }
  auto scale = BandArray<double>::Filled(1.0);
  for (const auto& spec : kBands) {
    const Band band = spec.band;
    const std::vector<double>& v = ratio[band];
    if (v.empty()) continue;
    auto cov = [&](double s, double k) {
      return static_cast<double>(
                 std::count_if(v.begin(), v.end(), [&](double x) { return x < k * s; })) /
             v.size();
    };
    (*before)[spec.name] = {{"1sigma", cov(1, 1)}, {"2sigma", cov(1, 2)}};
    scale[band] = BalancedSigmaScale(v);
    (*after)[spec.name] = {{"1sigma", cov(scale[band], 1)}, {"2sigma", cov(scale[band], 2)}};
  }
  return scale;
}

const std::vector<std::string>& BiasFeatureNames() {
  static const std::vector<std::string> names = {"1",   "u", "i",   "u^2", "u i",
                                                 "i^2", "s", "s u", "s^2"};
  return names;
}

void BiasFeatures(const float* mu, const float* flux, const float* err, double* f) {
  // The output pixels of GU and GI, [first, last), found once (the grid is monotonic in
  // wavelength).
  static const std::array<std::array<int, 2>, 2> range = [] {
    std::array<std::array<int, 2>, 2> r{};
    const auto& og = OutputGrid();
    int j = 0;
    for (const Band band : {Band::kGU, Band::kGI}) {
      const BandSpec& b = Spec(band);
      int first = og.size(), last = 0;
      for (int k = 0; k < og.size(); ++k) {
        if (og.Centre(k) < b.lo || og.Centre(k) > b.hi) continue;
        first = std::min(first, k);
        last = k + 1;
      }
      r[j++] = {first, last};
    }
    return r;
  }();
  auto log_mean = [&](const std::array<int, 2>& r) {
    double sum = 0;
    for (int k = r[0]; k < r[1]; ++k) sum += mu[k];
    return std::log(std::max(sum / std::max(r[1] - r[0], 1), 1e-6));
  };
  const double u = log_mean(range[0]), i = log_mean(range[1]);
  std::vector<double> ratio;
  ratio.reserve(net::kInputPixels);
  for (int64_t k = 0; k < net::kInputPixels; ++k) {
    if (err[k] > 0 && err[k] != kMaskedError) ratio.push_back(std::abs(flux[k]) / err[k]);
  }
  double snr = 30;
  if (!ratio.empty()) {
    std::nth_element(ratio.begin(), ratio.begin() + static_cast<long>(ratio.size() / 2),
                     ratio.end());
    snr = ratio[ratio.size() / 2];
  }
  const double s = std::log(std::clamp(snr, 1.0, 1e4) / 30.0);
  const double v[kBiasFeatures] = {1.0, u, i, u * u, u * i, i * i, s, s * u, s * s};
  std::copy(v, v + kBiasFeatures, f);
}

void ApplyBiasCorrection(const std::vector<double>& coeff, const float* flux, const float* err,
                         size_t n, float* mu) {
  const int64_t ni = net::kInputPixels, no = net::kOutputPixels;
  if (coeff.size() != static_cast<size_t>(no * kBiasFeatures))
    throw Error("ApplyBiasCorrection: expected 574 x 9 coefficients");
  double f[kBiasFeatures];
  for (size_t r = 0; r < n; ++r) {
    float* m = mu + r * no;
    BiasFeatures(m, flux + r * ni, err + r * ni, f);
    for (int64_t k = 0; k < no; ++k) {
      double c = 0;
      for (int j = 0; j < kBiasFeatures; ++j)
        c += coeff[static_cast<size_t>(k * kBiasFeatures + j)] * f[j];
      // a star far outside the fitted features gets at most a factor e^(+-0.5): the correction is a
      // calibration of the residual, not a second network
      m[k] = static_cast<float>(m[k] *
                                std::exp(std::clamp(c, -kMaxBiasCorrection, kMaxBiasCorrection)));
    }
  }
}

std::vector<double> FitBiasCoefficients(const std::vector<double>& features,
                                        const std::vector<float>& log_ratio, size_t rows) {
  const int64_t no = net::kOutputPixels;
  constexpr int p = kBiasFeatures;
  if (features.size() != rows * p || log_ratio.size() != rows * static_cast<size_t>(no))
    throw Error("FitBiasCoefficients: expected rows x 9 features and rows x 574 log ratios");
  std::vector<double> coeff(static_cast<size_t>(no * p), 0.0);
  for (int64_t k = 0; k < no; ++k) {
    Eigen::Matrix<double, p, p> m = Eigen::Matrix<double, p, p>::Zero();
    Eigen::Matrix<double, p, 1> v = Eigen::Matrix<double, p, 1>::Zero();
    for (size_t r = 0; r < rows; ++r) {
      const float y = log_ratio[r * no + k];
      if (std::isnan(y)) continue;
      const Eigen::Map<const Eigen::Matrix<double, p, 1>> f(features.data() + r * p);
      m.noalias() += f * f.transpose();
      v += f * static_cast<double>(y);
    }
    const double scale = m.trace() / p;
    if (!(scale > 0)) continue;  // no valid row: no correction at this pixel
    m.diagonal().array() += 1e-6 * scale;
    const Eigen::Matrix<double, p, 1> c = m.ldlt().solve(v);
    for (int j = 0; j < p; ++j) coeff[static_cast<size_t>(k * p + j)] = c(j);
  }
  return coeff;
}

std::vector<double> FitBiasCorrection(const CalibrationSet& set, json* info) {
  CheckComplete(set, "FitBiasCorrection");
  const TrainingGrid& g = *set.grid;
  const std::vector<int>& idx = *set.idx;
  const std::vector<double>& snr = *set.snr;
  torch::NoGradGuard ng;
  const int64_t ni = net::kInputPixels, no = net::kOutputPixels;
  constexpr int p = kBiasFeatures;
  std::vector<double> features;
  std::vector<float> log_ratio;
  for (double s : snr) {
    for (size_t a = 0; a < idx.size(); a += 1024) {
      const size_t b = std::min(idx.size(), a + 1024);
      const int64_t n = static_cast<int64_t>(b - a);
      auto [flux, err, mu, sigma] = PredictNoisy(set, a, n, [&](int i, double* snr_i) {
        *snr_i = s;
        return Rng(set.seed, "bias-noise",
                   static_cast<uint64_t>(i) * 1000 + static_cast<uint64_t>(s));
      });
      const float* pf = flux.data_ptr<float>();
      const float* pe = err.data_ptr<float>();
      const float* pm = mu.data_ptr<float>();
      for (int64_t r = 0; r < n; ++r) {
        const int i = idx[a + r];
        double f[p];
        BiasFeatures(pm + r * no, pf + r * ni, pe + r * ni, f);
        features.insert(features.end(), f, f + p);
        for (int64_t k = 0; k < no; ++k) {
          const size_t at = static_cast<size_t>(i) * no + k;
          const bool ok = g.target_mask[at] && g.target[at] > 0 && pm[r * no + k] > 0;
          log_ratio.push_back(ok ? static_cast<float>(std::log(g.target[at] / pm[r * no + k]))
                                 : std::numeric_limits<float>::quiet_NaN());
        }
      }
    }
  }
  const size_t rows = features.size() / p;
  if (rows == 0) throw Error("FitBiasCorrection: no validation stars");
  const auto coeff = FitBiasCoefficients(features, log_ratio, rows);
  // RMS of ln(true / mu) per band before and after, on the rows it was fitted on
  std::map<std::string, std::array<double, 3>> acc;  // band -> (sum before^2, sum after^2, count)
  const auto& og = OutputGrid();
  for (size_t r = 0; r < rows; ++r) {
    for (int64_t k = 0; k < no; ++k) {
      const float y = log_ratio[r * no + k];
      if (std::isnan(y)) continue;
      double c = 0;
      for (int j = 0; j < p; ++j) c += coeff[static_cast<size_t>(k * p + j)] * features[r * p + j];
      for (const auto& band : kBands) {
        if (og.Centre(static_cast<int>(k)) < band.lo || og.Centre(static_cast<int>(k)) > band.hi)
          continue;
        auto& a = acc[band.name];
        a[0] += static_cast<double>(y) * y;
        a[1] += (y - c) * (y - c);
        a[2] += 1;
      }
    }
  }
  if (info) {
    json rms = json::object();
    for (const auto& [band, a] : acc)
      rms[band] = {{"before", std::sqrt(a[0] / a[2])}, {"after", std::sqrt(a[1] / a[2])}};
    *info = {{"stars", idx.size()}, {"rows", rows}, {"snr", snr}, {"rms_ln_true_over_mu", rms}};
  }
  return coeff;
}

}  // namespace csst
