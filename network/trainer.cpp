#include <ATen/Parallel.h>
#include <torch/torch.h>

#include <Eigen/Dense>
#include <chrono>
#include <cmath>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <future>
#include <nlohmann/json.hpp>
#include <numeric>

#include "build_config.h"
#include "core/errors.h"
#include "core/files.h"
#include "core/grid.h"
#include "core/log.h"
#include "core/progress.h"
#include "core/rng.h"
#include "io/fits.h"
#include "io/training_set.h"
#include "network/model.h"
#include "network/model_io.h"
#include "network/sed_network.h"

namespace csst {
namespace fs = std::filesystem;
using nlohmann::json;

void TrainOptions::Validate() const {
  auto fail = [](const std::string& m) { throw ConfigError("config error: " + m); };
  if (grid.empty()) fail("train.grid is required");
  if (epochs < 1) fail("train.epochs must be >= 1");
  if (batch < 1) fail("train.batch must be >= 1");
  if (!(lr > 0)) fail("train.lr must be > 0");
  if (!(beta > 0 && beta <= 1)) fail("train.beta must be in (0, 1]");
  if (warmup_epochs < 0) fail("train.warmup_epochs must be >= 0");
  if (ensemble < 1 || ensemble > 16) fail("train.ensemble must be in 1..16");
  if (pca_components < 0 || pca_components > net::kOutputPixels)
    fail("train.pca_components must be in 0..574");
  if (checkpoint_every < 1) fail("train.checkpoint_every must be >= 1");
  if (snr.empty()) fail("train.snr must list at least one SNR");
  for (double s : snr)
    if (!(s > 0)) fail("train.snr values must be > 0");
  if (!(val_fraction > 0 && val_fraction < 0.5)) fail("train.val_fraction must be in (0, 0.5)");
  if (calibration_snr.empty()) fail("train.calibration_snr must list at least one SNR");
  for (double s : calibration_snr)
    if (!(s > 0)) fail("train.calibration_snr values must be > 0");
}

namespace {

// A batch with fresh noise: F' = F (1 + r), r ~ N(0, 1/snr^2) per pixel; err = F / snr.
struct Batch {
  torch::Tensor flux, err, target, mask;
};

// Where a batch's noise comes from: star i of the batch draws from (seed, stream, salt, i), at an
// SNR drawn from `snrs`.
struct BatchNoise {
  const std::vector<double>* snrs;
  uint64_t seed;
  std::string stream;
  uint64_t salt;
};

Batch MakeBatch(const TrainingGrid& g, const std::vector<int>& idx, size_t begin, size_t end,
                const BatchNoise& noise) {
  const std::vector<double>& snrs = *noise.snrs;
  const int64_t n = static_cast<int64_t>(end - begin);
  const int64_t ni = net::kInputPixels, no = net::kOutputPixels;
  auto flux = torch::empty({n, ni}), err = torch::empty({n, ni});
  auto target = torch::empty({n, no}), mask = torch::empty({n, no});
  float* pf = flux.data_ptr<float>();
  float* pe = err.data_ptr<float>();
  float* pt = target.data_ptr<float>();
  float* pm = mask.data_ptr<float>();
  for (int64_t b = 0; b < n; ++b) {
    const int i = idx[begin + b];
    Rng rng(noise.seed, noise.stream, noise.salt * 1000003ULL + static_cast<uint64_t>(i));
    const double snr = snrs[static_cast<size_t>(rng.Uniform() * snrs.size()) % snrs.size()];
    const float* in = &g.input[static_cast<size_t>(i) * ni];
    for (int64_t k = 0; k < ni; ++k) {
      const double f = in[k];
      pf[b * ni + k] = static_cast<float>(f * (1.0 + rng.Normal() / snr));
      pe[b * ni + k] = static_cast<float>(std::abs(f) / snr);
    }
    const float* t = &g.target[static_cast<size_t>(i) * no];
    const uint8_t* m = &g.target_mask[static_cast<size_t>(i) * no];
    for (int64_t k = 0; k < no; ++k) {
      const bool ok = m[k] && t[k] > 0;
      pt[b * no + k] = ok ? t[k] : 1.0f;
      pm[b * no + k] = ok ? 1.0f : 0.0f;
    }
  }
  return {flux, err, target, mask};
}

double EvalNll(net::Ensemble& model, const TrainingGrid& g, const std::vector<int>& idx,
               const TrainOptions& o, torch::Device dev) {
  if (idx.empty()) return 0;
  model->eval();
  torch::NoGradGuard ng;
  double total = 0;
  for (size_t a = 0; a < idx.size(); a += 1024) {
    const size_t b = std::min(idx.size(), a + 1024);
    auto batch = MakeBatch(g, idx, a, b, BatchNoise{&o.snr, o.seed, "val-noise", 0});
    for (int k = 0; k < model->size(); ++k) {
      auto out = model->member(k)->forward(batch.flux.to(dev), batch.err.to(dev));
      total += net::GaussianNll(out.mu, out.sigma, batch.target.to(dev), batch.mask.to(dev))
                   .item<double>() *
               static_cast<double>(b - a);
    }
  }
  model->train();
  return total / (static_cast<double>(idx.size()) * model->size());
}

// PCA of the log targets of the stars `idx` whose 574 pixels are all valid: the mean [574] and the
// leading K components [K x 574], each scaled by the square root of its eigenvalue. `residual_rms`:
// the RMS over those stars and pixels of the log SED left out by K components (the basis's floor on
// the relative error of mu).
struct LogSedBasis {
  torch::Tensor mean, basis;
  double residual_rms = 0;
  size_t stars = 0;
};
LogSedBasis LogSedPca(const TrainingGrid& g, const std::vector<int>& idx, int k) {
  LogSedBasis out;
  const int no = static_cast<int>(net::kOutputPixels);
  std::vector<int> use;
  for (int i : idx) {
    bool ok = true;
    for (int p = 0; p < no && ok; ++p) {
      const size_t at = static_cast<size_t>(i) * no + p;
      ok = g.target_mask[at] && g.target[at] > 0;
    }
    if (ok) use.push_back(i);
  }
  if (static_cast<int>(use.size()) <= k)
    throw Error(std::to_string(use.size()) +
                " training stars with all 574 target pixels valid: too few for " +
                std::to_string(k) + " PCA components (train.pca_components)");
  Eigen::MatrixXd x(static_cast<Eigen::Index>(use.size()), no);
  for (size_t r = 0; r < use.size(); ++r)
    for (int p = 0; p < no; ++p)
      x(static_cast<Eigen::Index>(r), p) = std::log(g.target[static_cast<size_t>(use[r]) * no + p]);
  const Eigen::RowVectorXd m = x.colwise().mean();
  x.rowwise() -= m;
  const Eigen::MatrixXd cov = (x.transpose() * x) / static_cast<double>(use.size() - 1);
  const Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> es(cov);  // eigenvalues ascending
  out.mean = torch::empty({no});
  out.basis = torch::empty({k, no});
  for (int p = 0; p < no; ++p) out.mean.data_ptr<float>()[p] = static_cast<float>(m(p));
  double left = 0;
  for (int j = 0; j < no - k; ++j) left += std::max(0.0, es.eigenvalues()(j));
  for (int c = 0; c < k; ++c) {
    const int j = no - 1 - c;
    const double sd = std::sqrt(std::max(0.0, es.eigenvalues()(j)));
    for (int p = 0; p < no; ++p)
      out.basis.data_ptr<float>()[c * no + p] = static_cast<float>(sd * es.eigenvectors()(p, j));
  }
  out.residual_rms =
      std::sqrt(left * static_cast<double>(use.size() - 1) / static_cast<double>(use.size()) / no);
  out.stars = use.size();
  return out;
}

// The validation split of the non-test stars: star i depends only on (seed, i).
void SplitTrainValidation(const TrainingGrid& g, const TrainOptions& o, std::vector<int>* train,
                          std::vector<int>* val) {
  for (size_t i = 0; i < g.size(); ++i) {
    if (g.test[i]) continue;
    Rng r(o.seed, "val-split", i);
    (r.Uniform() < o.val_fraction ? *val : *train).push_back(static_cast<int>(i));
  }
}

void Calibrate(net::Ensemble& model, const TrainingGrid& g, const std::vector<int>& val_idx,
               const TrainOptions& o, torch::Device dev, ModelSidecar* side) {
  if (val_idx.empty()) {
    Logger("train")->warn("{}: no validation stars: sigma left uncalibrated (scale 1)", o.grid);
    return;
  }
  auto log = Logger("train");
  side->bias_coeff.clear();
  side->bias_info = nullptr;
  const CalibrationSet set{&model, &g, &val_idx, &o.calibration_snr, o.seed, dev};
  if (o.bias_correction) {
    side->bias_coeff = FitBiasCorrection(set, &side->bias_info);
    side->bias_info["split"] = "validation split of " + o.grid;
    for (const auto& [band, r] : side->bias_info.at("rms_ln_true_over_mu").items()) {
      log->info("bias correction {}: RMS of ln(true/mu) {:.4f} -> {:.4f} on the validation split",
                band, r.at("before").get<double>(), r.at("after").get<double>());
    }
  }
  side->sigma_scale =
      CalibrateSigma(set, &side->coverage_before, &side->coverage_after, side->bias_coeff);
  side->training["calibration_snr"] = o.calibration_snr;
  for (const auto& spec : kBands) {
    const std::string band = spec.name;
    log->info(
        "sigma calibration {}: scale {:.3f}; coverage 1/2 sigma {:.3f}/{:.3f} before, "
        "{:.3f}/{:.3f} after",
        band, side->sigma_scale[spec.band], side->coverage_before[band]["1sigma"],
        side->coverage_before[band]["2sigma"], side->coverage_after[band]["1sigma"],
        side->coverage_after[band]["2sigma"]);
  }
}

}  // namespace

BandArray<double> RecalibrateModel(const TrainOptions& o) {
  o.Validate();
  const auto dev = TorchDevice(o.device, "train.device");
  ModelSidecar side;
  auto model = LoadModel(o.out, &side);
  model->to(dev);
  model->eval();
  const TrainingGrid g = ReadTrainingGrid(o.grid);
  std::vector<int> train_idx, val_idx;
  SplitTrainValidation(g, o, &train_idx, &val_idx);
  if (val_idx.empty()) throw Error(o.grid + ": no validation stars to calibrate sigma on");
  Calibrate(model, g, val_idx, o, dev, &side);
  WriteTextAtomically(o.out + ".json", side.ToJson().dump(1) + "\n");
  Logger("train")->info("rewrote {}.json (weights unchanged)", o.out);
  return side.sigma_scale;
}

TrainSummary TrainNetwork(const TrainOptions& o) {
  o.Validate();
  torch::AutoGradMode grad_on(true);  // whatever the caller's mode (e.g. inside a NoGradGuard)
  auto log = Logger("train");
  const auto dev = TorchDevice(o.device, "train.device");
  log->info("device {}, {} intra-op thread(s)", dev.is_cuda() ? "cuda" : "cpu",
            at::get_num_threads());
  const TrainingGrid g = ReadTrainingGrid(o.grid);
  std::vector<int> train_idx, val_idx;
  SplitTrainValidation(g, o, &train_idx, &val_idx);
  if (train_idx.empty()) throw Error(o.grid + ": no training stars (all in the test split)");
  log->info("{}: {} training, {} validation, {} test stars", o.grid, train_idx.size(),
            val_idx.size(), g.size() - train_idx.size() - val_idx.size());

  torch::manual_seed(o.seed);
  ModelInfo init_info;  // the initial model's sidecar, read once
  if (!o.init.empty()) {
    init_info = ReadModelInfo(o.init);
    const int init_k = init_info.pca_components;
    if (init_k != o.pca_components) {
      throw ConfigError("config error: train.pca_components = " + std::to_string(o.pca_components) +
                        " but train.init " + o.init + " has " +
                        (init_k == 0 ? std::string("574 output pixels (0)")
                                     : std::to_string(init_k) + " PCA components") +
                        "; fine-tuning keeps the initial model's output basis");
    }
  }
  net::Ensemble model(o.ensemble, o.pca_components);
  json pca_info = nullptr;
  if (!o.init.empty()) {
    LoadEnsembleWeights(model, o.init);
    log->info("fine-tuning from {}", o.init);
    if (o.pca_components > 0) {  // the basis came with the weights: record where it was computed
      const json init_side = json::parse(init_info.json);
      pca_info = init_side.value("training", json::object()).value("output_basis", json(nullptr));
      if (pca_info.is_null()) pca_info = {{"components", o.pca_components}};
      pca_info["from"] = pca_info.value("from", o.init);
    }
  } else {
    for (int k = 0; k < o.ensemble; ++k) {
      torch::manual_seed(o.seed + 7919ULL * k);
      net::HeInit(*model->member(k));
    }
    if (o.pca_components > 0 &&
        !fs::exists(o.out + ".ckpt.json")) {  // a resumed run reads it from the checkpoint
      const auto [mean, basis, residual, stars] = LogSedPca(g, train_idx, o.pca_components);
      for (int k = 0; k < o.ensemble; ++k) model->member(k)->SetOutputBasis(mean, basis);
      pca_info = {
          {"components", o.pca_components}, {"stars", stars}, {"residual_rms_log", residual}};
      log->info(
          "output basis: {} PCA components of the log SED from {} training stars, residual RMS "
          "{:.2e} (log)",
          o.pca_components, stars, residual);
    }
  }
  model->to(dev);
  torch::optim::Adam opt(model->parameters(), torch::optim::AdamOptions(o.lr));

  const std::string ckpt = o.out + ".ckpt";
  TrainSummary sum;
  int start_epoch = 0, bad_epochs = 0;
  double best_val = std::numeric_limits<double>::infinity();
  json history = json::array();
  if (fs::exists(ckpt + ".json")) {
    const auto state = json::parse(ReadText(ckpt + ".json"));
    // A checkpoint resumes only the run that wrote it; epochs and max_hours may change between
    // runs.
    if (state.at("grid") != o.grid || state.at("ensemble") != o.ensemble ||
        state.at("seed") != o.seed || state.value("init", std::string()) != o.init ||
        state.value("batch", o.batch) != o.batch || state.value("lr", o.lr) != o.lr ||
        state.value("loss", std::string("nll")) != ToString(o.loss) ||
        state.value("schedule", std::string("constant")) != ToString(o.schedule) ||
        state.value("pca_components", 0) != o.pca_components) {
      throw Error(ckpt +
                  ".json: checkpoint belongs to another training run (grid, ensemble, seed, init, "
                  "batch, lr, "
                  "loss, schedule or pca_components differ); remove it to start afresh");
    }
    pca_info = state.value("output_basis", json(nullptr));
    torch::load(model, ckpt + ".pt");
    torch::load(opt, ckpt + ".opt");
    start_epoch = state.at("epoch");
    best_val = state.at("best_val");
    bad_epochs = state.at("bad_epochs");
    sum.best_epoch = state.at("best_epoch");
    history = state.at("history");
    sum.resumed = true;
    log->info("resumed from {} after epoch {}", ckpt, start_epoch);
  }
  auto save_checkpoint = [&](int epoch) {
    AtomicOutput pt(ckpt + ".pt"), op(ckpt + ".opt");
    torch::save(model, pt.temp().string());
    torch::save(opt, op.temp().string());
    pt.Commit();
    op.Commit();
    json s = {{"grid", o.grid},
              {"ensemble", o.ensemble},
              {"seed", o.seed},
              {"init", o.init},
              {"batch", o.batch},
              {"lr", o.lr},
              {"loss", ToString(o.loss)},
              {"schedule", ToString(o.schedule)},
              {"epoch", epoch},
              {"best_val", best_val},
              {"bad_epochs", bad_epochs},
              {"best_epoch", sum.best_epoch},
              {"pca_components", o.pca_components},
              {"output_basis", pca_info},
              {"history", history}};
    WriteTextAtomically(ckpt + ".json", s.dump(1));
  };
  const auto t_start = std::chrono::steady_clock::now();
  // CPU time of the whole process (all threads), for comparisons at equal compute.
  double cpu_seconds = history.empty() ? 0.0 : history.back().value("cpu_seconds", 0.0);
  double train_nll = 0;
  int epoch = start_epoch;
  for (; epoch < o.epochs; ++epoch) {
    const auto t0 = std::chrono::steady_clock::now();
    const std::clock_t c0 = std::clock();
    const bool warmup = o.loss == TrainLoss::kMseWarmup && epoch < o.warmup_epochs;
    const double beta = o.loss == TrainLoss::kBetaNll ? o.beta : 0.0;
    const double lr = o.schedule == LrSchedule::kCosine
                          ? 0.5 * o.lr * (1 + std::cos(M_PI * epoch / o.epochs))
                          : o.lr;
    for (auto& group : opt.param_groups())
      static_cast<torch::optim::AdamOptions&>(group.options()).lr(lr);
    // Per-epoch shuffle from (seed, epoch): resumable and thread-count independent.
    std::vector<int> order = train_idx;
    Rng shuf(o.seed, "shuffle", static_cast<uint64_t>(epoch));
    for (size_t i = order.size(); i > 1; --i) std::swap(order[i - 1], order[shuf.Bits() % i]);
    double acc = 0;
    size_t seen = 0;
    // Streaming data loading: the next batch (fresh noise) is built while this one trains.
    const BatchNoise noise{&o.snr, o.seed, "train-noise", static_cast<uint64_t>(epoch)};
    auto next = std::async(std::launch::async, MakeBatch, std::cref(g), std::cref(order), size_t{0},
                           std::min(order.size(), static_cast<size_t>(o.batch)), noise);
    for (size_t a = 0; a < order.size(); a += static_cast<size_t>(o.batch)) {
      const size_t b = std::min(order.size(), a + static_cast<size_t>(o.batch));
      Batch batch = next.get();
      if (b < order.size()) {
        next = std::async(std::launch::async, MakeBatch, std::cref(g), std::cref(order), b,
                          std::min(order.size(), b + static_cast<size_t>(o.batch)), noise);
      }
      CheckCancelled();
      opt.zero_grad();
      torch::Tensor loss = torch::zeros({}, torch::TensorOptions().device(dev));
      const auto fx = batch.flux.to(dev), ex = batch.err.to(dev), ty = batch.target.to(dev),
                 my = batch.mask.to(dev);
      for (int k = 0; k < model->size(); ++k) {
        auto out = model->member(k)->forward(fx, ex);
        loss = loss + (warmup ? net::RelativeMse(out.mu, ty, my)
                              : net::GaussianNll(out.mu, out.sigma, ty, my, beta));
      }
      loss.backward();
      opt.step();
      acc += loss.item<double>() / model->size() * static_cast<double>(b - a);
      seen += b - a;
    }
    train_nll = acc / static_cast<double>(seen);
    // Without validation stars (tiny sets) the training NLL selects the best epoch.
    const double val = val_idx.empty() ? train_nll : EvalNll(model, g, val_idx, o, dev);
    const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    cpu_seconds += static_cast<double>(std::clock() - c0) / CLOCKS_PER_SEC;
    sum.seconds_per_epoch = dt;
    sum.spectra_per_second = static_cast<double>(seen) * model->size() / dt;
    history.push_back({{"epoch", epoch + 1},
                       {"train_nll", train_nll},
                       {"val_nll", val},
                       {"seconds", dt},
                       {"cpu_seconds", cpu_seconds},
                       {"lr", lr}});
    if (val < best_val) {
      best_val = val;
      bad_epochs = 0;
      sum.best_epoch = epoch + 1;
      AtomicOutput best(o.out + ".best.pt");
      torch::save(model, best.temp().string());
      best.Commit();
    } else {
      ++bad_epochs;
    }
    log->info("epoch {}/{}: train NLL {:.3f}, val NLL {:.3f}{}, {:.1f} s ({:.0f} spectra/s)",
              epoch + 1, o.epochs, train_nll, val, bad_epochs == 0 ? " (best)" : "", dt,
              sum.spectra_per_second);
    const bool last = epoch + 1 == o.epochs || bad_epochs >= o.patience;
    const double hours =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count() / 3600;
    const bool out_of_time = o.max_hours > 0 && hours >= o.max_hours;
    if ((epoch + 1) % o.checkpoint_every == 0 || last || out_of_time) save_checkpoint(epoch + 1);
    if (bad_epochs >= o.patience) {
      sum.stopped_early = true;
      log->info("early stop: validation NLL has not improved for {} epochs", o.patience);
      ++epoch;
      break;
    }
    if (out_of_time) {
      log->info("stopping after {:.2f} h (max_hours); rerun the same command to continue", hours);
      ++epoch;
      break;
    }
  }
  sum.epochs_run = epoch;
  sum.final_train_nll = train_nll;
  sum.best_val_nll = best_val;
  // The best weights become the model; sigma calibrated on the validation split.
  if (fs::exists(o.out + ".best.pt")) torch::load(model, o.out + ".best.pt");
  // BatchNorm recalibration: the running statistics lag behind the weights during training (an
  // exponential average over past steps); recompute them as a plain average over training batches
  // with the final weights, so that inference matches the trained network.
  {
    torch::NoGradGuard ng;
    for (auto& m : model->modules(/*include_self=*/false)) {
      if (auto* bn = dynamic_cast<torch::nn::BatchNorm1dImpl*>(m.get())) {
        bn->options.momentum(c10::nullopt);  // cumulative average
        bn->reset_running_stats();
      }
    }
    model->train();
    const size_t nb = std::min<size_t>(train_idx.size(), static_cast<size_t>(o.batch) * 20);
    for (size_t a = 0; a < nb; a += static_cast<size_t>(o.batch)) {
      const auto batch = MakeBatch(g, train_idx, a, std::min(nb, a + static_cast<size_t>(o.batch)),
                                   BatchNoise{&o.snr, o.seed, "bn-recalibration", 0});
      for (int k = 0; k < model->size(); ++k)
        model->member(k)->forward(batch.flux.to(dev), batch.err.to(dev));
    }
    for (auto& m : model->modules(false)) {
      if (auto* bn = dynamic_cast<torch::nn::BatchNorm1dImpl*>(m.get())) bn->options.momentum(0.1);
    }
  }
  model->eval();
  ModelSidecar side;
  side.ensemble = o.ensemble;
  side.pca_components = o.pca_components;
  side.training = {{"grid", o.grid},
                   {"seed", o.seed},
                   {"epochs_run", sum.epochs_run},
                   {"best_epoch", sum.best_epoch},
                   {"final_train_nll", sum.final_train_nll},
                   {"best_val_nll", sum.best_val_nll},
                   {"lr", o.lr},
                   {"batch", o.batch},
                   {"snr", o.snr},
                   {"stopped_early", sum.stopped_early},
                   {"loss", ToString(o.loss)},
                   {"beta", o.beta},
                   {"warmup_epochs", o.warmup_epochs},
                   {"schedule", ToString(o.schedule)},
                   {"cpu_seconds", cpu_seconds},
                   {"init", o.init},
                   {"output_basis", pca_info},
                   {"code_version", std::string(CSST_VERSION) + "+" + CSST_GIT_DESCRIBE},
                   {"date", FitsDateNow()},
                   {"history", history}};
  Calibrate(model, g, val_idx, o, dev, &side);
  sum.sigma_scale = side.sigma_scale;
  SaveModel(model, side, o.out);
  log->info("wrote {}.pt and {}.json (best epoch {}, val NLL {:.3f})", o.out, o.out, sum.best_epoch,
            best_val);
  return sum;
}

}  // namespace csst
