// The flat model's degree per band, chosen from the data by k-fold cross-validation over stars
// (flatfield.order_select: kfold).
//
// Every star falls into one of K folds (a hash of its OBSID, so the split is the same for any
// thread count and block size). For each (detector, slice) of a band and each candidate degree d =
// 0 .. order_max, the weighted least-squares flat of degree d is fitted to the points of K - 1
// folds and scored on the held-out fold: sum of w (ratio - F_d(x, y))^2, w = 1 / sigma^2 (times the
// robust weight rho'(e^2) of a point under FlatFitter's robust fit at order_max when a robust loss
// is set, so that outliers neither pull the training fits nor dominate the score). Scores add over
// folds, slices and detectors of the band; the band's degree is the one with the lowest held-out
// cost.
//
// Because the Legendre basis is ordered by total degree, the degree-d basis is the first
// NumCoefficients(d) functions of the order_max basis: one pass over a slice's points accumulates
// per-fold normal equations at order_max, and every (degree, fold) fit and held-out cost follows
// from their leading blocks (training = all folds less one), without refitting.
//
// A degree takes part in a band only where every fold's training set holds at least
// max(min_points, 2 NumCoefficients(d)) points; the highest degree tried is the highest one at
// which at least half of the band's slices with points qualify, and all degrees are then scored on
// the same slices (those that qualify at that highest degree).
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "flatfield/flat_fitter.h"

namespace csst {

struct OrderSelection {
  int folds = 0;
  std::array<int, 3> order = {0, 0, 0};       // chosen degree per band (GU, GV, GI)
  std::array<int, 3> ceiling = {-1, -1, -1};  // highest degree tried per band (-1: none could be)
  // per band, per degree 0..order_max: held-out cost per held-out point (NaN: not tried)
  std::array<std::vector<double>, 3> score;
  std::array<long, 3> points = {0, 0, 0};  // held-out points scored per band
  std::array<int, 3> slices = {0, 0, 0};   // (detector, slice) pairs scored per band
};

// The fold of a star (0 .. folds-1).
int FoldOf(int64_t obsid, int folds);

// Held-out cost per candidate degree 0..order_max of one slice's points (NaN where a fold's
// training set is too small for the degree or its normal matrix is singular). `obsid` per point
// names its star; `held_out` returns the number of points scored.
std::vector<double> SliceHeldOutCost(const std::vector<RatioPoint>& points,
                                     const std::vector<int64_t>& obsid, double nx, double ny,
                                     const FlatFitOptions& options, long* held_out = nullptr);

// The degree per band of the given slices. `points_of(d, s, &pts, &ids)` fills the points of slice
// s of detector d and their stars; `band_of[d]` and `slices_of[d]` give each detector's band and
// slice count.
struct SliceSource {
  std::vector<int> band_of, slices_of;
  double nx = 1, ny = 1;
  std::function<void(size_t d, size_t s, std::vector<RatioPoint>* pts, std::vector<int64_t>* ids)>
      points_of;
  // Shared over processes (the fit stage under MPI): only the slices of detectors this process
  // owns are scored here, then `share` fills in the others' held-out costs and counts (per job:
  // (detector, slice) in detector-major order). Null: every slice here.
  std::function<bool(size_t d)> owns;
  std::function<void(std::vector<std::vector<double>>* cost, std::vector<long>* held)> share;
};
OrderSelection SelectFlatOrders(const FlatFitOptions& options, const SliceSource& source);

// "GU 4, GV 5, GI 6 (5-fold over stars; held-out cost per point at degree 2 / chosen: ...)".
std::string DescribeOrderSelection(const OrderSelection& s);

}  // namespace csst
