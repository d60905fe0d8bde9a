// The per-class table of predicted against true SEDs (validation/sed_bias.h), on injected biases.
#include "validation/sed_bias.h"

#include <cmath>
#include <vector>

#include "core/grid.h"
#include "core/rng.h"
#include "instrument/instrument.h"
#include "tests/test_util.h"

using namespace csst;

TEST_CASE("the SED bias table recovers per-band biases injected by Teff class and SNR",
          "[validation]") {
  const Instrument inst{InstrumentOptions{}};
  const auto& og = OutputGrid();
  const int no = og.size();
  // 40 stars: 10 per Teff class; class c has bias (GU, GV, GI) = (0.1 c, 0.01 c, -0.01 c), plus
  // per-pixel noise that is symmetric, so each star's median recovers its bias to ~1e-3 of the
  // noise.
  std::vector<double> teff, snr;
  std::vector<std::vector<double>> sed;
  std::vector<float> mu;
  const double teffs[4] = {5200, 6000, 7000, 9000};
  Rng rng(7, "sed-bias-test", 0);
  for (int c = 0; c < 4; ++c) {
    for (int i = 0; i < 10; ++i) {
      teff.push_back(teffs[c]);
      snr.push_back(i < 5 ? 30 : 100);
      std::vector<double> s(no);
      for (int k = 0; k < no; ++k) {
        s[k] = 1.0 + 0.3 * std::sin(0.01 * k);
        const double lam = og.Centre(k);
        // pixels in two bands (4000-4200, 6200-6500) get the bias of the band tested first: GU,
        // then GV
        const double b = lam <= 4200 ? 0.1 * c : lam <= 6500 ? 0.01 * c : -0.01 * c;
        mu.push_back(static_cast<float>(s[k] * (1 + b + 1e-4 * rng.Normal())));
      }
      sed.push_back(s);
    }
  }
  SedBiasInput in;
  in.mu = &mu;
  in.sed = &sed;
  in.teff = teff;
  in.snr = snr;
  const auto rows = SedBiasTable(in, inst.bands());
  REQUIRE(rows.size() == 6);
  CHECK(rows[0].label == "all");
  CHECK(rows[0].n == 40);
  // all stars: the mean of the four classes' biases
  CHECK(rows[0].bias[0] == Approx(0.15).margin(2e-3));
  // GV pixels at 6200-6500 A carry the GV bias (the table takes the band's limits as they are), so
  // GV's median is the GV bias; GI's pixels above 6500 A carry the GI bias.
  for (int c = 0; c < 4; ++c) {
    INFO("class " << c);
    CHECK(rows[1 + c].n == 10);
    CHECK(rows[1 + c].bias[0] == Approx(0.1 * c).margin(2e-4));
    CHECK(rows[1 + c].bias[1] == Approx(0.01 * c).margin(2e-4));
    CHECK(rows[1 + c].bias[2] == Approx(-0.01 * c).margin(2e-4));
  }
  CHECK(rows[5].label == "SNR >= 80");
  CHECK(rows[5].n == 20);
  CHECK(rows[5].bias[1] == Approx(0.015).margin(2e-4));
  // sizes that disagree are an error, not a read past the end
  in.snr.pop_back();
  CHECK_THROWS(SedBiasTable(in, inst.bands()));
}
