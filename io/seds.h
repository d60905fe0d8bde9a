// The SEDS product (seds.fits): each star's predicted R = 200 SED and its error on the 574-pixel
// output grid, with the SED error common to all stars per band in the header. One writer (the
// predict stage and `csst-flatcube predict`) and one reader, whole or a block of stars at a time.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "io/fits.h"

namespace csst {

struct SedTable {
  std::vector<int64_t> obsid;
  std::vector<float> mu, sigma;  // n x 574
  // Per band (GU, GV, GI): the SED error common to all stars (the model's systematic_error; 0 for
  // paper_errors, whose errors are independent between stars). Header keys SYSERRU/V/I of SEDS.
  std::array<double, 3> systematic = {0, 0, 0};
  // The same for a flat fitted with free per-star scales (systematic_error_free_scale;
  // SYSFREU/V/I).
  std::array<double, 3> systematic_free_scale = {0, 0, 0};
  // `predict FILE...` (spectra from anywhere) fills these too; the stage leaves them empty. FILE:
  // each star's source file; DOMAIN: "" inside the training domain, else why not (SNR, Teff);
  // REJECTS: unusable files.
  std::vector<std::string> file, domain;
  std::vector<std::string> rejected_file, rejected_reason;
};
// The one writer of the SEDS product (the predict stage and `csst-flatcube predict`), block by
// block of stars: `layout` gives the header's SYSERR/SYSFRE terms and whether (and how wide) FILE
// and DOMAIN are; Append adds the rows of a block (obsid, mu, sigma and, with the layout's columns,
// file and domain); Close adds the wavelengths and the rejects. The file is complete only after
// Close.
class SedsWriter {
 public:
  SedsWriter(const std::string& path, const SedTable& layout, const Provenance& p);
  void Append(const SedTable& block);
  void Close(const std::vector<std::string>& rejected_file = {},
             const std::vector<std::string>& rejected_reason = {});
  long rows() const { return rows_; }

 private:
  FitsWriter w_;
  Provenance p_;
  bool with_file_ = false, with_domain_ = false;
  long rows_ = 0;
};
void WriteSeds(const std::string& path, const SedTable& t, const Provenance& p);  // one block
SedTable ReadSeds(const std::string& path);
// The SEDS product read a block of stars at a time (a stage that streams over its stars): OBSID and
// the header's terms at construction, MU and SIGMA of rows first .. first + count - 1 (0-based)
// when asked for.
class SedsReader {
 public:
  explicit SedsReader(const std::string& path);
  const std::vector<int64_t>& obsid() const { return obsid_; }
  const std::array<double, 3>& systematic() const { return systematic_; }
  const std::array<double, 3>& systematic_free_scale() const { return systematic_free_scale_; }
  void Read(size_t first, size_t count, std::vector<float>* mu, std::vector<float>* sigma);

 private:
  FitsReader r_;
  std::vector<int64_t> obsid_;
  std::array<double, 3> systematic_{}, systematic_free_scale_{};
};
// SYSERRU/V/I of SEDS, or SYSFREU/V/I for a flat fitted with free per-star scales (joint mode).
std::array<double, 3> ReadSedSystematic(const std::string& path, bool free_scale);
// Throws naming both files unless `seds` (read from seds_path) predicts exactly the stars `obsid`
// of stars_path, in their order.
void CheckSedsOfStars(const std::vector<int64_t>& seds_obsid, const std::string& seds_path,
                      const std::vector<int64_t>& obsid, const std::string& stars_path);

}  // namespace csst
