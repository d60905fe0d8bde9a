#include "flatfield/compare.h"

#include <cmath>
#include <vector>

#include "core/grid.h"
#include "instrument/counts.h"
#include "tests/test_util.h"

using namespace csst;

namespace {

// One star with a flat unit SED, E(B-V) = 0.2, observed without noise in all three bands (counts
// equal to what the instrument makes of the reddened SED); the network's sigma is negligible, so
// the only error of a ratio is that of the assumed E(B-V) (and, with a known scale, of the window
// flux).
struct OneStar {
  std::vector<StarObservation> obs;
  std::vector<StarRecord> stars;
  std::vector<double> window_flux{1e-13};
  std::vector<float> mu, sigma_mu;
};

OneStar MakeStar(const Instrument& inst) {
  const auto& g = OutputGrid();
  const size_t no = static_cast<size_t>(g.size());
  const auto centres = g.Centres();
  OneStar s;
  s.stars.resize(1);
  s.stars[0].obsid = 7;
  s.stars[0].ebv = 0.2;
  s.obs.resize(1);
  s.obs[0].obsid = 7;
  s.mu.assign(no, 1.0f);
  s.sigma_mu.assign(no, 1e-7f);
  std::vector<double> sed(no);
  for (size_t k = 0; k < no; ++k)
    sed[k] = s.window_flux[0] * std::pow(10.0, -0.4 * 0.2 * 3.1 * ExtinctionCcm89(centres[k]));
  for (int b = 0; b < 3; ++b) {
    auto& bo = s.obs[0].band[b];
    bo.band = b;
    bo.detector = b * 4;
    bo.counts = ExpectedCounts(inst, b, sed);
    bo.sigma.assign(no, 0.0);
    bo.x.assign(no, 4000.0);
    bo.y.assign(no, 4000.0);
    bo.flag.assign(no, 0);
    for (size_t k = 0; k < no; ++k) {
      bo.sigma[k] = 1e-7 * bo.counts[k];
      if (centres[k] < inst.band(b).lo || centres[k] > inst.band(b).hi || !(bo.counts[k] > 0))
        bo.flag[k] = kObsOutsideBand;
    }
  }
  return s;
}

// Over many draws of the assumed E(B-V) and scale: the spread of ln(ratio) (less its weighted
// mean over the star's points when the scale is free) against the mean sigma/ratio, per point.
// Returns the largest |spread / sigma - 1| over the usable points.
double WorstSigmaMismatch(const Instrument& inst, const CompareOptions& o, const OneStar& s) {
  const int draws = 600;
  const auto& g = OutputGrid();
  const size_t no = static_cast<size_t>(g.size());
  std::vector<double> sum(3 * no, 0), sum2(3 * no, 0), rel(3 * no, 0);
  std::vector<int> usable(3 * no, 1);
  for (int d = 0; d < draws; ++d) {
    const auto r = ComputeRatios(inst, o, {s.obs, s.stars, s.window_flux, s.mu, s.sigma_mu},
                                 static_cast<uint64_t>(100 + d));
    REQUIRE(r.size() == 3);
    double sw = 0, swl = 0;
    for (const auto& row : r)
      for (size_t k = 0; k < no; ++k)
        if (row.flag[k] == 0) {
          // the scale's weights before the assumed-flux terms: equal here (same relative
          // observation and network errors at every point)
          const double w = 1.0;
          sw += w;
          swl += w * std::log(row.ratio[k]);
        }
    const double ref = o.flux_scale == FluxScale::kUnknown ? swl / sw : 0.0;
    for (size_t b = 0; b < 3; ++b)
      for (size_t k = 0; k < no; ++k) {
        const size_t i = b * no + k;
        if (r[b].flag[k] != 0) {
          usable[i] = 0;
          continue;
        }
        const double l = std::log(r[b].ratio[k]) - ref;
        sum[i] += l;
        sum2[i] += l * l;
        rel[i] += r[b].sigma[k] / r[b].ratio[k] / draws;
      }
  }
  double worst = 0;
  int n = 0;
  for (size_t i = 0; i < 3 * no; ++i) {
    if (!usable[i] || rel[i] < 2e-3) continue;  // near the reference wavelength: ~0 both
    const double m = sum[i] / draws;
    const double spread = std::sqrt(sum2[i] / draws - m * m);
    worst = std::max(worst, std::abs(spread / rel[i] - 1));
    ++n;
  }
  REQUIRE(n > 300);
  return worst;
}

}  // namespace

TEST_CASE("ratio sigma holds the assumed E(B-V) error less what a free scale absorbs",
          "[compare]") {
  // 600 draws: the spread of a standard deviation is ~1/sqrt(1200) = 3 %; 15 % bounds the worst of
  // ~1000 points. A sigma without the E(B-V) term is ~1e-7 (mismatch ~1e5); with the full term
  // instead of the differenced one, GV near 5500 A is off by far more than 15 %.
  const Instrument inst(InstrumentOptions{});
  const auto star = MakeStar(inst);
  CompareOptions o;
  o.reddening = true;
  o.ebv_sigma = 0.02;
  SECTION("free scale") {
    o.flux_scale = FluxScale::kUnknown;
    o.scale_error = 0.05;  // absorbed by the free scale: must not enter sigma
    CHECK(WorstSigmaMismatch(inst, o, star) < 0.15);
  }
  SECTION("known scale, with the window-flux error") {
    o.flux_scale = FluxScale::kKnown;
    o.scale_error = 0.05;
    CHECK(WorstSigmaMismatch(inst, o, star) < 0.15);
  }
  SECTION("no assumed-flux error: sigma is the observation's and the network's only") {
    o.ebv_sigma = 0;
    o.scale_error = 0;
    const auto r =
        ComputeRatios(inst, o, {star.obs, star.stars, star.window_flux, star.mu, star.sigma_mu}, 1);
    for (const auto& row : r)
      for (size_t k = 0; k < row.ratio.size(); ++k)
        if (row.flag[k] == 0) {
          CHECK(row.ratio[k] == Approx(1.0).epsilon(1e-9));
          CHECK(row.sigma[k] / row.ratio[k] == Approx(std::sqrt(2.0) * 1e-7).epsilon(1e-3));
        }
  }
}

TEST_CASE("ratios written in blocks read back block by block as written", "[compare]") {
  const test::TempDir dir("ratios-blocks");
  const std::string path = (dir.path() / "ratios.fits").string();
  const size_t n = static_cast<size_t>(OutputGrid().size());
  std::vector<StarRatios> all;
  for (int i = 0; i < 7; ++i) {
    StarRatios r;
    r.obsid = 100 + i;
    r.band = i % 3;
    r.detector = r.band * 4 + i % 4;
    for (size_t k = 0; k < n; ++k) {
      r.x.push_back(10.0 * i + 0.25 * static_cast<double>(k));
      r.y.push_back(9000.0 - static_cast<double>(k));
      r.ratio.push_back(1.0 + 1e-3 * i + 1e-6 * static_cast<double>(k));
      r.sigma.push_back(1e-3);
      r.flag.push_back(k % 5 == 0 ? 1 : 0);
    }
    all.push_back(r);
  }
  {
    RatiosWriter w(path, Provenance{});
    w.Append({all.begin(), all.begin() + 3});
    w.Append({});
    w.Append({all.begin() + 3, all.end()});
    CHECK(w.rows() == 7);
    w.Close();
  }
  std::vector<size_t> sizes;
  std::vector<StarRatios> back;
  ForEachRatioBlock(path, 3, [&](const std::vector<StarRatios>& block) {
    sizes.push_back(block.size());
    back.insert(back.end(), block.begin(), block.end());
  });
  CHECK(sizes == std::vector<size_t>{3, 3, 1});
  REQUIRE(back.size() == all.size());
  for (size_t i = 0; i < all.size(); ++i) {
    CHECK(back[i].obsid == all[i].obsid);
    CHECK(back[i].detector == all[i].detector);
    CHECK(back[i].x == all[i].x);
    CHECK(back[i].ratio == all[i].ratio);
    CHECK(back[i].flag == all[i].flag);
  }
  CHECK(ReadRatios(path).size() == 7);
}

TEST_CASE("ratios computed block by block equal those of one pass over the stars", "[compare]") {
  // Five copies of the star with their own obsids: with the assumed E(B-V) and scale drawn per
  // star, a block that drew from its own index instead of the star's place in the sample differs.
  const Instrument inst(InstrumentOptions{});
  const auto one = MakeStar(inst);
  OneStar s;
  for (int i = 0; i < 5; ++i) {
    s.obs.push_back(one.obs[0]);
    s.obs.back().obsid = 7 + i;
    s.stars.push_back(one.stars[0]);
    s.stars.back().obsid = 7 + i;
    s.window_flux.push_back(one.window_flux[0]);
    s.mu.insert(s.mu.end(), one.mu.begin(), one.mu.end());
    s.sigma_mu.insert(s.sigma_mu.end(), one.sigma_mu.begin(), one.sigma_mu.end());
  }
  s.window_flux.erase(s.window_flux.begin());  // OneStar starts with one entry
  CompareOptions o;
  o.flux_scale = FluxScale::kKnown;
  o.reddening = true;
  o.ebv_sigma = 0.02;
  o.scale_error = 0.05;
  const auto all = ComputeRatios(inst, o, {s.obs, s.stars, s.window_flux, s.mu, s.sigma_mu}, 11);
  REQUIRE(all.size() == 15);
  const size_t no = static_cast<size_t>(OutputGrid().size());
  std::vector<StarRatios> blocks;
  for (size_t first = 0; first < 5; first += 2) {
    const size_t count = std::min<size_t>(2, 5 - first);
    const auto part =
        ComputeRatios(inst, o,
                      CompareBlock{first, count, s.obs.data() + first, s.stars.data() + first,
                                   s.window_flux.data() + first, s.mu.data() + first * no,
                                   s.sigma_mu.data() + first * no},
                      11);
    blocks.insert(blocks.end(), part.begin(), part.end());
  }
  REQUIRE(blocks.size() == all.size());
  for (size_t i = 0; i < all.size(); ++i) {
    CHECK(blocks[i].obsid == all[i].obsid);
    CHECK(blocks[i].ratio == all[i].ratio);
    CHECK(blocks[i].sigma == all[i].sigma);
  }
  CHECK(all[0].ratio != all[3].ratio);  // the stars did draw different assumed scales
}
