// The sample's tables read on demand (stages that stream over their stars): chosen rows in any
// order equal the rows of the whole-file read; the paper-errors predictions of a block equal one
// call's.
#include <cmath>
#include <vector>

#include "core/errors.h"
#include "core/grid.h"
#include "core/spectrum.h"
#include "simulation/dr7_sample.h"
#include "simulation/paper_errors.h"
#include "tests/test_util.h"

using namespace csst;

TEST_CASE(
    "noiseless LAMOST rows read on demand equal the whole file's, in any order and across read "
    "blocks",
    "[sample]") {
  const test::TempDir dir("lamost-reader");
  const auto path = (dir / "lamost_truth.fits").string();
  const size_t n = 4500, np = 10;  // more rows than one read block (2048)
  std::vector<int64_t> obsid;
  std::vector<double> wave;
  std::vector<std::vector<double>> flux(n), err(n);
  for (size_t k = 0; k < np; ++k) wave.push_back(4000.0 + 300.0 * k);
  for (size_t i = 0; i < n; ++i) {
    obsid.push_back(static_cast<int64_t>(1000 + 3 * i));
    for (size_t k = 0; k < np; ++k) {
      flux[i].push_back(100.0 * static_cast<double>(i) + static_cast<double>(k) + 0.25);
      err[i].push_back(static_cast<double>((i + k) % 3));  // 0: no data there
    }
  }
  WriteNoiselessLamost(path, NoiselessLamostRows{obsid, wave, flux, err}, Provenance{}, "test");
  const auto whole = ReadNoiselessLamost(path);
  REQUIRE(whole.spectra.size() == n);
  NoiselessLamostReader reader(path);
  CHECK(reader.obsid() == obsid);
  std::vector<long> rows = {4499, 0, 2047, 2048, 2049, 17, 17};
  for (long r = 1000; r < 3600; ++r) rows.push_back(r);  // one run longer than a read block
  const auto got = reader.Read(rows.data(), rows.size());
  REQUIRE(got.size() == rows.size());
  for (size_t k = 0; k < rows.size(); ++k) {
    INFO("row " << rows[k]);
    const auto& want = whole.spectra[static_cast<size_t>(rows[k])];
    CHECK(got[k].wave == wave);
    CHECK(got[k].flux == flux[static_cast<size_t>(rows[k])]);
    CHECK(got[k].err == want.err);
    CHECK(got[k].mask == want.mask);
  }
  CHECK(got[0].mask[0] == 0);                // err of row 4499, pixel 0: (4499 + 0) % 3 = 2
  CHECK(got[1].mask[0] == kMaskNoCoverage);  // row 0, pixel 0: err 0
  const long bad = 4500;
  CHECK_THROWS_WITH(
      reader.Read(&bad, 1),
      Catch::Contains(path) && Catch::Contains("row 4501 asked for, the table has 4500"));
}

TEST_CASE("true SEDs read on demand equal the whole truth file's, in any order", "[sample]") {
  const test::TempDir dir("truth-reader");
  const auto path = (dir / "truth.fits").string();
  SampleTruth t;
  for (int i = 0; i < 30; ++i) {
    t.obsid.push_back(500 + i);
    t.spec_hash.push_back("h" + std::to_string(i));
    t.window_flux.push_back(1e-14 * (i + 1));
    std::vector<double> sed, fine;
    for (int k = 0; k < OutputGrid().size(); ++k) sed.push_back(1 + 0.001 * k + i);
    for (int k = 0; k < TruthGrid().size(); ++k) fine.push_back(2 + 0.0001 * k + i);
    t.sed.push_back(sed);
    t.sed_fine.push_back(fine);
  }
  WriteSampleTruth(path, t, Provenance{}, "test");
  SampleTruthReader reader(path);
  CHECK(reader.obsid() == t.obsid);
  CHECK(reader.spec_hash() == t.spec_hash);
  CHECK(reader.window_flux() == t.window_flux);
  const std::vector<long> rows = {29, 3, 3, 4, 5, 0};
  const auto sed = reader.Sed(rows.data(), rows.size());
  const auto fine = reader.SedFine(rows.data(), rows.size());
  for (size_t k = 0; k < rows.size(); ++k) {
    INFO("row " << rows[k]);
    CHECK(sed[k] == t.sed[static_cast<size_t>(rows[k])]);
    CHECK(fine[k] == t.sed_fine[static_cast<size_t>(rows[k])]);
  }
  const auto all = ReadSampleTruth(path);
  CHECK(all.sed == t.sed);
  CHECK(all.sed_fine == t.sed_fine);
}

TEST_CASE("paper-errors predictions of blocks of stars equal one call over the sample",
          "[sample]") {
  std::vector<std::vector<double>> truth;
  std::vector<double> teff, snr;
  for (int i = 0; i < 7; ++i) {
    truth.emplace_back(static_cast<size_t>(OutputGrid().size()), 1.0 + 0.1 * i);
    teff.push_back(5500 + 400 * i);
    snr.push_back(15 + 10 * i);
  }
  const size_t no = static_cast<size_t>(OutputGrid().size());
  std::vector<float> mu(7 * no), sigma(mu.size());
  PaperErrorPredictions(PaperErrorStars{truth.data(), teff.data(), snr.data(), 7, 0}, 11, 3,
                        mu.data(), sigma.data());
  std::vector<float> bmu(mu.size()), bsigma(mu.size());
  for (size_t first = 0; first < 7; first += 3) {
    const size_t count = std::min<size_t>(3, 7 - first);
    PaperErrorPredictions(PaperErrorStars{truth.data() + first, teff.data() + first,
                                          snr.data() + first, count, first},
                          11, 3, bmu.data() + first * no, bsigma.data() + first * no);
  }
  CHECK(bmu == mu);
  CHECK(bsigma == sigma);
  CHECK(mu[0] != mu[no]);  // stars draw their own errors
}
