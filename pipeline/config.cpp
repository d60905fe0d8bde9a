#include "pipeline/config.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <limits>
#include <map>
#include <set>
#include <sstream>

#include "build_config.h"
#include "core/bands.h"
#include "core/errors.h"
#include "core/files.h"
#include "io/catalogue.h"
#include "io/ingest.h"
#include "pipeline/memory_estimate.h"

namespace csst {

namespace {

struct Field {
  std::string key, type, constraint, doc;
  // Parses `node` into the bound field; `where` is "file:line:col". Throws ConfigError.
  std::function<void(const YAML::Node&, const std::string& where)> set;
  std::function<std::string()> get;
};

std::string LastPart(const std::string& key) {
  const auto p = key.rfind('.');
  return p == std::string::npos ? key : key.substr(p + 1);
}

std::string Scalar(const YAML::Node& n) {
  if (n.IsScalar()) return n.Scalar();
  if (n.IsSequence()) return "[sequence]";
  if (n.IsMap()) return "{mapping}";
  return "null";
}

std::string Where(const std::string& file, const YAML::Mark& m);
std::string Where(const std::string& where, const YAML::Node& n);

[[noreturn]] void Fail(const std::string& key, const std::string& value, const std::string& what,
                       const std::string& where) {
  throw ConfigError("config error: " + key + " = " + value + " " + what + " (" + where + ")");
}

template <typename T>
std::string Show(const T& v) {
  std::ostringstream s;
  s.precision(17);
  s << v;
  return s.str();
}

class SchemaBuilder {
 public:
  explicit SchemaBuilder(std::vector<Field>& out) : out_(out) {}

  template <typename T>
  void Number(const std::string& key, T* field, T lo, T hi, const std::string& doc) {
    const std::string name = LastPart(key);
    std::string c;
    const bool has_lo = lo != std::numeric_limits<T>::lowest();
    const bool has_hi = hi != std::numeric_limits<T>::max();
    if (has_lo && has_hi)
      c = Show(lo) + " <= " + name + " <= " + Show(hi);
    else if (has_lo)
      c = name + " >= " + Show(lo);
    else if (has_hi)
      c = name + " <= " + Show(hi);
    const std::string type = std::is_integral_v<T> ? "int" : "float";
    out_.push_back(Field{
        key, type, c, doc,
        [=](const YAML::Node& n, const std::string& where) {
          if (!n.IsScalar())
            Fail(key, Scalar(n),
                 std::string("is not ") + (std::is_integral_v<T> ? "an integer" : "a number"),
                 where);
          T v{};
          if constexpr (std::is_integral_v<T>) {
            // Decimal digits only: YAML 1.1 reads 060 as octal 48 and 0x10 as 16, which no one
            // means here.
            const std::string t = n.Scalar();
            const size_t digits =
                !t.empty() && (t[0] == '+' || t[0] == '-') ? 1 : 0;  // first digit
            const bool decimal =
                t.size() > digits && t.find_first_not_of("0123456789", digits) == std::string::npos;
            if (!decimal) Fail(key, t, "is not an integer", where);
            if (t.size() - digits > 1 && t[digits] == '0') {
              Fail(key, t,
                   "has a leading 0 (YAML would read it as octal); write the decimal number "
                   "without it",
                   where);
            }
            const long double x =
                std::strtold(t.c_str(), nullptr);  // exact for the integers of any range here
            if (x < static_cast<long double>(std::numeric_limits<T>::lowest()) ||
                x > static_cast<long double>(std::numeric_limits<T>::max())) {
              Fail(key, t,
                   "is out of range: " + (c.empty() ? std::string("too large for an integer") : c),
                   where);
            }
            if constexpr (std::is_unsigned_v<T>) {
              if (t[0] == '-') Fail(key, t, "is out of range: must be >= 0", where);
              v = static_cast<T>(std::strtoull(t.c_str() + digits, nullptr, 10));
            } else {
              v = static_cast<T>(std::strtoll(t.c_str(), nullptr, 10));
            }
          } else {
            try {
              v = n.as<T>();
            } catch (const YAML::Exception&) {
              Fail(key, Scalar(n), "is not a number", where);
            }
          }
          if constexpr (std::is_floating_point_v<T>) {
            if (!std::isfinite(v)) Fail(key, Scalar(n), "is not a finite number", where);
          }
          if ((has_lo && v < lo) || (has_hi && v > hi))
            Fail(key, Scalar(n), "violates " + c, where);
          *field = v;
        },
        [=] { return Show(*field); }});
  }

  void NumberList(const std::string& key, std::vector<double>* field, double lo, double hi,
                  const std::string& doc) {
    const std::string c = "each in [" + Show(lo) + ", " + Show(hi) + "], non-empty";
    out_.push_back(Field{key, "list<float>", c, doc,
                         [=](const YAML::Node& n, const std::string& where) {
                           if (!n.IsSequence() || n.size() == 0)
                             Fail(key, Scalar(n), "is not a non-empty list of numbers", where);
                           std::vector<double> v;
                           for (const auto& e : n) {
                             double x = 0;
                             try {
                               x = e.as<double>();
                             } catch (const YAML::Exception&) {
                               Fail(key, Scalar(e), "is not a number", Where(where, e));
                             }
                             if (!(x >= lo && x <= hi))
                               Fail(key, Scalar(e), "violates " + c, where);
                             v.push_back(x);
                           }
                           *field = v;
                         },
                         [=] {
                           std::string out = "[";
                           for (size_t i = 0; i < field->size(); ++i)
                             out += (i ? ", " : "") + Show((*field)[i]);
                           return out + "]";
                         }});
  }

  void Bool(const std::string& key, bool* field, const std::string& doc) {
    out_.push_back(Field{key, "bool", "true or false", doc,
                         [=](const YAML::Node& n, const std::string& where) {
                           if (!n.IsScalar()) Fail(key, Scalar(n), "is not true or false", where);
                           try {
                             *field = n.as<bool>();
                           } catch (const YAML::Exception&) {
                             Fail(key, Scalar(n), "is not true or false", where);
                           }
                         },
                         [=] { return std::string(*field ? "true" : "false"); }});
  }

  // A path (may be empty); relative paths are kept as written (relative to the working directory).
  void Path(const std::string& key, std::string* field, const std::string& doc) {
    out_.push_back(Field{key, "path", "", doc,
                         [=](const YAML::Node& n, const std::string& where) {
                           if (!n.IsScalar()) Fail(key, Scalar(n), "is not a path", where);
                           *field = n.Scalar();
                         },
                         [=] { return *field; }});
  }

  // A list of paths (may be empty), kept as written.
  void PathList(const std::string& key, std::vector<std::string>* field, const std::string& doc) {
    out_.push_back(Field{key, "list<path>", "", doc,
                         [=](const YAML::Node& n, const std::string& where) {
                           if (!n.IsSequence())
                             Fail(key, Scalar(n), "is not a list of paths", where);
                           std::vector<std::string> v;
                           for (const auto& e : n) {
                             if (!e.IsScalar() || e.Scalar().empty())
                               Fail(key, Scalar(e), "is not a path", Where(where, e));
                             v.push_back(e.Scalar());
                           }
                           *field = v;
                         },
                         [=] {
                           std::string out = "[";
                           for (size_t i = 0; i < field->size(); ++i)
                             out += (i ? ", " : "") + (*field)[i];
                           return out + "]";
                         }});
  }

  void String(const std::string& key, std::string* field, std::vector<std::string> choices,
              const std::string& doc) {
    std::string c;
    if (!choices.empty()) {
      c = LastPart(key) + " in {";
      for (size_t i = 0; i < choices.size(); ++i) c += (i ? ", " : "") + choices[i];
      c += "}";
    } else {
      c = "non-empty";
    }
    out_.push_back(Field{key, "string", c, doc,
                         [=](const YAML::Node& n, const std::string& where) {
                           if (!n.IsScalar()) Fail(key, Scalar(n), "is not a string", where);
                           const std::string v = n.Scalar();
                           if (choices.empty() && v.empty())
                             Fail(key, "''", "violates " + c, where);
                           if (!choices.empty() &&
                               std::find(choices.begin(), choices.end(), v) == choices.end()) {
                             Fail(key, v, "violates " + c, where);
                           }
                           *field = v;
                         },
                         [=] { return *field; }});
  }

  // A choice parsed once into an enum: the library sees no strings. The choices are the enum's own
  // name table (core/enum_names.h), the one ToString reads.
  template <typename E>
  void Enum(const std::string& key, E* field, const std::string& doc) {
    const std::string c = LastPart(key) + " in {" + EnumNameList<E>() + "}";
    out_.push_back(Field{key, "string", c, doc,
                         [=](const YAML::Node& n, const std::string& where) {
                           if (!n.IsScalar()) Fail(key, Scalar(n), "is not a string", where);
                           const std::string v = n.Scalar();
                           const std::optional<E> value = EnumFromName<E>(v);
                           if (!value) Fail(key, v, "violates " + c, where);
                           *field = *value;
                         },
                         [=] { return std::string(ToString(*field)); }});
  }

 private:
  std::vector<Field>& out_;
};

constexpr double kInf = std::numeric_limits<double>::max();
constexpr double kNegInf = std::numeric_limits<double>::lowest();

std::vector<Field> Schema(Config& c) {
  std::vector<Field> f;
  SchemaBuilder b(f);
  b.Number<uint64_t>("random_seed", &c.random_seed, 0, std::numeric_limits<uint64_t>::max(),
                     "the run's one random seed");
  b.Number<int>("threads", &c.threads, 0, 1024, "worker threads; 0 = all cores");
  b.Number<int>(
      "star_block", &c.star_block, 1, 1000000,
      "stars truth, predict, simulate, compare and each Monte Carlo realization hold at a time "
      "(and the unit "
      "spread over MPI ranks); memory, not results");
  b.Enum("log_level", &c.log_level, "logging verbosity");
  b.String("output.dir", &c.output.dir, {}, "work directory for products and the manifest");

  auto& s = c.sample.population;
  b.Number<int>("sample.n_stars", &s.n_stars, 1, 10000000, "stars in the simulated DR7 sample");
  b.Number<double>("sample.teff_min", &s.teff_min, 3000.0, 50000.0, "lowest Teff drawn [K]");
  b.Number<double>("sample.teff_max", &s.teff_max, 3000.0, 50000.0, "highest Teff drawn [K]");
  b.Number<double>("sample.teff_scale", &s.teff_scale, 1.0, kInf,
                   "e-folding of the Teff distribution above teff_min [K]");
  b.Number<double>("sample.giant_fraction", &s.giant_fraction, 0.0, 1.0,
                   "fraction of giants among stars cooler than 5600 K");
  b.Number<double>("sample.feh_mean", &s.feh_mean, -2.5, 0.5, "mean [M/H] [dex]");
  b.Number<double>("sample.feh_sigma", &s.feh_sigma, 0.0, kInf, "spread of [M/H] [dex]");
  b.Number<double>("sample.g_min", &s.g_min, 0.0, 30.0, "brightest Gaia G [mag]");
  b.Number<double>("sample.g_max", &s.g_max, 0.0, 30.0, "faintest Gaia G [mag]");
  b.Number<double>("sample.snr_min", &s.snr_min, 0.0, kInf, "lowest SNR in g (selection cut)");
  b.Number<double>("sample.snr_at_g_min", &s.snr_at_g_min, 1.0, kInf,
                   "median SNR in g of a star at g_min");
  b.Number<double>("sample.rv_sigma", &s.rv_sigma, 0.0, 1000.0, "radial-velocity spread [km/s]");
  b.Number<double>("sample.ebv_max", &s.ebv_max, 0.0, 5.0, "E(B-V) drawn uniform in [0, ebv_max]");
  b.Number<double>("sample.lamost_resolution", &c.sample.lamost.resolving_power, 100.0, 10000.0,
                   "resolving power of the simulated LAMOST spectra");
  b.Number<double>("sample.bad_pixel_fraction", &c.sample.lamost.bad_pixel_fraction, 0.0, 0.5,
                   "fraction of LAMOST pixels flagged bad");
  b.Enum("sample.synthesis", &c.sample.synthesis,
         "direct: synthesize every star (~65 ms each); grid: interpolate a cached label grid of "
         "the synthesizer "
         "(~4 ms each; built once, ~5 min on 2 cores, ~1 GB)");
  b.Number<int>(
      "sample.block_stars", &c.sample.block_stars, 1, 1000000,
      "stars made, written and freed together (the sample's memory: ~91 kB per star of a block)");
  b.Path("sample.grid_cache", &c.sample.grid_cache,
         "folder of the cached label grids (default $XDG_CACHE_HOME/csst-flatcube or "
         "~/.cache/csst-flatcube)");

  auto& in = c.ingest;
  b.Enum("ingest.source", &in.source,
         "sample: the simulated DR7 sample; files: ingest.catalogue + ingest.spectra_dir");
  b.Path("ingest.catalogue", &in.catalogue,
         "catalogue (FITS table or CSV) for source = files; empty: built from the spectra's "
         "headers (+ ingest.labels)");
  b.Path("ingest.spectra_dir", &in.spectra_dir, "directory of LAMOST spectra for source = files");
  b.Path("ingest.labels", &in.labels,
         "source = files without ingest.catalogue: CSV of stellar labels (column 'file' + teff, "
         "logg, feh, alpha, rv) "
         "joined to the spectra's headers");
  b.Enum("ingest.snr_band", &in.snr_band, "LAMOST band whose SNR selects stars");
  b.Number<double>("ingest.snr_min", &in.snr_min, 0.0, kInf, "keep SNR > snr_min (paper: 20)");
  b.Number<double>("ingest.g_min", &in.g_min, 0.0, 30.0, "keep Gaia G > g_min (paper: 14)");
  b.Number<double>("ingest.teff_min", &in.teff_min, 0.0, 50000.0,
                   "lowest Teff kept [K] (paper: 5000); 0 = no Teff cut (no Teff column needed)");
  b.Number<double>("ingest.teff_max", &in.teff_max, 3000.0, 50000.0,
                   "highest Teff kept [K] (paper: 9750)");
  b.Bool("ingest.use_ormask", &in.use_ormask, "also mask pixels flagged in any single exposure");
  b.Number<int>("ingest.window", &in.prepare.window, 1, 1001,
                "continuum moving-average window [px] (paper: 51)");
  b.Number<double>("ingest.min_coverage", &in.prepare.min_coverage, 1e-6, 1.0,
                   "minimum fraction of 4000-7000 A with good data");
  b.Number<int>("ingest.chunk", &in.chunk, 1, 1000000, "files per streaming chunk");
  b.String("ingest.columns.obsid", &in.columns.obsid, {}, "catalogue column: spectrum id");
  b.String("ingest.columns.gmag", &in.columns.gmag, {}, "catalogue column: Gaia G");
  b.String("ingest.columns.teff", &in.columns.teff, {}, "catalogue column: Teff");
  b.String("ingest.columns.logg", &in.columns.logg, {}, "catalogue column: log g");
  b.String("ingest.columns.feh", &in.columns.feh, {}, "catalogue column: [Fe/H]");
  b.String("ingest.columns.snr_g", &in.columns.snr_g, {}, "catalogue column: SNR in g");
  b.String("ingest.columns.snr_r", &in.columns.snr_r, {}, "catalogue column: SNR in r");
  b.String("ingest.columns.ra", &in.columns.ra, {}, "catalogue column: RA [deg]");
  b.String("ingest.columns.dec", &in.columns.dec, {}, "catalogue column: Dec [deg]");
  b.String("ingest.columns.alpha", &in.columns.alpha, {},
           "catalogue column: [alpha/M] (0 if absent)");
  b.String("ingest.columns.rv", &in.columns.rv, {},
           "catalogue column: radial velocity [km/s] (0 if absent)");
  b.String("ingest.columns.ebv", &in.columns.ebv, {},
           "catalogue column: E(B-V) [mag] (0 if absent)");
  b.String("ingest.columns.designation", &in.columns.designation, {},
           "catalogue column: designation");

  auto& gr = c.grid.options;
  b.Enum("grid.source", &gr.source, "where training (or verification) spectra come from");
  b.Path("grid.source_dir", &gr.source_dir, "directory of BOSZ, STELIB or MILES files");
  b.Path("grid.out", &c.grid.out, "training grid file written by `grid`");
  b.Number<int>("grid.n_stars", &gr.n_stars, 1, 10000000, "stars synthesized (builtin)");
  b.Number<int>("grid.first_index", &gr.first_index, 0, 1000000000,
                "builtin: index of the first star (grid-<i>); extends a grid drawn before when "
                "joined by grid.append");
  b.Number<double>("grid.teff_min", &gr.teff_min, 4500.0, 10000.0, "lowest Teff [K]");
  b.Number<double>("grid.teff_max", &gr.teff_max, 4500.0, 10000.0, "highest Teff [K]");
  b.Number<double>("grid.logg_min", &gr.logg_min, 0.0, 5.0, "lowest log g of dwarfs/subgiants");
  b.Number<double>("grid.logg_max", &gr.logg_max, 0.0, 5.0, "highest log g");
  b.Number<double>("grid.giant_fraction", &gr.giant_fraction, 0.0, 1.0,
                   "giants among stars < 6000 K");
  b.Number<double>("grid.mh_min", &gr.mh_min, -2.5, 0.5, "lowest [M/H]");
  b.Number<double>("grid.mh_max", &gr.mh_max, -2.5, 0.5, "highest [M/H]");
  b.Number<double>("grid.alpha_min", &gr.alpha_min, -0.25, 0.5, "lowest [alpha/M]");
  b.Number<double>("grid.alpha_max", &gr.alpha_max, -0.25, 0.5, "highest [alpha/M]");
  b.Number<double>(
      "grid.test_fraction", &gr.test_fraction, 0.01, 1.0,
      "held-out test fraction (paper 0.25; 1 = a verification set, library sources only)");
  b.Number<int>("grid.chunk", &gr.chunk, 1, 1000000, "stars per resumable part");
  b.Number<double>("grid.lamost_r_min", &gr.lamost_r_min, 500.0, 5000.0,
                   "builtin: lowest LAMOST resolving power drawn per star (inputs made as the "
                   "sample's stars are)");
  b.Number<double>("grid.lamost_r_max", &gr.lamost_r_max, 500.0, 5000.0,
                   "builtin: highest LAMOST resolving power");
  b.Number<double>("grid.rv_sigma", &gr.rv_sigma, 0.0, 1000.0,
                   "builtin: radial-velocity spread [km/s]");
  b.Enum("grid.inputs", &gr.inputs,
         "library sources: inputs from the star's own 4000-7000 A part, or generated by a GPR on "
         "MILES (paper)");
  b.Path("grid.gpr_library_dir", &gr.gpr_library_dir, "MILES directory for grid.inputs = gpr");
  b.Number<double>("grid.gpr_clean_cut", &gr.gpr_clean_cut, 0.0, 10.0,
                   "library sources: drop stars whose GPR-predicted SED misses by RMSAE > this (0 "
                   "= keep all; paper NGSL 0.068)");
  b.Number<double>(
      "grid.max_ebv", &gr.max_ebv, 0.0, 10.0,
      "library sources: drop stars whose colour excess against the GPR prediction exceeds this "
      "(0 = keep all; stands in for the paper's E(B-V) < 0.1 on MILES)");
  b.PathList("grid.append", &gr.append,
             "grids written before (e.g. another library's) whose stars are appended with their "
             "own test flags");

  auto& tr = c.train;
  b.Path("train.grid", &tr.grid, "training grid (default: grid.out)");
  b.Path("train.out", &tr.out, "model path without extension");
  b.Path("train.init", &tr.init, "fine-tune from this model (path without extension)");
  b.Number<int>("train.epochs", &tr.epochs, 1, 1000000, "maximum epochs");
  b.Number<int>("train.batch", &tr.batch, 1, 1000000, "batch size (paper 2048; fine-tuning 32)");
  b.Number<double>("train.lr", &tr.lr, 1e-8, 1.0, "Adam learning rate (paper 1e-3)");
  b.Enum("train.loss", &tr.loss,
         "training loss: the paper's NLL, beta-NLL, or MSE warm-up then NLL");
  b.Number<int>("train.pca_components", &tr.pca_components, 0, 574,
                "output basis: 0 = the paper's 574 output pixels, K = K coefficients of a PCA "
                "basis of the log SED");
  b.Number<double>("train.beta", &tr.beta, 1e-6, 1.0, "beta-NLL exponent");
  b.Number<int>("train.warmup_epochs", &tr.warmup_epochs, 0, 100000,
                "mse_warmup: epochs of MSE first");
  b.Enum("train.schedule", &tr.schedule,
         "learning-rate schedule (cosine: train.lr to 0 over train.epochs)");
  b.Number<int>("train.ensemble", &tr.ensemble, 1, 16, "deep-ensemble members");
  b.Number<int>("train.checkpoint_every", &tr.checkpoint_every, 1, 100000,
                "epochs between checkpoints");
  b.Number<int>("train.patience", &tr.patience, 1, 100000, "early-stopping patience [epochs]");
  b.Number<double>("train.val_fraction", &tr.val_fraction, 0.01, 0.49,
                   "validation share of the training split");
  b.Enum("train.device", &tr.device, "training device (auto: CUDA when LibTorch sees one)");
  b.Number<int>("train.threads", &tr.threads, 0, 1024, "intra-op threads (0 = all cores)");
  b.Number<double>("train.max_hours", &tr.max_hours, 0.0, 1e6,
                   "stop with a checkpoint after this time (0 = none)");
  b.NumberList("train.snr", &tr.snr, 1e-3, 1e6, "SNRs of the on-the-fly noise");
  b.NumberList("train.calibration_snr", &tr.calibration_snr, 1e-3, 1e6,
               "SNRs of the validation noise for the sigma calibration (paper test SNRs)");
  b.Bool("train.bias_correction", &tr.bias_correction,
         "fit the conditional bias correction (mu given its predicted colours and the input SNR) "
         "on the validation "
         "split before the sigma calibration");

  auto& nw = c.network;
  b.Path("network.model", &nw.model,
         "UaRA-net model (MODEL.pt + MODEL.json, path without extension)");
  b.Enum("network.device", &nw.predictor.device,
         "inference device (auto: CUDA when LibTorch sees one)");
  b.Enum("network.engine", &nw.predictor.engine,
         "inference engine (auto: folded on CPU, libtorch on CUDA)");
  b.Number<int>("network.batch", &nw.batch, 1, 1000000, "inference batch size");
  b.Enum(
      "network.mode", &nw.mode,
      "model: UaRA-net predictions; paper_errors: true SED perturbed by the paper's error table");

  auto& sm = c.simulation;
  auto& in_ = sm.instrument;
  b.Number<uint64_t>("simulation.seed", &sm.seed, 0, std::numeric_limits<uint64_t>::max(),
                     "CSST noise/placement seed (changing it reruns simulate onward)");
  b.Enum("simulation.truth_sed", &sm.truth_sed,
         "true SEDs of real stars (ingest.source files): auto = prediction (the network's SED of "
         "the star's own "
         "spectrum, as the paper) or synthesizer (catalogue Teff/log g/[Fe/H]/[alpha/M])");
  b.Enum("simulation.mode", &sm.observe.mode,
         "spectral (fast 1-D) or image (2-D + optimal extraction)");
  b.Enum("simulation.placement", &sm.observe.placement, "star positions on the detectors");
  b.Bool("simulation.photon_noise", &sm.observe.photon_noise,
         "photon, sky, dark and read noise (false: noiseless counts)");
  b.Bool("simulation.reddening", &sm.observe.reddening,
         "apply the stars' true E(B-V) (CCM89, R_V = 3.1)");
  b.Number<double>("simulation.zeroth_order_fraction", &sm.observe.zeroth_order_fraction, 0.0, 1.0,
                   "probability per star and band of a 0th-order overlap");
  b.Number<double>("simulation.cosmic_ray_rate", &sm.observe.cosmic_ray_rate, 0.0, 10.0,
                   "cosmic-ray hits per output pixel");
  b.Number<double>("simulation.outlier_fraction", &sm.observe.outlier_fraction, 0.0, 1.0,
                   "fraction of stars with a flux error (binaries / variables)");
  b.Number<double>("simulation.outlier_amplitude", &sm.observe.outlier_amplitude, 0.0, 10.0,
                   "rms of that flux error");
  b.Number<double>("simulation.aperture_radius_cm", &in_.aperture_radius_cm, 1e-3, kInf,
                   "telescope aperture radius [cm]");
  b.Number<double>("simulation.pixel_scale", &in_.pixel_scale, 1e-4, 10.0, "arcsec per pixel");
  b.Number<double>("simulation.psf_fwhm", &in_.psf_fwhm, 1e-3, 10.0, "Gaussian PSF FWHM [arcsec]");
  b.Number<double>("simulation.exposure_time", &in_.exposure_time, 1e-3, kInf,
                   "seconds per exposure");
  b.Number<int>("simulation.n_exposures", &in_.n_exposures, 1, 1000, "exposures summed");
  b.Number<double>("simulation.dark", &in_.dark, 0.0, kInf, "dark current [e-/s/pixel]");
  b.Number<double>("simulation.read_noise", &in_.read_noise, 0.0, kInf,
                   "read noise [e-/pixel/exposure]");
  b.Number<double>("simulation.gain", &in_.gain, 1e-6, kInf, "gain [e-/ADU]");
  b.Number<double>("simulation.aperture_fwhm", &in_.aperture_fwhm, 0.1, 20.0,
                   "extraction box height [PSF FWHM]");
  // per band (core/bands.h): simulation.resolving_power_gu, sky_gu, throughput_file_gu, ...
  auto band_key = [](const char* stem, const BandSpec& band) {
    std::string key = std::string("simulation.") + stem + "_" + band.name;
    for (size_t i = key.size() - 2; i < key.size(); ++i)
      key[i] = static_cast<char>(std::tolower(key[i]));
    return key;
  };
  for (const auto& band : kBands) {
    char doc[64];
    std::snprintf(doc, sizeof(doc), "%s resolving power at %.0f A", band.name, band.centre);
    b.Number<double>(band_key("resolving_power", band),
                     &in_.resolving_power[static_cast<size_t>(Index(band.band))], 50.0, 10000.0,
                     doc);
  }
  for (const auto& band : kBands)
    b.Number<double>(band_key("sky", band), &in_.sky[static_cast<size_t>(Index(band.band))], 0.0,
                     kInf, std::string(band.name) + " sky [e-/s/pixel]");
  for (const auto& band : kBands)
    b.Path(band_key("throughput_file", band),
           &in_.throughput_file[static_cast<size_t>(Index(band.band))],
           band.band == kBands[0].band ? "FITS WAVELENGTH/SENSITIVITY table for " +
                                             std::string(band.name) + " (empty: built-in)"
                                       : "same for " + std::string(band.name));
  b.Bool("simulation.constant_r", &in_.constant_r,
         "LSF FWHM = lambda / R (ideal) instead of constant in wavelength");
  b.Number<double>("simulation.r_slope", &in_.r_slope, -0.9, 0.9,
                   "LSF FWHM change across the band (realistic case)");
  b.Number<double>("simulation.r_field", &in_.r_field, -0.9, 0.9,
                   "LSF FWHM change across the field");
  b.Number<int>("simulation.detector_nx", &in_.detector_nx, 100, 100000, "detector width [pixels]");
  b.Number<int>("simulation.detector_ny", &in_.detector_ny, 100, 100000,
                "detector height [pixels]");
  b.Number<int>("simulation.detectors_per_band", &in_.detectors_per_band, 1, 64,
                "slitless detectors per band");
  b.Enum("simulation.flat_model", &sm.flat.model,
         "injected true flat: polynomial or Gaussian random field");
  b.Number<int>("simulation.flat_order", &sm.flat.order, 1, 8, "polynomial order of the true flat");
  b.Number<double>("simulation.flat_rms", &sm.flat.rms, 0.0, 0.49,
                   "rms of the true flat over a detector");
  b.Number<double>("simulation.flat_lambda_variation", &sm.flat.lambda_variation, 0.0, 1.0,
                   "how much the flat pattern changes across a band (0 = not at all)");
  b.Number<double>("simulation.flat_correlation", &sm.flat.grf_correlation, 1e-3, 100.0,
                   "GRF correlation length [half-detectors]");
  b.Number<int>("simulation.flat_modes", &sm.flat.grf_modes, 1, 10000, "GRF Fourier modes");
  b.Number<double>("simulation.flat_level", &sm.flat.level, 1e-3, 1e3,
                   "overall level of the true flat (throughput error)");
  b.Number<double>("simulation.flat_detector_level_rms", &sm.flat.detector_level_rms, 0.0, 0.49,
                   "rms of per-detector gain offsets of the true flat");

  auto& cp = c.compare;
  auto& ob = c.observations;
  b.Enum("observations.source", &ob.source,
         "simulate: CSST spectra simulated through the injected true flat (stage simulate, then "
         "validate); files: "
         "extracted spectra from outside (observations.file; stage observations; no truth, so no "
         "validate)");
  b.Path("observations.file", &ob.file,
         "source = files: FITS table EXTRACTED of extracted 1-D spectra (format in README, "
         "io/observations.h)");
  b.Number<double>("observations.match_radius", &ob.match_radius, 1e-6, 3600.0,
                   "rows without an obsid match the one ingested star within this radius [arcsec]");
  b.Enum("compare.flux_scale", &cp.flux_scale,
         "star's absolute flux known (paper) or fitted (joint)");
  b.Bool("compare.reddening", &cp.reddening, "redden the prediction with the assumed E(B-V)");
  b.Number<double>("compare.ebv_sigma", &cp.ebv_sigma, 0.0, 10.0,
                   "error of the assumed E(B-V) [mag]");
  b.Number<double>("compare.scale_error", &cp.scale_error, 0.0, 10.0,
                   "relative error of the G-based flux scale");

  auto& as = c.assemble;
  b.Number<int>("assemble.axe_degree", &as.axe_degree, 0, 8,
                "degree in w of the aXe polynomial cube");
  b.Number<int>("assemble.axe_binning", &as.axe_binning, 1, 9232,
                "aXe image binning (1 = full resolution)");
  b.Number<int>("assemble.cube_binning", &as.cube_binning, 1, 9232,
                "spatial sampling of the reference cube [pixels]");
  b.Number<double>(
      "assemble.max_sigma", &as.max_sigma, 1e-9, kInf,
      "the stars' own constraint (ERR without SYSERR) above this flags POORLY_CONSTRAINED");
  b.Bool("assemble.quicklooks", &as.quicklooks, "write PNG quicklooks (GDAL)");

  auto& va = c.validate;
  b.Number<int>("validate.realizations", &va.realizations, 0, 100000, "Monte Carlo realizations");
  b.Bool("validate.fresh_positions", &va.fresh_positions,
         "draw new star positions in every realization");
  b.Number<int>("validate.sample_points", &va.sample_points, 2, 1000,
                "detector grid points per side for the comparison");
  b.Bool("validate.report", &va.report, "write report/index.html with figures (gnuplot)");
  b.Number<int>(
      "validate.realizations_in_flight", &va.in_flight, 0, 64,
      "realizations run at once on a CPU (0 = one per thread while their fit tables fit in 2 GB)");
  b.Enum("validate.batch_realizations", &va.batch,
         "predict a chunk of realizations in one call (auto: when the network runs on a GPU)");

  auto& ff = c.flatfield;
  b.Enum("flatfield.mode", &ff.mode, "independent slices (known fluxes) or joint with star scales");
  b.Enum("flatfield.joint_solver", &ff.joint_solver,
         "joint mode: structured Levenberg-Marquardt (schur) or the same problem in Ceres "
         "(reference)");
  b.Number<double>("flatfield.smoothness", &ff.smoothness, 0.0, kInf,
                   "joint mode: wavelength smoothness weight");
  b.Number<double>(
      "flatfield.joint_tolerance", &ff.joint_tolerance, 1e-16, 1e-2,
      "joint mode: the fit ends when a step lowers the cost by less than this fraction of it");
  b.Number<double>(
      "flatfield.joint_linear_tolerance", &ff.joint_linear_tolerance, 1e-16, 0.5,
      "joint mode: conjugate gradients of a step end at this fraction of the right-hand side");
  b.Number<int>("flatfield.min_points", &ff.min_points, 1, 1000000,
                "fewest points for a slice fit");
  b.Number<double>("flatfield.lackfit_separation", &ff.lack_of_fit_separation, 1.0, 1e5,
                   "star pairs closer than this [detector px] measure the lack of fit");
  b.Number<int>(
      "flatfield.lackfit_partners", &ff.lack_of_fit_partners, 1, 1000000,
      "most partners of one point in the lack-of-fit pairs (keeps its cost linear in the stars)");
  b.Number<int>(
      "flatfield.order", &ff.order, 0, kMaxFlatOrder,
      "total degree of the 2D flat polynomial (order_select kfold: of the joint fit's first pass)");
  b.Enum("flatfield.order_select", &ff.order_select,
         "the degree: flatfield.order in every band, or per band by k-fold cross-validation over "
         "stars");
  b.Number<int>("flatfield.order_max", &ff.order_max, 0, kMaxFlatOrder,
                "order_select kfold: highest degree tried");
  b.Number<int>("flatfield.order_folds", &ff.order_folds, 2, 50,
                "order_select kfold: folds over stars");
  b.Enum("flatfield.loss", &ff.loss, "robust loss of the flat fit");
  b.Number<double>("flatfield.loss_scale", &ff.loss_scale, 1e-6, kInf,
                   "robust loss scale in units of sigma");
  b.Number<int>(
      "flatfield.max_iterations", &ff.max_iterations, 1, 100000,
      "iteration limit per fit (re-weighted slice fits; the joint fit uses at least 100)");
  (void)kNegInf;
  return f;
}

std::string Where(const std::string& file, const YAML::Mark& m);
std::string Where(const std::string& where, const YAML::Node& n) {
  (void)n;
  return where;
}

std::string Where(const std::string& file, const YAML::Mark& m) {
  if (m.is_null()) return file;
  return file + ":" + std::to_string(m.line + 1) + ":" + std::to_string(m.column + 1);
}

const Field* Find(const std::vector<Field>& schema, const std::string& key) {
  for (const auto& f : schema)
    if (f.key == key) return &f;
  return nullptr;
}

bool IsSectionPrefix(const std::vector<Field>& schema, const std::string& prefix) {
  for (const auto& f : schema)
    if (f.key.rfind(prefix + ".", 0) == 0) return true;
  return false;
}

// Edit distance (case-insensitive), for "did you mean" on unknown keys.
size_t Distance(const std::string& a, const std::string& b) {
  std::vector<size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const bool same = std::tolower(static_cast<unsigned char>(a[i - 1])) ==
                        std::tolower(static_cast<unsigned char>(b[j - 1]));
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (same ? 0 : 1)});
    }
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

// The valid key or section nearest to `key` (" (did you mean X?)"), or "" when none is close.
std::string Suggest(const std::vector<Field>& schema, const std::string& key) {
  std::set<std::string> names;
  for (const auto& f : schema) {
    names.insert(f.key);
    for (size_t p = f.key.find('.'); p != std::string::npos; p = f.key.find('.', p + 1))
      names.insert(f.key.substr(0, p));
  }
  std::string best;
  size_t best_d = std::string::npos;
  for (const auto& n : names) {
    const size_t d = Distance(key, n);
    if (d < best_d) best_d = d, best = n;
  }
  const size_t limit = std::max<size_t>(2, key.size() / 4);
  return best_d <= limit ? " (did you mean " + best + "?)" : "";
}

void Walk(const YAML::Node& map, const std::string& prefix, const std::vector<Field>& schema,
          const std::string& file, Config& c, std::map<std::string, std::string>& seen) {
  for (auto it = map.begin(); it != map.end(); ++it) {
    const std::string name = it->first.Scalar();
    const std::string key = prefix.empty() ? name : prefix + "." + name;
    const std::string where = Where(file, it->first.Mark());
    if (name == "<<") {
      throw ConfigError(
          "config error: YAML merge keys (<<) are not supported: write the keys out (" + where +
          ")");
    }
    // one map: {order: 2} and flatfield.order: 5 in one file are the same key given twice
    if (const auto [first, fresh] = seen.emplace(key, where); !fresh) {
      throw ConfigError("config error: " + key + " is given twice (" + first->second + " and " +
                        where + ")");
    }
    if (const Field* f = Find(schema, key)) {
      f->set(it->second, Where(file, it->second.Mark()));
      c.locations[key] = where;
    } else if (IsSectionPrefix(schema, key)) {
      if (!it->second.IsMap()) {
        throw ConfigError("config error: " + key + " must be a mapping of keys (" + where + ")");
      }
      Walk(it->second, key, schema, file, c, seen);
    } else {
      throw ConfigError("config error: unknown key " + key + Suggest(schema, key) + " (" + where +
                        ")");
    }
  }
}

// Real catalogues lack columns. A step that needs a column the catalogue does not have fails now,
// naming the column and the key that needs it; a disabled cut needs no column.
void CheckCatalogueColumns(const Config& c,
                           const std::function<std::string(const std::string&)>& at) {
  std::vector<std::string> names;
  const bool from_headers = c.ingest.catalogue.empty();
  try {
    names = from_headers ? CatalogueFromHeadersColumns(c.ingest.labels)
                         : CatalogueColumnNames(c.ingest.catalogue);
  } catch (const Error& e) {
    throw ConfigError(
        "config error: " + std::string(from_headers ? "ingest.labels: " : "ingest.catalogue: ") +
        e.what() + " (" + at(from_headers ? "ingest.labels" : "ingest.catalogue") + ")");
  }
  const std::string source =
      from_headers ? "the catalogue built from the headers in " + c.ingest.spectra_dir +
                         (c.ingest.labels.empty() ? std::string(" (no ingest.labels)")
                                                  : " and " + c.ingest.labels)
                   : "ingest.catalogue = " + c.ingest.catalogue;
  const auto& col = c.ingest.columns;
  auto need = [&](const std::string& column, const std::string& column_key, const std::string& key,
                  const std::string& value, const std::string& instead) {
    if (HasColumnNamed(names, column)) return;
    throw ConfigError("config error: " + source + " has no column '" + column + "', which " + key +
                      " = " + value + " needs (" + instead + "; or name the column with " +
                      column_key + ") (" + at(key) + ")");
  };
  need(col.obsid, "ingest.columns.obsid", "ingest.source", "files",
       "every star needs its spectrum id");
  if (c.ingest.teff_min > 0) {
    need(col.teff, "ingest.columns.teff", "ingest.teff_min", Show(c.ingest.teff_min),
         "set ingest.teff_min: 0 to run without a Teff cut");
  }
  if (c.ingest.snr_min > 0) {
    const bool g = c.ingest.snr_band == SnrBand::kG;
    need(g ? col.snr_g : col.snr_r, g ? "ingest.columns.snr_g" : "ingest.columns.snr_r",
         "ingest.snr_min", Show(c.ingest.snr_min),
         "set ingest.snr_min: 0 to run without an SNR cut");
  }
  if (c.ingest.g_min > 0) {
    need(col.gmag, "ingest.columns.gmag", "ingest.g_min", Show(c.ingest.g_min),
         "set ingest.g_min: 0 to run without a G cut; the flux scale then comes from each star's "
         "spectrum");
  }
  if (c.simulation.truth_sed == TruthSedChoice::kSynthesizer) {
    for (const auto& [column, key] : {std::pair{col.logg, "ingest.columns.logg"},
                                      {col.feh, "ingest.columns.feh"},
                                      {col.snr_g, "ingest.columns.snr_g"},
                                      {col.snr_r, "ingest.columns.snr_r"}}) {
      need(column, key, "simulation.truth_sed", "synthesizer",
           "use simulation.truth_sed: prediction");
    }
  }
  if (c.network.mode == SedSource::kPaperErrors) {
    need(col.snr_g, "ingest.columns.snr_g", "network.mode", "paper_errors",
         "the error table is per SNR");
    need(col.teff, "ingest.columns.teff", "network.mode", "paper_errors",
         "the error table is per Teff");
  }
  if (c.simulation.observe.placement == StarPlacement::kSky) {
    need(col.ra, "ingest.columns.ra", "simulation.placement", "sky",
         "use simulation.placement: random");
    need(col.dec, "ingest.columns.dec", "simulation.placement", "sky",
         "use simulation.placement: random");
  }
  if (c.simulation.observe.reddening) {
    need(col.ebv, "ingest.columns.ebv", "simulation.reddening", "true",
         "set simulation.reddening: false");
  }
  if (c.compare.reddening) {
    need(col.ebv, "ingest.columns.ebv", "compare.reddening", "true",
         "set compare.reddening: false");
  }
}

void CrossValidate(const Config& c) {
  try {
    c.ingest.Validate();
  } catch (const ConfigError& e) {
    throw ConfigError(std::string(e.what()) + " (" + c.source_path + ")");
  }
  // Sizes: the estimates are rough (a factor ~2), so each must fit in half of the machine's memory.
  CheckRunMemory(c, 0.5 * PhysicalMemoryBytes());
  auto at = [&](const std::string& key) {
    auto it = c.locations.find(key);
    return it == c.locations.end() ? std::string("default") : it->second;
  };
  if (c.ingest.source == IngestSource::kSample && c.simulation.truth_sed != TruthSedChoice::kAuto) {
    throw ConfigError(
        std::string("config error: simulation.truth_sed = ") + ToString(c.simulation.truth_sed) +
        " applies to ingest.source: files; the simulated sample brings its own truth (" +
        at("simulation.truth_sed") + ")");
  }
  if (c.ingest.source == IngestSource::kFiles && c.network.mode == SedSource::kPaperErrors &&
      c.simulation.truth_sed != TruthSedChoice::kSynthesizer) {
    throw ConfigError(std::string("config error: network.mode = paper_errors perturbs the true "
                                  "SEDs, which simulation.truth_sed = ") +
                      ToString(c.simulation.truth_sed) +
                      " takes from the network itself; use simulation.truth_sed: synthesizer (" +
                      at("network.mode") + ")");
  }
  if (c.ingest.source == IngestSource::kFiles) {
    // Inputs are checked now, before any stage runs.
    namespace fs = std::filesystem;
    std::error_code ec;
    if (c.ingest.catalogue.empty()) {
      if (!c.ingest.labels.empty() && !fs::is_regular_file(c.ingest.labels, ec)) {
        throw ConfigError("config error: ingest.labels = " + c.ingest.labels + " is not a file (" +
                          at("ingest.labels") + ")");
      }
    } else if (!fs::exists(c.ingest.catalogue, ec)) {
      throw ConfigError("config error: ingest.catalogue = " + c.ingest.catalogue +
                        " does not exist (" + at("ingest.catalogue") + ")");
    }
    if (!c.ingest.catalogue.empty() && !fs::is_regular_file(c.ingest.catalogue, ec)) {
      throw ConfigError("config error: ingest.catalogue = " + c.ingest.catalogue +
                        " is not a file (expected a FITS table or a .csv) (" +
                        at("ingest.catalogue") + ")");
    }
    if (!fs::is_directory(c.ingest.spectra_dir, ec)) {
      throw ConfigError("config error: ingest.spectra_dir = " + c.ingest.spectra_dir +
                        " is not a directory (" + at("ingest.spectra_dir") + ")");
    }
    // The run's products (stars.fits, seds.fits, ...) are FITS files: written into the spectra
    // folder they would be listed as spectra and change the folder's hash, so every run would redo
    // every stage.
    if (fs::weakly_canonical(c.output.dir, ec) == fs::weakly_canonical(c.ingest.spectra_dir, ec)) {
      throw ConfigError("config error: output.dir = " + c.output.dir +
                        " is the spectra folder ingest.spectra_dir = " + c.ingest.spectra_dir +
                        ": the run's FITS products would be read as spectra; choose another "
                        "output.dir (" +
                        at("output.dir") + ")");
    }
    CheckCatalogueColumns(c, at);
  }
  if (c.observations.source == ObservationsSource::kFiles) {
    std::error_code ec;
    if (c.observations.file.empty()) {
      throw ConfigError("config error: observations.source = files needs observations.file (" +
                        at("observations.source") + ")");
    }
    if (!std::filesystem::is_regular_file(c.observations.file, ec)) {
      throw ConfigError("config error: observations.file = " + c.observations.file +
                        " is not a file (expected a FITS table EXTRACTED) (" +
                        at("observations.file") + ")");
    }
  }
  if (!(c.sample.population.teff_min < c.sample.population.teff_max)) {
    throw ConfigError("config error: sample.teff_min = " + Show(c.sample.population.teff_min) +
                      " violates teff_min < sample.teff_max = " +
                      Show(c.sample.population.teff_max) + " (" + at("sample.teff_min") + ")");
  }
  if (!(c.sample.population.g_min < c.sample.population.g_max)) {
    throw ConfigError("config error: sample.g_min = " + Show(c.sample.population.g_min) +
                      " violates g_min < sample.g_max = " + Show(c.sample.population.g_max) + " (" +
                      at("sample.g_min") + ")");
  }
}

Config Load(const YAML::Node& root, const std::string& name,
            const std::vector<std::string>& overrides) {
  Config c;
  c.source_path = name;
  const auto schema = Schema(c);
  if (root.IsDefined() && !root.IsNull()) {
    if (!root.IsMap()) {
      throw ConfigError("config error: " + name + " must hold a mapping of keys at the top level");
    }
    std::map<std::string, std::string> seen;  // key -> where it was first given
    Walk(root, "", schema, name, c, seen);
  }
  for (const auto& o : overrides) {
    const auto eq = o.find('=');
    if (eq == std::string::npos || eq == 0) {
      throw ConfigError("config error: --set " + o + " is not of the form key=value");
    }
    const std::string key = o.substr(0, eq);
    const Field* f = Find(schema, key);
    if (!f)
      throw ConfigError("config error: unknown key " + key + Suggest(schema, key) + " (--set " + o +
                        ")");
    YAML::Node value;
    try {
      value = YAML::Load(o.substr(eq + 1));
    } catch (const YAML::Exception& e) {
      throw ConfigError("config error: --set " + o + ": " + e.msg);
    }
    f->set(value, "--set " + o);
    c.locations[key] = "--set " + o;
  }
  if (c.train.grid.empty()) c.train.grid = c.grid.out;
  c.network.predictor.threads = c.threads;
  // Real spectra are read by the real-star weights unless network.model says otherwise.
  if (c.ingest.source == IngestSource::kFiles && !c.locations.count("network.model"))
    c.network.model = kRealStarModel;
  c.network.model = ResolveShippedModel(c.network.model);
  CrossValidate(c);
  return c;
}

}  // namespace

std::string ResolveShippedModel(const std::string& model) {
  // A relative model path that does not exist here names a model shipped with the source tree
  // (the default network/models/uara_default works from any working directory).
  namespace fs = std::filesystem;
  std::error_code ec;
  const fs::path sidecar(model + ".json");
  if (sidecar.is_relative() && !fs::exists(sidecar, ec) &&
      fs::exists(fs::path(CSST_SOURCE_DIR_PATH) / sidecar, ec)) {
    return (fs::path(CSST_SOURCE_DIR_PATH) / model).string();
  }
  return model;
}

Config LoadConfigText(const std::string& yaml, const std::string& name,
                      const std::vector<std::string>& overrides) {
  YAML::Node root;
  try {
    const auto docs = YAML::LoadAll(yaml);
    if (docs.size() > 1) {
      throw ConfigError("config error: " + name + " holds " + std::to_string(docs.size()) +
                        " YAML documents (the second starts at line " +
                        std::to_string(docs[1].Mark().line + 1) +
                        "); a configuration is one document: remove the '---' line and merge them");
    }
    if (!docs.empty()) root = docs.front();
  } catch (const YAML::Exception& e) {
    // the line of the error, to say so when a tab indents it (YAML allows spaces only)
    std::string line;
    {
      std::istringstream in(yaml);
      for (int i = 0; i <= e.mark.line && std::getline(in, line); ++i) {
      }
    }
    const bool tab =
        line.find('\t') != std::string::npos && line.find_first_not_of(" \t") > line.find('\t');
    throw ConfigError("config error: " + name + ":" + std::to_string(e.mark.line + 1) + ":" +
                      std::to_string(e.mark.column + 1) + ": YAML syntax: " + e.msg +
                      (tab ? " (this line is indented with a tab: YAML allows spaces only)" : ""));
  }
  return Load(root, name, overrides);
}

Config LoadConfig(const std::string& path, const std::vector<std::string>& overrides) {
  std::string text;
  try {
    text = ReadText(path);
  } catch (const IoError& e) {
    throw ConfigError(std::string("config error: ") + e.what());
  }
  bool empty = false;
  try {
    const YAML::Node root = YAML::Load(text);
    empty = !root.IsDefined() || root.IsNull() || (root.IsMap() && root.size() == 0);
  } catch (const YAML::Exception&) {
    // LoadConfigText reports the syntax error with its place.
  }
  if (empty) {
    throw ConfigError("config error: " + path +
                      " holds no keys; a configuration names at least output.dir "
                      "(`csst-flatcube config --schema` lists every key and its default)");
  }
  return LoadConfigText(text, path, overrides);
}

std::vector<SchemaEntry> DescribeSchema() {
  Config c;
  std::vector<SchemaEntry> out;
  for (const auto& f : Schema(c)) out.push_back({f.key, f.type, f.get(), f.constraint, f.doc});
  return out;
}

std::string SectionText(const Config& config, const std::string& section) {
  Config& c = const_cast<Config&>(config);  // Schema binds pointers; only get() is called.
  std::string out;
  for (const auto& f : Schema(c)) {
    if (f.key == section || f.key.rfind(section + ".", 0) == 0) out += f.key + "=" + f.get() + "\n";
  }
  return out;
}

std::string DumpConfig(const Config& config) {
  Config& c = const_cast<Config&>(config);
  std::string out;
  for (const auto& f : Schema(c)) out += f.key + ": " + f.get() + "   # " + f.doc + "\n";
  return out;
}

}  // namespace csst
