#include <cmath>
#include <fstream>

#include "core/catalogue.h"
#include "core/errors.h"
#include "tests/test_util.h"

using namespace csst;

TEST_CASE("catalogue round trip through FITS", "[catalogue]") {
  const auto dir = test::TempDir("cat");
  std::vector<StarRecord> stars(3);
  for (int i = 0; i < 3; ++i) {
    stars[i].obsid = 100 + i;
    stars[i].designation = "J" + std::to_string(i);
    stars[i].teff = 5000 + 1000 * i;
    stars[i].gmag = 14.5;
    stars[i].snr_g = 30;
  }
  WriteCatalogueFits((dir / "c.fits").string(), stars, {});
  const auto back = ReadCatalogue((dir / "c.fits").string());
  REQUIRE(back.size() == 3);
  CHECK(back[2].obsid == 102);
  CHECK(back[1].designation == "J1");
  CHECK(back[2].teff == 7000);
}

TEST_CASE("CSV catalogue with configurable names and clear errors", "[catalogue]") {
  const auto dir = test::TempDir("cat-csv");
  const auto good = dir / "c.csv";
  std::ofstream(good) << "obsid,ra,dec,teff,logg,feh,G,snrg,snrr\n1,10,20,6000,4.2,0.1,15.1,40,50\n";
  CatalogueColumns cols;
  cols.gmag = "G";
  const auto s = ReadCatalogue(good.string(), cols);
  REQUIRE(s.size() == 1);
  CHECK(s[0].gmag == 15.1);
  // Without its G column (default name) the catalogue still reads: G is "not given" (NaN), and
  // what needs it says so (ingest, pipeline config). Only obsid is required.
  const auto no_g = ReadCatalogue(good.string());
  CHECK(std::isnan(no_g[0].gmag));
  CHECK(no_g[0].teff == 6000);
  const auto no_id = dir / "noid.csv";
  std::ofstream(no_id) << "ra,dec\n1,2\n";
  CHECK_THROWS_WITH(ReadCatalogue(no_id.string()), no_id.string() + ": missing column obsid");
  const auto bad = dir / "bad.csv";
  std::ofstream(bad) << "obsid,ra,dec,teff,logg,feh,G,snrg,snrr\n1,10,20,6000,4.2,0.1,15.1,40,50\n2,10,20,hot,4.2,0.1,15.1,40,50\n";
  CHECK_THROWS_WITH(ReadCatalogue(bad.string(), cols), bad.string() + ": row 3 column teff: 'hot' is not a number");
  const auto ragged = dir / "ragged.csv";
  std::ofstream(ragged) << "obsid,ra\n1\n";
  CHECK_THROWS_WITH(ReadCatalogue(ragged.string(), cols), ragged.string() + ": row 2 has 1 fields, header has 2");
}
