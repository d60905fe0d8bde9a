#include "simulation/dr7_sample.h"

#include <optional>

#include <tbb/parallel_for.h>

#include <cmath>
#include <cstdlib>

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
std::vector<double> Flatten(const std::vector<std::vector<double>>& rows) {
  std::vector<double> out;
  for (const auto& r : rows) out.insert(out.end(), r.begin(), r.end());
  return out;
}
std::vector<std::vector<double>> Rows(const std::vector<double>& flat, size_t n, size_t width,
                                      const std::string& path, const std::string& col) {
  if (flat.size() != n * width) throw IoError(path + ": column " + col + " has the wrong length");
  std::vector<std::vector<double>> out(n);
  for (size_t i = 0; i < n; ++i) out[i].assign(flat.begin() + i * width, flat.begin() + (i + 1) * width);
  return out;
}
}  // namespace

namespace {
constexpr int kSampleTag = 4;  // MPI tag of a rank's share of the sample's truth (core/mpi_world.h)
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
  const auto stars = DrawPopulation(o.population, seed);
  // Under MPI rank k synthesizes the k-th contiguous share of the stars and writes their LAMOST files into the
  // same (shared) folder; the others' truth arrays come to rank 0, which writes the tables in star order.
  const size_t n = stars.size(), ranks = static_cast<size_t>(MpiWorld::Size()), me = static_cast<size_t>(MpiWorld::Rank());
  auto first = [&](size_t k) { return n * k / ranks; };
  const size_t lo = first(me), hi = first(me + 1);
  if (me == 0) WriteCatalogueFits(paths.catalogue.string(), stars, prov);
  fs::create_directories(paths.lamost_dir);
  const stellar::SynthOptions so;
  const stellar::Synthesizer synth(so);
  std::optional<LabelGrid> grid;
  if (o.synthesis == SampleSynthesis::kGrid) {
    grid = LabelGrid::Cached(LabelGridFor(o.population), o.grid_cache.empty() ? DefaultGridCache() : fs::path(o.grid_cache));
  }
  std::vector<std::vector<double>> sed(n), sed_fine(n), lam_flux(n), lam_err(n);
  std::vector<double> window(n);
  std::vector<std::string> spec_hash(n);
  Progress progress("sample", static_cast<long>(hi - lo));
  tbb::parallel_for(lo, hi, [&](size_t i) {
    const auto& st = stars[i];
    Spectrum sed200, clean;
    if (grid) {
      auto g = grid->Interpolate(st.teff, st.logg, st.feh);
      sed200 = std::move(g.sed200);
      sed_fine[i] = std::move(g.sed_fine.flux);
      clean = NoiselessLamostFromResolved(g.ref, grid->ResolvedR(), st, o.lamost);
    } else {
      const stellar::StellarParams p{st.teff, st.logg, st.feh, st.alpha};
      const auto native = synth.Synthesize(p);
      sed200 = DegradeToGrid(native, 200.0, OutputGrid());
      sed_fine[i] = DegradeToGrid(native, kTruthResolution, TruthGrid()).flux;
      clean = NoiselessLamost(native, so.resolving_power, st, o.lamost);
    }
    // One normalisation for both truth SEDs: the method's definition, the mean flux in
    // 5526-5586 A of the R = 200 SED on the output grid.
    const double norm = MeanFluxInWindow(sed200);
    sed[i] = sed200.flux;
    for (double& v : sed[i]) v /= norm;
    for (double& v : sed_fine[i]) v /= norm;
    window[i] = WindowFluxFromG(st.gmag);
    lam_flux[i] = clean.flux;
    lam_err[i] = clean.err;
    Rng rng(seed, "lamost-noise", static_cast<uint64_t>(i));
    const auto observed = ObserveLamost(clean, st, o.lamost, rng);
    const auto file = paths.lamost_dir / ("spec-" + std::to_string(st.obsid) + ".fits");
    WriteLamost(file.string(), observed, LamostLayout::kDr7, prov);
    // The identity that joins an ingested star to this truth: the data as a reader gets them back.
    spec_hash[i] = SpectrumDataHash(ReadLamost(file.string()).spectrum);
    progress.Tick();
  });
  progress.Finish();
  if (ranks > 1 && me != 0) {  // a worker rank: its share of the truth goes to rank 0
    ByteWriter w;
    for (size_t i = lo; i < hi; ++i) {
      w.PutVector(sed[i]);
      w.PutVector(sed_fine[i]);
      w.PutVector(lam_flux[i]);
      w.PutVector(lam_err[i]);
      w.Put(window[i]);
      w.PutString(spec_hash[i]);
    }
    MpiWorld::Send(0, kSampleTag, w.bytes());
    return;
  }
  for (size_t k = 1; k < ranks; ++k) {
    const auto bytes = MpiWorld::Recv(static_cast<int>(k), kSampleTag);
    ByteReader r(bytes);
    for (size_t i = first(k); i < first(k + 1); ++i) {
      sed[i] = r.GetVector<double>();
      sed_fine[i] = r.GetVector<double>();
      lam_flux[i] = r.GetVector<double>();
      lam_err[i] = r.GetVector<double>();
      window[i] = r.Get<double>();
      spec_hash[i] = r.GetString();
    }
    if (!r.done()) throw Error("sample: rank " + std::to_string(k) + " sent more than its share (internal error)");
  }
  SampleTruth truth;
  for (const auto& s : stars) truth.obsid.push_back(s.obsid);
  truth.spec_hash = std::move(spec_hash);
  truth.window_flux = std::move(window);
  truth.sed = std::move(sed);
  truth.sed_fine = std::move(sed_fine);
  WriteSampleTruth(paths.truth.string(), truth, prov,
                   "true SEDs of the simulated sample (validation only; never read by fitting stages)");
  std::vector<double> wave;
  const size_t np = lam_flux.empty() ? 0 : lam_flux[0].size();
  for (size_t k = 0; k < np; ++k) wave.push_back(std::pow(10.0, o.lamost.coeff0 + o.lamost.coeff1 * k));
  WriteNoiselessLamost(paths.lamost_truth.string(), truth.obsid, wave, lam_flux, lam_err, prov,
                       "noiseless LAMOST-grid spectra of the simulated sample and their 1-sigma");
  Logger("sample")->info("{} stars synthesized; LAMOST files in {}", n, paths.lamost_dir.string());
}

void WriteSampleTruth(const std::string& path, const SampleTruth& t, const Provenance& prov, const std::string& descrip) {
  FitsWriter w(path);
  w.WriteEmptyPrimary();
  Provenance p = prov;
  p.descrip = descrip;
  w.Standard(p, "");
  w.WriteTable("TRUTH", {{"OBSID", "", t.obsid},
                         {"SPECHASH", "", t.spec_hash, 16},
                         {"WINDOW_FLUX", "erg/s/cm2/Angstrom", t.window_flux},
                         {"SED", "", Flatten(t.sed), OutputGrid().size()},
                         {"SED_FINE", "", Flatten(t.sed_fine), TruthGrid().size()}});
  w.Standard(p, "");
  w.Comment("SED: R=200 on the 574-pixel output grid (2500-10500 A, log), scaled to 1 at 5526-5586 A");
  w.Comment("SED_FINE: R=1000 on the 2970-pixel truth grid (2400-10600 A, log), same scaling");
  w.Comment("SPECHASH: SpectrumDataHash (core/spectrum_io.h) of the star's LAMOST spectrum");
  w.Comment("Absolute SED at Earth = WINDOW_FLUX * SED [erg/s/cm2/A]; vacuum wavelengths");
  w.WriteTable("WAVE_OUT", {{"WAVELENGTH", "Angstrom", OutputGrid().Centres()}});
  w.Standard(p, "");
  w.WriteTable("WAVE_FINE", {{"WAVELENGTH", "Angstrom", TruthGrid().Centres()}});
  w.Standard(p, "");
  w.Close();
}

void WriteNoiselessLamost(const std::string& path, const std::vector<int64_t>& obsid, const std::vector<double>& wave,
                          const std::vector<std::vector<double>>& flux, const std::vector<std::vector<double>>& err,
                          const Provenance& prov, const std::string& descrip) {
  FitsWriter w(path);
  w.WriteEmptyPrimary();
  Provenance p = prov;
  p.descrip = descrip;
  w.Standard(p, "");
  const long np = static_cast<long>(wave.size());
  w.WriteTable("LAMOST", {{"OBSID", "", obsid},
                          {"FLUX", "1e-17 erg/s/cm2/Angstrom", Flatten(flux), np},
                          {"ERR", "1e-17 erg/s/cm2/Angstrom", Flatten(err), np}});
  w.Standard(p, "");
  w.WriteTable("WAVELENGTH", {{"WAVELENGTH", "Angstrom", wave}});
  w.Standard(p, "");
  w.Close();
}

SampleTruth ReadSampleTruth(const std::string& path) {
  FitsReader r(path);
  r.MoveTo("TRUTH");
  SampleTruth t;
  const auto ids = r.ReadColumn("OBSID");
  const size_t n = ids.size();
  for (double v : ids) t.obsid.push_back(static_cast<int64_t>(v));
  if (r.HasColumn("SPECHASH")) t.spec_hash = r.ReadStringColumn("SPECHASH");
  t.window_flux = r.ReadColumn("WINDOW_FLUX");
  t.sed = Rows(r.ReadColumn("SED"), n, OutputGrid().size(), path, "SED");
  t.sed_fine = Rows(r.ReadColumn("SED_FINE"), n, TruthGrid().size(), path, "SED_FINE");
  return t;
}

NoiselessLamostSet ReadNoiselessLamost(const std::string& path) {
  FitsReader r(path);
  r.MoveTo("WAVELENGTH");
  const auto wave = r.ReadColumn("WAVELENGTH");
  r.MoveTo("LAMOST");
  NoiselessLamostSet s;
  const auto ids = r.ReadColumn("OBSID");
  const size_t n = ids.size();
  const auto flux = Rows(r.ReadColumn("FLUX"), n, wave.size(), path, "FLUX");
  const auto err = Rows(r.ReadColumn("ERR"), n, wave.size(), path, "ERR");
  for (size_t i = 0; i < n; ++i) {
    s.obsid.push_back(static_cast<int64_t>(ids[i]));
    Spectrum sp = MakeSpectrum(wave, flux[i]);
    sp.err = err[i];
    for (size_t k = 0; k < sp.size(); ++k)
      if (!(sp.err[k] > 0)) sp.mask[k] = kMaskNoCoverage;
    s.spectra.push_back(std::move(sp));
  }
  return s;
}

}  // namespace csst
