#include <cmath>
#include <cstdio>
#include <tuple>

#include "core/grid.h"
#include "core/rng.h"
#include "instrument/instrument.h"
#include "io/fits.h"
#include "simulation/csst/observe.h"
#include "simulation/csst/true_flat.h"
#include "tests/test_util.h"

using namespace csst;

namespace {
constexpr double kC = 2.99792458e18;  // A/s
constexpr double kH = 6.62607015e-27;

// A smooth SED: Planck-like shape at temperature t, scaled to 1 at 5556 A, on the truth grid.
std::vector<double> PlanckSed(double t) {
  std::vector<double> s;
  auto b = [&](double l) { return std::pow(l, -5) / std::expm1(1.4388e8 / (l * t)); };
  for (int i = 0; i < TruthGrid().size(); ++i) s.push_back(b(TruthGrid().Centre(i)) / b(5556.0));
  return s;
}

double WindowFluxAb(double m) {
  return 3.631e-20 * std::pow(10.0, -0.4 * m) * kC / (5556.0 * 5556.0);
}
}  // namespace

TEST_CASE("the true flat has the requested rms and varies smoothly with wavelength", "[csst]") {
  const Instrument inst(InstrumentOptions{});
  for (const FlatModel model : {FlatModel::kPolynomial, FlatModel::kGrf}) {
    TrueFlatOptions o;
    o.model = model;
    o.rms = 0.03;
    const auto f = TrueFlat::Draw(o, inst, 7);
    CHECK(f.detectors() == 12);
    double s = 0, s2 = 0;
    int n = 0;
    for (int i = 0; i <= 40; ++i)
      for (int j = 0; j <= 40; ++j) {
        const double v = f.Value(5, i / 40.0 * 9215, j / 40.0 * 9231, inst.band(1).lo);
        s += v, s2 += v * v, ++n;
      }
    CHECK(std::sqrt(s2 / n - (s / n) * (s / n)) == Approx(0.03).epsilon(1e-6));
    // Round trip through the truth file.
    const auto dir = test::TempDir("flat-rt");
    f.Write((dir / "t.fits").string(), {});
    const auto g = TrueFlat::Read((dir / "t.fits").string());
    CHECK(g.Value(3, 1234, 5678, 3000) == Approx(f.Value(3, 1234, 5678, 3000)).epsilon(1e-12));
  }
}

TEST_CASE("spectral-mode noise variance matches the reported sigma within 3%", "[csst]") {
  const Instrument inst(InstrumentOptions{});
  TrueFlatOptions fo;
  const auto flat = TrueFlat::Draw(fo, inst, 3);
  std::vector<StarRecord> stars(1);
  stars[0].obsid = 1;
  const std::vector<std::vector<double>> sed = {PlanckSed(6500)};
  const std::vector<double> wf = {WindowFluxAb(18.0)};
  ObserveOptions oo;
  const int n = 1000;
  const int k = static_cast<int>(OutputGrid().PixelFromWavelength(5200.0) + 0.5);
  double s = 0, s2 = 0, sigma = 0;
  for (int r = 0; r < n; ++r) {
    const auto obs = Observe(inst, flat, oo, {stars, sed, wf}, 11, "noise-" + std::to_string(r));
    const auto& bo = obs[0].band[1];
    const double d = bo.counts[k] - bo.expected[k];
    s += d, s2 += d * d;
    sigma = bo.sigma[k];
  }
  const double var = s2 / n - (s / n) * (s / n);
  CHECK(std::sqrt(var) == Approx(sigma).epsilon(0.03 + 3.0 / std::sqrt(2.0 * n)));
}

namespace {
// Stars 100..104: Planck SEDs of 5000..7000 K, each at AB 17 in the scaling window.
std::tuple<std::vector<StarRecord>, std::vector<std::vector<double>>, std::vector<double>>
FiveStars() {
  std::vector<StarRecord> stars(5);
  std::vector<std::vector<double>> sed;
  std::vector<double> wf;
  for (int i = 0; i < 5; ++i) {
    stars[static_cast<size_t>(i)].obsid = 100 + i;
    sed.push_back(PlanckSed(5000 + 500 * i));
    wf.push_back(WindowFluxAb(17.0));
  }
  return {stars, sed, wf};
}
}  // namespace

TEST_CASE("observation noise drawn block by block equals one draw over all stars", "[csst]") {
  const Instrument inst(InstrumentOptions{});
  const auto flat = TrueFlat::Draw(TrueFlatOptions{}, inst, 3);
  const auto [stars, sed, wf] = FiveStars();
  ObserveOptions oo;
  const auto expected = ObserveExpected(inst, flat, oo, {stars, sed, wf}, 5);
  const auto all = DrawObservationNoise(expected, oo, 5, "blocks");
  std::vector<StarObservation> joined;
  for (size_t first = 0; first < 5; first += 2) {
    const auto part = DrawObservationNoise(expected.data() + first, std::min<size_t>(2, 5 - first),
                                           first, oo, 5, "blocks");
    joined.insert(joined.end(), part.begin(), part.end());
  }
  REQUIRE(joined.size() == all.size());
  for (size_t i = 0; i < all.size(); ++i)
    for (int b = 0; b < 3; ++b) CHECK(joined[i].band[b].counts == all[i].band[b].counts);
  CHECK(all[2].band[1].counts != expected[2].band[1].counts);  // noise was drawn
}

TEST_CASE("a sample observed block by block equals one Observe, in both modes", "[csst]") {
  const Instrument inst(InstrumentOptions{});
  const auto flat = TrueFlat::Draw(TrueFlatOptions{}, inst, 3);
  const auto [stars, sed, wf] = FiveStars();
  for (const auto mode : {ObserveMode::kSpectral, ObserveMode::kImage}) {
    ObserveOptions oo;
    oo.mode = mode;
    oo.cosmic_ray_rate = 0.01;  // contaminants draw from the same streams
    const auto all = Observe(inst, flat, oo, {stars, sed, wf}, 9, "blocks");
    auto placed = PlaceSample(inst, oo, stars, wf, 9);
    for (size_t first = 0; first < 5; first += 2)
      ObserveBlock(inst, flat, oo,
                   ObserveBlockInput{placed.data() + first, sed.data() + first,
                                     std::min<size_t>(2, 5 - first), first, 9, "blocks"});
    for (size_t i = 0; i < 5; ++i)
      for (int b = 0; b < 3; ++b) {
        CHECK(placed[i].band[b].detector == all[i].band[b].detector);
        CHECK(placed[i].band[b].counts == all[i].band[b].counts);
        CHECK(placed[i].band[b].flag == all[i].band[b].flag);
      }
    if (mode == ObserveMode::kSpectral) {  // and the halves that the Monte Carlo uses
      const auto halves = DrawObservationNoise(ObserveExpected(inst, flat, oo, {stars, sed, wf}, 9),
                                               oo, 9, "blocks");
      for (size_t i = 0; i < 5; ++i)
        for (int b = 0; b < 3; ++b) CHECK(halves[i].band[b].counts == all[i].band[b].counts);
    }
  }
}

TEST_CASE(
    "image mode: optimal extraction agrees with spectral expectations, stamps conserve counts",
    "[csst][image]") {
  InstrumentOptions io;
  const Instrument inst(io);
  TrueFlatOptions fo;
  const auto flat = TrueFlat::Draw(fo, inst, 5);
  const int n = 200;
  std::vector<StarRecord> stars(n);
  std::vector<std::vector<double>> sed;
  std::vector<double> wf;
  for (int i = 0; i < n; ++i) {
    stars[i].obsid = i + 1;
    sed.push_back(PlanckSed(5000 + 25.0 * i));
    wf.push_back(WindowFluxAb(19.5 + 0.01 * i));
  }
  ObserveOptions oo;
  oo.mode = ObserveMode::kImage;
  const auto obs = Observe(inst, flat, oo, {stars, sed, wf}, 21, "image-noise");
  double chi2 = 0, stamp_pull2 = 0;
  long dof = 0;
  int nstamp = 0;
  for (const auto& so : obs) {
    for (const auto& bo : so.band) {
      for (size_t k = 0; k < bo.counts.size(); ++k) {
        if (bo.flag[k]) continue;
        const double d = (bo.counts[k] - bo.expected[k]) / bo.sigma[k];
        chi2 += d * d;
        ++dof;
      }
      // Stamp sum against the rendered total: a pull of the Poisson + background + read noise.
      const double pull = (bo.counts_stamp_sum - bo.stamp_expected) / std::sqrt(bo.stamp_noise_var);
      stamp_pull2 += pull * pull;
      ++nstamp;
    }
  }
  INFO("chi2/dof = " << chi2 / dof << " over " << dof << " pixels, " << nstamp << " spectra");
  CHECK(chi2 / dof == Approx(1.0).margin(0.1));
  // Mean squared pull of 600 stamp sums: 1 within 4 standard errors (sqrt(2/600) = 0.058).
  CHECK(stamp_pull2 / nstamp == Approx(1.0).margin(0.23));
}
