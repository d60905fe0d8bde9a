// Thin RAII wrapper over CFITSIO (after Rubin afw's fits.h). Only fits.cpp includes <fitsio.h>.
// Every failure throws FitsError carrying the file path, what was being done and CFITSIO's text.
// HDU numbers are 1-based as in CFITSIO (1 = primary).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <variant>
#include <vector>

namespace csst {

// Keywords every product HDU carries (brief: units, WCS and provenance on every FITS file).
struct Provenance {
  std::string detector = "N/A";      // DETNAME, e.g. "GU1"; DETECTOR holds its CSST chip id ("03")
  std::string filter = "N/A";        // FILTER: GU, GV, GI or N/A
  std::string descrip;               // DESCRIP: one line saying what the file holds
  std::string config_hash;           // CFGHASH: hash of the config sections the product depends on
  uint64_t seed = 0;                 // SEED: the run's random_seed
  std::vector<std::string> history;  // HISTORY cards
};

// UTC time for DATE cards: SOURCE_DATE_EPOCH when set (reproducible products), else now.
std::string FitsDateNow();

struct FitsColumn {
  std::string name;
  std::string unit;
  // One value per row, or `repeat` values per row (row-major) for array columns.
  std::variant<std::vector<double>, std::vector<float>, std::vector<int64_t>, std::vector<int32_t>,
               std::vector<uint8_t>, std::vector<std::string>>
      data;
  long repeat = 1;
};

class FitsWriter {
 public:
  // Creates (overwrites) the file at `path`.
  explicit FitsWriter(std::string path);
  ~FitsWriter();
  FitsWriter(const FitsWriter&) = delete;
  FitsWriter& operator=(const FitsWriter&) = delete;

  // The primary HDU of a product: no data, the provenance keys (Standard) of `p`. The one way the
  // products begin (the LAMOST-format and CSST L1 files write their own headers).
  void WritePrimary(const Provenance& p);
  void WriteEmptyPrimary();
  // Makes an existing HDU current again (to append rows after other HDUs were written).
  void MoveTo(const std::string& extname);
  // Image HDU of dims (NAXIS1 fastest). Writes as the primary if no HDU exists yet.
  void WriteImage(const std::string& extname, const std::vector<long>& dims,
                  const std::vector<double>& data);
  void WriteImage(const std::string& extname, const std::vector<long>& dims,
                  const std::vector<float>& data);
  void WriteImage(const std::string& extname, const std::vector<long>& dims,
                  const std::vector<int32_t>& data);
  // Creates an image HDU to be filled row by row (NAXIS1 = width) with WriteImageRow.
  void CreateImage(const std::string& extname, long width, long height);
  void WriteImageRow(long row0, const std::vector<float>& values);  // row0 is 0-based
  void WriteTable(const std::string& extname, const std::vector<FitsColumn>& columns);
  // A table written in chunks: CreateTable with the columns' layout (their data are ignored),
  // then AppendRows with the same columns, in order; rows are numbered from 0.
  void CreateTable(const std::string& extname, const std::vector<FitsColumn>& layout);
  void AppendRows(long first_row, const std::vector<FitsColumn>& columns);

  // Appends a copy of HDU `extname` of the FITS file `from` (header and data, streamed by CFITSIO):
  // a table written to a side file block by block joins the product after the tables before it.
  void CopyHdu(const std::string& from, const std::string& extname);

  // Keywords on the current HDU.
  void Key(const std::string& name, const std::string& value, const std::string& comment = "");
  void Key(const std::string& name, const char* value, const std::string& comment = "");
  void Key(const std::string& name, double value, const std::string& comment = "");
  void Key(const std::string& name, long value, const std::string& comment = "");
  void Key(const std::string& name, int value, const std::string& comment = "");
  void KeyBool(const std::string& name, bool value, const std::string& comment = "");
  void History(const std::string& text);
  void Comment(const std::string& text);
  // TELESCOP, INSTRUME, DETECTOR, FILTER, BUNIT, DATE, ORIGIN, CREATOR, CFGHASH, SEED, DESCRIP,
  // HISTORY on the current HDU.
  void Standard(const Provenance& p, const std::string& bunit);

  // Writes CHECKSUM/DATASUM on every HDU and closes. Called by the destructor if not called.
  void Close();
  const std::string& path() const { return path_; }

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  std::string path_;
};

// A number written as text (a table cell): blank is "not given" (NaN, true); otherwise true when
// the whole text, spaces around it aside, is one number. Shared by the FITS and CSV table readers.
bool ParseNumberText(const std::string& cell, double* value);

class FitsReader {
 public:
  explicit FitsReader(std::string path);
  ~FitsReader();
  FitsReader(const FitsReader&) = delete;
  FitsReader& operator=(const FitsReader&) = delete;

  int NumHdus();
  void MoveTo(int hdu);  // 1-based
  void MoveTo(const std::string& extname);
  bool HasHdu(const std::string& extname);
  bool IsImage();

  bool HasKey(const std::string& name);
  std::string KeyString(const std::string& name);  // throws naming the key if missing
  double KeyDouble(const std::string& name);
  long KeyLong(const std::string& name);
  std::optional<std::string> FindKeyString(const std::string& name);
  std::optional<double> FindKeyDouble(const std::string& name);

  std::vector<long> ImageDims();
  std::vector<double> ReadImage();      // whole image, NAXIS1 fastest
  std::vector<float> ReadImageFloat();  // likewise, in single precision (half the memory)

  long NumRows();
  bool HasColumn(const std::string& name);
  long ColumnRepeat(const std::string& name);
  std::string ColumnUnit(const std::string& name);          // TUNITn, "" if absent
  std::vector<double> ReadColumn(const std::string& name);  // all rows, repeat values per row
  // Rows first_row .. first_row + n_rows - 1 (0-based) only, so that a large table is read in
  // blocks.
  std::vector<double> ReadColumn(const std::string& name, long first_row, long n_rows);
  std::vector<std::string> ReadStringColumn(const std::string& name);
  std::vector<std::string> ReadStringColumn(const std::string& name, long first_row,
                                            long n_rows);  // 0-based

  const std::string& path() const { return path_; }

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  std::string path_;
};

}  // namespace csst
