#include "io/catalogue.h"

#include <cmath>
#include <fstream>

#include "core/errors.h"
#include "io/fits.h"
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
  std::ofstream(good)
      << "obsid,ra,dec,teff,logg,feh,G,snrg,snrr\n1,10,20,6000,4.2,0.1,15.1,40,50\n";
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
  std::ofstream(bad) << "obsid,ra,dec,teff,logg,feh,G,snrg,snrr\n1,10,20,6000,4.2,0.1,15.1,40,"
                        "50\n2,10,20,hot,4.2,0.1,15.1,40,50\n";
  CHECK_THROWS_WITH(ReadCatalogue(bad.string(), cols),
                    bad.string() + ": line 3 column teff: 'hot' is not a number");
  const auto ragged = dir / "ragged.csv";
  std::ofstream(ragged) << "obsid,ra\n1\n";
  CHECK_THROWS_WITH(ReadCatalogue(ragged.string(), cols),
                    ragged.string() + ": line 2 has 1 fields, header has 2");
}

// Issue #29: what a spreadsheet writes reads as it means; each row fails when its guard is removed.
TEST_CASE("CSV: byte-order mark, quotes, repeated headers, empty cells, file line numbers",
          "[catalogue]") {
  const auto dir = test::TempDir("cat-csv-rules");
  auto file = [&](const std::string& name, const std::string& text) {
    const auto p = dir / name;
    std::ofstream(p, std::ios::binary) << text;
    return p.string();
  };
  // A UTF-8 byte-order mark before the first column name: rv (first) still reads, obsid (first) is
  // found.
  const auto bom_rv = file("bom_rv.csv", "\xEF\xBB\xBFrv,obsid\n12.5,7\n");
  const auto a = ReadCatalogue(bom_rv);
  REQUIRE(a.size() == 1);
  CHECK(a[0].rv == 12.5);
  CHECK(a[0].obsid == 7);
  const auto bom_id = file("bom_id.csv", "\xEF\xBB\xBFobsid,rv\n8,-3\n");
  CHECK(ReadCatalogue(bom_id)[0].obsid == 8);
  // RFC 4180 quotes: "" inside a quoted field is one quote character
  const auto quoted = file("quoted.csv", "obsid,designation\n9,\"J1 \"\"A\"\", B\"\n");
  CHECK(ReadCatalogue(quoted)[0].designation == "J1 \"A\", B");
  // a header repeated is an error naming both fields
  const auto twice = file("twice.csv", "obsid,teff,teff\n1,5000,6000\n");
  CHECK_THROWS_WITH(ReadCatalogue(twice),
                    twice + ": header line: column 'teff' appears twice (fields 2 and 3)");
  CHECK_THROWS_WITH(CatalogueColumnNames(twice),
                    twice + ": header line: column 'teff' appears twice (fields 2 and 3)");
  // an empty optional cell is "not given" (NaN) for that star alone, not an error for the file
  const auto empty_rv = file("empty_rv.csv", "obsid,rv\n1,\n2,4\n");
  const auto e = ReadCatalogue(empty_rv);
  CHECK(std::isnan(e[0].rv));
  CHECK(e[1].rv == 4);
  // errors give the file's line numbers, blank lines counted
  const auto blank = file("blank.csv", "obsid,teff\n\n\n1,warm\n");
  CHECK_THROWS_WITH(ReadCatalogue(blank), blank + ": line 4 column teff: 'warm' is not a number");
  const auto dup = file("dup.csv", "obsid\n5\n\n5\n");
  CHECK_THROWS_WITH(ReadCatalogue(dup),
                    dup + ": line 2 and line 4 have the same obsid 5 (each star once)");
}

// Issue #29: catalogue column names match in any case (FITS says so for TTYPE; CSV follows), and a
// FITS catalogue whose numbers are stored as text reads them as numbers, naming the row of one that
// is not.
TEST_CASE("catalogue columns in any case and numbers stored as text", "[catalogue]") {
  const auto dir = test::TempDir("cat-case");
  const std::string fits = (dir / "upper.fits").string();
  {
    FitsWriter w(fits);
    w.WriteEmptyPrimary();
    w.WriteTable("CATALOGUE", {{"OBSID", "", std::vector<std::string>{"101", "102"}},
                               {"TEFF", "K", std::vector<std::string>{"5800", ""}},
                               {"RA", "deg", std::vector<double>{10.5, 20.5}},
                               {"DESIGNATION", "", std::vector<double>{7, 8}}});
    w.Close();
  }
  const auto a = ReadCatalogue(fits);
  REQUIRE(a.size() == 2);
  CHECK(a[0].obsid == 101);
  CHECK(a[1].obsid == 102);
  CHECK(a[0].teff == 5800);
  CHECK(std::isnan(a[1].teff));  // an empty text cell is "not given", as in a CSV
  CHECK(a[1].ra == 20.5);
  CHECK(a[1].designation == "8");  // a number read as text
  CHECK(HasColumnNamed(CatalogueColumnNames(fits), "obsid"));
  CHECK_FALSE(HasColumnNamed(CatalogueColumnNames(fits), "obsid2"));
  const std::string bad = (dir / "bad.fits").string();
  {
    FitsWriter w(bad);
    w.WriteEmptyPrimary();
    w.WriteTable("CATALOGUE", {{"OBSID", "", std::vector<std::string>{"101", "1O2"}}});
    w.Close();
  }
  CHECK_THROWS_WITH(
      ReadCatalogue(bad),
      bad +
          ": column obsid row 2: '1O2' is not a number (the column holds text; expected numbers)");
  const auto csv = dir / "upper.csv";
  std::ofstream(csv) << "ObsID,TEFF\n5,6100\n";
  const auto c = ReadCatalogue(csv.string());
  CHECK(c[0].obsid == 5);
  CHECK(c[0].teff == 6100);
  const auto twice = dir / "twice.csv";
  std::ofstream(twice) << "obsid,teff,TEFF\n1,5000,6000\n";
  CHECK_THROWS_WITH(ReadCatalogue(twice.string()),
                    twice.string() + ": header line: column 'TEFF' appears twice (fields 2 and 3)");
}
