#include "io/fits.h"

#include <fitsio.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>

#include "core/errors.h"
#include "tests/test_util.h"

using namespace csst;

TEST_CASE("FITS image and table round trip with provenance and checksums", "[fits]") {
  const auto dir = test::TempDir("fits");
  const std::string path = (dir / "a.fits").string();
  {
    FitsWriter w(path);
    w.WriteEmptyPrimary();
    Provenance p;
    p.detector = "GV1";
    p.filter = "GV";
    p.descrip = "test";
    p.seed = 5;
    w.Standard(p, "");
    w.WriteImage("SCI", {3, 2}, std::vector<double>{1, 2, 3, 4, 5, 6});
    w.Key("CRVAL1", 4000.0, "first wavelength");
    w.WriteTable("TAB", {{"A", "Angstrom", std::vector<double>{1.5, 2.5}},
                         {"N", "", std::vector<std::string>{"x", "yz"}},
                         {"ARR", "", std::vector<float>{1, 2, 3, 4, 5, 6}, 3}});
    w.Close();
  }
  FitsReader r(path);
  CHECK(r.NumHdus() == 3);
  CHECK(r.KeyString("DETECTOR") == "02");  // the CSST chip id of GV1
  CHECK(r.KeyString("DETNAME") == "GV1");
  CHECK(r.KeyLong("SEED") == 5);
  CHECK(r.HasKey("CHECKSUM"));
  CHECK(r.HasKey("DATASUM"));
  r.MoveTo("SCI");
  CHECK(r.ImageDims() == std::vector<long>{3, 2});
  CHECK(r.ReadImage() == std::vector<double>{1, 2, 3, 4, 5, 6});
  CHECK(r.KeyDouble("CRVAL1") == 4000.0);
  r.MoveTo("TAB");
  CHECK(r.NumRows() == 2);
  CHECK(r.ReadColumn("A") == std::vector<double>{1.5, 2.5});
  CHECK(r.ReadStringColumn("N") == std::vector<std::string>{"x", "yz"});
  CHECK(r.ColumnRepeat("ARR") == 3);
  CHECK(r.ReadColumn("ARR")[4] == 5.0);
  CHECK_THROWS_WITH(r.ReadColumn("NOPE"), path + ": missing column NOPE");
  CHECK_THROWS_WITH(r.KeyString("NOPE"), path + ": missing keyword NOPE");
  CHECK_THROWS_AS(r.MoveTo("MISSING"), FitsError);
}

TEST_CASE("a column read in row blocks equals the same rows of the whole column", "[fits]") {
  const auto dir = test::TempDir("fits-blocks");
  const std::string path = (dir / "b.fits").string();
  std::vector<double> a, arr;
  for (int i = 0; i < 1000; ++i) {
    a.push_back(0.5 * i - 7);
    for (int k = 0; k < 3; ++k) arr.push_back(i * 10 + k);
  }
  {
    FitsWriter w(path);
    w.WriteTable(
        "TAB",
        {{"A", "", a}, {"ARR", "", arr, 3}, {"T", "", std::vector<std::string>(1000, "1.5")}});
    w.Close();
  }
  FitsReader r(path);
  r.MoveTo("TAB");
  std::vector<double> joined;
  for (long first = 0; first < 1000; first += 333) {  // blocks of 333, 333, 333 and 1 rows
    const auto block = r.ReadColumn("ARR", first, std::min(333L, 1000 - first));
    joined.insert(joined.end(), block.begin(), block.end());
  }
  CHECK(joined == arr);
  CHECK(r.ReadColumn("A", 998, 2) == std::vector<double>{492.0, 492.5});
  CHECK(r.ReadColumn("A", 1000, 0).empty());
  CHECK(r.ReadColumn("ARR", 5, 1) == std::vector<double>{50, 51, 52});
  CHECK(r.ReadColumn("T", 10, 2) ==
        std::vector<double>{1.5, 1.5});  // numbers stored as text: the same rows
  CHECK_THROWS_WITH(r.ReadColumn("A", 990, 20),
                    path + ": rows 991 to 1010 of column A requested, but the table has 1000");
  CHECK_THROWS_AS(r.ReadColumn("A", -1, 2), FitsError);
}

TEST_CASE("FITS reader errors name the file", "[fits]") {
  const auto dir = test::TempDir("fits-err");
  CHECK_THROWS_WITH(FitsReader((dir / "none.fits").string()),
                    (dir / "none.fits").string() + ": no such file");
  const auto junk = dir / "junk.fits";
  std::ofstream(junk) << "this is not a FITS file";
  CHECK_THROWS_WITH(FitsReader(junk.string()),
                    junk.string() + ": is not a FITS file (it does not begin with 'SIMPLE  =')");
  const auto empty = dir / "empty.fits";
  std::ofstream{empty};
  CHECK_THROWS_WITH(FitsReader(empty.string()),
                    empty.string() + ": is empty, expected a FITS file");
  CHECK_THROWS_WITH(FitsReader(dir.path().string()),
                    dir.path().string() + ": is a directory, expected a FITS file");
  // A gzip-compressed FITS file is FITS (CFITSIO reads it), not "not a FITS file".
  {
    FitsWriter w((dir / "z.fits").string());
    w.WriteImage("SCI", {2}, std::vector<double>{1, 2});
    w.Close();
  }
  REQUIRE(std::system(("gzip -f " + (dir / "z.fits").string()).c_str()) == 0);
  FitsReader z((dir / "z.fits.gz").string());
  CHECK(z.ReadImage() == std::vector<double>{1, 2});
}

namespace {
// A table written with CFITSIO directly, in forms the project's writer never makes: variable-length
// arrays (TFORM 'PD(3)') and numbers stored as text ('8A'), as outside tools write them.
void WriteForeignTable(const std::string& path, const std::vector<std::vector<double>>& vla,
                       const std::vector<std::string>& text) {
  int status = 0;
  fitsfile* f = nullptr;
  fits_create_file(&f, path.c_str(), &status);
  char* ttype[] = {const_cast<char*>("SPEC"), const_cast<char*>("TEFF"),
                   const_cast<char*>("OBSID")};
  char* tform[] = {const_cast<char*>("1PD(3)"), const_cast<char*>("8A"), const_cast<char*>("1K")};
  fits_create_tbl(f, BINARY_TBL, 0, 3, ttype, tform, nullptr, "T", &status);
  for (size_t r = 0; r < vla.size(); ++r) {
    auto row = vla[r];
    fits_write_col(f, TDOUBLE, 1, static_cast<LONGLONG>(r + 1), 1,
                   static_cast<LONGLONG>(row.size()), row.data(), &status);
    char* cell = const_cast<char*>(text[r].c_str());
    fits_write_col(f, TSTRING, 2, static_cast<LONGLONG>(r + 1), 1, 1, &cell, &status);
    LONGLONG id = 1000 + static_cast<LONGLONG>(r);
    fits_write_col(f, TLONGLONG, 3, static_cast<LONGLONG>(r + 1), 1, 1, &id, &status);
  }
  fits_close_file(f, &status);
  REQUIRE(status == 0);
}
}  // namespace

// Issue #29: variable-length columns read like fixed ones when every row has one length (not "holds
// 1 values per row"), and numbers stored as text read as numbers, with the row named when one is
// not.
TEST_CASE("FITS reader takes variable-length columns and numbers stored as text", "[fits]") {
  const auto dir = test::TempDir("fits-foreign");
  const std::string good = (dir / "good.fits").string();
  WriteForeignTable(good, {{1, 2, 3}, {4, 5, 6}}, {"5750.5", " 6000 "});
  FitsReader r(good);
  r.MoveTo("T");
  CHECK(r.ColumnRepeat("SPEC") == 3);
  CHECK(r.ReadColumn("SPEC") == std::vector<double>{1, 2, 3, 4, 5, 6});
  CHECK(r.ColumnRepeat("TEFF") == 1);
  CHECK(r.ReadColumn("TEFF") == std::vector<double>{5750.5, 6000});
  CHECK(r.ReadColumn("teff") == std::vector<double>{5750.5, 6000});  // FITS names match in any case
  CHECK(r.ReadStringColumn("OBSID") ==
        std::vector<std::string>{"1000", "1001"});  // a number read as text
  const std::string ragged = (dir / "ragged.fits").string();
  WriteForeignTable(ragged, {{1, 2, 3}, {4, 5}}, {"1", "x7"});
  FitsReader q(ragged);
  q.MoveTo("T");
  CHECK_THROWS_WITH(q.ReadColumn("SPEC"),
                    ragged +
                        ": variable-length column SPEC holds 3 values in row 1 and 2 in row "
                        "2: expected the same number in every row");
  CHECK_THROWS_WITH(
      q.ReadColumn("TEFF"),
      ragged +
          ": column TEFF row 2: 'x7' is not a number (the column holds text; expected numbers)");
}

TEST_CASE("SOURCE_DATE_EPOCH makes DATE reproducible", "[fits]") {
  ::setenv("SOURCE_DATE_EPOCH", "1700000000", 1);
  CHECK(FitsDateNow() == "2023-11-14T22:13:20");
  ::unsetenv("SOURCE_DATE_EPOCH");
}

TEST_CASE("written files pass fitsverify with no errors or warnings", "[fits]") {
  const auto dir = test::TempDir("fitsverify");
  const std::string path = (dir / "v.fits").string();
  {
    FitsWriter w(path);
    w.WriteEmptyPrimary();
    w.Standard({}, "");
    w.WriteImage("SCI", {4, 3}, std::vector<float>(12, 1.0f));
    w.Standard({}, "");
    w.WriteTable("T", {{"WAVELENGTH", "Angstrom", std::vector<double>{4000, 5000}}});
    w.Standard({}, "");
  }
  if (std::system("command -v fitsverify >/dev/null 2>&1") != 0) {
    WARN("SKIPPED: fitsverify is not installed (scripts/install-deps.sh installs it)");
    return;
  }
  const int rc = std::system(("fitsverify -q -e " + path + " | grep -q 'verification OK'").c_str());
  CHECK(rc == 0);
}

// Issue #29: CFITSIO's extended file-name syntax never applies to a user's paths ("CFITSIO error
// 125/366" for folders or files named with [ ], ( ) or a leading !).
TEST_CASE("FITS paths are taken literally: brackets, parentheses and ! are names", "[fits]") {
  const auto dir = test::TempDir("fits-names");
  for (const std::string name : {"run[1]/a.fits", "set(2)/b[SCI].fits", "!c.fits", "d.fits+1"}) {
    const auto path = dir / name;
    std::filesystem::create_directories(path.parent_path());
    {
      FitsWriter w(path.string());
      w.WriteImage("", {2, 1}, std::vector<double>{7, 8});
      w.Close();
    }
    INFO(name);
    REQUIRE(std::filesystem::exists(path));
    FitsReader r(path.string());
    CHECK(r.ReadImage() == std::vector<double>{7, 8});
  }
}
