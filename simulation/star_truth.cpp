#include "simulation/star_truth.h"

#include <map>

#include "core/errors.h"

namespace csst {

StarTruth LoadStarTruth(const std::string& stars_path, const std::string& truth_path,
                        bool with_sed) {
  const auto prepared = ReadPreparedStars(stars_path, /*with_inputs=*/false);
  auto reader = std::make_shared<SampleTruthReader>(truth_path);
  const SampleTruthReader& truth = *reader;
  std::map<int64_t, size_t> at;
  for (size_t i = 0; i < truth.obsid().size(); ++i) at[truth.obsid()[i]] = i;
  StarTruth t;
  t.stars = prepared.stars;
  t.z = prepared.z;
  t.star_set = StarSetId(prepared);
  for (size_t k = 0; k < t.stars.size(); ++k) {
    auto& s = t.stars[k];
    auto it = at.find(s.obsid);
    if (it == at.end()) {
      throw Error(stars_path + ": star obsid " + std::to_string(s.obsid) + " has no truth in " +
                  truth_path +
                  ": the ingested stars are not the simulated sample (ingest.source: files brings "
                  "stars that "
                  "stage sample did not make)");
    }
    // Joined by identity, not by obsid alone: the star must come from the very file the sample
    // wrote.
    const std::string& mine = prepared.spec_hash[k];
    const std::string& theirs =
        it->second < truth.spec_hash().size() ? truth.spec_hash()[it->second] : std::string();
    if (mine.empty() || theirs.empty() || mine != theirs) {
      throw Error(stars_path + ": star obsid " + std::to_string(s.obsid) +
                  " was ingested from a spectrum (content hash " +
                  (mine.empty() ? std::string("unknown") : mine) + ") that " + truth_path +
                  " did not make (its spectrum for this obsid has hash " +
                  (theirs.empty() ? std::string("unknown") : theirs) +
                  "): the ingested stars are not the simulated sample, so they have no truth to "
                  "simulate through");
    }
    t.truth_row.push_back(static_cast<long>(it->second));
    t.window_flux.push_back(truth.window_flux()[it->second]);
  }
  if (with_sed) t.sed = reader->Sed(t.truth_row.data(), t.truth_row.size());
  t.truth = std::move(reader);
  return t;
}

namespace {
void CheckStarRange(size_t first, size_t count, size_t n) {
  if (first + count > n)
    throw Error("StarTruth: stars " + std::to_string(first) + " .. " +
                std::to_string(first + count) + " asked for, there are " + std::to_string(n) +
                " (internal error)");
}
}  // namespace

std::vector<std::vector<double>> StarTruth::SedFine(size_t first, size_t count) const {
  CheckStarRange(first, count, truth_row.size());
  return truth->SedFine(truth_row.data() + first, count);
}

std::vector<std::vector<double>> StarTruth::ReadSed(size_t first, size_t count) const {
  CheckStarRange(first, count, truth_row.size());
  return truth->Sed(truth_row.data() + first, count);
}

}  // namespace csst
