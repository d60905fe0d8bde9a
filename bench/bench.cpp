// csst-flatcube benchmarks (`make bench`): prints throughput figures and writes them, by section,
// to out/bench/bench.json (CSST_BENCH_JSON; tools/docs_tables.py makes docs/benchmarks.md's table
// from it); never part of the tests.
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <tbb/parallel_for.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/files.h"
#include "core/grid.h"
#include "core/rng.h"
#include "flatfield/cube_fit.h"
#include "flatfield/products.h"
#include "instrument/instrument.h"
#include "io/fits.h"
#include "io/ingest.h"
#include "io/spectrum_io.h"
#include "network/sed_network.h"
#include "pipeline/config.h"
#include "pipeline/engine.h"
#include "pipeline/stage.h"
#include "simulation/csst/observe.h"
#include "simulation/dr7_sample.h"
#include "simulation/gpr/gpr.h"
#include "simulation/label_grid.h"
#include "simulation/lamost_sim.h"
#include "simulation/stellar/synthesizer.h"

using namespace csst;
namespace fs = std::filesystem;

namespace {
double Seconds(const std::function<void()>& f) {
  const auto t0 = std::chrono::steady_clock::now();
  f();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}
// A little-endian .npy file (NumPy format 1.0) of float64 or float32 values with the given shape.
template <typename T>
void WriteNpy(const fs::path& path, const std::vector<T>& v, const std::vector<size_t>& shape) {
  std::string dims;
  for (size_t d : shape) dims += std::to_string(d) + ", ";
  std::string header = std::string("{'descr': '<f") + (sizeof(T) == 8 ? "8" : "4") +
                       "', 'fortran_order': False, 'shape': (" + dims + "), }";
  while ((10 + header.size() + 1) % 64) header += ' ';
  header += '\n';
  std::ofstream f(path, std::ios::binary);
  f.write("\x93NUMPY\x01\x00", 8);
  const uint16_t len = static_cast<uint16_t>(header.size());
  f.write(reinterpret_cast<const char*>(&len), 2);
  f << header;
  f.write(reinterpret_cast<const char*>(v.data()),
          static_cast<std::streamsize>(v.size() * sizeof(T)));
}

// Runs the CLI with `args` as a child process, its output into `log`; returns the child's exit
// status and sets *peak_kb to its own peak RSS (wait4: the child alone, not this process or earlier
// children).
int RunChild(const std::vector<std::string>& args, const std::string& log, long* peak_kb) {
  std::vector<char*> argv;
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  const pid_t pid = fork();
  if (pid == 0) {
    const int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0) {
      dup2(fd, 1);
      dup2(fd, 2);
    }
    execv(argv[0], argv.data());
    _exit(127);
  }
  int status = 0;
  rusage u{};
  if (pid < 0 || wait4(pid, &status, 0, &u) != pid) return -1;
  *peak_kb = u.ru_maxrss;
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

long PeakRssKb() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return u.ru_maxrss;
}

// Every figure the bench prints, by section: each complete printed line becomes one figure (what:
// the text before its first ": ", value: the rest), written to bench.json by Write.
class Figures {
 public:
  void Section(const std::string& s) { section_ = s; }
  void Print(const char* fmt, ...) __attribute__((format(printf, 2, 3))) {
    char buf[4096];
    va_list ap;
    va_start(ap, fmt);
    std::vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    std::fputs(buf, stdout);
    partial_ += buf;
    for (size_t nl; (nl = partial_.find('\n')) != std::string::npos;) {
      const std::string line = partial_.substr(0, nl);
      partial_.erase(0, nl + 1);
      if (line.empty()) continue;
      const size_t colon = line.find(": ");
      rows_.push_back({section_, colon == std::string::npos ? line : line.substr(0, colon),
                       colon == std::string::npos ? "" : line.substr(colon + 2)});
    }
  }
  // Replaces the sections measured now in `path` (kept: the others, from an earlier run).
  void Write(const fs::path& path, const std::vector<std::string>& sections) const {
    nlohmann::json j = {{"format", "csst-bench figures 1"}, {"figures", nlohmann::json::array()}};
    if (fs::exists(path)) {
      try {
        const auto old = nlohmann::json::parse(ReadText(path));
        for (const auto& f : old.at("figures"))
          if (std::find(sections.begin(), sections.end(), f.at("section").get<std::string>()) ==
              sections.end())
            j["figures"].push_back(f);
      } catch (const nlohmann::json::exception& e) {
        std::fprintf(stderr, "bench: %s is not a bench.json (%s); it is replaced\n",
                     path.string().c_str(), e.what());
      }
    }
    for (const auto& [section, what, value] : rows_)
      j["figures"].push_back({{"section", section}, {"what", what}, {"value", value}});
    fs::create_directories(path.parent_path().empty() ? fs::path(".") : path.parent_path());
    WriteTextAtomically(path, j.dump(1) + "\n");
  }

 private:
  std::string section_, partial_;
  std::vector<std::array<std::string, 3>> rows_;
};
Figures figures;
}  // namespace

int main(int argc, char** argv) {
  // csst-bench [MODEL [SECTION...]]: sections synth, label-grid, network, flat, ingest, gpr, scale,
  // mc, mc-rss, mpi (default: all).
  const std::string model = argc > 1 ? argv[1] : "network/models/uara_default";
  const std::vector<std::string> only(argv + std::min(argc, 2), argv + argc);
  const std::vector<std::string> all_sections = {
      "mpi", "synth", "label-grid", "network", "flat", "ingest", "gpr", "scale", "mc", "mc-rss"};
  for (const auto& s : only) {
    if (std::find(all_sections.begin(), all_sections.end(), s) == all_sections.end()) {
      std::fprintf(stderr, "csst-bench: unknown section '%s' (sections:", s.c_str());
      for (const auto& a : all_sections) std::fprintf(stderr, " %s", a.c_str());
      std::fprintf(stderr, ")\n");
      return 2;
    }
  }
  std::vector<std::string> measured;
  auto want = [&](const std::string& s) {
    const bool w = only.empty() || std::find(only.begin(), only.end(), s) != only.end();
    if (w) {
      figures.Section(s);
      measured.push_back(s);
    }
    return w;
  };
  std::setvbuf(stdout, nullptr, _IOLBF, 0);  // each figure appears as soon as it is measured
  const fs::path tmp = fs::temp_directory_path() / "csst-bench";
  fs::create_directories(tmp);
  std::printf(
      "csst-flatcube benchmarks (single process; TBB/LibTorch use the machine's cores where "
      "noted)\n\n");

  // MPI (issue #27): the distributed stages (predict, validate) with 1 and 2 ranks of one thread
  // each, on one set of upstream products, and the bytes rank 0 received per stage.
  if (want("mpi")) {
#if defined(CSST_MPIEXEC)
    ::setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 1);
    ::setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 1);
    const fs::path dir = tmp / "mpi";
    fs::remove_all(dir);
    fs::create_directories(dir);
    const fs::path cfg = dir / "mpi.yaml";
    std::ofstream(cfg)
        << "random_seed: 21\noutput:\n  dir: " << (dir / "out").string()
        << "\nnetwork:\n  model: " << model
        << "\n  batch: 100\nstar_block: 100\ningest:\n  chunk: 100\nsample:\n  n_stars: 400\n"
        << "assemble:\n  quicklooks: false\nvalidate:\n  realizations: 100\n  report: false\n";
    const std::string cli = std::string(CSST_CLI_PATH) + " run " + cfg.string() + " --threads 1";
    if (std::system((cli + " --to predict > " + (dir / "up.log").string() + " 2>&1").c_str()) !=
        0) {
      figures.Print("mpi: the upstream run failed (see %s)\n", (dir / "up.log").string().c_str());
    } else {
      std::map<int, std::map<std::string, double>> secs;
      std::map<std::string, long> bytes;
      for (int k : {1, 2}) {  // sample alone (its outputs are rewritten in place, the same bytes)
        const fs::path log = dir / ("s" + std::to_string(k) + ".log");
        const std::string cmd = std::string(CSST_MPIEXEC) + " " + CSST_MPIEXEC_NUMPROC_FLAG + " " +
                                std::to_string(k) + " " + cli + " --only sample > " + log.string() +
                                " 2>&1";
        (void)std::system(cmd.c_str());
        std::ifstream in(log);
        for (std::string line; std::getline(in, line);) {
          const auto at = line.find("stage sample: done in ");
          if (at != std::string::npos) secs[k]["sample"] = std::atof(line.c_str() + at + 22);
          const auto b = line.find("stage sample: 2 ranks, ");
          if (b != std::string::npos) bytes["sample"] = std::atol(line.c_str() + b + 23);
        }
      }
      for (int k : {1, 2}) {
        const fs::path log = dir / ("k" + std::to_string(k) + ".log");
        // simulate is not downstream of predict: forced first (with anything upstream the sample
        // run left stale), into the same log.
        const std::string mpi = std::string(CSST_MPIEXEC) + " " + CSST_MPIEXEC_NUMPROC_FLAG + " " +
                                std::to_string(k) + " ";
        const std::string cmd = mpi + cli + " --from ingest --to ingest > " + log.string() +
                                " 2>&1 && " + mpi + cli + " --from simulate --to simulate >> " +
                                log.string() + " 2>&1 && " + mpi + cli + " --from predict >> " +
                                log.string() + " 2>&1";
        const double wall = Seconds([&] { (void)std::system(cmd.c_str()); });
        secs[k]["wall"] = wall;
        std::ifstream in(log);
        for (std::string line; std::getline(in, line);) {
          for (const char* stage :
               {"ingest", "predict", "simulate", "compare", "fit", "validate"}) {
            const std::string done = std::string("stage ") + stage + ": done in ";
            const auto at = line.find(done);
            if (at != std::string::npos)
              secs[k][stage] = std::atof(line.c_str() + at + done.size());
            const std::string sent = std::string("stage ") + stage + ": 2 ranks, ";
            const auto b = line.find(sent);
            if (b != std::string::npos) bytes[stage] = std::atol(line.c_str() + b + sent.size());
          }
        }
      }
      for (const char* stage :
           {"sample", "ingest", "predict", "simulate", "compare", "fit", "validate"}) {
        figures.Print(
            "mpi %s (400 stars in blocks of 100, 100 realizations, 1 thread per rank): 1 rank %.2f "
            "s, 2 ranks %.2f s, speed-up "
            "%.2fx; %ld bytes to rank 0\n",
            stage, secs[1][stage], secs[2][stage], secs[1][stage] / std::max(secs[2][stage], 1e-9),
            bytes[stage]);
      }
      double a = 0, b = 0;
      for (const char* stage :
           {"sample", "ingest", "predict", "simulate", "compare", "fit", "validate"})
        a += secs[1][stage], b += secs[2][stage];
      figures.Print(
          "mpi sharded stages together: 1 rank %.2f s, 2 ranks %.2f s, speed-up %.2fx (target >= "
          "1.7x)\n",
          a, b, a / std::max(b, 1e-9));
    }
    fs::remove_all(dir);
#else
    figures.Print("mpi: skipped (built without MPI)\n");
#endif
  }

  // 1. Synthesizer, one core.
  if (want("synth")) {
    const stellar::Synthesizer synth;
    const int n = 20;
    const double s = Seconds([&] {
      for (int i = 0; i < n; ++i)
        synth.Synthesize(stellar::StellarParams{5000.0 + 240 * i, 4.2, -0.3, 0.1});
    });
    figures.Print("synthesizer: %.1f spectra/s per core (R_pix = 20000, 2400-10600 A)\n", n / s);
  }
  // 1b. The label grid (issue #31 item 1): its accuracy against direct synthesis at 200 held-out
  // labels drawn from the default population, per band, and the cost per star of either path.
  if (want("label-grid")) {
    PopulationOptions pop;
    const auto go = LabelGridFor(pop);
    LabelGrid grid;
    const double t_grid = Seconds([&] { grid = LabelGrid::Cached(go, DefaultGridCache()); });
    pop.n_stars = 200;
    const auto stars = DrawPopulation(pop, 20261202);
    const Instrument inst(InstrumentOptions{});
    const auto out_wave = OutputGrid().Centres();
    // per star: [band] worst and all |delta| of the R = 200 SED; the R = 1000 SED's and the LAMOST
    // spectrum's
    std::vector<std::array<std::vector<double>, 3>> sed_d(stars.size());
    std::vector<std::vector<double>> fine_d(stars.size()), lam_d(stars.size());
    std::vector<double> t_direct(stars.size()), t_interp(stars.size());
    const LamostSimOptions lo;
    tbb::parallel_for(size_t{0}, stars.size(), [&](size_t i) {
      const auto& st = stars[i];
      LabelGrid::Star direct, g;
      Spectrum lam_direct, lam_grid;
      t_direct[i] = Seconds([&] {
        static const stellar::Synthesizer synth;
        const auto native = synth.Synthesize({st.teff, st.logg, st.feh, st.alpha});
        direct.sed200 = DegradeToGrid(native, 200.0, OutputGrid());
        direct.sed_fine = DegradeToGrid(native, kTruthResolution, TruthGrid());
        lam_direct = NoiselessLamost(native, 20000.0, st, lo);
      });
      t_interp[i] = Seconds([&] {
        g = grid.Interpolate(st.teff, st.logg, st.feh);
        lam_grid = NoiselessLamostFromResolved(g.ref, grid.ResolvedR(), st, lo);
      });
      for (size_t k = 0; k < out_wave.size(); ++k) {
        for (int b = 0; b < 3; ++b) {
          if (out_wave[k] >= inst.band(b).lo && out_wave[k] <= inst.band(b).hi) {
            sed_d[i][b].push_back(std::abs(g.sed200.flux[k] / direct.sed200.flux[k] - 1));
          }
        }
      }
      for (size_t k = 0; k < g.sed_fine.size(); ++k) {
        if (direct.sed_fine.mask[k] == 0)
          fine_d[i].push_back(std::abs(g.sed_fine.flux[k] / direct.sed_fine.flux[k] - 1));
      }
      for (size_t k = 0; k < lam_grid.size(); ++k) {
        if (lam_grid.mask[k] == 0 && lam_direct.mask[k] == 0) {
          lam_d[i].push_back(std::abs(lam_grid.flux[k] / lam_direct.flux[k] - 1));
        }
      }
    });
    auto summary = [](std::vector<double> v) {
      std::sort(v.begin(), v.end());
      return std::array<double, 2>{v[v.size() / 2], v.back()};
    };
    figures.Print(
        "label-grid: %zu nodes (Teff %zu x log g %zu x [M/H] %zu), built or loaded in %.1f s\n",
        grid.NumNodes(), go.teff.size(), go.logg.size(), go.feh.size(), t_grid);
    for (int b = 0; b < 3; ++b) {
      std::vector<double> all;
      for (const auto& d : sed_d) all.insert(all.end(), d[b].begin(), d[b].end());
      const auto s = summary(all);
      figures.Print(
          "label-grid %s R=200 SED at 200 held-out labels: median |delta| %.2e, worst pixel %.2e "
          "(target 1e-3 / 5e-3)\n",
          inst.band(b).name.c_str(), s[0], s[1]);
    }
    std::vector<double> fine, lam;
    for (const auto& d : fine_d) fine.insert(fine.end(), d.begin(), d.end());
    for (const auto& d : lam_d) lam.insert(lam.end(), d.begin(), d.end());
    const auto sf = summary(fine), sl = summary(lam);
    figures.Print(
        "label-grid R=1000 truth SED: median |delta| %.2e, worst pixel %.2e; noiseless LAMOST "
        "spectrum: median %.2e, "
        "worst pixel %.2e\n",
        sf[0], sf[1], sl[0], sl[1]);
    {  // where the worst pixels are: the three stars with the largest LAMOST-spectrum |delta|
      std::vector<std::pair<double, size_t>> worst;
      for (size_t i = 0; i < stars.size(); ++i) {
        double w = 0;
        for (double v : lam_d[i]) w = std::max(w, v);
        for (const auto& d : sed_d[i])
          for (double v : d) w = std::max(w, v);
        worst.push_back({w, i});
      }
      std::sort(worst.rbegin(), worst.rend());
      for (size_t k = 0; k < 3 && k < worst.size(); ++k) {
        const auto& st = stars[worst[k].second];
        figures.Print(
            "label-grid worst star %zu: Teff %.0f K, log g %.2f, [M/H] %.2f: worst pixel %.2e\n",
            k + 1, st.teff, st.logg, st.feh, worst[k].first);
      }
    }
    double a = 0, b = 0;
    for (size_t i = 0; i < stars.size(); ++i) {
      a += t_direct[i];
      b += t_interp[i];
    }
    figures.Print(
        "label-grid per star (one core): direct synthesis %.1f ms, grid %.2f ms (%.0fx)\n",
        1e3 * a / stars.size(), 1e3 * b / stars.size(), a / std::max(b, 1e-12));
  }
  // 2. Network inference on CPU.
  if (!want("network")) {
  } else if (fs::exists(model + ".pt")) {
    // 2048 realistic inputs: 16 synthesized stars, each with 128 noise draws at SNR 20-80.
    const int n = 2048, ni = InputGrid().size(), no = OutputGrid().size();
    std::vector<float> f(static_cast<size_t>(n) * ni), e(f.size());
    {
      const stellar::Synthesizer synth;
      for (int s = 0; s < 16; ++s) {
        const auto in = stellar::MakeNetworkInput(
            synth.Synthesize(stellar::StellarParams{5000.0 + 300 * s, 4.3, -0.2, 0.1}));
        for (int c = 0; c < 128; ++c) {
          Rng rng(3, "bench-network", static_cast<uint64_t>(s * 128 + c));
          const double snr = 20 + 60 * rng.Uniform();
          for (int k = 0; k < ni; ++k) {
            const size_t at = static_cast<size_t>(s * 128 + c) * ni + k;
            f[at] = static_cast<float>(in.flux[k] * (1 + rng.Normal() / snr));
            e[at] = static_cast<float>(in.flux[k] / snr);
          }
        }
      }
    }
    const int threads = 2;
    const std::vector<int> batches = {1, 64, 2048};
    std::map<std::string, std::map<int, double>> speed;  // engine -> batch -> spectra/s
    SedPrediction full;
    for (const InferenceEngine engine : {InferenceEngine::kLibTorch, InferenceEngine::kFolded}) {
      PredictorOptions po;
      po.device = ComputeDevice::kCpu;
      po.engine = engine;
      po.threads = threads;
      const SedPredictor pred(model, po);
      for (int batch : batches) {
        const int m = batch == 1 ? 200 : n;
        // Calls of `batch` spectra, as a user with that batch would make them (split before
        // timing).
        std::vector<std::vector<float>> fb, eb;
        for (int a = 0; a < m; a += batch) {
          const long lo = static_cast<long>(a) * ni,
                     hi = static_cast<long>(std::min(m, a + batch)) * ni;
          fb.emplace_back(f.begin() + lo, f.begin() + hi);
          eb.emplace_back(e.begin() + lo, e.begin() + hi);
        }
        pred.Predict(fb[0], eb[0], fb[0].size() / ni, batch);  // warm-up
        const double s = Seconds([&] {
          for (size_t c = 0; c < fb.size(); ++c) {
            auto p = pred.Predict(fb[c], eb[c], fb[c].size() / ni, batch);
            if (batch == 2048 && engine == InferenceEngine::kFolded) full = std::move(p);
          }
        });
        speed[ToString(engine)][batch] = m / s;
        figures.Print(
            "UaRA-net inference (%d-member ensemble, %s engine, cpu, %d threads): batch %4d: %.0f "
            "spectra/s\n",
            pred.info().ensemble, ToString(engine), threads, batch, m / s);
      }
    }
    // The same weights run from Python (Debian python3-torch): speed and agreement with the folded
    // engine.
    std::vector<float> in(static_cast<size_t>(n) * 2 * ni), out(static_cast<size_t>(n) * 2 * no);
    for (int i = 0; i < n; ++i) {
      std::copy(f.begin() + static_cast<long>(i) * ni, f.begin() + static_cast<long>(i + 1) * ni,
                in.begin() + static_cast<long>(i) * 2 * ni);
      std::copy(e.begin() + static_cast<long>(i) * ni, e.begin() + static_cast<long>(i + 1) * ni,
                in.begin() + static_cast<long>(i) * 2 * ni + ni);
      std::copy(full.mu.begin() + static_cast<long>(i) * no,
                full.mu.begin() + static_cast<long>(i + 1) * no,
                out.begin() + static_cast<long>(i) * 2 * no);
      std::copy(full.sigma.begin() + static_cast<long>(i) * no,
                full.sigma.begin() + static_cast<long>(i + 1) * no,
                out.begin() + static_cast<long>(i) * 2 * no + no);
    }
    WriteNpy(tmp / "uara_in.npy", in, {static_cast<size_t>(n), 2, static_cast<size_t>(ni)});
    WriteNpy(tmp / "uara_out.npy", out, {static_cast<size_t>(n), 2, static_cast<size_t>(no)});
    const std::string cmd = "/usr/bin/python3 tools/uara_python.py " + model + " " +
                            (tmp / "uara_in.npy").string() + " " + (tmp / "uara_out.npy").string() +
                            " " + std::to_string(threads) + " 2>&1";
    std::map<int, double> python;
    if (FILE* pipe = popen(cmd.c_str(), "r")) {
      char line[512];
      while (std::fgets(line, sizeof line, pipe)) {
        std::fputs(line, stdout);
        int batch = 0;
        double sps = 0;
        if (const char* at = std::strstr(line, "): batch ");
            at && std::sscanf(at, "): batch %d: %lf", &batch, &sps) == 2)
          python[batch] = sps;
      }
      pclose(pipe);
    }
    if (python.size() != batches.size()) {
      figures.Print(
          "python3-torch comparison: skipped (python3-torch missing: scripts/install-deps.sh "
          "--bench)\n");
    } else {
      for (int batch : batches)
        figures.Print(
            "UaRA-net inference speed-up over python3-torch: batch %d: %.2f (LibTorch modules: "
            "%.2f)\n",
            batch, speed["folded"][batch] / python[batch],
            speed["libtorch"][batch] / python[batch]);
    }
  } else {
    figures.Print("UaRA-net inference: skipped (no model at %s.pt)\n", model.c_str());
  }
  // 3-5. Simulation, flat fits and cube writing (share their data).
  if (want("flat")) {
    // 3. CSST simulation, spectral and image modes.
    const Instrument inst(InstrumentOptions{});
    const auto flat = TrueFlat::Draw(TrueFlatOptions{}, inst, 1);
    const int nstars = 400;
    std::vector<StarRecord> stars(nstars);
    std::vector<std::vector<double>> sed;
    std::vector<double> wf;
    for (int i = 0; i < nstars; ++i) {
      stars[i].obsid = i + 1;
      std::vector<double> s;
      for (int k = 0; k < TruthGrid().size(); ++k)
        s.push_back(std::pow(TruthGrid().Centre(k) / 5556.0, -2.0 - 0.002 * i));
      sed.push_back(s);
      wf.push_back(WindowFluxFromG(15.0 + 0.005 * i));
    }
    std::vector<StarObservation> obs;
    for (const ObserveMode mode : {ObserveMode::kSpectral, ObserveMode::kImage}) {
      ObserveOptions o;
      o.mode = mode;
      const int n = mode == ObserveMode::kSpectral ? nstars : 100;
      std::vector<StarRecord> st(stars.begin(), stars.begin() + n);
      std::vector<std::vector<double>> sd(sed.begin(), sed.begin() + n);
      std::vector<double> w(wf.begin(), wf.begin() + n);
      const double s = Seconds([&] {
        auto r = Observe(inst, flat, o, {st, sd, w}, 3, "bench");
        if (mode == ObserveMode::kSpectral) obs = r;
      });
      figures.Print("simulate (%s mode, 3 bands, all cores): %.1f stars/s\n", ToString(mode),
                    n / s);
    }
    // 4. Fits of every wavelength of the 12 detectors for 400 stars.
    std::vector<float> mu(static_cast<size_t>(nstars) * OutputGrid().size()),
        sig(mu.size(), 0.002f);
    for (int i = 0; i < nstars; ++i)
      for (int k = 0; k < OutputGrid().size(); ++k) {
        const double l = OutputGrid().Centre(k);
        mu[static_cast<size_t>(i) * OutputGrid().size() + k] =
            static_cast<float>(std::pow(l / 5556.0, -2.0 - 0.002 * i));
      }
    const auto ratios = ComputeRatios(inst, CompareOptions{}, {obs, stars, wf, mu, sig}, 1);
    FlatCube cube;
    // The joint fit (unknown star fluxes) by the structured solver and by Ceres, same problem and
    // minimum (tests/flatfield/cube_test.cpp) at Ceres' tolerance here (1e-14 of the cost), then
    // the structured solver at the default flatfield.joint_tolerance, then the independent fits.
    double joint_seconds[2] = {0, 0};
    for (const FlatJointSolver solver : {FlatJointSolver::kSchur, FlatJointSolver::kCeres}) {
      FlatFitOptions o;
      o.mode = FlatFitMode::kJoint;
      o.joint_solver = solver;
      o.joint_tolerance = 1e-14;
      const double s = Seconds([&] { cube = FitFlatCube(inst, o, ratios); });
      joint_seconds[solver == FlatJointSolver::kCeres] = s;
      figures.Print(
          "fit all wavelengths of 12 detectors, 400 stars (joint, %s, tolerance 1e-14): %.2f s\n",
          ToString(solver), s);
    }
    figures.Print("joint fit speed-up of the structured solver over Ceres: %.1fx\n",
                  joint_seconds[1] / joint_seconds[0]);
    {
      FlatFitOptions o;
      o.mode = FlatFitMode::kJoint;
      const double s = Seconds([&] { cube = FitFlatCube(inst, o, ratios); });
      figures.Print(
          "fit all wavelengths of 12 detectors, 400 stars (joint, schur, joint_tolerance %g): %.2f "
          "s\n",
          o.joint_tolerance, s);
    }
    {
      FlatFitOptions o;
      const double s = Seconds([&] { cube = FitFlatCube(inst, o, ratios); });
      figures.Print(
          "fit all wavelengths of 12 detectors, 400 stars (independent, closed form): %.2f s\n", s);
    }
    // Export the independent problem for tools/lstsq_bench.py (numpy.linalg.lstsq).
    {
      std::vector<double> pts, ref;
      int slice = 0;
      for (const auto& d : cube.detectors) {
        for (size_t s = 0; s < d.pixels.size(); ++s, ++slice) {
          for (const auto& r : ratios) {
            if (r.detector != d.detector || r.flag[d.pixels[s]]) continue;
            const int p = d.pixels[s];
            for (double v : {static_cast<double>(slice), r.x[p], r.y[p], r.ratio[p], r.sigma[p],
                             cube.nx, cube.ny, static_cast<double>(cube.order)})
              pts.push_back(v);
          }
          for (double c : d.slices[s].coeffs) ref.push_back(c);
        }
      }
      WriteNpy(tmp / "points.npy", pts, {pts.size() / 8, 8});
      const auto nc = static_cast<size_t>(NumCoefficients(cube.order));
      WriteNpy(tmp / "ceres_coeffs.npy", ref, {ref.size() / nc, nc});
      const std::string cmd = "/usr/bin/python3 tools/lstsq_bench.py " +
                              (tmp / "points.npy").string() + " " +
                              (tmp / "ceres_coeffs.npy").string();
      if (std::system(cmd.c_str()) != 0)
        figures.Print("numpy comparison: skipped (python3-numpy missing)\n");
    }
    // 5. One full-resolution aXe cube (9216 x 9232 x 4 coefficients, float32, streamed by rows).
    {
      AssembleOptions o;
      o.axe_binning = 1;
      o.cube_binning = 512;
      o.quicklooks = false;
      FlatCube one = cube;
      one.detectors.resize(1);
      const auto extents = RatioTable::Of(inst, ratios).extent;
      const double s = Seconds([&] {
        WriteFlatProducts((tmp / "axe").string(), FlatProductsInput{&one, &extents}, inst, o, {});
      });
      const auto bytes = fs::file_size(tmp / "axe" / "flat_GU1_axe.fits");
      figures.Print("write one full-resolution aXe cube (+ its reference cube): %.1f s, %.0f MB\n",
                    s, bytes / 1e6);
      // 5b. A reduction chain's batch (apply --points): 10^6 points through each form (target <= 10
      // s).
      {
        o.axe_binning = 64;
        o.cube_binning = 128;
        WriteFlatProducts((tmp / "apply").string(), FlatProductsInput{&one, &extents}, inst, o, {});
        std::vector<double> x, y, l;
        Rng rng(5, "bench-apply", 0);
        for (int i = 0; i < 1000000; ++i) {
          x.push_back(rng.Uniform(0, 9215));
          y.push_back(rng.Uniform(0, 9231));
          l.push_back(rng.Uniform(2600, 4150));
        }
        for (const char* form : {"flat_GU1.fits", "flat_GU1_axe_quicklook.fits"}) {
          const FlatProduct product((tmp / "apply" / form).string());
          const double t = Seconds([&] { product.EvaluateMany(x, y, l); });
          figures.Print("apply 1e6 points, %s (library call, all cores): %.2f s\n", form, t);
        }
        fs::remove_all(tmp / "apply");
      }
      fs::remove_all(tmp / "axe");
    }
  }
  // 6. Ingest memory: peak RSS growth over 2000 small LAMOST files.
  if (want("ingest")) {
    const fs::path dir = tmp / "lamost";
    fs::remove_all(dir);
    fs::create_directories(dir);
    const int nfiles = 2000;
    std::vector<StarRecord> cat;
    const stellar::Synthesizer synth;
    const auto native = synth.Synthesize(stellar::StellarParams{6000, 4.3, 0, 0});
    for (int i = 0; i < nfiles; ++i) {
      StarRecord s;
      s.obsid = 900000 + i;
      s.teff = 6000, s.logg = 4.3, s.gmag = 15, s.snr_g = 50, s.snr_r = 60;
      Rng rng(1, "bench-ingest", i);
      const auto clean = NoiselessLamost(native, 20000, s, LamostSimOptions{});
      WriteLamost((dir / ("spec-" + std::to_string(s.obsid) + ".fits")).string(),
                  ObserveLamost(clean, s, LamostSimOptions{}, rng), LamostLayout::kDr7, {});
      cat.push_back(s);
    }
    WriteCatalogueFits((dir / "cat.fits").string(), cat, {});
    const long before = PeakRssKb();
    IngestOptions o;
    o.chunk = 128;
    const double s = Seconds([&] {
      Ingest(o, (dir / "cat.fits").string(), dir.string(), (tmp / "stars.fits").string(), {});
    });
    // Peak RSS is monotone over the process: the growth is only meaningful when ingest sets the
    // peak (the streaming-memory test in tests/core/prepare_test.cpp measures it in isolation).
    figures.Print("ingest %d LAMOST files: %.1f s (peak RSS %.0f MB before, %.0f MB after)\n",
                  nfiles, s, before / 1024.0, PeakRssKb() / 1024.0);
    fs::remove_all(dir);
  }
  // 7. GPR training (paper App. C): 1000 stars x 2238 outputs, hyper-parameters optimised.
  if (want("gpr")) {
    const int n = 1000, m = 2238;
    Eigen::MatrixXd x(n, 3), y(n, m);
    Rng rng(7, "bench-gpr", 0);
    for (int i = 0; i < n; ++i) {
      x(i, 0) = rng.Uniform(4000, 10000), x(i, 1) = rng.Uniform(0, 5),
           x(i, 2) = rng.Uniform(-2.5, 0.5);
      for (int k = 0; k < m;
           ++k) {  // smooth spectra-like outputs of the parameters plus 0.1 % noise
        const double l = 4000.0 * std::exp(k * std::log(7000.0 / 4000.0) / m);
        y(i, k) = std::pow(l / 5556.0, -4.0 + 4.0 * (x(i, 0) - 4000) / 6000) *
                      (1 - 0.02 * x(i, 2) * std::sin(l / 40)) +
                  1e-3 * rng.Normal();
      }
    }
    GprOptimizeResult r;
    const double s = Seconds([&] {
      Gpr g(x, y);
      r = g.Optimize();
    });
    figures.Print(
        "GPR: train %d stars x %d outputs with %d-start hyper-parameter optimisation: %.1f s "
        "(%d likelihood evaluations; sigma_f %.3g, sigma_n %.3g, l %.3g; %s)\n",
        n, m, r.starts, s, r.evaluations, r.best.sigma_f, r.best.sigma_n, r.best.ell,
        r.termination.c_str());
  }
  // 8. Calibration studies: a Monte Carlo realization against its network floor (issue 16).
  // Survey scale (issue #31): the ideal pipeline of N stars run stage by stage, each stage its own
  // process, with its seconds (the engine's "done in") and its peak RSS (wait4). N from
  // CSST_BENCH_SCALE_STARS (default "400 4000"; the docs' table adds 25600 and more by this
  // variable).
  if (want("scale")) {
    const char* env = std::getenv("CSST_BENCH_SCALE_STARS");
    std::istringstream counts(env ? env : "400 4000");
    const std::vector<std::string> stages = {"sample",  "ingest", "predict",  "simulate",
                                             "compare", "fit",    "assemble", "validate"};
    for (long n; counts >> n;) {
      const fs::path dir = tmp / ("scale" + std::to_string(n));
      fs::remove_all(dir);
      fs::create_directories(dir);
      const fs::path cfg = dir / "scale.yaml";
      std::ofstream(cfg)
          << "random_seed: 20240124\noutput:\n  dir: " << (dir / "out").string()
          << "\nnetwork:\n  model: " << model << "\nsample:\n  n_stars: " << n
          << "\n  synthesis: grid\nsimulation:\n  photon_noise: false\n  reddening: false\n"
          << "compare:\n  flux_scale: known\nflatfield:\n  mode: independent\n"
          << "assemble:\n  quicklooks: false\nvalidate:\n  realizations: 10\n  report: false\n";
      figures.Print("scale %ld stars:", n);
      for (const auto& stage : stages) {
        const std::string log = (dir / (stage + ".log")).string();
        long kb = 0;
        const int rc = RunChild({CSST_CLI_PATH, "run", cfg.string(), "--to", stage}, log, &kb);
        double secs = -1;
        std::ifstream in(log);
        const std::string key = "stage " + stage + ": done in ";
        for (std::string line; std::getline(in, line);) {
          const auto at = line.find(key);
          if (at != std::string::npos) secs = std::atof(line.c_str() + at + key.size());
        }
        if (rc != 0) {
          figures.Print(" %s failed (exit %d, %s)", stage.c_str(), rc, log.c_str());
          break;
        }
        figures.Print(" %s %.1f s, peak RSS %.0f MB;", stage.c_str(), secs, kb / 1024.0);
      }
      figures.Print("\n");
    }
  }

  if (want("mc")) {
    auto setup = [&](const std::string& name, int realizations) {
      auto c = LoadConfig("configs/" + name + ".yaml",
                          {"output.dir=" + (tmp / ("mc_" + name)).string(),
                           "validate.realizations=" + std::to_string(realizations),
                           "validate.report=false", "assemble.quicklooks=false", "log_level=warn"});
      RunOptions to_simulate;
      to_simulate.to = "assemble";  // validate reads the shipped cube
      RunPipeline(c, PipelineStages(c), to_simulate);
      return c;
    };
    auto validate = [&](const Config& c) {
      RunOptions only;
      only.only = "validate";
      only.force = true;
      return Seconds([&] { RunPipeline(c, PipelineStages(c), only); });
    };
    for (const std::string name : {"dr7", "ideal_paper_errors", "realistic"}) {
      // Per realization = the marginal cost: validate with nr and with 2 nr realizations; the rest
      // is the study's one-off set-up (expected counts, model loading).
      const int nr = name == "realistic" ? 10 : 20;
      auto c = setup(name, nr);
      const double t1 = validate(c);
      c = setup(name, 2 * nr);
      const double t2 = validate(c);
      const double per = (t2 - t1) / nr, fixed = t1 - nr * per;
      if (c.network.mode != SedSource::kModel) {
        figures.Print(
            "Monte Carlo %s: %.3f s per realization, network floor 0.000 s (no network), ratio n/a "
            "(target <= 0.1 s; set-up %.1f s once)\n",
            name.c_str(), per, fixed);
        continue;
      }
      // The floor: the same forward passes (400 stars x ensemble, the run's batch) timed alone.
      const auto stars = ReadPreparedStars((tmp / ("mc_" + name) / "stars.fits").string());
      const SedPredictor pred(c.network.model, c.network.predictor);
      pred.Predict(stars.flux, stars.err, stars.size(), c.network.batch);  // warm-up
      const double floor = Seconds([&] {
                             for (int r = 0; r < nr; ++r)
                               pred.Predict(stars.flux, stars.err, stars.size(), c.network.batch);
                           }) /
                           nr;
      figures.Print(
          "Monte Carlo %s: %.3f s per realization, network floor %.3f s, ratio %.2f (target <= %s; "
          "set-up %.1f s "
          "once)\n",
          name.c_str(), per, floor, per / floor, name == "realistic" ? "2" : "1.5", fixed);
    }
  }
  if (want("mc-rss")) {
    for (const int nr : {100, 1000}) {
      auto c = LoadConfig(
          "configs/dr7.yaml",
          {"output.dir=" + (tmp / "mc_rss").string(), "validate.realizations=" + std::to_string(nr),
           "validate.report=false", "assemble.quicklooks=false", "log_level=warn"});
      RunOptions o;
      o.force = nr == 100;  // the first pass makes the inputs; the second reruns validate alone
      if (nr != 100) o.only = "validate";
      const double s = Seconds([&] { RunPipeline(c, PipelineStages(c), o); });
      figures.Print("Monte Carlo dr7, %d realizations: %.0f s, peak RSS %.0f MB\n", nr, s,
                    PeakRssKb() / 1024.0);
    }
  }
  if (!std::getenv("CSST_BENCH_KEEP")) fs::remove_all(tmp);
  const char* json = std::getenv("CSST_BENCH_JSON");
  const fs::path json_path = json && *json ? fs::path(json) : fs::path("out/bench/bench.json");
  figures.Write(json_path, measured);
  std::printf("\nfigures of %zu section(s) written to %s\n", measured.size(),
              json_path.string().c_str());
  return 0;
}
