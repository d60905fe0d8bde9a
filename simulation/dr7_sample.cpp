#include "simulation/dr7_sample.h"

#include <tbb/parallel_for.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <memory>
#include <optional>

#include "core/errors.h"
#include "core/log.h"
#include "core/mpi_world.h"
#include "core/progress.h"
#include "core/rng.h"
#include "simulation/label_grid.h"
#include "simulation/stellar/synthesizer.h"

namespace csst {
namespace fs = std::filesystem;

namespace {
// Rows [i0, i1) of per-star arrays, one after the other (a FITS array column's row-major data).
std::vector<double> Flatten(const std::vector<std::vector<double>>& rows, size_t i0, size_t i1) {
  std::vector<double> out;
  for (size_t i = i0; i < i1; ++i) out.insert(out.end(), rows[i].begin(), rows[i].end());
  return out;
}
constexpr int kSampleTag =
    4;  // MPI tag of a block of a rank's share of the sample's truth (core/mpi_world.h)
constexpr size_t kBlock =
    2048;  // rows written at once by WriteSampleTruth and WriteNoiselessLamost

// A sample's truth tables, written in star order one block of rows at a time (the same bytes as one
// WriteTable of all rows): truth.fits (TRUTH) and lamost_truth.fits (LAMOST).
class TruthTable {
 public:
  TruthTable(const std::string& path, const Provenance& prov, const std::string& descrip)
      : w_(path), p_(prov) {
    p_.descrip = descrip;
    w_.WritePrimary(p_);
    w_.CreateTable("TRUTH", {{"OBSID", "", std::vector<int64_t>{}},
                             {"SPECHASH", "", std::vector<std::string>{}, 16},
                             {"WINDOW_FLUX", "erg/s/cm2/Angstrom", std::vector<double>{}},
                             {"SED", "", std::vector<double>{}, OutputGrid().size()},
                             {"SED_FINE", "", std::vector<double>{}, TruthGrid().size()}});
  }
  // The arrays rows come from (not owned; SampleTruth's fields, or a block's).
  struct Rows {
    const std::vector<int64_t>& obsid;
    const std::vector<std::string>& hash;
    const std::vector<double>& window;
    const std::vector<std::vector<double>>& sed;
    const std::vector<std::vector<double>>& sed_fine;
  };
  // Rows [i0, i1) of the arrays; they continue the rows written before.
  void Append(const Rows& rows, size_t i0, size_t i1) {
    const auto& [obsid, hash, window, sed, sed_fine] = rows;
    w_.AppendRows(
        rows_,
        {{"OBSID", "", std::vector<int64_t>(obsid.begin() + i0, obsid.begin() + i1)},
         {"SPECHASH", "", std::vector<std::string>(hash.begin() + i0, hash.begin() + i1), 16},
         {"WINDOW_FLUX", "", std::vector<double>(window.begin() + i0, window.begin() + i1)},
         {"SED", "", Flatten(sed, i0, i1), OutputGrid().size()},
         {"SED_FINE", "", Flatten(sed_fine, i0, i1), TruthGrid().size()}});
    rows_ += static_cast<long>(i1 - i0);
  }
  void Finish() {
    w_.Standard(p_, "");
    w_.Comment(
        "SED: R=200 on the 574-pixel output grid (2500-10500 A, log), scaled to 1 at 5526-5586 A");
    w_.Comment("SED_FINE: R=1000 on the 2970-pixel truth grid (2400-10600 A, log), same scaling");
    w_.Comment("SPECHASH: SpectrumDataHash (io/spectrum_io.h) of the star's LAMOST spectrum");
    w_.Comment("Absolute SED at Earth = WINDOW_FLUX * SED [erg/s/cm2/A]; vacuum wavelengths");
    w_.WriteTable("WAVE_OUT", {{"WAVELENGTH", "Angstrom", OutputGrid().Centres()}});
    w_.Standard(p_, "");
    w_.WriteTable("WAVE_FINE", {{"WAVELENGTH", "Angstrom", TruthGrid().Centres()}});
    w_.Standard(p_, "");
    w_.Close();
  }

 private:
  FitsWriter w_;
  Provenance p_;
  long rows_ = 0;
};

class LamostTable {
 public:
  LamostTable(const std::string& path, const std::vector<double>& wave, const Provenance& prov,
              const std::string& descrip)
      : w_(path), p_(prov), wave_(wave) {
    p_.descrip = descrip;
    w_.WritePrimary(p_);
    const long np = static_cast<long>(wave_.size());
    w_.CreateTable("LAMOST", {{"OBSID", "", std::vector<int64_t>{}},
                              {"FLUX", "1e-17 erg/s/cm2/Angstrom", std::vector<double>{}, np},
                              {"ERR", "1e-17 erg/s/cm2/Angstrom", std::vector<double>{}, np}});
  }
  void Append(const std::vector<int64_t>& obsid, const std::vector<std::vector<double>>& flux,
              const std::vector<std::vector<double>>& err, size_t i0, size_t i1) {
    for (size_t i = i0; i < i1; ++i) {
      if (flux[i].size() != wave_.size() || err[i].size() != wave_.size()) {
        throw Error(w_.path() + ": a spectrum of " + std::to_string(flux[i].size()) +
                    " pixels for a grid of " + std::to_string(wave_.size()) + " (internal error)");
      }
    }
    const long np = static_cast<long>(wave_.size());
    w_.AppendRows(rows_,
                  {{"OBSID", "", std::vector<int64_t>(obsid.begin() + i0, obsid.begin() + i1)},
                   {"FLUX", "", Flatten(flux, i0, i1), np},
                   {"ERR", "", Flatten(err, i0, i1), np}});
    rows_ += static_cast<long>(i1 - i0);
  }
  void Finish() {
    w_.Standard(p_, "");
    w_.WriteTable("WAVELENGTH", {{"WAVELENGTH", "Angstrom", wave_}});
    w_.Standard(p_, "");
    w_.Close();
  }

 private:
  FitsWriter w_;
  Provenance p_;
  std::vector<double> wave_;
  long rows_ = 0;
};
}  // namespace

fs::path DefaultGridCache() {
  if (const char* x = std::getenv("XDG_CACHE_HOME"); x && *x) return fs::path(x) / "csst-flatcube";
  if (const char* h = std::getenv("HOME"); h && *h) return fs::path(h) / ".cache" / "csst-flatcube";
  return fs::path(".csst-flatcube-cache");
}

void WriteDr7Sample(const Dr7SampleOptions& o, uint64_t seed, const Provenance& prov,
                    const Dr7SamplePaths& paths) {
  o.population.Validate();
  o.lamost.Validate();
  if (o.block_stars < 1) throw ConfigError("sample.block_stars must be >= 1");
  const size_t block = static_cast<size_t>(o.block_stars);
  const auto stars = DrawPopulation(o.population, seed);
  // Stars are made in blocks of sample.block_stars, each block written and freed before the next
  // (memory: one block). Under MPI rank k makes the k-th contiguous share and writes its LAMOST
  // files into the same (shared) folder; its blocks' truth arrays go to rank 0, which appends them
  // after its own, so the tables are in star order.
  const size_t n = stars.size(), ranks = static_cast<size_t>(MpiWorld::Size()),
               me = static_cast<size_t>(MpiWorld::Rank());
  auto first = [&](size_t k) { return n * k / ranks; };
  const size_t lo = first(me), hi = first(me + 1);
  if (me == 0) WriteCatalogueFits(paths.catalogue.string(), stars, prov);
  fs::create_directories(paths.lamost_dir);
  const stellar::SynthOptions so;
  const stellar::Synthesizer synth(so);
  std::optional<LabelGrid> grid;
  if (o.synthesis == SampleSynthesis::kGrid) {
    grid = LabelGrid::Cached(LabelGridFor(o.population),
                             o.grid_cache.empty() ? DefaultGridCache() : fs::path(o.grid_cache));
  }
  std::vector<double> wave;
  for (int k = 0; k < o.lamost.n_pixels; ++k)
    wave.push_back(std::pow(10.0, o.lamost.coeff0 + o.lamost.coeff1 * k));
  std::vector<int64_t> obsid;
  for (const auto& s : stars) obsid.push_back(s.obsid);
  std::unique_ptr<TruthTable> truth;
  std::unique_ptr<LamostTable> lamost;
  if (me == 0) {
    truth = std::make_unique<TruthTable>(
        paths.truth.string(), prov,
        "true SEDs of the simulated sample (validation only; never read by fitting stages)");
    lamost = std::make_unique<LamostTable>(
        paths.lamost_truth.string(), wave, prov,
        "noiseless LAMOST-grid spectra of the simulated sample and their 1-sigma");
  }
  // Per star of the current block (indexed i - b0).
  std::vector<std::vector<double>> sed, sed_fine, lam_flux, lam_err;
  std::vector<double> window;
  std::vector<std::string> spec_hash;
  std::vector<int64_t> block_id;
  auto append = [&](size_t b0, size_t b1) {
    truth->Append({block_id, spec_hash, window, sed, sed_fine}, 0, b1 - b0);
    lamost->Append(block_id, lam_flux, lam_err, 0, b1 - b0);
  };
  auto resize = [&](size_t m) {
    for (auto* v : {&sed, &sed_fine, &lam_flux, &lam_err}) {
      v->clear();
      v->resize(m);
    }
    window.assign(m, 0.0);
    spec_hash.assign(m, "");
  };
  Progress progress("sample", static_cast<long>(hi - lo));
  for (size_t b0 = lo; b0 < hi; b0 += block) {
    const size_t b1 = std::min(hi, b0 + block);
    resize(b1 - b0);
    block_id.assign(obsid.begin() + b0, obsid.begin() + b1);
    tbb::parallel_for(b0, b1, [&](size_t i) {
      const auto& st = stars[i];
      const size_t j = i - b0;
      Spectrum sed200, clean;
      if (grid) {
        auto g = grid->Interpolate(st.teff, st.logg, st.feh);
        sed200 = std::move(g.sed200);
        sed_fine[j] = std::move(g.sed_fine.flux);
        clean = NoiselessLamostFromResolved(g.ref, grid->ResolvedR(), st, o.lamost);
      } else {
        const stellar::StellarParams p{st.teff, st.logg, st.feh, st.alpha};
        const auto native = synth.Synthesize(p);
        sed200 = DegradeToGrid(native, 200.0, OutputGrid());
        sed_fine[j] = DegradeToGrid(native, kTruthResolution, TruthGrid()).flux;
        clean = NoiselessLamost(native, so.resolving_power, st, o.lamost);
      }
      // One normalisation for both truth SEDs: the method's definition, the mean flux in
      // 5526-5586 A of the R = 200 SED on the output grid.
      const double norm = MeanFluxInWindow(sed200);
      sed[j] = sed200.flux;
      for (double& v : sed[j]) v /= norm;
      for (double& v : sed_fine[j]) v /= norm;
      window[j] = WindowFluxFromG(st.gmag);
      lam_flux[j] = clean.flux;
      lam_err[j] = clean.err;
      Rng rng(seed, "lamost-noise", static_cast<uint64_t>(i));
      const auto observed = ObserveLamost(clean, st, o.lamost, rng);
      const auto file = paths.lamost_dir / ("spec-" + std::to_string(st.obsid) + ".fits");
      WriteLamost(file.string(), observed, LamostLayout::kDr7, prov);
      // The identity that joins an ingested star to this truth: the data as a reader gets them
      // back.
      spec_hash[j] = SpectrumDataHash(ReadLamost(file.string()).spectrum);
      progress.Tick();
    });
    if (me == 0) {
      append(b0, b1);
    } else {  // a worker rank: this block of its share goes to rank 0
      ByteWriter w;
      for (size_t j = 0; j < b1 - b0; ++j) {
        w.PutVector(sed[j]);
        w.PutVector(sed_fine[j]);
        w.PutVector(lam_flux[j]);
        w.PutVector(lam_err[j]);
        w.Put(window[j]);
        w.PutString(spec_hash[j]);
      }
      // Non-blocking: rank 0 takes the workers' blocks only after its own share, and a blocking
      // send would hold this rank until then.
      MpiWorld::SendAsync(0, kSampleTag, w.bytes());
    }
  }
  progress.Finish();
  if (me != 0) {
    MpiWorld::WaitSends();
    return;
  }
  for (size_t k = 1; k < ranks; ++k) {  // the other ranks' shares, block by block, in star order
    for (size_t b0 = first(k); b0 < first(k + 1); b0 += block) {
      const size_t b1 = std::min(first(k + 1), b0 + block);
      resize(b1 - b0);
      block_id.assign(obsid.begin() + b0, obsid.begin() + b1);
      const auto bytes = MpiWorld::Recv(static_cast<int>(k), kSampleTag);
      ByteReader r(bytes);
      for (size_t j = 0; j < b1 - b0; ++j) {
        sed[j] = r.GetVector<double>();
        sed_fine[j] = r.GetVector<double>();
        lam_flux[j] = r.GetVector<double>();
        lam_err[j] = r.GetVector<double>();
        window[j] = r.Get<double>();
        spec_hash[j] = r.GetString();
      }
      if (!r.done())
        throw Error("sample: rank " + std::to_string(k) +
                    " sent more than its block (internal error)");
      append(b0, b1);
    }
  }
  truth->Finish();
  lamost->Finish();
  Logger("sample")->info("{} stars synthesized; LAMOST files in {}", n, paths.lamost_dir.string());
}

void WriteSampleTruth(const std::string& path, const SampleTruth& t, const Provenance& prov,
                      const std::string& descrip) {
  TruthTable table(path, prov, descrip);
  for (size_t b0 = 0; b0 < t.obsid.size(); b0 += kBlock) {
    table.Append({t.obsid, t.spec_hash, t.window_flux, t.sed, t.sed_fine}, b0,
                 std::min(t.obsid.size(), b0 + kBlock));
  }
  table.Finish();
}

void WriteNoiselessLamost(const std::string& path, const NoiselessLamostRows& rows,
                          const Provenance& prov, const std::string& descrip) {
  const auto& [obsid, wave, flux, err] = rows;
  LamostTable table(path, wave, prov, descrip);
  for (size_t b0 = 0; b0 < obsid.size(); b0 += kBlock)
    table.Append(obsid, flux, err, b0, std::min(obsid.size(), b0 + kBlock));
  table.Finish();
}

namespace {
// Rows `rows[0..n)` (0-based, any order) of array column `col` of width `width`, in that order:
// sorted rows are read in runs of consecutive rows, at most kBlock rows a read (no copy of a whole
// column).
std::vector<std::vector<double>> ReadChosenRows(FitsReader& r, const std::string& col,
                                                const long* rows, size_t n, size_t width,
                                                const std::string& path) {
  if (r.ColumnRepeat(col) != static_cast<long>(width))
    throw IoError(path + ": column " + col + " has the wrong length");
  const long nrows = r.NumRows();
  std::vector<size_t> order(n);
  for (size_t k = 0; k < n; ++k) {
    if (rows[k] < 0 || rows[k] >= nrows)
      throw IoError(path + ": row " + std::to_string(rows[k] + 1) + " asked for, the table has " +
                    std::to_string(nrows));
    order[k] = k;
  }
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return rows[a] < rows[b]; });
  std::vector<std::vector<double>> out(n);
  for (size_t a = 0; a < n;) {
    size_t b =
        a + 1;  // order[a..b): one run of consecutive rows (a row asked for twice is read twice)
    while (b < n && b - a < kBlock && rows[order[b]] == rows[order[b - 1]] + 1) ++b;
    const long first = rows[order[a]];
    const auto flat = r.ReadColumn(col, first, static_cast<long>(b - a));
    for (size_t k = a; k < b; ++k) {
      const size_t i = static_cast<size_t>(rows[order[k]] - first);
      out[order[k]].assign(flat.begin() + static_cast<std::ptrdiff_t>(i * width),
                           flat.begin() + static_cast<std::ptrdiff_t>((i + 1) * width));
    }
    a = b;
  }
  return out;
}
std::vector<long> AllRows(size_t n) {
  std::vector<long> rows(n);
  for (size_t i = 0; i < n; ++i) rows[i] = static_cast<long>(i);
  return rows;
}
}  // namespace

SampleTruthReader::SampleTruthReader(const std::string& path)
    : path_(path), r_(std::make_unique<FitsReader>(path)) {
  r_->MoveTo("TRUTH");
  for (double v : r_->ReadColumn("OBSID")) obsid_.push_back(static_cast<int64_t>(v));
  if (r_->HasColumn("SPECHASH")) spec_hash_ = r_->ReadStringColumn("SPECHASH");
  window_flux_ = r_->ReadColumn("WINDOW_FLUX");
}

std::vector<std::vector<double>> SampleTruthReader::Sed(const long* rows, size_t n) {
  const std::lock_guard<std::mutex> lock(mu_);
  return ReadChosenRows(*r_, "SED", rows, n, OutputGrid().size(), path_);
}

std::vector<std::vector<double>> SampleTruthReader::SedFine(const long* rows, size_t n) {
  const std::lock_guard<std::mutex> lock(mu_);
  return ReadChosenRows(*r_, "SED_FINE", rows, n, TruthGrid().size(), path_);
}

SampleTruth ReadSampleTruth(const std::string& path) {
  SampleTruthReader reader(path);
  SampleTruth t;
  t.obsid = reader.obsid();
  t.spec_hash = reader.spec_hash();
  t.window_flux = reader.window_flux();
  const auto rows = AllRows(t.obsid.size());
  t.sed = reader.Sed(rows.data(), rows.size());
  t.sed_fine = reader.SedFine(rows.data(), rows.size());
  return t;
}

NoiselessLamostReader::NoiselessLamostReader(const std::string& path)
    : path_(path), r_(std::make_unique<FitsReader>(path)) {
  r_->MoveTo("WAVELENGTH");
  wave_ = r_->ReadColumn("WAVELENGTH");
  r_->MoveTo("LAMOST");
  for (double v : r_->ReadColumn("OBSID")) obsid_.push_back(static_cast<int64_t>(v));
}

std::vector<Spectrum> NoiselessLamostReader::Read(const long* rows, size_t n) {
  std::vector<std::vector<double>> flux, err;
  {
    const std::lock_guard<std::mutex> lock(mu_);
    flux = ReadChosenRows(*r_, "FLUX", rows, n, wave_.size(), path_);
    err = ReadChosenRows(*r_, "ERR", rows, n, wave_.size(), path_);
  }
  std::vector<Spectrum> out;
  out.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    Spectrum sp = MakeSpectrum(wave_, std::move(flux[i]));
    sp.err = std::move(err[i]);
    for (size_t k = 0; k < sp.size(); ++k)
      if (!(sp.err[k] > 0)) sp.mask[k] = kMaskNoCoverage;
    out.push_back(std::move(sp));
  }
  return out;
}

NoiselessLamostSet ReadNoiselessLamost(const std::string& path) {
  NoiselessLamostReader reader(path);
  NoiselessLamostSet s;
  s.obsid = reader.obsid();
  const auto rows = AllRows(s.obsid.size());
  // Block by block of rows into the spectra: never the whole columns besides them.
  for (size_t first = 0; first < rows.size(); first += kBlock) {
    auto block = reader.Read(rows.data() + first, std::min(kBlock, rows.size() - first));
    for (auto& sp : block) s.spectra.push_back(std::move(sp));
  }
  return s;
}

}  // namespace csst
