#include "core/prepare.h"

#include <sys/resource.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <limits>

#include "core/errors.h"
#include "core/rng.h"
#include "io/catalogue.h"
#include "io/ingest.h"
#include "io/spectrum_io.h"
#include "tests/test_util.h"

using namespace csst;
namespace fs = std::filesystem;

namespace {
double MedianOf(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}
}  // namespace

TEST_CASE(
    "prepare: real LAMOST DR7 and MILES files normalise to ~1 with errors from the inverse "
    "variance",
    "[prepare][shared]") {
  const auto lamost = test::SharedData("lamost/spec-58397-EG014118N254444M01_sp03-031.fits");
  CSST_REQUIRE_SHARED(lamost);
  PrepareOptions o;
  {
    const auto any = ReadAnySpectrum(lamost.string());
    CHECK(any.format == "lamost-dr7");
    const auto in = PrepareNetworkInput(any.spectrum, any.z, o, "lamost");
    std::vector<double> f(in.flux.begin(), in.flux.end());
    CHECK(std::abs(MedianOf(f) - 1) < 0.02);
    // Errors: resampling two ~equal LAMOST pixels into one input pixel divides sigma by ~sqrt(2)
    // (independent errors); normalisation divides by the continuum. Check the relation on
    // pixels away from lines: err_norm * continuum ~ sigma_lamost / sqrt(n_overlap).
    const auto rest = [&] {
      Spectrum s = any.spectrum;
      ShiftToRestFrame(s, any.z);
      return s;
    }();
    const auto resampled = ResampleFluxConserving(rest, InputGrid(), 0.6);
    const auto cont = MovingAverageContinuum(resampled.flux, resampled.mask, 51);
    std::vector<double> ratio;
    for (int k = 100; k < InputGrid().size() - 100; k += 50) {
      if (in.mask[k]) continue;
      // Expected sigma from the file's inverse variance, overlap-weighted (independent errors).
      const auto e = EdgesFromCentres(rest.wave);
      double vs = 0, cov = 0;
      for (size_t j = 0; j < rest.size(); ++j) {
        const double ov =
            std::min(InputGrid().Edge(k + 1), e[j + 1]) - std::max(InputGrid().Edge(k), e[j]);
        if (ov <= 0 || rest.mask[j]) continue;
        vs += ov * ov * rest.err[j] * rest.err[j];
        cov += ov;
      }
      ratio.push_back(in.err[k] * cont[k] / (std::sqrt(vs) / cov));
    }
    CHECK(MedianOf(ratio) == Approx(1.0).epsilon(1e-3));
  }
  const auto miles = test::SharedData("miles/MILES_res2.50_star_m0066V.fits");
  const auto m = ReadAnySpectrum(miles.string());
  CHECK(m.format == "miles");
  const auto in = PrepareNetworkInput(m.spectrum, 0.0, o, "miles");
  std::vector<double> f(in.flux.begin(), in.flux.end());
  CHECK(std::abs(MedianOf(f) - 1) < 0.02);
}

TEST_CASE("CALSPEC, NGSL and BOSZ readers on files written to their layouts", "[io]") {
  const auto dir = test::TempDir("libs");
  std::vector<double> w, f, e;
  for (int i = 0; i < 400; ++i) {
    w.push_back(3000 + 10.0 * i);
    f.push_back(1e-13 * (1 + 0.001 * i));
    e.push_back(1e-15);
  }
  {
    FitsWriter x((dir / "calspec.fits").string());
    x.WriteEmptyPrimary();
    x.WriteTable("SCI", {{"WAVELENGTH", "ANGSTROMS", w},
                         {"FLUX", "FLAM", f},
                         {"STATERROR", "FLAM", e},
                         {"SYSERROR", "FLAM", e}});
  }
  const auto c = ReadAnySpectrum((dir / "calspec.fits").string());
  CHECK(c.format == "calspec");
  CHECK(c.spectrum.err[5] == Approx(std::sqrt(2.0) * 1e-15));
  {
    FitsWriter x((dir / "ngsl.fits").string());
    x.WriteEmptyPrimary();
    x.WriteTable("SCI",
                 {{"WAVELENGTH", "ANGSTROMS", w}, {"FLUX", "FLAM", f}, {"STAT_ERROR", "FLAM", e}});
  }
  const auto n = ReadAnySpectrum((dir / "ngsl.fits").string());
  CHECK(n.format == "ngsl");
  CHECK(n.spectrum.flux[10] == Approx(f[10]));
  {
    FitsWriter x((dir / "bosz.fits").string());
    x.WriteEmptyPrimary();
    x.WriteTable(
        "SPEC",
        {{"Wavelength", "Angstrom", w}, {"SpecificIntensity", "", f}, {"Continuum", "", f}});
  }
  CHECK(ReadAnySpectrum((dir / "bosz.fits").string()).format == "bosz");
  {
    std::ofstream t(dir / "bosz.txt");
    t << "# wavelength flux continuum\n";
    for (size_t i = 0; i < w.size(); ++i) t << w[i] << " " << f[i] << " " << f[i] << "\n";
  }
  const auto b = ReadAnySpectrum((dir / "bosz.txt").string());
  CHECK(b.format == "bosz");
  CHECK(b.spectrum.size() == 400);
  {
    std::ofstream t(dir / "bad.txt");
    t << "3000 1\n2990 1\n";
  }
  CHECK_THROWS_WITH(
      ReadAnySpectrum((dir / "bad.txt").string()),
      (dir / "bad.txt").string() + ": wavelengths are not strictly increasing at pixel 1");
}

TEST_CASE(
    "ingest streams: memory does not grow with the number of files and every reject has a reason",
    "[ingest]") {
  const auto dir = test::TempDir("ingest-stream");
  const fs::path lam = dir / "lamost";
  fs::create_directories(lam);
  // 3000 small LAMOST files (the 4000-7000 A part only) and a catalogue; 10% fail selection.
  const int nfiles = 3000;
  std::vector<StarRecord> cat;
  std::vector<double> wave;
  for (int i = 0; i < 2500; ++i) wave.push_back(std::pow(10.0, std::log10(3950.0) + 1e-4 * i));
  for (int i = 0; i < nfiles; ++i) {
    StarRecord s;
    s.obsid = 500000 + i;
    s.teff = 6000;
    s.gmag = 15;
    s.snr_g = i % 10 == 0 ? 10 : 50;  // every tenth below the SNR cut
    s.snr_r = 60;
    cat.push_back(s);
    LamostSpectrum l;
    l.header.obsid = s.obsid;
    Rng rng(2, "ingest-stream", i);
    for (double x : wave) {
      l.spectrum.wave.push_back(x);
      l.spectrum.flux.push_back(100 + rng.Normal());
      l.spectrum.err.push_back(1);
      l.spectrum.mask.push_back(0);
    }
    WriteLamost((lam / ("spec-" + std::to_string(s.obsid) + ".fits")).string(), l,
                LamostLayout::kDr7, {});
  }
  // One catalogue row without a file.
  StarRecord ghost;
  ghost.obsid = 1;
  ghost.teff = 6000, ghost.gmag = 15, ghost.snr_g = 50, ghost.snr_r = 50;
  cat.push_back(ghost);
  WriteCatalogueFits((dir / "cat.fits").string(), cat, {});
  IngestOptions o;
  o.chunk = 100;
  // Peak RSS after the first 1000 files vs after all 3000 (the same process, streaming chunks).
  auto rss_mb = [] {
    rusage u{};
    getrusage(RUSAGE_SELF, &u);
    return u.ru_maxrss / 1024.0;
  };
  std::vector<StarRecord> first(cat.begin(), cat.begin() + 1000);
  WriteCatalogueFits((dir / "cat1000.fits").string(), first, {});
  Ingest(o, (dir / "cat1000.fits").string(), lam.string(), (dir / "s1000.fits").string(), {});
  const double after1000 = rss_mb();
  const auto summary =
      Ingest(o, (dir / "cat.fits").string(), lam.string(), (dir / "stars.fits").string(), {});
  const double after3000 = rss_mb();
  INFO("peak RSS " << after1000 << " MB after 1000 files, " << after3000 << " MB after 3000");
  CHECK(after3000 - after1000 < 100.0);
  CHECK(summary.kept == 2700);
  CHECK(summary.rejected.at("snr_g") == 300);
  CHECK(summary.rejected.at("missing") == 1);
  const auto back = ReadPreparedStars((dir / "stars.fits").string());
  CHECK(back.size() == 2700);
  FitsReader r((dir / "stars.fits").string());
  r.MoveTo("REJECTS");
  CHECK(r.NumRows() == 301);
  const auto reasons = r.ReadStringColumn("REASON");
  CHECK(std::count_if(reasons.begin(), reasons.end(), [](const std::string& s) {
          return s.rfind("snr_g 10.0 <= 20.0", 0) == 0;
        }) == 300);
}

// Issue #30 item 8: what `predict FILE...` flags as outside the training domain (the pipeline's
// selection).
TEST_CASE("training domain: SNR below 20 or a known Teff outside 5000-9750 K is named",
          "[prepare]") {
  const IngestOptions o;
  CHECK(TrainingDomainReason(35, 6000, o).empty());
  CHECK(TrainingDomainReason(35, std::numeric_limits<double>::quiet_NaN(), o)
            .empty());  // Teff unknown
  CHECK(TrainingDomainReason(12.34, 6000, o) == "SNR 12.3 < 20");
  CHECK(TrainingDomainReason(50, 4500, o) == "Teff 4500 K outside 5000-9750 K");
  CHECK(TrainingDomainReason(5, 12000, o) == "SNR 5.0 < 20; Teff 12000 K outside 5000-9750 K");
  PreparedInput in;
  in.flux = {1, 1, 1, 1};
  in.err = {0.1f, 0.05f, 0.02f, 1.0f};
  in.mask = {0, 0, 0, 1};  // the masked pixel does not count
  CHECK(InputSnr(in) == Approx(20));
}
