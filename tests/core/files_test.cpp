#include "core/files.h"

#include <array>
#include <atomic>
#include <fstream>
#include <thread>
#include <vector>

#include "core/errors.h"
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

TEST_CASE(
    "a scratch file reads back what was appended, from several threads, and leaves nothing behind",
    "[files]") {
  const auto dir = test::TempDir("scratch");
  std::vector<std::array<uint64_t, 2>> at;
  std::vector<std::vector<char>> parts;
  {
    ScratchFile f(dir / "sub");
    CHECK(fs::is_empty(dir / "sub"));  // unlinked at once: no name, even while it is in use
    for (int p = 0; p < 40; ++p) {
      std::vector<char> bytes(static_cast<size_t>(1 + 977 * p));
      for (size_t i = 0; i < bytes.size(); ++i)
        bytes[i] = static_cast<char>((i * 31 + static_cast<size_t>(p)) % 251);
      at.push_back({f.Append(bytes), bytes.size()});
      parts.push_back(std::move(bytes));
    }
    CHECK(at[1][0] == 1);  // offsets follow the appended sizes
    CHECK(f.size() == at.back()[0] + at.back()[1]);
    std::vector<std::atomic<int>> same(parts.size());
    std::vector<std::thread> readers;
    for (int t = 0; t < 4; ++t)  // four threads at once, each reading every part, last first
      readers.emplace_back([&] {
        for (size_t k = parts.size(); k-- > 0;)
          if (f.Read(at[k][0], at[k][1]) == parts[k]) ++same[k];
      });
    for (auto& t : readers) t.join();
    for (size_t p = 0; p < parts.size(); ++p) CHECK(same[p] == 4);
    CHECK_THROWS_AS(f.Read(f.size() - 1, 2), IoError);
  }
  CHECK(fs::is_empty(dir / "sub"));
  CHECK_THROWS_WITH(ScratchFile("/proc/no-such-dir"),
                    Catch::Contains("/proc/no-such-dir: cannot create a scratch file"));
}
