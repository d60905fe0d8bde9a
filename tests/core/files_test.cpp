#include <fstream>

#include "core/errors.h"
#include "core/files.h"
#include "tests/test_util.h"

using namespace csst;
namespace fs = std::filesystem;

TEST_CASE("atomic outputs appear only on commit", "[files]") {
  const auto dir = test::TempDir("atomic");
  const auto target = dir / "product.txt";
  {
    AtomicOutput out(target);
    std::ofstream(out.temp()) << "half";
    CHECK(fs::exists(out.temp()));
  }  // not committed: the temp is removed and no product exists
  CHECK_FALSE(fs::exists(target));
  CHECK(fs::is_empty(dir));
  {
    AtomicOutput out(target);
    std::ofstream(out.temp()) << "whole";
    out.Commit();
  }
  CHECK(ReadText(target) == "whole");
}

TEST_CASE("directory products are replaced atomically and hashed by content", "[files]") {
  const auto dir = test::TempDir("atomic-dir");
  const auto target = dir / "cube";
  for (const std::string content : {"one", "two"}) {
    AtomicOutput out(target);
    fs::create_directories(out.temp());
    std::ofstream(out.temp() / "a.txt") << content;
    out.Commit();
  }
  CHECK(ReadText(target / "a.txt") == "two");
  const auto h = HashPath(target);
  CHECK(h.size() == 16);
  CHECK(HashPath(target) == h);
  std::ofstream(target / "a.txt") << "three";
  CHECK(HashPath(target) != h);
}

TEST_CASE("stale temps are removed", "[files]") {
  const auto dir = test::TempDir("stale");
  std::ofstream(dir / "x.fits.tmp.123") << "partial";
  fs::create_directories(dir / "cube.tmp.99");
  std::ofstream(dir / "keep.fits") << "done";
  CHECK(RemoveStaleTemps(dir) == 2);
  CHECK(fs::exists(dir / "keep.fits"));
  CHECK_THROWS_WITH(ReadText(dir / "missing"), Catch::Contains("missing: no such file"));
}

TEST_CASE("messages name the product, not its temporary file", "[files]") {
  CHECK(ProductNameOf("out/dr7/observations.fits.tmp.12345") == "out/dr7/observations.fits");
  CHECK(ProductNameOf(TempPathFor("a/b.fits")) == "a/b.fits");
  CHECK(ProductNameOf("a/b.fits") == "a/b.fits");
  CHECK(ProductNameOf("a/b.tmp.notapid") == "a/b.tmp.notapid");
}
