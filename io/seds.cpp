#include "io/seds.h"

#include "core/bands.h"
#include "core/errors.h"
#include "core/grid.h"

namespace csst {
namespace {
// Header keys of SEDS holding SedTable::systematic and ::systematic_free_scale (GU, GV, GI).
constexpr const char* kSystematicKeys[3] = {"SYSERRU", "SYSERRV", "SYSERRI"};
constexpr const char* kFreeScaleKeys[3] = {"SYSFREU", "SYSFREV", "SYSFREI"};

std::array<double, 3> ReadSystematicKeys(FitsReader& r, const std::string& path,
                                         const char* const (&keys)[3]) {
  std::array<double, 3> sys{};
  for (int b = 0; b < 3; ++b) {
    if (!r.HasKey(keys[b]))
      throw Error(path + ": SEDS lacks the key " + keys[b] +
                  " (written by an older version: rerun from predict, csst-flatcube run CONFIG "
                  "--from predict)");
    sys[static_cast<size_t>(b)] = r.KeyDouble(keys[b]);
  }
  return sys;
}
}  // namespace

SedsWriter::SedsWriter(const std::string& path, const SedTable& layout, const Provenance& prov)
    : w_(path), p_(prov), with_file_(!layout.file.empty()), with_domain_(!layout.domain.empty()) {
  p_.descrip =
      "predicted R=200 SEDs (574 px, 2500-10500 A log) scaled at 5526-5586 A, relative sigma";
  w_.WritePrimary(p_);
  const long n = OutputGrid().size();
  std::vector<FitsColumn> columns = {{"OBSID", "", std::vector<int64_t>{}}};
  if (with_file_) columns.push_back({"FILE", "", layout.file});
  columns.push_back({"MU", "", std::vector<float>{}, n});
  columns.push_back({"SIGMA", "", std::vector<float>{}, n});
  if (with_domain_) columns.push_back({"DOMAIN", "", layout.domain});
  w_.CreateTable("SEDS", columns);
  w_.Standard(p_, "");
  w_.Comment("MU: predicted SED / mean flux in 5526-5586 A; SIGMA: relative 1-sigma (calibrated)");
  if (with_domain_)
    w_.Comment("DOMAIN: empty inside the training domain (SNR >= 20, 5000-9750 K), else why not");
  for (int b = 0; b < 3; ++b)
    w_.Key(kSystematicKeys[b], layout.systematic[static_cast<size_t>(b)],
           std::string("SED error common to all stars, known fluxes, ") + BandName(BandAt(b)));
  for (int b = 0; b < 3; ++b)
    w_.Key(kFreeScaleKeys[b], layout.systematic_free_scale[static_cast<size_t>(b)],
           std::string("the same after free per-star scales, ") + BandName(BandAt(b)));
}

void SedsWriter::Append(const SedTable& t) {
  const size_t n = t.obsid.size(), no = static_cast<size_t>(OutputGrid().size());
  if (t.mu.size() != n * no || t.sigma.size() != n * no || (with_file_ && t.file.size() != n) ||
      (with_domain_ && t.domain.size() != n))
    throw Error(w_.path() + ": a block of " + std::to_string(n) +
                " SEDs with other column lengths (internal error)");
  if (n == 0) return;
  std::vector<FitsColumn> columns = {{"OBSID", "", t.obsid}};
  if (with_file_) columns.push_back({"FILE", "", t.file});
  columns.push_back({"MU", "", t.mu, static_cast<long>(no)});
  columns.push_back({"SIGMA", "", t.sigma, static_cast<long>(no)});
  if (with_domain_) columns.push_back({"DOMAIN", "", t.domain});
  w_.AppendRows(rows_, columns);
  rows_ += static_cast<long>(n);
}

void SedsWriter::Close(const std::vector<std::string>& rejected_file,
                       const std::vector<std::string>& rejected_reason) {
  w_.WriteTable("WAVELENGTH", {{"WAVELENGTH", "Angstrom", OutputGrid().Centres()}});
  w_.Standard(p_, "");
  if (with_file_) {
    w_.WriteTable("REJECTS", {{"FILE", "", rejected_file}, {"REASON", "", rejected_reason}});
    w_.Standard(p_, "");
  }
  w_.Close();
}

void WriteSeds(const std::string& path, const SedTable& t, const Provenance& prov) {
  SedsWriter w(path, t, prov);
  w.Append(t);
  w.Close(t.rejected_file, t.rejected_reason);
}

SedsReader::SedsReader(const std::string& path) : r_(path) {
  r_.MoveTo("SEDS");
  for (double v : r_.ReadColumn("OBSID")) obsid_.push_back(static_cast<int64_t>(v));
  const long no = OutputGrid().size();
  for (const char* col : {"MU", "SIGMA"})
    if (r_.ColumnRepeat(col) != no)
      throw IoError(path + ": SEDS column " + col + " is not " + std::to_string(no) +
                    " pixels wide");
  systematic_ = ReadSystematicKeys(r_, path, kSystematicKeys);
  systematic_free_scale_ = ReadSystematicKeys(r_, path, kFreeScaleKeys);
}

void SedsReader::Read(size_t first, size_t count, std::vector<float>* mu,
                      std::vector<float>* sigma) {
  if (first + count > obsid_.size())
    throw IoError(r_.path() + ": SEDS rows " + std::to_string(first + 1) + " .. " +
                  std::to_string(first + count) + " asked for, it has " +
                  std::to_string(obsid_.size()));
  mu->clear();
  sigma->clear();
  for (size_t at = first; at < first + count;
       at += 2048) {  // never a whole column in double beside them
    const long rows = static_cast<long>(std::min<size_t>(2048, first + count - at));
    for (double v : r_.ReadColumn("MU", static_cast<long>(at), rows))
      mu->push_back(static_cast<float>(v));
    for (double v : r_.ReadColumn("SIGMA", static_cast<long>(at), rows))
      sigma->push_back(static_cast<float>(v));
  }
}

SedTable ReadSeds(const std::string& path) {
  SedsReader reader(path);
  SedTable t;
  t.obsid = reader.obsid();
  reader.Read(0, t.obsid.size(), &t.mu, &t.sigma);
  t.systematic = reader.systematic();
  t.systematic_free_scale = reader.systematic_free_scale();
  return t;
}

std::array<double, 3> ReadSedSystematic(const std::string& path, bool free_scale) {
  FitsReader r(path);
  r.MoveTo("SEDS");
  return ReadSystematicKeys(r, path, free_scale ? kFreeScaleKeys : kSystematicKeys);
}

void CheckSedsOfStars(const std::vector<int64_t>& seds_obsid, const std::string& seds_path,
                      const std::vector<int64_t>& obsid, const std::string& stars_path) {
  if (seds_obsid != obsid)
    throw Error(seds_path + ": its stars differ from those of " + stars_path + " (rerun predict)");
}

}  // namespace csst
