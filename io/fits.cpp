#include "io/fits.h"

#include <fitsio.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <limits>

#include "build_config.h"
#include "core/detectors.h"
#include "core/errors.h"

namespace csst {
namespace {

struct Closer {
  void operator()(fitsfile* f) const {
    int status = 0;
    if (f) fits_close_file(f, &status);
  }
};
using FitsPtr = std::unique_ptr<fitsfile, Closer>;

// What the operating system says about a failed create or write of `path`: CFITSIO reports only
// "couldn't create the named file" or "error writing", whatever the cause.
std::string SystemCause(int status, const std::string& path, int saved_errno) {
  if (status != FILE_NOT_CREATED && status != WRITE_ERROR && status != FILE_NOT_OPENED) return "";
  const std::string clean = path.substr(0, path.find_first_of("[("));
  std::filesystem::path dir = std::filesystem::path(clean).parent_path();
  if (dir.empty()) dir = ".";
  std::error_code ec;
  if (status != FILE_NOT_OPENED) {
    if (!std::filesystem::is_directory(dir, ec))
      return "directory " + dir.string() + " does not exist";
    if (::access(dir.c_str(), W_OK) != 0)
      return "permission denied: directory " + dir.string() + " is not writable";
    struct statvfs vfs {};
    if (saved_errno == ENOSPC || saved_errno == EDQUOT ||
        (::statvfs(dir.c_str(), &vfs) == 0 && vfs.f_bavail * vfs.f_frsize < (1u << 20))) {
      return "no space left on device (the file system of " + dir.string() + " is full)";
    }
  }
  if (saved_errno == EROFS || saved_errno == EIO || saved_errno == EACCES)
    return std::strerror(saved_errno);
  return "";
}

void CheckStatus(int status, const std::string& path, const std::string& what) {
  if (status == 0) return;
  const int saved_errno = errno;
  const std::string cause = SystemCause(status, path, saved_errno);
  if (!cause.empty()) {
    fits_clear_errmsg();
    throw FitsError(path + ": " + what + ": " + cause);
  }
  char text[FLEN_STATUS] = {0};
  fits_get_errstatus(status, text);
  std::string detail = text;
  char msg[FLEN_ERRMSG];
  std::string stack;
  while (fits_read_errmsg(msg)) {
    if (!stack.empty()) stack += "; ";
    stack += msg;
  }
  if (!stack.empty()) detail += " (" + stack + ")";
  throw FitsError(path + ": " + what + ": CFITSIO error " + std::to_string(status) + ": " + detail);
}

template <typename T>
struct FitsType;
template <>
struct FitsType<double> {
  static constexpr int kData = TDOUBLE, kImg = DOUBLE_IMG;
  static constexpr char kForm = 'D';
};
template <>
struct FitsType<float> {
  static constexpr int kData = TFLOAT, kImg = FLOAT_IMG;
  static constexpr char kForm = 'E';
};
template <>
struct FitsType<int64_t> {
  static constexpr int kData = TLONGLONG, kImg = LONGLONG_IMG;
  static constexpr char kForm = 'K';
};
template <>
struct FitsType<int32_t> {
  static constexpr int kData = TINT, kImg = LONG_IMG;
  static constexpr char kForm = 'J';
};
template <>
struct FitsType<uint8_t> {
  static constexpr int kData = TBYTE, kImg = BYTE_IMG;
  static constexpr char kForm = 'B';
};

}  // namespace

std::string FitsDateNow() {
  std::time_t t = std::time(nullptr);
  if (const char* epoch = std::getenv("SOURCE_DATE_EPOCH")) t = std::strtoll(epoch, nullptr, 10);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S", &tm);
  return buf;
}

// ---------------------------------------------------------------------------------------------
struct FitsWriter::Impl {
  FitsPtr f;
  int nhdu = 0;
};

FitsWriter::FitsWriter(std::string path) : impl_(new Impl), path_(std::move(path)) {
  std::error_code ec;
  std::filesystem::remove(path_, ec);
  int status = 0;
  fitsfile* f = nullptr;
  // The _diskfile calls take the path literally: CFITSIO's extended file-name syntax ([ext],
  // (template),
  // !, filters) never applies to a user's paths (a folder named "run[1]" is a folder).
  fits_create_diskfile(&f, path_.c_str(), &status);
  CheckStatus(status, path_, "creating file");
  impl_->f.reset(f);
}

FitsWriter::~FitsWriter() {
  try {
    Close();
  } catch (...) {
  }
}

void FitsWriter::MoveTo(const std::string& extname) {
  int status = 0;
  fits_movnam_hdu(impl_->f.get(), ANY_HDU, const_cast<char*>(extname.c_str()), 0, &status);
  CheckStatus(status, path_, "moving to HDU " + extname);
}

void FitsWriter::CopyHdu(const std::string& from, const std::string& extname) {
  if (impl_->nhdu == 0) WriteEmptyPrimary();
  int status = 0;
  fitsfile* in = nullptr;
  fits_open_diskfile(&in, from.c_str(), READONLY, &status);
  FitsPtr source(status == 0 ? in : nullptr);
  if (status != 0 && in) {
    int s2 = 0;
    fits_close_file(in, &s2);
  }
  CheckStatus(status, from, "opening file to copy HDU " + extname + " into " + path_);
  fits_movnam_hdu(source.get(), ANY_HDU, const_cast<char*>(extname.c_str()), 0, &status);
  CheckStatus(status, from, "moving to HDU " + extname);
  fits_copy_hdu(source.get(), impl_->f.get(), 0, &status);
  CheckStatus(status, path_, "copying HDU " + extname + " from " + from);
  ++impl_->nhdu;
}

void FitsWriter::WritePrimary(const Provenance& p) {
  WriteEmptyPrimary();
  Standard(p, "");
}

void FitsWriter::WriteEmptyPrimary() {
  int status = 0;
  fits_create_img(impl_->f.get(), BYTE_IMG, 0, nullptr, &status);
  CheckStatus(status, path_, "writing empty primary HDU");
  ++impl_->nhdu;
}

namespace {
template <typename T>
void WriteImageT(fitsfile* f, int& nhdu, const std::string& path, const std::string& extname,
                 const std::vector<long>& dims, const std::vector<T>& data) {
  long n = 1;
  for (long d : dims) n *= d;
  if (n != static_cast<long>(data.size())) {
    throw FitsError(path + ": image " + extname + " has " + std::to_string(data.size()) +
                    " values for dims of " + std::to_string(n));
  }
  int status = 0;
  std::vector<long> naxes(dims);
  fits_create_img(f, FitsType<T>::kImg, static_cast<int>(naxes.size()), naxes.data(), &status);
  CheckStatus(status, path, "creating image HDU " + extname);
  ++nhdu;
  if (!extname.empty()) {
    fits_write_key(f, TSTRING, "EXTNAME", const_cast<char*>(extname.c_str()), "extension name",
                   &status);
  }
  if (n > 0) {
    fits_write_img(f, FitsType<T>::kData, 1, n, const_cast<T*>(data.data()), &status);
  }
  CheckStatus(status, path, "writing image HDU " + extname);
}
}  // namespace

void FitsWriter::WriteImage(const std::string& extname, const std::vector<long>& dims,
                            const std::vector<double>& data) {
  WriteImageT(impl_->f.get(), impl_->nhdu, path_, extname, dims, data);
}
void FitsWriter::WriteImage(const std::string& extname, const std::vector<long>& dims,
                            const std::vector<float>& data) {
  WriteImageT(impl_->f.get(), impl_->nhdu, path_, extname, dims, data);
}
void FitsWriter::WriteImage(const std::string& extname, const std::vector<long>& dims,
                            const std::vector<int32_t>& data) {
  WriteImageT(impl_->f.get(), impl_->nhdu, path_, extname, dims, data);
}

void FitsWriter::CreateImage(const std::string& extname, long width, long height) {
  int status = 0;
  long naxes[2] = {width, height};
  fits_create_img(impl_->f.get(), FLOAT_IMG, 2, naxes, &status);
  ++impl_->nhdu;
  if (!extname.empty()) {
    fits_write_key(impl_->f.get(), TSTRING, "EXTNAME", const_cast<char*>(extname.c_str()),
                   "extension name", &status);
  }
  CheckStatus(status, path_, "creating image HDU " + extname);
}

void FitsWriter::WriteImageRow(long row0, const std::vector<float>& values) {
  int status = 0;
  long fpixel[2] = {1, row0 + 1};
  fits_write_pix(impl_->f.get(), TFLOAT, fpixel, static_cast<long>(values.size()),
                 const_cast<float*>(values.data()), &status);
  CheckStatus(status, path_, "writing image row " + std::to_string(row0));
}

namespace {
std::string ColumnForm(const FitsColumn& c) {
  return std::visit(
      [&](const auto& v) -> std::string {
        using V = typename std::decay_t<decltype(v)>::value_type;
        if constexpr (std::is_same_v<V, std::string>) {
          size_t w = c.repeat > 1 ? static_cast<size_t>(c.repeat) : 1;
          for (const auto& s : v) w = std::max(w, s.size());
          return std::to_string(w) + "A";
        } else {
          return std::to_string(c.repeat) + FitsType<V>::kForm;
        }
      },
      c.data);
}

long ColumnRows(const FitsColumn& c) {
  return std::visit(
      [&](const auto& v) -> long {
        using V = typename std::decay_t<decltype(v)>::value_type;
        if constexpr (std::is_same_v<V, std::string>) {
          return static_cast<long>(v.size());
        } else {
          if (static_cast<long>(v.size()) % c.repeat != 0) return -1;
          return static_cast<long>(v.size()) / c.repeat;
        }
      },
      c.data);
}

void WriteColumns(fitsfile* f, const std::string& path, const std::string& extname, long first_row,
                  const std::vector<FitsColumn>& columns) {
  int status = 0;
  for (size_t i = 0; i < columns.size(); ++i) {
    const int colnum = static_cast<int>(i) + 1;
    std::visit(
        [&](const auto& v) {
          using V = typename std::decay_t<decltype(v)>::value_type;
          if (v.empty()) return;
          if constexpr (std::is_same_v<V, std::string>) {
            std::vector<char*> ptrs;
            for (const auto& s : v) ptrs.push_back(const_cast<char*>(s.c_str()));
            fits_write_col(f, TSTRING, colnum, first_row + 1, 1, static_cast<long>(v.size()),
                           ptrs.data(), &status);
          } else {
            fits_write_col(f, FitsType<V>::kData, colnum, first_row + 1, 1,
                           static_cast<long>(v.size()), const_cast<V*>(v.data()), &status);
          }
        },
        columns[i].data);
    CheckStatus(status, path, "writing column " + columns[i].name + " of table " + extname);
  }
}
}  // namespace

void FitsWriter::CreateTable(const std::string& extname, const std::vector<FitsColumn>& layout) {
  if (impl_->nhdu == 0) WriteEmptyPrimary();
  std::vector<std::string> names, forms, units;
  for (const auto& c : layout) {
    names.push_back(c.name);
    forms.push_back(ColumnForm(c));
    units.push_back(c.unit);
  }
  std::vector<char*> ttype, tform, tunit;
  for (size_t i = 0; i < layout.size(); ++i) {
    ttype.push_back(names[i].data());
    tform.push_back(forms[i].data());
    tunit.push_back(units[i].data());
  }
  int status = 0;
  fits_create_tbl(impl_->f.get(), BINARY_TBL, 0, static_cast<int>(layout.size()), ttype.data(),
                  tform.data(), tunit.data(), extname.c_str(), &status);
  CheckStatus(status, path_, "creating table " + extname);
  // Every column states its unit (issue #30 item 6): CFITSIO leaves TUNITn out for an empty one, so
  // a dimensionless column (a flag, an id, a name, a ratio) gets an explicit empty TUNITn that says
  // so.
  for (size_t i = 0; i < layout.size(); ++i) {
    if (!units[i].empty()) continue;
    const std::string key = "TUNIT" + std::to_string(i + 1);
    char empty[] = "";
    fits_update_key(impl_->f.get(), TSTRING, key.c_str(), empty, "dimensionless (no unit)",
                    &status);
    CheckStatus(status, path_, "writing " + key + " of table " + extname);
  }
  ++impl_->nhdu;
}

void FitsWriter::AppendRows(long first_row, const std::vector<FitsColumn>& columns) {
  long rows = -1;
  for (const auto& c : columns) {
    const long r = ColumnRows(c);
    if (r < 0 || (rows >= 0 && r != rows)) {
      throw FitsError(path_ + ": column " + c.name +
                      " has a row count that differs from the other columns");
    }
    rows = r;
  }
  WriteColumns(impl_->f.get(), path_, "", first_row, columns);
}

void FitsWriter::WriteTable(const std::string& extname, const std::vector<FitsColumn>& columns) {
  long nrows = -1;
  for (const auto& c : columns) {
    const long len = ColumnRows(c);
    if (len < 0 || (nrows >= 0 && len != nrows)) {
      throw FitsError(path_ + ": table " + extname + " column " + c.name +
                      " has a row count that differs from the other columns");
    }
    nrows = len;
  }
  CreateTable(extname, columns);
  WriteColumns(impl_->f.get(), path_, extname, 0, columns);
}

void FitsWriter::Key(const std::string& name, const std::string& value,
                     const std::string& comment) {
  int status = 0;
  fits_update_key(impl_->f.get(), TSTRING, name.c_str(), const_cast<char*>(value.c_str()),
                  comment.c_str(), &status);
  CheckStatus(status, path_, "writing keyword " + name);
}
void FitsWriter::Key(const std::string& name, const char* value, const std::string& comment) {
  Key(name, std::string(value), comment);
}
void FitsWriter::Key(const std::string& name, double value, const std::string& comment) {
  int status = 0;
  fits_update_key_dbl(impl_->f.get(), name.c_str(), value, -15, comment.c_str(), &status);
  CheckStatus(status, path_, "writing keyword " + name);
}
void FitsWriter::Key(const std::string& name, long value, const std::string& comment) {
  int status = 0;
  fits_update_key_lng(impl_->f.get(), name.c_str(), value, comment.c_str(), &status);
  CheckStatus(status, path_, "writing keyword " + name);
}
void FitsWriter::Key(const std::string& name, int value, const std::string& comment) {
  Key(name, static_cast<long>(value), comment);
}
void FitsWriter::KeyBool(const std::string& name, bool value, const std::string& comment) {
  int status = 0;
  int v = value ? 1 : 0;
  fits_update_key(impl_->f.get(), TLOGICAL, name.c_str(), &v, comment.c_str(), &status);
  CheckStatus(status, path_, "writing keyword " + name);
}
void FitsWriter::History(const std::string& text) {
  int status = 0;
  fits_write_history(impl_->f.get(), text.c_str(), &status);
  CheckStatus(status, path_, "writing HISTORY");
}
void FitsWriter::Comment(const std::string& text) {
  int status = 0;
  fits_write_comment(impl_->f.get(), text.c_str(), &status);
  CheckStatus(status, path_, "writing COMMENT");
}

void FitsWriter::Standard(const Provenance& p, const std::string& bunit) {
  Key("TELESCOP", "CSST", "China Space Station Telescope");
  Key("INSTRUME", "SLS", "slitless spectroscopy (simulated or calibrated)");
  Key("DETECTOR", ChipKeyword(p.detector), "CSST chip id (SLS data model), or N/A");
  Key("DETNAME", p.detector, "detector name: band and index (GU1 .. GI4)");
  Key("FILTER", p.filter, "slitless band (GU, GV, GI)");
  int status = 0, type = 0;
  fits_get_hdu_type(impl_->f.get(), &type, &status);
  // Binary tables carry units in TUNITn; fitsverify rejects BUNIT there.
  if (type == IMAGE_HDU)
    Key("BUNIT", bunit, bunit.empty() ? "dimensionless (no unit)" : "unit of the data in this HDU");
  Key("DATE", FitsDateNow(), "UTC file creation time");
  Key("ORIGIN", "csst-flatcube", "institution or software that wrote the file");
  Key("CREATOR", std::string("csst-flatcube ") + CSST_VERSION + " (" + CSST_GIT_DESCRIBE + ")",
      "software and version");
  Key("CFGHASH", p.config_hash.empty() ? std::string("none") : p.config_hash,
      "hash of the config sections used");
  Key("SEED", static_cast<long>(p.seed), "random_seed of the run");
  Key("DESCRIP", p.descrip.empty() ? std::string("csst-flatcube product") : p.descrip,
      "what this file holds");
  for (const auto& h : p.history) History(h);
}

namespace {
// 32-bit ones' complement sum of big-endian words (FITS checksum convention, Seaman et al.).
uint32_t OnesComplementSum(const unsigned char* p, size_t n, uint64_t start) {
  uint64_t sum = start;
  for (size_t i = 0; i + 3 < n; i += 4) {
    sum +=
        (uint64_t(p[i]) << 24) | (uint64_t(p[i + 1]) << 16) | (uint64_t(p[i + 2]) << 8) | p[i + 3];
    sum = (sum & 0xffffffffULL) + (sum >> 32);
  }
  while (sum >> 32) sum = (sum & 0xffffffffULL) + (sum >> 32);
  return static_cast<uint32_t>(sum);
}
}  // namespace

void FitsWriter::Close() {
  if (!impl_ || !impl_->f) return;
  int status = 0;
  int n = 0;
  fitsfile* f = impl_->f.get();
  // CFITSIO stamps the current time into the checksum comments, which would make identical runs
  // differ. So: let CFITSIO write DATASUM, fix both comments, zero CHECKSUM, note where each
  // header lies, close, then compute and patch CHECKSUM in place with the same algorithm.
  struct HduSpan {
    long long head = 0, data = 0;
    unsigned long datasum = 0;
  };
  std::vector<HduSpan> spans;
  fits_get_num_hdus(f, &n, &status);
  for (int i = 1; i <= n && status == 0; ++i) {
    int type = 0;
    fits_movabs_hdu(f, i, &type, &status);
    fits_write_chksum(f, &status);
    fits_modify_comment(f, "CHECKSUM", "HDU checksum (ASCII 1's complement)", &status);
    fits_modify_comment(f, "DATASUM", "data unit checksum", &status);
    char zero[] = "0000000000000000";
    fits_modify_key_str(f, "CHECKSUM", zero, "&", &status);
    char value[FLEN_VALUE] = {0};
    fits_read_key(f, TSTRING, "DATASUM", value, nullptr, &status);
    HduSpan span;
    span.datasum = std::strtoul(value, nullptr, 10);
    long long dataend = 0;
    fits_get_hduaddrll(f, &span.head, &span.data, &dataend, &status);
    spans.push_back(span);
  }
  CheckStatus(status, path_, "writing checksums");
  fitsfile* raw = impl_->f.release();
  fits_close_file(raw, &status);
  CheckStatus(status, path_, "closing file");

  std::FILE* fp = std::fopen(path_.c_str(), "r+b");
  if (!fp) throw FitsError(path_ + ": cannot reopen to write checksums");
  for (const auto& s : spans) {
    std::vector<unsigned char> header(static_cast<size_t>(s.data - s.head));
    std::fseek(fp, static_cast<long>(s.head), SEEK_SET);
    if (std::fread(header.data(), 1, header.size(), fp) != header.size()) {
      std::fclose(fp);
      throw FitsError(path_ + ": short read while writing checksums");
    }
    const uint32_t sum = OnesComplementSum(header.data(), header.size(), s.datasum);
    char ascii[17] = {0};
    fits_encode_chksum(sum, 1, ascii);
    for (size_t card = 0; card + 80 <= header.size(); card += 80) {
      if (std::memcmp(&header[card], "CHECKSUM= '", 11) == 0) {
        std::fseek(fp, static_cast<long>(s.head + card + 11), SEEK_SET);
        std::fwrite(ascii, 1, 16, fp);
        break;
      }
    }
  }
  if (std::fclose(fp) != 0) throw FitsError(path_ + ": cannot write checksums");
}

// ---------------------------------------------------------------------------------------------
struct FitsReader::Impl {
  FitsPtr f;
};

FitsReader::FitsReader(std::string path) : impl_(new Impl), path_(std::move(path)) {
  std::error_code ec;
  if (!std::filesystem::exists(path_, ec)) throw FitsError(path_ + ": no such file");
  if (std::filesystem::is_directory(path_, ec))
    throw FitsError(path_ + ": is a directory, expected a FITS file");
  {
    // Every FITS file begins with the card "SIMPLE  =": anything else (an empty file, a CSV, a
    // truncated download) is named as what it is instead of CFITSIO's read-error numbers.
    std::FILE* in = std::fopen(path_.c_str(), "rb");
    char head[9] = {0};
    const size_t got = in ? std::fread(head, 1, 9, in) : 0;
    if (in) std::fclose(in);
    // CFITSIO opens compressed files itself: gzip (1f 8b), Unix compress (1f 9d), pack (1f 1e), zip
    // ("PK").
    const auto b0 = static_cast<unsigned char>(head[0]), b1 = static_cast<unsigned char>(head[1]);
    const bool compressed = got >= 2 && ((b0 == 0x1f && (b1 == 0x8b || b1 == 0x9d || b1 == 0x1e)) ||
                                         (b0 == 'P' && b1 == 'K'));
    if (in && !compressed && (got < 9 || std::memcmp(head, "SIMPLE  =", 9) != 0)) {
      throw FitsError(path_ + (got == 0
                                   ? ": is empty, expected a FITS file"
                                   : ": is not a FITS file (it does not begin with 'SIMPLE  =')"));
    }
  }
  int status = 0;
  fitsfile* f = nullptr;
  fits_open_diskfile(&f, path_.c_str(), READONLY, &status);
  if (status != 0 && f) {
    int s2 = 0;
    fits_close_file(f, &s2);
  }
  CheckStatus(status, path_, "opening file");
  impl_->f.reset(f);
}

FitsReader::~FitsReader() = default;

int FitsReader::NumHdus() {
  int status = 0, n = 0;
  fits_get_num_hdus(impl_->f.get(), &n, &status);
  CheckStatus(status, path_, "counting HDUs");
  return n;
}

void FitsReader::MoveTo(int hdu) {
  int status = 0, type = 0;
  fits_movabs_hdu(impl_->f.get(), hdu, &type, &status);
  CheckStatus(status, path_, "moving to HDU " + std::to_string(hdu));
}

void FitsReader::MoveTo(const std::string& extname) {
  int status = 0;
  fits_movnam_hdu(impl_->f.get(), ANY_HDU, const_cast<char*>(extname.c_str()), 0, &status);
  CheckStatus(status, path_, "moving to HDU '" + extname + "' (missing HDU?)");
}

bool FitsReader::HasHdu(const std::string& extname) {
  int status = 0, cur = 0;
  fits_get_hdu_num(impl_->f.get(), &cur);
  fits_movnam_hdu(impl_->f.get(), ANY_HDU, const_cast<char*>(extname.c_str()), 0, &status);
  const bool found = status == 0;
  fits_clear_errmsg();
  status = 0;
  int type = 0;
  fits_movabs_hdu(impl_->f.get(), cur, &type, &status);
  return found;
}

bool FitsReader::IsImage() {
  int status = 0, type = 0;
  fits_get_hdu_type(impl_->f.get(), &type, &status);
  CheckStatus(status, path_, "reading HDU type");
  return type == IMAGE_HDU;
}

bool FitsReader::HasKey(const std::string& name) {
  char card[FLEN_CARD];
  int status = 0;
  fits_read_card(impl_->f.get(), name.c_str(), card, &status);
  fits_clear_errmsg();
  return status == 0;
}

std::optional<std::string> FitsReader::FindKeyString(const std::string& name) {
  if (!HasKey(name)) return std::nullopt;
  char value[FLEN_VALUE] = {0};
  int status = 0;
  fits_read_key(impl_->f.get(), TSTRING, name.c_str(), value, nullptr, &status);
  CheckStatus(status, path_, "reading keyword " + name);
  return std::string(value);
}

std::optional<double> FitsReader::FindKeyDouble(const std::string& name) {
  if (!HasKey(name)) return std::nullopt;
  double v = 0;
  int status = 0;
  fits_read_key(impl_->f.get(), TDOUBLE, name.c_str(), &v, nullptr, &status);
  CheckStatus(status, path_, "reading keyword " + name + " as a number");
  return v;
}

std::string FitsReader::KeyString(const std::string& name) {
  auto v = FindKeyString(name);
  if (!v) throw FitsError(path_ + ": missing keyword " + name);
  return *v;
}

double FitsReader::KeyDouble(const std::string& name) {
  auto v = FindKeyDouble(name);
  if (!v) throw FitsError(path_ + ": missing keyword " + name);
  return *v;
}

long FitsReader::KeyLong(const std::string& name) {
  if (!HasKey(name)) throw FitsError(path_ + ": missing keyword " + name);
  long v = 0;
  int status = 0;
  fits_read_key(impl_->f.get(), TLONG, name.c_str(), &v, nullptr, &status);
  CheckStatus(status, path_, "reading keyword " + name + " as an integer");
  return v;
}

std::vector<long> FitsReader::ImageDims() {
  int status = 0, naxis = 0;
  fits_get_img_dim(impl_->f.get(), &naxis, &status);
  CheckStatus(status, path_, "reading image dimensions");
  std::vector<long> dims(naxis);
  if (naxis > 0) fits_get_img_size(impl_->f.get(), naxis, dims.data(), &status);
  CheckStatus(status, path_, "reading image size");
  return dims;
}

namespace {
template <typename T>
std::vector<T> ReadWholeImage(fitsfile* f, const std::vector<long>& dims, int type,
                              const std::string& path) {
  long n = dims.empty() ? 0 : 1;
  for (long d : dims) n *= d;
  std::vector<T> data(static_cast<size_t>(n));
  if (n == 0) return data;
  int status = 0, anynul = 0;
  T nulval = 0;
  fits_read_img(f, type, 1, n, &nulval, data.data(), &anynul, &status);
  CheckStatus(status, path, "reading image data");
  return data;
}
}  // namespace

std::vector<double> FitsReader::ReadImage() {
  return ReadWholeImage<double>(impl_->f.get(), ImageDims(), TDOUBLE, path_);
}

std::vector<float> FitsReader::ReadImageFloat() {
  return ReadWholeImage<float>(impl_->f.get(), ImageDims(), TFLOAT, path_);
}

long FitsReader::NumRows() {
  int status = 0;
  long n = 0;
  fits_get_num_rows(impl_->f.get(), &n, &status);
  CheckStatus(status, path_, "reading table row count");
  return n;
}

namespace {
int ColumnNumber(fitsfile* f, const std::string& path, const std::string& name) {
  int status = 0, colnum = 0;
  fits_get_colnum(f, CASEINSEN, const_cast<char*>(name.c_str()), &colnum, &status);
  if (status != 0) {
    fits_clear_errmsg();
    throw FitsError(path + ": missing column " + name);
  }
  return colnum;
}
}  // namespace

bool FitsReader::HasColumn(const std::string& name) {
  int status = 0, colnum = 0;
  fits_get_colnum(impl_->f.get(), CASEINSEN, const_cast<char*>(name.c_str()), &colnum, &status);
  fits_clear_errmsg();
  return status == 0;
}

namespace {
// The length every row of a variable-length column (TFORM 'PD(574)', 'QE(...)') holds: the
// readers take a table of fixed-width rows, so rows of different lengths are refused by name.
long VariableRowLength(fitsfile* f, const std::string& path, const std::string& name, int colnum,
                       long rows) {
  long common = -1, first_row = 0;
  for (long r = 1; r <= rows; ++r) {
    int status = 0;
    LONGLONG len = 0, offset = 0;
    fits_read_descriptll(f, colnum, r, &len, &offset, &status);
    CheckStatus(
        status, path,
        "reading the variable-length descriptor of column " + name + " row " + std::to_string(r));
    if (common < 0) {
      common = static_cast<long>(len);
      first_row = r;
    } else if (static_cast<long>(len) != common) {
      throw FitsError(path + ": variable-length column " + name + " holds " +
                      std::to_string(common) + " values in row " + std::to_string(first_row) +
                      " and " + std::to_string(len) + " in row " + std::to_string(r) +
                      ": expected the same number in every row");
    }
  }
  return common < 0 ? 0 : common;
}

// A number written as text in a table cell, named by row when it is not one.
double ParseCell(const std::string& cell, const std::string& path, const std::string& name,
                 long row) {
  double x = 0;
  if (!ParseNumberText(cell, &x)) {
    const auto first = cell.find_first_not_of(" \t"), last = cell.find_last_not_of(" \t");
    throw FitsError(path + ": column " + name + " row " + std::to_string(row) + ": '" +
                    cell.substr(first, last - first + 1) +
                    "' is not a number (the column holds text; expected numbers)");
  }
  return x;
}
}  // namespace

bool ParseNumberText(const std::string& cell, double* value) {
  const auto first = cell.find_first_not_of(" \t");
  if (first == std::string::npos) {  // blank: not given
    *value = std::numeric_limits<double>::quiet_NaN();
    return true;
  }
  const auto last = cell.find_last_not_of(" \t");
  const std::string t = cell.substr(first, last - first + 1);
  size_t used = 0;
  try {
    *value = std::stod(t, &used);
  } catch (...) {
    return false;
  }
  return used == t.size();
}

long FitsReader::ColumnRepeat(const std::string& name) {
  const int colnum = ColumnNumber(impl_->f.get(), path_, name);
  int status = 0, type = 0;
  long repeat = 0, width = 0;
  fits_get_coltype(impl_->f.get(), colnum, &type, &repeat, &width, &status);
  CheckStatus(status, path_, "reading type of column " + name);
  if (type < 0) return VariableRowLength(impl_->f.get(), path_, name, colnum, NumRows());
  if (type == TSTRING) return 1;  // one number written as text per row
  return repeat;
}

std::string FitsReader::ColumnUnit(const std::string& name) {
  const int colnum = ColumnNumber(impl_->f.get(), path_, name);
  return FindKeyString("TUNIT" + std::to_string(colnum)).value_or("");
}

std::vector<double> FitsReader::ReadColumn(const std::string& name) {
  const int colnum = ColumnNumber(impl_->f.get(), path_, name);
  const long rows = NumRows();
  int status = 0, type = 0;
  long repeat = 0, width = 0;
  fits_get_coltype(impl_->f.get(), colnum, &type, &repeat, &width, &status);
  CheckStatus(status, path_, "reading type of column " + name);
  if (type == TSTRING) {
    const auto cells = ReadStringColumn(name);
    std::vector<double> out(cells.size());
    for (size_t i = 0; i < cells.size(); ++i)
      out[i] = ParseCell(cells[i], path_, name, static_cast<long>(i) + 1);
    return out;
  }
  if (type < 0) {  // variable-length: read row by row, every row the same length
    const long len = VariableRowLength(impl_->f.get(), path_, name, colnum, rows);
    std::vector<double> data(static_cast<size_t>(rows * len));
    for (long r = 1; r <= rows && len > 0; ++r) {
      int anynul = 0;
      double nulval = 0;
      fits_read_col(impl_->f.get(), TDOUBLE, colnum, r, 1, len, &nulval,
                    data.data() + (r - 1) * len, &anynul, &status);
      CheckStatus(status, path_, "reading column " + name + " row " + std::to_string(r));
    }
    return data;
  }
  std::vector<double> data(static_cast<size_t>(rows * repeat));
  if (data.empty()) return data;
  int anynul = 0;
  double nulval = 0;
  fits_read_col(impl_->f.get(), TDOUBLE, colnum, 1, 1, rows * repeat, &nulval, data.data(), &anynul,
                &status);
  CheckStatus(status, path_, "reading column " + name);
  return data;
}

std::vector<double> FitsReader::ReadColumn(const std::string& name, long first_row, long n_rows) {
  const long rows = NumRows();
  if (first_row < 0 || n_rows < 0 || first_row + n_rows > rows) {
    throw FitsError(path_ + ": rows " + std::to_string(first_row + 1) + " to " +
                    std::to_string(first_row + n_rows) + " of column " + name +
                    " requested, but the table has " + std::to_string(rows));
  }
  const int colnum = ColumnNumber(impl_->f.get(), path_, name);
  int status = 0, type = 0;
  long repeat = 0, width = 0;
  fits_get_coltype(impl_->f.get(), colnum, &type, &repeat, &width, &status);
  CheckStatus(status, path_, "reading type of column " + name);
  if (type == TSTRING || type < 0) {  // text or variable-length cells: read whole, keep the block
    const auto all = ReadColumn(name);
    const size_t per = rows > 0 ? all.size() / static_cast<size_t>(rows) : 0;
    return std::vector<double>(all.begin() + static_cast<long>(per) * first_row,
                               all.begin() + static_cast<long>(per) * (first_row + n_rows));
  }
  std::vector<double> data(static_cast<size_t>(n_rows * repeat));
  if (data.empty()) return data;
  int anynul = 0;
  double nulval = 0;
  fits_read_col(impl_->f.get(), TDOUBLE, colnum, first_row + 1, 1, n_rows * repeat, &nulval,
                data.data(), &anynul, &status);
  CheckStatus(status, path_,
              "reading column " + name + " rows " + std::to_string(first_row + 1) + " to " +
                  std::to_string(first_row + n_rows));
  return data;
}

std::vector<std::string> FitsReader::ReadStringColumn(const std::string& name) {
  return ReadStringColumn(name, 0, NumRows());
}

std::vector<std::string> FitsReader::ReadStringColumn(const std::string& name, long first_row,
                                                      long n_rows) {
  const int colnum = ColumnNumber(impl_->f.get(), path_, name);
  const long total = NumRows();
  if (first_row < 0 || n_rows < 0 || first_row + n_rows > total) {
    throw FitsError(path_ + ": rows " + std::to_string(first_row + 1) + " to " +
                    std::to_string(first_row + n_rows) + " of column " + name +
                    " requested, but the table has " + std::to_string(total));
  }
  const long first = first_row + 1, rows = first_row + n_rows;  // 1-based rows first .. rows
  int status = 0, type = 0;
  long repeat = 0, width = 0;
  fits_get_coltype(impl_->f.get(), colnum, &type, &repeat, &width, &status);
  CheckStatus(status, path_, "reading type of column " + name);
  if (type < 0)
    throw FitsError(path_ + ": column " + name + " is a variable-length array, expected text");
  std::vector<std::string> out;
  if (type != TSTRING) {  // a number read as text (a designation stored as a number): its shortest
                          // exact form
    if (repeat != 1)
      throw FitsError(path_ + ": column " + name + " holds " + std::to_string(repeat) +
                      " numbers per row, expected text");
    const bool integer = type == TBYTE || type == TSBYTE || type == TSHORT || type == TUSHORT ||
                         type == TINT || type == TUINT || type == TLONG || type == TULONG ||
                         type == TLONGLONG;
    for (long r = first; r <= rows; ++r) {
      int anynul = 0;
      if (integer) {
        LONGLONG v = 0, nul = 0;
        fits_read_col(impl_->f.get(), TLONGLONG, colnum, r, 1, 1, &nul, &v, &anynul, &status);
        out.push_back(std::to_string(static_cast<long long>(v)));
      } else {
        double v = 0, nul = 0;
        fits_read_col(impl_->f.get(), TDOUBLE, colnum, r, 1, 1, &nul, &v, &anynul, &status);
        char text[32];
        std::snprintf(text, sizeof text, "%.15g", v);
        if (std::strtod(text, nullptr) != v) std::snprintf(text, sizeof text, "%.17g", v);
        out.emplace_back(text);
      }
      CheckStatus(status, path_, "reading column " + name + " row " + std::to_string(r));
    }
    return out;
  }
  std::vector<char> buf(static_cast<size_t>(repeat) + 1);
  for (long r = first; r <= rows; ++r) {
    char* p = buf.data();
    int anynul = 0;
    fits_read_col(impl_->f.get(), TSTRING, colnum, r, 1, 1, nullptr, &p, &anynul, &status);
    CheckStatus(status, path_, "reading column " + name + " row " + std::to_string(r));
    out.emplace_back(p);
  }
  return out;
}

}  // namespace csst
