#include "io/spectrum_io.h"

#include <cmath>
#include <fstream>
#include <iterator>

#include "core/errors.h"
#include "core/rng.h"
#include "tests/test_util.h"

using namespace csst;
namespace fs = std::filesystem;

namespace {
const char* kLamostFile = "lamost/spec-58397-EG014118N254444M01_sp03-031.fits";

LamostSpectrum SyntheticLamost(int n = 3909) {
  LamostSpectrum s;
  s.header.obsid = 123456789;
  s.header.designation = "LAMOST J000000.00+000000.0";
  s.header.subclass = "F5";
  s.header.snr = {10, 40, 60, 70, 50};
  s.header.z = 1e-4;
  for (int i = 0; i < n; ++i) {
    s.spectrum.wave.push_back(std::pow(10.0, 3.5682 + 1e-4 * i));
    s.spectrum.flux.push_back(100.0 + i % 7);
    s.spectrum.err.push_back(2.0);
    s.spectrum.mask.push_back(i == 10 ? kMaskBad : 0u);
  }
  return s;
}

std::vector<char> Bytes(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}
void Put(const fs::path& p, const std::vector<char>& b) {
  std::ofstream(p, std::ios::binary).write(b.data(), static_cast<std::streamsize>(b.size()));
}
// Corrupted variants of a FITS file: truncations, flipped bytes in header and data, and
// blanked keyword cards. Each must read cleanly or throw csst::Error; never crash or hang.
template <typename Reader>
int FuzzFile(const fs::path& original, const fs::path& dir, Reader read) {
  const auto bytes = Bytes(original);
  Rng rng(99, "fuzz", bytes.size());
  int variants = 0, rejected = 0;
  auto attempt = [&](const std::vector<char>& b) {
    const auto p = dir / ("variant" + std::to_string(variants++) + ".fits");
    Put(p, b);
    try {
      read(p.string());
    } catch (const Error& e) {
      ++rejected;
      CHECK(std::string(e.what()).find(p.string()) != std::string::npos);  // names the file
    }
  };
  for (double frac : {0.0, 0.001, 0.3, 0.5, 0.9, 0.999}) {  // truncations
    attempt(
        std::vector<char>(bytes.begin(), bytes.begin() + static_cast<long>(frac * bytes.size())));
  }
  for (int k = 0; k < 10; ++k) {  // byte flips in the header block(s)
    auto b = bytes;
    const size_t pos = static_cast<size_t>(rng.Uniform() * std::min<size_t>(b.size(), 8640));
    b[pos] = static_cast<char>(b[pos] ^ 0x5A);
    attempt(b);
  }
  for (int k = 0; k < 6; ++k) {  // byte flips in the data
    auto b = bytes;
    const size_t pos = 2880 + static_cast<size_t>(rng.Uniform() * (b.size() - 2880));
    b[pos] = static_cast<char>(0xFF);
    attempt(b);
  }
  for (const char* key :
       {"NAXIS1  =", "NAXIS2  =", "CRVAL1  =", "CDELT1  =", "OBSID   =", "BITPIX  ="}) {
    auto b = bytes;  // drop a keyword by blanking its card
    const std::string s(b.begin(), b.begin() + std::min<size_t>(b.size(), 28800));
    const auto at = s.find(key);
    if (at == std::string::npos) continue;
    std::fill(b.begin() + at, b.begin() + at + 80, ' ');
    attempt(b);
  }
  CHECK(variants >= 20);
  return rejected;
}
}  // namespace

TEST_CASE("the real LAMOST DR7 file reads with its header and grid", "[io][lamost]") {
  const auto path = test::SharedData(kLamostFile);
  CSST_REQUIRE_SHARED(path);
  const auto s = ReadLamost(path.string());
  CHECK(s.layout == LamostLayout::kDr7);
  CHECK(s.header.obsid == 677503031);
  CHECK(s.header.subclass == "G3");
  CHECK(s.header.object_class == "STAR");
  CHECK(s.header.vacuum);
  CHECK(s.header.snr[1] == Approx(153.72));
  REQUIRE(s.spectrum.size() == 3909);
  // COEFF0 = 3.5682, COEFF1 = 1e-4 (log10 A): first and last pixel centres.
  CHECK(s.spectrum.wave.front() == Approx(std::pow(10.0, 3.5682)).epsilon(1e-5));
  CHECK(s.spectrum.wave.back() == Approx(std::pow(10.0, 3.5682 + 3908e-4)).epsilon(1e-4));
  int good = 0;
  for (auto m : s.spectrum.mask) good += m == 0;
  CHECK(good > 3000);
}

TEST_CASE("LAMOST writer round-trips in both layouts", "[io][lamost]") {
  const auto dir = test::TempDir("lamost-rt");
  const auto in = SyntheticLamost();
  for (auto layout : {LamostLayout::kDr7, LamostLayout::kDr8}) {
    const auto p = (dir / (layout == LamostLayout::kDr7 ? "dr7.fits" : "dr8.fits")).string();
    WriteLamost(p, in, layout, {});
    const auto out = ReadLamost(p);
    CHECK(out.layout == layout);
    CHECK(out.header.obsid == in.header.obsid);
    CHECK(out.header.subclass == "F5");
    CHECK(out.header.snr[2] == 60.0);
    REQUIRE(out.spectrum.size() == in.spectrum.size());
    CHECK(out.spectrum.wave[100] == Approx(in.spectrum.wave[100]).epsilon(1e-6));
    CHECK(out.spectrum.flux[5] == Approx(105.0));
    CHECK(out.spectrum.err[5] == Approx(2.0).epsilon(1e-6));
    CHECK(out.spectrum.mask[10] != 0u);
    CHECK(out.spectrum.mask[11] == 0u);
  }
}

TEST_CASE("LAMOST reader rejects bad content with the file and the problem", "[io][lamost]") {
  const auto dir = test::TempDir("lamost-bad");
  auto s = SyntheticLamost(50);
  const auto p = (dir / "nan.fits").string();
  s.spectrum.flux[3] = std::nan("");
  WriteLamost(p, s, LamostLayout::kDr7, {});
  CHECK_THROWS_WITH(ReadLamost(p), p + ": flux at pixel 3 is NaN or Inf");
  s = SyntheticLamost(50);
  for (auto& e : s.spectrum.err) e = 0;
  WriteLamost(p, s, LamostLayout::kDr8, {});
  CHECK_THROWS_WITH(ReadLamost(p), p + ": inverse variance is zero at every pixel");
  s = SyntheticLamost(50);
  std::swap(s.spectrum.wave[4], s.spectrum.wave[5]);
  WriteLamost(p, s, LamostLayout::kDr7, {});
  CHECK_THROWS_WITH(ReadLamost(p), p + ": wavelengths are not strictly increasing at pixel 5");
}

TEST_CASE("MILES and STELIB real files read with vacuum wavelengths and parameters",
          "[io][library]") {
  const auto miles = test::SharedData("miles/MILES_res2.50_star_m0001V.fits");
  CSST_REQUIRE_SHARED(miles);
  const auto m = ReadMiles(miles.string());
  CHECK(m.spectrum.size() == 4300);
  // CRVAL1 = 3540.5 A (air) -> vacuum.
  CHECK(m.spectrum.wave.front() == Approx(VacuumFromAir(3540.5)).epsilon(1e-9));
  CHECK(m.spectrum.wave.front() - 3540.5 == Approx(1.01).margin(0.02));
  const auto params = ReadMilesParams(test::SharedData("miles/paramsMILES_v9.1.txt").string());
  CHECK(params.size() > 900);
  const auto stelib = test::SharedData("stelib/STELIB_v3.2_HD006268.fits");
  CSST_REQUIRE_SHARED(stelib);
  const auto s = ReadStelib(stelib.string());
  CHECK(s.teff == Approx(4712));
  CHECK(s.logg == Approx(1.13));
  CHECK(s.feh == Approx(-2.41));
  const auto g319 = ReadStelib(test::SharedData("stelib/STELIB_v3.2_G319.fits").string());
  CHECK(std::isnan(g319.teff));  // '-' in the header
}

TEST_CASE("fuzzed real files give clean errors, never crashes", "[io][fuzz]") {
  const auto dir = test::TempDir("fuzz");
  const auto lamost = test::SharedData(kLamostFile);
  CSST_REQUIRE_SHARED(lamost);
  // At least the six truncated variants must be rejected; flipped data bytes may still decode
  // to valid numbers and then read cleanly.
  CHECK(FuzzFile(lamost, dir, [](const std::string& p) { ReadLamost(p); }) >= 6);
  CHECK(FuzzFile(test::SharedData("miles/MILES_res2.50_star_m0001V.fits"), dir,
                 [](const std::string& p) { ReadMiles(p); }) >= 6);
  CHECK(FuzzFile(test::SharedData("stelib/STELIB_v3.2_HD006268.fits"), dir,
                 [](const std::string& p) { ReadStelib(p); }) >= 6);
}
