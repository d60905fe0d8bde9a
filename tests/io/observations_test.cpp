// The extracted-spectra format (io/observations.h): what the simulator writes reads back as it
// was, spectra on other grids are rebinned conserving counts, bad files are named precisely.
#include "io/observations.h"

#include <cmath>
#include <functional>
#include <map>

#include "core/errors.h"
#include "core/grid.h"
#include "core/mpi_world.h"
#include "tests/extracted_util.h"
#include "tests/test_util.h"

using namespace csst;

namespace {

// A band observation on the output grid with distinct, known values in every field.
BandObservation Made(int band, int detector, double scale) {
  const auto& g = OutputGrid();
  BandObservation bo;
  bo.band = band;
  bo.detector = detector;
  bo.x0 = 100.5 * (band + 1);
  bo.y0 = 2000.25 + detector;
  bo.exptime = 600;
  for (int k = 0; k < g.size(); ++k) {
    bo.x.push_back(10.0 + 3.5 * k);
    bo.y.push_back(bo.y0 + 0.01 * k);
    bo.counts.push_back(scale * (1000.0 + k));
    bo.sigma.push_back(std::sqrt(1000.0 + k));
    bo.expected.push_back(scale * (999.0 + k));
    bo.flag.push_back(
        static_cast<uint8_t>(k < 20 ? kObsOffDetector : (k % 97 == 0 ? kObsCosmicRay : 0)));
  }
  return bo;
}

}  // namespace

TEST_CASE("extracted spectra: what the simulator writes reads back as it was", "[observations]") {
  const test::TempDir dir("obs-roundtrip");
  std::vector<StarObservation> obs(2);
  obs[0].obsid = 101;
  obs[0].ra = 150.1;
  obs[0].dec = 2.2;
  obs[0].window_flux = 3e-14;
  obs[0].ebv = 0.05;
  obs[0].flux_error = 1.1;
  obs[0].band[0] = Made(0, 2, 1.0);
  obs[0].band[2] = Made(2, 11, 2.0);  // GV not observed
  obs[1].obsid = 102;
  obs[1].ra = 150.2;
  obs[1].dec = 2.3;
  for (int b = 0; b < 3; ++b) obs[1].band[b] = Made(b, b * 4 + 3, 0.5 + b);
  const auto path = (dir / "obs.fits").string();
  WriteObservations(path, obs, ObservationsLayout{4, "abcdef0123456789", /*truth=*/true},
                    Provenance{});

  const auto rows = ReadExtractedSpectra(path, 4);
  REQUIRE(rows.size() == 5);  // one row per star and observed detector
  CHECK(rows[0].detname == "GU3");
  CHECK(rows[1].detname == "GI4");
  CHECK(rows[4].detname == "GI4");

  const auto f = ReadObservations(path, 4);
  CHECK(f.star_set == "abcdef0123456789");
  REQUIRE(f.stars.size() == 2);
  CHECK(f.stars[0].obsid == 101);
  CHECK(f.stars[0].ra == 150.1);
  CHECK(f.stars[0].window_flux == 3e-14);
  CHECK(f.stars[0].flux_error == 1.1);
  CHECK_FALSE(f.stars[0].band[1].observed());
  for (int s = 0; s < 2; ++s) {
    for (int b = 0; b < 3; ++b) {
      const auto& want = obs[s].band[b];
      const auto& got = f.stars[s].band[b];
      REQUIRE(got.observed() == want.observed());
      if (!want.observed()) continue;
      INFO("star " << s << " band " << b);
      CHECK(got.detector == want.detector);
      CHECK(got.x0 == want.x0);
      CHECK(got.y0 == want.y0);
      CHECK(got.exptime == want.exptime);
      CHECK(got.x == want.x);
      CHECK(got.y == want.y);
      CHECK(got.counts == want.counts);
      CHECK(got.sigma == want.sigma);
      CHECK(got.expected == want.expected);
      CHECK(got.flag == want.flag);  // MASK and TRUTHFLAG together
    }
  }
}

TEST_CASE("extracted spectra on another grid are rebinned conserving counts", "[observations]") {
  const test::TempDir dir("obs-rebin");
  // 1 A pixels from 3000 to 9000 A of a density 100 + 0.01 lambda counts per A: each pixel holds
  // the exact integral; X is linear in wavelength.
  ExtractedSpectrum e;
  e.obsid = 7;
  e.detname = "GV2";
  e.exptime = 600;
  for (int i = 0; i < 6000; ++i) {
    const double lam = 3000.5 + i;
    e.wave.push_back(lam);
    e.counts.push_back(100.0 + 0.01 * lam);
    e.error.push_back(2.0);
    e.x.push_back(0.2 * (lam - 3000.0));
    e.y.push_back(4000.0);
    e.mask.push_back(0);
  }
  const int bad = 3000;  // 6000.5 A
  e.mask[bad] = 16;
  e.counts[bad] = std::nan("");
  const auto path = (dir / "fine.fits").string();
  test::WriteExtracted(path, {e});
  const auto rows = ReadExtractedSpectra(path, 4);
  REQUIRE(rows.size() == 1);
  const auto bo = ToOutputGrid(rows[0], 4);
  CHECK(bo.detector == 1 * 4 + 1);
  const auto& g = OutputGrid();
  int used = 0, masked = 0;
  for (int k = 0; k < g.size(); ++k) {
    const double lo = g.Edge(k), hi = g.Edge(k + 1);
    INFO("pixel " << k << " " << lo << "-" << hi);
    if (lo < 3000.0 || hi > 9000.0) {
      CHECK((bo.flag[k] & kObsOffDetector) != 0);
      continue;
    }
    if (hi > 6000.0 && lo < 6001.0) {  // overlaps the masked input pixel
      CHECK(bo.flag[k] == kObsMasked);
      ++masked;
      continue;
    }
    REQUIRE(bo.flag[k] == 0);
    ++used;
    // Integral of the density over the output pixel (piecewise-constant input: 3e-5 relative).
    const double want = 100.0 * (hi - lo) + 0.005 * (hi * hi - lo * lo);
    CHECK(bo.counts[k] == Approx(want).epsilon(1e-4));
    // Independent errors of 2 e- per 1 A pixel: 2 sqrt(width) for whole pixels.
    CHECK(bo.sigma[k] == Approx(2.0 * std::sqrt(hi - lo)).epsilon(0.1));
    CHECK(bo.x[k] == Approx(0.2 * (g.Centre(k) - 3000.0)).epsilon(1e-9));
  }
  CHECK(masked >= 1);
  CHECK(masked <= 2);
  CHECK(used > 250);
}

TEST_CASE("bad extracted files are refused naming file, column and row",
          "[observations][bad-input]") {
  const test::TempDir dir("obs-bad");
  const auto& g = OutputGrid();
  ExtractedSpectrum good;
  good.obsid = 1;
  good.ra = 10;
  good.dec = 20;
  good.detname = "GI1";
  good.exptime = 600;
  good.wave = g.Centres();
  good.x.assign(g.size(), 1.0);
  good.y.assign(g.size(), 2.0);
  good.counts.assign(g.size(), 5.0);
  good.error.assign(g.size(), 1.0);
  good.mask.assign(g.size(), 0);
  const auto path = (dir / "x.fits").string();
  auto fails = [&](const std::vector<ExtractedSpectrum>& rows, const test::ExtractedFileOptions& o,
                   const std::string& what) {
    test::WriteExtracted(path, rows, o);
    CHECK_THROWS_WITH(ReadExtractedSpectra(path, 4),
                      Catch::Contains(path) && Catch::Contains(what));
  };
  test::WriteExtracted(path, {good, good});
  CHECK(ReadExtractedSpectra(path, 4).size() == 2);

  test::ExtractedFileOptions no_error;
  no_error.drop = {"ERROR"};
  fails({good}, no_error, "EXTRACTED has no column ERROR");
  test::ExtractedFileOptions nm;
  nm.wavelength_unit = "nm";
  fails({good}, nm, "column WAVELENGTH has unit 'nm', expected Angstrom");
  test::ExtractedFileOptions anonymous;
  anonymous.with_obsid = anonymous.with_position = false;
  fails({good}, anonymous, "neither an OBSID column nor RA and DEC");

  auto bad = good;
  bad.detname = "GX1";
  fails({good, bad}, {}, "row 2, column DETNAME: 'GX1' is not a detector");
  bad = good;
  bad.detname = "GU5";  // 4 detectors per band
  fails({good, bad}, {}, "row 2, column DETNAME: 'GU5'");
  bad = good;
  bad.detname = "06";  // a CSST imaging chip, not a slitless one
  fails({good, bad}, {}, "row 2, column DETNAME: '06' is not a detector");
  {  // the CSST chip id reads as the same detector as its name (issue #30 item 1)
    auto chip = good, chip2 = good, named = good;
    chip.detname = "01";       // GI1
    chip2.detname = "CHIP26";  // GV3
    named.detname = "GV3";
    test::WriteExtracted(path, {chip, chip2, named});
    const auto rows = ReadExtractedSpectra(path, 4);
    REQUIRE(rows.size() == 3);
    CHECK((rows[0].band == 2 && rows[0].k == 0));
    CHECK((rows[1].band == 1 && rows[1].k == 2));
    CHECK((rows[2].band == rows[1].band && rows[2].k == rows[1].k));
  }
  bad = good;
  bad.error[300] = 0;
  fails({good, good, bad}, {}, "row 3, column ERROR pixel 301");
  bad.mask[300] = 16;  // masked: its error is not used
  test::WriteExtracted(path, {good, bad});
  CHECK_NOTHROW(ReadExtractedSpectra(path, 4));
  bad = good;
  bad.exptime = 0;
  fails({bad}, {}, "row 1, column EXPTIME");
  bad = good;
  std::swap(bad.wave[10], bad.wave[11]);
  fails({bad}, {}, "row 1, column WAVELENGTH pixel 12");
  bad = good;
  bad.obsid = -1;
  bad.ra = std::nan("");
  fails({bad}, {}, "row 1, column OBSID: neither an obsid >= 0 nor a finite RA and DEC");
  bad = good;
  bad.dec = 95;
  fails({bad}, {}, "row 1, column RA/DEC");
}

// Issue #29: a row that cannot be a star's light on this detector is rejected with its reason. Each
// row of the table breaks one rule of a physical spectrum; the unbroken spectrum passes.
TEST_CASE("extracted spectra: rows that cannot be physical are named, with the pixel and the rule",
          "[observations]") {
  ExtractedSpectrum good;
  for (int k = 0; k < 10; ++k) {
    good.wave.push_back(5000 + 10.0 * k);
    good.x.push_back(4000 + 2.0 * k);
    good.y.push_back(3000);
    good.counts.push_back(500);
    good.error.push_back(25);
    good.mask.push_back(0);
  }
  const double nx = 9216, ny = 9232, lo = 3930, hi = 6790;
  CHECK(UnphysicalReason(good, nx, ny, lo, hi).empty());
  const struct {
    std::function<void(ExtractedSpectrum&)> edit;
    std::string reason;
  } rows[] = {
      {[](ExtractedSpectrum& e) { e.x[3] = 50000; },
       "pixel 4: (X, Y) = (50000.0, 3000.0) is off the 9216 x 9232 detector where MASK = 0 (flag "
       "it 1)"},
      {[](ExtractedSpectrum& e) { e.y[0] = -3; },
       "pixel 1: (X, Y) = (4000.0, -3.0) is off the 9216 x 9232 detector where MASK = 0 (flag it "
       "1)"},
      {[](ExtractedSpectrum& e) { e.wave[9] = 7000; },
       "pixel 10: WAVELENGTH 7000.0 A is outside the band's transmission (3930-6790 A) where MASK "
       "= 0 (flag it 2)"},
      {[](ExtractedSpectrum& e) { e.counts[5] = -200; },
       "pixel 6: COUNTS -200 is below -5 ERROR (25): not the light of a star"},
      {[](ExtractedSpectrum& e) {
         for (auto& c : e.counts) c = -20;
       },
       "total COUNTS -200 over its 10 MASK = 0 pixels is not positive: no star's light"},
  };
  for (const auto& r : rows) {
    ExtractedSpectrum e = good;
    r.edit(e);
    CHECK(UnphysicalReason(e, nx, ny, lo, hi) == r.reason);
  }
  // the same faults behind MASK != 0 are the extraction's own flags, not a reason to reject
  ExtractedSpectrum flagged = good;
  flagged.x[3] = 50000;
  flagged.mask[3] = kObsOffDetector;
  CHECK(UnphysicalReason(flagged, nx, ny, lo, hi).empty());
}

// Issue #30 item 7: an extraction on a linear grid whose range ends exactly on output-pixel edges
// loses no output pixel to rounding (the edge test has the resampler's tolerance).
TEST_CASE("extracted spectra on a linear grid ending on output-pixel edges lose no point",
          "[observations]") {
  const auto& g = OutputGrid();
  for (const auto& [first, last] :
       std::vector<std::pair<int, int>>{{250, 330}, {100, 180}, {400, 520}}) {
    ExtractedSpectrum e;
    e.band = 1, e.k = 0, e.exptime = 600, e.x0 = 100, e.y0 = 100;
    const double a = g.Edge(first), b = g.Edge(last);
    const int n = 7 * (last - first);  // 7 linear pixels per output pixel on average
    const double step = (b - a) / n;
    for (int k = 0; k < n; ++k) {
      e.wave.push_back(a + (k + 0.5) * step);
      e.x.push_back(1000 + k);
      e.y.push_back(2000);
      e.counts.push_back(100 * step);  // a flat density of 100 counts per A
      e.error.push_back(10);
      e.mask.push_back(0);
    }
    const auto bo = ToOutputGrid(e, 4);
    INFO("output pixels " << first << ".." << last - 1);
    long kept = 0;
    for (int k = first; k < last; ++k) {
      kept += bo.flag[k] == 0;
      if (bo.flag[k] == 0)
        CHECK(bo.counts[k] == Approx(100 * (g.Edge(k + 1) - g.Edge(k))).epsilon(1e-6));
    }
    CHECK(kept == last - first);
    CHECK(bo.flag[first - 1] != 0);
    CHECK(bo.flag[last] != 0);
  }
}

TEST_CASE("extracted spectra written block by block read back as one write", "[observations]") {
  const test::TempDir dir("obs-blocks");
  std::vector<StarObservation> obs(3);
  for (int s = 0; s < 3; ++s) {
    obs[s].obsid = 200 + s;
    obs[s].window_flux = 1e-14 * (s + 1);
    for (int b = 0; b < 3; ++b)
      if (b != s)
        obs[s].band[b] = Made(b, b * 4 + s, 1.0 + s + 0.1 * b);  // star s not observed in band s
  }
  const auto one = (dir / "one.fits").string(), blocks = (dir / "blocks.fits").string();
  WriteObservations(one, obs, ObservationsLayout{4, "0123456789abcdef", /*truth=*/true},
                    Provenance{});
  {
    ObservationsWriter w(blocks, 4, "0123456789abcdef", /*truth=*/true, Provenance{});
    w.Append(obs.data(), 1);
    w.Append(obs.data() + 1, 0);
    w.Append(obs.data() + 1, 2);
    CHECK(w.rows() == 6);
    w.Close();
  }
  CHECK_FALSE(std::filesystem::exists(blocks + ".truth.part"));  // the side file joined the product
  const auto a = ReadObservations(one, 4), b = ReadObservations(blocks, 4);
  CHECK(b.star_set == a.star_set);
  REQUIRE(b.stars.size() == 3);
  for (int s = 0; s < 3; ++s) {
    CHECK(b.stars[s].obsid == a.stars[s].obsid);
    CHECK(b.stars[s].window_flux == a.stars[s].window_flux);
    for (int k = 0; k < 3; ++k) {
      CHECK(b.stars[s].band[k].observed() == (k != s));
      CHECK(b.stars[s].band[k].counts == a.stars[s].band[k].counts);
      CHECK(b.stars[s].band[k].expected == a.stars[s].band[k].expected);
      CHECK(b.stars[s].band[k].flag == a.stars[s].band[k].flag);
    }
  }
}

TEST_CASE("extracted spectra of more rows than one read block come back row for row",
          "[observations]") {
  // 2100 rows: the reader takes 2048 rows at a time, so the last 52 come from a second block.
  const test::TempDir dir("obs-many");
  std::vector<StarObservation> obs(2100);
  for (size_t s = 0; s < obs.size(); ++s) {
    obs[s].obsid = static_cast<int64_t>(1000 + s);
    obs[s].window_flux = 1e-15 * static_cast<double>(s + 1);
    obs[s].band[1] = Made(1, 4 + static_cast<int>(s % 4), 1.0 + 0.001 * static_cast<double>(s));
  }
  const auto path = (dir / "many.fits").string();
  WriteObservations(path, obs, ObservationsLayout{4, "", /*truth=*/true}, Provenance{});
  const auto f = ReadObservations(path, 4);
  REQUIRE(f.stars.size() == obs.size());
  for (size_t s : {size_t{0}, size_t{2047}, size_t{2048}, size_t{2099}}) {
    INFO("star " << s);
    CHECK(f.stars[s].obsid == obs[s].obsid);
    CHECK(f.stars[s].window_flux == obs[s].window_flux);
    CHECK(f.stars[s].band[1].detector == obs[s].band[1].detector);
    CHECK(f.stars[s].band[1].counts == obs[s].band[1].counts);
    CHECK(f.stars[s].band[1].expected == obs[s].band[1].expected);
    CHECK(f.stars[s].band[1].flag == obs[s].band[1].flag);
  }
  // Without TRUTH (what compare reads): the same measurement, no expected counts, no truth flags.
  const auto m = ReadObservations(path, 4, /*with_truth=*/false);
  REQUIRE(m.stars.size() == obs.size());
  CHECK(m.stars[2099].band[1].counts == obs[2099].band[1].counts);
  CHECK(m.stars[2099].band[1].expected.empty());
  CHECK(m.stars[2099].band[1].flag[97] == 0);  // kObsCosmicRay is truth: not in MASK
}

TEST_CASE("observations read for chosen stars equal those of the whole file, in any row order",
          "[observations]") {
  const test::TempDir dir("obs-reader");
  // 2100 stars written in reverse order, one band each: a block of asked stars spans two runs of
  // rows.
  std::vector<StarObservation> obs(2100);
  for (size_t s = 0; s < obs.size(); ++s) {
    const size_t star = obs.size() - 1 - s;
    obs[s].obsid = static_cast<int64_t>(5000 + star);
    obs[s].band[star % 3] =
        Made(static_cast<int>(star % 3), static_cast<int>(star % 3) * 4 + 1, 1.0 + 0.01 * star);
  }
  const auto path = (dir / "reverse.fits").string();
  WriteObservations(path, obs, ObservationsLayout{4, "feedfeedfeedfeed", /*truth=*/true},
                    Provenance{});
  const auto whole = ReadObservations(path, 4);
  std::map<int64_t, const StarObservation*> by_id;
  for (const auto& so : whole.stars) by_id[so.obsid] = &so;
  ObservationsReader reader(path, 4);
  CHECK(reader.stars() == 2100);
  CHECK(reader.star_set() == "feedfeedfeedfeed");
  CHECK(reader.Has(5000));
  CHECK_FALSE(reader.Has(4999));
  std::vector<int64_t> ids = {4999};  // not in the file: no band observed
  for (int64_t id = 5000; id < 7100; id += 7) ids.push_back(id);
  const auto got = reader.Read(ids.data(), ids.size());
  REQUIRE(got.size() == ids.size());
  CHECK(got[0].obsid == 4999);
  for (int b = 0; b < 3; ++b) CHECK_FALSE(got[0].band[b].observed());
  for (size_t k = 1; k < ids.size(); ++k) {
    const auto& want = *by_id.at(ids[k]);
    for (int b = 0; b < 3; ++b) {
      REQUIRE(got[k].band[b].observed() == want.band[b].observed());
      CHECK(got[k].band[b].detector == want.band[b].detector);
      CHECK(got[k].band[b].counts == want.band[b].counts);
      CHECK(got[k].band[b].x == want.band[b].x);
    }
  }
  CHECK(got[0].band[0].expected.empty());
  CHECK(got[1].band[0].expected.empty());  // TRUTH is not read
}

TEST_CASE("a star's observation goes to bytes and back exactly", "[observations]") {
  StarObservation a;
  a.obsid = 123456789012LL;
  a.dec = -12.5;  // ra stays NaN
  a.window_flux = 3.25e-14;
  a.ebv = 0.07;
  a.flux_error = 1.05;
  a.band[0] = Made(0, 1, 1.5);
  a.band[2] = Made(2, 9, 0.25);
  a.band[2].counts_stamp_sum = 4.5e4;
  a.band[2].stamp_expected = 4.4e4;
  a.band[2].stamp_noise_var = 5e4;
  a.band[1].band = 1;  // not observed: no vectors
  a.band[1].detector = 6;
  StarObservation b = a;
  b.obsid = 7;
  b.band[0].counts[3] = std::nextafter(b.band[0].counts[3], 1e300);  // one ulp
  ByteWriter w;
  PutObservation(w, a);
  PutObservation(w, b);
  ByteReader r(w.bytes());
  const auto a2 = GetObservation(r), b2 = GetObservation(r);
  CHECK(r.done());
  for (const auto* pair : {&a, &b}) {
    const auto& want = *pair;
    const auto& got = pair == &a ? a2 : b2;
    CHECK(got.obsid == want.obsid);
    CHECK(std::isnan(got.ra));
    CHECK(got.dec == want.dec);
    CHECK(got.window_flux == want.window_flux);
    CHECK(got.ebv == want.ebv);
    CHECK(got.flux_error == want.flux_error);
    for (int k = 0; k < 3; ++k) {
      INFO("band " << k);
      const auto &g = got.band[k], &e = want.band[k];
      CHECK(g.band == e.band);
      CHECK(g.detector == e.detector);
      CHECK(g.x0 == e.x0);
      CHECK(g.y0 == e.y0);
      CHECK(g.exptime == e.exptime);
      CHECK(g.x == e.x);
      CHECK(g.y == e.y);
      CHECK(g.counts == e.counts);
      CHECK(g.sigma == e.sigma);
      CHECK(g.expected == e.expected);
      CHECK(g.flag == e.flag);
      CHECK(g.counts_stamp_sum == e.counts_stamp_sum);
      CHECK(g.stamp_expected == e.stamp_expected);
      CHECK(g.stamp_noise_var == e.stamp_noise_var);
      CHECK(g.observed() == e.observed());
    }
  }
  CHECK(a2.band[0].counts[3] != b2.band[0].counts[3]);  // the ulp survived
}
