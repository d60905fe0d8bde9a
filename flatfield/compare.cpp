#include "flatfield/compare.h"

#include <algorithm>
#include <array>
#include <cmath>

#include "core/detectors.h"
#include "core/errors.h"
#include "core/grid.h"
#include "core/mpi_world.h"
#include "core/rng.h"

namespace csst {

void CompareOptions::Validate() const {
  if (ebv_sigma < 0) throw ConfigError("config error: compare.ebv_sigma must be >= 0");
  if (scale_error < 0) throw ConfigError("config error: compare.scale_error must be >= 0");
}

namespace {

// The errors of a star's assumed flux that the observation and network sigmas do not hold, added
// to each of its ratios' sigma in quadrature (rows first..end of `out` are the star's bands):
// - E(B-V) error: d ln(ratio) = 0.4 ln10 dE k(lambda). With a free per-star scale (flux_scale
//   unknown) the part constant in wavelength is absorbed, so what remains is k(lambda) minus the
//   mean of k over the star's points with the weights 1/sigma^2 of the scale's own fit; with a
//   known scale, all of it.
// - the window-flux error (flux_scale known only; a free scale absorbs it).
void AddStarErrors(const CompareOptions& o, const std::vector<double>& extinction, size_t first,
                   std::vector<StarRatios>* out) {
  const bool free_scale = o.flux_scale == FluxScale::kUnknown;
  const double ebv_err = o.reddening ? o.ebv_sigma : 0.0;
  const double scale_err = free_scale ? 0.0 : o.scale_error;
  if (ebv_err == 0 && scale_err == 0) return;
  auto usable = [](const StarRatios& r, size_t k) {
    return r.flag[k] == 0 && r.sigma[k] > 0 && r.ratio[k] > 0;
  };
  double k_ref = 0;
  if (free_scale) {
    double sw = 0, swk = 0;
    for (size_t row = first; row < out->size(); ++row) {
      const auto& r = (*out)[row];
      for (size_t k = 0; k < r.ratio.size(); ++k) {
        if (!usable(r, k)) continue;
        const double w = r.ratio[k] * r.ratio[k] / (r.sigma[k] * r.sigma[k]);  // 1 / rel. var
        sw += w;
        swk += w * extinction[k];
      }
    }
    if (sw > 0) k_ref = swk / sw;
  }
  const double c = 0.4 * std::log(10.0) * ebv_err;
  for (size_t row = first; row < out->size(); ++row) {
    auto& r = (*out)[row];
    for (size_t k = 0; k < r.ratio.size(); ++k) {
      if (!usable(r, k)) continue;
      const double rel_ebv = c * (extinction[k] - k_ref);
      const double rel = std::sqrt(rel_ebv * rel_ebv + scale_err * scale_err);
      r.sigma[k] = std::hypot(r.sigma[k], r.ratio[k] * rel);
    }
  }
}

}  // namespace

std::vector<StarRatios> ComputeRatios(const Instrument& inst, const CompareOptions& o,
                                      const CompareInput& in, uint64_t seed) {
  const auto& [obs, stars, window_flux, mu, sigma_mu] = in;
  const size_t no = OutputGrid().size();
  if (obs.size() != stars.size() || window_flux.size() != stars.size() ||
      mu.size() != stars.size() * no || sigma_mu.size() != mu.size()) {
    throw Error("compare: observations (" + std::to_string(obs.size()) + "), stars (" +
                std::to_string(stars.size()) + ") and predictions (" +
                std::to_string(mu.size() / no) + ") differ in number");
  }
  return ComputeRatios(inst, o,
                       CompareBlock{0, obs.size(), obs.data(), stars.data(), window_flux.data(),
                                    mu.data(), sigma_mu.data()},
                       seed);
}

std::vector<StarRatios> ComputeRatios(const Instrument& inst, const CompareOptions& o,
                                      const CompareBlock& block, uint64_t seed) {
  o.Validate();
  const auto& g = OutputGrid();
  const size_t no = g.size();
  const StarObservation* obs = block.obs;
  const StarRecord* stars = block.stars;
  const double* window_flux = block.window_flux;
  const float* mu = block.mu;
  const float* sigma_mu = block.sigma_mu;
  // Per band, the counts of a unit SED per pixel (ExpectedCounts is linear in the SED), and the
  // extinction curve: computed once, not per star.
  const auto centres = g.Centres();
  std::array<std::vector<double>, 3> unit_counts;
  for (int b = 0; b < 3; ++b)
    unit_counts[static_cast<size_t>(b)] = ExpectedCounts(inst, b, std::vector<double>(no, 1.0));
  std::vector<double> extinction(no, 0.0);
  if (o.reddening)
    for (size_t k = 0; k < no; ++k) extinction[k] = 3.1 * ExtinctionCcm89(centres[k]);
  std::vector<StarRatios> out;
  for (size_t i = 0; i < block.count; ++i) {
    const size_t index = block.first + i;  // the star's place in the sample: its random streams
    if (obs[i].obsid != stars[i].obsid) {
      throw Error("compare: star " + std::to_string(index) + " is obsid " +
                  std::to_string(stars[i].obsid) + " in the predictions but " +
                  std::to_string(obs[i].obsid) + " in the observations");
    }
    Rng rng(seed, "assumed-ebv", index);
    const double ebv_assumed = o.reddening ? stars[i].ebv + o.ebv_sigma * rng.Normal() : 0.0;
    Rng srng(seed, "assumed-scale", index);
    const double scale = window_flux[i] * std::max(0.1, 1.0 + o.scale_error * srng.Normal());
    std::vector<double> sed(no);
    for (size_t k = 0; k < no; ++k) {
      double v = mu[i * no + k] * scale;
      if (ebv_assumed != 0) v *= std::pow(10.0, -0.4 * ebv_assumed * extinction[k]);
      sed[k] = v;
    }
    const size_t first_of_star = out.size();
    for (int b = 0; b < 3; ++b) {
      const auto& bo = obs[i].band[b];
      if (!bo.observed()) continue;  // no spectrum of this star in this band
      if (bo.counts.size() != no || bo.sigma.size() != no || bo.flag.size() != no ||
          bo.x.size() != no || bo.y.size() != no) {
        throw Error("compare: the " + inst.band(b).name + " observation of obsid " +
                    std::to_string(obs[i].obsid) + " is not on the " + std::to_string(no) +
                    "-pixel output grid");
      }
      // Counts collected in another exposure time than the instrument's.
      const double time_factor = bo.exptime > 0 ? bo.exptime / inst.total_time() : 1.0;
      const auto& unit = unit_counts[static_cast<size_t>(b)];
      const BandOptics& band = inst.band(b);
      StarRatios r;
      r.obsid = obs[i].obsid;
      r.band = b;
      r.detector = bo.detector;
      r.x = bo.x;
      r.y = bo.y;
      r.ratio.assign(no, 0.0);
      r.sigma.assign(no, 0.0);
      r.flag.assign(no, 0);
      for (size_t k = 0; k < no; ++k) {
        if (bo.flag[k] & kObsOffDetector) r.flag[k] |= kRatioOffDetector;
        const double lam = centres[k];
        if ((bo.flag[k] & kObsOutsideBand) || lam < band.lo || lam > band.hi)
          r.flag[k] |= kRatioOutsideBand;
        if (bo.flag[k] & kObsMasked) r.flag[k] |= kRatioMasked;
        const double e = unit[k] * sed[k] * time_factor;
        const double c = bo.counts[k];
        if (!(e > 0) || !std::isfinite(c) || !std::isfinite(e)) {
          r.flag[k] |= kRatioNonFinite;
          continue;
        }
        r.ratio[k] = c / e;
        const double rel_obs = bo.sigma[k] / e;
        const double rel_mu = sigma_mu[i * no + k];
        r.sigma[k] = std::sqrt(rel_obs * rel_obs + r.ratio[k] * r.ratio[k] * rel_mu * rel_mu);
        if (!std::isfinite(r.ratio[k]) || !(r.sigma[k] > 0)) r.flag[k] |= kRatioNonFinite;
      }
      out.push_back(std::move(r));
    }
    AddStarErrors(o, extinction, first_of_star, &out);
  }
  return out;
}

namespace {
constexpr const char* kRatiosDescrip =
    "observed / predicted count ratios per star, band and wavelength";

std::vector<FitsColumn> RatioColumns(const std::vector<StarRatios>& rs, int per_band) {
  const long n = OutputGrid().size();
  std::vector<int64_t> id;
  std::vector<int32_t> band, det, chip;
  std::vector<double> x, y, ratio, sigma;
  std::vector<uint8_t> flag;
  for (const auto& r : rs) {
    id.push_back(r.obsid);
    band.push_back(r.band);
    det.push_back(r.detector);
    chip.push_back(ChipId(r.band, r.detector - r.band * per_band));
    x.insert(x.end(), r.x.begin(), r.x.end());
    y.insert(y.end(), r.y.begin(), r.y.end());
    ratio.insert(ratio.end(), r.ratio.begin(), r.ratio.end());
    sigma.insert(sigma.end(), r.sigma.begin(), r.sigma.end());
    flag.insert(flag.end(), r.flag.begin(), r.flag.end());
  }
  return {{"OBSID", "", id},       {"BAND", "", band},      {"DETECTOR", "", det},
          {"CHIPID", "", chip},    {"X", "pixel", x, n},    {"Y", "pixel", y, n},
          {"RATIO", "", ratio, n}, {"SIGMA", "", sigma, n}, {"FLAG", "", flag, n}};
}
}  // namespace

RatiosWriter::RatiosWriter(const std::string& path, const Provenance& prov, int per_band)
    : w_(path), p_(prov), per_band_(per_band) {
  p_.descrip = kRatiosDescrip;
  w_.WritePrimary(p_);
  w_.CreateTable("RATIOS", RatioColumns({}, per_band_));
  w_.Standard(p_, "");
  w_.Comment("FLAG bits: 1 off detector, 2 outside band, 4 non-finite, 8 masked by the extraction");
  w_.Comment(
      "DETECTOR: this project's detector index (band * detectors per band + k); CHIPID: its CSST "
      "chip id");
}

void RatiosWriter::Append(const std::vector<StarRatios>& block) {
  if (block.empty()) return;
  w_.AppendRows(rows_, RatioColumns(block, per_band_));
  rows_ += static_cast<long>(block.size());
}

void RatiosWriter::Close() {
  w_.WriteTable("WAVELENGTH", {{"WAVELENGTH", "Angstrom", OutputGrid().Centres()}});
  w_.Standard(p_, "");
  w_.Close();
}

void WriteRatios(const std::string& path, const std::vector<StarRatios>& rs, const Provenance& prov,
                 int per_band) {
  RatiosWriter w(path, prov, per_band);
  w.Append(rs);
  w.Close();
}

void ForEachRatioBlock(const std::string& path, size_t rows_per_block,
                       const std::function<void(const std::vector<StarRatios>&)>& fn) {
  if (rows_per_block == 0) throw Error("ForEachRatioBlock: rows_per_block must be positive");
  FitsReader r(path);
  r.MoveTo("RATIOS");
  const long rows = r.NumRows();
  const size_t n = OutputGrid().size();
  for (const auto* col : {"X", "Y", "RATIO", "SIGMA", "FLAG"}) {
    if (r.ColumnRepeat(col) != static_cast<long>(n)) {
      throw Error(path + ": RATIOS column " + std::string(col) + " holds " +
                  std::to_string(r.ColumnRepeat(col)) + " values per row, expected " +
                  std::to_string(n) + " (the output grid)");
    }
  }
  std::vector<StarRatios> block;
  for (long first = 0; first < rows; first += static_cast<long>(rows_per_block)) {
    const long count = std::min<long>(static_cast<long>(rows_per_block), rows - first);
    const auto id = r.ReadColumn("OBSID", first, count), band = r.ReadColumn("BAND", first, count),
               det = r.ReadColumn("DETECTOR", first, count);
    const auto x = r.ReadColumn("X", first, count), y = r.ReadColumn("Y", first, count),
               ratio = r.ReadColumn("RATIO", first, count);
    const auto sigma = r.ReadColumn("SIGMA", first, count),
               flag = r.ReadColumn("FLAG", first, count);
    block.assign(static_cast<size_t>(count), StarRatios{});
    for (size_t i = 0; i < block.size(); ++i) {
      auto& s = block[i];
      s.obsid = static_cast<int64_t>(id[i]);
      s.band = static_cast<int>(band[i]);
      s.detector = static_cast<int>(det[i]);
      auto slice = [&](const std::vector<double>& v) {
        return std::vector<double>(v.begin() + static_cast<long>(i * n),
                                   v.begin() + static_cast<long>((i + 1) * n));
      };
      s.x = slice(x);
      s.y = slice(y);
      s.ratio = slice(ratio);
      s.sigma = slice(sigma);
      s.flag.resize(n);
      for (size_t k = 0; k < n; ++k) s.flag[k] = static_cast<uint8_t>(flag[i * n + k]);
    }
    fn(block);
  }
}

std::vector<StarRatios> ReadRatios(const std::string& path) {
  std::vector<StarRatios> out;
  ForEachRatioBlock(path, 4096, [&](const std::vector<StarRatios>& block) {
    out.insert(out.end(), block.begin(), block.end());
  });
  return out;
}

void PutRatios(ByteWriter& w, const std::vector<StarRatios>& rows) {
  w.Put<uint64_t>(rows.size());
  for (const auto& r : rows) {
    w.Put(r.obsid);
    w.Put(r.band);
    w.Put(r.detector);
    w.PutVector(r.x);
    w.PutVector(r.y);
    w.PutVector(r.ratio);
    w.PutVector(r.sigma);
    w.PutVector(r.flag);
  }
}

std::vector<StarRatios> GetRatios(ByteReader& in) {
  std::vector<StarRatios> rows(in.Get<uint64_t>());
  for (auto& r : rows) {
    r.obsid = in.Get<int64_t>();
    r.band = in.Get<int>();
    r.detector = in.Get<int>();
    r.x = in.GetVector<double>();
    r.y = in.GetVector<double>();
    r.ratio = in.GetVector<double>();
    r.sigma = in.GetVector<double>();
    r.flag = in.GetVector<uint8_t>();
  }
  return rows;
}

}  // namespace csst
